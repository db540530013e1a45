"""The JSON WebSocket door on a fake transport: the exact JSON a client gets."""
from __future__ import annotations

import base64
import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.core.message import Message
from txpubsub.doors.session import DoorSettings
from txpubsub.wire.errors import CloseReason

from .helpers import Conn, make_hub
from .wsframes import WsConn, client_frame


def close_of(frames: list[tuple[int, bytes]]) -> tuple[int, str]:
    """The close frame's code and reason (the last frame written)."""
    opcode, payload = frames[-1]
    assert opcode == 8, frames[-1]
    return int.from_bytes(payload[:2], "big"), payload[2:].decode()


class RequestTests(SynchronousTestCase):
    """Each request of PROTOCOL.md's table, and its reply, exactly."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = make_hub(self.clock)
        self.ws = WsConn(self.hub)

    def tearDown(self) -> None:
        self.ws.lose()

    def test_handshake_and_greeting(self) -> None:
        """The upgrade names the subprotocol; the first frame is the info object."""
        self.assertIn(b"101 Switching Protocols", self.ws.response)
        self.assertIn(b"Sec-WebSocket-Protocol: txpubsub.json", self.ws.response)
        self.assertEqual(self.ws.greeting, [{
            "type": "info", "server": "txpubsub", "version": "0.1.0", "proto": 1,
            "client_id": "c1", "max_line": 1402200, "max_payload": 1048576, "tls": False,
            "auth_required": False, "epoch": "testepoch"}])

    def test_name(self) -> None:
        self.assertEqual(self.ws.ask({"op": "name", "name": "alice", "ref": 1}),
                         [{"type": "ok", "ref": 1, "name": "alice"}])

    def test_no_ref_no_ref_in_reply(self) -> None:
        self.assertEqual(self.ws.ask({"op": "name", "name": "alice"}),
                         [{"type": "ok", "name": "alice"}])

    def test_create(self) -> None:
        self.assertEqual(self.ws.ask({"op": "create", "channel": "news", "history": 10,
                                      "ref": "a"}),
                         [{"type": "ok", "ref": "a", "channel": "news"}])
        self.assertEqual(self.ws.ask({"op": "create", "channel": "news", "ref": "b"}),
                         [{"type": "err", "ref": "b", "code": "exists",
                           "text": self.ws.ask({"op": "create", "channel": "news"})[0]["text"]}])

    def test_pub_and_delivery(self) -> None:
        """A publish is numbered; a subscriber gets the msg object."""
        self.assertEqual(self.ws.ask({"op": "sub", "pattern": "news.>", "ref": 1}),
                         [{"type": "ok", "ref": 1, "pattern": "news.>", "replayed": 0,
                           "partial": False}])
        self.assertEqual(self.ws.ask({"op": "pub", "channel": "news.uk", "data": "héllo",
                                      "ref": 2}),
                         [{"type": "msg", "channel": "news.uk", "id": 1, "sender": "c1",
                           "data": "héllo"},
                          {"type": "ok", "ref": 2, "id": 1}])

    def test_binary_payload_as_base64(self) -> None:
        """Bytes that are not UTF-8 go in and out as data_b64."""
        raw = b"\xff\x00\x01"
        self.ws.ask({"op": "sub", "pattern": "bin"})
        b64 = base64.b64encode(raw).decode()
        self.assertEqual(self.ws.ask({"op": "pub", "channel": "bin", "data_b64": b64}),
                         [{"type": "msg", "channel": "bin", "id": 1, "sender": "c1",
                           "data_b64": b64},
                          {"type": "ok", "id": 1}])
        self.assertEqual(self.hub.history("bin")[0].payload, raw)

    def test_sub_last_replays_before_reply(self) -> None:
        for text in ("one", "two", "three"):
            self.ws.ask({"op": "pub", "channel": "news", "data": text})
        self.assertEqual(self.ws.ask({"op": "sub", "pattern": "news", "last": 2, "ref": 7}), [
            {"type": "msg", "channel": "news", "id": 2, "sender": "c1", "data": "two"},
            {"type": "msg", "channel": "news", "id": 3, "sender": "c1", "data": "three"},
            {"type": "ok", "ref": 7, "pattern": "news", "replayed": 2, "partial": False},
        ])

    def test_sub_since_with_epoch(self) -> None:
        for text in ("one", "two"):
            self.ws.ask({"op": "pub", "channel": "news", "data": text})
        self.assertEqual(
            self.ws.ask({"op": "sub", "pattern": "news", "since": 1, "epoch": "testepoch"}), [
                {"type": "msg", "channel": "news", "id": 2, "sender": "c1", "data": "two"},
                {"type": "ok", "pattern": "news", "replayed": 1, "partial": False},
            ])
        self.ws.ask({"op": "unsub", "pattern": "news"})
        # Another epoch: the ids may not be ours, so everything kept, marked partial.
        replies = self.ws.ask({"op": "sub", "pattern": "news", "since": 1, "epoch": "other"})
        self.assertEqual(replies[-1], {"type": "ok", "pattern": "news", "replayed": 2,
                                       "partial": True})

    def test_unsub(self) -> None:
        self.ws.ask({"op": "sub", "pattern": "a.*"})
        self.assertEqual(self.ws.ask({"op": "unsub", "pattern": "a.*", "ref": 1}),
                         [{"type": "ok", "ref": 1, "pattern": "a.*"}])
        self.assertEqual(self.ws.ask({"op": "unsub", "pattern": "a.*", "ref": 2})[0]["code"],
                         "not-subscribed")

    def test_history(self) -> None:
        for text in ("one", "two"):
            self.ws.ask({"op": "pub", "channel": "news", "data": text})
        self.assertEqual(self.ws.ask({"op": "history", "channel": "news", "n": 10, "ref": 1}), [
            {"type": "ok", "ref": 1, "messages": [
                {"type": "msg", "channel": "news", "id": 1, "sender": "c1", "data": "one"},
                {"type": "msg", "channel": "news", "id": 2, "sender": "c1", "data": "two"},
            ]}])
        self.assertEqual(self.ws.ask({"op": "history", "channel": "news", "n": 1}),
                         [{"type": "ok", "messages": [
                             {"type": "msg", "channel": "news", "id": 2, "sender": "c1",
                              "data": "two"}]}])

    def test_list(self) -> None:
        self.ws.ask({"op": "sub", "pattern": "news"})
        self.ws.ask({"op": "pub", "channel": "news", "data": "x"})
        self.assertEqual(self.ws.ask({"op": "list", "pattern": ">"}), [
            {"type": "ok", "channels": [
                {"name": "news", "subscribers": 1, "published": 1, "kept": 1}]}])

    def test_who(self) -> None:
        self.ws.ask({"op": "name", "name": "alice"})
        line = Conn(self.hub)
        self.clock.advance(5)
        self.assertEqual(self.ws.ask({"op": "who"}), [
            {"type": "ok", "clients": [{"id": "c1", "name": "alice", "connected_s": 5},
                                       {"id": "c2", "name": None, "connected_s": 5}]}])
        line.cmd("SUB news")
        self.assertEqual(self.ws.ask({"op": "who", "channel": "news"}), [
            {"type": "ok", "clients": [{"id": "c2", "name": None, "connected_s": 5}]}])
        line.lose()

    def test_list_and_who_paged_with_after(self) -> None:
        """list and who send at most --max-list items; "more": true says there
        are others, and "after" (a name, a client id) goes on from the last."""
        self.hub.max_list = 2
        for name in ("a", "b", "c"):
            self.hub.create(name)
        first = self.ws.ask({"op": "list"})[0]
        self.assertEqual(([c["name"] for c in first["channels"]], first.get("more")),
                         (["a", "b"], True))
        rest = self.ws.ask({"op": "list", "after": "b"})[0]
        self.assertEqual(([c["name"] for c in rest["channels"]], rest.get("more")), (["c"], None))
        others = [Conn(self.hub) for _ in range(2)]
        page = self.ws.ask({"op": "who"})[0]
        self.assertEqual(([c["id"] for c in page["clients"]], page.get("more")),
                         (["c1", "c2"], True))
        page = self.ws.ask({"op": "who", "after": "c2"})[0]
        self.assertEqual(([c["id"] for c in page["clients"]], page.get("more")), (["c3"], None))
        self.assertEqual(self.ws.ask({"op": "who", "after": "bob"})[0]["code"], "bad-args")
        # An id of more digits than int() reads: bad-args, not internal-error.
        self.assertEqual(self.ws.ask({"op": "who", "after": "c" + "9" * 5000})[0]["code"],
                         "bad-args")
        self.assertEqual(self.ws.ask({"op": "who", "after": "c" + "0" * 5000 + "2"})[0],
                         page)
        self.assertEqual(self.ws.ask({"op": "list", "after": "no..good"})[0]["code"],
                         "bad-channel")
        for other in others:
            other.lose()

    def test_direct(self) -> None:
        """"direct" with "on" or "from": whose direct messages this client
        takes; others get refused, as on the line protocol."""
        line = Conn(self.hub)
        self.assertEqual(self.ws.ask({"op": "direct", "on": False, "ref": 1}),
                         [{"type": "ok", "ref": 1, "direct": "off"}])
        self.assertEqual(line.cmd("PUB @c1 hi"), "-ERR refused c1 takes no direct messages\r\n")
        self.assertEqual(self.ws.ask({"op": "direct", "from": ["c2", "bob", "c2"]}),
                         [{"type": "ok", "direct": ["bob", "c2"]}])
        self.assertEqual(line.cmd("PUB @c1 hi"), "+OK 1\r\n")
        self.assertEqual(self.ws.ask({"op": "direct", "on": True}),
                         [{"type": "msg", "channel": "@c1", "id": 1, "sender": "c2",
                           "data": "hi"}, {"type": "ok", "direct": "on"}])
        for bad in ({"op": "direct"}, {"op": "direct", "on": "no"},
                    {"op": "direct", "from": []}, {"op": "direct", "from": ["9x"]},
                    {"op": "direct", "on": True, "from": ["bob"]}):
            self.assertEqual(self.ws.ask(bad)[0]["code"], "bad-args", bad)
        line.lose()

    def test_quiet(self) -> None:
        self.assertEqual(self.ws.ask({"op": "quiet", "on": True}),
                         [{"type": "ok", "quiet": True}])
        self.assertEqual(self.ws.ask({"op": "pub", "channel": "x", "data": "y"}), [])
        self.assertEqual(self.ws.ask({"op": "quiet", "on": False}),
                         [{"type": "ok", "quiet": False}])

    def test_ping(self) -> None:
        self.assertEqual(self.ws.ask({"op": "ping", "ref": 9}), [{"type": "pong", "ref": 9}])

    def test_auth_without_users(self) -> None:
        self.assertEqual(self.ws.ask({"op": "auth", "user": "a", "password": "b"}), [
            {"type": "err", "code": "auth-failed", "text": "this server has no users"}])

    def test_drop(self) -> None:
        self.ws.ask({"op": "sub", "pattern": "news"})
        self.hub.drop("news")
        self.assertEqual(self.ws.take(), [{"type": "drop", "channel": "news"}])

    def test_replies_in_order_for_a_burst(self) -> None:
        """Many requests in one read: one reply each, in order."""
        burst = b"".join(client_frame(json.dumps({"op": "ping", "ref": i}).encode())
                         for i in range(2000))
        self.ws.proto.dataReceived(burst)
        self.assertEqual([r["ref"] for r in self.ws.take()], list(range(2000)))


class BadInputTests(SynchronousTestCase):
    """Bad input gets its error; the connection stays and nobody else sees anything."""

    def setUp(self) -> None:
        self.hub = make_hub()
        self.ws = WsConn(self.hub)
        self.other = WsConn(self.hub)
        self.other.ask({"op": "sub", "pattern": ">"})

    def tearDown(self) -> None:
        self.assertEqual(self.other.take(), [])
        self.ws.lose()
        self.other.lose()

    def error(self, payload: bytes, opcode: int = 1) -> dict[str, object]:
        self.ws.send_frame(payload, opcode)
        [reply] = self.ws.take()
        self.assertFalse(self.ws.closed)
        return reply

    def test_not_json(self) -> None:
        self.assertEqual(self.error(b"PUB news hi"), {
            "type": "err", "code": "bad-encoding", "text": "each frame must be one JSON object"})

    def test_not_an_object(self) -> None:
        self.assertEqual(self.error(b'["pub"]')["code"], "bad-encoding")

    def test_deep_nesting(self) -> None:
        self.assertEqual(self.error(b"[" * 100000)["code"], "bad-encoding")

    def test_not_json_constants(self) -> None:
        """NaN and Infinity are not JSON (and would come back unreadable in a ref)."""
        self.assertEqual(self.error(b'{"op":"ping","ref":NaN}')["code"], "bad-encoding")
        self.assertEqual(self.error(b'{"op":"sub","pattern":"a","last":-Infinity}')["code"],
                         "bad-encoding")

    def test_binary_frame(self) -> None:
        self.assertEqual(self.error(b'{"op":"ping"}', opcode=2), {
            "type": "err", "code": "bad-encoding", "text": "send JSON objects in text frames"})

    def test_missing_op(self) -> None:
        self.assertEqual(self.error(b'{"ref":5}'), {
            "type": "err", "ref": 5, "code": "unknown-command",
            "text": 'no "op"; see docs/websocket.md'})

    def test_unknown_op(self) -> None:
        self.assertEqual(self.error(b'{"op":"PUB","ref":"x"}'), {
            "type": "err", "ref": "x", "code": "unknown-command",
            "text": "unknown op 'PUB'; see docs/websocket.md"})

    def test_wrong_types(self) -> None:
        for request, text in (
            ({"op": "pub", "channel": 5, "data": "x"}, '"channel" must be a string'),
            ({"op": "pub", "channel": "a"},
             'give "data" (text) or "data_b64" (bytes), one of them'),
            ({"op": "pub", "channel": "a", "data": "x", "data_b64": "eA=="},
             'give "data" (text) or "data_b64" (bytes), one of them'),
            ({"op": "pub", "channel": "a", "data": 5}, '"data" must be a string'),
            ({"op": "pub", "channel": "a", "data_b64": "!!"}, '"data_b64" is not valid base64'),
            ({"op": "sub", "pattern": "a", "last": -1},
             '"last" must be a whole number, at least 0'),
            ({"op": "sub", "pattern": "a", "last": True},
             '"last" must be a whole number, at least 0'),
            ({"op": "sub", "pattern": "a", "last": 1, "since": 2},
             '"last" goes alone; "since" may take "epoch"'),
            ({"op": "quiet", "on": "yes"}, '"on" must be true or false'),
            ({"op": "name"}, '"name" must be a string'),
        ):
            self.assertEqual(self.error(json.dumps({**request, "ref": 1}).encode()),
                             {"type": "err", "ref": 1, "code": "bad-args", "text": text})

    def test_bad_ref(self) -> None:
        self.assertEqual(self.error(b'{"op":"ping","ref":{"a":1}}'), {
            "type": "err", "code": "bad-args", "text": '"ref" must be a string or a number'})

    def test_number_too_big_for_a_float_is_not_echoed_as_infinity(self) -> None:
        """1e400 is Infinity to Python: echoed in a ref, no browser could parse the reply."""
        self.assertEqual(self.error(b'{"op":"ping","ref":1e400}')["code"], "bad-encoding")
        self.assertEqual(self.error(b'{"op":"ping","ref":-1e400}')["code"], "bad-encoding")
        self.assertEqual(self.error(b'{"op":"ping","ref":1.5e300}'),
                         {"type": "pong", "ref": 1.5e300})

    def test_ref_with_a_lone_surrogate_gets_an_error_and_keeps_the_socket(self) -> None:
        """"\ud800" parses, but cannot be written back as UTF-8: it was an
        unhandled error that dropped the connection."""
        self.assertEqual(self.error(b'{"op":"ping","ref":"\\ud800"}'), {
            "type": "err", "code": "bad-args", "text": '"ref" must be a string or a number'})
        self.assertEqual(self.error(b'{"op":"nope","ref":"a\\udfff"}')["code"], "bad-args")
        self.assertEqual(self.error(b'{"op":"ping","ref":"\\ud83d\\ude00"}'),
                         {"type": "pong", "ref": "\U0001f600"})

    def test_bad_channel(self) -> None:
        self.assertEqual(self.error(b'{"op":"pub","channel":"a b","data":"x"}')["code"],
                         "bad-channel")

    def test_payload_over_max_payload_in_a_small_frame(self) -> None:
        """Within the frame limit but over --max-payload: -ERR too-large, and it stays."""
        hub = make_hub(max_payload=100)
        ws = WsConn(hub)
        ws.send_frame(json.dumps({"op": "pub", "channel": "a", "data": "x" * 101}).encode())
        [reply] = ws.take()
        self.assertEqual(reply["code"], "too-large")
        self.assertFalse(ws.closed)
        ws.lose()


class CloseTests(SynchronousTestCase):
    """Close frames carry the BYE reason with PROTOCOL.md's codes."""

    def test_frame_too_large(self) -> None:
        """A frame over the frame limit: close 1009 too-large."""
        hub = make_hub(max_payload=100)
        ws = WsConn(hub)
        ws.send_frame(b'{"op":"pub","channel":"a","data":"' + b"x" * 5000 + b'"}')
        self.assertEqual(close_of(ws.frames()), (1009, "too-large"))
        self.assertTrue(ws.closed)
        ws.lose()
        self.assertEqual(hub.connection_log[-1].reason, CloseReason.TOO_LARGE)

    def test_shutdown(self) -> None:
        hub = make_hub()
        ws = WsConn(hub)
        hub.close_all()
        self.assertEqual(close_of(ws.frames()), (1001, "shutdown"))
        ws.lose()

    def test_kicked(self) -> None:
        hub = make_hub()
        ws = WsConn(hub)
        hub.kick("c1")
        self.assertEqual(close_of(ws.frames()), (1008, "kicked"))
        ws.lose()

    def test_heartbeat_ping_frames_then_stale(self) -> None:
        """A silent client gets a ping frame after one interval, close 1008 stale after two."""
        clock = Clock()
        ws = WsConn(make_hub(clock), DoorSettings(ping_interval=60))
        clock.advance(60)
        self.assertEqual(ws.frames(), [(9, b"")])
        clock.advance(60)
        self.assertEqual(close_of(ws.frames()), (1008, "stale"))
        ws.lose()

    def test_pong_keeps_alive(self) -> None:
        clock = Clock()
        ws = WsConn(make_hub(clock), DoorSettings(ping_interval=60))
        for _ in range(3):
            clock.advance(60)
            self.assertEqual(ws.frames(), [(9, b"")])
            ws.send_frame(b"", opcode=10)
        self.assertFalse(ws.closed)
        ws.lose()

    def test_client_ping_answered(self) -> None:
        ws = WsConn(make_hub())
        ws.send_frame(b"hi", opcode=9)
        self.assertEqual(ws.frames(), [(10, b"hi")])
        ws.lose()

    def test_slow_consumer(self) -> None:
        """A subscriber that stops reading is closed 1008 slow-consumer; others go on."""
        hub = make_hub()
        settings = DoorSettings(max_buffer=65536, max_stall=0)
        slow, fast = WsConn(hub, settings), WsConn(hub, settings)
        for ws in (slow, fast):
            ws.ask({"op": "sub", "pattern": "news"})
        line = Conn(hub)
        for _ in range(200):
            line.cmd("PUB news " + "x" * 1000)
            fast.take()
            slow.flush()
        self.assertTrue(slow.closed)
        self.assertEqual(close_of(slow.frames()), (1008, "slow-consumer"))
        self.assertFalse(fast.closed)
        for ws in (slow, fast):
            ws.lose()
        line.lose()


class OriginTests(SynchronousTestCase):
    def test_own_origin_allowed(self) -> None:
        ws = WsConn(make_hub(), headers=b"Origin: http://example.test:8080\r\n")
        self.assertIn(b"101", ws.response)
        ws.lose()

    def test_no_origin_allowed(self) -> None:
        ws = WsConn(make_hub())
        self.assertIn(b"101", ws.response)
        ws.lose()

    def test_other_origin_refused(self) -> None:
        ws = WsConn(make_hub(), headers=b"Origin: http://evil.test\r\n")
        self.assertIn(b"403", ws.response.split(b"\r\n")[0])
        self.assertEqual(ws.greeting, [])

    def test_listed_origin_allowed(self) -> None:
        ws = WsConn(make_hub(), origins=("https://app.example",),
                    headers=b"Origin: https://app.example\r\n")
        self.assertIn(b"101", ws.response)
        ws.lose()

    def test_page_opened_from_a_file_allowed_with_any_origin(self) -> None:
        """A page opened from disk sends "Origin: null" (docs/websocket.md: "Save this
        as a file"); --ws-origin '*' allows any page, so that one too."""
        ws = WsConn(make_hub(), origins=("*",), headers=b"Origin: null\r\n")
        self.assertIn(b"101", ws.response)
        ws.lose()

    def test_loopback_listener_refuses_pages_from_other_host_names(self) -> None:
        """DNS rebinding: a page from evil.test whose name now points at 127.0.0.1
        is its "own origin", but a loopback listener only serves pages that name
        it by a loopback address or localhost."""
        ws = WsConn(make_hub(), listening_on="127.0.0.1", host=b"evil.test:8080",
                    headers=b"Origin: http://evil.test:8080\r\n")
        self.assertIn(b"403", ws.response.split(b"\r\n")[0])
        for host in (b"127.0.0.1:8080", b"localhost:8080", b"[::1]:8080"):
            ok = WsConn(make_hub(), listening_on="127.0.0.1", host=host,
                        headers=b"Origin: http://" + host + b"\r\n")
            self.assertIn(b"101", ok.response, host)
            ok.lose()

    def test_loopback_listener_serves_listed_origins_under_any_name(self) -> None:
        ws = WsConn(make_hub(), listening_on="127.0.0.1", host=b"app.example:8080",
                    origins=("http://app.example:8080",),
                    headers=b"Origin: http://app.example:8080\r\n")
        self.assertIn(b"101", ws.response)
        ws.lose()

    def test_null_origin_refused_with_403_by_default(self) -> None:
        ws = WsConn(make_hub(), headers=b"Origin: null\r\n")
        self.assertIn(b"403", ws.response.split(b"\r\n")[0])
        self.assertEqual(ws.greeting, [])


class CrossDoorTests(SynchronousTestCase):
    def test_line_and_websocket_see_each_other(self) -> None:
        """Messages, names and direct messages flow both ways."""
        hub = make_hub()
        ws = WsConn(hub)
        line = Conn(hub)
        ws.ask({"op": "name", "name": "web"})
        line.cmd("NAME tel")
        ws.ask({"op": "sub", "pattern": "chat"})
        line.cmd("SUB chat")
        self.assertEqual(line.cmd("PUB chat from telnet"),
                         "MSG chat 1 tel from telnet\r\n+OK 1\r\n")
        self.assertEqual(ws.take(), [{"type": "msg", "channel": "chat", "id": 1, "sender": "tel",
                                      "data": "from telnet"}])
        ws.ask({"op": "pub", "channel": "chat", "data": "from the web"})
        ws.ask({"op": "pub", "channel": "@tel", "data": "psst"})
        self.assertEqual(line.take(), b"MSG chat 2 web from the web\r\nMSG @tel 1 web psst\r\n")
        line.cmd("PUB @web hello back")
        self.assertEqual(ws.take(), [{"type": "msg", "channel": "@web", "id": 1, "sender": "tel",
                                      "data": "hello back"}])
        ws.lose()
        line.lose()

    def test_encoded_once_for_all_subscribers(self) -> None:
        """Every JSON subscriber's frame is the same bytes object, encoded once."""
        hub = make_hub()
        first = WsConn(hub)
        factory = first.factory
        calls: list[Message] = []
        encode = factory.doors.codec.encode

        def counting(msg: Message) -> bytes:
            calls.append(msg)
            return encode(msg)

        factory.doors.codec.encode = counting
        subscribers = [first] + [WsConn(hub, factory=factory) for _ in range(2)]
        for ws in subscribers:
            ws.ask({"op": "sub", "pattern": "news"})
        line = Conn(hub)
        line.cmd("PUB news hi")
        self.assertEqual(len(calls), 1)
        outputs = [ws.frames() for ws in subscribers]
        self.assertEqual(outputs, [[(1, b'{"type":"msg","channel":"news","id":1,'
                                        b'"sender":"c4","data":"hi"}')]] * 3)
        for ws in subscribers:
            ws.lose()
        line.lose()
