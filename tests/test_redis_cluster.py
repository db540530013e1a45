"""The issue's cluster tests, against a real redis-server and real sockets:
three servers with many clients each, a client moving between servers, Redis
killed and restarted mid-run, and a twistd server killed with SIGKILL."""
from __future__ import annotations

import json
import re
import signal
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from txpubsub.core.hub import Hub

from .netclient import WAIT, LineClient, connect, serve
from .test_redis import RedisProcess, start_twistd_with_redis, wait_until

MSG = re.compile(rb"MSG (\S+) (\d+) (\S+) (.*)")


def deliveries(client: LineClient) -> list[tuple[str, int, bytes]]:
    """(channel, id, payload) of every MSG a client read, in order."""
    found = []
    for line in client.lines:
        match = MSG.fullmatch(line)
        if match:
            found.append((match.group(1).decode(), int(match.group(2)), match.group(4)))
    return found


def epoch_of(client: LineClient) -> str:
    return str(json.loads(client.lines[0][5:])["epoch"])


class Cluster(TestCase):
    """Servers sharing a redis-server of the test's own, each with a line listener."""

    timeout = 60
    servers = 3
    persist = False
    history = 1000

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        from txpubsub.backplane.address import RedisAddress
        from txpubsub.backplane.redis import RedisBackplane

        self.redis = RedisProcess(persist=self.persist)
        self.addCleanup(self.redis.remove)
        self.hubs: list[Hub] = []
        self.addresses: list[str] = []
        for _ in range(self.servers):
            hub = Hub(reactor, history=self.history)
            backplane = RedisBackplane(hub, RedisAddress.parse(self.redis.url), reactor)
            hub.set_backplane(backplane)
            backplane.startService()
            self.addCleanup(backplane.stopService)
            self.hubs.append(hub)
            self.addresses.append(serve(self, hub)[1])
        return wait_until(lambda: all(self.connected(hub) for hub in self.hubs))

    @staticmethod
    def connected(hub: Hub) -> bool:
        backplane: Any = hub.backplane
        return backplane._conn is not None and backplane._listener is not None

    async def client(self, server: int) -> LineClient:
        client = await connect(self.addresses[server])

        def close() -> Deferred[None]:
            if not client.closed.called:
                client.transport.abortConnection()
            return client.closed

        self.addCleanup(close)
        return client


class ThreeServersTests(Cluster):
    async def test_every_message_once_everywhere(self) -> None:
        """Ten clients on each of three servers, half subscribed to two
        channels, half to a wildcard covering both; three on each server
        publish 30 messages each, pipelined: every client gets every message
        once, in id order, with the same ids and payloads as every other
        client, and ids run 1..N per channel."""
        clients = [await self.client(server) for server in range(3) for _ in range(10)]
        for i, client in enumerate(clients):
            patterns = [b"chat.a", b"chat.b"] if i % 2 else [b"chat.*"]
            for pattern in patterns:
                await client.ask(b"SUB " + pattern, b"+OK subscribed")
        publishers = [c for i, c in enumerate(clients) if i % 10 < 3]
        for p, publisher in enumerate(publishers):
            publisher.send(b"".join(b"PUB chat.%s %d-%d\r\n" % (b"ab"[k % 2:k % 2 + 1], p, k)
                                    for k in range(30)))
        total = 30 * len(publishers)
        await gatherResults([c.wait(lambda lines: len(deliveries_of(lines)) >= total)
                             for c in clients])
        await deferLater(reactor, 0.2)  # nothing more comes
        reference = sorted(deliveries(clients[0]))
        for client in clients:
            got = deliveries(client)
            self.assertEqual(sorted(got), reference)
            for channel in ("chat.a", "chat.b"):
                self.assertEqual([i for c, i, _ in got if c == channel],
                                 list(range(1, total // 2 + 1)))
        acked = sorted(int(line[4:]) for p in publishers for line in p.lines
                       if line.startswith(b"+OK ") and line[4:].isdigit())
        self.assertEqual(acked, sorted(list(range(1, total // 2 + 1)) * 2))

    async def test_client_moves_between_servers(self) -> None:
        """A reader of one server, moved to another while a third publishes
        without pause, resumes with since= and epoch= and loses nothing:
        each id once, none partial."""
        publisher = await self.client(0)
        reader = await self.client(1)
        await reader.ask(b"SUB feed", b"+OK subscribed")
        count = 200

        publishing = ensureDeferred(publish(publisher, count))
        await reader.wait(lambda lines: len(deliveries_of(lines)) >= 50)
        reader.transport.abortConnection()
        await reader.closed
        seen = deliveries(reader)
        self.assertLess(seen[-1][1], count)  # it moves mid-stream
        moved = await self.client(2)
        reply = await moved.ask(b"SUB feed since=%d epoch=%s"
                                % (seen[-1][1], epoch_of(reader).encode()), b"+OK")
        self.assertNotIn(b"partial", reply)
        await publishing
        await moved.wait(lambda lines: any(x.startswith(b"MSG feed %d " % count)
                                           for x in lines))
        ids = [i for _, i, _ in seen + deliveries(moved)]
        self.assertEqual(ids, list(range(1, count + 1)))


def deliveries_of(lines: list[bytes]) -> list[bytes]:
    return [line for line in lines if line.startswith(b"MSG ")]


async def publish(publisher: LineClient, count: int) -> None:
    """``count`` messages on ``feed``, one every few milliseconds."""
    for k in range(count):
        await publisher.ask(b"PUB feed m%d" % k, b"+OK")
        await deferLater(reactor, 0.004)


class RedisRestartTests(Cluster):
    servers = 2
    persist = True  # every write in Redis's append-only file before it answers
    # A catch-up reads what history keeps: enough for the seconds a server
    # may take to reconnect (its backoff) while the publishers go on.
    history = 100_000

    async def test_redis_killed_and_restarted_mid_run(self) -> None:
        """Redis killed (SIGKILL) while one publisher on each server publishes
        without pause: publishes are refused while it is down, never a false
        +OK; the servers come back by themselves, and every subscriber, on a
        channel or a wildcard, gets every message Redis took, each once, in
        id order: everything acknowledged among them."""
        subscribers = [await self.client(0), await self.client(1), await self.client(1)]
        for client, pattern in zip(subscribers, (b"log.x", b"log.*", b"log.x")):
            await client.ask(b"SUB " + pattern, b"+OK subscribed")
        publishers = [await self.client(0), await self.client(1)]
        replies: list[list[tuple[float, bytes]]] = [[], []]
        state = {"run": True, "down": (0.0, 0.0)}

        async def publish(n: int) -> None:
            k = 0
            while state["run"]:
                reply = await publishers[n].ask(b"PUB log.x %d-%d" % (n, k), b"")
                replies[n].append((time.monotonic(), reply))
                k += 1
                if not reply.startswith(b"+OK"):
                    await deferLater(reactor, 0.01)

        epoch = self.hubs[0].epoch
        running = [ensureDeferred(publish(n)) for n in range(2)]
        await deferLater(reactor, 0.3)
        self.redis.stop()
        down = time.monotonic()
        await wait_until(lambda: not any(self.connected(h) for h in self.hubs))
        await deferLater(reactor, 0.5)
        up = time.monotonic()
        self.redis.start()
        await wait_until(lambda: all(self.connected(h) for h in self.hubs))
        # Back by itself: both publishers get +OK again.
        await wait_until(lambda: all(sum(t > up and r.startswith(b"+OK") for t, r in rs) >= 20
                                     for rs in replies))
        state["run"] = False
        await gatherResults(running)
        acked = sorted(int(r[4:]) for rs in replies for _, r in rs if r.startswith(b"+OK"))
        # Answered well after Redis died and before it was back: all refused.
        refused = [r for rs in replies for t, r in rs if down + 0.2 < t < up]
        self.assertTrue(refused)
        self.assertEqual({tuple(r.split(b" ", 2)[:2]) for r in refused},
                         {(b"-ERR", b"unavailable")})
        # What Redis took, each once in id order, on every subscriber.
        from .test_redis import redis_cli

        last = int(redis_cli(self.redis, "GET", "txpubsub:id:log.x"))
        for client in subscribers:
            await client.wait(lambda lines: any(x.startswith(b"MSG log.x %d " % last)
                                                for x in lines))
        await deferLater(reactor, 0.1)
        for n, client in enumerate(subscribers):
            ids = [i for _, i, _ in deliveries(client)]
            gaps = [(a, b) for a, b in zip(ids, ids[1:]) if b != a + 1]
            self.assertEqual(ids, list(range(1, last + 1)), f"subscriber {n}: {gaps}")
        self.assertTrue(set(acked) <= set(range(1, last + 1)))
        # Redis kept its data: the same epoch, so clients' since= still hold.
        self.assertEqual([hub.epoch for hub in self.hubs], [epoch, epoch])
        self.assertEqual(len(acked), len(set(acked)))


class KilledServerTests(TestCase):
    """Real `twistd -n txpubsub --redis` servers; one killed with SIGKILL."""

    timeout = 60

    async def start(self, url: str) -> tuple[Any, Any, int]:
        return await start_twistd_with_redis(self, url, WAIT * 3)

    async def connect(self, port: int) -> LineClient:
        client = await connect(f"tcp:127.0.0.1:{port}")

        def close() -> Deferred[None]:
            if not client.closed.called:
                client.transport.abortConnection()
            return client.closed

        self.addCleanup(close)
        return client

    async def test_server_killed_mid_stream(self) -> None:
        """A server killed with SIGKILL while its client reads a channel
        another server's client publishes to: the client reconnects once, to
        the other server, resumes with since= and misses nothing."""
        redis = RedisProcess()
        self.addCleanup(redis.remove)
        (doomed, process, port_a), (survivor, _, port_b) = await gatherResults(
            [ensureDeferred(self.start(redis.url)) for _ in range(2)])
        reader = await self.connect(port_a)
        publisher = await self.connect(port_b)
        await reader.ask(b"SUB feed", b"+OK subscribed")
        count = 150

        publishing = ensureDeferred(publish(publisher, count))
        await reader.wait(lambda lines: len(deliveries_of(lines)) >= 30)
        process.signalProcess(signal.SIGKILL)
        await reader.closed.addTimeout(WAIT, reactor)
        self.assertFalse(any(line.startswith(b"BYE") for line in reader.lines))
        seen = deliveries(reader)
        self.assertLess(seen[-1][1], count)  # killed mid-stream
        again = await self.connect(port_b)
        reply = await again.ask(b"SUB feed since=%d epoch=%s"
                                % (seen[-1][1], epoch_of(reader).encode()), b"+OK")
        self.assertNotIn(b"partial", reply)
        await publishing
        await again.wait(lambda lines: any(x.startswith(b"MSG feed %d " % count)
                                           for x in lines))
        self.assertEqual([i for _, i, _ in seen + deliveries(again)],
                         list(range(1, count + 1)))
        await doomed.ended
        self.assertNotIn(b"Traceback", survivor.output)
