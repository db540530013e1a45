"""``txpubsub chat``: an interactive chat over channels.

On a terminal it uses prompt_toolkit (on Twisted's asyncio reactor, which
the CLI installs first): incoming messages appear above the prompt at once
and the line being typed stays as it was. Without a terminal it reads plain
lines from stdin. Commands: /join CH, /leave [CH], /msg NAME TEXT, /who,
/list, /quit; anything else is said in the current channel.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from twisted.internet.defer import Deferred

from txpubsub.client import Client, CommandError, ServerClosed
from txpubsub.wire.parser import Delivery

HELP = "commands: /join CH, /leave [CH], /msg NAME TEXT, /who, /list, /quit"


class Chat:
    """The chat's state and commands, whatever the terminal."""

    def __init__(self, client: Client, channel: str, out: Callable[[str], object]) -> None:
        self.client = client
        self.channels = [channel]
        self.out = out

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


async def run_chat(reactor: Any, args: argparse.Namespace, endpoint: Any,
                   say: Callable[[str], None]) -> int:
    chat: Chat

    def state(text: str) -> None:
        if text.startswith("disconnected"):
            say(f"{text}; reconnecting")
        elif text != "connected":
            say(text)

    client = Client(reactor, endpoint, name=args.name, on_state=state,
                    on_direct=lambda msg: chat.show(msg))
    chat = Chat(client, args.channel, print)
    client.start()
    try:
        await client.connection().addTimeout(args.timeout, reactor)
    except CommandError:
        raise  # e.g. the name is taken: said as it is
    except Exception:
        await client.stop()
        raise ServerClosed(f"cannot reach {args.server}") from None
    await client.subscribe(args.channel, chat.show)
    if sys.stdin.isatty():
        await _prompt(chat)
    else:
        await _plain(reactor, chat)
    await client.stop()
    return 0


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
