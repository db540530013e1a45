"""The WebSocket door: JSON requests in text frames (PROTOCOL.md, "WebSocket and
JSON"), on autobahn's protocol.

autobahn parses the client's frames (masking, UTF-8, size limits) and does the
opening handshake; everything this door sends goes through its ``Session`` as
ready-made frame bytes, so replies, deliveries, heartbeats and the closing
frame are accounted against --max-buffer like the line door's output, and one
message's frame is built once for every JSON subscriber (``json_codec``).
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
from collections.abc import Sequence
from functools import partial
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger
from twisted.python.failure import Failure

from txpubsub import __version__
from txpubsub.auth.login import Login
from txpubsub.core.channel import Channel
from txpubsub.core.hub import LIST_WORK, Hub
from txpubsub.core.message import Message
from txpubsub.core.pending import PendingPublish
from txpubsub.core.registry import ClientRecord, Member
from txpubsub.doors.codecs import Codec
from txpubsub.doors.factory import DoorFactory
from txpubsub.doors.replies import ReplyQueue
from txpubsub.doors.session import DoorSettings, Session, fit, is_local
from txpubsub.wire.errors import CloseReason, HubError, shorten
from txpubsub.wire.names import channel_kind, is_client_id, parse_number
from txpubsub.wire.websocket import (
    OP_TEXT,
    PING_FRAME,
    SUBPROTOCOL,
    close_code,
    close_frame,
    dumps,
    encode_frame,
    frame_limit,
    message_frame,
    message_json,
    text_frame,
)

OP_PONG = 0xA
# Before a client that must authenticate has: the largest frame (as Redis's
# 16 KiB for unauthenticated input), so a stranger cannot make the server
# parse megabytes of JSON.
PRE_AUTH_FRAME = 16384
Ref = object  # a request's "ref" (a string or a number), or _NO_REF
_NO_REF = object()  # a request without "ref"


def json_codec() -> Codec:
    """Deliveries as the text frames of the JSON door."""
    return Codec(lambda m: message_frame(m.channel, m.msg_id, m.sender, m.payload))


def _body_codec() -> Codec:
    """Deliveries as JSON objects alone, for history replies."""
    return Codec(lambda m: message_json(m.channel, m.msg_id, m.sender, m.payload))


class _Replies(ReplyQueue):
    INTERNAL_ERROR = text_frame({"type": "err", "code": "internal-error",
                                 "text": "the server failed this request and logged why"})


def _not_json(constant: str) -> None:
    """NaN and Infinity are Python's extensions, not JSON: echoed in a ref they
    would make a reply no browser can parse."""
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    """A JSON number too big for a float (1e400) would be echoed as Infinity."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{shorten(text)} is too big")
    return value


def _string(request: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = request.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise HubError("bad-args", f'"{key}" must be a string')
    return value


def _count(request: dict[str, Any], key: str) -> int | None:
    value = request.get(key)
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise HubError("bad-args", f'"{key}" must be a whole number, at least 0')
    return value


def _readable_ref(ref: object) -> bool:
    """A string or a number that can be written back: a lone surrogate
    ("\\ud800") parses, but is not UTF-8."""
    if isinstance(ref, str):
        try:
            ref.encode()
        except UnicodeEncodeError:
            return False
        return True
    return isinstance(ref, (int, float)) and not isinstance(ref, bool)


class JsonDoor(WebSocketServerProtocol):
    """One browser (or other WebSocket client) speaking the JSON form."""

    _log = Logger()
    factory: JsonSocketFactory
    transport: Any  # the TCP or TLS transport, taken over from the HTTPChannel
    hub: Hub
    codec: Codec  # deliveries as frames, shared by every JSON session (set in onOpen)
    bodies: Codec  # deliveries as JSON objects, for history replies

    def __init__(self) -> None:
        super().__init__()
        self.session: Session | None = None
        self.quiet = False
        self._replies: _Replies | None = None
        self._login: Login | None = None  # with --users: this connection's way in
        self._gated = False  # must authenticate: only auth and ping until then
        # An auth is being checked: the frames that came behind it (in the same
        # read; no more is read until it is answered), run once it is.
        self._waiting: list[tuple[bytes, bool]] | None = None
        self._holding = False  # the transport is paused (an auth, or pacing)

    # -- the opening handshake (autobahn) ----------------------------------

    def onConnect(self, request: ConnectionRequest) -> str | None:
        origin = request.headers.get("origin")
        if origin is not None:
            secure = ISSLTransport.providedBy(self.transport)
            loopback = is_local(self.transport.getHost())
            if not self.factory.origin_allowed(origin, request.headers.get("host", ""), secure,
                                               loopback):
                self._log.info("refused a WebSocket from origin {origin!r}", origin=origin)
                raise ConnectionDeny(403, "origin not allowed")
        # JSON is spoken either way; the subprotocol is named only if offered.
        return SUBPROTOCOL if SUBPROTOCOL in request.protocols else None

    def onOpen(self) -> None:
        doors = self.factory.doors
        self.hub = doors.hub
        self.codec = doors.codec
        self.bodies = doors.bodies
        session = self.session = doors.new_session(self)
        self._replies = _Replies(session.send)
        session.connection_made(self.transport)
        if ISSLTransport.providedBy(self.transport):
            # The TLS handshake is long done: the upgrade request came through it.
            session.handshake_completed()

    # -- what the session asks of its door ---------------------------------

    def greet(self) -> None:
        session = self.session
        assert session is not None and session.client is not None
        info = {
            "type": "info",
            "server": "txpubsub",
            "version": __version__,
            "proto": 1,
            "client_id": session.client.client_id,
            "max_line": self.factory.frame_limit,
            "max_payload": self.hub.max_payload,
            "tls": ISSLTransport.providedBy(self.transport),
            "auth_required": False,
            "epoch": self.hub.epoch,
        }
        auth = self.factory.doors.auth
        if auth is not None:
            client = session.client
            self._login = login = Login(auth, client, self._gate)
            login.start(client.name if client.name_locked else None)
            info["auth_required"] = self._gated
            if client.user is not None:
                info["user"] = client.user  # from the client's TLS certificate
        session.send(text_frame(info))

    def _gate(self, gated: bool) -> None:
        self._gated = gated
        limit = self.factory.frame_limit
        if gated:
            limit = min(limit, PRE_AUTH_FRAME)
        self.maxMessagePayloadSize = self.maxFramePayloadSize = limit

    def goodbye(self, reason: CloseReason, text: str) -> bytes:
        if self.state != WebSocketProtocol.STATE_OPEN:
            return b""  # autobahn is closing already
        code = close_code(reason.value)
        # Our close frame goes out through the session, after what is queued;
        # autobahn only needs to know the closing handshake is under way.
        self.state = WebSocketProtocol.STATE_CLOSING
        self.closedByMe = True
        self.localCloseCode = code  # type: ignore[assignment]
        self.localCloseReason = reason.value.encode()  # type: ignore[assignment]
        return close_frame(code, reason.value)

    def heartbeat_probe(self) -> bytes | None:
        return PING_FRAME

    def channel_dropped(self, channel: str) -> None:
        if self.session is not None:
            self.session.send(text_frame({"type": "drop", "channel": channel}))

    def hold_input(self) -> None:
        if not self._holding and not self.transport.disconnecting:
            self._holding = True
            self.transport.pauseProducing()

    def release_input(self) -> None:
        if self._waiting is not None:
            return  # pacing must not let frames in while an auth is being checked
        if self._holding:
            self._holding = False
            if not self.transport.disconnecting:
                self.transport.resumeProducing()

    # -- the transport's calls ---------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        session = self.session
        if session is None:
            self._dataReceived(data)
            return
        hub = self.hub
        hub.reading(session)  # costly matching pauses the input (yield_turn)
        self._dataReceived(data)
        hub.reading(None)
        session.after_read()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._login is not None:
            self._login.stop()
        super().connectionLost(reason)
        if self.session is not None:
            self.session.connection_lost(reason)

    def _fail_connection(self, code: int = 1001, reason: str = "going away") -> None:
        """autobahn refuses the client's input: a frame over the limit is closed
        with 1009 ``too-large`` like any other goodbye; a broken frame with
        autobahn's own code, logged as ``bad-frame``."""
        session = self.session
        if session is not None and session.client is not None and session.close_reason is None:
            if code == WebSocketProtocol.CLOSE_STATUS_CODE_MESSAGE_TOO_BIG:
                session.close(CloseReason.TOO_LARGE,
                              f"frames are at most {self.maxMessagePayloadSize} bytes"
                              + (" before auth" if self._gated else ""))
                return
            session.close_reason = CloseReason.BAD_FRAME
            session.flush()
        super()._fail_connection(code, reason)

    # -- frames in -----------------------------------------------------------

    def onPing(self, payload: bytes) -> None:
        session = self.session
        if session is not None:
            session.heard = True
            # Through the session, so a peer that pings and never reads is
            # still bounded by --max-buffer.
            session.send(encode_frame(OP_PONG, payload))

    def onPong(self, payload: bytes) -> None:
        if self.session is not None:
            self.session.heard = True

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self.session
        if session is None or session.client is None or session.close_reason is not None:
            return
        session.heard = True
        if self._waiting is not None:
            # An auth is being checked: what follows it runs once it is answered.
            self._waiting.append((payload, isBinary))
            return
        if isBinary:
            self._error(_NO_REF, "bad-encoding", "send JSON objects in text frames")
            return
        try:
            request = json.loads(payload, parse_constant=_not_json, parse_float=_finite)
        except (ValueError, RecursionError):
            request = None
        if not isinstance(request, dict):
            self._error(_NO_REF, "bad-encoding", "each frame must be one JSON object")
            return
        ref: Any = request.get("ref", _NO_REF)
        if ref is not _NO_REF and not _readable_ref(ref):
            self._error(_NO_REF, "bad-args", '"ref" must be a string or a number')
            return
        op = request.get("op")
        handler = OPS.get(op) if isinstance(op, str) else None
        try:
            if handler is None:
                what = 'no "op"' if op is None else f"unknown op {shorten(str(op))!r}"
                raise HubError("unknown-command", f"{what}; see docs/websocket.md")
            if self._gated and op not in ("auth", "ping"):
                raise HubError("auth-required", 'send {"op":"auth","user":...,"password":...} '
                                                "first")
            handler(self, request, ref)
        except HubError as e:
            self._error(ref, e.code, e.text)
        except Exception:
            self._log.failure("{op!r} from {client!r} failed", op=op, client=session.client)
            self._error(ref, "internal-error", "the server failed this request and logged why")

    # -- replies -------------------------------------------------------------

    @staticmethod
    def _with_ref(kind: str, ref: Any) -> dict[str, Any]:
        reply: dict[str, Any] = {"type": kind}
        if ref is not _NO_REF:
            reply["ref"] = ref
        return reply

    def _ok(self, ref: Any, **fields: Any) -> None:
        reply = self._with_ref("ok", ref)
        reply.update(fields)
        self._replies.send(text_frame(reply))  # type: ignore[union-attr]

    def _error(self, ref: Any, code: str, text: str) -> None:
        reply = self._with_ref("err", ref)
        reply["code"] = code
        reply["text"] = text
        self._replies.send(text_frame(reply))  # type: ignore[union-attr]

    # -- requests ------------------------------------------------------------

    def do_name(self, request: dict[str, Any], ref: Ref) -> None:
        name = self.hub.set_name(self.session.client, _string(request, "name"))  # type: ignore[union-attr,arg-type]
        if isinstance(name, Deferred):  # claimed on every server first
            self._replies.send(name.addCallbacks(  # type: ignore[union-attr]
                self._named, self._refused, callbackArgs=(ref,), errbackArgs=(ref,)))
        else:
            self._ok(ref, name=name)

    def _named(self, name: str, ref: Ref) -> bytes:
        reply = self._with_ref("ok", ref)
        reply["name"] = name
        return text_frame(reply)

    def do_create(self, request: dict[str, Any], ref: Ref) -> None:
        channel = _string(request, "channel")
        ch = self.hub.create_channel(channel, _count(request, "history"),  # type: ignore[arg-type]
                                     self.session.client)  # type: ignore[union-attr]
        if isinstance(ch, Deferred):  # made in Redis first, for every server
            self._replies.send(ch.addCallbacks(  # type: ignore[union-attr]
                self._created, self._refused, callbackArgs=(ref,), errbackArgs=(ref,)))
        else:
            self._ok(ref, channel=ch.name)

    def _created(self, ch: Channel[Any], ref: Ref) -> bytes:
        reply = self._with_ref("ok", ref)
        reply["channel"] = ch.name
        return text_frame(reply)

    def do_sub(self, request: dict[str, Any], ref: Ref) -> None:
        pattern = _string(request, "pattern")
        last, since = _count(request, "last"), _count(request, "since")
        epoch = _string(request, "epoch", required=False)
        if last is not None and (since is not None or epoch is not None):
            raise HubError("bad-args", '"last" goes alone; "since" may take "epoch"')
        if epoch is not None and since is None:
            raise HubError("bad-args", '"epoch" goes with "since"')
        session = self.session
        assert session is not None
        result = self.hub.subscribe(session.client, pattern, last=last,  # type: ignore[arg-type]
                                    since=since, epoch=epoch)
        # Not isinstance(result, Deferred): an ABC's isinstance is ~900 JIT
        # operations on PyPy, enough to make a SUB too long to trace (the line
        # door's do_sub says what that cost).
        if isinstance(result, tuple):
            self._replies.send(self._subscribed(result, pattern, last is None, ref))  # type: ignore[union-attr]
        else:  # a shared backplane is bringing the channel up to date first
            self._replies.send(result.addCallbacks(  # type: ignore[union-attr]
                self._subscribed, self._refused, callbackArgs=(pattern, last is None, ref),
                errbackArgs=(ref,)))

    def _subscribed(self, result: tuple[list[Message], bool], pattern: str | None, since: bool,
                    ref: Ref) -> bytes:
        replay, partial = result
        session = self.session
        assert session is not None
        frames = fit(replay, self.codec, session.room())
        if len(frames) < len(replay) and since:
            partial = True
        reply = self._with_ref("ok", ref)
        reply.update(pattern=pattern, replayed=len(frames), partial=bool(partial))
        # Replay and reply together, as on the line door: nothing live between.
        return b"".join(frames) + text_frame(reply)

    def do_unsub(self, request: dict[str, Any], ref: Ref) -> None:
        pattern = _string(request, "pattern")
        self.hub.unsubscribe(self.session.client, pattern)  # type: ignore[union-attr,arg-type]
        self._ok(ref, pattern=pattern)

    def do_pub(self, request: dict[str, Any], ref: Ref) -> None:
        channel = _string(request, "channel")
        data, data_b64 = request.get("data"), request.get("data_b64")
        if (data is None) == (data_b64 is None):
            raise HubError("bad-args", 'give "data" (text) or "data_b64" (bytes), one of them')
        if data is not None:
            if not isinstance(data, str):
                raise HubError("bad-args", '"data" must be a string')
            payload = data.encode("utf-8", "surrogatepass")
        else:
            if not isinstance(data_b64, str):
                raise HubError("bad-args", '"data_b64" must be a base64 string')
            try:
                payload = base64.b64decode(data_b64, validate=True)
            except (binascii.Error, ValueError):
                raise HubError("bad-args", '"data_b64" is not valid base64') from None
        session = self.session
        assert session is not None and session.client is not None
        client = session.client
        msg_id = self.hub.publish(client.sender, channel, payload, client)  # type: ignore[arg-type]
        if isinstance(msg_id, int):
            session.msgs_in += 1
            if not self.quiet:
                self._ok(ref, id=msg_id)
        elif type(msg_id) is PendingPublish:
            # Being committed by a durable store: the reply waits its turn.
            ok = b"" if self.quiet else self._numbered_frame(msg_id.msg.msg_id, ref)
            self._replies.send_stored(  # type: ignore[union-attr]
                msg_id, ok, partial(self._refusal_frame, ref))
        else:
            # Numbered elsewhere (a shared backplane): the reply waits its turn.
            self._replies.send(msg_id.addCallbacks(  # type: ignore[union-attr]
                self._numbered, self._refused, callbackArgs=(ref,), errbackArgs=(ref,)))

    def _numbered(self, msg_id: int, ref: Ref) -> bytes:
        self.session.msgs_in += 1  # type: ignore[union-attr]
        return b"" if self.quiet else self._numbered_frame(msg_id, ref)

    def _numbered_frame(self, msg_id: int, ref: Ref) -> bytes:
        reply = self._with_ref("ok", ref)
        reply["id"] = msg_id
        return text_frame(reply)

    def _refusal_frame(self, ref: Ref, error: HubError) -> bytes:
        reply = self._with_ref("err", ref)
        reply["code"], reply["text"] = error.code, error.text
        return text_frame(reply)

    def _refused(self, failure: Failure, ref: Ref) -> bytes:
        if failure.check(HubError):
            return self._refusal_frame(ref, failure.value)  # type: ignore[arg-type]
        self._log.failure("publish from {client!r} failed", failure,
                          client=self.session.client)  # type: ignore[union-attr]
        reply = self._with_ref("err", ref)
        reply["code"], reply["text"] = ("internal-error",
                                        "the server failed this request and logged why")
        return text_frame(reply)

    def do_history(self, request: dict[str, Any], ref: Ref) -> None:
        channel = _string(request, "channel")
        session = self.session
        assert session is not None
        found = self.hub.read_history(channel, _count(request, "n"), session.client)  # type: ignore[arg-type]
        if isinstance(found, Deferred):
            self._replies.send(found.addCallbacks(  # type: ignore[union-attr]
                self._history, self._refused, callbackArgs=(ref,), errbackArgs=(ref,)))
        else:
            self._replies.send(self._history(found, ref))  # type: ignore[union-attr]

    def _history(self, found: list[Message], ref: Ref) -> bytes:
        session = self.session
        assert session is not None
        kept = fit(found, self.bodies, session.room())
        head = dumps(self._with_ref("ok", ref))[:-1]  # the object without its "}"
        body = head + b',"messages":[' + b",".join(kept) + b"]}"
        return encode_frame(OP_TEXT, body)

    def do_list(self, request: dict[str, Any], ref: Ref) -> None:
        pattern = _string(request, "pattern", required=False) or ">"
        after = _string(request, "after", required=False)
        if after is not None:
            channel_kind(after)
        hub = self.hub
        limit = hub.max_list
        chosen = hub.channels(pattern, after, limit + 1)
        more = len(chosen) > limit
        budget = hub.match_work() + LIST_WORK
        channels = []
        for ch in chosen[:limit]:
            if hub.match_work() > budget:
                more = True  # counting wildcard subscribers cost its budget (as LIST)
                break
            channels.append({"name": ch.name, "subscribers": len(hub.subscribers_of(ch.name)),
                             "published": ch.published, "kept": ch.kept})
        if more:
            self._ok(ref, channels=channels, more=True)
        else:
            self._ok(ref, channels=channels)

    def do_who(self, request: dict[str, Any], ref: Ref) -> None:
        channel = _string(request, "channel", required=False)
        after = _string(request, "after", required=False)
        if after is not None:
            if not is_client_id(after):
                raise HubError("bad-args", '"after" takes a client id')
            number = parse_number(after[1:], '"after"')
            after = f"c{number}"  # leading zeros gone: int() takes it
        clients: Sequence[ClientRecord | Member]
        if channel is not None:
            clients = self.hub.clients_of(self.hub.subscribers_of(channel))
        else:
            found = self.hub.everyone()
            if isinstance(found, Deferred):  # every server's, from Redis
                self._replies.send(found.addCallbacks(  # type: ignore[union-attr]
                    self._who, self._refused, callbackArgs=(ref, after), errbackArgs=(ref,)))
                return
            clients = found
        self._replies.send(self._who(clients, ref, after))  # type: ignore[union-attr]

    def _who(self, clients: Sequence[ClientRecord | Member], ref: Ref,
             after: str | None) -> bytes:
        """At most --max-list clients after ``after`` (an id), oldest first."""
        hub = self.hub
        hub.charge(len(clients))
        if after is not None:
            start = int(after[1:])
            clients = [c for c in clients if int(c.client_id[1:]) > start]
        limit = hub.max_list
        now = hub.clock.seconds()
        reply = self._with_ref("ok", ref)
        reply["clients"] = [
            {"id": c.client_id, "name": c.name, "connected_s": int(now - c.connected_at)}
            for c in clients[:limit]
        ]
        if len(clients) > limit:
            reply["more"] = True
        return text_frame(reply)

    def do_quiet(self, request: dict[str, Any], ref: Ref) -> None:
        on = request.get("on")
        if not isinstance(on, bool):
            raise HubError("bad-args", '"on" must be true or false')
        self.quiet = on
        self._ok(ref, quiet=on)

    def do_direct(self, request: dict[str, Any], ref: Ref) -> None:
        on, senders = request.get("on"), request.get("from")
        if isinstance(on, bool) and senders is None:
            taken: list[str] | None = None if on else []
            answer: Any = "on" if on else "off"
        elif on is None and isinstance(senders, list) and senders and all(
                isinstance(who, str) for who in senders):
            taken = answer = sorted(set(senders))
        else:
            raise HubError("bad-args", '"on": true or false, or "from": a list of names or ids')
        done = self.hub.take_direct(self.session.client, taken)  # type: ignore[union-attr,arg-type]
        if isinstance(done, Deferred):  # every server takes it first (--redis)
            self._replies.send(done.addCallbacks(  # type: ignore[union-attr]
                lambda _: text_frame({**self._with_ref("ok", ref), "direct": answer}),
                self._refused, errbackArgs=(ref,)))
        else:
            self._ok(ref, direct=answer)

    def do_ping(self, request: dict[str, Any], ref: Ref) -> None:
        self._replies.send(text_frame(self._with_ref("pong", ref)))  # type: ignore[union-attr]

    def do_auth(self, request: dict[str, Any], ref: Ref) -> None:
        user = _string(request, "user")
        password = _string(request, "password")
        if self._login is None:
            raise HubError("auth-failed", "this server has no users")
        assert user is not None and password is not None
        if not (_readable_ref(user) and _readable_ref(password)):
            # JSON's "\ud800" parses, but is no text a password could be.
            raise HubError("bad-args", '"user" and "password" must be text (no lone surrogates)')
        # Nothing more is read, and what autobahn has read already waits, until
        # the answer (a failure's comes a second later): requests behind an auth
        # run as the user it makes this client, and guesses go one at a time.
        self._waiting = []
        self.hold_input()
        try:
            d = self._login.attempt(user, password)
        except Exception:
            self._go_on()
            raise
        reply = d.addCallbacks(self._authenticated, self._not_authenticated,
                               callbackArgs=(ref,), errbackArgs=(ref,))
        self._replies.send(reply)  # type: ignore[union-attr]
        # What waited runs once the answer is written (or queued in order), so
        # its replies, and the messages it causes, come after the answer.
        reply.addBoth(self._auth_answered)

    def _authenticated(self, user: str | None, ref: Ref) -> bytes:
        if user is None:
            return b""  # the last failure: the socket is closing with auth-failed
        self._gate(False)
        reply = self._with_ref("ok", ref)
        reply["user"] = user
        return text_frame(reply)

    def _auth_answered(self, _: object) -> None:
        session = self.session
        if session is not None and session.close_reason is None:
            self._go_on()

    def _not_authenticated(self, failure: Failure, ref: Ref) -> bytes:
        if failure.check(HubError):
            error = failure.value
            assert isinstance(error, HubError)
            reply = self._with_ref("err", ref)
            reply["code"], reply["text"] = error.code, error.text
            return text_frame(reply)
        self._log.failure("auth from {client!r} failed", failure,
                          client=self.session.client if self.session else None)
        return _Replies.INTERNAL_ERROR

    def _go_on(self) -> None:
        """Run the frames that arrived while an auth was being checked (another
        auth among them holds the rest again), then read on."""
        waiting, self._waiting = self._waiting, None
        for payload, binary in waiting or ():
            self.onMessage(payload, binary)
        session = self.session
        if self._waiting is None and session is not None and not session.stalled():
            self.release_input()


OPS: dict[str, Callable[[JsonDoor, dict[str, Any], Ref], None]] = {
    "name": JsonDoor.do_name,
    "create": JsonDoor.do_create,
    "sub": JsonDoor.do_sub,
    "unsub": JsonDoor.do_unsub,
    "pub": JsonDoor.do_pub,
    "history": JsonDoor.do_history,
    "list": JsonDoor.do_list,
    "who": JsonDoor.do_who,
    "quiet": JsonDoor.do_quiet,
    "direct": JsonDoor.do_direct,
    "ping": JsonDoor.do_ping,
    "auth": JsonDoor.do_auth,
}


class JsonDoorFactory(DoorFactory):
    """Sessions of the JSON door: its counters, settings and shared codec."""

    kind = "ws"
    make_codec = staticmethod(json_codec)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bodies = _body_codec()


def _names_this_machine(host: str) -> bool:
    """Whether a Host header (``name[:port]``, ``[v6]:port``) is localhost or a
    loopback address."""
    name = host[1:host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _origin_key(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class JsonSocketFactory(WebSocketServerFactory):
    """autobahn's factory for one ``--ws`` listener: its limits and allowed origins."""

    protocol = JsonDoor  # type: ignore[assignment]

    def __init__(self, doors: JsonDoorFactory, origins: tuple[str, ...] = ()) -> None:
        super().__init__(server=f"txpubsub/{__version__}", protocols=[SUBPROTOCOL])
        self.doors = doors
        self.origins = frozenset(_origin_key(o) for o in origins)
        self.frame_limit = frame_limit(doors.hub.max_payload)
        self.setProtocolOptions(
            maxMessagePayloadSize=self.frame_limit,
            maxFramePayloadSize=self.frame_limit,
            # A frame too big gets close 1009 with a reason, not a dropped socket.
            failByDrop=False,
            openHandshakeTimeout=doors.settings.handshake_timeout,
            closeHandshakeTimeout=2,
            # Heartbeats are the session's (ping frames after --ping-interval).
            autoPingInterval=0,
            webStatus=False,
        )

    def setProtocolOptions(self, **options: Any) -> None:  # type: ignore[override]
        # "Origin: null" (a page opened from a file) is for origin_allowed to
        # decide: 403 by default, allowed by --ws-origin '*'. autobahn refuses it
        # with 400 otherwise, and resets allowNullOrigin on every call omitting it.
        options.setdefault("allowNullOrigin", True)
        super().setProtocolOptions(**options)

    def origin_allowed(self, origin: str, host: str, secure: bool,
                       loopback: bool = False) -> bool:
        """The page's own origin (scheme and the request's Host), or one of --ws-origin.

        On a loopback listener the page's own origin counts only when the Host
        names this machine (a loopback address or localhost): a page whose host
        name was rebound to 127.0.0.1 (DNS rebinding) is its own origin too.
        """
        key = _origin_key(origin)
        if key in self.origins or "*" in self.origins:
            return True
        host = host.strip().lower()
        if loopback and not _names_this_machine(host):
            return False
        return key == ("https://" if secure else "http://") + host


def json_socket_factory(hub: Any, listener: str, settings: DoorSettings,
                        origins: tuple[str, ...] = (), **shared: Any) -> JsonSocketFactory:
    """autobahn's factory for one ``--ws`` listener, its sessions sharing ``shared``
    (``batcher``, ``codec``) with the server's other doors."""
    return JsonSocketFactory(JsonDoorFactory(hub, listener, settings, **shared), origins)
