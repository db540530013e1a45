"""The client line protocol (PROTOCOL.md) and its factory: bytes in, hub calls, bytes out."""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener, ISSLTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txpubsub import __version__
from txpubsub.auth.login import Login
from txpubsub.core.channel import Channel
from txpubsub.core.hub import LIST_WORK, Session
from txpubsub.core.message import Message
from txpubsub.core.pending import PendingPublish
from txpubsub.core.registry import ClientRecord, Member
from txpubsub.doors.codecs import line_codec
from txpubsub.doors.factory import DoorFactory
from txpubsub.doors.framing import LineFramer
from txpubsub.doors.replies import ReplyQueue
from txpubsub.doors.session import fit
from txpubsub.wire.errors import CloseReason, HubError, shorten
from txpubsub.wire.line import encode_bye
from txpubsub.wire.names import channel_kind, is_client_id, parse_number, split_args

# Listing lines go out this many at a time, each batch counted against
# --max-buffer before the next is made.
LISTING_BATCH = 64

HELP_LINES = (
    "AUTH <user> <password>           log in as a user of the server (--users)",
    "NAME <name>                      set or change your name",
    "CREATE <channel> [history=<n>]   create a channel keeping the last n messages",
    "SUB <pattern>                    subscribe; * is one token, > the rest (news.>)",
    "SUB <channel> last=<n>           subscribe after replaying the last n messages",
    "SUB <channel> since=<id> [epoch=<e>]  replay what came after id, then go live",
    "UNSUB <pattern>                  unsubscribe",
    "PUB <channel> <text>             publish the rest of the line; @name for a direct message",
    "PUBB <channel> <nbytes>          publish the next nbytes raw bytes, then CRLF",
    "HISTORY <channel> [<n>]          the last n kept messages, oldest first",
    "LIST [<pattern>] [after=<name>]  channels with subscribers, published and kept counts",
    "WHO [<channel>] [after=<id>]     connected clients, or the subscribers of a channel",
    "QUIET on|off                     no reply to successful PUB/PUBB when on",
    "DIRECT on|off                    take direct messages (@yourname) from everyone, or nobody",
    "DIRECT from <name or id> ...     take direct messages from these senders only",
    "PING                             the server answers PONG",
    "PONG                             the answer to the server's PING (any line will do)",
    "HELP                             this text",
    "QUIT                             say goodbye and close",
)
_HELP = b"".join(b"HELP %s\r\n" % line.encode() for line in HELP_LINES) + b"+OK\r\n"


def _options(args: list[str], known: tuple[str, ...]) -> dict[str, str]:
    """``key=value`` arguments, each known key at most once."""
    options: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key not in known or key in options:
            raise HubError("bad-args", f"unexpected {shorten(arg)!r}; options: "
                                       + ", ".join(k + "=" for k in known))
        options[key] = value
    return options


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class LineDoor(LineFramer):
    """One client connection speaking the line protocol; its session is the hub's."""

    _log = Logger()
    __slots__ = ("_auth", "_commands", "_login", "_pub_reply", "_pubb_channel", "_pubb_refusal",
                 "_replies", "codec", "hub", "quiet", "session")

    def __init__(self, factory: LineDoorFactory) -> None:
        super().__init__()
        self.MAX_LENGTH = factory.settings.max_line
        self.hub = factory.hub
        self.codec = factory.codec
        self.session = factory.new_session(self)
        self.quiet = False
        self._pubb_channel: str | None = None
        self._pubb_refusal = b""
        self._replies = ReplyQueue(self.session.send)
        self._pub_reply = self._published  # bound once: made per PUB otherwise
        self._commands = COMMANDS  # PRE_AUTH until a client that must authenticate has
        self._login: Login | None = None
        self._auth = factory.auth

    # -- what the session asks of its door -----------------------------------

    def greet(self) -> None:
        client = self.session.client
        assert client is not None
        auth = self._auth
        if auth is not None:
            self._login = login = Login(auth, client, self._gate)
            login.start(client.name if client.name_locked else None)
        info = {
            "server": "txpubsub",
            "version": __version__,
            "proto": 1,
            "client_id": client.client_id,
            "max_line": self.MAX_LENGTH,
            "max_payload": self.hub.max_payload,
            "tls": ISSLTransport.providedBy(self.transport),
            "auth_required": self._commands is PRE_AUTH,
            "epoch": self.hub.epoch,
        }
        if client.user is not None:
            info["user"] = client.user  # from the client's TLS certificate
        if client.name_locked:
            info["name"] = client.name  # from the client's TLS certificate
        self.session.send(b"INFO %s\r\n" % json.dumps(info, separators=(",", ":")).encode())

    def _gate(self, gated: bool) -> None:
        self._commands = PRE_AUTH if gated else COMMANDS

    def goodbye(self, reason: CloseReason, text: str) -> bytes:
        return encode_bye(reason.value, text)

    def heartbeat_probe(self) -> bytes | None:
        return b"PING\r\n"

    def channel_dropped(self, channel: str) -> None:
        self.session.send(b"DROP %s\r\n" % channel.encode())

    # -- the transport's calls -----------------------------------------------

    def connectionMade(self) -> None:
        self.session.connection_made(self.transport)

    def handshakeCompleted(self) -> None:
        self.session.handshake_completed()

    def connectionLost(self, reason: object = None) -> None:
        if self._login is not None:
            self._login.stop()
        self.session.connection_lost(reason)

    def release_input(self) -> None:
        # Pacing must not let input through while an AUTH is being checked,
        # nor an AUTH's answer while pacing holds it (the stall's end will).
        if (self._login is None or not self._login.pending) and not self.session.stalled():
            super().release_input()

    # A peer that sends its last commands and shuts down its side
    # (printf ... | nc -N) still gets every reply.
    def readConnectionLost(self) -> None:
        self.session.finish(CloseReason.PEER_CLOSED)

    def writeConnectionLost(self) -> None:
        """The peer stopped reading; the connection ends when it closes."""

    def dataReceived(self, data: bytes) -> None:
        session = self.session
        if self.receiving_payload():
            session.heard = True  # a slow upload is alive even before its payload is whole
        hub = self.hub
        hub.reading(session)  # costly matching holds the rest of the input (yield_turn)
        super().dataReceived(data)
        hub.reading(None)
        session.after_read()

    def lines_spent(self) -> None:
        # A read of thousands of short commands: the others get their turn.
        self.session.yield_turn()

    def lineLengthExceeded(self, line: bytes) -> None:
        self.session.close(CloseReason.LINE_TOO_LONG,
                           f"lines are at most {self.MAX_LENGTH} bytes")

    # -- input -------------------------------------------------------------

    def frameError(self) -> None:
        self._pubb_channel = None
        self.session.close(CloseReason.BAD_FRAME, "a PUBB payload must be followed by CRLF or LF")

    def lineReceived(self, line: bytes) -> None:
        self.session.heard = True
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.startswith(b" "):
            line = line.lstrip(b" ")
        if not line:
            return
        verb, _, rest = line.partition(b" ")
        if not line.isascii():
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                self._bad_encoding(verb, rest)
                return
        commands = self._commands
        command = commands.get(verb) or commands.get(verb.upper())
        try:
            if command is None:
                raise HubError(
                    "unknown-command", f"unknown command {shorten(verb.decode())!r}, try HELP"
                )
            command(self, rest)
        except HubError as e:
            self._replies.send(e.as_line())
        except Exception:
            self._log.failure(
                "command {verb} from {client!r} failed", verb=verb, client=self.session.client
            )
            self._replies.send(ReplyQueue.INTERNAL_ERROR)

    def _bad_encoding(self, verb: bytes, rest: bytes) -> None:
        refusal = b"-ERR bad-encoding lines must be UTF-8\r\n"
        count = rest.rsplit(b" ", 1)[-1]
        nbytes = -1
        if verb.upper() == b"PUBB" and count.isdigit():
            with suppress(HubError):  # too many digits: over --max-payload all the same
                nbytes = parse_number(count.decode(), "<nbytes>")
        if 0 <= nbytes <= self.hub.max_payload:
            # Refused, but its payload is still read, so it cannot pass for commands.
            self._pubb_channel = None
            self._pubb_refusal = refusal
            self.expect_payload(nbytes)
            self.discard_payload()
        else:
            self._replies.send(refusal)

    def payloadReceived(self, payload: bytes) -> None:
        self.session.heard = True
        channel, self._pubb_channel = self._pubb_channel, None
        if channel is None:
            refusal, self._pubb_refusal = self._pubb_refusal, b""
            self._replies.send(refusal)
            return
        try:
            self._publish(channel, payload)
        except HubError as e:
            self._replies.send(e.as_line())
        except Exception:
            self._log.failure("PUBB from {client!r} failed", client=self.session.client)
            self._replies.send(ReplyQueue.INTERNAL_ERROR)

    def _publish(self, channel: str, payload: bytes) -> None:
        client = self.session.client
        msg_id = self.hub.publish(client.sender, channel, payload, client)  # type: ignore[union-attr]
        if isinstance(msg_id, int):
            self.session.msgs_in += 1
            if not self.quiet:
                self._replies.send(b"+OK %d\r\n" % msg_id)
        else:
            self._later(msg_id)

    def _later(self, answer: Deferred[int] | PendingPublish) -> None:
        """The reply to a publish answered later waits its turn: one a durable
        store is committing, or one numbered elsewhere (a shared backplane)."""
        if type(answer) is PendingPublish:
            self._replies.send_stored(
                answer, b"" if self.quiet else b"+OK %d\r\n" % answer.msg.msg_id, HubError.as_line)
        else:
            self._replies.send_later(answer, self._pub_reply)  # type: ignore[arg-type]

    def _published(self, result: int | Failure) -> bytes:
        """The reply to a PUB numbered elsewhere: its id, or why it was refused."""
        if isinstance(result, Failure):
            return self._refused(result)
        return self._numbered(result)

    def _numbered(self, msg_id: int) -> bytes:
        self.session.msgs_in += 1
        return b"" if self.quiet else b"+OK %d\r\n" % msg_id

    def _refused(self, failure: Failure) -> bytes:
        if failure.check(HubError):
            return failure.value.as_line()  # type: ignore[union-attr]
        self._log.failure("publish from {client!r} failed", failure, client=self.session.client)
        return ReplyQueue.INTERNAL_ERROR

    # -- commands ----------------------------------------------------------

    def do_pub(self, rest: bytes) -> None:
        if rest.startswith(b" "):
            rest = rest.lstrip(b" ")
        channel, _, payload = rest.partition(b" ")
        if not channel:
            raise HubError("bad-args", "usage: PUB <channel> <text>")
        # _publish written out for the common case: this runs once per PUB.
        session = self.session
        client = session.client
        msg_id = self.hub.publish(client.sender, channel.decode(), payload, client)  # type: ignore[union-attr]
        if isinstance(msg_id, int):
            session.msgs_in += 1
            if not self.quiet:
                self._replies.send(b"+OK %d\r\n" % msg_id)
        else:
            self._later(msg_id)

    def do_pubb(self, rest: bytes) -> None:
        args = split_args(rest)
        if len(args) != 2:
            raise HubError("bad-args", "usage: PUBB <channel> <nbytes>, then the bytes and CRLF")
        try:
            nbytes = parse_number(args[1], "<nbytes>")
        except HubError:
            if not (args[1].isascii() and args[1].isdigit()):
                raise
            nbytes = self.hub.max_payload + 1  # too many digits to read: too large all the same
        if nbytes > self.hub.max_payload:
            self._replies.send(
                HubError("too-large", f"payload over {self.hub.max_payload} bytes").as_line()
            )
            self.session.close(CloseReason.TOO_LARGE)
            return
        # The payload is read even if the publish will be refused, so the
        # connection stays in step; the hub decides once it has arrived.
        self._pubb_channel = args[0]
        self.expect_payload(nbytes)

    def do_sub(self, rest: bytes) -> None:
        args = split_args(rest)
        if not args:
            raise HubError("bad-args", "usage: SUB <pattern> [last=<n>|since=<id> [epoch=<e>]]")
        options = _options(args[1:], ("last", "since", "epoch"))
        if "last" in options and ("since" in options or "epoch" in options):
            raise HubError("bad-args", "last= goes alone; since= may take epoch=")
        if "epoch" in options and "since" not in options:
            raise HubError("bad-args", "epoch= goes with since=")
        last = options.get("last")
        since = options.get("since")
        result = self.hub.subscribe(
            self.session.client,  # type: ignore[arg-type]
            args[0],
            last=None if last is None else parse_number(last, "last="),
            since=None if since is None else parse_number(since, "since="),
            epoch=options.get("epoch"),
        )
        # Not isinstance(result, Deferred): Deferred is an ABC
        # (Awaitable), whose isinstance is ~900 JIT operations on PyPy; they
        # made a SUB too long to trace, and PyPy stopped inlining lineReceived
        # for every command after it (docs/benchmarks.md, issue 13).
        if isinstance(result, tuple):
            self._replies.send(self._subscribed(result, args[0], last is None))
        else:  # a shared backplane is bringing the channel up to date first
            self._replies.send(result.addCallbacks(self._subscribed, self._refused,
                                                   (args[0], last is None)))

    def _subscribed(self, result: tuple[list[Message], bool], pattern: str,
                    since: bool) -> bytes:
        replay, partial = result
        if not replay:  # the reply alone (nothing to fit in the buffer)
            return (b"+OK subscribed " + pattern.encode()
                    + (b" 0 partial\r\n" if partial else b" 0\r\n"))
        # A replay never outgrows --max-buffer; cutting a since= replay short
        # leaves a gap, which the client is told about.
        lines = fit(replay, self.codec, self.session.room())
        if len(lines) < len(replay) and since:
            partial = True
        # Replay and reply go out together, right after the subscription was
        # made; nothing live can come in between (see Hub.subscribe).
        tail = " partial" if partial else ""
        return b"".join(lines) + f"+OK subscribed {pattern} {len(lines)}{tail}\r\n".encode()

    def do_unsub(self, rest: bytes) -> None:
        args = split_args(rest)
        if len(args) != 1:
            raise HubError("bad-args", "usage: UNSUB <pattern>")
        self.hub.unsubscribe(self.session.client, args[0])  # type: ignore[arg-type]
        self._replies.send(f"+OK unsubscribed {args[0]}\r\n".encode())

    def do_name(self, rest: bytes) -> None:
        args = split_args(rest)
        if len(args) != 1:
            raise HubError("bad-args", "usage: NAME <name>")
        name = self.hub.set_name(self.session.client, args[0])  # type: ignore[arg-type]
        if isinstance(name, Deferred):  # claimed on every server first
            self._replies.send(name.addCallbacks(lambda n: f"+OK {n}\r\n".encode(),
                                                 self._refused))
        else:
            self._replies.send(f"+OK {name}\r\n".encode())

    def do_create(self, rest: bytes) -> None:
        args = split_args(rest)
        history = None
        if len(args) == 2 and args[1].startswith("history="):
            history = parse_number(args[1][len("history=") :], "history=")
        elif len(args) != 1:
            raise HubError("bad-args", "usage: CREATE <channel> [history=<n>]")
        ch = self.hub.create_channel(args[0], history, self.session.client)
        if isinstance(ch, Deferred):  # made in Redis first, for every server
            self._replies.send(ch.addCallbacks(
                lambda c: f"+OK created {c.name}\r\n".encode(), self._refused))
        else:
            self._replies.send(f"+OK created {ch.name}\r\n".encode())

    def _stream(self, lines: Iterable[str | None], more: bool) -> None:
        """Send a listing's lines a batch at a time, then ``+OK <n>``, or
        ``+OK <n> more`` when ``more`` or when ``lines`` ends with None (it
        ran out of its CPU budget).

        Each batch goes through the session's output, which counts it against
        --max-buffer (and hands it over early), so a reader that does not read
        is cut off as a slow consumer before the rest is even made.
        """
        session = self.session
        count = 0
        batch: list[str] = []
        for line in lines:
            if line is None:
                more = True
                break
            batch.append(line)
            count += 1
            if len(batch) == LISTING_BATCH:
                self._replies.send("".join(batch).encode())
                batch = []
                if session.close_reason is not None:
                    return
        batch.append(f"+OK {count} more\r\n" if more else f"+OK {count}\r\n")
        self._replies.send("".join(batch).encode())

    def _page(self, rest: bytes, usage: str) -> tuple[list[str], str | None]:
        args = split_args(rest)
        after = None
        if args and args[-1].startswith("after="):
            after = args.pop()[len("after="):]
        if len(args) > 1:
            raise HubError("bad-args", usage)
        return args, after

    def do_list(self, rest: bytes) -> None:
        args, after = self._page(rest, "usage: LIST [<pattern>] [after=<name>]")
        if after is not None:
            channel_kind(after)
        limit = self.hub.max_list
        channels = self.hub.channels(args[0] if args else ">", after, limit + 1)
        self._stream(self._channel_lines(channels[:limit]), len(channels) > limit)

    def _channel_lines(self, channels: list[Channel[Session]]) -> Iterator[str | None]:
        hub = self.hub
        budget = hub.match_work() + LIST_WORK
        for ch in channels:
            if hub.match_work() > budget:
                # Counting wildcard subscribers is what costs; the client asks
                # again with after= for the rest.
                yield None
                return
            yield (f"CHANNEL {ch.name} {len(hub.subscribers_of(ch.name))} {ch.published} "
                   f"{ch.kept}\r\n")

    def do_who(self, rest: bytes) -> None:
        args, after = self._page(rest, "usage: WHO [<channel>] [after=<id>]")
        if after is not None:
            if not is_client_id(after):
                raise HubError("bad-args", "after= takes a client id")
            number = parse_number(after[1:], "after=")
            after = f"c{number}"  # leading zeros gone: int() takes it
        clients: Sequence[ClientRecord | Member]
        if args:
            clients = self.hub.clients_of(self.hub.subscribers_of(args[0]))
        else:
            found = self.hub.everyone()
            if isinstance(found, Deferred):  # every server's, from Redis
                self._replies.send(found.addCallbacks(self._who, self._refused, (after,)))
                return
            clients = found
        lines, more = self._who_lines(clients, after)
        self._stream(lines, more)

    def _who_lines(self, clients: Sequence[ClientRecord | Member],
                   after: str | None) -> tuple[list[str], bool]:
        self.hub.charge(len(clients))  # looked at, for the read's budget (Hub.reading)
        if after is not None:
            start = int(after[1:])
            clients = [c for c in clients if int(c.client_id[1:]) > start]
        limit = self.hub.max_list
        now = self.hub.clock.seconds()
        return ([f"CLIENT {c.client_id} {c.name or '-'} {int(now - c.connected_at)}\r\n"
                 for c in clients[:limit]], len(clients) > limit)

    def _who(self, clients: list[Member], after: str | None) -> bytes:
        lines, more = self._who_lines(clients, after)
        lines.append(f"+OK {len(lines)} more\r\n" if more else f"+OK {len(lines)}\r\n")
        return "".join(lines).encode()

    def do_quiet(self, rest: bytes) -> None:
        args = split_args(rest)
        if len(args) != 1 or args[0].lower() not in ("on", "off"):
            raise HubError("bad-args", "usage: QUIET on|off")
        self.quiet = args[0].lower() == "on"
        self._replies.send(b"+OK quiet on\r\n" if self.quiet else b"+OK quiet off\r\n")

    def do_direct(self, rest: bytes) -> None:
        args = split_args(rest)
        word = args[0].lower() if args else ""
        senders: list[str] | None
        if word in ("on", "off") and len(args) == 1:
            senders = None if word == "on" else []
            reply = f"+OK direct {word}\r\n".encode()
        elif word == "from" and len(args) > 1:
            senders = args[1:]
            reply = f"+OK direct from {len(set(senders))}\r\n".encode()
        else:
            raise HubError("bad-args", "usage: DIRECT on|off, or DIRECT from <name or id> ...")
        done = self.hub.take_direct(self.session.client, senders)  # type: ignore[arg-type]
        if isinstance(done, Deferred):  # every server takes it first (--redis)
            self._replies.send(done.addCallbacks(lambda _: reply, self._refused))
        else:
            self._replies.send(reply)

    def do_ping(self, rest: bytes) -> None:
        self._replies.send(b"PONG\r\n")

    def do_pong(self, rest: bytes) -> None:
        """The answer to the server's PING; any line counts as life, so nothing to do."""

    def do_help(self, rest: bytes) -> None:
        self._replies.send(_HELP)

    def do_quit(self, rest: bytes) -> None:
        self._replies.send(b"+OK bye\r\n")
        # The reply itself may have been one too many (then it closed already).
        self.session.finish(CloseReason.QUIT)

    def do_auth(self, rest: bytes) -> None:
        user, sep, password = rest.lstrip(b" ").partition(b" ")
        if not user or not sep:
            raise HubError("bad-args", "usage: AUTH <user> <password>")
        if self._login is None:
            raise HubError("auth-failed", "this server has no users (no --users)")
        # Nothing more is read until the check is done, so commands pipelined
        # after AUTH run as the user it makes this client.
        self.hold_input()
        try:
            d = self._login.attempt(user.decode(), password.decode())
        except HubError:
            self.release_input()
            raise
        self._replies.send(d.addCallbacks(self._authenticated, self._not_authenticated))
        # Input goes on once the answer is written (or queued in order): what
        # was pipelined behind AUTH, and the messages it causes, come after it.
        d.addBoth(self._auth_answered)

    def _authenticated(self, user: str | None) -> bytes:
        if user is None:
            return b""  # the last failure: the connection is closing with BYE auth-failed
        self._commands = COMMANDS
        return f"+OK {user}\r\n".encode()

    def _auth_answered(self, _: object) -> None:
        if self.session.close_reason is None:
            self.release_input()

    def _not_authenticated(self, failure: Failure) -> bytes:
        if failure.check(HubError):
            return failure.value.as_line()  # type: ignore[union-attr]
        self._log.failure("AUTH from {client!r} failed", failure, client=self.session.client)
        return ReplyQueue.INTERNAL_ERROR

    def do_history(self, rest: bytes) -> None:
        args = split_args(rest)
        if not 1 <= len(args) <= 2:
            raise HubError("bad-args", "usage: HISTORY <channel> [<n>]")
        n = parse_number(args[1], "<n>") if len(args) == 2 else None
        found = self.hub.read_history(args[0], n, self.session.client)
        if isinstance(found, Deferred):
            self._replies.send(found.addCallbacks(self._history, self._refused))
        else:
            self._replies.send(self._history(found))

    def _history(self, found: list[Message]) -> bytes:
        kept = fit(found, self.codec, self.session.room())
        return b"".join(kept) + b"+OK %d\r\n" % len(kept)


COMMANDS: dict[bytes, Callable[[LineDoor, bytes], None]] = {
    b"PUB": LineDoor.do_pub,
    b"PUBB": LineDoor.do_pubb,
    b"SUB": LineDoor.do_sub,
    b"UNSUB": LineDoor.do_unsub,
    b"NAME": LineDoor.do_name,
    b"CREATE": LineDoor.do_create,
    b"LIST": LineDoor.do_list,
    b"WHO": LineDoor.do_who,
    b"QUIET": LineDoor.do_quiet,
    b"DIRECT": LineDoor.do_direct,
    b"PING": LineDoor.do_ping,
    b"PONG": LineDoor.do_pong,
    b"HELP": LineDoor.do_help,
    b"QUIT": LineDoor.do_quit,
    b"HISTORY": LineDoor.do_history,
    b"AUTH": LineDoor.do_auth,
}


_AUTH_REQUIRED = HubError("auth-required", "AUTH <user> <password> first")


def _auth_required(door: LineDoor, rest: bytes) -> None:
    raise _AUTH_REQUIRED


def _pubb_auth_required(door: LineDoor, rest: bytes) -> None:
    # Refused, but its payload is still read (as for any refused PUBB), so
    # that it cannot pass for commands.
    try:
        door.do_pubb(rest)
    except HubError:
        raise _AUTH_REQUIRED from None
    if door.receiving_payload():
        door._pubb_channel = None
        door._pubb_refusal = _AUTH_REQUIRED.as_line()
        door.discard_payload()


# Before a client that must authenticate has: only these work.
PRE_AUTH: dict[bytes, Callable[[LineDoor, bytes], None]] = {
    verb: (command if verb in (b"AUTH", b"PING", b"PONG", b"HELP", b"QUIT")
           else _pubb_auth_required if verb == b"PUBB" else _auth_required)
    for verb, command in COMMANDS.items()
}


class LineDoorFactory(DoorFactory):
    """The line protocol's listeners."""

    kind = "line"
    protocol = LineDoor
    make_codec = staticmethod(line_codec)
