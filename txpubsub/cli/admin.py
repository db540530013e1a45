"""``txpubsub admin``: one admin command, or an ``admin>`` prompt, on the admin socket."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import Any

from txpubsub.cli.connect import seconds_type
from txpubsub.cli.console import Console, Failed

DEFAULT_ADMIN = "txpubsub-admin.sock"

DESCRIPTION = f"""\
Talk to a server's admin socket (docs/admin.md): run one command and exit
(status 1 if the server refused it), or, without a command, read commands
from stdin (an admin> prompt on a terminal; quit or Ctrl-D leaves).
Messages from HISTORY print as the server sends them: MSG for text, and
MSGB's header line, the payload bytes exactly, and a newline for binary.
The socket defaults to {DEFAULT_ADMIN} in the current directory."""

EXAMPLES = """\
examples:
  txpubsub admin STATS
  txpubsub admin /run/txpubsub/admin.sock CLIENTS
  txpubsub admin HISTORY news.uk 10
  txpubsub admin /run/txpubsub/admin.sock        an admin> prompt"""


def add_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    parser.add_argument("socket", nargs="?", metavar="SOCKET",
                        help=f"the admin socket's path (default {DEFAULT_ADMIN}); a first word "
                             "that is no path (no /, not .sock, no such file) is the command")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND",
                        help="an admin command and its arguments (STATS, CLIENTS, KICK ID, "
                             "HISTORY CH [N], HELP, ...)")
    parser.add_argument("--timeout", type=seconds_type, default=10.0, metavar="SECONDS",
                        help="how long to wait for the socket and each reply (default 10)")


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.socket and not os.path.exists(args.socket) and "/" not in args.socket and \
            not args.socket.endswith(".sock"):
        # `txpubsub admin STATS`: the first word was a command, not a socket path.
        args.command, args.socket = [args.socket, *args.command], None


def delivery_bytes(event: Any) -> bytes:
    """A HISTORY message as the server framed it: MSG for text, MSGB with its bytes."""
    from txpubsub.wire.line import is_text

    head = f"{event.channel} {event.msg_id} {event.sender}".encode()
    if is_text(event.payload):
        return b"MSG " + head + b" " + event.payload + b"\n"
    return b"MSGB %s %d\n%s\n" % (head, len(event.payload), event.payload)


def run(args: argparse.Namespace, console: Console) -> int:
    from txpubsub.client.blocking import open_socket
    from txpubsub.wire.parser import Delivery, Reply, ServerParser

    path = args.socket or DEFAULT_ADMIN
    try:
        sock = open_socket(f"unix:{path}", args.timeout)
    except OSError as e:
        raise Failed(f"cannot open the admin socket {path}: {e.strerror or e}") from None
    parser = ServerParser()

    def command(line: str) -> bool:
        try:
            sock.sendall(line.encode() + b"\r\n")
            return read_reply()
        except OSError as e:
            raise Failed(f"the admin connection failed: {e.strerror or e}") from None

    def read_reply() -> bool:
        while True:
            data = sock.recv(65536)
            if not data:
                raise Failed("the server closed the admin connection")
            for event in parser.feed(data):
                if isinstance(event, Reply):
                    if event.ok:
                        console.line(f"+OK {event.text}".rstrip())
                        return True
                    sys.stderr.write(f"-ERR {event.code} {event.text}\n")
                    return False
                if isinstance(event, Delivery):
                    console.out(delivery_bytes(event))
                else:
                    console.line(getattr(event, "line", None) or str(event))
                if console.stdout_closed:
                    return True

    if args.command:
        return 0 if command(" ".join(args.command)) else 1
    interactive = sys.stdin.isatty()
    while not console.stdout_closed:
        try:
            line = input("admin> " if interactive else "")
        except EOFError:
            return 0
        if line.strip().lower() in ("quit", "exit"):
            return 0
        if line.strip():
            command(line)
    return 0
