"""``txpubsub pub``: publish a message, a file, or every stdin line."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import Any

from txpubsub.cli.connect import add_server_options, connect_once
from txpubsub.cli.console import Console, Failed
from txpubsub.wire.errors import HubError
from txpubsub.wire.names import channel_kind

DESCRIPTION = """\
Publish to a channel (or to @NAME, a client's inbox) and exit: the rest of
the arguments as one message, a file as one payload (-f), or with - every
stdin line as it arrives. After the channel, a word is an option only if it
is exactly one of the options below; -- ends the options, so
`pub news -- -v` publishes "-v". pub does not retry: an unreachable server
or a refused message is one line on stderr and status 1."""

EXAMPLES = """\
examples:
  txpubsub pub news.uk hello world                 publishes "hello world"
  txpubsub pub news.uk -- --not-an-option          publishes "--not-an-option"
  txpubsub pub @alice a private note               a direct message
  txpubsub pub -v news.uk hello                    prints the message id
  txpubsub pub news.uk tick --repeat 10 --interval 1
  txpubsub pub blobs -f photo.jpg                  the file as one binary payload
  txpubsub pub blobs - --binary < photo.jpg        stdin as one payload
  tail -f /var/log/syslog | txpubsub pub logs -    every stdin line, as it arrives"""


def channel_type(text: str) -> str:
    try:
        channel_kind(text)
    except HubError as e:
        raise argparse.ArgumentTypeError(e.text) from None
    return text


def repeat_type(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, not {text!r}")
    return int(text)


def interval_type(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds (0 or more), not "
                                         f"{text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    parser.add_argument("channel", type=channel_type, metavar="CHANNEL",
                        help="the channel to publish to (news.uk), or @NAME for a client's inbox")
    parser.add_argument("message", nargs="*", metavar="MESSAGE",
                        help="the words of the message, joined by spaces; - alone: every stdin "
                             "line is a message")
    parser.add_argument("-f", "--file", metavar="FILE",
                        help="publish the file's contents as one payload (- for stdin)")
    parser.add_argument("--binary", action="store_true",
                        help="with -: stdin is one payload, not lines (as -f -)")
    parser.add_argument("--repeat", type=repeat_type, default=1, metavar="N",
                        help="publish the message N times (default 1)")
    parser.add_argument("--interval", type=interval_type, default=0.0, metavar="SECONDS",
                        help="wait this long between repeats (default 0)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print each message's id as the server acknowledges it")
    add_server_options(parser, env, connect_timeout=10.0)


def split_argv(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], list[str]]:
    """Options and positionals of ``pub``'s arguments.

    A word is an option only if it is exactly one of pub's options (or
    ``--long=value``); anything else is the channel or a word of the message,
    "-hello" included, and everything after ``--`` is.
    """
    takes_value = {}
    for action in parser._actions:
        for option in action.option_strings:
            takes_value[option] = action.nargs != 0
    options: list[str] = []
    positionals: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            positionals.extend(words)
            break
        name = word.split("=", 1)[0] if word.startswith("--") else word
        if name in takes_value:
            options.append(word)
            if takes_value[name] and "=" not in word:
                options.append(next(words, ""))
        else:
            positionals.append(word)
    return options, positionals


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage mistakes pub can see itself: exit 2 before connecting."""
    lines = args.message == ["-"]
    if args.file is not None and args.message:
        parser.error("give the message as words or with -f FILE, not both")
    if args.file is None and not args.message:
        parser.error("nothing to publish: give the message, - for stdin lines, or -f FILE")
    if args.binary and not lines:
        parser.error("--binary goes with - (stdin as one payload); for a file use -f FILE")
    if lines and not args.binary and (args.repeat != 1 or args.interval):
        parser.error("--repeat and --interval do not go with - (stdin lines)")
    if args.interval and args.repeat == 1:
        parser.error("--interval goes with --repeat N")
    if args.file not in (None, "-"):
        try:
            with open(args.file, "rb") as f:
                args.payload = f.read()
        except OSError as e:
            parser.error(f"argument -f/--file: cannot read {args.file}: {e.strerror or e}")
    elif args.message and not lines:
        args.payload = " ".join(args.message).encode("utf-8", "surrogateescape")
    args.lines = lines and not args.binary


async def run(reactor: Any, args: argparse.Namespace, console: Console) -> int:
    from twisted.internet.task import deferLater

    payload = getattr(args, "payload", None)
    if payload is None and not args.lines:
        payload = sys.stdin.buffer.read()  # -f - or - --binary
    conn = await connect_once(reactor, args)
    try:
        if args.lines:
            return await _lines(reactor, args, console, conn)
        for i in range(args.repeat):
            if i and args.interval:
                await deferLater(reactor, args.interval)
            msg_id = await conn.publish(args.channel, payload)
            if args.verbose:
                console.line(str(msg_id))
        return 0
    finally:
        if not conn.closed.called:
            try:
                await conn.quit().addTimeout(2, reactor)
            except Exception:
                pass


async def _lines(reactor: Any, args: argparse.Namespace, console: Console, conn: Any) -> int:
    """Every stdin line as it arrives: `tail -f log | txpubsub pub logs -`.

    Refusals are reported as they come; a lost server ends it at once.
    """
    from twisted.internet.defer import Deferred
    from twisted.internet.stdio import StandardIO
    from twisted.protocols.basic import LineReceiver

    from txpubsub.client import CommandError

    finished: Deferred[int] = Deferred()
    outstanding = 0
    failures = 0
    eof = False

    def maybe_done() -> None:
        if eof and not outstanding and not finished.called:
            finished.callback(1 if failures else 0)

    def published(msg_id: int) -> None:
        nonlocal outstanding
        outstanding -= 1
        if args.verbose:
            console.line(str(msg_id))
        maybe_done()

    def refused(failure: Any) -> None:
        nonlocal outstanding, failures
        outstanding -= 1
        failures += 1
        if failure.check(CommandError):
            console.say(f"the server refused a line: -ERR {failure.value.code} "
                        f"{failure.value.text}")
        maybe_done()

    def publish(line: bytes) -> None:
        nonlocal outstanding
        outstanding += 1
        conn.publish(args.channel, line).addCallbacks(published, refused)

    class Lines(LineReceiver):
        delimiter = b"\n"
        # Long lines go out as PUBB; the server's --max-payload decides.
        MAX_LENGTH = int(conn.info.get("max_payload", 1048576))

        def lineReceived(self, line: bytes) -> None:
            publish(line.rstrip(b"\r"))

        def lineLengthExceeded(self, line: bytes) -> None:
            nonlocal failures
            failures += 1
            console.say("a line over the server's --max-payload was not sent")
            self.clearLineBuffer()

        def connectionLost(self, reason: object = None) -> None:
            nonlocal eof
            rest = self.clearLineBuffer()
            if rest:  # a last line without a newline is still a line
                publish(rest.rstrip(b"\r"))
            eof = True
            maybe_done()

    # StandardIO reads stdin; it would also make stdout non-blocking and drop
    # what it holds at stdin's end, so the ids printed by -v go around it.
    no_output = os.open(os.devnull, os.O_WRONLY)
    # mypy sees the Windows StandardIO (twisted.internet.stdio picks at run time).
    stdin = StandardIO(Lines(), stdout=no_output, reactor=reactor)  # type: ignore[call-arg]

    def lost(why: str) -> str:
        if not finished.called:
            finished.errback(Failed(f"the server closed the connection ({why})"))
        return why

    conn.closed.addCallback(lost)
    try:
        return await finished
    finally:
        stdin.loseConnection()  # which closes no_output too, in its own time
