"""--http: /metrics, /healthz and /readyz over real sockets on 127.0.0.1."""
from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.server import Site

from txpubsub.core.hub import Hub
from txpubsub.core.store import MemoryStore
from txpubsub.server.http import PING_TIMEOUT, Readiness, ops_site
from txpubsub.server.lifecycle import Lifecycle
from txpubsub.server.listeners import ListenerService
from txpubsub.server.metrics import COUNTERS, GAUGES
from txpubsub.server.tap import Options, makeService

from .netclient import WAIT, LineClient, connect, port_of


async def get(port: int, path: str) -> tuple[int, str]:
    """GET http://127.0.0.1:port/path: (status, body)."""
    response = await Agent(reactor).request(
        b"GET", f"http://127.0.0.1:{port}{path}".encode()).addTimeout(WAIT, reactor)
    with warnings.catch_warnings():  # Agent's own transport lacks abortConnection
        warnings.simplefilter("ignore", DeprecationWarning)
        reading = readBody(response)
    body = await reading.addTimeout(WAIT, reactor)
    return response.code, body.decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a text exposition, parsed by prometheus_client's own parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class MetricsTests(TestCase):
    timeout = 60

    async def start(self, *arguments: str) -> tuple[Hub, MultiService]:
        """A whole server (makeService) with --http, and ``arguments``."""
        self.directory = directory = tempfile.mkdtemp()
        self.admin = os.path.join(directory, "admin.sock")
        options = Options()
        options.parseOptions(["--port", "tcp:0:interface=127.0.0.1",
                              "--http", "tcp:0:interface=127.0.0.1", "--admin", self.admin,
                              *arguments])
        top = makeService(options, reactor)
        assert isinstance(top, MultiService)
        for service in top:
            if isinstance(service, Lifecycle):
                service.handle_signals = False  # not this test process's signals
        top.privilegedStartService()
        top.startService()
        self.addCleanup(top.stopService)
        listeners = [s for s in top if isinstance(s, ListenerService)]
        self.clients = f"tcp:127.0.0.1:{port_of(listeners[0])}"
        self.http = port_of(next(s for s in listeners if isinstance(s.factory, Site)))
        return next(s for s in top if isinstance(s, Hub)), top

    async def admin_stats(self) -> dict[str, int]:
        """admin STATS, asked on the admin socket."""
        admin = LineClient()
        await connectProtocol(UNIXClientEndpoint(reactor, self.admin), admin).addTimeout(
            WAIT, reactor)
        admin.send(b"STATS\r\n")
        lines = await admin.wait(lambda lines: b"+OK" in b" ".join(lines))
        admin.transport.loseConnection()
        return {line.split()[1].decode(): int(line.split()[2])
                for line in lines if line.startswith(b"STAT ")}

    async def test_metrics_equal_admin_stats(self) -> None:
        """After a known workload, /metrics (parsed by prometheus_client) has
        the admin STATS counters, the gauges, disconnects by reason and build info."""
        hub, _ = await self.start()
        reader = await connect(self.clients)
        await reader.ask(b"SUB news.>", b"+OK")
        writer = await connect(self.clients)
        for n in range(3):
            await writer.ask(b"PUB news.uk hello%d" % n, b"+OK")
        await reader.wait(lambda lines: sum(x.startswith(b"MSG ") for x in lines) == 3)
        await writer.quit()
        status, text = await get(self.http, "/metrics")
        self.assertEqual(status, 200)
        found = samples(text)
        stats = await self.admin_stats()
        self.assertEqual(stats, hub.stats() | {"uptime_s": stats["uptime_s"]})
        for key, (name, _) in COUNTERS.items():
            self.assertEqual(found[(name + "_total", ())], stats[key], key)
        for key, (name, _) in GAUGES.items():
            self.assertEqual(found[(name, ())], stats[key], key)
        self.assertEqual(found[("txpubsub_sent_bytes_total", (("door", "line"),))],
                         stats["bytes_out"])
        self.assertEqual((stats["msgs_in"], stats["msgs_out"], stats["clients"]), (3, 3, 1))
        self.assertEqual(found[("txpubsub_disconnects_total", (("reason", "quit"),))], 1)
        self.assertEqual(found[("txpubsub_history_messages", ())], 3)
        build = next(k for k in found if k[0] == "txpubsub_build_info")
        self.assertIn(("version", __import__("txpubsub").__version__), build[1])
        every = set(COUNTERS) | set(GAUGES) | {"bytes_out", "uptime_s"}
        self.assertEqual(every, set(stats), "a STATS counter has no metric")
        # A memory store and no Redis: none of their metrics.
        self.assertEqual([k for k in found if k[0].startswith(("txpubsub_store_c",
                                                               "txpubsub_store_q",
                                                               "txpubsub_redis_"))], [])
        await reader.quit()

    async def test_rate_limited_and_limits(self) -> None:
        """Publishes refused by --max-publish-rate are counted; the limits an
        alert compares with are there."""
        await self.start("--max-publish-rate", "1", "--max-channels", "500")
        writer = await connect(self.clients)
        writer.send(b"PUB news a\r\nPUB news b\r\nPUB news c\r\n")
        await writer.wait(lambda lines: sum(x.startswith((b"+OK", b"-ERR")) for x in lines) == 3)
        self.assertEqual(sum(x.startswith(b"-ERR rate-limited") for x in writer.lines), 2)
        found = samples((await get(self.http, "/metrics"))[1])
        self.assertEqual((found[("txpubsub_rate_limited_total", ())],
                          found[("txpubsub_max_channels", ())],
                          found[("txpubsub_max_clients", ())]), (2, 500, 10000))
        await writer.quit()

    async def test_store_commits_and_queue(self) -> None:
        """With --store sqlite, /metrics has each commit's time, how long
        publishes waited for it, what was committed and what waits."""
        from txpubsub.store.sqlite import MAX_PENDING_BYTES

        started = time.monotonic()
        await self.start("--store", f"sqlite:{tempfile.mkdtemp()}/history.db")
        writer = await connect(self.clients)
        writer.send(b"".join(b"PUB news m%d\r\n" % n for n in range(5)))
        await writer.wait(lambda lines: sum(x.startswith(b"+OK") for x in lines) == 5)
        found = samples((await get(self.http, "/metrics"))[1])
        elapsed = time.monotonic() - started
        self.assertEqual(found[("txpubsub_store_committed_messages_total", ())], 5)
        commits = found[("txpubsub_store_commit_seconds_count", ())]
        waits = found[("txpubsub_store_wait_seconds_count", ())]
        # Group commit: one to five commits hold the five messages (and the
        # channel's creation may have one of its own).
        self.assertTrue(1 <= waits <= 5 and waits <= commits <= waits + 1, (waits, commits))
        for name in ("txpubsub_store_commit_seconds", "txpubsub_store_wait_seconds"):
            self.assertTrue(0 < found[(name + "_sum", ())] < elapsed, name)
            self.assertEqual(found[(name + "_bucket", (("le", "+Inf"),))],
                             found[(name + "_count", ())])
        self.assertLessEqual(found[("txpubsub_store_commit_seconds_sum", ())],
                             found[("txpubsub_store_wait_seconds_sum", ())] + elapsed)
        self.assertEqual((found[("txpubsub_store_queue_messages", ())],
                          found[("txpubsub_store_queue_bytes", ())],
                          found[("txpubsub_store_max_queue_bytes", ())]),
                         (0, 0, MAX_PENDING_BYTES))
        self.assertEqual(await get(self.http, "/readyz"), (200, "ready\n"))
        await writer.quit()

    async def test_readyz_follows_redis(self) -> None:
        """With --redis, /readyz is 503 saying so while Redis cannot be reached
        (at start, after it stops) and 200 once it is back; /metrics shows the
        connection and each publish's round trip through Redis."""
        from .test_redis import RedisProcess

        redis = RedisProcess()
        redis.stop()  # down when the server starts
        self.addCleanup(redis.stop)
        hub, _ = await self.start("--redis", redis.url)
        backplane: Any = hub.backplane
        status, text = await get(self.http, "/readyz")
        self.assertEqual(status, 503)
        self.assertTrue(text.startswith(
            f"redis unreachable: not connected to 127.0.0.1:{redis.port}"), text)
        self.assertEqual(await get(self.http, "/healthz"), (200, "ok\n"))
        found = samples((await get(self.http, "/metrics"))[1])
        self.assertEqual(found[("txpubsub_redis_connected", ())], 0)

        redis.start()
        started = time.monotonic()
        await backplane.when_connected().addTimeout(WAIT, reactor)
        self.assertEqual(await get(self.http, "/readyz"), (200, "ready\n"))
        client = await connect(self.clients)
        for n in range(3):
            await client.ask(b"PUB news m%d" % n, b"+OK")
        found = samples((await get(self.http, "/metrics"))[1])
        self.assertEqual(found[("txpubsub_redis_connected", ())], 1)
        self.assertEqual(found[("txpubsub_redis_publish_seconds_count", ())], 3)
        self.assertTrue(0 < found[("txpubsub_redis_publish_seconds_sum", ())]
                        < time.monotonic() - started)
        self.assertEqual((found[("txpubsub_redis_pending_publishes", ())],
                          found[("txpubsub_redis_publish_errors_total", ())],
                          found[("txpubsub_redis_connection_losses_total", ())]), (0, 0, 0))

        redis.stop()
        status, text = await get(self.http, "/readyz")
        self.assertEqual(status, 503)
        self.assertTrue(text.startswith("redis unreachable: "), text)
        self.assertEqual(await client.ask(b"PUB news lost", b"-ERR"),
                         b"-ERR unavailable redis cannot be reached; not published")
        found = samples((await get(self.http, "/metrics"))[1])
        self.assertEqual(found[("txpubsub_redis_connected", ())], 0)
        self.assertGreaterEqual(found[("txpubsub_redis_connection_losses_total", ())], 1)
        self.assertEqual(found[("txpubsub_redis_publish_errors_total", ())], 1)

        redis.start()
        await backplane.when_connected().addTimeout(WAIT, reactor)
        self.assertEqual(await get(self.http, "/readyz"), (200, "ready\n"))
        await client.quit()

    async def test_health_and_readiness(self) -> None:
        await self.start()
        self.assertEqual(await get(self.http, "/healthz"), (200, "ok\n"))
        self.assertEqual(await get(self.http, "/readyz"), (200, "ready\n"))
        status, _ = await get(self.http, "/nothing")
        self.assertEqual(status, 404)


class BrokenStore(MemoryStore):
    """A store whose database does not answer."""

    def ping(self) -> Deferred[None]:
        return fail(OSError("disk I/O error"))


class ReadinessTests(TestCase):
    def serve(self, readiness: Readiness, hub: Hub) -> int:
        service = ListenerService(reactor, "tcp:0:interface=127.0.0.1", ops_site(hub, readiness))
        service.startService()
        self.addCleanup(service.stopService)
        return port_of(service)

    def listener(self) -> ListenerService:
        hub = Hub(reactor, epoch="rtest")
        from txpubsub.doors.line import LineDoorFactory

        return ListenerService(reactor, "tcp:0:interface=127.0.0.1", LineDoorFactory(hub))

    async def test_store_down(self) -> None:
        """/readyz is 503 with the reason while the store does not answer; /healthz stays 200."""
        store = BrokenStore("rtest")
        hub = Hub(reactor, store=store)
        port = self.serve(Readiness(reactor, [], {"store": store}, lambda: False), hub)
        self.assertEqual(await get(port, "/readyz"),
                         (503, "store unreachable: disk I/O error\n"))
        self.assertEqual(await get(port, "/healthz"), (200, "ok\n"))
        store.ping = lambda: succeed(None)  # type: ignore[method-assign]
        self.assertEqual(await get(port, "/readyz"), (200, "ready\n"))

    def test_no_answer(self) -> None:
        """A store that does not answer within PING_TIMEOUT makes /readyz 503."""
        clock = Clock()
        store = BrokenStore("rtest")
        store.ping = Deferred  # type: ignore[method-assign]  # never fires
        readiness = Readiness(clock, [], {"store": store}, lambda: False)
        checked = readiness.check()
        clock.advance(PING_TIMEOUT)
        self.assertEqual(self.successResultOf(checked),
                         "store unreachable: no answer within 5 s")

    async def test_listener_down_and_shutting_down(self) -> None:
        hub = Hub(reactor, epoch="rtest")
        stopping = [False]
        listener = self.listener()
        readiness = Readiness(reactor, [listener], {"store": hub.store}, lambda: stopping[0])
        port = self.serve(readiness, hub)
        self.assertEqual(await get(port, "/readyz"),
                         (503, "not listening on tcp:0:interface=127.0.0.1\n"))
        listener.startService()
        self.addCleanup(listener.stopService)
        self.assertEqual(await get(port, "/readyz"), (200, "ready\n"))
        stopping[0] = True
        self.assertEqual(await get(port, "/readyz"), (503, "shutting down\n"))
        self.assertEqual(await get(port, "/healthz"), (503, "shutting down\n"))


class OptionTests(SynchronousTestCase):
    def test_without_prometheus_client(self) -> None:
        """--http without the metrics extra is a usage error saying what to install."""
        saved = sys.modules["prometheus_client"]
        sys.modules["prometheus_client"] = None  # type: ignore[assignment]
        self.addCleanup(sys.modules.__setitem__, "prometheus_client", saved)
        with self.assertRaises(usage.UsageError) as caught:
            Options().parseOptions(["--http", "tcp:0"])
        self.assertEqual(str(caught.exception),
                         "--http: needs prometheus_client: pip install 'txpubsub[metrics]'")

    def test_bad_endpoint(self) -> None:
        with self.assertRaises(usage.UsageError) as caught:
            Options().parseOptions(["--http", "tcp:x"])
        self.assertIn("--http: bad endpoint 'tcp:x'", str(caught.exception))

    def test_off_by_default(self) -> None:
        options = Options()
        options.parseOptions([])
        self.assertIsNone(options["http"])
