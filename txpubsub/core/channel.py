"""A channel: its message ids, its kept history and its concrete subscribers."""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

from txpubsub.core.message import Message

T = TypeVar("T")


class Channel(Generic[T]):
    """One concrete channel.

    Ids are consecutive from 1 and never restart while the server's epoch
    stands: a channel created again after a drop starts after ``last_id``.
    History keeps each message's delivery line and nothing else: that is all
    a replay sends, and one bytes object per kept message is what makes
    history cheap to keep (a Message with its payload, id and time would be
    five objects for the garbage collector to carry; on PyPy, keeping them
    cost ~40% of a publish).
    ``subscribers`` holds the connections subscribed to this exact name;
    wildcard subscriptions live in the hub's PatternIndex.
    """

    __slots__ = (
        "_keep",
        "_kept",
        "created_at",
        "last_id",
        "last_publish_at",
        "name",
        "published",
        "subscribers",
        "system",
    )

    def __init__(
        self,
        name: str,
        keep: int,
        created_at: float,
        last_id: int = 0,
        system: bool = False,
    ) -> None:
        self.name = name
        self._keep = keep
        self._kept: deque[bytes] | None = None  # made at the first message kept
        self.last_id = last_id
        self.published = 0
        self.subscribers: set[T] = set()
        self.created_at = created_at
        self.last_publish_at: float | None = None
        self.system = system

    @property
    def keep(self) -> int:
        """How many messages this channel keeps."""
        return self._keep

    @property
    def history(self) -> Sequence[bytes]:
        """The kept messages' delivery lines, oldest first (consecutive ids up
        to ``last_id``)."""
        return self._kept if self._kept is not None else ()

    def append(self, sender: str, payload: bytes, now: float) -> Message:
        """Number a new message, keep it, and return it."""
        self.last_id += 1
        self.published += 1
        self.last_publish_at = now
        msg = Message(self.name, self.last_id, sender, payload, now)
        kept = self._kept
        if kept is None:
            if not self._keep:
                return msg
            kept = self._kept = deque(maxlen=self._keep)
        kept.append(msg.line)
        return msg

    def restore(self, messages: Iterable[Message]) -> None:
        """Put back kept messages (oldest first), as a store loads them at start."""
        for msg in messages:
            if self._kept is None:
                if not self._keep:
                    return
                self._kept = deque(maxlen=self._keep)
            self._kept.append(msg.line)

    def clear_history(self) -> None:
        """Forget every kept message."""
        self._kept = None
