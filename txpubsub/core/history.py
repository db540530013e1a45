"""A channel's kept messages, in the form each interpreter keeps cheapest.

Measured with bench/perline.py (docs/benchmarks.md): on PyPy, keeping
Message objects made a publish ~25% dearer than keeping one bytes object
per message, because the garbage collector copies every object that
survives its nursery; four parallel lists (ids and times unboxed, senders
shared) leave one surviving object per message, the payload. On CPython,
where reference counting frees what dies and the lists cost four appends,
a deque of Messages is the cheaper (by ~5% of a publish). ``History`` is
the one for the running interpreter; both keep the same promises.
"""
from __future__ import annotations

import sys
from collections import deque
from itertools import islice

from txpubsub.core.message import Message


class DequeHistory(deque):
    """The last ``keep`` messages of one channel, oldest first, as Messages.

    A deque itself, so that keeping a message is deque's own ``append`` in C,
    not one more Python call per publish.
    """

    __slots__ = ()

    def __init__(self, channel: str, keep: int) -> None:
        super().__init__((), keep)

    def newest(self, count: int) -> list[Message]:
        """The newest ``count`` kept messages (at most all), oldest first."""
        kept = len(self)
        return list(islice(self, kept - min(count, kept), kept))

    def oldest_size(self) -> int:
        """The payload size of the oldest kept message (there is one)."""
        return len(self[0].payload)

    def drop_oldest(self, nbytes: int) -> int:
        """Forget the oldest messages until ``nbytes`` payload bytes are gone
        (or none is left); returns the bytes freed."""
        freed = 0
        while freed < nbytes and self:
            freed += len(self.popleft().payload)
        return freed


class RingHistory:
    """The last ``keep`` messages of one channel, oldest first, as four rings.

    Messages are built again when a replay asks for them.
    """

    __slots__ = ("_ids", "_keep", "_payloads", "_senders", "_start", "_times", "channel")

    def __init__(self, channel: str, keep: int) -> None:
        self.channel = channel
        self._keep = keep
        self._ids: list[int] = []
        self._times: list[float] = []
        self._senders: list[str] = []
        self._payloads: list[bytes] = []
        self._start = 0  # index of the oldest once the rings are full

    def __len__(self) -> int:
        return len(self._ids)

    def append(self, msg: Message) -> None:
        """Keep a message, forgetting the oldest past ``keep``."""
        ids = self._ids
        if len(ids) < self._keep:
            ids.append(msg.msg_id)
            self._times.append(msg.published_at)
            self._senders.append(msg.sender)
            self._payloads.append(msg.payload)
            return
        i = self._start
        ids[i] = msg.msg_id
        self._times[i] = msg.published_at
        self._senders[i] = msg.sender
        self._payloads[i] = msg.payload
        i += 1
        self._start = 0 if i == self._keep else i

    def newest(self, count: int) -> list[Message]:
        """The newest ``count`` kept messages (at most all), oldest first."""
        kept = len(self._ids)
        count = min(count, kept)
        channel, ids, times, senders, payloads = (
            self.channel, self._ids, self._times, self._senders, self._payloads)
        first = self._start + kept - count
        return [
            Message(channel, ids[j], senders[j], payloads[j], times[j])
            for j in (k % kept for k in range(first, first + count))
        ]

    def oldest_size(self) -> int:
        """The payload size of the oldest kept message (there is one)."""
        return len(self._payloads[self._start])

    def drop_oldest(self, nbytes: int) -> int:
        """Forget the oldest messages until ``nbytes`` payload bytes are gone
        (or none is left); returns the bytes freed. The rings are laid out
        again oldest first (eviction is rare and batched)."""
        kept = len(self._ids)
        start = self._start
        order = [*range(start, kept), *range(start)]
        freed, dropped = 0, 0
        payloads = self._payloads
        while freed < nbytes and dropped < kept:
            freed += len(payloads[order[dropped]])
            dropped += 1
        order = order[dropped:]
        self._ids = [self._ids[j] for j in order]
        self._times = [self._times[j] for j in order]
        self._senders = [self._senders[j] for j in order]
        self._payloads = [payloads[j] for j in order]
        self._start = 0
        return freed


History: type[DequeHistory | RingHistory] = (
    RingHistory if sys.implementation.name == "pypy" else DequeHistory)
