"""The ``txpubsub`` command: the parser, and dispatch to one module per subcommand.

Usage mistakes the command can see itself exit 2 before connecting; other
errors are one line on stderr and exit 1; Ctrl-C exits quietly (130).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from types import ModuleType

from txpubsub import __version__
from txpubsub.cli import admin, bench, chat, manhole, passwd, pub, sub
from txpubsub.cli.connect import check_server_options
from txpubsub.cli.console import Console, Failed, run_twisted

SUBCOMMANDS: dict[str, tuple[ModuleType, str]] = {
    "sub": (sub, "print messages as they arrive"),
    "pub": (pub, "publish a message, a file, or stdin's lines"),
    "chat": (chat, "chat in a channel"),
    "admin": (admin, "one admin command, or an admin prompt"),
    "manhole": (manhole, "the Python prompt inside the server"),
    "bench": (bench, "measure the server's speed"),
    "passwd": (passwd, "a password hash for the server's --users file"),
}
TWISTED = ("sub", "pub", "chat")  # the subcommands that run on the reactor

DESCRIPTION = """\
Talk to a txpubsub server. Options go after the subcommand; `txpubsub
SUBCOMMAND --help` explains each. The server is -s/--server, or
$TXPUBSUB_SERVER (TLS files: $TXPUBSUB_CA, $TXPUBSUB_CERT, $TXPUBSUB_KEY;
the name: $TXPUBSUB_NAME)."""


def _version() -> str:
    import twisted

    return f"txpubsub {__version__} (Twisted {twisted.__version__}, Python " \
           f"{sys.version.split()[0]})"


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="txpubsub", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="cmd", required=True, metavar="SUBCOMMAND")
    for name, (module, summary) in SUBCOMMANDS.items():
        command = commands.add_parser(
            name, help=summary, description=module.DESCRIPTION, epilog=module.EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command, env)
    return parser


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    commands = next(action for action in parser._actions
                    if isinstance(action, argparse._SubParsersAction))
    return commands.choices[name]


def parse(argv: list[str] | None = None,
          env: Mapping[str, str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments; usage mistakes exit 2 with a message."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(env)
    positionals: list[str] | None = None
    if argv and argv[0] == "pub":
        # pub's message may start with '-': only pub's own options are options.
        options, positionals = pub.split_argv(_subparser(parser, "pub"), argv[1:])
        argv = ["pub", *options, "--", *positionals]
    args = parser.parse_args(argv)
    command = _subparser(parser, args.cmd)
    if positionals:
        args.message = positionals[1:]  # as given, even a second "--"
    if args.cmd in TWISTED:
        check_server_options(command, args, env)
    check = getattr(SUBCOMMANDS[args.cmd][0], "check", None)
    if check is not None:
        check(command, args)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    console = Console()
    try:
        if args.cmd == "admin":
            status = admin.run(args, console)
            sys.exit(console.stdout_status or status)
        if args.cmd == "manhole":
            sys.exit(manhole.run(args))
        if args.cmd == "bench":
            sys.exit(bench.main(args))
        if args.cmd == "passwd":
            sys.exit(passwd.run(args))
        if args.cmd == "chat" and sys.stdin.isatty():
            from twisted.internet import asyncioreactor

            asyncioreactor.install()
        sys.exit(run_twisted(SUBCOMMANDS[args.cmd][0].run, args, console))
    except Failed as e:
        console.say(str(e))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
