"""Codecs: a door's encoding of a Message, built once per message for every
session of that format."""
from __future__ import annotations

from typing import Callable

from txpubsub.core.message import Message
from txpubsub.wire.line import encode_message


class Codec:
    """Encodes messages for one wire format, remembering the last one.

    The hub hands a message to all its readers in one loop, so every session
    of this format asks for the same message in a row: the first encodes it,
    the others get the same bytes object (``last_bytes``). Sessions read
    ``last``/``last_bytes``/``last_size`` inline on the hot path and call ``encoded`` only
    when the message is new. History replays call ``encode`` directly.
    One Codec per format per server, shared by all its doors' sessions.
    """

    __slots__ = ("encode", "last", "last_bytes", "last_size")

    def __init__(self, encode: Callable[[Message], bytes]) -> None:
        self.encode = encode
        self.last: Message | None = None
        self.last_bytes = b""
        self.last_size = 0  # len(last_bytes): read per delivery, computed once

    def encoded(self, msg: Message) -> bytes:
        """The message's bytes in this format, encoded only if it is new."""
        if msg is not self.last:
            data = self.last_bytes = self.encode(msg)
            self.last_size = len(data)
            self.last = msg
        return self.last_bytes


def line_codec() -> Codec:
    """``MSG``/``MSGB`` lines, for the line protocol."""
    return Codec(encode_message)


def bare_codec() -> Codec:
    """The payload alone and CRLF, for raw ``--feed`` readers."""
    return Codec(lambda m: m.payload + b"\r\n")
