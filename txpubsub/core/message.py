"""The published message: one immutable value for every door and store."""
from __future__ import annotations


class Message:
    """A published message: channel, id, sender, payload and time.

    The core hands the same object to every door; each door's codec encodes
    it at most once for all its subscribers (txpubsub.doors.codecs), and
    history keeps these objects, so any door can replay them.
    """

    __slots__ = ("channel", "msg_id", "payload", "published_at", "sender")

    def __init__(
        self, channel: str, msg_id: int, sender: str, payload: bytes, published_at: float
    ) -> None:
        self.channel = channel
        self.msg_id = msg_id
        self.sender = sender
        self.payload = payload
        self.published_at = published_at

    def __repr__(self) -> str:
        return f"<Message {self.channel} #{self.msg_id} from {self.sender}>"
