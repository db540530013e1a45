"""The JSON WebSocket door over real loopback sockets, with autobahn's client."""
from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody

from txpubsub.core.hub import Hub
from txpubsub.doors.output import Batcher
from txpubsub.doors.session import DoorSettings
from txpubsub.server.web import web_listeners

from .netclient import WAIT, LineClient, connect, serve
from .wsclient import JsonClient, ws_connect


class WebSocketServerTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.start()

    def start(self, settings: DoorSettings | None = None, listen: str = "tcp:0:interface=127.0.0.1",
              users: str | None = None, **hub_options: Any) -> None:
        self.hub = Hub(reactor, epoch="wstest", **hub_options)
        self.settings = settings or DoorSettings()
        _, self.line_address = serve(self, self.hub, settings=self.settings)
        auth = None
        if users is not None:
            from txpubsub.auth.authenticator import Authenticator
            from txpubsub.auth.users import parse_users

            # Checks on the real thread pool; a short failure delay.
            auth = Authenticator(self.hub, parse_users(users), failure_delay=0.2)
        [service] = web_listeners(reactor, self.hub, [listen],
                                  ("http://allowed.test",), self.settings, Batcher(reactor),
                                  auth)
        service.startService()
        self.addCleanup(service.stopService)
        self.port = service.port.getHost().port  # type: ignore[union-attr]
        self.clients: list[JsonClient] = []
        self.lines: list[LineClient] = []

    async def ws(self, **kwargs: Any) -> JsonClient:
        client = await ws_connect(self.port, **kwargs)
        self.clients.append(client)
        return client

    async def line(self) -> LineClient:
        client = await connect(self.line_address)
        self.lines.append(client)
        return client

    async def tearDown(self) -> None:  # type: ignore[override]  # trial awaits it
        for ws in self.clients:
            await ws.close()
        for line in self.lines:
            await line.quit()

    async def get(self, path: str) -> tuple[int, bytes, Any]:
        response = await Agent(reactor).request(
            b"GET", f"http://127.0.0.1:{self.port}{path}".encode()).addTimeout(WAIT, reactor)
        body = await readBody(response).addTimeout(WAIT, reactor)
        return response.code, body, response.headers

    async def test_cross_door_delivery_both_ways(self) -> None:
        """A line client and a WebSocket client see each other's messages and DMs."""
        web = await self.ws()
        tel = await self.line()
        self.assertEqual(await web.ask({"op": "name", "name": "web"}),
                         {"type": "ok", "ref": "r1", "name": "web"})
        await tel.ask(b"NAME tel", b"+OK")
        await web.ask({"op": "sub", "pattern": "chat.>"})
        await tel.ask(b"SUB chat.>", b"+OK")
        await tel.ask(b"PUB chat.room hello from telnet", b"+OK")
        await web.wait(lambda objs: objs[-1].get("type") == "msg")
        self.assertEqual(web.objects[-1], {"type": "msg", "channel": "chat.room", "id": 1,
                                           "sender": "tel", "data": "hello from telnet"})
        await web.ask({"op": "pub", "channel": "chat.room", "data": "hello from the web"})
        await tel.wait_line(b"MSG chat.room 2 web hello from the web")
        await web.ask({"op": "pub", "channel": "@tel", "data": "psst"})
        await tel.wait_line(b"MSG @tel 1 web psst")
        await tel.ask(b"PUB @web psst back", b"+OK")
        await web.wait(lambda objs: objs[-1].get("channel") == "@web")
        self.assertEqual(web.objects[-1]["data"], "psst back")

    async def test_resume_with_since(self) -> None:
        """A client that comes back asks for what it missed with since= and the epoch."""
        web = await self.ws()
        tel = await self.line()
        await web.ask({"op": "sub", "pattern": "news"})
        await tel.ask(b"PUB news one", b"+OK")
        await web.wait(lambda objs: objs[-1].get("type") == "msg")
        last_id = web.objects[-1]["id"]
        await web.close()
        for text in (b"two", b"three"):
            await tel.ask(b"PUB news " + text, b"+OK")
        back = await self.ws()
        reply = await back.ask({"op": "sub", "pattern": "news", "since": last_id,
                                "epoch": web.objects[0]["epoch"]})
        self.assertEqual(reply, {"type": "ok", "ref": "r1", "pattern": "news", "replayed": 2,
                                 "partial": False})
        self.assertEqual([o.get("data") for o in back.objects if o["type"] == "msg"],
                         ["two", "three"])

    async def test_slow_consumer_closed_1008(self) -> None:
        """A WebSocket client that stops reading is closed with 1008 slow-consumer."""
        self.start(DoorSettings(max_buffer=256 * 1024, max_stall=0))
        slow = await self.ws()
        await slow.ask({"op": "sub", "pattern": "flood"})
        slow.transport.pauseProducing()  # type: ignore[union-attr]  # stops reading
        tel = await self.line()
        await tel.ask(b"QUIET on", b"+OK")
        chunk = b"PUB flood " + b"x" * 60000 + b"\r\n"
        for _ in range(2000):
            if self.hub.counters.slow_consumers:
                break
            tel.send(chunk * 4)
            await tel.ask(b"PING", b"PONG")
        self.assertEqual(self.hub.counters.slow_consumers, 1)
        slow.transport.resumeProducing()  # type: ignore[union-attr]
        self.assertEqual(await slow.closed.addTimeout(WAIT, reactor), (1008, "slow-consumer"))

    async def test_frame_too_large_closed_1009(self) -> None:
        self.start(max_payload=1000)
        web = await self.ws()
        web.send({"op": "pub", "channel": "a", "data": "x" * 10000})
        self.assertEqual(await web.closed.addTimeout(WAIT, reactor), (1009, "too-large"))

    async def test_bad_input_leaves_others_alone(self) -> None:
        """Garbage from one client gets its errors; a subscriber sees nothing of it."""
        watcher = await self.ws()
        await watcher.ask({"op": "sub", "pattern": ">"})
        bad = await self.ws()
        bad.sendMessage(b"\x00\x01binary", isBinary=True)
        bad.sendMessage(b"not json")
        bad.sendMessage(b'{"op":"pub","channel":"x"}')
        await bad.wait(lambda objs: len(objs) == 4)
        self.assertEqual([o["code"] for o in bad.objects[1:]],
                         ["bad-encoding", "bad-encoding", "bad-args"])
        self.assertEqual(await watcher.ask({"op": "ping"}), {"type": "pong", "ref": "r2"})
        self.assertEqual([o for o in watcher.objects if o["type"] == "msg"], [])

    async def test_origins(self) -> None:
        """The page's own origin and --ws-origin are allowed, others get 403."""
        own = await self.ws(origin=f"http://127.0.0.1:{self.port}")
        listed = await self.ws(origin="http://allowed.test")
        self.assertEqual(own.objects[0]["type"], "info")
        self.assertEqual(listed.objects[0]["type"], "info")
        with self.assertRaises(ConnectionError) as refused:
            await ws_connect(self.port, origin="http://evil.test")
        self.assertIn("403", str(refused.exception))

    async def test_page_and_files_only(self) -> None:
        """/ is the console; no listings, no other paths; /ws without upgrade says 426."""
        code, body, headers = await self.get("/")
        self.assertEqual(code, 200)
        self.assertIn(b"txpubsub", body)
        self.assertIn(b"default-src 'self'",
                      headers.getRawHeaders(b"content-security-policy")[0])
        self.assertEqual((await self.get("/nothing-here"))[0], 404)
        self.assertEqual((await self.get("/../../etc/passwd"))[0], 404)
        self.assertEqual((await self.get("/ws"))[0], 426)

    async def test_half_sent_upgrade_request_is_dropped_after_the_handshake_timeout(self) -> None:
        """A client that starts the HTTP request and never finishes it holds a
        socket outside --max-clients: it is dropped after the handshake timeout
        (autobahn's openHandshakeTimeout never runs under the Site), not after
        twisted.web's 60 s."""
        self.start(DoorSettings(handshake_timeout=1))
        gone: Deferred[float] = Deferred()

        class Half(Protocol):
            def connectionMade(self) -> None:
                self.transport.write(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # type: ignore[union-attr]

            def connectionLost(self, reason: object = None) -> None:
                gone.callback(reactor.seconds())

        began = reactor.seconds()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        await connectProtocol(endpoint, Half())
        self.assertLess(await gone.addTimeout(WAIT, reactor) - began, 5)

    async def test_nul_in_a_path_is_not_found_not_a_server_error(self) -> None:
        """/%00 reached the file system (ValueError: embedded null byte): a 500 and a
        traceback in the log for anyone who asks."""
        self.assertEqual((await self.get("/%00"))[0], 404)
        self.assertEqual((await self.get("/console.js%00.html"))[0], 404)
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_no_subprotocol_offered_still_json(self) -> None:
        web = await self.ws(protocols=[])
        self.assertEqual(await web.ask({"op": "ping"}), {"type": "pong", "ref": "r1"})

    async def test_shutdown_closes_1001(self) -> None:
        web = await self.ws()
        done: Deferred[None] = self.hub.close_all()
        self.assertEqual(await web.closed.addTimeout(WAIT, reactor), (1001, "shutdown"))
        await done.addTimeout(WAIT, reactor)

    async def test_backpressure_reaches_the_session(self) -> None:
        """Under the Site, the session is the TCP transport's producer (not the HTTPChannel)."""
        await self.ws()
        [record] = self.hub.clients()
        session: Any = record.session  # the door's Session
        self.assertIs(session.transport.producer, session)
        self.assertEqual(json.loads(json.dumps(self.hub.stats()))["clients"], 1)

    async def test_wss(self) -> None:
        """An ssl: endpoint serves wss: the same door, with its session the TLS
        transport's producer and its own https origin allowed."""
        from .test_tls import Certs

        certs = Certs()
        self.start(listen=f"ssl:0:interface=127.0.0.1:privateKey={certs.key_path}"
                          f":certKey={certs.cert_path}")
        web = await self.ws(tls=certs.client_options(), origin=f"https://127.0.0.1:{self.port}")
        self.assertTrue(web.objects[0]["tls"])
        [record] = self.hub.clients()
        session: Any = record.session
        membrane = session.transport.producer  # TLS wraps the session for TCP
        self.assertIs(membrane._producer, session)
        await web.ask({"op": "sub", "pattern": "secure"})
        tel = await self.line()
        await tel.ask(b"PUB secure over tls " + b"y" * 50000, b"+OK")
        await web.wait(lambda objs: objs[-1].get("type") == "msg")
        self.assertEqual(len(web.objects[-1]["data"]), 50009)

    async def test_requests_pipelined_behind_auths(self) -> None:
        """Over real sockets (ws and wss), requests sent straight after a wrong and
        a right auth are answered in order, the pub judged as the user the second
        auth made: the socket, paused during each check, reads on afterwards."""
        from .test_auth import USERS
        from .test_tls import Certs

        certs = Certs()
        for listen, tls in (("tcp:0:interface=127.0.0.1", None),
                            (f"ssl:0:interface=127.0.0.1:privateKey={certs.key_path}"
                             f":certKey={certs.cert_path}", certs.client_options())):
            self.start(listen=listen, users=USERS)
            web = await self.ws(tls=tls)
            self.assertIs(web.objects[0]["auth_required"], True)
            requests = [{"op": "auth", "user": "bob", "password": "no", "ref": 1},
                        {"op": "pub", "channel": "news.uk", "data": "x", "ref": 2},
                        {"op": "auth", "user": "bob", "password": "bob-pw", "ref": 3},
                        {"op": "pub", "channel": "news.uk", "data": "x", "ref": 4},
                        {"op": "pub", "channel": "news.fr", "data": "x", "ref": 5}]
            for request in requests:
                web.send(request)
            await web.wait(lambda objs: len(objs) == 6)
            self.assertEqual([(o.get("ref"), o.get("code") or o.get("user") or o.get("id"))
                              for o in web.objects[1:]],
                             [(1, "auth-failed"), (2, "auth-required"), (3, "bob"), (4, 1),
                              (5, "forbidden")])
            self.assertEqual(await web.ask({"op": "ping"}), {"type": "pong", "ref": "r1"})
            await web.close()
