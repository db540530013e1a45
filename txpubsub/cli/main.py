"""The ``txpubsub`` command: sub, pub, chat, admin, manhole, bench.

Errors are one line on stderr and a non-zero exit; Ctrl-C exits quietly.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
from typing import Any

DEFAULT_SERVER = "tcp:127.0.0.1:23400"
_stopping: list[Any] = []  # reconnecting clients to quiet down on Ctrl-C
DEFAULT_ADMIN = "txpubsub-admin.sock"


class Failed(Exception):
    """An error for the user: printed as one line, exit status 1."""


def _endpoint(reactor: Any, args: argparse.Namespace) -> Any:
    from twisted.internet.endpoints import clientFromString, wrapClientTLS

    endpoint = clientFromString(reactor, args.server)
    if args.ca or args.cert:
        from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS

        client_cert = None
        if args.cert:
            with open(args.cert, "rb") as c, open(args.key or args.cert, "rb") as k:
                client_cert = PrivateCertificate.loadPEM(c.read() + b"\n" + k.read())
        trust = None
        if args.ca:
            with open(args.ca, "rb") as f:
                trust = Certificate.loadPEM(f.read())
        options = optionsForClientTLS(args.tls_name, trustRoot=trust,
                                      clientCertificate=client_cert)
        endpoint = wrapClientTLS(options, endpoint)
    return endpoint


def _say(text: str) -> None:
    sys.stderr.write(f"txpubsub: {text}\n")
    sys.stderr.flush()


def _format(msg: Any, args: argparse.Namespace) -> str:
    if args.json:
        try:
            payload: dict[str, str] = {"text": msg.payload.decode("utf-8")}
        except UnicodeDecodeError:
            import base64

            payload = {"base64": base64.b64encode(msg.payload).decode()}
        return json.dumps({"channel": msg.channel, "id": msg.msg_id, "sender": msg.sender,
                           **payload})
    if args.verbose:
        return f"{msg.channel} {msg.msg_id} {msg.sender} {msg.text}"
    return msg.text


# -- sub ---------------------------------------------------------------------

async def _sub(reactor: Any, args: argparse.Namespace) -> int:
    from twisted.internet.defer import Deferred

    from txpubsub.client import Client

    done: Deferred[int] = Deferred()
    seen = 0
    printed: dict[str, int] = {}  # channel -> last id printed: one line per message

    def show(msg: Any) -> None:
        nonlocal seen
        if args.count and seen >= args.count:
            return
        if printed.get(msg.channel, 0) >= msg.msg_id and not msg.channel.startswith("@"):
            return  # matched by two of the patterns
        printed[msg.channel] = msg.msg_id
        sys.stdout.write(_format(msg, args) + "\n")
        sys.stdout.flush()
        seen += 1
        if args.count and seen >= args.count and not done.called:
            done.callback(0)

    first = True

    def state(text: str) -> None:
        nonlocal first
        if text == "connected":
            if not first:
                _say(f"reconnected to {args.server}")
            first = False
        elif text.startswith("disconnected"):
            _say(f"{text}; reconnecting to {args.server}")
        else:
            _say(text)

    client = Client(reactor, _endpoint(reactor, args), name=args.name, on_state=state,
                    on_direct=show)
    _stopping.append(client)
    client.start()
    attempt = client.connection()
    reactor.callLater(args.timeout, lambda: attempt.called or _say(
        f"cannot reach {args.server} yet; still trying"))
    conn = await attempt
    conn.on_drop = lambda channel: _say(f"the server dropped {channel}")
    for pattern in args.patterns:
        await client.subscribe(pattern, show, last=args.last, since=args.since)
    code = await done
    await client.stop()
    return code


# -- pub ---------------------------------------------------------------------

async def _connect_once(reactor: Any, args: argparse.Namespace) -> Any:
    from twisted.internet.endpoints import connectProtocol

    from txpubsub.client import Connection

    conn = Connection()
    try:
        await connectProtocol(_endpoint(reactor, args), conn).addTimeout(args.timeout, reactor)
        await conn.ready.addTimeout(args.timeout, reactor)
    except Exception as e:
        raise Failed(f"cannot connect to {args.server}: {_reason(e)}") from None
    if args.name:
        await conn.name(args.name)
    return conn


async def _pub(reactor: Any, args: argparse.Namespace) -> int:
    from twisted.internet.defer import Deferred
    from twisted.internet.stdio import StandardIO
    from twisted.protocols.basic import LineReceiver

    from txpubsub.client import CommandError

    conn = await _connect_once(reactor, args)
    if args.message != "-":
        msg_id = await conn.publish(args.channel, args.message)
        if args.verbose:
            print(msg_id)
    elif args.binary:
        await conn.publish(args.channel, sys.stdin.buffer.read())
    else:
        # Every stdin line as it arrives: `tail -f log | txpubsub pub logs -`.
        # Refusals are reported as they come; a lost server ends it at once.
        finished: Deferred[int] = Deferred()
        outstanding = [0]
        failures = [0]
        eof = [False]

        def maybe_done() -> None:
            if eof[0] and not outstanding[0] and not finished.called:
                finished.callback(1 if failures[0] else 0)

        def published(result: object) -> None:
            outstanding[0] -= 1
            maybe_done()

        def refused(failure: Any) -> None:
            outstanding[0] -= 1
            failures[0] += 1
            if failure.check(CommandError):
                _say(f"the server refused a line: -ERR {failure.value.code} "
                     f"{failure.value.text}")
            maybe_done()

        def publish(line: bytes) -> None:
            outstanding[0] += 1
            conn.publish(args.channel, line).addCallbacks(published, refused)

        class Lines(LineReceiver):
            delimiter = b"\n"
            # Long lines go out as PUBB; the server's --max-payload decides.
            MAX_LENGTH = int(conn.info.get("max_payload", 1048576))

            def lineReceived(self, line: bytes) -> None:
                publish(line.rstrip(b"\r"))

            def lineLengthExceeded(self, line: bytes) -> None:
                failures[0] += 1
                _say("a line over the server's --max-payload was not sent")
                self.clearLineBuffer()

            def connectionLost(self, reason: object = None) -> None:
                rest = self.clearLineBuffer()
                if rest:  # a last line without a newline is still a line
                    publish(rest.rstrip(b"\r"))
                eof[0] = True
                maybe_done()

        stdin = StandardIO(Lines(), reactor=reactor)

        def lost(why: str) -> str:
            if not finished.called:
                stdin.loseConnection()
                finished.errback(Failed(f"the server closed the connection ({why})"))
            return why

        conn.closed.addCallback(lost)
        code = await finished
        if code:
            await conn.quit()
            return code
    await conn.quit()
    return 0


# -- chat --------------------------------------------------------------------

async def _chat(reactor: Any, args: argparse.Namespace) -> int:
    from txpubsub.cli.chat import run_chat

    return await run_chat(reactor, args, _endpoint(reactor, args), _say)


# -- admin and manhole -------------------------------------------------------

def _admin(args: argparse.Namespace) -> int:
    from txpubsub.client.blocking import open_socket
    from txpubsub.wire.parser import Reply, ServerParser

    path = args.socket or DEFAULT_ADMIN
    try:
        sock = open_socket(f"unix:{path}", args.timeout)
    except OSError as e:
        raise Failed(f"cannot open the admin socket {path}: {e.strerror or e}") from None
    parser = ServerParser()

    def run(command: str) -> bool:
        try:
            sock.sendall(command.encode() + b"\r\n")
            return read_reply()
        except OSError as e:
            raise Failed(f"the admin connection failed: {e.strerror or e}") from None

    def read_reply() -> bool:
        while True:
            data = sock.recv(65536)
            if not data:
                raise Failed("the server closed the admin connection")
            for event in parser.feed(data):
                line = getattr(event, "line", None)
                if isinstance(event, Reply):
                    if event.ok:
                        print(f"+OK {event.text}".rstrip())
                        return True
                    print(f"-ERR {event.code} {event.text}", file=sys.stderr)
                    return False
                print(line if line is not None else _admin_line(event))

    if args.command:
        return 0 if run(" ".join(args.command)) else 1
    interactive = sys.stdin.isatty()
    while True:
        try:
            command = input("admin> " if interactive else "")
        except EOFError:
            return 0
        if command.strip().lower() in ("quit", "exit"):
            return 0
        if command.strip():
            run(command)


def _admin_line(event: Any) -> str:
    from txpubsub.wire.parser import Delivery

    if isinstance(event, Delivery):
        return f"MSG {event.channel} {event.msg_id} {event.sender} {event.text}"
    return str(event)


def _manhole(args: argparse.Namespace) -> int:
    import select
    import termios
    import tty

    path = args.socket or "txpubsub-manhole.sock"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.connect(path)
    except OSError as e:
        raise Failed(f"cannot open the manhole socket {path}: {e.strerror or e}") from None
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    try:
        if saved is not None:
            tty.setraw(stdin)
        while True:
            ready, _, _ = select.select([stdin, sock], [], [])
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    return 0
                os.write(sys.stdout.fileno(), data)
            if stdin in ready:
                data = os.read(stdin, 1024)
                if not data or (data == b"\x04" and saved is None):
                    return 0
                sock.sendall(data)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)


# -- main ----------------------------------------------------------------------

def _reason(e: Any) -> str:
    value = getattr(e, "value", e)
    return str(value).strip() or type(value).__name__


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", default=os.environ.get("TXPUBSUB_SERVER", DEFAULT_SERVER),
                        help="a Twisted client endpoint string (default: $TXPUBSUB_SERVER or "
                             f"{DEFAULT_SERVER})")
    common.add_argument("--name", help="the client name to take")
    common.add_argument("--ca", help="TLS: the CA certificate (PEM) to trust")
    common.add_argument("--cert", help="TLS: a client certificate (PEM)")
    common.add_argument("--key", help="TLS: the client certificate's key (default: --cert)")
    common.add_argument("--tls-name", default="localhost",
                        help="TLS: the server name to verify (default: localhost)")
    common.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the server (default: 10)")
    parser = argparse.ArgumentParser(
        prog="txpubsub", description="Talk to a txpubsub server (options go after the command).")
    commands = parser.add_subparsers(dest="cmd", required=True)

    sub = commands.add_parser("sub", parents=[common], help="print messages as they arrive")
    sub.add_argument("patterns", nargs="+", metavar="PATTERN")
    replay = sub.add_mutually_exclusive_group()
    replay.add_argument("--last", type=int, help="first replay the last N messages")
    replay.add_argument("--since", type=int, help="first replay what came after this id")
    sub.add_argument("--count", type=int, help="exit after N messages")
    sub.add_argument("--json", action="store_true", help="one JSON object per message")
    sub.add_argument("-v", "--verbose", action="store_true",
                     help="print channel, id and sender before each payload")

    pub = commands.add_parser("pub", parents=[common], help="publish a message")
    pub.add_argument("channel")
    pub.add_argument("message", help="the text, or - to publish every stdin line")
    pub.add_argument("--binary", action="store_true", help="with -: stdin is one payload")
    pub.add_argument("-v", "--verbose", action="store_true", help="print the message id")

    chat = commands.add_parser("chat", parents=[common], help="chat in a channel")
    chat.add_argument("channel", nargs="?", default="chat")

    admin = commands.add_parser("admin", parents=[common],
                                help="one admin command, or an admin prompt")
    admin.add_argument("socket", nargs="?", help=f"the admin socket (default {DEFAULT_ADMIN})")
    admin.add_argument("command", nargs=argparse.REMAINDER)

    bench = commands.add_parser("bench", parents=[common], help="measure the server's speed")
    from txpubsub.cli.bench import add_arguments

    add_arguments(bench)

    manhole = commands.add_parser("manhole", parents=[common],
                                  help="the Python prompt inside the server")
    manhole.add_argument("socket", nargs="?", help="the manhole socket")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.cmd == "admin" and args.socket and not os.path.exists(args.socket) and \
            "/" not in args.socket and not args.socket.endswith(".sock"):
        # `txpubsub admin STATS`: the first word was a command, not a socket path.
        args.command, args.socket = [args.socket, *args.command], None
    try:
        if args.cmd == "admin":
            sys.exit(_admin(args))
        if args.cmd == "manhole":
            sys.exit(_manhole(args))
        if args.cmd == "bench":
            from txpubsub.cli.bench import main as bench

            sys.exit(bench(args))
        if args.cmd == "chat" and sys.stdin.isatty():
            from twisted.internet import asyncioreactor

            asyncioreactor.install()
        sys.exit(_run_twisted(args))
    except Failed as e:
        _say(str(e))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def _run_twisted(args: argparse.Namespace) -> int:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, FirstError

    from txpubsub.client import CommandError, ServerClosed

    commands = {"sub": _sub, "pub": _pub, "chat": _chat}
    result: list[int] = [0]
    stopped: list[bool] = []

    def finish(code: object) -> None:
        if stopped:
            return  # the first reason to stop is the exit status
        stopped.append(True)
        result[0] = code if isinstance(code, int) else 0
        if reactor.running:
            reactor.stop()

    def failed(failure: Any) -> None:
        if failure.check(Failed):
            _say(str(failure.value))
        elif failure.check(CommandError):
            _say(f"the server refused: -ERR {failure.value.code} {failure.value.text}")
        elif failure.check(ServerClosed):
            _say(f"the server closed the connection ({failure.value.reason})")
        elif failure.check(FirstError):
            failed(failure.value.subFailure)
            return
        else:
            _say(_reason(failure))
        finish(1)

    def interrupted(code: int) -> None:
        for client in _stopping:
            client._stopping = True  # no "reconnecting" notice on the way out
        finish(code)

    def install() -> None:
        signal.signal(signal.SIGINT, lambda *a: reactor.callFromThread(interrupted, 130))
        signal.signal(signal.SIGTERM, lambda *a: reactor.callFromThread(interrupted, 143))

    reactor.callWhenRunning(install)
    d = Deferred.fromCoroutine(commands[args.cmd](reactor, args))
    d.addCallbacks(finish, failed)
    if not d.called:
        reactor.run()
    return result[0]


if __name__ == "__main__":
    main()
