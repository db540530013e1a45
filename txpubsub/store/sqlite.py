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

Messages are kept in commit order (the table's rowid), so a commit appends
at the end of one B-tree, whatever the channels; rows that have left their
channel's window are swept a little at every commit (``_sweep``), so the
file holds at most about twice the windows.
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
SCHEMA_VERSION = "2"
# ``floor``: ids up to it belong to an earlier life of the channel (before a
# drop), whose rows are dead. Channels are looked up by name (by the sweep,
# once per row it looks at): WITHOUT ROWID, one B-tree search each. Messages
# have no key but their rowid: a key of (channel, id) made every commit
# write a page per channel it touched.
CHANNELS = """
CREATE TABLE channels (
    name TEXT PRIMARY KEY, keep INTEGER NOT NULL, last_id INTEGER NOT NULL,
    created_at REAL NOT NULL, retired INTEGER NOT NULL DEFAULT 0,
    floor INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
"""
MESSAGES = """
CREATE TABLE messages (
    channel TEXT NOT NULL, id INTEGER NOT NULL, sender TEXT NOT NULL,
    payload BLOB NOT NULL, published_at REAL NOT NULL);
"""
SCHEMA = f"""
CREATE TABLE txpubsub_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
{CHANNELS}{MESSAGES}"""
# Schema 1 kept messages in a (channel, id) primary key, and no floor.
MIGRATE_FROM_1 = f"""
ALTER TABLE channels RENAME TO channels_1;
ALTER TABLE messages RENAME TO messages_1;
{CHANNELS}{MESSAGES}
INSERT INTO channels (name, keep, last_id, created_at, retired)
    SELECT name, keep, last_id, created_at, retired FROM channels_1;
INSERT INTO messages SELECT channel, id, sender, payload, published_at
    FROM messages_1 ORDER BY channel, id;
DROP TABLE channels_1;
DROP TABLE messages_1;
"""
# A message row is live while its channel keeps it: not retired, after the
# channel's floor and within its last ``keep`` ids.
LIVE = ("SELECT 1 FROM channels c WHERE c.name = messages.channel AND c.retired = 0 "
        "AND messages.id > c.floor AND messages.id > c.last_id - c.keep")
# Rows looked at by the sweep per row written: the file stays within about
# SWEEP / (SWEEP - 1) times the windows (twice, at 2).
SWEEP = 2
UPSERT_CHANNEL = (
    "INSERT INTO channels (name, keep, last_id, created_at, retired, floor) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET keep = excluded.keep, "
    "last_id = excluded.last_id, retired = excluded.retired, floor = excluded.floor")
# A channel that only had messages: its last id (its row is there already;
# the insert is a safety net, never expected to run). Never backwards: these
# are written late (SAVE_INTERVAL), maybe after newer news of the channel.
ADVANCE_CHANNEL = (
    "INSERT INTO channels (name, keep, last_id, created_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET last_id = max(last_id, excluded.last_id)")
# A channel keeping history has its newest message on disk, which carries its
# last id (load takes the higher), so its row's last id is brought up to date
# only this often (it tells the sweep what has left the window), not at every
# commit. Channels keeping nothing have theirs written with every commit.
SAVE_INTERVAL = 1.0


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
        self._store_path = store_path
        self._fd: int | None = None
        self._store_fd: int | None = None  # flock on the store file itself

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
                self._lock_file_itself()
                return
            os.close(fd)

    def _lock_file_itself(self) -> None:
        # A hard link is the same file under a name (and a lock file) of its
        # own: flock the store's inode too, which every name of it shares.
        # release() closes this fd after the store's connections: closing any
        # fd of a file drops the process's fcntl locks on it, SQLite's too.
        try:
            _create_private(self._store_path)
            fd = os.open(self._store_path, os.O_RDONLY)
        except (StoreError, OSError):
            return  # SQLite's own open says what is wrong with the file
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self.release()
            raise StoreError("in use by another server (through another name of the same "
                             "file: a hard link)") from None
        except OSError:
            os.close(fd)
            return
        self._store_fd = fd

    def release(self) -> None:
        """Remove the lock file, then let go of the lock (in that order, see acquire)."""
        store_fd, self._store_fd = self._store_fd, None
        if store_fd is not None:
            os.close(store_fd)
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


def _file_name(path: str) -> str:
    """``path`` as SQLite must open it: a file, never a URI or ``:memory:``.

    SQLite (built with URI names, as Debian's is) reads ``file:x.db`` as
    ``x.db``, past the lock and the 0600 creation that took it as a file.
    """
    return path if os.path.isabs(path) else os.path.join(os.curdir, path)


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
    name, keep, last_id, created_at, retired, floor = row
    try:
        ok = isinstance(name, str) and channel_kind(name) == PLAIN
    except HubError:
        ok = False
    if not ok:
        raise _bad_row("channel name", name)
    for what, value in (("keep", keep), ("last_id", last_id), ("floor", floor)):
        if not isinstance(value, int) or value < 0:
            raise _bad_row(f"channel {name}: {what}", value)
    if not _is_number(created_at):
        raise _bad_row(f"channel {name}: created_at", created_at)
    if retired not in (0, 1):
        raise _bad_row(f"channel {name}: retired", retired)
    if floor > last_id:
        raise _bad_row(f"channel {name}: floor (up to last_id {last_id})", floor)
    return SavedChannel(name, keep, last_id, float(created_at), bool(retired), floor)


def _is_sender(value: object) -> bool:
    # What the hub publishes as: a client's name or id, or the admin.
    return isinstance(value, str) and (
        value == ADMIN_SENDER or _SENDER.fullmatch(value) is not None)


_SENDER = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,31}")


def _checked_messages(ch: SavedChannel, rows: Any) -> list[Message]:
    """A channel's kept messages, in increasing id order, or StoreError.

    The newest may be above the channel row's last id (SAVE_INTERVAL): then
    it is the last id, and the window is counted back from it."""
    messages: list[Message] = []
    previous = ch.floor
    for msg_id, sender, payload, at in rows:
        where = f"channel {ch.name}"
        if not isinstance(msg_id, int) or not previous < msg_id:
            raise _bad_row(f"{where}: message id (after {previous})", msg_id)
        where = f"channel {ch.name} message {msg_id}"
        if not _is_sender(sender):
            raise _bad_row(f"{where}: sender", sender)
        if not isinstance(payload, bytes):
            raise _bad_row(f"{where}: payload (not a BLOB)", payload)
        if not _is_number(at):
            raise _bad_row(f"{where}: published_at", at)
        messages.append(Message(ch.name, msg_id, sender, payload, float(at)))
        previous = msg_id
    if previous > ch.last_id:
        ch.last_id = previous
    return [msg for msg in messages if msg.msg_id > ch.last_id - ch.keep]


def _pragmas(conn: sqlite3.Connection, sync: str = "normal") -> None:
    # Closed at once: journal_mode answers a row, and PyPy (no reference
    # counting) would keep its statement running until a collection, so
    # the next commit failed ("SQL statements in progress").
    conn.execute("PRAGMA journal_mode=WAL").close()
    # NORMAL under WAL: a commit is in the OS's hands (a killed process loses
    # nothing); FULL: also fsynced before the commit returns (a power cut too).
    conn.execute(
        "PRAGMA synchronous=FULL" if sync == "full" else "PRAGMA synchronous=NORMAL").close()


class _Batch:
    """What the reactor's side keeps of one commit until it has finished."""

    __slots__ = ("count", "queued_at", "reset", "restarts", "saving", "size", "started",
                 "state")

    def __init__(self, count: int, size: int, state: dict[str, list[Any]], reset: str | None,
                 restarts: int, queued_at: float) -> None:
        self.count = count  # messages
        self.size = size  # their bytes, as counted in _pending_bytes
        self.state = state  # channels created or retired, put back if it fails
        self.saving: dict[str, tuple[Any, ...]] | None = None  # last ids saved with it
        self.reset = reset  # restart()'s epoch, put back if it fails
        self.restarts = restarts  # restart()s before it began
        self.queued_at = queued_at  # its first message queued (time.monotonic)
        self.started = time.monotonic()


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
        self._queue: list[Message] = []  # appended, for the next commit
        self._keeps: list[int] = []  # each one's channel's window (no tuple per message)
        self._queued_bytes = 0  # of _queue, counted as in _pending_bytes
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
        # name -> [keep, last_id, created_at, retired, floor]: channels created or retired
        self._state: dict[str, list[Any]] = {}
        self._swept = 0  # the sweep goes on after this rowid (the writer's thread only)
        # Channels whose last id is on disk only in their newest row (see
        # SAVE_INTERVAL): name -> [name, keep, last_id, created_at].
        self._unsaved: dict[str, tuple[Any, ...]] = {}
        self._saved_at = reactor.seconds()
        self._reset: str | None = None  # restart(): the new epoch, for the next commit
        self._stale = 0  # messages queued before that restart(): not written
        self._restarts = 0  # a commit begun before the last restart() brings back nothing
        self._scheduled: Any = None
        self._retry: Any = None
        self._writing: Deferred[None] | None = None
        self._closed = False
        self._pool = adbapi.ConnectionPool(
            "sqlite3", _file_name(path), check_same_thread=False, cp_min=1, cp_max=1,
            cp_openfun=lambda conn: _pragmas(conn, sync),
            cp_reactor=reactor,
        )

    # -- start -----------------------------------------------------------

    def _open(self, new_epoch: str) -> str:
        """Check (or create) the file; return its epoch. Raises StoreError."""
        _create_private(self.path)
        try:
            conn = sqlite3.connect(_file_name(self.path))
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
                if meta.get("schema") == "1" and "epoch" in meta:
                    # One transaction: a failure leaves the file as it was.
                    conn.executescript(f"BEGIN; {MIGRATE_FROM_1} COMMIT;")
                    meta["schema"] = SCHEMA_VERSION
                    _log.info("{path}: store schema 1 brought to {version}", path=self.path,
                              version=SCHEMA_VERSION)
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
        failing with a traceback later. Rows out of their channel's window
        (not swept yet) are not read.
        """
        try:
            conn = sqlite3.connect(_file_name(self.path))
            try:
                saved = [_checked_channel(row) for row in conn.execute(
                    "SELECT name, keep, last_id, created_at, retired, floor FROM channels")]
                rows: dict[str, list[tuple[Any, ...]]] = {
                    ch.name: [] for ch in saved if not ch.retired}
                # In commit order, which is id order within a channel.
                for row in conn.execute(
                        "SELECT channel, id, sender, payload, published_at FROM messages "
                        f"WHERE EXISTS ({LIVE}) ORDER BY rowid"):
                    rows[row[0]].append(row[1:])
                for ch in saved:
                    if rows.get(ch.name):
                        ch.messages = _checked_messages(ch, rows[ch.name])
            finally:
                conn.close()
        except sqlite3.Error as e:
            raise StoreError(str(e)) from None
        return saved

    # -- what the hub tells us -------------------------------------------

    def channel_created(self, name: str, keep: int, created_at: float, last_id: int) -> None:
        # Made again after a drop: the ids up to last_id were the old channel's.
        self._state[name] = [keep, last_id, created_at, 0, last_id]
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
        self._queue.append(msg)
        self._keeps.append(keep)
        self._appended += 1
        self._queued_bytes += size
        self._pending_bytes += size
        if self._scheduled is None and self._writing is None:
            self._scheduled = self.reactor.callLater(0, self.flush)

    def channel_retired(self, name: str, last_id: int) -> None:
        # Its rows are dead from now on; the sweep takes them away.
        state = self._state.setdefault(name, [0, last_id, 0.0, 1, 0])
        state[1], state[3] = last_id, 1
        self._soon()

    def restart(self, epoch: str) -> None:
        """The id space starts again (a shared backplane lost its data): the
        next commit empties the file and makes ``epoch`` its epoch. Messages
        still waiting for it were numbered in the old id space: they are not
        written (and told as committed, in their turn)."""
        self.epoch = epoch
        self._reset = epoch
        self._restarts += 1
        self._stale = len(self._queue)
        self._state.clear()
        self._unsaved.clear()
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
        if not (self._queue or self._state or self._reset):
            return succeed(None)
        reset, self._reset = self._reset, None
        stale, self._stale = self._stale, 0
        queue, self._queue = self._queue, []
        keeps, self._keeps = self._keeps, []
        size, self._queued_bytes = self._queued_bytes, 0
        # ``state`` stays as it is, to be written again if this fails; the
        # writer's thread reads these and changes none of them.
        state, self._state = self._state, {}
        batch = _Batch(len(queue), size, state, reset, self._restarts, self._queued_at)
        if self._closed or self.reactor.seconds() - self._saved_at >= SAVE_INTERVAL:
            batch.saving, self._unsaved = self._unsaved, {}
            self._saved_at = self.reactor.seconds()
        writing = self._writing = self._pool.runInteraction(
            self._write, queue, keeps, state, batch.saving, reset, stale)
        writing.addCallbacks(self._written, self._failed, callbackArgs=(batch,),
                             errbackArgs=(batch,))
        return writing

    def _write(self, txn: Any, queue: list[Message], keeps: list[int],
               state: dict[str, list[Any]], saving: dict[str, tuple[Any, ...]] | None,
               reset: str | None = None, stale: int = 0) -> dict[str, tuple[Any, ...]]:
        """One transaction, on the writer's thread: channels, rows, a sweep.

        Returns the channels whose last ids it left unsaved (SAVE_INTERVAL);
        ``saving``, if given, are those left by earlier commits, saved now.
        ``reset``: a new epoch (restart), before which the first ``stale``
        messages of ``queue`` were numbered."""
        if reset is not None:
            txn.execute("DELETE FROM messages")
            txn.execute("DELETE FROM channels")
            txn.execute("INSERT OR REPLACE INTO txpubsub_meta VALUES ('epoch', ?)", (reset,))
            self._swept = 0
            queue, keeps = queue[stale:], keeps[stale:]
        changed = {name: list(values) for name, values in state.items()}
        # Channels that only had messages: where their newest one is (ints and
        # tuples: nothing for the garbage collector to walk while this runs).
        newest: dict[str, int] = {}
        for i, msg in enumerate(queue):
            values = changed.get(msg.channel)
            if values is None:
                newest[msg.channel] = i  # a channel's ids grow within a batch
            elif msg.msg_id > values[1]:
                values[1] = msg.msg_id
        advanced = {name: (name, keeps[i], queue[i].msg_id, queue[i].published_at)
                    for name, i in newest.items()}
        # Only rows that stay live: none that would be swept at once (out of
        # their channel's window by the end of this batch, or of a channel
        # dropped, or from before it was made again, in this batch).
        horizon = {name: (max(floor, last_id - keep) if not retired else last_id)
                   for name, (keep, last_id, _, retired, floor) in changed.items()}
        for name, keep, last_id, _ in advanced.values():
            horizon[name] = last_id - keep
        txn.executemany(UPSERT_CHANNEL, [
            (name, keep, last_id, created_at, retired, floor)
            for name, (keep, last_id, created_at, retired, floor) in changed.items()
            if last_id or not retired])
        # A channel dropped before it ever had a message leaves nothing behind.
        txn.executemany("DELETE FROM channels WHERE name = ?",
                        [(name,) for name, (_, last_id, _, retired, _) in changed.items()
                         if retired and not last_id])
        if saving is not None:
            txn.executemany(ADVANCE_CHANNEL, [*saving.values(), *advanced.values()])
            unsaved = {}
        else:
            txn.executemany(ADVANCE_CHANNEL, [values for values in advanced.values()
                                              if not values[1]])
            unsaved = {name: values for name, values in advanced.items() if values[1]}
        # Each row made as it is bound (no list of them all).
        txn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?)", (
            (msg.channel, msg.msg_id, msg.sender, msg.payload, msg.published_at)
            for msg, keep in zip(queue, keeps) if keep and msg.msg_id > horizon[msg.channel]))
        self._sweep(txn, SWEEP * max(txn.rowcount, 0))  # rows written (summed)
        return unsaved

    def _sweep(self, txn: Any, count: int) -> None:
        """Delete the dead among the next ``count`` rows after the last sweep,
        starting again from the oldest once past the newest."""
        if not count:
            return
        start = self._swept
        end = txn.execute("SELECT rowid FROM messages WHERE rowid > ? ORDER BY rowid "
                          "LIMIT 1 OFFSET ?", (start, count - 1)).fetchone()
        if end is None:
            txn.execute(f"DELETE FROM messages WHERE rowid > ? AND NOT EXISTS ({LIVE})",
                        (start,))
            self._swept = 0
        else:
            txn.execute("DELETE FROM messages WHERE rowid > ? AND rowid <= ? "
                        f"AND NOT EXISTS ({LIVE})", (start, end[0]))
            self._swept = end[0]

    def _written(self, unsaved: dict[str, tuple[Any, ...]], batch: _Batch) -> None:
        self._writing = None
        now = time.monotonic()
        self.commit_seconds.observe(now - batch.started)
        count = batch.count
        if count:
            self.wait_seconds.observe(now - batch.queued_at)
            self.committed_messages += count
        if batch.restarts == self._restarts:  # else they are of an id space gone
            self._unsaved.update(unsaved)
        if self._trouble is not None:
            self._log.info("history store {path} writes again", path=self.path)
            self._trouble = None
        self._pending_bytes -= batch.size
        if self._behind is not None and self._pending_bytes <= self._behind // 2:
            self._log.info("history store {path} has caught up", path=self.path)
            self._behind = None
        # The disk gets the next batch before the reactor delivers this one.
        if self._queue or self._state:
            self.flush()
        self._committed(count)
        self._told(count)

    def _failed(self, failure: Failure, batch: _Batch) -> None:
        self._writing = None
        self.commit_seconds.observe(time.monotonic() - batch.started)
        if batch.reset is not None and self._reset is None:
            self._reset = batch.reset  # the file still holds the old id space
        state, saving = batch.state, batch.saving
        if batch.restarts != self._restarts:  # what this batch held is of an id space gone
            state, saving = {}, None
        if saving is not None:  # last ids of earlier commits: still to be saved
            for name, values in saving.items():
                self._unsaved.setdefault(name, values)
        self.errors += 1
        why = str(failure.value) or failure.type.__name__  # type: ignore[union-attr]
        if self._trouble is None:
            self._trouble = why
            if failure.check(sqlite3.Error, OSError):  # the disk's trouble: its words say it
                self._log.error(
                    "could not write history to {path}: {why}; publishes to durable channels "
                    "are refused (-ERR unavailable) until it can; still serving",
                    path=self.path, why=why)
            else:
                self._log.failure(
                    "could not write history to {path}: publishes to durable channels are "
                    "refused (-ERR unavailable) until it can; still serving",
                    failure, path=self.path)
        # What waited behind this batch fails too: committing it would leave
        # a gap in its channels' ids. Nothing of it was acknowledged or seen.
        count = batch.count + len(self._queue)
        self._queue, self._keeps = [], []
        self._queued_bytes = self._pending_bytes = self._stale = 0
        self._behind = None
        # Channels' creations and drops are kept (newer news of a channel
        # wins) and tried again with the next batch, or after RETRY_INTERVAL.
        for name, channel_state in state.items():
            self._state.setdefault(name, channel_state)
        if self._state and not self._closed:
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
            if self._unsaved:  # the last ids not yet in their channels' rows
                await self._pool.runInteraction(
                    lambda txn: txn.executemany(ADVANCE_CHANNEL, list(self._unsaved.values())))
            if self._retry is not None and self._retry.active():
                self._retry.cancel()
            try:
                if not (self._queue or self._state):
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
