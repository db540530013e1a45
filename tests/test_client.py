"""The client library against a real server: commands, routing, reconnect and resume."""
from __future__ import annotations

import os
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from txpubsub.client import Client, CommandError, Connection
from txpubsub.client.blocking import BlockingClient
from txpubsub.core.hub import Hub
from txpubsub.server.listeners import ListenerService
from txpubsub.store.sqlite import open_store
from txpubsub.wire.parser import Delivery

from .helpers import kept
from .netclient import WAIT, serve


def waiter(count: int) -> tuple[list[Delivery], Deferred[None], object]:
    """A callback that collects messages and fires once it has ``count``."""
    got: list[Delivery] = []
    done: Deferred[None] = Deferred()

    def callback(msg: Delivery) -> None:
        got.append(msg)
        if len(got) >= count and not done.called:
            done.callback(None)

    return got, done.addTimeout(WAIT, reactor), callback


class ClientTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.hub = Hub(reactor, epoch="e1")
        self.listener = self.listen(self.hub)
        self.port = self.listener.port.getHost().port

    def listen(self, hub: Hub, port: int = 0) -> ListenerService:
        return serve(self, hub, f"tcp:{port}:interface=127.0.0.1")[0]

    async def connection(self) -> Connection:
        conn = Connection()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), conn)
        await conn.ready.addTimeout(WAIT, reactor)
        self.addCleanup(lambda: None if conn.closed.called else conn.quit())
        return conn

    async def test_commands(self) -> None:
        """Every command through the library, binary payloads included."""
        alice = await self.connection()
        bob = await self.connection()
        self.assertEqual(alice.info["epoch"], "e1")
        self.assertEqual(await alice.name("alice"), "alice")
        got, done, callback = waiter(3)
        self.assertEqual(await alice.subscribe("news.>", callback), (0, False))
        self.assertEqual(await bob.publish("news.uk", "hello"), 1)
        self.assertEqual(await bob.publish("news.uk", b"\x00\xff\r\n"), 2)
        self.assertEqual(await bob.publish("news.fr", "bonjour"), 1)
        await done
        self.assertEqual([(m.channel, m.msg_id, m.payload) for m in got],
                         [("news.uk", 1, b"hello"), ("news.uk", 2, b"\x00\xff\r\n"),
                          ("news.fr", 1, b"bonjour")])
        kept = await bob.history("news.uk")
        self.assertEqual([m.payload for m in kept], [b"hello", b"\x00\xff\r\n"])
        self.assertEqual([i.fields[0] for i in await bob.list()], ["news.fr", "news.uk"])
        self.assertEqual([i.fields[1] for i in await bob.who()], ["alice", "-"])
        direct: Deferred[Delivery] = Deferred()
        alice.on_direct = direct.callback
        await bob.direct("alice", "psst")
        self.assertEqual((await direct.addTimeout(WAIT, reactor)).payload, b"psst")
        with self.assertRaises(CommandError) as caught:
            await bob.publish("$sys.time", "x")
        self.assertEqual(caught.exception.code, "forbidden")
        await alice.unsubscribe("news.>")
        self.assertEqual(alice.subscriptions, {})

    async def test_history_among_live_messages(self) -> None:
        """HISTORY's messages are told apart from live ones on the same channel."""
        conn = await self.connection()
        live, _, callback = waiter(1)
        await conn.subscribe("t", callback)
        await conn.publish("t", "one")
        kept = await conn.history("t")
        self.assertEqual([m.payload for m in kept], [b"one"])
        self.assertEqual([m.payload for m in live], [b"one"])

    async def test_reconnect_resumes_without_loss(self) -> None:
        """Dropped, it reconnects and resumes with since=: each id exactly once."""
        client = Client(reactor, f"tcp:127.0.0.1:{self.port}", name="watcher")
        client.start()
        self.addCleanup(client.stop)
        got, done, callback = waiter(6)
        await client.subscribe("news", callback)
        publisher = await self.connection()
        for i in range(3):
            await publisher.publish("news", f"m{i + 1}")
        # Drop the client, and publish while it is away (in this same turn).
        self.hub.kick("watcher")
        self.hub.publish("admin", "news", b"m4")
        self.hub.publish("admin", "news", b"m5")
        reconnected = Deferred()
        client.on_state = lambda s: s == "connected" and not reconnected.called \
            and reconnected.callback(None)
        await reconnected.addTimeout(WAIT, reactor)
        await publisher.publish("news", "m6")
        await done
        self.assertEqual([m.msg_id for m in got], [1, 2, 3, 4, 5, 6])
        self.assertEqual([m.payload for m in got], [b"m1", b"m2", b"m3", b"m4", b"m5", b"m6"])

    async def test_restart_with_durable_history(self) -> None:
        """A real restart of a server with SQLite history: nothing missed or repeated."""
        path = os.path.join(tempfile.mkdtemp(), "h.db")
        hub = Hub(reactor, store=open_store(path, reactor, "durable"))
        first = self.listen(hub)
        port = first.port.getHost().port
        client = Client(reactor, f"tcp:127.0.0.1:{port}")
        client.start()
        self.addCleanup(client.stop)
        got, done, callback = waiter(5)
        await client.subscribe("news", callback)
        for i in range(3):
            hub.publish("p", "news", b"before %d" % i)
        await first.stopService()
        await hub.stopService()  # BYE shutdown to everyone, history written
        again = Hub(reactor, store=open_store(path, reactor, "unused"))
        self.addCleanup(again.store.close)
        self.listen(again, port)
        again.publish("p", "news", b"during")  # before the client is back
        again.publish("p", "news", b"after")
        await done
        self.assertEqual([m.msg_id for m in got], [1, 2, 3, 4, 5])
        self.assertEqual(again.epoch, "durable")

    async def test_blocking_client(self) -> None:
        """The blocking API: connect, publish, subscribe with replay, iterate."""
        port = self.port

        def script() -> list[tuple[str, int, bytes]]:
            with BlockingClient(f"tcp:127.0.0.1:{port}", name="script") as client:
                client.publish("logs", "first")
                client.publish("logs", b"\x00binary")
                replayed, partial = client.subscribe("logs", last=10)
                client.publish("logs", "live")
                seen = [(m.channel, m.msg_id, m.payload) for m in client.messages(timeout=0.5)]
                assert (replayed, partial) == (2, False)
                return seen

        seen = await deferToThread(script)
        self.assertEqual(seen, [("logs", 1, b"first"), ("logs", 2, b"\x00binary"),
                                ("logs", 3, b"live")])


class ServedTestCase(TestCase):
    """A hub listening on a real loopback port (``self.address``) for each test."""

    timeout = 60

    def setUp(self) -> None:
        self.hub = Hub(reactor, epoch="e1")
        _, self.address = serve(self, self.hub)


class ClientReviewTests(ServedTestCase):
    """Regressions from the client review."""

    async def test_taken_name_fails_once_without_retrying(self) -> None:
        """A refused NAME on the first connection is an error, not a retry loop."""
        holder = Client(reactor, self.address, name="alice")
        holder.start()
        self.addCleanup(holder.stop)
        await holder.connection()
        second = Client(reactor, self.address, name="alice")
        second.start()
        with self.assertRaises(CommandError) as caught:
            await second.connection()
        self.assertEqual(caught.exception.code, "name-taken")
        for _ in range(10):  # no reconnect loop piling up connections
            await deferLater(reactor, 0.05)
        self.assertEqual(len(self.hub.clients()), 1)

    async def test_refused_resume_drops_only_that_subscription(self) -> None:
        states: list[str] = []
        client = Client(reactor, self.address, name="w", on_state=states.append)
        client.start()
        self.addCleanup(client.stop)
        got, done, callback = waiter(1)
        await client.subscribe("keep", callback)
        await client.subscribe("gone", lambda msg: None)
        self.hub.auto_create = False
        self.hub.drop("gone")
        self.hub.kick("w")
        while "connected" not in states[1:]:
            await deferLater(reactor, 0.05)
        self.assertTrue(any(s.startswith("subscription to gone refused") for s in states))
        self.hub.publish("p", "keep", b"still here")
        await done
        self.assertEqual(got[0].payload, b"still here")

    async def test_commands_on_a_lost_connection_fail_at_once(self) -> None:
        from txpubsub.client import ServerClosed

        conn = Connection()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1",
                                                 int(self.address.rsplit(":", 1)[1])), conn)
        await conn.ready
        conn.transport.loseConnection()
        await conn.closed
        with self.assertRaises(ServerClosed):
            await conn.publish("x", "y")

    async def test_long_text_goes_as_pubb(self) -> None:
        conn = Connection()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1",
                                                 int(self.address.rsplit(":", 1)[1])), conn)
        await conn.ready
        self.assertEqual(await conn.publish("big", "x" * 70000), 1)
        self.assertEqual(len(kept(self.hub, "big")[0].payload), 70000)
        await conn.quit()


class WildcardResumeTests(ServedTestCase):

    async def test_wildcard_resumes_every_channel_it_brought(self) -> None:
        """news.> across a drop: what came on news.uk and news.fr meanwhile arrives,
        once; the temporary concrete subscriptions are gone afterwards."""
        states: list[str] = []
        client = Client(reactor, self.address, name="w", on_state=states.append)
        client.start()
        self.addCleanup(client.stop)
        got, done, callback = waiter(6)
        await client.subscribe("news.>", callback)
        for channel in ("news.uk", "news.fr"):
            self.hub.publish("p", channel, b"before")
        while len(got) < 2:
            await deferLater(reactor, 0.02)
        self.hub.kick("w")
        for channel in ("news.uk", "news.fr"):  # while it is away
            self.hub.publish("p", channel, b"during")
        while states.count("connected") < 2:
            await deferLater(reactor, 0.02)
        for channel in ("news.uk", "news.fr"):
            self.hub.publish("p", channel, b"after")
        await done
        seen = sorted((m.channel, m.msg_id, m.payload) for m in got)
        self.assertEqual(seen, [("news.fr", 1, b"before"), ("news.fr", 2, b"during"),
                                ("news.fr", 3, b"after"), ("news.uk", 1, b"before"),
                                ("news.uk", 2, b"during"), ("news.uk", 3, b"after")])
        client_record = self.hub.find_client("w")
        self.assertEqual(client_record.patterns, {"news.>"})

    async def test_two_subscriptions_both_see_a_message(self) -> None:
        """Each subscription's callback gets every message its pattern matches."""
        client = Client(reactor, self.address)
        client.start()
        self.addCleanup(client.stop)
        exact, exact_done, exact_cb = waiter(1)
        wide, wide_done, wide_cb = waiter(1)
        await client.subscribe("news.uk", exact_cb)
        await client.subscribe("news.>", wide_cb)
        self.hub.publish("p", "news.uk", b"both")
        await exact_done
        await wide_done
        self.assertEqual((exact[0].payload, wide[0].payload), (b"both", b"both"))
