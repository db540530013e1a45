"""Where the server is and how to reach it: ``-s/--server``, TLS options, connecting.

``--server`` takes ``HOST:PORT``, ``[IPv6]:PORT``, ``tls://HOST:PORT``,
``unix:PATH`` or a Twisted client endpoint string (``tcp:HOST:PORT``,
``ssl:HOST:PORT``, ...). TLS checks the server's certificate against the
system trust store (or ``--ca``) and the name connected to (or
``--tls-name``); ``--insecure`` turns the checks off.
"""
from __future__ import annotations

import argparse
import getpass
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from txpubsub.cli.console import Console, Failed
from txpubsub.client import failures
from txpubsub.wire.errors import HubError
from txpubsub.wire.names import check_name

if TYPE_CHECKING:
    from twisted.internet.interfaces import IStreamClientEndpoint

DEFAULT_SERVER = "tcp:127.0.0.1:23400"

# What to do about each final TLS failure, said after it.
HINTS = {
    failures.UNTRUSTED: "give the CA that signed it with --ca FILE (or --insecure to skip "
                        "the check)",
    failures.WRONG_NAME: "give the name its certificate carries with --tls-name NAME",
    failures.NEEDS_CLIENT_CERT: "give one with --cert FILE --key FILE",
    failures.CLIENT_CERT_REFUSED: "is --cert signed by a CA the server trusts?",
    failures.NOT_TLS: "is it a plain port? use HOST:PORT",
}


@dataclass(frozen=True)
class Server:
    """A parsed ``--server``: a host and port (maybe TLS), or an endpoint string."""

    given: str
    host: str = ""
    port: int = 0
    tls: bool = False
    endpoint: str = ""  # another Twisted client endpoint string (unix:, ...)
    cert: str | None = None  # ssl:...:certKey=
    key: str | None = None  # ssl:...:privateKey=

    def __str__(self) -> str:
        return self.given


_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.]+(?:%\w+)?)\]:([0-9]+)")
_HOST_PORT = re.compile(r"([A-Za-z0-9_.\-]+):([0-9]+)")
_SPLIT = re.compile(r"(?<!\\):")
_HOST_KINDS = ("tcp", "tcp6", "ssl", "tls")


def _port(text: str, given: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port {text!r} in {given!r}")
    return int(text)


def parse_server(given: str) -> Server:
    """Read a ``--server`` value; ValueError says what is wrong with it."""
    text = given.strip()
    for scheme, tls in (("tls://", True), ("tcp://", False)):
        if text.startswith(scheme):
            host, port = _split_host_port(text[len(scheme):], given)
            return Server(given, host, port, tls)
    match = _BRACKETED.fullmatch(text)
    if match:
        return Server(given, match[1], _port(match[2], given))
    match = _HOST_PORT.fullmatch(text)
    if match and match[1] not in (*_HOST_KINDS, "unix"):
        return Server(given, match[1], _port(match[2], given))
    kind, colon, rest = text.partition(":")
    if not colon or not rest:
        raise ValueError(f"expected HOST:PORT, [IPv6]:PORT, tls://HOST:PORT, unix:PATH or an "
                         f"endpoint string, not {given!r}")
    if kind in _HOST_KINDS:
        return _parse_endpoint_host(kind, rest, given)
    return Server(given, endpoint=text)


def _split_host_port(text: str, given: str) -> tuple[str, int]:
    match = _BRACKETED.fullmatch(text) or _HOST_PORT.fullmatch(text)
    if not match:
        raise ValueError(f"expected HOST:PORT after the scheme in {given!r}")
    return match[1], _port(match[2], given)


def _parse_endpoint_host(kind: str, rest: str, given: str) -> Server:
    """tcp:/tcp6:/ssl:/tls: strings; ssl: and tls: connect with our TLS checks."""
    positional: list[str] = []
    keywords: dict[str, str] = {}
    for part in _SPLIT.split(rest):
        part = part.replace("\\:", ":")
        key, equals, value = part.partition("=")
        if equals and key.isidentifier():
            keywords[key] = value
        else:
            positional.append(part)
    host = keywords.pop("host", positional[0] if positional else "")
    port = keywords.pop("port", positional[1] if len(positional) > 1 else "")
    keywords.pop("timeout", None)  # --connect-timeout decides
    cert = keywords.pop("certKey", None) or keywords.pop("certificate", None)
    key = keywords.pop("privateKey", None)
    if keywords or len(positional) > 2 or not host:
        extra = ", ".join(sorted(keywords)) or "its arguments"
        raise ValueError(f"cannot use {extra} in {given!r}: give HOST and PORT, and TLS files "
                         f"with --ca, --cert and --key")
    return Server(given, host.strip("[]"), _port(port, given), kind in ("ssl", "tls"),
                  cert=cert, key=key)


# -- argument types ---------------------------------------------------------

def server_type(text: str) -> Server:
    try:
        return parse_server(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def name_type(text: str) -> str:
    try:
        return check_name(text)
    except HubError as e:
        raise argparse.ArgumentTypeError(e.text) from None


def seconds_type(text: str) -> float:
    """A number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, not {text!r}")
    return value


def add_server_options(parser: argparse.ArgumentParser, env: Mapping[str, str],
                       connect_timeout: float | None) -> None:
    """-s/--server, --name, --connect-timeout and the TLS options."""
    group = parser.add_argument_group("connection")
    group.add_argument("-s", "--server", type=server_type,
                       default=env.get("TXPUBSUB_SERVER", DEFAULT_SERVER),
                       help="HOST:PORT, [IPv6]:PORT, tls://HOST:PORT, unix:PATH or a Twisted "
                            "endpoint string (default: $TXPUBSUB_SERVER or "
                            f"{DEFAULT_SERVER})")
    group.add_argument("--name", type=name_type, default=env.get("TXPUBSUB_NAME"),
                       help="the client name to take (default: $TXPUBSUB_NAME; none)")
    group.add_argument("--user", default=env.get("TXPUBSUB_USER"),
                       help="log in as this user of the server's --users file; the password "
                            "is $TXPUBSUB_PASSWORD, else asked on the terminal "
                            "(default: $TXPUBSUB_USER; none)")
    if connect_timeout is None:
        wait = "keep trying, saying so on stderr"
    else:
        wait = f"{connect_timeout:g}"
    group.add_argument("--connect-timeout", type=seconds_type, default=connect_timeout,
                       metavar="SECONDS",
                       help=f"give up (exit 1) without a connection for this long "
                            f"(default: {wait})")
    tls = parser.add_argument_group(
        "TLS", "tls://, ssl: or any of these options connect with TLS; the server's\n"
               "certificate is checked against the system trust store unless --ca is given.")
    tls.add_argument("--ca", default=env.get("TXPUBSUB_CA"), metavar="FILE",
                     help="the CA certificates (PEM) to trust instead (default: $TXPUBSUB_CA)")
    tls.add_argument("--cert", default=env.get("TXPUBSUB_CERT"), metavar="FILE",
                     help="a client certificate (PEM) (default: $TXPUBSUB_CERT)")
    tls.add_argument("--key", default=env.get("TXPUBSUB_KEY"), metavar="FILE",
                     help="the client certificate's key (default: $TXPUBSUB_KEY, or --cert)")
    tls.add_argument("--tls-name", metavar="NAME",
                     help="the name the server's certificate must carry (default: the host)")
    tls.add_argument("--insecure", action="store_true",
                     help="do not check the server's certificate at all")


def wants_tls(args: argparse.Namespace) -> bool:
    server: Server = args.server
    return bool(server.tls or args.ca or args.cert or server.cert or args.insecure)


def check_server_options(parser: argparse.ArgumentParser, args: argparse.Namespace,
                         env: Mapping[str, str] | None = None,
                         ask: Callable[[str], str] | None = None) -> None:
    """Mistakes in the connection options: usage errors (exit 2) before
    connecting; and --user's password, from ``env`` or asked (on a terminal)."""
    args.password = ""
    if getattr(args, "user", None) is not None:
        env = os.environ if env is None else env
        password = env.get("TXPUBSUB_PASSWORD")
        if password is None:
            if ask is None:
                if not sys.stdin.isatty():
                    parser.error("--user needs a password: set $TXPUBSUB_PASSWORD (it is asked "
                                 "for only on a terminal)")
                ask = getpass.getpass
            password = ask(f"password for {args.user}: ")
        args.password = password
    if args.insecure and args.ca:
        parser.error("--insecure and --ca contradict each other: choose one")
    if args.key and not (args.cert or args.server.cert):
        parser.error("--key needs --cert")
    if wants_tls(args):
        from txpubsub.client.tls import TLSFileError

        try:
            args.tls_options = _tls_options(args)
        except TLSFileError as e:
            parser.error(str(e))
        except ImportError:
            parser.error("TLS needs pyOpenSSL and service_identity: pip install 'txpubsub[tls]'")


def _tls_options(args: argparse.Namespace) -> Any:
    from txpubsub.client.tls import client_tls_options

    server: Server = args.server
    name = args.tls_name or server.host or "localhost"
    return client_tls_options(name, ca=args.ca, cert=args.cert or server.cert,
                              key=args.key or server.key, insecure=args.insecure)


def endpoint(reactor: Any, args: argparse.Namespace) -> Any:
    """The client endpoint for ``args.server``, wrapped in TLS when asked for."""
    from twisted.internet.endpoints import HostnameEndpoint, clientFromString, wrapClientTLS

    server: Server = args.server
    result: IStreamClientEndpoint
    if server.host:
        result = HostnameEndpoint(reactor, server.host, server.port,
                                  timeout=args.connect_timeout or 30)
    else:
        try:
            result = clientFromString(reactor, server.endpoint)
        except Exception as e:
            raise Failed(f"bad --server {server.given!r}: {e}") from None
    if wants_tls(args):
        result = wrapClientTLS(args.tls_options, result)
    return result


def explain(server: Server, reason: BaseException | None) -> tuple[str, bool]:
    """``cannot connect to SERVER: why[; hint]``, and whether retrying is pointless."""
    why = failures.describe(reason)
    text = f"cannot connect to {server.given}: {why.text}"
    if why.kind in HINTS:
        text += f"; {HINTS[why.kind]}"
    return text, why.final


async def connect_once(reactor: Any, args: argparse.Namespace) -> Any:
    """One Connection, greeted and named; Failed (one line) if it cannot be had."""
    from twisted.internet.endpoints import connectProtocol

    from txpubsub.client import Connection

    conn = Connection()
    timeout = args.connect_timeout
    try:
        await connectProtocol(endpoint(reactor, args), conn).addTimeout(timeout, reactor)
        await conn.ready.addTimeout(timeout, reactor)
    except Failed:
        raise
    except Exception as e:
        if conn.transport is not None:
            conn.transport.abortConnection()
        raise Failed(explain(args.server, e)[0]) from None
    if args.user is not None:
        await conn.auth(args.user, args.password)
    if args.name:
        await conn.name(args.name)
    return conn


class Reconnecting:
    """A ``Client`` for ``sub`` and ``chat``: retry with a notice, give up when told.

    A server that is down or goes away is retried for ever (a notice on stderr
    once per distinct reason), or until ``--connect-timeout`` passes without a
    connection (exit 1). A TLS failure is final at once (exit 1), as is a
    refused name on the first connection.
    """

    def __init__(self, reactor: Any, args: argparse.Namespace, console: Console,
                 on_direct: Callable[[Any], object] | None = None) -> None:
        from twisted.internet.defer import Deferred

        from txpubsub.client import Client

        self.reactor = reactor
        self.args = args
        self.console = console
        self.ended: Deferred[int] = Deferred()  # the exit status, or why it failed
        self._said = ""  # the last notice, not to be repeated
        self._why = ""  # why the last attempt failed
        self._timer: Any = None
        self._first = True
        self.client = Client(reactor, endpoint(reactor, args), name=args.name,
                             on_state=self._state, on_direct=on_direct,
                             on_connect_failed=self._attempt_failed, user=args.user,
                             password=args.password)

    def start(self) -> None:
        self._arm()
        self.client.start()

    def end(self, code: int) -> None:
        if not self.ended.called:
            self.ended.callback(code)

    def fail(self, error: BaseException) -> None:
        if not self.ended.called:
            self.ended.errback(error)

    async def stop(self) -> None:
        self._disarm()
        await self.client.stop()

    def _arm(self) -> None:
        self._disarm()
        if self.args.connect_timeout:
            self._timer = self.reactor.callLater(self.args.connect_timeout, self._gave_up)

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _gave_up(self) -> None:
        self._timer = None
        why = f": {self._why}" if self._why else ""
        self.fail(Failed(f"no connection to {self.args.server} within "
                         f"{self.args.connect_timeout:g} s{why}"))

    def _attempt_failed(self, reason: BaseException) -> None:
        text, final = explain(self.args.server, reason)
        self._why = failures.describe(reason).text
        if final:
            self.fail(Failed(text))
        elif text != self._said:
            self._said = text
            self.console.say(f"{text}; still trying")

    def _state(self, text: str) -> None:
        if text == "connected":
            self._disarm()
            if not self._first or self._said:
                self.console.say(f"connected to {self.args.server}")
            self._first = False
            self._said = self._why = ""
        elif text.startswith("disconnected"):
            self._arm()
            self.console.say(f"{text}; reconnecting to {self.args.server}")
        elif text.startswith("subscription to "):
            self.fail(Failed(text))  # refused on a reconnect: final, as on the first
        else:
            self.console.say(text)
