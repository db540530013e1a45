"""``txpubsub manhole``: the Python prompt inside a server started with --manhole."""
from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Mapping

from txpubsub.cli.console import Failed

DEFAULT_MANHOLE = "txpubsub-manhole.sock"

DESCRIPTION = """\
Open the Python prompt inside a running server (twistd txpubsub --manhole
PATH): your terminal talks straight to it. Ctrl-D leaves. What you run there
runs inside the server; see docs/admin.md."""

EXAMPLES = f"""\
examples:
  txpubsub manhole                          the socket {DEFAULT_MANHOLE}
  txpubsub manhole /run/txpubsub/manhole.sock"""


def add_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    parser.add_argument("socket", nargs="?", default=DEFAULT_MANHOLE, metavar="SOCKET",
                        help=f"the manhole socket's path (default {DEFAULT_MANHOLE})")


def run(args: argparse.Namespace) -> int:
    import select
    import termios
    import tty

    path = args.socket
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
                try:
                    os.write(sys.stdout.fileno(), data)
                except BrokenPipeError:
                    return 0
            if stdin in ready:
                data = os.read(stdin, 1024)
                if not data or (data == b"\x04" and saved is None):
                    return 0
                sock.sendall(data)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
