"""A channel: its message ids, its kept history and its concrete subscribers."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from txpubsub.core.history import FlatHistory, History, RingHistory
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
        "_full",
        "_keep",
        "_kept",
        "byte_cap",
        "created_at",
        "kept_bytes",
        "last_id",
        "last_publish_at",
        "name",
        "pending_id",
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
        byte_cap: int = 1 << 62,
    ) -> None:
        self.name = name
        self._keep = keep
        self._full = 5 * keep  # a FlatHistory's length once it is full
        self.byte_cap = byte_cap  # most payload bytes kept (--max-channel-bytes)
        self.kept_bytes = 0  # payload bytes kept now
        self._kept: FlatHistory | RingHistory | None = None  # made at the first message kept
        self.last_id = last_id
        # With a durable store: the newest id handed out, committed or not
        # (last_id and history only advance once the commit has finished).
        self.pending_id = last_id
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
        return self._kept.message_count() if self._kept is not None else 0

    def newest(self, count: int) -> list[Message]:
        """The newest ``count`` kept messages (at most all), oldest first."""
        return self._kept.newest(count) if self._kept is not None else []

    def record_in_deque(self, msg: Message, carrier: bytes | None = None) -> int:
        """Count a new message (numbered by the backplane) and keep it;
        returns how many payload bytes more (or fewer) the channel keeps.
        CPython's form: ``carrier`` is not needed (FlatHistory.add says why).
        """
        # FlatHistory.add written out (this runs once per publish).
        self.last_id = msg.msg_id
        self.published += 1
        self.last_publish_at = msg.published_at
        kept: FlatHistory | None = self._kept  # type: ignore[assignment]
        if kept is None:
            if not self._keep:
                return 0
            kept = self._kept = FlatHistory(self.name, self._keep)
        size = len(msg.payload)
        grown = size - kept[0] if len(kept) == self._full else size
        kept.extend((size, msg.msg_id - kept.newest_id, msg.sender, msg.payload, msg.published_at))
        kept.newest_id = msg.msg_id
        kept_bytes = self.kept_bytes = self.kept_bytes + grown
        if kept_bytes > self.byte_cap:
            grown -= self.drop_oldest(kept_bytes - self.byte_cap)
        return grown

    def record_in_rings(self, msg: Message, carrier: bytes | None = None) -> int:
        """Count a new message (numbered by the backplane) and keep it;
        returns how many payload bytes more (or fewer) the channel keeps.
        ``carrier``: bytes ending with the payload and CRLF, kept instead
        of the payload (see RingHistory)."""
        self.last_id = msg.msg_id
        self.published += 1
        self.last_publish_at = msg.published_at
        kept = self._kept
        if kept is None:
            if not self._keep:
                return 0
            kept = self._kept = RingHistory(self.name, self._keep)
        size = kept.add(msg, carrier)
        kept_bytes = self.kept_bytes = self.kept_bytes + size
        if kept_bytes > self.byte_cap:
            size -= self.drop_oldest(kept_bytes - self.byte_cap)
        return size

    # Each interpreter's (txpubsub.core.history says why they differ).
    record = record_in_deque if History is FlatHistory else record_in_rings

    def drop_oldest(self, nbytes: int) -> int:
        """Forget the oldest kept messages until ``nbytes`` payload bytes are
        gone (or nothing is kept); returns the bytes freed."""
        if self._kept is None:
            return 0
        freed = self._kept.drop_oldest(nbytes)
        self.kept_bytes -= freed
        return freed

    def restore(self, messages: Iterable[Message]) -> int:
        """Put back kept messages (oldest first), as a store loads them at
        start; returns the payload bytes kept."""
        before = self.kept_bytes
        for msg in messages:
            kept = self._kept
            if kept is None:
                if not self._keep:
                    break
                kept = self._kept = History(self.name, self._keep)
            self.kept_bytes += kept.add(msg)
        if self.kept_bytes > self.byte_cap:
            self.drop_oldest(self.kept_bytes - self.byte_cap)
        return self.kept_bytes - before

    def set_keep(self, keep: int) -> int:
        """Keep ``keep`` messages from now on (the newest of those kept stay);
        returns the payload bytes let go of."""
        newest = self.newest(keep) if keep else []
        freed = self.clear_history()
        self._keep = keep
        self._full = 5 * keep
        return freed - self.restore(newest)

    def clear_history(self) -> int:
        """Forget every kept message; returns the payload bytes freed."""
        freed, self.kept_bytes = self.kept_bytes, 0
        self._kept = None
        return freed
