"""The Redis protocol door (``--resp``): RESP2, and RESP3 after ``HELLO 3``,
for the commands a pub/sub client sends (docs/resp.md).

Redis's rules hold on this door (PROTOCOL.md, "Redis protocol door"): one
``message`` per channel subscription and one ``pmessage`` per matching glob,
``PUBLISH`` answers the number of deliveries on this server, replies and
errors are worded as Redis words them. A ``SUBSCRIBE`` is a hub
subscription to a concrete channel, so messages flow with every other door;
a ``PSUBSCRIBE`` glob lives in the hub's glob index (Redis's globs are not
txpubsub's token patterns).
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txpubsub import __version__
from txpubsub.auth.login import Login
from txpubsub.core.hub import SYSTEM_CHANNELS
from txpubsub.core.message import Message
from txpubsub.core.pending import PendingPublish
from txpubsub.core.registry import ClientRecord
from txpubsub.doors.codecs import Codec
from txpubsub.doors.factory import DoorFactory
from txpubsub.doors.replies import ReplyQueue
from txpubsub.doors.session import DoorSettings, Session
from txpubsub.wire.errors import CloseReason, HubError
from txpubsub.wire.glob import compile_glob
from txpubsub.wire.names import channel_kind, check_name
from txpubsub.wire.resp import (
    OK,
    RespError,
    RespParser,
    array,
    bulk,
    error,
    integer,
    null,
    push_header,
    simple,
)

# What HELLO and INFO say: the Redis version whose replies this door follows.
REDIS_VERSION = "7.2.0"
# The longest PSUBSCRIBE glob.
MAX_GLOB = 1024
# Before a client that must authenticate has: Redis's limits for unauthenticated input.
PRE_AUTH_BULK = 16384
PRE_AUTH_ARGS = 64

_ALLOWED_SUBSCRIBED = frozenset((b"subscribe", b"unsubscribe", b"psubscribe", b"punsubscribe",
                                 b"ssubscribe", b"sunsubscribe", b"ping", b"quit", b"reset"))
_NO_AUTH = frozenset((b"auth", b"hello", b"quit", b"reset"))
_NOAUTH = error("NOAUTH Authentication required.")
_WRONGPASS = error("WRONGPASS invalid username-password pair or user is disabled.")
_INTERNAL = ReplyQueue.INTERNAL_ERROR


def _message_encoder(proto: int) -> Callable[[Message], bytes]:
    head = push_header(proto, 3) + b"$7\r\nmessage\r\n"

    def encode(msg: Message) -> bytes:
        channel = msg.channel.encode()
        payload = msg.payload
        return b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n" % (head, len(channel), channel, len(payload),
                                                   payload)

    return encode


def resp2_codec() -> Codec:
    """``message`` arrays, for RESP2 subscribers."""
    return Codec(_message_encoder(2))


def resp3_codec() -> Codec:
    """``message`` pushes, for RESP3 subscribers (after ``HELLO 3``)."""
    return Codec(_message_encoder(3))


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _arity_error(name: str) -> bytes:
    return error(f"ERR wrong number of arguments for '{name}' command")


def _silenced(e: HubError) -> bytes:
    return b""


def _hub_error(e: HubError) -> bytes:
    """A refusal from the hub, Redis-style: NOPERM for permissions, ERR with
    txpubsub's code otherwise."""
    if e.code == "forbidden":
        return error(f"NOPERM {e.text}")
    return error(f"ERR {e.code} {e.text}")


def unknown_command(args: list[bytes]) -> bytes:
    """Redis's words for a command it does not have (server.c, processCommand)."""
    listed = b""
    for arg in args[1:]:
        if len(listed) >= 128:
            break
        listed += b"'%s' " % arg[:128 - len(listed)]
    text = (b"-ERR unknown command '%s', with args beginning with: %s"
            % (args[0][:128], listed))
    return text.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"


def _unknown_subcommand(command: str, sub: bytes) -> bytes:
    return error(f"ERR unknown subcommand '{_text(sub[:128])}'. Try {command} HELP.")


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class RespDoor(Protocol):
    """One connection speaking RESP; its session is the hub's."""

    _log = Logger()
    transport: Any  # a TCP, TLS or Unix transport: more than ITransport promises

    def __init__(self, factory: RespDoorFactory) -> None:
        self.factory = factory
        self.hub = factory.hub
        self.session = factory.new_session(self)
        self.parser = RespParser(max_bulk=self.hub.max_payload,
                                 max_args=max(1024, 2 * self.hub.max_subscriptions),
                                 max_inline=factory.settings.max_line)
        self._max_line = factory.settings.max_line  # a connection keeps its framing
        self.proto = 2
        self._channels: dict[str, None] = {}  # SUBSCRIBE, in order
        self._globs: dict[bytes, None] = {}  # PSUBSCRIBE, in order
        self._queue: deque[list[bytes] | RespError] = deque()
        self._holding = False
        self._replies = ReplyQueue(self.session.send)
        self._login: Login | None = None
        self._authed = True
        self._lib = ("", "")  # CLIENT SETINFO LIB-NAME, LIB-VER
        # CLIENT REPLY: OFF silences replies until ON, SKIP the next command's;
        # pub/sub messages and (un)subscribe confirmations go out regardless.
        self._reply_off = False
        self._skip_next = False
        self._skip = False
        self._mute = False  # the running command's replies are silenced

    @property
    def client(self) -> ClientRecord | None:
        """The hub's record of this connection (None before it joined)."""
        return self.session.client

    # -- what the session asks of its door -----------------------------------

    def greet(self) -> None:
        """Redis says nothing first; a RESP client takes no direct messages."""
        client = self.session.client
        assert client is not None
        client.addressable = False
        auth = self.factory.auth
        if auth is not None:
            self._login = login = Login(auth, client, self._gate)
            login.start(client.name if client.name_locked else None)

    def _gate(self, gated: bool) -> None:
        if not gated:
            self._ungate()
            return
        self._authed = False
        self.parser.max_bulk = min(self.parser.max_bulk, PRE_AUTH_BULK)
        self.parser.max_args = PRE_AUTH_ARGS
        self.parser.unauthenticated = True

    def _ungate(self) -> None:
        self._authed = True
        self.parser.max_bulk = self.hub.max_payload
        self.parser.max_args = max(1024, 2 * self.hub.max_subscriptions)
        self.parser.unauthenticated = False

    def goodbye(self, reason: CloseReason, text: str) -> bytes:
        if reason is CloseReason.SLOW_CONSUMER or reason is CloseReason.QUIT:
            return b""
        if reason is CloseReason.TOO_MANY_CLIENTS:
            return error("ERR max number of clients reached")
        if reason is CloseReason.PROTECTED_MODE:
            return error(f"DENIED {text}")
        return error(f"ERR closing: {reason.value}{' ' + text if text else ''}")

    def heartbeat_probe(self) -> bytes | None:
        return None  # Redis does not ping its clients; TCP keepalive finds dead peers

    def channel_dropped(self, channel: str) -> None:
        """The admin dropped a channel: the client hears it unsubscribed."""
        self._channels.pop(channel, None)
        self.session.send(self._confirm(b"unsubscribe", channel.encode()))

    def hold_input(self) -> None:
        if not self._holding:
            self._holding = True
            self.transport.pauseProducing()

    def release_input(self) -> None:
        if (self._login is not None and self._login.pending) or self.session.stalled():
            # Pacing must not let commands through while an AUTH is checked, nor
            # an AUTH's answer while pacing holds them (the stall's end will).
            return
        if self._holding:
            self._holding = False
            if self.transport.disconnecting:
                return
            self.transport.resumeProducing()
            self._run()

    def deliver_glob(self, pattern: bytes, msg: Message, encoded: dict[int, bytes]) -> bool:
        """A ``pmessage``: encoded once per pattern, message and protocol version."""
        data = encoded.get(self.proto)
        if data is None:
            channel = msg.channel.encode()
            data = encoded[self.proto] = b"%s$8\r\npmessage\r\n%s%s%s" % (
                push_header(self.proto, 4), bulk(pattern), bulk(channel), bulk(msg.payload))
        return self.session.deliver_encoded(data)

    # -- the transport's calls -----------------------------------------------

    def connectionMade(self) -> None:
        keepalive = getattr(self.transport, "setTcpKeepAlive", None)
        if keepalive is not None:
            keepalive(True)
        # As Redis does: without it, a second reply or message written before
        # the peer ACKs the first waits out its delayed ACK (about 40 ms).
        no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if no_delay is not None:
            no_delay(True)
        self.session.connection_made(self.transport)

    def handshakeCompleted(self) -> None:
        self.session.handshake_completed()

    def connectionLost(self, reason: object = None) -> None:
        if self._login is not None:
            self._login.stop()
        for pattern in self._globs:
            self.hub.globs.remove(pattern, self)
        self._globs.clear()
        self._queue.clear()
        self.session.connection_lost(reason)

    def readConnectionLost(self) -> None:
        self.session.finish(CloseReason.PEER_CLOSED)

    def writeConnectionLost(self) -> None:
        """The peer stopped reading; the connection ends when it closes."""

    def dataReceived(self, data: bytes) -> None:
        session = self.session
        if session.close_reason is not None or session.client is None:
            return
        parser = self.parser
        max_payload = self.hub.max_payload  # a reload changes it for every connection
        if self._authed:
            parser.max_bulk = max_payload
            parser.max_args = max(1024, 2 * self.hub.max_subscriptions)
        events = parser.feed(data)
        if events:
            session.heard = True
            self._queue.extend(events)
        # One command's bytes at most: a payload and its headers, or a
        # SUBSCRIBE of many channels (docs/resp.md).
        max_input = max_payload + 2 * self._max_line
        if parser.buffered() > max_input:
            parser.failed = True
            self._queue.append(RespError(f"Protocol error: a command over {max_input} bytes"))
        self._run()
        session.after_read()

    def _run(self) -> None:
        queue = self._queue
        session = self.session
        hub = self.hub
        hub.reading(session)  # costly matching holds the rest of the input (yield_turn)
        try:
            if len(queue) <= COMMANDS_PER_TURN:
                self._commands(queue, session)
                return
            # Thousands of short commands in one read: the others get their turn.
            now = deque(queue.popleft() for _ in range(COMMANDS_PER_TURN))
            self._commands(now, session)
            queue.extendleft(reversed(now))  # not run (held, or closing): first next time
            if queue and not self._holding and session.close_reason is None:
                session.yield_turn()
        finally:
            hub.reading(None)

    def _commands(self, queue: deque[list[bytes] | RespError], session: Session) -> None:
        while queue and not self._holding and session.close_reason is None:
            event = queue.popleft()
            if isinstance(event, RespError):
                self._replies.send(error("ERR " + event.text))
                queue.clear()
                session.finish(CloseReason.BAD_FRAME)
                return
            self._mute = self._reply_off or self._skip
            try:
                self._command(event)
            except HubError as e:
                self._reply(_hub_error(e))
            except Exception:
                self._log.failure("command {name} from {client!r} failed",
                                  name=event[0][:32], client=session.client)
                self._reply(_INTERNAL)
            # CLIENT REPLY SKIP silences the command after it (Redis's resetClient).
            self._skip, self._skip_next = self._skip_next, False
            self._mute = False

    def _command(self, args: list[bytes]) -> None:
        name = args[0].lower()
        entry = COMMANDS.get(name)
        if entry is None:
            self._reply(unknown_command(args))
            return
        handler, arity = entry
        if (arity > 0 and len(args) != arity) or (arity < 0 and len(args) < -arity):
            self._reply(_arity_error(name.decode()))
            return
        if not self._authed and name not in _NO_AUTH:
            self._reply(_NOAUTH)
            return
        if self.proto == 2 and name not in _ALLOWED_SUBSCRIBED and (self._channels
                                                                    or self._globs):
            self._reply(error(
                f"ERR Can't execute '{name.decode()}': only (P|S)SUBSCRIBE / "
                "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"))
            return
        handler(self, args)

    def _reply(self, reply: bytes | Deferred[bytes]) -> None:
        """The running command's reply, in order, unless CLIENT REPLY silenced it."""
        if self._mute:
            if isinstance(reply, Deferred):
                # Still queued, so a later reply cannot overtake where it was.
                self._replies.send(reply.addCallback(lambda _: b""))
            return
        self._replies.send(reply)

    def _answer(self, reply: bytes) -> bytes:
        """``reply``, or nothing while CLIENT REPLY silences replies."""
        return b"" if self._mute else reply

    def _push(self, data: bytes) -> None:
        """(Un)subscribe confirmations: out in order even while replies are
        silenced, as Redis sends them (CLIENT_PUSHING)."""
        self._replies.send(data)

    # -- pub/sub -----------------------------------------------------------

    def _count(self) -> int:
        return len(self._channels) + len(self._globs)

    def _confirm(self, kind: bytes, name: bytes | None) -> bytes:
        return b"%s%s%s%s" % (push_header(self.proto, 3), bulk(kind),
                              null(self.proto) if name is None else bulk(name),
                              integer(self._count()))

    def _room(self) -> None:
        """HubError when one more subscription passes --max-subscriptions."""
        if self._count() >= self.hub.max_subscriptions:
            raise HubError("too-many-subscriptions",
                           f"at most {self.hub.max_subscriptions} per connection")

    def do_subscribe(self, args: list[bytes]) -> None:
        names = []
        for raw in args[1:]:
            try:
                name = raw.decode()
                channel_kind(name)
            except (UnicodeDecodeError, HubError):
                # Every name is checked before any is subscribed.
                self._reply(error(
                    f"ERR bad-channel {_text(raw[:64])!r} is not a txpubsub channel name "
                    "(1-128 of A-Z a-z 0-9 _ - : / in dot-separated tokens; for patterns "
                    "use PSUBSCRIBE)"))
                return
            names.append(name)
        client = self.session.client
        assert client is not None
        out = []
        for name in names:
            if name not in self._channels:
                try:
                    self._room()
                    self.hub.subscribe(client, name)
                except HubError as e:
                    out.append(self._answer(_hub_error(e)))
                    continue
                self._channels[name] = None
            out.append(self._confirm(b"subscribe", name.encode()))
        self._push(b"".join(out))

    def do_unsubscribe(self, args: list[bytes]) -> None:
        client = self.session.client
        assert client is not None
        names = [raw.decode("utf-8", "surrogateescape") for raw in args[1:]]
        if not names:
            names = list(self._channels)
            if not names:
                self._push(self._confirm(b"unsubscribe", None))
                return
        out = []
        for name in names:
            if name in self._channels:
                del self._channels[name]
                try:
                    self.hub.unsubscribe(client, name)
                except HubError:
                    pass  # dropped by the admin meanwhile
            out.append(self._confirm(b"unsubscribe", name.encode("utf-8", "surrogateescape")))
        self._push(b"".join(out))

    def do_psubscribe(self, args: list[bytes]) -> None:
        for pattern in args[1:]:
            if len(pattern) > MAX_GLOB:
                self._reply(error(f"ERR bad-channel a pattern is at most {MAX_GLOB} bytes"))
                return
        hub = self.hub
        out = []
        for pattern in args[1:]:
            if pattern not in self._globs:
                try:
                    self._room()
                    if hub.subscription_count() >= hub.max_subscriptions_total:
                        raise HubError("too-many-subscriptions", "the server holds its most "
                                       f"subscriptions ({hub.max_subscriptions_total})")
                except HubError as e:
                    out.append(self._answer(_hub_error(e)))
                    continue
                hub.globs.add(pattern, self)
                self._globs[pattern] = None
            out.append(self._confirm(b"psubscribe", pattern))
        self._push(b"".join(out))

    def do_punsubscribe(self, args: list[bytes]) -> None:
        patterns = args[1:] or list(self._globs)
        if not patterns:
            self._push(self._confirm(b"punsubscribe", None))
            return
        out = []
        for pattern in patterns:
            if pattern in self._globs:
                del self._globs[pattern]
                self.hub.globs.remove(pattern, self)
            out.append(self._confirm(b"punsubscribe", pattern))
        self._push(b"".join(out))

    def do_ssubscribe(self, args: list[bytes]) -> None:
        self._reply(error("ERR This instance has cluster support disabled"))

    def do_publish(self, args: list[bytes]) -> None:
        try:
            channel = args[1].decode()
        except UnicodeDecodeError:
            raise HubError("bad-channel", "channel names are UTF-8") from None
        session = self.session
        client = session.client
        assert client is not None
        counters = self.hub.counters
        before = counters.msgs_out
        msg_id = self.hub.publish(client.sender, channel, args[2], client)
        if isinstance(msg_id, int):
            session.msgs_in += 1
            # The deliveries this publish made on this server (Redis Cluster's count).
            self._reply(integer(counters.msgs_out - before))
            return
        # Being committed by a durable store, or numbered elsewhere (a shared
        # backplane): this server's readers now.
        readers = len(self.hub.subscribers_of(channel))
        if type(msg_id) is PendingPublish:
            if self._mute:  # CLIENT REPLY OFF or SKIP: not even an error
                self._replies.send_stored(msg_id, b"", _silenced)
            else:
                self._replies.send_stored(msg_id, integer(readers), _hub_error)
            return
        self._reply(msg_id.addCallbacks(  # type: ignore[union-attr]
            self._published, self._refused, callbackArgs=(readers,)))

    def _published(self, msg_id: int, readers: int) -> bytes:
        self.session.msgs_in += 1
        return integer(readers)

    def _refused(self, failure: Failure) -> bytes:
        if failure.check(HubError):
            return _hub_error(failure.value)  # type: ignore[arg-type]
        self._log.failure("publish from {client!r} failed", failure, client=self.session.client)
        return _INTERNAL

    def do_pubsub(self, args: list[bytes]) -> None:
        sub = args[1].lower()
        hub = self.hub
        if sub in (b"channels", b"shardchannels"):
            if len(args) > 3:
                self._reply(_arity_error(f"pubsub|{sub.decode()}"))
                return
            names: list[bytes] = []
            if sub == b"channels":
                names = self._active_channels(compile_glob(args[2]) if len(args) == 3 else None)
            self._reply(array([bulk(n) for n in names]))
        elif sub in (b"numsub", b"shardnumsub"):
            items = []
            for raw in args[2:]:
                found = hub.channel(_text(raw)) if sub == b"numsub" else None
                items += [bulk(raw), integer(len(found.subscribers) if found is not None else 0)]
            self._reply(array(items))
        elif sub == b"numpat":
            if len(args) != 2:
                self._reply(_arity_error("pubsub|numpat"))
                return
            self._reply(integer(len(hub.globs)))
        elif sub == b"help":
            self._reply(array([simple(line) for line in PUBSUB_HELP]))
        else:
            self._reply(_unknown_subcommand("PUBSUB", args[1]))

    def _active_channels(self, match: Callable[[bytes], Any] | None) -> list[bytes]:
        """Channels someone subscribes to by name (any door), sorted, that
        ``match`` (a glob) matches: Redis's active channels."""
        hub = self.hub
        chosen = list(hub.channels(">"))
        chosen += [c for c in map(hub.channel, SYSTEM_CHANNELS) if c is not None]
        names = []
        for ch in chosen:
            name = ch.name.encode()
            if ch.subscribers and (match is None or match(name)):
                names.append(name)
        return names

    # -- connection --------------------------------------------------------

    def do_ping(self, args: list[bytes]) -> None:
        if len(args) > 2:
            self._reply(_arity_error("ping"))
        elif self.proto == 2 and (self._channels or self._globs):
            self._reply(b"*2\r\n$4\r\npong\r\n" + bulk(args[1] if len(args) == 2 else b""))
        elif len(args) == 2:
            self._reply(bulk(args[1]))
        else:
            self._reply(b"+PONG\r\n")

    def do_echo(self, args: list[bytes]) -> None:
        self._reply(bulk(args[1]))

    def do_quit(self, args: list[bytes]) -> None:
        self._reply(OK)
        self.session.finish(CloseReason.QUIT)

    def do_select(self, args: list[bytes]) -> None:
        try:
            db = int(args[1])
        except ValueError:
            self._reply(error("ERR value is not an integer or out of range"))
            return
        self._reply(OK if db == 0 else error("ERR DB index is out of range"))

    def do_reset(self, args: list[bytes]) -> None:
        """Back to a fresh connection: no subscriptions, RESP2, no name, and
        (with --users) no user but one from a certificate."""
        client = self.session.client
        assert client is not None
        for name in list(self._channels):
            try:
                self.hub.unsubscribe(client, name)
            except HubError:
                pass
        self._channels.clear()
        for pattern in self._globs:
            self.hub.globs.remove(pattern, self)
        self._globs.clear()
        self._set_proto(2)
        if not client.name_locked:
            self.hub.registry.unname(client)
            if self._login is not None:
                self._login.reset()  # gated again (and timed) if it must AUTH
        self._lib = ("", "")
        # As Redis's clearClientConnectionState: a SKIP already in force holds.
        self._reply_off = self._skip_next = False
        self._mute = self._skip
        self._reply(b"+RESET\r\n")

    def _set_proto(self, proto: int) -> None:
        if proto != self.proto:
            self.proto = proto
            factory = self.factory
            self.session.use_codec(factory.codec3 if proto == 3 else factory.codec)

    def do_hello(self, args: list[bytes]) -> None:
        proto = self.proto
        if len(args) >= 2:
            try:
                proto = int(args[1])
            except ValueError:
                self._reply(
                    error("ERR Protocol version is not an integer or out of range"))
                return
            if proto not in (2, 3):  # before the options, as Redis checks it
                self._reply(error("NOPROTO unsupported protocol version"))
                return
        auth: tuple[bytes, bytes] | None = None
        setname: bytes | None = None
        i = 2
        while i < len(args):
            option = args[i].lower()
            left = len(args) - i - 1
            if option == b"auth" and left >= 2:
                auth = (args[i + 1], args[i + 2])
                i += 3
            elif option == b"setname" and left >= 1:
                setname = args[i + 1]
                i += 2
            else:
                self._reply(error(f"ERR Syntax error in HELLO option '{_text(args[i])}'"))
                return
        if not self._authed and auth is None:
            self._reply(error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise "
                "the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the "
                "client and select the RESP protocol version at the same time"))
            return
        if setname is not None:
            check_name(_text(setname))  # refused before any AUTH, as Redis does
        if auth is None:
            self._reply(self._hello(proto, setname))
            return
        self._send_auth(self._authenticate(_text(auth[0]), _text(auth[1]),
                                           then=lambda: self._hello(proto, setname)))

    def _hello(self, proto: int, setname: bytes | None) -> bytes:
        client = self.session.client
        assert client is not None
        if setname is not None:
            try:
                self.hub.set_name(client, _text(setname))
            except HubError as e:
                return _hub_error(e)
        self._set_proto(proto)
        pairs = [bulk("server"), bulk("redis"), bulk("version"), bulk(REDIS_VERSION),
                 bulk("proto"), integer(proto), bulk("id"), integer(int(client.client_id[1:])),
                 bulk("mode"), bulk("standalone"), bulk("role"), bulk("master"),
                 bulk("modules"), array([]), bulk("txpubsub"), bulk(__version__)]
        return array(pairs, b"%" if proto == 3 else b"*")

    def do_auth(self, args: list[bytes]) -> None:
        if len(args) > 3:
            self._reply(error("ERR syntax error"))
            return
        if len(args) == 2:
            user, password = "default", _text(args[1])
        else:
            user, password = _text(args[1]), _text(args[2])
        self._send_auth(self._authenticate(user, password, len(args) == 2))

    def _send_auth(self, reply: bytes | Deferred[bytes]) -> None:
        self._reply(reply)
        if isinstance(reply, Deferred):
            # Input goes on once the answer is written (or queued in order).
            reply.addBoth(lambda _: self.release_input())

    def _authenticate(self, user: str, password: str, legacy: bool = False,
                      then: Callable[[], bytes] | None = None) -> bytes | Deferred[bytes]:
        """AUTH and HELLO AUTH: ``+OK`` (or what ``then`` answers once the user
        is in), or a Redis error; now, or later."""
        login = self._login
        if login is None:
            if legacy:
                return error("ERR AUTH <password> called without any password configured for "
                             "the default user. Are you sure your configuration is correct?")
            return _WRONGPASS
        try:
            d = login.attempt(user, password)
        except HubError as e:
            return error(f"ERR {e.text}")
        # Nothing more is read until the check is done, so commands pipelined
        # after AUTH run as the user it makes this client.
        self.hold_input()
        return d.addCallbacks(self._authenticated, self._not_authenticated,
                              callbackArgs=(then,))

    def _authenticated(self, user: str | None, then: Callable[[], bytes] | None) -> bytes:
        if user is None:
            return b""  # the last failure: the connection is closing
        self._ungate()
        return OK if then is None else then()

    def _not_authenticated(self, failure: Failure) -> bytes:
        if failure.check(HubError):
            return _WRONGPASS
        self._log.failure("AUTH from {client!r} failed", failure, client=self.session.client)
        return _INTERNAL

    def do_client(self, args: list[bytes]) -> None:
        sub = args[1].lower()
        client = self.session.client
        assert client is not None
        handler = CLIENT_COMMANDS.get(sub)
        if handler is None:
            self._reply(_unknown_subcommand("CLIENT", args[1]))
            return
        function, arity = handler
        if (arity > 0 and len(args) != arity) or (arity < 0 and len(args) < -arity):
            self._reply(_arity_error(f"client|{sub.decode()}"))
            return
        self._reply(function(self, client, args))

    def _client_setname(self, client: ClientRecord, args: list[bytes]) -> bytes:
        if not args[2]:
            if client.name_locked:
                raise HubError("forbidden", "your name comes from your certificate")
            self.hub.registry.unname(client)
            return OK
        self.hub.set_name(client, _text(args[2]))
        return OK

    def _client_getname(self, client: ClientRecord, args: list[bytes]) -> bytes:
        return null(self.proto) if client.name is None else bulk(client.name)

    def _client_id(self, client: ClientRecord, args: list[bytes]) -> bytes:
        return integer(int(client.client_id[1:]))

    def _client_setinfo(self, client: ClientRecord, args: list[bytes]) -> bytes:
        attr = args[2].lower()
        if attr in (b"lib-name", b"lib-ver") and any(b < 33 or b > 126 for b in args[3]):
            # Redis's validateClientAttr: CLIENT INFO stays space-separated fields.
            return error(f"ERR {_text(args[2])} cannot contain spaces, newlines or special "
                         "characters.")
        if attr == b"lib-name":
            self._lib = (_text(args[3]), self._lib[1])
        elif attr == b"lib-ver":
            self._lib = (self._lib[0], _text(args[3]))
        else:
            return error(f"ERR Unrecognized option '{_text(args[2])}'")
        return OK

    def _client_info(self, client: ClientRecord, args: list[bytes]) -> bytes:
        age = int(self.hub.clock.seconds() - client.connected_at)
        line = (f"id={client.client_id[1:]} addr={client.address} name={client.name or ''} "
                f"age={age} db=0 sub={len(self._channels)} psub={len(self._globs)} "
                f"resp={self.proto} user={client.user or 'default'} lib-name={self._lib[0]} "
                f"lib-ver={self._lib[1]}\n")
        return bulk(line)

    def _client_reply(self, client: ClientRecord, args: list[bytes]) -> bytes:
        mode = args[2].lower()
        if mode == b"on":
            self._reply_off = self._skip = self._mute = False
            return OK
        if mode == b"off":
            self._reply_off = True
        elif mode == b"skip":
            if not self._reply_off:
                self._skip_next = True
        else:
            return error("ERR syntax error")
        return b""  # silenced from this very reply on, as in Redis

    def _client_on_off(self, client: ClientRecord, args: list[bytes]) -> bytes:
        """NO-EVICT, NO-TOUCH: nothing is evicted or touched here, but the
        argument is checked as Redis checks it."""
        return OK if args[2].lower() in (b"on", b"off") else error("ERR syntax error")

    def _client_help(self, client: ClientRecord, args: list[bytes]) -> bytes:
        return array([simple(line) for line in CLIENT_HELP])

    def do_command(self, args: list[bytes]) -> None:
        """No command table to show: empty answers, so clients that look
        (redis-cli's hints) go on without one."""
        sub = args[1].lower() if len(args) > 1 else b""
        if sub == b"count":
            self._reply(integer(0))
        elif sub == b"docs":
            self._reply(array([], b"%" if self.proto == 3 else b"*"))
        elif sub == b"info":
            self._reply(array([null(self.proto)] * (len(args) - 2)))
        else:
            self._reply(array([]))

    def do_config(self, args: list[bytes]) -> None:
        """``CONFIG GET`` answers the few parameters clients read on connect
        (redis-benchmark asks for ``save`` and ``appendonly``); nothing can be set."""
        if args[1].lower() != b"get" or len(args) < 3:
            if args[1].lower() == b"get":
                self._reply(_arity_error("config|get"))
            else:
                self._reply(_unknown_subcommand("CONFIG", args[1]))
            return
        items: list[bytes] = []
        for wanted in args[2:]:
            match = compile_glob(wanted.lower())
            for name, value in CONFIG.items():
                if match(name):
                    items += [bulk(name), bulk(value)]
        self._reply(array(items, b"%" if self.proto == 3 else b"*"))

    def do_flush(self, args: list[bytes]) -> None:
        """``FLUSHALL``/``FLUSHDB [ASYNC|SYNC]``: there are no keys to delete, so
        the keyspace is empty as asked (history is not keyspace and stays)."""
        if len(args) > 2 or (len(args) == 2 and args[1].lower() not in (b"async", b"sync")):
            self._reply(error("ERR syntax error"))
            return
        self._reply(OK)

    def do_function(self, args: list[bytes]) -> None:
        """``FUNCTION FLUSH``: there are no functions, so none are left."""
        sub = args[1].lower()
        if sub == b"flush":
            self.do_flush(args[1:])
        elif sub == b"help":
            self._reply(array([simple(line) for line in FUNCTION_HELP]))
        else:
            self._reply(_unknown_subcommand("FUNCTION", args[1]))

    def do_info(self, args: list[bytes]) -> None:
        """The sections Redis has that mean something here; ``INFO <section>...``
        answers those only (an unknown one: nothing), as Redis does."""
        stats = self.hub.stats()
        sections = {
            "server": [f"redis_version:{REDIS_VERSION}", f"txpubsub_version:{__version__}",
                       "redis_mode:standalone", f"uptime_in_seconds:{stats['uptime_s']}"],
            "clients": [f"connected_clients:{stats['clients']}"],
            # As Redis counts: channels with a subscriber by name, distinct globs.
            "stats": [f"pubsub_channels:{len(self._active_channels(None))}",
                      f"pubsub_patterns:{len(self.hub.globs)}"],
        }
        wanted = {arg.lower().decode("utf-8", "replace") for arg in args[1:]}
        if not wanted or wanted & {"all", "default", "everything"}:
            wanted = set(sections)
        text = "\r\n".join(f"# {name.capitalize()}\r\n" + "".join(f"{field}\r\n"
                                                                  for field in fields)
                           for name, fields in sections.items() if name in wanted)
        self._reply(bulk(text))

# Commands run in one go; a read of more waits for the next reactor turn
# after them (as the line door's LINES_PER_TURN).
COMMANDS_PER_TURN = 1000

# What CONFIG GET knows: nothing is saved the way Redis saves, one database.
CONFIG = {b"save": b"", b"appendonly": b"no", b"databases": b"1"}

PUBSUB_HELP = (
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "HELP",
    "    Print this help.",
)
FUNCTION_HELP = (
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "FLUSH [ASYNC|SYNC]", "    Delete all libraries (there are none).",
    "HELP", "    Print this help.",
)
CLIENT_HELP = (
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME", "    Return the name of the current connection.",
    "ID", "    Return the ID of the current connection.",
    "INFO", "    Return information about the current client connection.",
    "SETNAME <name>", "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>", "    Set client meta attr (LIB-NAME, LIB-VER).",
    "REPLY (ON|OFF|SKIP)", "    Control the replies sent to the current connection.",
    "HELP", "    Print this help.",
)

# Name -> (handler, Redis arity: n exactly, -n at least n, the name counted).
COMMANDS: dict[bytes, tuple[Callable[[RespDoor, list[bytes]], None], int]] = {
    b"subscribe": (RespDoor.do_subscribe, -2),
    b"unsubscribe": (RespDoor.do_unsubscribe, -1),
    b"psubscribe": (RespDoor.do_psubscribe, -2),
    b"punsubscribe": (RespDoor.do_punsubscribe, -1),
    b"ssubscribe": (RespDoor.do_ssubscribe, -2),
    b"sunsubscribe": (RespDoor.do_ssubscribe, -1),
    b"spublish": (RespDoor.do_ssubscribe, 3),
    b"publish": (RespDoor.do_publish, 3),
    b"pubsub": (RespDoor.do_pubsub, -2),
    b"ping": (RespDoor.do_ping, -1),
    b"echo": (RespDoor.do_echo, 2),
    b"quit": (RespDoor.do_quit, -1),
    b"reset": (RespDoor.do_reset, 1),
    b"hello": (RespDoor.do_hello, -1),
    b"auth": (RespDoor.do_auth, -2),
    b"client": (RespDoor.do_client, -2),
    b"select": (RespDoor.do_select, 2),
    b"command": (RespDoor.do_command, -1),
    b"config": (RespDoor.do_config, -2),
    b"info": (RespDoor.do_info, -1),
    b"flushall": (RespDoor.do_flush, -1),
    b"flushdb": (RespDoor.do_flush, -1),
    b"function": (RespDoor.do_function, -2),
}

CLIENT_COMMANDS: dict[bytes, tuple[Callable[[RespDoor, ClientRecord, list[bytes]], bytes],
                                   int]] = {
    b"setname": (RespDoor._client_setname, 3),
    b"getname": (RespDoor._client_getname, 2),
    b"id": (RespDoor._client_id, 2),
    b"setinfo": (RespDoor._client_setinfo, 4),
    b"info": (RespDoor._client_info, 2),
    b"reply": (RespDoor._client_reply, 3),
    b"no-evict": (RespDoor._client_on_off, 3),
    b"no-touch": (RespDoor._client_on_off, 3),
    b"help": (RespDoor._client_help, 2),
}


class RespDoorFactory(DoorFactory):
    """The ``--resp`` listeners: ``codec`` encodes for RESP2 sessions, ``codec3``
    for those that said ``HELLO 3`` (both shared by every RESP listener)."""

    kind = "resp"
    protocol = RespDoor
    make_codec = staticmethod(resp2_codec)

    def __init__(self, hub: Any, listener: str = "-", settings: DoorSettings | None = None, *,
                 codec3: Codec | None = None, **kwargs: Any) -> None:
        super().__init__(hub, listener, settings, **kwargs)
        self.codec3 = codec3 or resp3_codec()
