"""``txpubsub chat``: an interactive chat over channels.

On a terminal it uses prompt_toolkit (on Twisted's asyncio reactor, which
the CLI installs first): incoming messages appear above the prompt at once
and the line being typed stays as it was. Without a terminal it reads plain
lines from stdin. Commands: /join CH, /leave [CH], /msg NAME TEXT, /who,
/list, /quit; anything else is said in the current channel.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from typing import Any, Callable

from twisted.internet.defer import Deferred

from txpubsub.cli.connect import Reconnecting, add_server_options
from txpubsub.cli.console import Console
from txpubsub.client import Client, CommandError, ServerClosed
from txpubsub.wire.errors import HubError
from txpubsub.wire.names import SYSTEM, channel_kind
from txpubsub.wire.parser import Delivery

HELP = "commands: /join CH, /leave [CH], /msg NAME TEXT, /who, /list, /quit"

DESCRIPTION = """\
Chat in a channel: each line you type is published there, and what others
say appears above the prompt (on a terminal; without one, stdin's lines are
read plainly). Commands: /join CH, /leave [CH], /msg NAME TEXT, /who,
/list, /quit (or Ctrl-D). When the server goes away, chat says so and
reconnects, as sub does."""

EXAMPLES = """\
examples:
  txpubsub chat --name alice room
  txpubsub chat -s chat.example.org:23400 --name bob
  printf 'hello\\n/quit\\n' | txpubsub chat --name bot room"""


# What a line on a terminal must not carry as it is: C0 controls (CR, LF, ESC
# among them), DEL, C1 controls (8-bit CSI among them), the line and paragraph
# separators, and the bidi controls that reorder what follows them.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f"
                       "\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every control character escaped as ``repr`` would
    (``\\n``, ``\\x1b``, ``\\u202e``): what others send can neither start a
    line of its own nor drive the terminal."""
    return _CONTROLS.sub(_escaped, text)


class Chat:
    """The chat's state and commands, whatever the terminal."""

    def __init__(self, client: Client, channel: str, out: Callable[[str], object]) -> None:
        self.client = client
        self.channels = [channel]
        self._print = out

    def out(self, line: str) -> None:
        """Print one line; whatever came from the server in it is shown escaped."""
        self._print(visible(line))

    @property
    def current(self) -> str | None:
        return self.channels[-1] if self.channels else None

    def show(self, msg: Delivery) -> None:
        where = "(private)" if msg.channel.startswith("@") else f"[{msg.channel}]"
        self.out(f"{where} {msg.sender}: {msg.text}")

    async def handle(self, line: str) -> bool:
        """Carry out one typed line; False when the user wants to leave."""
        line = line.rstrip("\r\n")
        if not line.strip():
            return True
        try:
            if not line.startswith("/"):
                if self.current is None:
                    self.out("you are in no channel: /join one")
                else:
                    await self.client.publish(self.current, line)
                return True
            word, _, rest = line[1:].partition(" ")
            rest = rest.strip()
            if word == "quit":
                return False
            if word == "join" and rest:
                await self.client.subscribe(rest, self.show)
                if rest in self.channels:
                    self.channels.remove(rest)
                self.channels.append(rest)
                self.out(f"joined {rest}")
            elif word == "leave" and (rest or self.current):
                channel = rest or self.current
                await self.client.unsubscribe(channel)
                if channel in self.channels:
                    self.channels.remove(channel)
                self.out(f"left {channel}")
            elif word == "msg" and " " in rest:
                name, text = rest.split(" ", 1)
                await self.client.direct(name, text)
            elif word == "who":
                for item in await self.client.who(self.current):
                    self.out(f"  {item.fields[1] if item.fields[1] != '-' else item.fields[0]}")
            elif word == "list":
                for item in await self.client.list():
                    name, subscribers = item.fields[0], item.fields[1]
                    self.out(f"  {name} ({subscribers} here)")
            else:
                self.out(HELP)
        except CommandError as e:
            self.out(f"error: {e.code} {e.text}")
        except ServerClosed as e:
            self.out(f"not sent: the connection is down ({e.reason}); reconnecting")
        return True


def channel_type(text: str) -> str:
    try:
        if channel_kind(text) == SYSTEM:
            raise HubError("bad-channel", "system channels are read-only: no chatting there")
    except HubError as e:
        raise argparse.ArgumentTypeError(e.text) from None
    return text


def add_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    parser.add_argument("channel", nargs="?", default="chat", type=channel_type,
                        help="the channel to chat in first (default: chat)")
    add_server_options(parser, env, connect_timeout=None)


async def run(reactor: Any, args: argparse.Namespace, console: Console) -> int:
    """Chat until /quit, Ctrl-D or the end of stdin."""
    chat: Chat

    async def session() -> int:
        try:
            await kept.client.connection()
        except CommandError:
            raise  # e.g. the name is taken: said as it is
        await kept.client.subscribe(args.channel, chat.show)
        if sys.stdin.isatty():
            await _prompt(chat)
        else:
            await _plain(reactor, chat)
        return 0

    kept = Reconnecting(reactor, args, console, on_direct=lambda msg: chat.show(msg))
    chat = Chat(kept.client, args.channel, print)
    kept.start()
    talking = Deferred.fromCoroutine(session())
    talking.addCallbacks(kept.end, lambda failure: kept.fail(failure.value))
    try:
        return await kept.ended
    finally:
        talking.cancel()
        await kept.stop()


async def _prompt(chat: Chat) -> None:
    import asyncio

    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    session: PromptSession[str] = PromptSession()
    with patch_stdout(raw=True):
        name = chat.client.name or "you"
        chat.out(f"in {chat.current} as {name}; {HELP}")
        while True:
            try:
                line = await Deferred.fromFuture(
                    asyncio.ensure_future(session.prompt_async(f"{chat.current or ''}> ")))
            except (EOFError, KeyboardInterrupt):
                return
            if not await chat.handle(line):
                return


async def _plain(reactor: Any, chat: Chat) -> None:
    from twisted.internet.stdio import StandardIO
    from twisted.protocols.basic import LineReceiver

    finished: Deferred[None] = Deferred()
    lines: list[str] = []
    state = {"busy": False, "eof": False}

    def finish() -> None:
        if not finished.called:
            finished.callback(None)

    async def drain() -> None:
        # One line at a time, in order; the end of input waits for them all.
        state["busy"] = True
        try:
            while lines and not finished.called:
                if not await chat.handle(lines.pop(0)):
                    finish()
        finally:
            state["busy"] = False
        if state["eof"]:
            finish()

    def kick() -> None:
        if not state["busy"]:
            Deferred.fromCoroutine(drain())

    class Lines(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            lines.append(line.decode("utf-8", "replace"))
            kick()

        def connectionLost(self, reason: object = None) -> None:
            state["eof"] = True
            kick()

    StandardIO(Lines(), reactor=reactor)
    await finished
