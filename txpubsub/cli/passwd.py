"""``txpubsub passwd``: a password hash to paste into a --users file."""
from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Mapping
from typing import TextIO

DESCRIPTION = """\
Print a salted scrypt hash of a password, one line to paste as a user's
`password = "..."` in the server's --users file (docs/auth.md). The
password is asked for twice on a terminal; when stdin is not a terminal,
its first line is the password (the line end is not part of it)."""

EXAMPLES = """\
examples:
  txpubsub passwd                               # asks twice, prints the line
  printf '%s\\n' "$PW" | txpubsub passwd          # from a script"""


def add_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    parser.add_argument("--cost", type=int, default=None, metavar="LN",
                        help="scrypt cost as log2 of n (default 14: about 0.1 s and 16 MiB "
                             "per check); every AUTH pays it")


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from txpubsub.auth.passwords import MAX_LN

    if args.cost is not None and not 10 <= args.cost <= MAX_LN:
        parser.error(f"--cost must be from 10 to {MAX_LN}")


def read_password(stdin: TextIO) -> str:
    """The password: asked twice on a terminal, else the first line of stdin."""
    if stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ValueError("the two passwords differ")
        return first
    line = stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def run(args: argparse.Namespace, stdin: TextIO | None = None,
        stdout: TextIO | None = None) -> int:
    """Print the hash line; 1 with a message on stderr if there is no password."""
    from txpubsub.auth.passwords import DEFAULT_LN, hash_password

    try:
        password = read_password(stdin or sys.stdin)
    except (ValueError, EOFError) as e:
        print(f"txpubsub passwd: {e or 'no password'}", file=sys.stderr)
        return 1
    if password.endswith("\r"):
        password = password[:-1]
    if not password:
        print("txpubsub passwd: the password is empty", file=sys.stderr)
        return 1
    print(hash_password(password, ln=args.cost or DEFAULT_LN), file=stdout or sys.stdout)
    return 0
