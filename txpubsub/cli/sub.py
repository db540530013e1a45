"""``txpubsub sub``: print messages as they arrive."""
from __future__ import annotations

import argparse
import base64
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from txpubsub.cli.connect import Reconnecting, add_server_options, seconds_type
from txpubsub.cli.console import Console
from txpubsub.wire.errors import HubError
from txpubsub.wire.names import is_wildcard, pattern_kind

DESCRIPTION = """\
Subscribe to channels and print each message as it arrives, its payload
bytes exactly as sent followed by a newline (or as --format, --json or
--raw say). A message matched by two patterns is printed once. When the
server goes away, sub says so on stderr, reconnects and resumes each channel
after the last id it printed. It ends after --count messages, after
--timeout seconds without one, on Ctrl-C (status 130), or quietly (status 0)
when its reader goes away (| head -1)."""

EXAMPLES = """\
examples:
  txpubsub sub 'news.>'                       payloads, one per line
  txpubsub sub news.uk --last 10 -v           the last 10 first; channel id sender payload
  txpubsub sub news.uk --since 41 --count 5   resume after id 41; exit after 5 messages
  txpubsub sub 'news.>' --json                one JSON object per message
  txpubsub sub news -F '{time} {sender}: {payload}'
  txpubsub sub blobs --last 1 --count 1 --raw > blob    payload bytes exactly
  txpubsub sub logs --timeout 5               exit once 5 s pass without a message"""

FIELDS = ("channel", "id", "sender", "time", "payload")
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")  # {{, }} or {field}
VERBOSE = "{channel} {id} {sender} {payload}"


def pattern_type(text: str) -> str:
    try:
        pattern_kind(text)
    except HubError as e:
        raise argparse.ArgumentTypeError(e.text) from None
    return text


def count_type(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, not {text!r}")
    return int(text)


def id_type(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number (0 or more), not {text!r}")
    return int(text)


def format_type(text: str) -> str:
    for match in _TOKEN.finditer(text):
        if match[1] is not None and match[1] not in FIELDS:
            raise argparse.ArgumentTypeError(
                f"unknown field {match[0]}: the fields are "
                + ", ".join(f"{{{name}}}" for name in FIELDS))
    return text


def add_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    parser.add_argument("patterns", nargs="+", metavar="PATTERN", type=pattern_type,
                        help="a channel (news.uk), or a pattern: * matches one token "
                             "(news.*), > the rest (news.>)")
    replay = parser.add_mutually_exclusive_group()
    replay.add_argument("--last", type=id_type, metavar="N",
                        help="first replay the last N messages of each channel")
    replay.add_argument("--since", type=id_type, metavar="ID",
                        help="first replay what came after this id")
    parser.add_argument("-c", "--count", type=count_type, metavar="N",
                        help="exit after N messages")
    parser.add_argument("--timeout", type=seconds_type, metavar="SECONDS",
                        help="exit (status 0) once this long passes without a message")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("-v", "--verbose", action="store_const", dest="format", const=VERBOSE,
                       help=f"print channel, id and sender before each payload ({VERBOSE!r})")
    shape.add_argument("-F", "--format", type=format_type,
                       help="print each message so: " + ", ".join(f"{{{f}}}" for f in FIELDS)
                            + " ({time}: when it arrived, ISO 8601), {{ and }} for braces; "
                              "a newline follows")
    shape.add_argument("--json", action="store_true",
                       help='one JSON object per message: {"channel", "id", "sender", "text"} '
                            '("base64" for a binary payload)')
    shape.add_argument("--raw", action="store_true",
                       help="payload bytes exactly, with nothing added between messages")
    add_server_options(parser, env, connect_timeout=None)


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage mistakes sub can see itself: exit 2 before connecting."""
    if args.last is not None or args.since is not None:
        wild = [pattern for pattern in args.patterns if is_wildcard(pattern)]
        if wild:
            parser.error(f"--last and --since need concrete channels, not {wild[0]!r}")


def render(msg: Any, args: argparse.Namespace) -> bytes:
    """One message as printed: payload bytes are never decoded lossily."""
    if args.raw:
        return bytes(msg.payload)
    if args.json:
        try:
            payload: dict[str, str] = {"text": msg.payload.decode("utf-8")}
        except UnicodeDecodeError:
            payload = {"base64": base64.b64encode(msg.payload).decode()}
        return json.dumps({"channel": msg.channel, "id": msg.msg_id, "sender": msg.sender,
                           **payload}).encode() + b"\n"
    if not args.format:
        return bytes(msg.payload) + b"\n"
    out = []
    end = 0
    for match in _TOKEN.finditer(args.format):
        out.append(args.format[end:match.start()].encode())
        end = match.end()
        field = match[1]
        if field is None:
            out.append(match[0][0].encode())  # {{ or }}
        elif field == "payload":
            out.append(bytes(msg.payload))
        elif field == "time":
            out.append(datetime.now().astimezone().isoformat(timespec="milliseconds").encode())
        else:
            value = {"channel": msg.channel, "id": msg.msg_id, "sender": msg.sender}[field]
            out.append(str(value).encode())
    out.append(args.format[end:].encode())
    return b"".join(out) + b"\n"


async def run(reactor: Any, args: argparse.Namespace, console: Console) -> int:
    from twisted.internet.defer import Deferred

    seen = 0
    printed: dict[str, int] = {}  # channel -> last id printed: one line per message
    idle: list[Any] = []

    def show(msg: Any) -> None:
        nonlocal seen
        if kept.ended.called or (args.count and seen >= args.count):
            return
        if printed.get(msg.channel, 0) >= msg.msg_id and not msg.channel.startswith("@"):
            return  # matched by two of the patterns
        printed[msg.channel] = msg.msg_id
        if not console.out(render(msg, args)):
            return
        seen += 1
        if args.count and seen >= args.count:
            kept.end(0)
        else:
            rest()

    def rest() -> None:
        """The idle clock starts again."""
        if args.timeout:
            if idle and idle[0].active():
                idle[0].reset(args.timeout)
            else:
                idle[:] = [reactor.callLater(args.timeout, kept.end, 0)]

    def failed(failure: Any) -> None:
        kept.fail(failure.value)

    async def subscribe() -> None:
        conn = await kept.client.connection()
        conn.on_drop = lambda channel: console.say(f"the server dropped {channel}")
        for pattern in args.patterns:
            await kept.client.subscribe(pattern, show, last=args.last, since=args.since)
        rest()

    kept = Reconnecting(reactor, args, console, on_direct=show)
    kept.start()
    subscribing = Deferred.fromCoroutine(subscribe())
    subscribing.addErrback(failed)
    try:
        return await kept.ended
    finally:
        for call in idle:
            if call.active():
                call.cancel()
        subscribing.cancel()
        await kept.stop()
