"""A channel's kept messages, stored as four parallel rings."""
from __future__ import annotations

from txpubsub.core.message import Message


class History:
    """The last ``keep`` messages of one channel, oldest first.

    Kept as parallel lists (ids, times, senders, payloads) rather than
    Message objects: on PyPy a list of ints or floats holds them unboxed and
    the sender strings are shared, so each kept message is one object for
    the garbage collector (its payload), as cheap as the delivery line that
    history used to keep; Message objects die young instead. Messages are
    built again when a replay asks for them.
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
