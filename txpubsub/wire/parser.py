"""Reading what a txpubsub server says: the client side of the line protocol.

One incremental parser (bytes in, events out) shared by the Twisted client
and the blocking client, so that both frame MSGB payloads the same way.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Union


@dataclass(frozen=True)
class Delivery:
    """A message: ``MSG``/``MSGB``, live, replayed or from HISTORY."""

    channel: str
    msg_id: int
    sender: str
    payload: bytes

    @property
    def text(self) -> str:
        """The payload as text (invalid UTF-8 replaced)."""
        return self.payload.decode("utf-8", "replace")


@dataclass(frozen=True)
class Reply:
    """A final reply: ``+OK ...``, ``-ERR code text`` or ``PONG``."""

    ok: bool
    text: str  # after "+OK " (or "PONG"); for errors, the human text
    code: str = ""  # the error code, for -ERR


@dataclass(frozen=True)
class Item:
    """A listing line (``CHANNEL ...``, ``CLIENT ...``, ``HELP ...``, ...)."""

    kind: str
    fields: list[str]
    line: str


@dataclass(frozen=True)
class ServerLine:
    """Something the server says on its own: INFO, PING, BYE, DROP."""

    kind: str  # "INFO", "PING", "BYE", "DROP"
    text: str
    info: dict[str, Any] | None = None


Event = Union[Delivery, Reply, Item, ServerLine]


class ProtocolError(Exception):
    """The server said something this client cannot read."""


class ServerParser:
    """Feed bytes from the server; get events back, in order."""

    def __init__(self) -> None:
        self._buffer = b""
        self._pending: tuple[str, int, str, int] | None = None  # a MSGB waiting for its bytes

    def feed(self, data: bytes) -> list[Event]:
        buf = self._buffer + data if self._buffer else data
        events: list[Event] = []
        pos = 0
        while True:
            if self._pending is not None:
                channel, msg_id, sender, size = self._pending
                if len(buf) - pos < size + 2:
                    break
                payload = buf[pos : pos + size]
                pos += size + 2
                self._pending = None
                events.append(Delivery(channel, msg_id, sender, payload))
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            line = buf[pos:eol]
            pos = eol + 2
            event = self._line(line)
            if event is not None:
                events.append(event)
        self._buffer = buf[pos:]
        return events

    def _line(self, line: bytes) -> Event | None:
        head, _, rest = line.partition(b" ")
        if head == b"MSG":
            channel, msg_id, sender, payload = rest.split(b" ", 3)
            return Delivery(channel.decode(), int(msg_id), sender.decode(), payload)
        if head == b"MSGB":
            channel, msg_id, sender, size = rest.split(b" ")
            self._pending = (channel.decode(), int(msg_id), sender.decode(), int(size))
            return None
        text = rest.decode("utf-8", "replace")
        if head == b"+OK":
            return Reply(True, text)
        if head == b"-ERR":
            code, _, human = text.partition(" ")
            return Reply(False, human, code)
        if head == b"PONG":
            return Reply(True, "PONG")
        if head == b"INFO":
            return ServerLine("INFO", text, json.loads(text))
        if head in (b"PING", b"BYE", b"DROP"):
            return ServerLine(head.decode(), text)
        if head.isupper():
            return Item(head.decode(), text.split(" "), line.decode("utf-8", "replace"))
        raise ProtocolError(f"cannot read server line {line[:80]!r}")
