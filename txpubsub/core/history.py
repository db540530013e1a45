"""A channel's kept messages, in the form each interpreter keeps cheapest.

Measured (docs/benchmarks.md): on PyPy, keeping Message objects made a
publish ~25% dearer than keeping one bytes object per message, because the
garbage collector copies every object that survives its nursery;
``RingHistory`` keeps ids, sizes and times unboxed and shares its one
object per message with the delivery. On CPython one deque with five
entries per message is cheaper, and keeps nothing the cyclic collector
walks. ``History`` is the one for the running interpreter; both keep the
same promises.
"""
from __future__ import annotations

import sys
from collections import deque
from itertools import islice

from txpubsub.core.message import Message


class FlatHistory(deque):
    """The last ``keep`` messages of one channel, oldest first, five entries
    each in one deque: payload size, id step, sender, payload, time (CPython).

    None of these is an object the cyclic garbage collector tracks, so the
    messages a server keeps (100,000 at the defaults with 1,000 busy
    channels) are never walked by it; keeping Message objects, each tracked,
    made the collector walk them all again and again (measured: about 2% of
    a publish, and more cache misses). A deque itself, so that keeping a
    message is deque's own ``extend`` in C; messages are built again when a
    replay asks for them.

    Each object kept is one more to free, ~100,000 publishes later, when it
    is no longer in any cache (docs/benchmarks.md): so a message's id is kept
    as its step from the one before (1, a small int Python never frees,
    unless ids jump), counted back from ``newest_id``; and its payload size
    is kept beside it, so that the size let go of is read from the deque,
    not from the payload being freed.
    """

    __slots__ = ("channel", "newest_id")

    def __init__(self, channel: str, keep: int) -> None:
        super().__init__((), 5 * keep)
        self.channel = channel
        self.newest_id = 0  # the id of the newest kept message

    def message_count(self) -> int:
        """How many messages are kept."""
        return len(self) // 5

    def add(self, msg: Message, carrier: bytes | None = None) -> int:
        """Keep a message, forgetting the oldest past ``keep``; returns how
        many payload bytes more (or fewer) are kept. ``carrier`` is not
        needed here: CPython's reference counting frees the delivered line
        without copying it, so the payload alone is kept."""
        size = len(msg.payload)
        grown = size - self[0] if len(self) == self.maxlen else size
        self.extend((size, msg.msg_id - self.newest_id, msg.sender, msg.payload, msg.published_at))
        self.newest_id = msg.msg_id
        return grown

    def newest(self, count: int) -> list[Message]:
        """The newest ``count`` kept messages (at most all), oldest first."""
        # From the newest end: HISTORY x 1 of a long history reads one message.
        entries = list(islice(reversed(self), 5 * max(0, min(count, len(self) // 5))))
        # Newest first, each message backwards: time, payload, sender, step, size.
        channel = self.channel
        msg_id = self.newest_id
        messages = []
        for i in range(0, len(entries), 5):
            messages.append(Message(channel, msg_id, entries[i + 2], entries[i + 1], entries[i]))
            msg_id -= entries[i + 3]
        messages.reverse()
        return messages

    def drop_oldest(self, nbytes: int) -> int:
        """Forget the oldest messages until ``nbytes`` payload bytes are gone
        (or none is left); returns the bytes freed."""
        freed = 0
        popleft = self.popleft
        while freed < nbytes and self:
            freed += popleft()
            popleft()
            popleft()
            popleft()
            popleft()
        return freed


class RingHistory:
    """The last ``keep`` messages of one channel, oldest first (PyPy): id,
    payload size and time in a ring PyPy keeps unboxed (its int-or-float
    list strategy), sender and payload in a deque.

    Measured on PyPy under the harness's channels workload (docs/benchmarks.md),
    where a channel is visited again only after ~1,000 publishes elsewhere:
    each object touched here is a likely cache miss, so the size of the
    message let go of is read beside its id (not from its payload, untouched
    for ~100,000 publishes); and every object that outlives the nursery is
    copied by the GC, so the payload is kept *inside* the line being
    delivered when the hub has one (``carrier``: bytes that end with the
    payload and CRLF, as an eager codec's do), which the GC copies anyway
    while it waits in the sessions' queues. The deque, unlike a list, lets
    the GC trace only its newest block of the kept objects. Messages are
    built again when a replay asks for them.
    """

    __slots__ = ("_keep", "_numbers", "_objects", "_start", "channel", "kept")

    def __init__(self, channel: str, keep: int) -> None:
        self.channel = channel
        self._keep = keep
        self.kept = 0
        self._numbers: list[float] = []  # id, payload size, time; id, ...
        # sender, payload (or the line carrying it); sender, ...; oldest first
        self._objects: deque[object] = deque(maxlen=2 * keep)
        self._start = 0  # index in the ring of the oldest once it is full

    def message_count(self) -> int:
        """How many messages are kept."""
        return self.kept

    def add(self, msg: Message, carrier: bytes | None = None) -> int:
        """Keep a message, forgetting the oldest past ``keep``; returns how
        many payload bytes more (or fewer) are kept. ``carrier``, if given,
        ends with the payload and CRLF and is kept instead of the payload."""
        size = len(msg.payload)
        objects = self._objects
        objects.append(msg.sender)
        objects.append(msg.payload if carrier is None else carrier)
        if self.kept < self._keep:
            self.kept += 1
            self._numbers.extend((msg.msg_id, size, msg.published_at))
            return size
        i = self._start
        numbers = self._numbers
        n = 3 * i
        grown = size - numbers[n + 1]
        numbers[n] = msg.msg_id
        numbers[n + 1] = size
        numbers[n + 2] = msg.published_at
        i += 1
        self._start = 0 if i == self._keep else i
        return grown  # type: ignore[return-value]  # sizes are ints

    def _message(self, index: int, sender: str, kept: object) -> Message:
        """The message ``index`` places from the oldest, from its sender and
        kept payload (or carrier)."""
        n = 3 * ((self._start + index) % self.kept)
        numbers = self._numbers
        payload: bytes = kept  # type: ignore[assignment]
        size = int(numbers[n + 1])
        if len(payload) != size:  # a carrier: the payload, then CRLF
            payload = payload[len(payload) - size - 2:-2]
        return Message(self.channel, int(numbers[n]), sender, payload, numbers[n + 2])

    def newest(self, count: int) -> list[Message]:
        """The newest ``count`` kept messages (at most all), oldest first."""
        kept = self.kept
        count = max(0, min(count, kept))
        # From the newest end: HISTORY x 1 of a long history reads one message.
        tail = list(islice(reversed(self._objects), 2 * count))
        tail.reverse()
        first = kept - count
        return [self._message(first + k, tail[2 * k], tail[2 * k + 1])  # type: ignore[arg-type]
                for k in range(count)]

    def drop_oldest(self, nbytes: int) -> int:
        """Forget the oldest messages until ``nbytes`` payload bytes are gone
        (or none is left); returns the bytes freed. The ring is laid out
        again oldest first (eviction is rare and batched)."""
        kept = self.kept
        start = self._start
        order = [*range(start, kept), *range(start)]
        freed, dropped = 0, 0
        numbers, objects = self._numbers, self._objects
        while freed < nbytes and dropped < kept:
            freed += int(numbers[3 * order[dropped] + 1])
            objects.popleft()
            objects.popleft()
            dropped += 1
        self._numbers = [numbers[3 * j + k] for j in order[dropped:] for k in (0, 1, 2)]
        self.kept -= dropped
        self._start = 0
        return freed


History: type[FlatHistory | RingHistory] = (
    RingHistory if sys.implementation.name == "pypy" else FlatHistory)
