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
    """The last ``keep`` messages of one channel, oldest first, in two rings
    (PyPy): id, payload size and time per message in one list PyPy keeps
    unboxed (its int-or-float strategy), sender and payload in another.

    A busy server visits a channel again only after publishing to the
    others, so each object a publish touches here is a likely cache miss:
    two lists cost fewer than the four parallel ones did, and the size of
    the message let go of is read beside its id instead of from its payload,
    an object last touched ~100,000 publishes ago at the defaults (that read
    alone was most of the 0.79x PyPy channels figure in docs/benchmarks.md).
    Messages are built again when a replay asks for them.
    """

    __slots__ = ("_keep", "_numbers", "_objects", "_start", "channel", "kept")

    def __init__(self, channel: str, keep: int) -> None:
        self.channel = channel
        self._keep = keep
        self.kept = 0
        self._numbers: list[float] = []  # id, payload size, time; id, ...
        self._objects: list[object] = []  # sender, payload; sender, ...
        self._start = 0  # index of the oldest once the rings are full

    def message_count(self) -> int:
        """How many messages are kept."""
        return self.kept

    def add(self, msg: Message) -> int:
        """Keep a message, forgetting the oldest past ``keep``; returns how
        many payload bytes more (or fewer) are kept."""
        size = len(msg.payload)
        if self.kept < self._keep:
            self.kept += 1
            self._numbers.extend((msg.msg_id, size, msg.published_at))
            self._objects.extend((msg.sender, msg.payload))
            return size
        i = self._start
        numbers = self._numbers
        n = 3 * i
        grown = size - numbers[n + 1]
        numbers[n] = msg.msg_id
        numbers[n + 1] = size
        numbers[n + 2] = msg.published_at
        objects = self._objects
        objects[i + i] = msg.sender
        objects[i + i + 1] = msg.payload
        i += 1
        self._start = 0 if i == self._keep else i
        return grown  # type: ignore[return-value]  # sizes are ints

    def _message(self, j: int) -> Message:
        numbers, objects = self._numbers, self._objects
        return Message(self.channel, numbers[3 * j], objects[j + j],  # type: ignore[arg-type]
                       objects[j + j + 1], numbers[3 * j + 2])  # type: ignore[arg-type]

    def newest(self, count: int) -> list[Message]:
        """The newest ``count`` kept messages (at most all), oldest first."""
        kept = self.kept
        count = min(count, kept)
        first = self._start + kept - count
        return [self._message(k % kept) for k in range(first, first + count)]

    def message(self, index: int) -> Message:
        """The kept message at ``index``, oldest first (0: the oldest)."""
        kept = self.kept
        if not -kept <= index < kept:
            raise IndexError("history index out of range")
        return self._message((self._start + index) % kept)

    def drop_oldest(self, nbytes: int) -> int:
        """Forget the oldest messages until ``nbytes`` payload bytes are gone
        (or none is left); returns the bytes freed. The rings are laid out
        again oldest first (eviction is rare and batched)."""
        kept = self.kept
        start = self._start
        order = [*range(start, kept), *range(start)]
        freed, dropped = 0, 0
        numbers, objects = self._numbers, self._objects
        while freed < nbytes and dropped < kept:
            freed += numbers[3 * order[dropped] + 1]
            dropped += 1
        order = order[dropped:]
        self._numbers = [numbers[3 * j + k] for j in order for k in (0, 1, 2)]
        self._objects = [objects[j + j + k] for j in order for k in (0, 1)]
        self.kept = len(order)
        self._start = 0
        return freed


History: type[FlatHistory | RingHistory] = (
    RingHistory if sys.implementation.name == "pypy" else FlatHistory)
