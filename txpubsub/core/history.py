"""A channel's kept messages, in the form each interpreter keeps cheapest.

Measured with bench/perline.py (docs/benchmarks.md): on PyPy, keeping
Message objects made a publish ~25% dearer than keeping one bytes object
per message, because the garbage collector copies every object that
survives its nursery; four parallel lists (ids and times unboxed, senders
shared) leave one surviving object per message, the payload. On CPython,
where the lists cost four stores, one deque with four entries per message
is cheaper, and keeps nothing the cyclic collector walks. ``History`` is
the one for the running interpreter; both keep the same promises.
"""
from __future__ import annotations

import sys
from collections import deque
from itertools import islice

from txpubsub.core.message import Message


class FlatHistory(deque):
    """The last ``keep`` messages of one channel, oldest first, four entries
    each in one deque: id, sender, payload, time (CPython).

    None of these is an object the cyclic garbage collector tracks, so the
    messages a server keeps (100,000 at the defaults with 1,000 busy
    channels) are never walked by it; keeping Message objects, each tracked,
    made the collector walk them all again and again (measured: about 2% of
    a publish, and more cache misses). A deque itself, so that keeping a
    message is deque's own ``extend`` in C; messages are built again when a
    replay asks for them.
    """

    __slots__ = ("channel",)

    def __init__(self, channel: str, keep: int) -> None:
        super().__init__((), 4 * keep)
        self.channel = channel

    def message_count(self) -> int:
        """How many messages are kept."""
        return len(self) >> 2

    def add(self, msg: Message) -> int:
        """Keep a message, forgetting the oldest past ``keep``; returns how
        many payload bytes more (or fewer) are kept."""
        size = len(msg.payload)
        if len(self) == self.maxlen:
            size -= len(self[2])  # the oldest's payload, let go of by extend
        self.extend((msg.msg_id, msg.sender, msg.payload, msg.published_at))
        return size

    def message(self, index: int) -> Message:
        """The kept message at ``index``, oldest first (0: the oldest)."""
        kept = len(self) >> 2
        if not -kept <= index < kept:
            raise IndexError("history index out of range")
        i = 4 * (index % kept)
        return Message(self.channel, self[i], self[i + 1], self[i + 2], self[i + 3])

    def newest(self, count: int) -> list[Message]:
        """The newest ``count`` kept messages (at most all), oldest first."""
        kept = len(self) >> 2
        entries = list(islice(self, 4 * (kept - min(count, kept)), None))
        channel = self.channel
        return [Message(channel, entries[i], entries[i + 1], entries[i + 2], entries[i + 3])
                for i in range(0, len(entries), 4)]

    def drop_oldest(self, nbytes: int) -> int:
        """Forget the oldest messages until ``nbytes`` payload bytes are gone
        (or none is left); returns the bytes freed."""
        freed = 0
        popleft = self.popleft
        while freed < nbytes and self:
            popleft()
            popleft()
            freed += len(popleft())
            popleft()
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

    def message_count(self) -> int:
        """How many messages are kept."""
        return len(self._ids)

    def add(self, msg: Message) -> int:
        """Keep a message, forgetting the oldest past ``keep``; returns how
        many payload bytes more (or fewer) are kept."""
        ids = self._ids
        size = len(msg.payload)
        if len(ids) < self._keep:
            ids.append(msg.msg_id)
            self._times.append(msg.published_at)
            self._senders.append(msg.sender)
            self._payloads.append(msg.payload)
            return size
        i = self._start
        size -= len(self._payloads[i])
        ids[i] = msg.msg_id
        self._times[i] = msg.published_at
        self._senders[i] = msg.sender
        self._payloads[i] = msg.payload
        i += 1
        self._start = 0 if i == self._keep else i
        return size

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

    def message(self, index: int) -> Message:
        """The kept message at ``index``, oldest first (0: the oldest)."""
        kept = len(self._ids)
        if not -kept <= index < kept:
            raise IndexError("history index out of range")
        j = (self._start + index) % kept
        return Message(self.channel, self._ids[j], self._senders[j], self._payloads[j],
                       self._times[j])

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


History: type[FlatHistory | RingHistory] = (
    RingHistory if sys.implementation.name == "pypy" else FlatHistory)
