"""What wildcard subscriptions missed while Redis was away, read back from the
Streams once the pub/sub connection is back (docs/cluster.md).

A server hears of a channel it has no concrete subscriber for only through
a glob. After a reconnect it cannot know which such channels were published
on meanwhile, so it looks: SCAN finds every channel in Redis that a local
wildcard subscription matches, and one script per batch of them returns the
entries published since the server last heard from Redis (``cut``, Redis's
own time) and after the last id it has of each. Live messages of those
channels are held meanwhile and follow, so each subscriber gets them once,
in id order.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.failure import Failure

from txpubsub.backplane.names import PREFIX
from txpubsub.backplane.scripts import MISSED_SCRIPT
from txpubsub.core.message import Message

if TYPE_CHECKING:
    from txpubsub.backplane.redis import RedisBackplane

# Keys one SCAN call looks at, and channels one script reads.
SCAN_COUNT = 1000
READ_BATCH = 100
# Live messages held while reading back; past this the reader gives up.
MAX_HELD = 100_000


class MissedReader:
    """One reading back, from the globs' PSUBSCRIBE until every channel is done."""

    _log = Logger()

    def __init__(self, backplane: RedisBackplane, cut: float, globs: list[str]) -> None:
        self._backplane = backplane
        self.cut = cut  # Redis's time when the server last heard from it
        # One glob: Redis filters the channels by it; more: this server does.
        tail = globs[0][len(PREFIX) + 2:] if len(globs) == 1 else "*"
        self._match = PREFIX + "ch:" + tail
        self._held: dict[str, list[tuple[Message, int]]] = {}
        self._count = 0
        self._passed: set[str] = set()  # channels read back: live again
        self._subscribed = False
        self._running = False
        self._done = False
        self.channels_read = 0

    def hold(self, msg: Message, keep: int) -> None:
        """A live message of a channel only wildcards read here: after what
        the Stream says was missed."""
        if msg.channel in self._passed:
            self._backplane.arrive(msg, keep)
            return
        if self._count >= MAX_HELD:
            self.finish(None, f"more than {MAX_HELD} live messages came meanwhile")
            self._backplane.arrive(msg, keep)
            return
        self._count += 1
        self._held.setdefault(msg.channel, []).append((msg, keep))

    def subscribed(self, _: object) -> None:
        """The globs are live again: read back what they missed."""
        self._subscribed = True
        self.resume()

    def resume(self) -> None:
        """Start, once both connections are there (called again when the
        command connection comes back)."""
        conn = self._backplane.connection
        if self._done or not self._subscribed or self._running or conn is None:
            return
        self._running = True
        self._scan(conn, b"0")

    def _scan(self, conn: Any, cursor: bytes) -> None:
        d = conn.execute_command("SCAN", cursor, "MATCH", self._match, "COUNT", SCAN_COUNT)
        d.addCallbacks(self._scanned, self._failed, (conn,))

    def _scanned(self, reply: list[Any], conn: Any) -> None:
        if self._done:
            return
        cursor, keys = reply
        backplane = self._backplane
        start = len(PREFIX) + 3
        wanted = [name for name in (key[start:].decode() for key in keys)
                  if backplane.reads_through_globs(name)]
        reads = [self._read(conn, wanted[i:i + READ_BATCH])
                 for i in range(0, len(wanted), READ_BATCH)]
        if cursor == b"0":
            done: Deferred[Any] = DeferredList(reads, fireOnOneErrback=True, consumeErrors=True)
            done.addCallbacks(lambda _: self.finish(None), self._failed)
        elif reads:
            more: Deferred[Any] = DeferredList(reads, fireOnOneErrback=True, consumeErrors=True)
            more.addCallbacks(lambda _: self._scan(conn, cursor), self._failed)
        else:
            self._scan(conn, cursor)

    def _read(self, conn: Any, channels: list[str]) -> Deferred[None]:
        hub = self._backplane.hub
        keys, after = [], []
        for name in channels:
            keys += [PREFIX + "s:" + name, PREFIX + "ch:" + name]
            ch = hub.channel(name)
            after.append(ch.last_id if ch is not None else 0)
        d = conn.execute_command("EVAL", MISSED_SCRIPT, len(keys), *keys, repr(self.cut),
                                 *after)
        return d.addCallback(self._read_back, channels)

    def _read_back(self, results: list[Any], channels: list[str]) -> None:
        if self._done:
            return
        backplane = self._backplane
        for name, (keep, entries) in zip(channels, results):
            backplane.arrive_all(name, None if keep is None else int(keep), entries)
            self._passed.add(name)
            for msg, msg_keep in self._held.pop(name, ()):
                self._count -= 1
                backplane.arrive(msg, msg_keep)
        self.channels_read += len(channels)

    def _failed(self, failure: Failure) -> None:
        if self._done:
            return
        if self._backplane.connection is None:
            # The command connection went: start again once it is back (what
            # was read back already is live, and a second read skips it).
            self._running = False
            return
        self.finish(None, str(failure.value))

    def finish(self, _: object = None, why: str | None = None) -> None:
        """Done (or given up, saying ``why``): the live messages still held
        go on their way, and every channel is live again."""
        if self._done:
            return
        self._done = True
        if why is not None:
            self._log.warn("redis: reading back what wildcard subscriptions missed while "
                           "away stopped ({why}); some of it may be missing", why=why)
        held, self._held = self._held, {}
        for messages in held.values():
            for msg, keep in messages:
                self._backplane.arrive(msg, keep)
        self._backplane.missed_done(self)

    def interrupt(self) -> None:
        """The pub/sub connection went again before the end: the next reader
        starts from this one's cut. Held messages that a Stream keeps are
        read back then (delivering them now would skip what came before
        them); those of channels that keep nothing go on now."""
        if self._done:
            return
        self._done = True
        held, self._held = self._held, {}
        for messages in held.values():
            for msg, keep in messages:
                if not keep:
                    self._backplane.arrive(msg, keep)
        self._backplane.missed_done(self)
