"""The published message and its text wire form, encoded once for every reader."""
from __future__ import annotations

from txpubsub.wire.line import is_text


class Message:
    """A published message: immutable, its delivery line built once.

    ``line`` is the exact ``MSG``/``MSGB`` bytes (CRLF included) that every
    subscriber of the text protocol receives: the same object for all of them.
    """

    __slots__ = ("_bare", "channel", "line", "msg_id", "payload", "published_at", "sender",
                 "size")

    def __init__(
        self, channel: str, msg_id: int, sender: str, payload: bytes, published_at: float
    ) -> None:
        self.channel = channel
        self.msg_id = msg_id
        self.sender = sender
        self.payload = payload
        self.published_at = published_at
        self._bare: bytes | None = None
        # Concatenation, not formatting: on PyPy ``%`` and f-strings cost
        # several times more, and this runs once per publish.
        head = (channel + " " + str(msg_id) + " " + sender).encode()
        if is_text(payload):
            self.line = b"MSG " + head + b" " + payload + b"\r\n"
        else:
            size = str(len(payload)).encode()
            self.line = b"MSGB " + head + b" " + size + b"\r\n" + payload + b"\r\n"
        self.size = len(self.line)  # read per delivery; computed once here

    def bare_line(self) -> bytes:
        """The payload alone and CRLF, for raw feeds; built on first use, then shared."""
        if self._bare is None:
            self._bare = self.payload + b"\r\n"
        return self._bare

    def __repr__(self) -> str:
        return f"<Message {self.channel} #{self.msg_id} from {self.sender}>"
