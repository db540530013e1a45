"""Codecs: one wire format's encoding of a Message, built once per message
for every session of that format."""
from __future__ import annotations

from typing import Callable

from txpubsub.core.message import Message


class Codec:
    """Encodes messages for one wire format, remembering the last one.

    The hub hands a message to all its readers in one loop, so every session
    of this format wants the same bytes in a row: ``last_bytes`` (and its
    length, ``last_size``) are the encoding of ``last``. An *eager* codec
    (cheap to encode: the line protocol's, a raw feed's) is primed by the hub
    once per delivered message while a session of its format is connected,
    so its sessions read ``last_bytes`` without a check; its bytes must end
    with the payload and CRLF, as PyPy's history may keep them in place of
    the payload (txpubsub.core.history.RingHistory). Any other codec is
    encoded by the first of its sessions that finds ``last`` is not the
    message at hand (``encoded``). History replays call ``encode`` directly.
    One Codec per format per server, shared by all its doors' sessions.
    """

    __slots__ = ("eager", "encode", "last", "last_bytes", "last_size")

    def __init__(self, encode: Callable[[Message], bytes], eager: bool = False) -> None:
        self.encode = encode
        self.eager = eager
        self.last: Message | None = None
        self.last_bytes = b""
        self.last_size = 0  # len(last_bytes): read per delivery, computed once

    def prime(self, msg: Message) -> None:
        """Encode ``msg`` as the last message, for every session of this format."""
        data = self.last_bytes = self.encode(msg)
        self.last_size = len(data)
        self.last = msg

    def encoded(self, msg: Message) -> bytes:
        """The message's bytes in this format, encoded only if it is new."""
        if msg is not self.last:
            self.prime(msg)
        return self.last_bytes
