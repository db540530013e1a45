"""Several servers sharing one real Redis (--redis): one id space, one epoch,
every message to every server's subscribers once, and Redis trouble."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from txpubsub.backplane.address import RedisAddress
from txpubsub.core.hub import ClientRecord, Hub, Subscribed
from txpubsub.core.message import Message
from txpubsub.core.pending import PendingPublish
from txpubsub.store.sqlite import open_store
from txpubsub.wire.errors import CloseReason, HubError

from .helpers import Recorder

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
threads = cast(IReactorThreads, reactor)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A redis-server of the test's own on 127.0.0.1: nothing kept on disk, or
    with ``persist`` an append-only file fsynced at every write (in a
    directory of its own, on /dev/shm where there is one)."""

    def __init__(self, persist: bool = False) -> None:
        if not shutil.which(REDIS):
            raise SkipTest("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.persistence = ["--appendonly", "no"]
        if persist:
            shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
            self.dir = tempfile.mkdtemp(dir=shm)
            self.persistence = ["--appendonly", "yes", "--appendfsync", "always",
                                "--dir", self.dir]
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *self.persistence], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """SIGKILL: Redis keeps only what its append-only file holds."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def remove(self) -> None:
        """Stop, and remove its files."""
        self.stop()
        if self.persistence[1] == "yes":
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> Deferred[None]:
    """Fires once ``check()`` is true; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout

    @inlineCallbacks
    def poll() -> Any:
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {check}")
            yield deferLater(reactor, 0.01)

    return poll()


def redis_cli(redis: RedisProcess, *args: str) -> str:
    """What redis-cli prints for one command to the test's Redis."""
    return subprocess.run(["redis-cli", "-p", str(redis.port), *args], capture_output=True,
                          check=True, timeout=10).stdout.decode().strip()


def ids(reader: Recorder) -> list[int]:
    return [m.msg_id for m in reader.messages]


class AddressTests(SynchronousTestCase):
    def test_urls(self) -> None:
        """--redis takes host, port, db and password from the URL."""
        a = RedisAddress.parse("redis://:s%40cret@example.org:6380/3")
        self.assertEqual((a.scheme, a.host, a.port, a.db, a.password),
                         ("redis", "example.org", 6380, 3, "s@cret"))
        self.assertEqual(RedisAddress.parse("rediss://h").port, 6379)
        u = RedisAddress.parse("unix:///run/redis.sock?db=2&password=pw")
        self.assertEqual((u.path, u.db, u.password), ("/run/redis.sock", 2, "pw"))
        for bad in ("http://h", "redis://h/x", "unix://", "redis://h:99999"):
            self.assertRaises(ValueError, RedisAddress.parse, bad)


class TwoServers(TestCase):
    """Two hubs sharing a redis-server of the test's own."""

    timeout = 60

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        self.redis = RedisProcess()
        self.addCleanup(self.redis.stop)
        self.hubs = [self.server(), self.server()]
        # Connected, and holding client numbers from Redis.
        return wait_until(lambda: all(self.connected(h) and h.backplane._block[1]  # type: ignore[attr-defined]
                                      for h in self.hubs))

    def server(self, **options: Any) -> Hub:
        from txpubsub.backplane.redis import RedisBackplane

        options.setdefault("history", 100)
        hub = Hub(reactor, **options)
        backplane = RedisBackplane(hub, RedisAddress.parse(self.redis.url), reactor)
        hub.set_backplane(backplane)
        backplane.startService()
        self.addCleanup(backplane.stopService)
        return hub

    @staticmethod
    def connected(hub: Hub) -> bool:
        bp: Any = hub.backplane
        return bp._conn is not None and bp._listener is not None

    def client(self, hub: Hub) -> tuple[ClientRecord, Recorder]:
        reader = Recorder()
        return hub.attach(reader), reader

    @inlineCallbacks
    def subscribe(self, hub: Hub, client: ClientRecord, pattern: str, **replay: Any) -> Any:
        result = yield hub.subscribe(client, pattern, **replay)
        return result


class StoreWithRedisTests(TestCase):
    """--redis with --store sqlite: Redis numbers; the file keeps this server's copy."""

    timeout = 60

    def setUp(self) -> None:
        self.redis = RedisProcess()
        self.addCleanup(self.redis.stop)
        self.path = os.path.join(tempfile.mkdtemp(), "h.db")

    async def open(self) -> Hub:
        """A hub on the store file, connected to Redis."""
        from txpubsub.backplane.redis import RedisBackplane

        hub = Hub(reactor, store=open_store(self.path, threads, "unused"))
        backplane = RedisBackplane(hub, RedisAddress.parse(self.redis.url), reactor)
        hub.set_backplane(backplane)
        backplane.startService()
        await wait_until(lambda: TwoServers.connected(hub))
        return hub

    async def close(self, hub: Hub) -> None:
        await hub.backplane.stopService()  # type: ignore[attr-defined]
        await hub.store.drain()
        await hub.store.close()

    async def test_history_of_another_id_space_goes(self) -> None:
        """A file whose history is not of Redis's id space (written by a server
        alone, or before Redis lost its data) is emptied at first contact, and
        again when Redis loses its data while running: no old message is served
        under Redis's epoch, and new ids from 1 are delivered, not taken for
        ones already seen. The file then holds Redis's epoch and its ids."""
        alone = Hub(reactor, store=open_store(self.path, threads, "alone"))
        for n in range(3):
            pending = alone.publish("x", "news", b"old %d" % n)
            assert isinstance(pending, PendingPublish)
            await pending.deferred()
        await alone.store.close()

        hub = await self.open()
        self.assertNotEqual(hub.epoch, "alone")
        self.assertEqual(hub.history("news"), [])
        reader = Recorder()
        subscribed = hub.subscribe(hub.attach(reader), "news")
        if isinstance(subscribed, Deferred):
            await subscribed
        self.assertEqual(await hub.publish("x", "news", b"new"), 1)  # type: ignore[misc]
        await wait_until(lambda: ids(reader) == [1])
        epoch = hub.epoch
        await self.close(hub)

        hub = await self.open()
        self.assertEqual(hub.epoch, epoch)
        self.assertEqual([m.payload for m in hub.history("news")], [b"new"])
        # Redis loses everything while this server runs.
        await hub.backplane._conn.execute_command("FLUSHALL")  # type: ignore[attr-defined]
        hub.backplane._conn.transport.loseConnection()  # type: ignore[attr-defined]
        await wait_until(lambda: hub.epoch != epoch and TwoServers.connected(hub))
        self.assertEqual(hub.history("news"), [])
        await self.close(hub)
        store = open_store(self.path, threads, "unused")
        self.addCleanup(store.close)
        self.assertEqual(store.epoch, hub.epoch)
        self.assertEqual([(ch.name, ch.last_id, ch.messages) for ch in store.load()],
                         [("news", 0, [])])


class TwoServersTests(TwoServers):
    @inlineCallbacks
    def test_every_message_everywhere_same_ids(self) -> Any:
        """A client of either server sees every message published on both, with
        the same ids, once each; the epoch is the same on both."""
        a, b = self.hubs
        self.assertEqual(a.epoch, b.epoch)
        ca, ra = self.client(a)
        cb, rb = self.client(b)
        yield self.subscribe(a, ca, "news")
        yield self.subscribe(b, cb, "news")
        # A second subscription matching the same channel: still once.
        yield self.subscribe(b, cb, "news.>")
        yield self.subscribe(b, cb, "*")
        replies = []
        for i in range(20):
            replies.append((yield (a if i % 2 else b).publish("x", "news", b"m%d" % i)))
        self.assertEqual(replies, list(range(1, 21)))
        yield wait_until(lambda: len(ra.messages) == 20 and len(rb.messages) == 20)
        yield deferLater(reactor, 0.1)
        self.assertEqual(ids(ra), list(range(1, 21)))
        self.assertEqual(ids(rb), list(range(1, 21)))
        self.assertEqual([m.payload for m in ra.messages], [b"m%d" % i for i in range(20)])

    @inlineCallbacks
    def test_wildcards_through_globs(self) -> Any:
        """A wildcard subscription gets what matches it from every server, and
        only that (Redis's glob is wider; the hub's matcher decides)."""
        a, b = self.hubs
        cb, rb = self.client(b)
        yield self.subscribe(b, cb, "news.*")
        yield wait_until(lambda: bool(b.backplane._globs))  # type: ignore[attr-defined]
        yield deferLater(reactor, 0.1)  # PSUBSCRIBE has no reply to wait for here
        yield a.publish("x", "news.uk", b"1")
        yield a.publish("x", "news.uk.london", b"2")
        yield a.publish("x", "sport", b"3")
        yield a.publish("x", "news.fr", b"4")
        yield wait_until(lambda: len(rb.messages) == 2)
        yield deferLater(reactor, 0.1)
        self.assertEqual([(m.channel, m.payload) for m in rb.messages],
                         [("news.uk", b"1"), ("news.fr", b"4")])

    @inlineCallbacks
    def test_resume_on_another_server(self) -> Any:
        """A client moving to a server with no reader of its channel resumes
        with since= from the shared Stream and loses nothing; HISTORY too."""
        a, b = self.hubs
        for i in range(5):
            yield a.publish("x", "log", b"%d" % i)
        cb, rb = self.client(b)
        replay, partial = yield self.subscribe(b, cb, "log", since=2, epoch=a.epoch)
        self.assertEqual(([m.msg_id for m in replay], partial), ([3, 4, 5], False))
        yield a.publish("x", "log", b"5")
        yield wait_until(lambda: ids(rb) == [6])

    @inlineCallbacks
    def test_redis_losing_its_data_without_a_reconnect_is_a_new_epoch(self) -> Any:
        """Redis emptied under a connected server (FLUSHALL, no reconnect),
        twice: each time ids start again at 1 under a new epoch, never the
        epoch that already numbered them (the same id twice in one epoch)."""
        a, _ = self.hubs
        epochs = [a.epoch]
        for channel in ("news", "sport"):
            for n in (1, 2):
                self.assertEqual((yield a.publish("x", channel, b"%d" % n)), n)
            yield a.backplane._conn.execute_command("FLUSHALL")  # type: ignore[attr-defined]
            self.assertEqual((yield a.publish("x", channel, b"after")), 1)
            self.assertNotIn(a.epoch, epochs)
            epochs.append(a.epoch)

    @inlineCallbacks
    def test_redis_emptied_under_connected_servers_reaches_every_reader(self) -> Any:
        """Redis emptied while every server stays connected (FLUSHALL): a
        server that does not publish learns of the new epoch before the new
        id space's first message, so its readers get the messages numbered
        from 1 again instead of losing them as ids already seen."""
        a, b = self.hubs
        cb, rb = self.client(b)
        yield self.subscribe(b, cb, "news")
        for n in (1, 2, 3):
            yield a.publish("x", "news", b"old %d" % n)
        yield wait_until(lambda: len(rb.messages) == 3)
        yield a.backplane._conn.execute_command("FLUSHALL")  # type: ignore[attr-defined]
        self.assertEqual((yield a.publish("x", "news", b"new 1")), 1)
        self.assertEqual((yield a.publish("x", "news", b"new 2")), 2)
        yield wait_until(lambda: len(rb.messages) >= 5)
        self.assertEqual([(m.msg_id, m.payload) for m in rb.messages[3:]],
                         [(1, b"new 1"), (2, b"new 2")])
        self.assertEqual(b.epoch, a.epoch)

    @inlineCallbacks
    def test_redis_down_and_back(self) -> Any:
        """Redis down: a publish is refused at once with unavailable, never +OK;
        subscriptions stay, and messages flow again once Redis is back."""
        a, b = self.hubs
        cb, rb = self.client(b)
        yield self.subscribe(b, cb, "news")
        yield a.publish("x", "news", b"before")
        yield wait_until(lambda: len(rb.messages) == 1)
        old_epoch = a.epoch
        self.redis.stop()
        yield wait_until(lambda: not self.connected(a))
        started = time.monotonic()
        with self.assertRaises(HubError) as caught:
            a.publish("x", "news", b"lost")
        self.assertEqual(caught.exception.code, "unavailable")
        self.assertLess(time.monotonic() - started, 0.5)
        self.redis.start()
        yield wait_until(lambda: all(self.connected(h) for h in self.hubs))
        msg_id = yield a.publish("x", "news", b"after")
        yield wait_until(lambda: [m.payload for m in rb.messages] == [b"before", b"after"])
        # Redis kept nothing: a new epoch, the same on both servers, ids anew.
        self.assertNotEqual(a.epoch, old_epoch)
        self.assertEqual(a.epoch, b.epoch)
        self.assertEqual(msg_id, 1)

    @inlineCallbacks
    def test_redis_not_answering(self) -> Any:
        """A publish Redis does not answer (paused) is refused with unavailable
        once the reply timeout has passed, never +OK; the connection is made
        again, and publishes go through once Redis answers."""
        from txpubsub.backplane import redis as module

        self.patch(module, "REPLY_TIMEOUT", 0.4)
        hub = self.server()
        yield wait_until(lambda: self.connected(hub))
        redis_cli(self.redis, "CLIENT", "PAUSE", "1500", "WRITE")
        started = time.monotonic()
        with self.assertRaises(HubError) as caught:
            yield hub.publish("x", "news", b"stuck")
        self.assertEqual(caught.exception.as_line(),
                         b"-ERR unavailable redis did not take it; not acknowledged\r\n")
        self.assertLess(time.monotonic() - started, 1.4)  # before Redis answers again
        yield wait_until(lambda: self.connected(hub))
        self.assertGreaterEqual((yield hub.publish("x", "news", b"later")), 1)

    @inlineCallbacks
    def test_pipelined_publishes(self) -> Any:
        """Publishes made in one reactor turn go to Redis in one write and are
        answered in order, with consecutive ids; a line client pipelining PUBs
        reads its +OKs in order. When the connection drops with publishes
        waiting, every one of them is refused (-ERR unavailable), none +OK,
        and publishing works again once it is back."""
        from .helpers import Conn

        a, b = self.hubs
        reader, got = self.client(b)
        yield self.subscribe(b, reader, "pipe")
        conn: Any = a.backplane.connection  # type: ignore[attr-defined]
        writes: list[bytes] = []
        write = conn.transport.write

        def counted(data: bytes) -> None:
            writes.append(data)
            write(data)

        self.patch(conn.transport, "write", counted)
        published: list[Any] = [a.publish("x", "pipe", b"%d" % i) for i in range(200)]
        results = yield DeferredList(published, consumeErrors=True)
        self.assertEqual(len(writes), 1)
        self.assertEqual([r for _, r in results], list(range(1, 201)))
        yield wait_until(lambda: len(got.messages) == 200)
        self.assertEqual([(m.msg_id, m.payload) for m in got.messages],
                         [(i + 1, b"%d" % i) for i in range(200)])

        line = Conn(a)
        self.addCleanup(line.lose)
        line.send(b"QUIET off\r\n" + b"".join(b"PUB pipe p%d\r\n" % i for i in range(20)))
        read = [b""]

        def twenty_replies() -> bool:
            read[0] += line.take()
            return read[0].count(b"+OK ") == 20

        yield wait_until(twenty_replies)
        self.assertEqual([x for x in read[0].split(b"\r\n") if x[4:5].isdigit()],
                         [b"+OK %d" % i for i in range(201, 221)])

        waiting: list[Any] = [a.publish("x", "pipe", b"lost %d" % i) for i in range(50)]
        conn.transport.abortConnection()
        yield wait_until(lambda: all(d.called for d in waiting), timeout=5)
        for d in waiting:
            error = yield self.assertFailure(d, HubError)
            self.assertEqual(error.as_line(),
                             b"-ERR unavailable redis did not take it; not acknowledged\r\n")
        with self.assertRaises(HubError) as caught:
            a.publish("x", "pipe", b"while away")
        self.assertEqual(caught.exception.code, "unavailable")
        yield wait_until(lambda: self.connected(a))
        self.assertGreater((yield a.publish("x", "pipe", b"back")), 220)

    @inlineCallbacks
    def test_line_clients(self) -> Any:
        """What line clients read: +OK with the shared id, HISTORY and SUB since=
        on a server where nobody read the channel, -ERR unavailable with Redis
        down, and no traceback anywhere."""
        from .helpers import Conn

        a, b = self.hubs
        alice, bob = Conn(a), Conn(b)
        for conn in (alice, bob):
            self.addCleanup(conn.proto.connectionLost, Failure(ConnectionDone()))
        read = {alice: b"", bob: b""}

        def until(conn: Conn, ending: bytes) -> Deferred[None]:
            def check() -> bool:
                read[conn] += conn.take()
                return read[conn].endswith(ending)
            return wait_until(check, timeout=5)

        # Each server takes its block of client numbers from Redis, whichever
        # asks first: alice's id is whatever her server gave her.
        assert alice.proto.session.client is not None
        me = alice.proto.session.client.client_id.encode()
        alice.proto.dataReceived(b"PUB log one\r\nPUB log two\r\nPUB log three\r\n")
        yield until(alice, b"+OK 3\r\n")
        self.assertEqual(read[alice], b"+OK 1\r\n+OK 2\r\n+OK 3\r\n")
        bob.proto.dataReceived(b"HISTORY log 2\r\nSUB log since=1\r\n")
        yield until(bob, b"+OK subscribed log 2\r\n")
        replay = b"MSG log 2 %s two\r\nMSG log 3 %s three\r\n" % (me, me)
        self.assertEqual(read[bob], replay + b"+OK 2\r\n" + replay + b"+OK subscribed log 2\r\n")
        alice.proto.dataReceived(b"PUB log four\r\n")
        yield until(bob, b"MSG log 4 %s four\r\n" % me)
        yield until(alice, b"+OK 4\r\n")
        self.redis.stop()
        yield wait_until(lambda: not self.connected(a))
        self.assertEqual(alice.send(b"PUB log five\r\n"),
                         b"-ERR unavailable redis cannot be reached; not published\r\n")


class FakeRedis:
    """Both connections of a RedisBackplane, answering from memory."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.streams: dict[str, list[Any]] = {}
        self.unanswered: dict[str, list[Deferred[Any]]] = {}  # by command

    def _answer(self, result: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        d.callback(result)
        return d

    def whenDisconnected(self) -> Deferred[Any]:
        self.lost: Deferred[Any] = Deferred()
        return self.lost

    def subscribe(self, channel: str) -> Deferred[Any]:
        self.sent.append(("SUBSCRIBE", channel))
        return self._answer(None)

    def unsubscribe(self, channel: str) -> Deferred[Any]:
        self.sent.append(("UNSUBSCRIBE", channel))
        return self._answer(None)

    def psubscribe(self, glob: str) -> Deferred[Any]:
        self.sent.append(("PSUBSCRIBE", glob))
        return self._answer(None)

    def punsubscribe(self, glob: str) -> Deferred[Any]:
        self.sent.append(("PUNSUBSCRIBE", glob))
        return self._answer(None)

    def execute_command(self, *args: Any) -> Deferred[Any]:
        from txpubsub.backplane.scripts import CHANNEL_SCRIPT

        self.sent.append(args)
        if args[:2] == ("EVAL", CHANNEL_SCRIPT):
            # What Redis holds of a channel: no settings, its last id, its entries.
            entries = self.streams.get(args[5], [])
            last = entries[-1][0].split(b"-")[0] if entries else b"0"
            return self._answer([None, last, entries])
        d: Deferred[Any] = Deferred()  # answered by the test, if at all
        self.unanswered.setdefault(args[0], []).append(d)
        return d

    def send(self, command: bytes, answer: Callable[[Any, Any], Any] | None = None,
             arg: Any = None) -> Deferred[Any]:
        """A command already in RESP (the publish script's), its reply turned
        into its result by ``answer`` as Commands does."""
        name = command.split(b"\r\n")[2].decode()
        self.sent.append((name,))
        d: Deferred[Any] = Deferred()
        self.unanswered.setdefault(name, []).append(d)
        if answer is None:
            return d
        result: Deferred[Any] = Deferred()

        def answered(reply: Any) -> None:
            try:
                value = answer(reply.value if isinstance(reply, Failure) else reply, arg)
            except Exception:
                result.errback()
            else:
                result.callback(value)

        d.addBoth(answered)
        return result


class InterestTests(SynchronousTestCase):
    def setUp(self) -> None:
        from txpubsub.backplane.redis import RedisBackplane

        from .helpers import make_hub

        self.hub = make_hub()
        self.backplane = RedisBackplane(self.hub, RedisAddress.parse("redis://127.0.0.1:1"),
                                        clock=self.hub.clock)
        self.hub.set_backplane(self.backplane)
        self.redis = FakeRedis()
        self.backplane._conn = self.backplane._listener = self.redis
        self.backplane._publish_parts()  # as once connected

    def settled(self, result: Subscribed) -> tuple[list[Message], bool]:
        return self.successResultOf(result) if isinstance(result, Deferred) else result

    def test_once_per_channel_and_glob(self) -> None:
        """Many local subscribers of a channel or of patterns with the same glob
        are one Redis subscription, dropped with the last of them."""
        readers = [Recorder() for _ in range(3)]
        clients = [self.hub.attach(r) for r in readers]
        for c in clients:
            self.settled(self.hub.subscribe(c, "news"))
            self.hub.subscribe(c, "news.*")
            self.hub.subscribe(c, "news.>")
        self.assertEqual([s for s in self.redis.sent if "SUBSCRIBE" in s[0]], [
            ("SUBSCRIBE", "txpubsub:m:news"), ("PSUBSCRIBE", "txpubsub:m:news.*")])
        self.hub.clock.advance(0)  # type: ignore[attr-defined]
        self.redis.sent.clear()
        for c in clients:
            self.hub.detach(c, CloseReason.QUIT)
        self.assertEqual(sorted(s for s in self.redis.sent if "SUBSCRIBE" in s[0]), [
            ("PUNSUBSCRIBE", "txpubsub:m:news.*"), ("UNSUBSCRIBE", "txpubsub:m:news")])

    def test_first_subscriber_waits_for_the_stream(self) -> None:
        """The first SUB since= of a channel replays what the Stream holds
        beyond this server's copy; what pub/sub brought meanwhile comes once."""
        self.redis.streams["txpubsub:s:log"] = [
            [b"%d-0" % i, [b"s", b"x", b"t", b"1.5", b"p", b"m%d" % i]] for i in (1, 2, 3)]
        client = self.hub.attach(Recorder())
        replay, partial = self.settled(self.hub.subscribe(client, "log", since=1))
        self.assertEqual(([m.payload for m in replay], partial), ([b"m2", b"m3"], False))
        self.backplane.received(b"txpubsub:m:log", b"3 1.5 100 x m3")  # a duplicate
        self.backplane.received(b"txpubsub:m:log", b"4 1.6 100 y m 4")
        reader: Any = client.session
        self.assertEqual([(m.msg_id, m.sender, m.payload) for m in reader.messages],
                         [(4, "y", b"m 4")])

    def test_glob_wider_than_pattern(self) -> None:
        """What a glob brings that no local pattern matches makes no channel here."""
        client = self.hub.attach(Recorder())
        self.hub.subscribe(client, "news.*")
        self.backplane.received(b"txpubsub:m:news.uk.london", b"1 1.5 100 x deep")
        self.backplane.received(b"txpubsub:m:news.uk", b"1 1.5 100 x shallow")
        self.assertIsNone(self.hub.channel("news.uk.london"))
        reader: Any = client.session
        self.assertEqual([m.payload for m in reader.messages], [b"shallow"])

    def test_unavailable(self) -> None:
        """With Redis away, a publish and a first SUB are refused, not queued."""
        self.backplane._conn = self.backplane._listener = None
        client = self.hub.attach(Recorder())
        for call in (lambda: self.hub.publish("x", "news", b"1"),
                     lambda: self.hub.subscribe(client, "news")):
            with self.assertRaises(HubError) as caught:
                call()
            self.assertEqual(caught.exception.code, "unavailable")


class FakeReadBack:
    """The backplane a MissedReader reads back for, with Redis answering from memory."""

    def __init__(self) -> None:
        from txpubsub.backplane.scripts import MISSED_SCRIPT

        self.script = MISSED_SCRIPT
        self.connection: Any = self
        self.hub = self
        self.delivered: list[tuple[str, int]] = []
        self.done: list[Any] = []
        self.streams: dict[str, list[Any]] = {}
        self.answers: list[Deferred[Any]] = []

    def execute_command(self, *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        if args[0] == "SCAN":
            d.callback([b"0", [b"txpubsub:ch:" + name.encode() for name in self.streams]])
        else:  # the read-back script: answered when the test says
            assert args[:2] == ("EVAL", self.script)
            names = [key[len("txpubsub:s:"):] for key in args[3:3 + args[2]:2]]
            self.answers.append(d)
            d.addCallback(lambda _: [[b"5", self.streams[n]] for n in names])
        return d

    def channel(self, name: str) -> None:
        return None

    def reads_through_globs(self, channel: str) -> bool:
        return True

    def arrive_all(self, channel: str, keep: int | None, entries: list[Any]) -> None:
        self.delivered += [(channel, int(e[0].split(b"-")[0])) for e in entries]

    def arrive(self, msg: Message, keep: int) -> None:
        self.delivered.append((msg.channel, msg.msg_id))

    def missed_done(self, reader: Any) -> None:
        self.done.append(reader)


class MissedReaderTests(SynchronousTestCase):
    def setUp(self) -> None:
        from txpubsub.backplane.missed import MissedReader

        self.backplane = FakeReadBack()
        self.backplane.streams["news.uk"] = [
            [b"%d-0" % i, [b"s", b"x", b"t", b"2.0", b"p", b"m"]] for i in (4, 5)]
        self.reader = MissedReader(self.backplane, 1.0, ["txpubsub:m:news.*"])  # type: ignore[arg-type]

    def live(self, channel: str, msg_id: int, keep: int = 5) -> None:
        self.reader.hold(Message(channel, msg_id, "x", b"m", 3.0), keep)

    def test_live_messages_follow_what_was_read_back(self) -> None:
        """Live messages held while reading back come after the Stream's, and
        once a channel is read back its live messages pass at once."""
        self.reader.subscribed(None)
        self.live("news.uk", 6)
        self.assertEqual(self.backplane.delivered, [])
        self.backplane.answers.pop().callback(None)
        self.live("news.uk", 7)
        self.assertEqual(self.backplane.delivered,
                         [("news.uk", 4), ("news.uk", 5), ("news.uk", 6), ("news.uk", 7)])
        self.assertEqual(self.backplane.done, [self.reader])

    def test_interrupted(self) -> None:
        """Redis going away again meanwhile: held messages a Stream keeps wait
        for the next reading back; those of channels that keep nothing go on."""
        self.reader.subscribed(None)
        self.live("news.uk", 6)
        self.live("news.fr", 9, keep=0)
        self.reader.interrupt()
        self.assertEqual(self.backplane.delivered, [("news.fr", 9)])
        self.backplane.answers.pop().callback(None)  # too late: ignored
        self.assertEqual(self.backplane.delivered, [("news.fr", 9)])

    def test_too_much_held(self) -> None:
        """Past MAX_HELD live messages the reader gives up, delivers what it
        held, and logs that some may be missing."""
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher

        from txpubsub.backplane import missed

        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.patch(missed, "MAX_HELD", 2)
        self.reader.subscribed(None)
        for msg_id in (6, 7, 8):
            self.live("news.uk", msg_id)
        self.assertEqual(self.backplane.delivered, [("news.uk", 6), ("news.uk", 7),
                                                    ("news.uk", 8)])
        self.assertIn("some of it may be missing",
                      " ".join(e["log_format"] for e in logged))


class MeasureTests(InterestTests):
    """What --http's /metrics and /readyz read from the backplane."""

    def test_publish_round_trip(self) -> None:
        """Each publish's round trip, from its script sent to the read that
        brought its answer, is in publish_seconds; waiting ones in pending."""
        clock: Any = self.hub.clock
        first: Any = self.hub.publish("x", "news", b"1")
        clock.advance(0.003)
        second: Any = self.hub.publish("x", "news", b"2")
        self.assertEqual(self.backplane.pending, 2)
        clock.advance(0.0004)
        self.backplane.replies_arrived()  # one read brings both answers
        for d, msg_id in zip(self.redis.unanswered["EVALSHA"], (1, 2)):
            d.callback([msg_id, b"testepoch"])
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), (1, 2))
        histogram = self.backplane.publish_seconds
        self.assertEqual((histogram.count, self.backplane.pending), (2, 0))
        self.assertAlmostEqual(histogram.sum, 0.0034 + 0.0004)
        buckets = dict(histogram.cumulative())
        self.assertEqual((buckets["0.00025"], buckets["0.0005"], buckets["0.0025"],
                          buckets["+Inf"]), (0, 1, 1, 2))
        self.assertEqual(buckets["0.005"], 2)

    def test_publish_errors(self) -> None:
        """A publish Redis fails, and one refused while it is away, are counted."""
        failed: Any = self.hub.publish("x", "news", b"1")
        self.redis.unanswered["EVALSHA"][0].errback(ConnectionError("Lost connection"))
        self.assertEqual(self.failureResultOf(failed, HubError).value.code, "unavailable")
        self.backplane._conn = None
        self.assertRaises(HubError, self.hub.publish, "x", "news", b"2")
        self.assertEqual((self.backplane.publish_errors, self.backplane.publish_seconds.count,
                          self.backplane.pending), (2, 0, 0))

    def test_ping_and_connection_state(self) -> None:
        """ping() asks Redis while connected and fails at once, saying where
        and why, while a connection is down; losses are counted."""
        d = self.backplane.ping()
        self.assertNoResult(d)
        self.redis.unanswered["PING"][0].callback("PONG")
        self.assertIsNone(self.successResultOf(d))
        self.assertTrue(self.backplane.connected)
        self.backplane._listener_lost(self.redis)
        self.assertEqual((self.backplane.connected, self.backplane.connection_losses),
                         (False, 1))
        self.assertEqual(str(self.failureResultOf(self.backplane.ping()).value),
                         "not connected to 127.0.0.1:1")
        self.backplane.last_error = "Connection refused"
        self.assertEqual(str(self.failureResultOf(self.backplane.ping()).value),
                         "not connected to 127.0.0.1:1 (Connection refused)")
        waiting = self.backplane.when_connected()
        self.assertNoResult(waiting)
        self.backplane._listening(None, FakeRedis())
        self.successResultOf(waiting)
        self.successResultOf(self.backplane.when_connected())

    def test_where_hides_the_password(self) -> None:
        self.assertEqual(RedisAddress.parse("redis://:pw@h:6380/2").where, "h:6380/2")
        self.assertEqual(RedisAddress.parse("redis://[::1]").where, "[::1]:6379")
        self.assertEqual(RedisAddress.parse("unix:///run/r.sock?password=pw").where,
                         "/run/r.sock")


class NamesTests(TwoServers):
    """Names, client ids and direct messages across servers."""

    @inlineCallbacks
    def test_names_ids_and_direct_messages(self) -> Any:
        """A name is unique across servers, a client id too, and a direct message
        to a name or id held on another server arrives there, numbered in its
        inbox; a name is free again once its holder leaves."""
        a, b = self.hubs
        ca, ra = self.client(a)
        cb, rb = self.client(b)
        self.assertNotEqual(ca.client_id, cb.client_id)
        self.assertEqual((yield a.set_name(ca, "alice")), "alice")
        with self.assertRaises(HubError) as caught:
            yield b.set_name(cb, "alice")
        self.assertEqual(caught.exception.code, "name-taken")
        yield b.set_name(cb, "bob")
        self.assertEqual((yield a.publish("alice", "@bob", b"hi bob")), 1)
        self.assertEqual((yield a.publish("alice", "@" + cb.client_id, b"again")), 2)
        self.assertEqual((yield b.publish("bob", "@alice", b"hi alice")), 1)
        yield wait_until(lambda: len(rb.messages) == 2 and len(ra.messages) == 1)
        self.assertEqual([(m.channel, m.msg_id, m.sender, m.payload) for m in rb.messages],
                         [("@bob", 1, "alice", b"hi bob"), ("@bob", 2, "alice", b"again")])
        with self.assertRaises(HubError) as caught:
            yield a.publish("alice", "@nobody", b"?")
        self.assertEqual(caught.exception.code, "no-such-client")
        a.detach(ca, CloseReason.QUIT)
        yield wait_until(lambda: not self.redis_get("txpubsub:name:alice"))
        self.assertEqual((yield b.set_name(cb, "alice")), "alice")

    @inlineCallbacks
    def test_direct_refusals_hold_on_every_server(self) -> Any:
        """alice's DIRECT off, then DIRECT from bob, hold for senders on the
        other server too (Redis's script checks them); the server's own voice
        gets through; once she leaves, her DIRECT key goes with her."""
        a, b = self.hubs
        ca, ra = self.client(a)
        cb, _ = self.client(b)
        cc, _ = self.client(b)
        yield a.set_name(ca, "alice")
        yield b.set_name(cb, "bob")
        yield a.take_direct(ca, [])
        self.assertEqual(self.redis_get("txpubsub:direct:" + ca.client_id), b"-")
        with self.assertRaises(HubError) as caught:
            yield b.publish(cb.sender, "@alice", b"hi", cb)
        self.assertEqual((caught.exception.code, caught.exception.text),
                         ("refused", "alice takes no direct messages"))
        self.assertEqual((yield b.publish("$admin", "@alice", b"notice")), 1)
        yield a.take_direct(ca, ["bob"])
        self.assertEqual((yield b.publish(cb.sender, "@alice", b"from bob", cb)), 2)
        with self.assertRaises(HubError) as caught:
            yield b.publish(cc.sender, "@" + ca.client_id, b"from c", cc)
        self.assertEqual(caught.exception.code, "refused")
        yield wait_until(lambda: len(ra.messages) == 2)
        self.assertEqual([m.payload for m in ra.messages], [b"notice", b"from bob"])
        # Kept alive by the heartbeat, as names are (here: lost, as after a
        # Redis outage longer than its TTL, and put back).
        subprocess.run(["redis-cli", "-p", str(self.redis.port), "DEL",
                        "txpubsub:direct:" + ca.client_id], capture_output=True, check=True)
        a.backplane._refresh()  # type: ignore[attr-defined]
        yield wait_until(lambda: self.redis_get("txpubsub:direct:" + ca.client_id) == b"bob")
        a.detach(ca, CloseReason.QUIT)
        yield wait_until(lambda: not self.redis_get("txpubsub:direct:" + ca.client_id))

    @inlineCallbacks
    def test_who_lists_every_server(self) -> Any:
        """WHO lists the clients of every server, by id, with their names."""
        a, b = self.hubs
        ca, _ = self.client(a)
        cb, _ = self.client(b)
        yield b.set_name(cb, "bob")
        yield deferLater(reactor, 0.05)  # the joins are announced a turn later
        everyone = yield a.everyone()
        self.assertEqual(sorted((m.client_id, m.name) for m in everyone),
                         sorted([(ca.client_id, None), (cb.client_id, "bob")]))
        b.detach(cb, CloseReason.QUIT)
        for _ in range(100):
            everyone = yield a.everyone()
            if len(everyone) == 1:
                break
            yield deferLater(reactor, 0.01)
        self.assertEqual([m.client_id for m in everyone], [ca.client_id])

    def redis_get(self, key: str) -> bytes:
        return subprocess.run(["redis-cli", "-p", str(self.redis.port), "GET", key],
                              capture_output=True, check=True).stdout.strip()

    @inlineCallbacks
    def test_direct_message_to_a_killed_servers_client_is_refused(self) -> Any:
        """A client of a server killed with SIGKILL keeps its name and id in
        Redis for up to the TTL; a direct message to it then reaches nobody,
        so it gets no-such-client (as KICK does), never a +OK."""
        a, _ = self.hubs
        for key in ("txpubsub:name:ghost", "txpubsub:client:c999999"):
            subprocess.run(["redis-cli", "-p", str(self.redis.port), "SET", key,
                            "killedserver c999999", "EX", "30"], capture_output=True, check=True)
        for recipient in ("@ghost", "@c999999"):
            with self.assertRaises(HubError) as caught:
                yield a.publish("alice", recipient, b"are you there?")
            self.assertEqual(caught.exception.code, "no-such-client")

    @inlineCallbacks
    def test_dead_server_names_freed(self) -> Any:
        """A server that stops refreshing its names (killed) loses them within
        the TTL: its keys carry one."""
        a, _ = self.hubs
        ca, _ = self.client(a)
        yield a.set_name(ca, "carol")
        ttl = subprocess.run(["redis-cli", "-p", str(self.redis.port), "TTL",
                              "txpubsub:name:carol"], capture_output=True, check=True).stdout
        self.assertTrue(0 < int(ttl) <= 30, ttl)


class ReconnectTests(TwoServers):
    @inlineCallbacks
    def test_wildcard_only_channels_caught_up(self) -> Any:
        """A server whose only interest is a wildcard subscription gets, once its
        pub/sub connection is back, what was published meanwhile on channels
        its pattern matches, known here (news.uk) or never seen here
        (news.fr): each once, in id order per channel, before what comes
        live; nothing its pattern does not match."""
        a, b = self.hubs
        reader, session = self.client(b)
        yield self.subscribe(b, reader, "news.*")
        yield wait_until(lambda: redis_cli(self.redis, "PUBSUB", "NUMPAT") == "1")
        yield a.publish("x", "news.uk", b"1")
        yield wait_until(lambda: len(session.messages) == 1)
        backplane: Any = b.backplane
        yield backplane._pubsub.stopService()
        self.assertFalse(self.connected(b))
        for channel, payload in [("news.uk", b"2"), ("news.fr", b"1"), ("sport", b"x"),
                                 ("news.uk", b"3"), ("news.uk.london", b"deep")]:
            yield a.publish("x", channel, payload)
        backplane._pubsub.startService()
        yield wait_until(lambda: self.connected(b))
        yield a.publish("x", "news.fr", b"2")  # live, maybe while it reads back
        yield wait_until(lambda: len(session.messages) == 5)
        yield deferLater(reactor, 0.1)  # nothing more comes
        got = [(m.channel, m.msg_id, m.payload) for m in session.messages]
        self.assertEqual(sorted(got), [("news.fr", 1, b"1"), ("news.fr", 2, b"2"),
                                       ("news.uk", 1, b"1"), ("news.uk", 2, b"2"),
                                       ("news.uk", 3, b"3")])
        for channel in ("news.fr", "news.uk"):
            per_channel = [m.msg_id for m in session.messages if m.channel == channel]
            self.assertEqual(per_channel, sorted(per_channel))
        self.assertIsNone(backplane._missed)

    async def test_certificate_names_claimed_in_redis(self) -> None:
        """A name from a TLS certificate is claimed across servers like NAME: a
        client of another server that took it with NAME is kicked, and a
        second certificate client with that name, on any server, is refused."""
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS

        from txpubsub.doors.line import LineDoorFactory
        from txpubsub.doors.session import DoorSettings
        from txpubsub.server.listeners import ListenerService

        from .netclient import WAIT, LineClient, connect, port_of, serve
        from .test_tls import Certs

        certs = Certs()
        a, b = self.hubs

        def listen(hub: Hub, description: str, settings: DoorSettings) -> int:
            service = ListenerService(reactor, description,
                                      LineDoorFactory(hub, description, settings))
            service.startService()
            self.addCleanup(service.stopService)
            return port_of(service)

        def mtls(hub: Hub) -> int:
            return listen(hub, f"mtls:0:interface=127.0.0.1:privateKey={certs.key_path}"
                               f":certKey={certs.cert_path}:caCerts={certs.ca_path}",
                          DoorSettings(tls_name_from="cn"))

        def closing(client: LineClient) -> None:
            def close() -> Deferred[None]:
                if not client.closed.called:
                    client.transport.abortConnection()
                return client.closed
            self.addCleanup(close)

        async def as_alice(port: int) -> LineClient:
            client = LineClient()
            options = certs.client_options(certs.client("x", common_name="alice"))
            endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", port))
            await connectProtocol(endpoint, client).addTimeout(WAIT, reactor)
            closing(client)
            return client

        plain = f"tcp:127.0.0.1:{listen(a, 'tcp:0:interface=127.0.0.1', DoorSettings())}"
        squatter = await connect(plain)
        closing(squatter)
        await squatter.ask(b"NAME alice", b"+OK")
        alice = await as_alice(mtls(b))
        await alice.wait(lambda lines: bool(lines))
        self.assertEqual(json.loads(alice.lines[0][5:])["name"], "alice")
        await squatter.closed.addTimeout(WAIT, reactor)
        self.assertEqual(squatter.lines[-1], b"BYE kicked that name belongs to a certificate")
        self.assertTrue(redis_cli(self.redis, "GET", "txpubsub:name:alice").endswith(" cert"))
        second = await as_alice(mtls(a))
        await second.closed.addTimeout(WAIT, reactor)
        self.assertEqual(second.lines, [b"BYE auth-failed alice is connected already"])
        # A server that has seen no certificate called alice: taken in Redis.
        fresh = self.server()
        await wait_until(lambda: self.connected(fresh))
        third = await connect(serve(self, fresh)[1])
        closing(third)
        self.assertEqual(await third.ask(b"NAME alice", b"-ERR"),
                         b"-ERR name-taken alice is taken by another client")
        self.assertEqual(await third.ask(b"PUB @alice hello", b"+OK"), b"+OK 1")
        await alice.wait(lambda lines: b"MSG @alice 1 " in lines[-1])
        await wait_until(lambda: len(a.clients()) == 0)  # the refused ones are gone


async def start_twistd_with_redis(case: TestCase, url: str,
                                  timeout: float = 30) -> tuple[Any, Any, int]:
    """A real `twistd -n txpubsub --redis URL` on a free 127.0.0.1 port, killed
    at the test's end: (its ServerProcess, its process transport, its port),
    once it has said it reached Redis."""
    from .test_twistd import ServerProcess, twistd

    server = ServerProcess()
    process = reactor.spawnProcess(
        server, twistd()[0],
        [*twistd(), "-n", "--pidfile=", "txpubsub", "--port", "tcp:0:interface=127.0.0.1",
         "--admin", "none", "--redis", url],
        env=os.environ.copy(), path=tempfile.mkdtemp())

    def stop() -> Deferred[object]:
        if not server.ended.called:
            process.signalProcess("KILL")
        return server.ended

    case.addCleanup(stop)
    port = await server.listening.addTimeout(timeout, reactor)
    await server.wait_for(b"redis: connected")
    return server, process, port


class TwistdClusterTests(TestCase):
    """Real `twistd -n txpubsub --redis` servers, as a user starts them."""

    timeout = 60

    async def start(self, url: str) -> tuple[Any, int]:
        server, _, port = await start_twistd_with_redis(self, url)
        return server, port

    async def test_two_servers(self) -> None:
        """A client of either server sees every message published on both, with
        the same ids and epoch; names and direct messages cross; with Redis
        down a publish is refused, and service comes back with Redis."""
        from .netclient import connect

        redis = RedisProcess()
        self.addCleanup(redis.stop)
        (server_a, port_a), (server_b, port_b) = [await self.start(redis.url)
                                                  for _ in range(2)]
        a = await connect(f"tcp:127.0.0.1:{port_a}")
        b = await connect(f"tcp:127.0.0.1:{port_b}")
        for client in (a, b):
            self.addCleanup(client.transport.abortConnection)
        epochs = [json.loads(c.lines[0].split(b" ", 1)[1])["epoch"] for c in (a, b)]
        self.assertEqual(epochs[0], epochs[1])
        await a.ask(b"SUB news", b"+OK subscribed")
        await b.ask(b"SUB news", b"+OK subscribed")
        self.assertEqual(await a.ask(b"PUB news from-a", b"+OK"), b"+OK 1")
        self.assertEqual(await b.ask(b"PUB news from-b", b"+OK"), b"+OK 2")
        for client in (a, b):
            await client.wait(lambda lines: b"MSG news 2" in b"\n".join(lines))
            self.assertEqual([x for x in client.lines if x.startswith(b"MSG")],
                             [x for x in a.lines if x.startswith(b"MSG")])
        await a.ask(b"NAME alice", b"+OK")
        self.assertEqual(await b.ask(b"NAME alice", b"-ERR"),
                         b"-ERR name-taken alice is taken by another client")
        await b.ask(b"NAME bob", b"+OK")
        self.assertEqual(await a.ask(b"PUB @bob hello", b"+OK"), b"+OK 1")
        await b.wait(lambda lines: b"MSG @bob 1 alice hello" in b"\n".join(lines))
        redis.stop()
        await deferLater(reactor, 0.3)
        self.assertEqual(await a.ask(b"PUB news lost", b"-ERR"),
                         b"-ERR unavailable redis cannot be reached; not published")
        redis.start()
        for _ in range(100):
            reply = await a.ask(b"PUB news back", b"")
            if reply.startswith(b"+OK"):
                break
            await deferLater(reactor, 0.1)
        await b.wait(lambda lines: b"back" in b"\n".join(lines))
        for server in (server_a, server_b):
            self.assertNotIn(b"Traceback", server.output)


class RepliesTests(SynchronousTestCase):
    def test_every_chunk_size(self) -> None:
        """Replies are read whole however the bytes are split, in one pass."""
        from txpubsub.backplane.connection import _FastReplies

        class Replies(_FastReplies):
            def __init__(self) -> None:
                self.messages: list[Any] = []

            def replyReceived(self, reply: Any) -> None:
                self.messages.append(reply)

        wire = (b"+OK\r\n:42\r\n$-1\r\n$5\r\nhe\r\no\r\n-ERR no\r\n*0\r\n"
                b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$0\r\n\r\n"
                b"*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\np\r\n$2\r\nab\r\n:7\r\n")
        for size in range(1, len(wire) + 1):
            replies = Replies()
            for i in range(0, len(wire), size):
                replies.dataReceived(wire[i:i + size])
            got = replies.messages
            self.assertEqual(got[:4], ["OK", 42, None, b"he\r\no"], size)
            self.assertEqual(str(got[4]), "no")
            self.assertEqual(got[5:], [[], [b"message", b"c", b""],
                                       [[b"1-0", [b"p", b"ab"]], 7]])

    def test_pub_sub_messages(self) -> None:
        """The pub/sub connection hands on messages, pattern messages and
        confirmations alike however the bytes are split."""
        from txpubsub.backplane.connection import Listener

        got: list[Any] = []

        class Backplane:
            def received(self, channel: bytes, data: bytes) -> None:
                got.append((channel, data))

        class Factory:
            backplane = Backplane()

        wire = (b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
                b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\nx\r\ny \r\n"
                b"*4\r\n$8\r\npmessage\r\n$2\r\nb*\r\n$2\r\nbc\r\n$0\r\n\r\n"
                b"*3\r\n$7\r\nmessage\r\n$10\r\nmessage\r\n$\r\n$3\r\n*3\r\r\n")
        for size in range(1, len(wire) + 1):
            del got[:]
            listener = Listener(None, convertNumbers=False)
            listener.factory = Factory()
            for i in range(0, len(wire), size):
                listener.dataReceived(wire[i:i + size])
            self.assertEqual(got, [(b"a", b"x\r\ny "), (b"bc", b""),
                                   (b"message\r\n$", b"*3\r")], size)

    def test_one_write_per_turn_replies_in_order(self) -> None:
        """The command connection writes the commands of one reactor turn at
        its end, in one write; replies fire them in order (a publish's through
        its answer function); a lost connection fails every command waiting,
        answered ones included, and a command not yet written is not."""
        from twisted.internet.task import Clock
        from twisted.internet.testing import StringTransport

        from txpubsub.backplane.connection import Commands

        clock = Clock()

        class Backplane:
            def replies_arrived(self) -> None:
                pass

        class Factory:
            backplane = Backplane()

        Factory.clock = clock  # type: ignore[attr-defined]
        writes: list[bytes] = []

        class Transport(StringTransport):
            def write(self, data: bytes) -> None:
                writes.append(data)
                super().write(data)

        def answer(reply: Any, arg: str) -> Any:
            if isinstance(reply, Exception):
                raise HubError("unavailable", f"{arg}: {reply}")
            return (arg, reply)

        conn = Commands(None, convertNumbers=False)
        conn.factory = Factory()
        conn.makeConnection(Transport())
        got = conn.execute_command("GET", "k")
        first = conn.send(b"*1\r\n$4\r\nPING\r\n", answer, "first")
        second = conn.send(b"*1\r\n$4\r\nPING\r\n", answer, "second")
        self.assertEqual((writes, conn.waiting), ([], 3))
        clock.advance(0)
        self.assertEqual(writes, [b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
                                  + b"*1\r\n$4\r\nPING\r\n" * 2])
        conn.dataReceived(b"$1\r\nv\r\n*2\r\n:7\r\n$5\r\nepoch\r\n*2\r\n:8\r\n$-1\r\n")
        self.assertEqual(self.successResultOf(got), b"v")
        self.assertEqual(self.successResultOf(first), ("first", [7, b"epoch"]))
        self.assertEqual(self.successResultOf(second), ("second", [8, None]))
        third = conn.send(b"*1\r\n$4\r\nPING\r\n", answer, "third")
        fourth = conn.execute_command("PING")
        conn.connectionLost(Failure(ConnectionDone()))
        clock.advance(0)
        self.assertEqual(len(writes), 1)  # not written after the loss
        self.assertEqual(self.failureResultOf(third, HubError).value.as_line(),
                         b"-ERR unavailable third: Lost connection\r\n")
        self.failureResultOf(fourth)
        self.assertEqual(conn.waiting, 0)

    def test_listener_reads_what_came_meanwhile(self) -> None:
        """The pub/sub connection reads what is already waiting on its socket
        in the same reactor turn (up to LISTENER_TURN bytes), and never waits
        for more: a partial message stays for the next read."""
        from twisted.internet.testing import StringTransport

        from txpubsub.backplane import connection

        got: list[bytes] = []

        class Backplane:
            def received(self, channel: bytes, data: bytes) -> None:
                got.append(data)

        class Factory:
            backplane = Backplane()

        def message(i: int) -> bytes:
            return b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$4\r\n%04d\r\n" % i

        ours, redis = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(redis.close)
        ours.setblocking(False)
        listener = connection.Listener(None, convertNumbers=False)
        listener.factory = Factory()
        listener.makeConnection(StringTransport())
        listener._socket = ours
        redis.sendall(b"".join(message(i) for i in range(1, 100)) + message(100)[:10])
        listener.dataReceived(message(0))  # what the reactor read
        self.assertEqual(got, [b"%04d" % i for i in range(100)])
        listener.dataReceived(message(100)[10:])
        self.assertEqual(got[-1], b"0100")
        # At most LISTENER_TURN bytes a turn: the rest waits for the next read.
        del got[:]
        self.patch(connection, "LISTENER_TURN", len(message(0)) * 3)
        redis.sendall(b"".join(message(i) for i in range(1, 10)))
        listener.dataReceived(message(0))
        counts = [len(got)]
        redis.close()  # the end is left for Twisted's own read
        for _ in range(3):
            listener.dataReceived(b"")
            counts.append(len(got))
        self.assertEqual(counts, [3, 6, 9, 10])

    def test_commands(self) -> None:
        """Commands go out as RESP arrays of bulk strings."""
        from txpubsub.backplane.connection import _command

        self.assertEqual(_command("SET", b"k\r\n", 5, 1.5),
                         b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$1\r\n5\r\n$8\r\n1.500000\r\n")
