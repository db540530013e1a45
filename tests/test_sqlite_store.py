"""Durable history in SQLite: ids, epoch and kept messages survive a restart."""
from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import tempfile
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.error import ProcessTerminated
from twisted.internet.interfaces import IProcessTransport, IReactorThreads
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from txpubsub.core.hub import Hub
from txpubsub.core.pending import PendingPublish
from txpubsub.store import sqlite as sqlite_store
from txpubsub.store.sqlite import SCHEMA, SCHEMA_VERSION, SqliteStore, StoreError, open_store
from txpubsub.wire.errors import HubError

from .helpers import Conn, kept
from .netclient import WAIT, connect
from .test_twistd import ServerProcess, twistd

threads = cast(IReactorThreads, reactor)  # Twisted types `reactor` with fewer interfaces
# The schema before issue 15's second half: messages keyed by (channel, id).
SCHEMA_1 = """
CREATE TABLE txpubsub_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE channels (
    name TEXT PRIMARY KEY, keep INTEGER NOT NULL, last_id INTEGER NOT NULL,
    created_at REAL NOT NULL, retired INTEGER NOT NULL DEFAULT 0);
CREATE TABLE messages (
    channel TEXT NOT NULL, id INTEGER NOT NULL, sender TEXT NOT NULL,
    payload BLOB NOT NULL, published_at REAL NOT NULL, PRIMARY KEY (channel, id));
"""


async def answered(conn: Conn, data: bytes, replies: int = 1) -> bytes:
    """Feed ``data`` and return what came back once ``replies`` replies have
    (acknowledgements wait for the commit, on the store's thread)."""
    conn.proto.dataReceived(data)
    got = b""
    for _ in range(500):
        got += conn.take()
        if sum(1 for line in got.split(b"\r\n")
               if line.startswith((b"+OK", b"-ERR", b"PONG"))) >= replies:
            return got
        await deferLater(reactor, 0.01)
    raise AssertionError(f"no reply after 5 s: {got!r}")


async def publish(hub: Hub, channel: str, payload: bytes) -> int:
    """The id of a publish, once it is committed."""
    msg_id = hub.publish("x", channel, payload)
    if isinstance(msg_id, PendingPublish):
        return await msg_id.deferred()
    return msg_id if isinstance(msg_id, int) else await msg_id


async def pub(conn: Conn, line: str) -> str:
    """One command; its reply once it has come."""
    return (await answered(conn, line.encode() + b"\n")).decode()


class SqliteStoreTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.path = os.path.join(tempfile.mkdtemp(), "history.db")

    def start(self, **kwargs: Any) -> tuple[Hub, Conn]:
        hub = Hub(reactor, store=open_store(self.path, threads, "first"), **kwargs)
        self.addCleanup(hub.store.close)
        return hub, Conn(hub, ping_interval=0)

    async def restart(self, hub: Hub, **kwargs: Any) -> tuple[Hub, Conn]:
        await hub.store.close()
        return self.start(**kwargs)

    async def test_ping(self) -> None:
        """A store answers ping (--http /readyz) while open, and fails once closed."""
        hub, _ = self.start()
        store = hub.store
        assert isinstance(store, SqliteStore)
        self.assertIsNone(await store.ping().addTimeout(10, reactor))
        await store.close()
        with self.assertRaises(StoreError):
            await store.ping()

    async def test_restart_keeps_ids_history_and_epoch(self) -> None:
        """After a restart: same epoch, ids go on, HISTORY and since= as before."""
        hub, conn = self.start(history=3)
        self.assertEqual(hub.epoch, "first")
        for i in range(5):
            await pub(conn, f"PUB news m{i}")
        conn.cmd("CREATE quiet history=0")
        await pub(conn, "PUB quiet q")
        hub, conn = await self.restart(hub, history=3)
        self.assertEqual(hub.epoch, "first")
        self.assertIn(b'"epoch":"first"', conn.greeting)
        self.assertEqual(conn.cmd("HISTORY news"),
                         "MSG news 3 c1 m2\r\nMSG news 4 c1 m3\r\nMSG news 5 c1 m4\r\n+OK 3\r\n")
        self.assertEqual(conn.cmd("SUB news since=4 epoch=first"),
                         "MSG news 5 c1 m4\r\n+OK subscribed news 1\r\n")
        self.assertEqual(await pub(conn, "PUB quiet again"), "+OK 2\r\n")
        conn.take()
        self.assertEqual(await pub(conn, "PUB news next"), "MSG news 6 c1 next\r\n+OK 6\r\n")

    async def test_restart_keeps_history_where_cursors_outlive_their_use(self) -> None:
        """As on PyPy, where a cursor lives on until a garbage collection: the
        store still opens, commits and loads (an unread PRAGMA answer kept
        its statement running, and every open failed with "cannot commit
        transaction - SQL statements in progress")."""
        cursors: list[sqlite3.Cursor] = []
        real = sqlite3.connect

        class KeepsCursors(sqlite3.Connection):
            def execute(self, *args: Any) -> sqlite3.Cursor:
                cursors.append(super().execute(*args))
                return cursors[-1]

        self.patch(sqlite3, "connect",
                   lambda *args, **kwargs: real(*args, factory=KeepsCursors, **kwargs))
        hub, conn = self.start(history=2)
        for i in range(3):
            await pub(conn, f"PUB news m{i}")
        hub, conn = await self.restart(hub, history=2)
        self.assertEqual(conn.cmd("HISTORY news"),
                         "MSG news 2 c1 m1\r\nMSG news 3 c1 m2\r\n+OK 2\r\n")
        self.assertTrue(cursors)

    async def test_history_loaded_within_its_byte_limits(self) -> None:
        """A restart with smaller --max-history-bytes/--max-channel-bytes keeps
        only the newest messages that fit; since= from before says partial."""
        hub, conn = self.start()
        for i in range(20):
            conn.cmd(f"PUB big {i:04d}" + "x" * 96)  # 100-byte payloads
            conn.cmd(f"PUB small {i}")
        hub, conn = await self.restart(hub, max_history_bytes=1000, max_channel_bytes=600)
        big = hub.channel("big")
        assert big is not None
        self.assertEqual((big.kept, big.kept_bytes), (6, 600))
        self.assertLessEqual(hub.history_bytes, 1000)
        self.assertEqual(hub.history_bytes, 600 + 10 * 1 + 10 * 2)
        self.assertTrue(conn.cmd("SUB big since=0").endswith("+OK subscribed big 6 partial\r\n"))

    async def test_a_store_in_use_is_refused(self) -> None:
        """A second server on a store in use is refused with a clear reason (two
        would hand out the same ids); once the first has closed it, it opens."""
        hub, _conn = self.start()
        e = self.assertRaises(StoreError, open_store, self.path, reactor, "second")
        self.assertEqual(str(e), f"in use by another server (its lock file {self.path}.lock "
                                 "is held)")
        await hub.store.close()
        self.assertFalse(os.path.exists(self.path + ".lock"))
        again = open_store(self.path, threads, "second")
        self.addCleanup(again.close)
        self.assertEqual(again.epoch, "first")

    async def test_a_store_in_use_is_refused_by_another_path_to_it(self) -> None:
        """A symlink (or a symlinked directory) to a store in use names the same
        file: the second server is refused there too, not let in to hand out
        the same ids through a lock file of its own beside the link."""
        hub, _conn = self.start()
        link = self.path + "-link"
        os.symlink(os.path.basename(self.path), link)
        try:
            second = open_store(link, threads, "second")
        except StoreError as e:
            self.assertIn("in use by another server", str(e))
        else:
            await second.close()
            self.fail(f"a second server opened {link}, a link to the store in use")
        await hub.store.close()
        self.assertFalse(os.path.exists(link + ".lock"))

    async def test_a_store_path_is_a_file_never_an_sqlite_uri(self) -> None:
        """`--store sqlite:file:x.db` and `sqlite::memory:` name files, as the
        lock file and the 0600 creation take them: SQLite must not read them
        as a URI (x.db, escaping the lock of a server using x.db: the same
        ids twice) or an in-memory database (keeping nothing)."""
        directory = os.path.dirname(self.path)
        cwd = os.getcwd()
        os.chdir(directory)
        self.addCleanup(os.chdir, cwd)
        for name in ("file:x.db", ":memory:"):
            store = open_store(name, threads, "mine")
            self.assertEqual(store.load(), [])
            await store.close()
            with sqlite3.connect(os.path.join(directory, name)) as db:
                self.assertEqual(db.execute("SELECT value FROM txpubsub_meta "
                                            "WHERE key = 'epoch'").fetchall(), [("mine",)])
        self.assertFalse(os.path.exists(os.path.join(directory, "x.db")))

    async def test_a_store_in_use_is_refused_through_a_hard_link(self) -> None:
        """A hard link to a store in use is the same file under another name
        (and another lock file beside it): the second server is refused there
        too, not let in to hand out the ids the first one hands out."""
        hub, _conn = self.start()
        link = self.path + "-hard"
        os.link(self.path, link)
        try:
            second = open_store(link, threads, "second")
        except StoreError as e:
            self.assertIn("in use by another server", str(e))
        else:
            await second.close()
            self.fail(f"a second server opened {link}, a hard link to the store in use")
        self.assertFalse(os.path.exists(link + ".lock"))
        await hub.store.close()
        again = open_store(link, threads, "second")  # free once the first has gone
        self.addCleanup(again.close)
        self.assertEqual(again.epoch, "first")

    def rows(self) -> list[tuple[str, int]]:
        with sqlite3.connect(self.path) as db:
            return db.execute("SELECT channel, id FROM messages ORDER BY rowid").fetchall()

    async def test_only_the_window_is_written(self) -> None:
        """Of what one commit holds, only each channel's window is written."""
        _hub, conn = self.start(history=2)
        await answered(conn, b"PUB news x\n" * 10, 10)
        self.assertEqual(self.rows(), [("news", 9), ("news", 10)])

    async def test_rows_out_of_the_window_are_swept(self) -> None:
        """Commit after commit, rows that left their channel's window are
        deleted: the file holds at most twice the windows."""
        self.patch(sqlite_store, "SAVE_INTERVAL", 0.0)  # last ids saved every commit
        hub, _ = self.start(history=2)
        most = 0
        for n in range(60):
            self.assertEqual(await publish(hub, "abc"[n % 3], b"m"), n // 3 + 1)
            if n >= 30:
                most = max(most, len(self.rows()))
        self.assertLessEqual(most, 2 * 3 * 2)
        self.assertTrue({("a", 20), ("b", 20), ("c", 20), ("c", 19)} <= set(self.rows()))

    async def test_a_dropped_channel_made_again_loads_only_its_new_life(self) -> None:
        """A channel dropped after its messages were written, then made again:
        a restart loads only what came after; the old rows are swept."""
        self.patch(sqlite_store, "SAVE_INTERVAL", 0.0)
        hub, conn = self.start()
        for i in range(3):
            await pub(conn, f"PUB news old{i}")
        hub.drop("news")
        self.assertEqual(await pub(conn, "PUB news new"), "+OK 4\r\n")
        hub, conn = await self.restart(hub)
        self.assertEqual(conn.cmd("HISTORY news"), "MSG news 4 c1 new\r\n+OK 1\r\n")
        for i in range(3):
            await pub(conn, f"PUB other {i}")
        self.assertEqual([row for row in self.rows() if row[0] == "news"], [("news", 4)])

    async def test_a_last_id_not_yet_saved_comes_from_the_newest_row(self) -> None:
        """A channel's row may lag its newest message by up to SAVE_INTERVAL
        (then the process is killed): ids go on after the newest message."""
        forged_store(self.path, [("news", 2, 1, 1.0, 0)],
                     [("news", i, "alice", b"m%d" % i, 2.0) for i in (1, 2, 3)])
        _hub, conn = self.start()
        self.assertEqual(conn.cmd("HISTORY news"),
                         "MSG news 2 alice m2\r\nMSG news 3 alice m3\r\n+OK 2\r\n")
        self.assertEqual(await pub(conn, "PUB news next"), "+OK 4\r\n")

    async def test_a_schema_1_store_is_brought_up_to_date(self) -> None:
        """A file written before schema 2 opens with its epoch, ids and history."""
        with sqlite3.connect(self.path) as db:
            db.executescript(SCHEMA_1)
            db.executemany("INSERT INTO txpubsub_meta VALUES (?, ?)",
                           [("schema", "1"), ("epoch", "old"), ("clean", "1")])
            db.executemany("INSERT INTO channels VALUES (?, ?, ?, ?, ?)",
                           [("news", 2, 3, 1.0, 0), ("gone", 0, 7, 1.0, 1)])
            db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                           [("news", i, "c1", b"m%d" % i, 2.0) for i in (3, 2)])
        db.close()
        hub, conn = self.start()
        self.assertEqual(hub.epoch, "old")
        self.assertEqual(conn.cmd("HISTORY news"),
                         "MSG news 2 c1 m2\r\nMSG news 3 c1 m3\r\n+OK 2\r\n")
        self.assertEqual(await pub(conn, "PUB news next"), "+OK 4\r\n")
        self.assertEqual(await pub(conn, "PUB gone again"), "+OK 8\r\n")
        with sqlite3.connect(self.path) as db:
            self.assertEqual(db.execute("SELECT value FROM txpubsub_meta WHERE key = 'schema'")
                             .fetchone(), (SCHEMA_VERSION,))
        db.close()

    async def test_forgotten_channel_ids_survive_restart(self) -> None:
        hub, conn = self.start(history=0)
        await answered(conn, b"PUB gone x\n" * 3, 3)
        gone = hub.channel("gone")
        assert gone is not None
        hub._retire(gone)
        hub, conn = await self.restart(hub, history=0)
        self.assertIsNone(hub.channel("gone"))
        self.assertEqual(await pub(conn, "PUB gone y"), "+OK 4\r\n")

    async def test_binary_payloads_round_trip(self) -> None:
        hub, conn = self.start()
        conn.send(b"PUBB bin 4\r\n\x00\r\n\xff\r\n")
        hub, conn = await self.restart(hub)
        self.assertEqual(conn.send(b"HISTORY bin\n"),
                         b"MSGB bin 1 c1 4\r\n\x00\r\n\xff\r\n+OK 1\r\n")

    def break_disk(self, store: SqliteStore) -> None:
        """From now on every commit fails as a full disk does (its statements
        run, then it fails and is rolled back), until _write is put back."""
        self.good_write = good = store._write

        def full(*args: Any) -> None:
            good(*args)
            raise sqlite3.OperationalError("database or disk is full")

        store._write = full  # type: ignore[method-assign,assignment]

    async def test_failing_disk_refuses_publishes_and_recovers(self) -> None:
        """A disk that fails: publishes get -ERR unavailable instead of an untrue
        +OK, everything else is served, STATS counts it, the log says it once
        (the disk's words, no traceback), and publishing works again (ids
        going on) as soon as the disk does."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        hub, conn = self.start()
        store = hub.store
        assert isinstance(store, SqliteStore)
        reader = Conn(hub, ping_interval=0)
        reader.cmd("SUB news")
        self.assertEqual(await pub(conn, "PUB news ok"), "+OK 1\r\n")
        self.break_disk(store)
        refused = (b"-ERR unavailable the history store cannot write: "
                   b"database or disk is full\r\n")
        self.assertEqual(await answered(conn, b"PUB news a\nPING\nPUB news b\n", 3),
                         refused + b"PONG\r\n" + refused)
        self.assertEqual(await pub(conn, "PUB news c"), refused.decode())
        self.assertEqual(conn.cmd("HISTORY news"), "MSG news 1 c1 ok\r\n+OK 1\r\n")
        self.assertEqual(reader.take(), b"MSG news 1 c1 ok\r\n")
        said = [formatEvent(e) for e in events if e["log_level"] >= LogLevel.error]
        self.assertEqual(len(said), 1, said)
        self.assertIn("could not write history to ", said[0])
        self.assertIn(": database or disk is full; publishes to durable channels", said[0])
        self.assertFalse([e for e in events if "log_failure" in e])
        self.assertGreaterEqual(hub.stats()["store_errors"], 2)
        store._write = self.good_write  # type: ignore[method-assign]
        self.assertEqual(await pub(conn, "PUB news back"), "+OK 2\r\n")
        self.assertEqual(reader.take(), b"MSG news 2 c1 back\r\n")
        hub, conn = await self.restart(hub)
        self.assertEqual(conn.cmd("HISTORY news"),
                         "MSG news 1 c1 ok\r\nMSG news 2 c1 back\r\n+OK 2\r\n")

    async def test_too_much_waiting_for_the_disk_is_refused_at_once(self) -> None:
        """Past the bound on what waits for the disk, a publish is refused at
        once (memory stays bounded); replies keep their order."""
        hub, conn = self.start()
        store = hub.store
        assert isinstance(store, SqliteStore)
        store.max_pending_bytes = 250  # two messages of 10 bytes (100 each besides)
        got = await answered(conn, b"PUB news 0123456789\n" * 3 + b"PING\n", 4)
        self.assertEqual(got, b"+OK 1\r\n+OK 2\r\n-ERR unavailable the history store is "
                              b"behind (too much waits for the disk)\r\nPONG\r\n")
        self.assertEqual(await pub(conn, "PUB news again"), "+OK 3\r\n")
        self.assertEqual(hub.stats()["store_errors"], 1)

    async def test_messages_dropped_before_a_flush_stay_dropped(self) -> None:
        """Messages published and dropped within one flush window never come back."""
        hub, _ = self.start()
        for i in range(3):
            hub.publish("x", "secret", b"secret-%d" % i)
        hub.drop("secret")
        hub.publish("x", "secret", b"fresh")
        hub, _ = await self.restart(hub)
        self.assertEqual([m.payload for m in kept(hub, "secret")], [b"fresh"])
        self.assertEqual(kept(hub, "secret")[0].msg_id, 4)

    async def test_ids_refused_by_a_failed_write_are_handed_out_again(self) -> None:
        """Ids of a failed commit were never acknowledged nor delivered: the next
        publishes take them, with no gap, and a restart goes on from there
        (the failed commit's last ids are not saved later either)."""
        self.patch(sqlite_store, "SAVE_INTERVAL", 0.0)
        hub, _ = self.start()
        store = hub.store
        assert isinstance(store, SqliteStore)
        self.assertEqual(await publish(hub, "news", b"m"), 1)
        self.break_disk(store)
        tries = [hub.publish("x", "news", b"m") for _ in range(3)]
        for attempt in tries:
            assert isinstance(attempt, PendingPublish)
            await self.assertFailure(attempt.deferred(), HubError)
        store._write = self.good_write  # type: ignore[method-assign]
        self.assertEqual(await publish(hub, "other", b"a commit saving last ids"), 1)
        hub, _ = await self.restart(hub)
        self.assertEqual(await publish(hub, "news", b"after"), 2)
        hub, _ = await self.restart(hub)
        self.assertEqual(await publish(hub, "news", b"later"), 3)

    async def test_dropped_empty_channel_stays_gone_after_restart(self) -> None:
        """A channel created, saved and dropped with no message is gone after a restart."""
        hub, _ = self.start()
        hub.create("empty")
        assert isinstance(hub.store, SqliteStore)
        await hub.store.flush()
        hub.drop("empty")
        hub, _ = await self.restart(hub)
        self.assertIsNone(hub.channel("empty"))

class BadStoreFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = os.path.join(tempfile.mkdtemp(), "x.db")

    def test_garbage_file(self) -> None:
        with open(self.path, "wb") as f:
            f.write(b"this is not a database, just some text that is long enough" * 100)
        e = self.assertRaises(StoreError, SqliteStore, self.path, reactor, "e")
        self.assertIn("not a database", str(e))

    def test_foreign_database(self) -> None:
        with sqlite3.connect(self.path) as db:
            db.execute("CREATE TABLE accounts (id INTEGER)")
        e = self.assertRaises(StoreError, SqliteStore, self.path, reactor, "e")
        self.assertIn("not a txpubsub store", str(e))

    def test_missing_directory(self) -> None:
        self.assertRaises(StoreError, open_store, "/nonexistent/dir/x.db", reactor, "e")

    def test_twistd_says_one_line(self) -> None:
        import subprocess

        with open(self.path, "wb") as f:
            f.write(b"\x00garbage" * 1000)
        result = subprocess.run(
            [*twistd(), "-n", "--pidfile=", "txpubsub", "--port", "tcp:0:interface=127.0.0.1",
             "--store", f"sqlite:{self.path}"],
            capture_output=True, text=True, timeout=60, cwd=tempfile.gettempdir())
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, output)
        self.assertIn(f"txpubsub: --store sqlite:{self.path}: file is not a database", output)
        self.assertNotIn("Traceback", output)


class StoreFileModeTests(TestCase):
    timeout = 30

    async def test_store_files_are_private(self) -> None:
        """The database, its -wal and -shm and its lock file are 0600, whatever the umask."""
        path = os.path.join(tempfile.mkdtemp(), "h.db")
        old = os.umask(0o022)
        try:
            hub = Hub(reactor, store=open_store(path, threads, "e"))
        finally:
            os.umask(old)
        self.addCleanup(hub.store.close)
        Conn(hub, ping_interval=0).cmd("PUB news secret")
        assert isinstance(hub.store, SqliteStore)
        await hub.store.flush()
        for name in (path, path + "-wal", path + "-shm", path + ".lock"):
            self.assertEqual(oct(os.stat(name).st_mode & 0o777), oct(0o600), name)


def forged_store(path: str, channels: list[tuple[Any, ...]],
                 messages: list[tuple[Any, ...]]) -> None:
    """A store file as an editor (or an attacker) could leave it."""
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.executemany("INSERT INTO txpubsub_meta VALUES (?, ?)",
                       [("schema", SCHEMA_VERSION), ("epoch", "e"), ("clean", "1")])
        db.executemany("INSERT INTO channels (name, keep, last_id, created_at, retired, floor) "
                       "VALUES (?, ?, ?, ?, ?, ?)", [(*ch, 0)[:6] for ch in channels])
        db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?)", messages)
    db.close()


class BadRowTests(SynchronousTestCase):
    """A store whose rows the server would not have written is refused at load, with one line."""

    def setUp(self) -> None:
        self.path = os.path.join(tempfile.mkdtemp(), "x.db")

    def load_error(self, channels: list[tuple[Any, ...]],
                   messages: list[tuple[Any, ...]]) -> str:
        forged_store(self.path, channels, messages)
        store = SqliteStore(self.path, reactor, "new")
        try:
            e = self.assertRaises(StoreError, store.load)
        finally:
            store._lock.release()
            store._pool.close()
        text = str(e)
        self.assertTrue(text.isprintable(), text)
        return text

    def test_good_rows_load(self) -> None:
        forged_store(self.path, [("news", 10, 3, 1.0, 0)],
                     [("news", i, s, b"x", 2.0) for i, s in ((1, "alice"), (2, "c7"),
                                                              (3, "$admin"))])
        store = SqliteStore(self.path, reactor, "new")
        self.addCleanup(store._lock.release)
        self.addCleanup(store._pool.close)
        [news] = store.load()
        self.assertEqual([(m.msg_id, m.sender) for m in news.messages],
                         [(1, "alice"), (2, "c7"), (3, "$admin")])

    def test_each_bad_row_is_named(self) -> None:
        news = ("news", 10, 3, 1.0, 0)
        cases: list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], str]] = [
            ([news], [("news", 1, "alice\r\nMSG news 9 bob forged", b"x", 1.0)],
             "bad row in the store: channel news message 1: sender 'alice\\r\\nMSG news 9 "
             "bob forged'"),
            ([news], [("news", 1, "alice", "text, not a blob", 1.0)],
             "channel news message 1: payload (not a BLOB) 'text, not a blob'"),
            ([news], [("news", 2, "alice", b"x", 1.0), ("news", 1, "alice", b"x", 1.0)],
             "channel news: message id (after 2) 1"),
            ([news], [("news", 1, "alice", b"x", "yesterday")],
             "channel news message 1: published_at 'yesterday'"),
            ([("bad name\x1b[2J", 1, 1, 1.0, 0)], [], "channel name 'bad name\\x1b[2J'"),
            ([("$sys.time", 1, 1, 1.0, 0)], [], "channel name '$sys.time'"),
            ([("news", -1, 1, 1.0, 0)], [], "channel news: keep -1"),
            ([("news", 1, "seven", 1.0, 0)], [], "channel news: last_id 'seven'"),
            ([("news", 1, 1, 1.0, 2)], [], "channel news: retired 2"),
            ([("news", 1, 1, 1.0, 0, 2)], [], "channel news: floor (up to last_id 1) 2"),
        ]
        for channels, messages, said in cases:
            self.path = os.path.join(tempfile.mkdtemp(), "x.db")
            self.assertIn(said, self.load_error(channels, messages))

    def test_twistd_says_one_line(self) -> None:
        """A sender with CRLF in the file: one line, status 1, no traceback, nothing replayed."""
        import subprocess

        forged_store(self.path, [("news", 10, 1, 1.0, 0)],
                     [("news", 1, "alice\r\nMSG news 2 bob forged", b"x", 1.0)])
        result = subprocess.run(
            [*twistd(), "-n", "--pidfile=", "txpubsub", "--port", "tcp:0:interface=127.0.0.1",
             "--store", f"sqlite:{self.path}", "--admin", "none"],
            capture_output=True, text=True, timeout=60, cwd=os.path.dirname(self.path))
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, output)
        self.assertIn(f"txpubsub: --store sqlite:{self.path}: bad row in the store: channel "
                      "news message 1: sender 'alice\\r\\nMSG news 2 bob forged'", output)
        self.assertNotIn("Traceback", output)


class KillTests(TestCase):
    timeout = 90

    async def start_server(self, path: str, workdir: str,
                           *extra: str) -> tuple[ServerProcess, IProcessTransport, int]:
        server = ServerProcess()
        process = reactor.spawnProcess(
            server, twistd()[0],
            [*twistd(), "-n", "--pidfile=", "txpubsub", "--port", "tcp:0:interface=127.0.0.1",
             "--store", f"sqlite:{path}", "--ping-interval", "0", "--admin", "none", *extra],
            env=os.environ.copy(), path=workdir)
        self.addCleanup(lambda: None if server.ended.called else process.signalProcess("KILL"))
        port = await server.listening.addTimeout(WAIT * 2, reactor)
        return server, process, port

    async def test_second_server_on_one_store_refused(self) -> None:
        """Two servers on one --store file: the second exits 1 with one line,
        and the first goes on serving."""
        workdir = tempfile.mkdtemp()
        path = os.path.join(workdir, "h.db")
        server, process, port = await self.start_server(path, workdir)
        second = ServerProcess()
        second.listening.addErrback(lambda _: None)  # it never listens
        other = reactor.spawnProcess(
            second, twistd()[0],
            [*twistd(), "-n", "--pidfile=", "txpubsub", "--port", "tcp:0:interface=127.0.0.1",
             "--store", f"sqlite:{path}", "--admin", "none"],
            env=os.environ.copy(), path=workdir)
        self.addCleanup(lambda: None if second.ended.called else other.signalProcess("KILL"))
        reason = await second.ended.addTimeout(WAIT * 2, reactor)
        assert isinstance(reason, ProcessTerminated), reason
        self.assertEqual(reason.exitCode, 1, second.output)
        self.assertIn(f"txpubsub: --store sqlite:{path}: in use by another server".encode(),
                      second.output)
        self.assertNotIn(b"Traceback", second.output)
        client = await connect(f"tcp:127.0.0.1:{port}")
        self.assertEqual(await client.ask(b"PUB news one", b"+OK"), b"+OK 1")
        await client.quit()
        process.signalProcess(signal.SIGTERM)
        await server.ended.addTimeout(WAIT, reactor)

    async def crash_and_check(self, *options: str) -> None:
        """Clients pipeline publishes, the server is killed with SIGKILL at a
        random moment and started again with the same command line: every
        acknowledged id is in HISTORY with its payload, every id a subscriber
        saw is there unchanged, the next id is above all of them, and the epoch
        is the same (a resuming client is not told partial)."""
        workdir = tempfile.mkdtemp()
        path = os.path.join(workdir, "h.db")
        extra = ("--history", "1000000", "--max-history", "1000000",
                 "--max-replay", "1000000", *options)
        server, process, port = await self.start_server(path, workdir, *extra)
        reader = await connect(f"tcp:127.0.0.1:{port}")
        found = re.search(rb'"epoch":"(\w+)"', reader.lines[0])
        assert found is not None, reader.lines[0]
        epoch = found.group(1)
        await reader.ask(b"SUB news", b"+OK")
        publishers = [await connect(f"tcp:127.0.0.1:{port}") for _ in range(4)]
        sent: list[list[bytes]] = [[] for _ in publishers]

        def burst() -> None:
            for n, client in enumerate(publishers):
                lines = [b"p%d-%d-%d" % (n, len(sent[n]) + k, random.getrandbits(32))
                         for k in range(20)]
                sent[n].extend(lines)
                client.send(b"".join(b"PUB news %s\r\n" % line for line in lines))

        sending = LoopingCall(burst)
        sending.start(0.002)
        await deferLater(reactor, random.uniform(0.3, 1.2))
        process.signalProcess(signal.SIGKILL)
        sending.stop()
        await server.ended.addTimeout(WAIT, reactor)
        for client in [reader, *publishers]:
            await client.closed.addTimeout(WAIT, reactor)

        acked: dict[int, bytes] = {}
        for n, client in enumerate(publishers):
            replies = [line for line in client.lines[1:] if line.startswith((b"+OK", b"-ERR"))]
            for reply, payload in zip(replies, sent[n]):
                self.assertTrue(reply.startswith(b"+OK "), reply)
                acked[int(reply.split()[1])] = payload
        seen = {int(line.split()[2]): line.split(b" ", 4)[4]
                for line in reader.lines if line.startswith(b"MSG news ")}
        self.assertTrue(acked, "nothing was acknowledged before the kill")

        server, process, port = await self.start_server(path, workdir, *extra)
        again = await connect(f"tcp:127.0.0.1:{port}")
        self.assertIn(b'"epoch":"' + epoch + b'"', again.lines[0])
        start = len(again.lines)
        await again.ask(b"HISTORY news", b"+OK")
        kept_now = {int(line.split()[2]): line.split(b" ", 4)[4]
                    for line in again.lines[start:] if line.startswith(b"MSG news ")}
        for msg_id, payload in acked.items():
            self.assertEqual(kept_now.get(msg_id), payload, f"acknowledged id {msg_id}")
        for msg_id, payload in seen.items():
            self.assertEqual(kept_now.get(msg_id), payload, f"delivered id {msg_id}")
        top = max([*acked, *seen])
        next_id = int((await again.ask(b"PUB news after", b"+OK")).split()[1])
        self.assertGreater(next_id, top)
        resumed = await again.ask(b"SUB news since=%d epoch=%s" % (top, epoch), b"+OK")
        self.assertFalse(resumed.endswith(b"partial"), resumed)
        await again.quit()
        process.signalProcess(signal.SIGTERM)
        await server.ended.addTimeout(WAIT, reactor)

    async def test_sigkill_loses_nothing_acknowledged(self) -> None:
        await self.crash_and_check()

    async def test_sigkill_loses_nothing_acknowledged_sync_full(self) -> None:
        await self.crash_and_check("--store-sync", "full")
