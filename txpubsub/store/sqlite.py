"""Durable history in SQLite: group commit on one writer thread.

``+OK <id>`` is sent, and the message delivered, only once the transaction
holding it has committed: the hub hands each message to ``append`` and is
told (``listen``) once that commit has finished. One writer thread (an adbapi pool of one
connection) commits whatever arrived as soon as the previous commit ends,
so the reactor never waits for the disk, an idle server answers in about
one commit's time and a busy one puts many publishes in one transaction.
WAL with ``synchronous=NORMAL`` (``--store-sync normal``) survives a killed
process; ``synchronous=FULL`` (``--store-sync full``) fsyncs every commit
and survives a power cut too (docs/operations.md).
"""
from __future__ import annotations

import fcntl
import os
import re
import sqlite3
import time
from typing import Any, Callable

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txpubsub.core.hub import ADMIN_SENDER
from txpubsub.core.latency import LatencyHistogram
from txpubsub.core.message import Message
from txpubsub.core.store import SavedChannel
from txpubsub.wire.errors import HubError, shorten
from txpubsub.wire.names import PLAIN, channel_kind

_log = Logger()

# Past this many bytes waiting for the disk (payloads and ROW_OVERHEAD each),
# publishes to durable channels are refused at once: memory stays bounded.
MAX_PENDING_BYTES = 64 * 1024 * 1024
ROW_OVERHEAD = 100
# After a failed write with no publish waiting, channel changes are tried again.
RETRY_INTERVAL = 1.0
SYNC_MODES = ("normal", "full")
SCHEMA_VERSION = "1"
SCHEMA = """
CREATE TABLE txpubsub_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE channels (
    name TEXT PRIMARY KEY, keep INTEGER NOT NULL, last_id INTEGER NOT NULL,
    created_at REAL NOT NULL, retired INTEGER NOT NULL DEFAULT 0);
CREATE TABLE messages (
    channel TEXT NOT NULL, id INTEGER NOT NULL, sender TEXT NOT NULL,
    payload BLOB NOT NULL, published_at REAL NOT NULL, PRIMARY KEY (channel, id));
"""


class StoreError(Exception):
    """The store cannot be used (not a database, not ours, unreadable)."""


class StoreLock:
    """``PATH.lock`` beside a store, locked with flock while a server uses it.

    SQLite lets two processes write one file in turn, so two servers on one
    store would hand out the same ids. flock (not fcntl) because the lock
    must survive twistd's fork into a daemon, and the kernel lets go of it
    when the process dies, so a killed server leaves no lock that counts.
    """

    def __init__(self, store_path: str) -> None:
        # Beside the file itself, not a link to it: every path to one store
        # (a symlink, a symlinked directory) must meet the same lock.
        real = os.path.realpath(store_path)
        self.path = (store_path if real == os.path.abspath(store_path) else real) + ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StoreError; the file stays as long as it is held."""
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as e:
                raise StoreError(f"cannot make its lock file {self.path}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StoreError(
                    f"in use by another server (its lock file {self.path} is held)") from None
            except OSError as e:
                os.close(fd)
                raise StoreError(f"cannot lock {self.path}: {e.strerror}") from None
            # The holder before us may have removed the file between our open and
            # our flock: then we locked a file nobody else will see. Start again.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        """Remove the lock file, then let go of the lock (in that order, see acquire)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(fd)


def _create_private(path: str) -> None:
    """Create the store file 0600 if it is not there yet.

    SQLite gives the ``-wal`` and ``-shm`` files it makes later the mode of
    the database file, so they are 0600 too: other local users cannot read
    the history. An existing file keeps the mode its owner gave it.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    except OSError as e:
        raise StoreError(f"cannot create it: {e.strerror}") from None
    os.close(fd)


def _bad_row(what: str, value: object) -> StoreError:
    # repr, shortened: whatever the file holds, the error is one printable line.
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return StoreError(f"bad row in the store: {what} {text}; "
                      "was the file changed by something other than txpubsub?")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _checked_channel(row: tuple[Any, ...]) -> SavedChannel:
    """A channels row as a SavedChannel, or StoreError naming what is wrong."""
    name, keep, last_id, created_at, retired = row
    try:
        ok = isinstance(name, str) and channel_kind(name) == PLAIN
    except HubError:
        ok = False
    if not ok:
        raise _bad_row("channel name", name)
    for what, value in (("keep", keep), ("last_id", last_id)):
        if not isinstance(value, int) or value < 0:
            raise _bad_row(f"channel {name}: {what}", value)
    if not _is_number(created_at):
        raise _bad_row(f"channel {name}: created_at", created_at)
    if retired not in (0, 1):
        raise _bad_row(f"channel {name}: retired", retired)
    return SavedChannel(name, keep, last_id, float(created_at), bool(retired))


def _is_sender(value: object) -> bool:
    # What the hub publishes as: a client's name or id, or the admin.
    return isinstance(value, str) and (
        value == ADMIN_SENDER or _SENDER.fullmatch(value) is not None)


_SENDER = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,31}")


def _checked_messages(ch: SavedChannel, rows: Any) -> list[Message]:
    """A channel's kept messages, in increasing id order up to its last id, or StoreError."""
    messages: list[Message] = []
    previous = 0
    for msg_id, sender, payload, at in rows:
        where = f"channel {ch.name}"
        if not isinstance(msg_id, int) or not previous < msg_id <= ch.last_id:
            raise _bad_row(f"{where}: message id (after {previous}, up to {ch.last_id})",
                           msg_id)
        where = f"channel {ch.name} message {msg_id}"
        if not _is_sender(sender):
            raise _bad_row(f"{where}: sender", sender)
        if not isinstance(payload, bytes):
            raise _bad_row(f"{where}: payload (not a BLOB)", payload)
        if not _is_number(at):
            raise _bad_row(f"{where}: published_at", at)
        messages.append(Message(ch.name, msg_id, sender, payload, float(at)))
        previous = msg_id
    return messages


def _pragmas(conn: sqlite3.Connection, sync: str = "normal") -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL under WAL: a commit is in the OS's hands (a killed process loses
    # nothing); FULL: also fsynced before the commit returns (a power cut too).
    conn.execute("PRAGMA synchronous=FULL" if sync == "full" else "PRAGMA synchronous=NORMAL")


class SqliteStore:
    """History, last ids and the epoch in one SQLite file."""

    durable = True
    _log = Logger()

    def __init__(self, path: str, reactor: IReactorTime, new_epoch: str,
                 sync: str = "normal") -> None:
        if sync not in SYNC_MODES:
            raise StoreError(f"unknown sync mode {sync!r} (normal or full)")
        self.path = path
        self.reactor = reactor
        self.sync = sync
        self.errors = 0  # failed commits, and publishes refused at the bound
        self._lock = StoreLock(path)
        self._lock.acquire()
        try:
            self.epoch = self._open(new_epoch)
        except BaseException:
            self._lock.release()
            raise
        self.max_pending_bytes = MAX_PENDING_BYTES
        self._queue: list[tuple[Message, int]] = []
        self._appended = 0  # messages appended since start
        self._done = 0  # of which committed or refused (told to the listener)
        self._drained: list[tuple[int, Deferred[None]]] = []  # drain() until _done reaches
        self._committed: Callable[[int], None] = lambda count: None
        self._refused: Callable[[int, HubError], None] = lambda count, error: None
        self._pending_bytes = 0  # of messages queued or being written
        # --http: read at scrape time (txpubsub.server.metrics). Two clock
        # reads per commit, and one when a message finds the queue empty.
        self.commit_seconds = LatencyHistogram()  # each transaction, failed ones too
        self.wait_seconds = LatencyHistogram()  # a commit's first message queued -> committed
        self.committed_messages = 0
        self._queued_at = 0.0  # when the oldest message queued now was queued
        self._behind: int | None = None  # refusing at the bound since this many bytes
        self._trouble: str | None = None  # why the last write failed, until one works
        self._state: dict[str, list[Any]] = {}  # name -> [keep, last_id, created_at, retired]
        self._clear: dict[str, int] = {}  # name -> delete its messages up to this id
        self._scheduled: Any = None
        self._retry: Any = None
        self._writing: Deferred[None] | None = None
        self._closed = False
        self._pool = adbapi.ConnectionPool(
            "sqlite3", path, check_same_thread=False, cp_min=1, cp_max=1,
            cp_openfun=lambda conn: _pragmas(conn, sync),
            cp_reactor=reactor,
        )

    # -- start -----------------------------------------------------------

    def _open(self, new_epoch: str) -> str:
        """Check (or create) the file; return its epoch. Raises StoreError."""
        _create_private(self.path)
        try:
            conn = sqlite3.connect(self.path)
        except sqlite3.Error as e:
            raise StoreError(str(e)) from None
        try:
            _pragmas(conn)
            tables = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                conn.executescript(SCHEMA)
                meta = {"schema": SCHEMA_VERSION, "epoch": new_epoch}
            elif "txpubsub_meta" not in tables:
                raise StoreError("not a txpubsub store (it holds other tables)")
            else:
                meta = dict(conn.execute("SELECT key, value FROM txpubsub_meta"))
                if meta.get("schema") != SCHEMA_VERSION or "epoch" not in meta:
                    raise StoreError(f"unknown store schema {meta.get('schema')!r}")
                if meta.get("clean") == "0":
                    # Nothing acknowledged or delivered was left uncommitted, so
                    # the epoch stands: ids go on from the last committed ones.
                    _log.info("{path} was not closed cleanly; ids go on from its last "
                              "commit", path=self.path)
            meta["clean"] = "0"  # until close() has written everything
            with conn:
                conn.executemany("INSERT OR REPLACE INTO txpubsub_meta VALUES (?, ?)",
                                 list(meta.items()))
            return str(meta["epoch"])
        except sqlite3.Error as e:
            raise StoreError(str(e)) from None
        finally:
            conn.close()

    def load(self) -> list[SavedChannel]:
        """Every channel with its last id and kept messages, read at start.

        Rows are checked as they are read (the file may have been edited, or
        written by someone else): a bad one is a StoreError naming it, so the
        server says one line and exits rather than replaying a forged line or
        failing with a traceback later.
        """
        saved = []
        try:
            conn = sqlite3.connect(self.path)
            try:
                for row in conn.execute(
                        "SELECT name, keep, last_id, created_at, retired FROM channels"):
                    ch = _checked_channel(row)
                    if ch.keep and not ch.retired:
                        ch.messages = _checked_messages(ch, conn.execute(
                            "SELECT id, sender, payload, published_at FROM messages "
                            "WHERE channel = ? AND id > ? ORDER BY id",
                            (ch.name, ch.last_id - ch.keep)))
                    saved.append(ch)
            finally:
                conn.close()
        except sqlite3.Error as e:
            raise StoreError(str(e)) from None
        return saved

    # -- what the hub tells us -------------------------------------------

    def channel_created(self, name: str, keep: int, created_at: float, last_id: int) -> None:
        self._state[name] = [keep, last_id, created_at, 0]
        self._soon()

    def listen(
        self, committed: Callable[[int], None], refused: Callable[[int, HubError], None]
    ) -> None:
        """Who is told, in order, what became of the messages appended."""
        self._committed = committed
        self._refused = refused

    def append(self, msg: Message, keep: int) -> None:
        """Queue a message for the next commit; HubError unavailable at once
        if too much already waits for the disk (memory stays bounded)."""
        size = len(msg.payload) + ROW_OVERHEAD
        if self._closed:
            raise HubError("unavailable", "the server is stopping")
        if self._pending_bytes and self._pending_bytes + size > self.max_pending_bytes:
            self.errors += 1
            if self._behind is None:
                self._behind = self._pending_bytes
                self._log.error(
                    "history store {path} is behind: {size} bytes wait for the disk; "
                    "refusing publishes to durable channels until it catches up",
                    path=self.path, size=self._pending_bytes)
            raise HubError(
                "unavailable", "the history store is behind (too much waits for the disk)")
        if not self._queue:
            self._queued_at = time.monotonic()
        self._queue.append((msg, keep))
        self._appended += 1
        self._pending_bytes += size
        if self._scheduled is None and self._writing is None:
            self._scheduled = self.reactor.callLater(0, self.flush)

    def channel_retired(self, name: str, last_id: int) -> None:
        state = self._state.setdefault(name, [0, last_id, 0.0, 1])
        state[1], state[3] = last_id, 1
        self._clear[name] = last_id
        self._soon()

    # -- writing ---------------------------------------------------------

    def _soon(self) -> None:
        # Group commit: the next batch starts as soon as the one on the disk
        # ends (_written); when idle, at the end of this reactor turn, so that
        # what one read of the socket brought goes in one transaction.
        if self._scheduled is None and self._writing is None and not self._closed:
            self._scheduled = self.reactor.callLater(0, self.flush)

    def flush(self) -> Deferred[None]:
        """Commit everything pending in one transaction (one batch at a time)."""
        for call in (self._scheduled, self._retry):
            if call is not None and call.active():
                call.cancel()
        self._scheduled = self._retry = None
        if self._writing is not None:
            return self._writing
        if not (self._queue or self._state or self._clear):
            return succeed(None)
        queue, self._queue = self._queue, []
        state, self._state = self._state, {}
        clear, self._clear = self._clear, {}
        # The channels' last ids go in the same transaction as their messages;
        # ``state`` itself stays as it was, to be written again if this fails.
        batch = {name: list(values) for name, values in state.items()}
        rows = []
        for msg, keep in queue:
            values = batch.get(msg.channel)
            if values is None:
                batch[msg.channel] = [keep, msg.msg_id, msg.published_at, 0]
            elif msg.msg_id > values[1]:
                values[1] = msg.msg_id
            if keep:
                rows.append((msg.channel, msg.msg_id, msg.sender, msg.payload,
                             msg.published_at))
        # Skip rows that would be deleted at once: out of their channel's
        # window, or of a channel dropped (up to the drop) in this batch.
        rows = [row for row in rows
                if row[1] > batch[row[0]][1] - batch[row[0]][0]
                and row[1] > clear.get(row[0], 0) and not batch[row[0]][3]]
        started = time.monotonic()
        writing = self._writing = self._pool.runInteraction(self._write, rows, batch, clear)
        writing.addCallbacks(self._written, self._failed,
                             callbackArgs=(queue, started, self._queued_at),
                             errbackArgs=(queue, state, clear, started))
        return writing

    @staticmethod
    def _write(txn: Any, rows: list[tuple[Any, ...]], state: dict[str, list[Any]],
               clear: dict[str, int]) -> None:
        txn.executemany(
            "INSERT INTO channels (name, keep, last_id, created_at, retired) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET keep = excluded.keep, "
            "last_id = excluded.last_id, retired = excluded.retired",
            [(name, keep, last_id, created_at, retired)
             for name, (keep, last_id, created_at, retired) in state.items()
             if last_id or not retired],
        )
        # A channel dropped before it ever had a message leaves nothing behind.
        txn.executemany("DELETE FROM channels WHERE name = ?",
                        [(name,) for name, (_, last_id, _, retired) in state.items()
                         if retired and not last_id])
        txn.executemany("INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?)", rows)
        txn.executemany("DELETE FROM messages WHERE channel = ? AND id <= ?", clear.items())
        txn.executemany(
            "DELETE FROM messages WHERE channel = ? AND id <= ?",
            [(name, last_id - keep) for name, (keep, last_id, _, retired) in state.items()
             if keep and not retired],
        )

    def _written(self, _: object, queue: list[tuple[Message, int]], started: float,
                 queued_at: float) -> None:
        self._writing = None
        now = time.monotonic()
        self.commit_seconds.observe(now - started)
        if queue:
            self.wait_seconds.observe(now - queued_at)
            self.committed_messages += len(queue)
        if self._trouble is not None:
            self._log.info("history store {path} writes again", path=self.path)
            self._trouble = None
        self._pending_bytes -= sum(len(msg.payload) for msg, _ in queue) + ROW_OVERHEAD * len(queue)
        if self._behind is not None and self._pending_bytes <= self._behind // 2:
            self._log.info("history store {path} has caught up", path=self.path)
            self._behind = None
        # The disk gets the next batch before the reactor delivers this one.
        if self._queue or self._state or self._clear:
            self.flush()
        self._committed(len(queue))
        self._told(len(queue))

    def _failed(self, failure: Failure, queue: list[tuple[Message, int]],
                state: dict[str, list[Any]], clear: dict[str, int], started: float) -> None:
        self._writing = None
        self.commit_seconds.observe(time.monotonic() - started)
        self.errors += 1
        why = str(failure.value) or failure.type.__name__  # type: ignore[union-attr]
        if self._trouble is None:
            self._trouble = why
            self._log.failure(
                "could not write history to {path}: publishes to durable channels are "
                "refused (-ERR unavailable) until it can; still serving",
                failure, path=self.path)
        # What waited behind this batch fails too: committing it would leave
        # a gap in its channels' ids. Nothing of it was acknowledged or seen.
        count = len(queue) + len(self._queue)
        self._queue = []
        self._pending_bytes = 0
        self._behind = None
        # Channels' creations and drops are kept (newer news of a channel
        # wins) and tried again with the next batch, or after RETRY_INTERVAL.
        for name, channel_state in state.items():
            self._state.setdefault(name, channel_state)
        for name, upto in clear.items():
            self._clear[name] = max(upto, self._clear.get(name, 0))
        if (self._state or self._clear) and not self._closed:
            self._retry = self.reactor.callLater(RETRY_INTERVAL, self.flush)
        self._refused(count, HubError(
            "unavailable", f"the history store cannot write: {shorten(why, 80)}"))
        self._told(count)

    def _told(self, count: int) -> None:
        # After the listener: drain() fires once the hub has answered them.
        self._done += count
        while self._drained and self._drained[0][0] <= self._done:
            self._drained.pop(0)[1].callback(None)

    @property
    def queued_messages(self) -> int:
        """Messages appended and not yet committed or refused (waiting or being written)."""
        return self._appended - self._done

    @property
    def queued_bytes(self) -> int:
        """What those hold, as MAX_PENDING_BYTES counts it (payloads, ROW_OVERHEAD each)."""
        return self._pending_bytes

    def drain(self) -> Deferred[None]:
        """Fires once every message appended so far is committed or refused."""
        if self._done >= self._appended:
            return succeed(None)
        drained: Deferred[None] = Deferred()
        self._drained.append((self._appended, drained))
        return drained

    def ping(self) -> Deferred[None]:
        """Fires once the database answers a query on the writer's thread
        (behind any write in progress); fails if it cannot (--http /readyz)."""
        if self._closed:
            return fail(StoreError("closed"))
        return self._pool.runQuery("SELECT 1").addCallback(lambda _: None)

    def close(self) -> Deferred[None]:
        """Write what is pending, checkpoint the WAL, and let go of the file."""
        if self._closed:
            return succeed(None)
        self._closed = True  # from now on append refuses

        async def finish() -> None:
            while self._writing is not None:
                await self._writing
            await self.flush()
            while self._writing is not None:
                await self._writing
            if self._retry is not None and self._retry.active():
                self._retry.cancel()
            try:
                if not (self._queue or self._state or self._clear):
                    await self._pool.runOperation(
                        "INSERT OR REPLACE INTO txpubsub_meta VALUES ('clean', '1')")
                await self._pool.runOperation("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                self._log.failure("closing {path} failed", path=self.path)
            self._pool.close()
            self._lock.release()

        return Deferred.fromCoroutine(finish())


def open_store(path: str, reactor: IReactorThreads, new_epoch: str,
               sync: str = "normal") -> SqliteStore:
    """A SqliteStore for ``path``, with a StoreError naming what is wrong."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise StoreError(f"no directory {directory}")
    return SqliteStore(path, reactor, new_epoch, sync)  # type: ignore[arg-type]
