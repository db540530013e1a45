"""The client line protocol (PROTOCOL.md) and its factory: bytes in, hub calls, bytes out."""
from __future__ import annotations

import json
from typing import Callable

from twisted.internet.interfaces import IAddress, ISSLTransport
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from txpubsub import __version__
from txpubsub.core.hub import Hub
from txpubsub.doors.replies import ReplyQueue
from txpubsub.doors.session import Door, DoorSettings
from txpubsub.wire.errors import CloseReason, HubError, shorten
from txpubsub.wire.names import parse_number, split_args

HELP_LINES = (
    "NAME <name>                      set or change your name",
    "CREATE <channel> [history=<n>]   create a channel keeping the last n messages",
    "SUB <pattern>                    subscribe; * is one token, > the rest (news.>)",
    "SUB <channel> last=<n>           subscribe after replaying the last n messages",
    "SUB <channel> since=<id> [epoch=<e>]  replay what came after id, then go live",
    "UNSUB <pattern>                  unsubscribe",
    "PUB <channel> <text>             publish the rest of the line; @name for a direct message",
    "PUBB <channel> <nbytes>          publish the next nbytes raw bytes, then CRLF",
    "HISTORY <channel> [<n>]          the last n kept messages, oldest first",
    "LIST [<pattern>]                 channels with subscribers, published and kept counts",
    "WHO [<channel>]                  connected clients, or the subscribers of a channel",
    "QUIET on|off                     no reply to successful PUB/PUBB when on",
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


class ClientProtocol(Door):
    """One client connection speaking the text protocol."""

    _log = Logger()
    __slots__ = ("_pubb_channel", "_pubb_refusal", "_replies", "quiet")

    def __init__(self, hub: Hub, listener: str, settings: DoorSettings) -> None:
        super().__init__(hub, listener, settings)
        self.quiet = False
        self._pubb_channel: str | None = None
        self._pubb_refusal = b""
        self._replies = ReplyQueue(self.send)

    def greet(self) -> None:
        assert self.client is not None
        if self._pending_name is not None:
            # The name its TLS certificate carries: it may not change it.
            try:
                self.hub.claim_name(self.client, self._pending_name)
            except HubError as e:
                self._refuse(e.text)
                return
        info = {
            "server": "txpubsub",
            "version": __version__,
            "proto": 1,
            "client_id": self.client.client_id,
            "max_line": self.MAX_LENGTH,
            "max_payload": self.hub.max_payload,
            "tls": ISSLTransport.providedBy(self.transport),
            "auth_required": False,
            "epoch": self.hub.epoch,
        }
        if self.client.name_locked:
            info["name"] = self.client.name  # from the client's TLS certificate
        self.send(b"INFO %s\r\n" % json.dumps(info, separators=(",", ":")).encode())

    # -- input -------------------------------------------------------------

    def frameError(self) -> None:
        self._pubb_channel = None
        self.close(CloseReason.BAD_FRAME, "a PUBB payload must be followed by CRLF or LF")

    def lineReceived(self, line: bytes) -> None:
        self._heard = True
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
        command = COMMANDS.get(verb) or COMMANDS.get(verb.upper())
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
                "command {verb} from {client!r} failed", verb=verb, client=self.client
            )
            self._replies.send(ReplyQueue.INTERNAL_ERROR)

    def _bad_encoding(self, verb: bytes, rest: bytes) -> None:
        refusal = b"-ERR bad-encoding lines must be UTF-8\r\n"
        count = rest.rsplit(b" ", 1)[-1]
        if verb.upper() == b"PUBB" and count.isdigit() and int(count) <= self.hub.max_payload:
            # Refused, but its payload is still read, so it cannot pass for commands.
            self._pubb_channel = None
            self._pubb_refusal = refusal
            self.expect_payload(int(count))
        else:
            self._replies.send(refusal)

    def payloadReceived(self, payload: bytes) -> None:
        self.heard()
        channel, self._pubb_channel = self._pubb_channel, None
        if channel is None:
            refusal, self._pubb_refusal = self._pubb_refusal, b""
            self._replies.send(refusal)
            return
        try:
            self._published(self.hub.publish(self.client.sender, channel, payload, self))
        except HubError as e:
            self._replies.send(e.as_line())
        except Exception:
            self._log.failure("PUBB from {client!r} failed", client=self.client)
            self._replies.send(ReplyQueue.INTERNAL_ERROR)

    def _published(self, msg_id: int) -> None:
        self.msgs_in += 1
        if not self.quiet:
            self._replies.send(b"+OK %d\r\n" % msg_id)

    # -- commands ----------------------------------------------------------

    def do_pub(self, rest: bytes) -> None:
        if rest.startswith(b" "):
            rest = rest.lstrip(b" ")
        channel, _, payload = rest.partition(b" ")
        if not channel:
            raise HubError("bad-args", "usage: PUB <channel> <text>")
        self._published(self.hub.publish(self.client.sender, channel.decode(), payload, self))

    def do_pubb(self, rest: bytes) -> None:
        args = split_args(rest)
        if len(args) != 2:
            raise HubError("bad-args", "usage: PUBB <channel> <nbytes>, then the bytes and CRLF")
        nbytes = parse_number(args[1], "<nbytes>")
        if nbytes > self.hub.max_payload:
            self._replies.send(
                HubError("too-large", f"payload over {self.hub.max_payload} bytes").as_line()
            )
            self.close(CloseReason.TOO_LARGE)
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
        replay, partial = self.hub.subscribe(
            self.client,
            args[0],
            last=None if last is None else parse_number(last, "last="),
            since=None if since is None else parse_number(since, "since="),
            epoch=options.get("epoch"),
        )
        # A replay never outgrows --max-buffer; cutting a since= replay short
        # leaves a gap, which the client is told about.
        fitted = self.fit(replay)
        if len(fitted) < len(replay) and last is None:
            partial = True
        replay = fitted
        # Replay and reply go out together, right after the subscription was
        # made; nothing live can come in between (see Hub.subscribe).
        tail = " partial" if partial else ""
        self._replies.send(
            b"".join(replay)
            + f"+OK subscribed {args[0]} {len(replay)}{tail}\r\n".encode()
        )

    def do_unsub(self, rest: bytes) -> None:
        args = split_args(rest)
        if len(args) != 1:
            raise HubError("bad-args", "usage: UNSUB <pattern>")
        self.hub.unsubscribe(self.client, args[0])
        self._replies.send(f"+OK unsubscribed {args[0]}\r\n".encode())

    def do_name(self, rest: bytes) -> None:
        args = split_args(rest)
        if len(args) != 1:
            raise HubError("bad-args", "usage: NAME <name>")
        name = self.hub.set_name(self.client, args[0])
        self._replies.send(f"+OK {name}\r\n".encode())

    def do_create(self, rest: bytes) -> None:
        args = split_args(rest)
        history = None
        if len(args) == 2 and args[1].startswith("history="):
            history = parse_number(args[1][len("history=") :], "history=")
        elif len(args) != 1:
            raise HubError("bad-args", "usage: CREATE <channel> [history=<n>]")
        ch = self.hub.create(args[0], history)
        self._replies.send(f"+OK created {ch.name}\r\n".encode())

    def do_list(self, rest: bytes) -> None:
        args = split_args(rest)
        if len(args) > 1:
            raise HubError("bad-args", "usage: LIST [<pattern>]")
        channels = self.hub.channels(args[0] if args else ">")
        lines = [
            f"CHANNEL {ch.name} {len(self.hub.subscribers_of(ch.name))} {ch.published} "
            f"{len(ch.history)}\r\n"
            for ch in channels
        ]
        lines.append(f"+OK {len(channels)}\r\n")
        self._replies.send("".join(lines).encode())

    def do_who(self, rest: bytes) -> None:
        args = split_args(rest)
        if len(args) > 1:
            raise HubError("bad-args", "usage: WHO [<channel>]")
        if args:
            clients = self.hub.clients_of(self.hub.subscribers_of(args[0]))
        else:
            clients = self.hub.clients()
        now = self.hub.clock.seconds()
        lines = [
            f"CLIENT {c.client_id} {c.name or '-'} {int(now - c.connected_at)}\r\n"
            for c in clients
        ]
        lines.append(f"+OK {len(clients)}\r\n")
        self._replies.send("".join(lines).encode())

    def do_quiet(self, rest: bytes) -> None:
        args = split_args(rest)
        if len(args) != 1 or args[0].lower() not in ("on", "off"):
            raise HubError("bad-args", "usage: QUIET on|off")
        self.quiet = args[0].lower() == "on"
        self._replies.send(b"+OK quiet on\r\n" if self.quiet else b"+OK quiet off\r\n")

    def do_ping(self, rest: bytes) -> None:
        self._replies.send(b"PONG\r\n")

    def do_pong(self, rest: bytes) -> None:
        """The answer to the server's PING; any line counts as life, so nothing to do."""

    def do_help(self, rest: bytes) -> None:
        self._replies.send(_HELP)

    def do_quit(self, rest: bytes) -> None:
        self._replies.send(b"+OK bye\r\n")
        if self.close_reason is None:  # the reply itself may have been one too many
            self.close_reason = CloseReason.QUIT
            self.end()

    def do_history(self, rest: bytes) -> None:
        args = split_args(rest)
        if not 1 <= len(args) <= 2:
            raise HubError("bad-args", "usage: HISTORY <channel> [<n>]")
        n = parse_number(args[1], "<n>") if len(args) == 2 else None
        kept = self.fit(self.hub.history(args[0], n))
        self._replies.send(
            b"".join(kept) + b"+OK %d\r\n" % len(kept)
        )


COMMANDS: dict[bytes, Callable[[ClientProtocol, bytes], None]] = {
    b"PUB": ClientProtocol.do_pub,
    b"PUBB": ClientProtocol.do_pubb,
    b"SUB": ClientProtocol.do_sub,
    b"UNSUB": ClientProtocol.do_unsub,
    b"NAME": ClientProtocol.do_name,
    b"CREATE": ClientProtocol.do_create,
    b"LIST": ClientProtocol.do_list,
    b"WHO": ClientProtocol.do_who,
    b"QUIET": ClientProtocol.do_quiet,
    b"PING": ClientProtocol.do_ping,
    b"PONG": ClientProtocol.do_pong,
    b"HELP": ClientProtocol.do_help,
    b"QUIT": ClientProtocol.do_quit,
    b"HISTORY": ClientProtocol.do_history,
}


class DoorFactory(Factory):
    """Builds one kind of Door for one listener; every listener shares the hub."""

    noisy = False
    protocol = ClientProtocol

    def __init__(self, hub: Hub, listener: str = "-", settings: DoorSettings | None = None) -> None:
        self.hub = hub
        self.listener = listener
        self.settings = settings or DoorSettings()

    def buildProtocol(self, addr: IAddress) -> Door:
        proto = self.protocol(self.hub, self.listener, self.settings)
        proto.factory = self
        return proto


class ClientFactory(DoorFactory):
    """The client line protocol's factory."""
