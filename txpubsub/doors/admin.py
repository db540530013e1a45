"""The admin protocol (PROTOCOL.md "Admin protocol") on a Unix socket.

Admin connections are not clients: they are not attached to the hub, so they
are not in CLIENTS, WHO or the client count. Same framing and replies as the
client protocol; no greeting.

Scripts send their commands and half-close (``nc -N``, socat): every command
read before the end of input is answered, then the connection closes.
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txpubsub.core.hub import ADMIN_SENDER, Hub
from txpubsub.core.pending import PendingPublish
from txpubsub.core.system import iso_utc
from txpubsub.doors.framing import LineFramer
from txpubsub.doors.replies import Reply, ReplyQueue
from txpubsub.wire.errors import HubError, shorten
from txpubsub.wire.line import encode_delivery
from txpubsub.wire.names import parse_number, split_args

HELP_LINES = (
    "CLIENTS                         connected clients, one CLIENT line each",
    "CHANNELS                        channels, one CHANNEL line each",
    "HISTORY <channel> [<n>]         the last n kept messages, oldest first",
    "CONNECTIONS [<n>]               past connections, newest first",
    "STATS                           the server's counters, one STAT line each",
    "KICK <id or name> [reason]      close a client with BYE kicked",
    "KICK user:<user> [reason]       close every connection of a --users user",
    "DROP <channel>                  remove a channel; its subscribers get DROP",
    "PUB <channel> <text>            publish as $admin",
    "SHUTDOWN [grace-seconds]        BYE shutdown to every client (spread over grace), exit 0",
    "RELOAD                          read --config, certificate files and --users again",
    "QUIT                            close this admin connection",
    "HELP                            this text",
)


def _refusal(failure: Failure) -> bytes | Failure:
    """A refusal that comes later is its -ERR line; anything else stays a
    failure, which ReplyQueue logs and answers with internal-error."""
    if failure.check(HubError):
        return failure.value.as_line()  # type: ignore[union-attr]
    return failure


@implementer(IHalfCloseableProtocol)
class AdminDoor(LineFramer):
    """One operator's connection to the admin socket."""

    _log = Logger()

    def __init__(self, hub: Hub, shutdown: Callable[[float], object],
                 reload: Callable[[], tuple[Any, ...]]) -> None:
        super().__init__()
        self.hub = hub
        self.shutdown = shutdown
        self.reload = reload
        self._replies = ReplyQueue(self._write)
        self._unsent = 0  # replies still to come (a Deferred from a backplane)
        self._closing = False  # QUIT or end of input: close once all is answered

    def _write(self, data: bytes) -> None:
        self.transport.write(data)

    def _reply(self, reply: Reply) -> None:
        self._replies.send(reply)
        if isinstance(reply, Deferred):
            # After the queue's own callback, which has written this reply and
            # every one queued behind it that was ready.
            self._unsent += 1
            reply.addBoth(self._reply_sent)

    def _reply_sent(self, result: object) -> object:
        self._unsent -= 1
        if self._closing and not self._unsent:
            self.transport.loseConnection()
        return result

    def _close_when_answered(self) -> None:
        self._closing = True
        if not self._unsent:
            self.transport.loseConnection()  # after what is written already

    def readConnectionLost(self) -> None:
        """The operator's input ended (a half-close): answer a last line left
        without its line end, then close once every reply has been sent."""
        last = self.take_unfinished_line()
        if last and not self._closing and not self.transport.disconnecting:
            self.lineReceived(last)
        self._close_when_answered()

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()

    def connectionMade(self) -> None:
        self._log.info("admin connection opened")

    def lineLengthExceeded(self, line: bytes) -> None:
        self.transport.write(b"BYE line-too-long\r\n")
        self.transport.loseConnection()

    def lineReceived(self, line: bytes) -> None:
        if self._closing:
            return  # after QUIT
        if line[-1:] == b"\r":
            line = line[:-1]
        line = line.lstrip(b" ")
        if not line:
            return
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            self._reply(b"-ERR bad-encoding lines must be UTF-8\r\n")
            return
        verb, _, rest = line.partition(b" ")
        command = ADMIN_COMMANDS.get(verb.upper())
        try:
            if command is None:
                raise HubError(
                    "unknown-command", f"unknown command {shorten(verb.decode())!r}, try HELP"
                )
            lines = command(self, rest)
        except HubError as e:
            self._reply(e.as_line())
        except Exception:
            self._log.failure("admin command {verb} failed", verb=verb)
            self._reply(b"-ERR internal-error the server failed and logged why\r\n")
        else:
            self._reply(lines)
            if command is AdminDoor.do_quit:
                self._close_when_answered()

    @staticmethod
    def _listing(items: list[str]) -> bytes:
        return "".join(f"{item}\r\n" for item in items).encode() + b"+OK %d\r\n" % len(items)

    def do_clients(self, rest: bytes) -> bytes:
        now = self.hub.clock.seconds()
        # New fields go at the end: scripts split these lines by position.
        return self._listing([
            f"CLIENT {c.client_id} {c.name or '-'} {c.address} {c.listener} "
            f"{iso_utc(c.connected_at)} {len(c.patterns)} {c.session.msgs_in} "
            f"{c.session.msgs_out} {c.session.pending_bytes()} "
            f"{max(0, int(now - c.connected_at))} {c.user or '-'}"
            for c in self.hub.clients()
        ])

    def do_channels(self, rest: bytes) -> bytes:
        channels = self.hub.channels(">") + self.hub.channels("$sys.>")
        return self._listing([
            f"CHANNEL {ch.name} {len(self.hub.subscribers_of(ch.name))} {ch.published} "
            f"{ch.kept} {iso_utc(ch.created_at)} "
            f"{iso_utc(ch.last_publish_at) if ch.last_publish_at is not None else '-'}"
            for ch in channels
        ])

    def do_history(self, rest: bytes) -> bytes:
        args = split_args(rest)
        if not 1 <= len(args) <= 2:
            raise HubError("bad-args", "usage: HISTORY <channel> [<n>]")
        n = parse_number(args[1], "<n>") if len(args) == 2 else None
        kept = self.hub.history(args[0], n)
        return (b"".join(encode_delivery(m.channel, m.msg_id, m.sender, m.payload) for m in kept)
                + b"+OK %d\r\n" % len(kept))

    def do_connections(self, rest: bytes) -> bytes:
        args = split_args(rest)
        if len(args) > 1:
            raise HubError("bad-args", "usage: CONNECTIONS [<n>]")
        n = parse_number(args[0], "<n>") if args else len(self.hub.connection_log)
        return self._listing([
            f"CONN {c.client_id} {c.name or '-'} {c.address} {iso_utc(c.connected_at)} "
            f"{iso_utc(c.disconnected_at)} {int(c.disconnected_at - c.connected_at)} {c.reason}"
            for c in list(self.hub.connection_log)[:n]
        ])

    def do_stats(self, rest: bytes) -> bytes:
        stats = [f"STAT {key} {value}" for key, value in self.hub.stats().items()]
        if self.hub.server_id is not None:  # which of the servers sharing Redis
            stats.append(f"STAT server {self.hub.server_id}")
        return self._listing(stats)

    def do_kick(self, rest: bytes) -> Reply:
        who, _, reason = rest.lstrip(b" ").partition(b" ")
        if not who:
            raise HubError("bad-args", "usage: KICK <id or name> [reason]")
        target = who.decode()
        if target.startswith("user:"):
            # Every connection authenticated as that user (names have no colon).
            user = target[len("user:"):]
            ids = [self.hub.kick(c.client_id, reason.decode().strip())
                   for c in self.hub.clients() if c.user == user]
            if not ids:
                raise HubError("no-such-client", f"no client is user {shorten(user)}")
            return f"+OK kicked {' '.join(ids)}\r\n".encode()
        client_id = self.hub.kick_anywhere(target, reason.decode().strip())
        if isinstance(client_id, str):
            return f"+OK kicked {client_id}\r\n".encode()
        # A client of another server sharing Redis: kicked once its server is told.
        return client_id.addCallbacks(lambda c: f"+OK kicked {c}\r\n".encode(), _refusal)

    def do_drop(self, rest: bytes) -> Reply:
        args = split_args(rest)
        if len(args) != 1:
            raise HubError("bad-args", "usage: DROP <channel>")
        done = f"+OK dropped {args[0]}\r\n".encode()
        dropping = self.hub.drop_everywhere(args[0])
        if dropping is None:
            return done
        # Shared through Redis: dropped on every server.
        return dropping.addCallbacks(lambda _: done, _refusal)

    def do_pub(self, rest: bytes) -> Reply:
        channel, _, payload = rest.lstrip(b" ").partition(b" ")
        if not channel:
            raise HubError("bad-args", "usage: PUB <channel> <text>")
        msg_id = self.hub.publish(ADMIN_SENDER, channel.decode(), payload)
        if isinstance(msg_id, int):
            return b"+OK %d\r\n" % msg_id
        if isinstance(msg_id, PendingPublish):  # being committed by a durable store
            msg_id = msg_id.deferred()
        # Numbered elsewhere (a shared backplane): later replies wait for it.
        return msg_id.addCallbacks(lambda n: b"+OK %d\r\n" % n, _refusal)

    def do_shutdown(self, rest: bytes) -> bytes:
        args = split_args(rest)
        if len(args) > 1:
            raise HubError("bad-args", "usage: SHUTDOWN [grace-seconds]")
        grace = parse_number(args[0], "grace-seconds") if args else 0
        self._log.info("SHUTDOWN from the admin socket, grace {grace} s", grace=grace)
        self.hub.clock.callLater(0, self.shutdown, float(grace))
        return b"+OK shutting down\r\n"

    def do_reload(self, rest: bytes) -> bytes:
        # (reloaded, failed) and, if the users file could not be used, why.
        result = self.reload()
        done, failed = result[0], result[1]
        why = f"; {result[2]}" if len(result) > 2 and result[2] else ""
        return f"+OK reloaded {done} failed {failed}{why}\r\n".encode()

    def do_quit(self, rest: bytes) -> bytes:
        return b"+OK bye\r\n"  # lineReceived closes once it is written

    def do_help(self, rest: bytes) -> bytes:
        return b"".join(f"HELP {line}\r\n".encode() for line in HELP_LINES) + b"+OK\r\n"


ADMIN_COMMANDS: dict[bytes, Callable[[AdminDoor, bytes], Reply]] = {
    b"CLIENTS": AdminDoor.do_clients,
    b"CHANNELS": AdminDoor.do_channels,
    b"HISTORY": AdminDoor.do_history,
    b"CONNECTIONS": AdminDoor.do_connections,
    b"STATS": AdminDoor.do_stats,
    b"KICK": AdminDoor.do_kick,
    b"DROP": AdminDoor.do_drop,
    b"PUB": AdminDoor.do_pub,
    b"SHUTDOWN": AdminDoor.do_shutdown,
    b"RELOAD": AdminDoor.do_reload,
    b"QUIT": AdminDoor.do_quit,
    b"HELP": AdminDoor.do_help,
}


class AdminFactory(Factory):
    """Admin connections for one hub; ``shutdown(grace)`` stops the whole server,
    ``reload()`` reads certificate files again (reloaded, failed)."""

    noisy = False

    def __init__(self, hub: Hub, shutdown: Callable[[float], object],
                 reload: Callable[[], tuple[Any, ...]] = lambda: (0, 0)) -> None:
        self.hub = hub
        self.shutdown = shutdown
        self.reload = reload

    def buildProtocol(self, addr: object) -> AdminDoor:
        proto = AdminDoor(self.hub, self.shutdown, self.reload)
        proto.factory = self
        return proto
