"""A channel: its message ids, its kept history and its concrete subscribers."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from txpubsub.core.history import DequeHistory, History, RingHistory
from txpubsub.core.message import Message

T = TypeVar("T")


class Channel(Generic[T]):
    """One concrete channel.

    Ids are consecutive from 1 and never restart while the server's epoch
    stands: a channel created again after a drop starts after ``last_id``.
    History keeps the last ``keep`` messages (txpubsub.core.history), which
    every door can replay in its own format.
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
        self._kept: DequeHistory | RingHistory | None = None  # made at the first message kept
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
    def kept(self) -> int:
        """How many messages are kept now (consecutive ids up to ``last_id``)."""
        return len(self._kept) if self._kept is not None else 0

    def newest(self, count: int) -> list[Message]:
        """The newest ``count`` kept messages (at most all), oldest first."""
        return self._kept.newest(count) if self._kept is not None else []

    def record(self, msg: Message) -> None:
        """Count a new message (numbered by the backplane) and keep it."""
        self.last_id = msg.msg_id
        self.published += 1
        self.last_publish_at = msg.published_at
        kept = self._kept
        if kept is None:
            if not self._keep:
                return
            kept = self._kept = History(self.name, self._keep)
        kept.append(msg)

    def restore(self, messages: Iterable[Message]) -> None:
        """Put back kept messages (oldest first), as a store loads them at start."""
        for msg in messages:
            if self._kept is None:
                if not self._keep:
                    return
                self._kept = History(self.name, self._keep)
            self._kept.append(msg)

    def clear_history(self) -> None:
        """Forget every kept message."""
        self._kept = None
