"""The client library against a real server: commands, routing, reconnect and resume."""
from __future__ import annotations

import os
import tempfile
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from txpubsub.client import Client, CommandError, Connection
from txpubsub.client.blocking import BlockingClient
from txpubsub.core.hub import Hub
from txpubsub.doors.line import LineDoorFactory
from txpubsub.doors.session import DoorSettings
from txpubsub.server.listeners import ListenerService
from txpubsub.store.sqlite import open_store
from txpubsub.wire.parser import Delivery

from .helpers import Conn, kept, make_hub
from .memnet import MemoryEndpoint
from .netclient import WAIT, port_of, serve

threads = cast(IReactorThreads, reactor)  # Twisted types `reactor` with fewer interfaces


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
        self.port = port_of(self.listener)

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
        reconnected: Deferred[None] = Deferred()

        def on_state(s: str) -> None:
            if s == "connected" and not reconnected.called:
                reconnected.callback(None)

        client.on_state = on_state
        await reconnected.addTimeout(WAIT, reactor)
        await publisher.publish("news", "m6")
        await done
        self.assertEqual([m.msg_id for m in got], [1, 2, 3, 4, 5, 6])
        self.assertEqual([m.payload for m in got], [b"m1", b"m2", b"m3", b"m4", b"m5", b"m6"])

    async def test_restart_with_durable_history(self) -> None:
        """A real restart of a server with SQLite history: nothing missed or repeated."""
        path = os.path.join(tempfile.mkdtemp(), "h.db")
        hub = Hub(reactor, store=open_store(path, threads, "durable"))
        first = self.listen(hub)
        port = port_of(first)
        client = Client(reactor, f"tcp:127.0.0.1:{port}")
        client.start()
        self.addCleanup(client.stop)
        got, done, callback = waiter(5)
        await client.subscribe("news", callback)
        for i in range(3):
            hub.publish("p", "news", b"before %d" % i)
        stopped = first.stopService()
        assert stopped is not None  # it was listening
        await stopped
        await hub.stopService()  # BYE shutdown to everyone, history written
        again = Hub(reactor, store=open_store(path, threads, "unused"))
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


class ReconnectOnClockTests(SynchronousTestCase):
    """A Client and a real hub joined in memory on one Clock: reconnects and
    resumes happen when the test lets the backoff pass, never by waiting."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = make_hub(self.clock)
        self.net = MemoryEndpoint(
            LineDoorFactory(self.hub, "tcp:test", DoorSettings(ping_interval=0)), self.clock)
        self.states: list[str] = []

    def client(self, **kwargs: Any) -> Client:
        client = Client(self.clock, self.net, on_state=self.states.append,
                        **kwargs)
        client.start()
        return client

    def test_taken_name_fails_once_without_retrying(self) -> None:
        """A refused NAME on the first connection is the caller's error, not a retry loop."""
        Conn(self.hub, ping_interval=0).cmd("NAME alice")
        connected = self.client(name="alice").connection()
        self.net.flush()
        self.assertEqual(self.failureResultOf(connected, CommandError).value.code, "name-taken")
        self.net.advance(60)
        self.assertEqual(self.net.attempts, 1)
        self.assertEqual(len(self.hub.clients()), 1)

    def test_refused_resume_drops_only_that_subscription(self) -> None:
        """Back after a drop, a subscription the server now refuses is reported and
        dropped; the others resume and deliver."""
        client = self.client(name="w")
        got: list[Delivery] = []
        subscribed = [client.subscribe("keep", got.append),
                      client.subscribe("gone", lambda msg: None)]
        self.net.flush()
        for d in subscribed:
            self.successResultOf(d)
        self.hub.auto_create = False
        self.hub.drop("gone")
        self.hub.kick("w")
        self.net.flush()
        self.assertEqual(self.states[-1], "disconnected (kicked)")
        self.net.advance(1.3)  # the first backoff: 0.2 s times 1.5, plus up to 1 s jitter
        self.assertEqual(self.net.attempts, 2)
        self.assertEqual(self.states[-1], "connected")
        self.assertTrue(any(s.startswith("subscription to gone refused") for s in self.states),
                        self.states)
        self.hub.publish("p", "keep", b"still here")
        self.net.flush()
        self.assertEqual([m.payload for m in got], [b"still here"])

    def test_wildcard_resumes_every_channel_it_brought(self) -> None:
        """news.> across a drop: what came on news.uk and news.fr meanwhile arrives,
        once; the temporary concrete subscriptions are gone afterwards."""
        client = self.client(name="w")
        got: list[Delivery] = []
        subscribed = client.subscribe("news.>", got.append)
        self.net.flush()
        self.successResultOf(subscribed)
        for channel in ("news.uk", "news.fr"):
            self.hub.publish("p", channel, b"before")
        self.net.flush()
        self.assertEqual(len(got), 2)
        self.hub.kick("w")
        self.net.flush()
        for channel in ("news.uk", "news.fr"):  # while it is away
            self.hub.publish("p", channel, b"during")
        self.net.advance(1.3)
        self.assertEqual(self.states.count("connected"), 2)
        for channel in ("news.uk", "news.fr"):
            self.hub.publish("p", channel, b"after")
        self.net.flush()
        seen = sorted((m.channel, m.msg_id, m.payload) for m in got)
        self.assertEqual(seen, [("news.fr", 1, b"before"), ("news.fr", 2, b"during"),
                                ("news.fr", 3, b"after"), ("news.uk", 1, b"before"),
                                ("news.uk", 2, b"during"), ("news.uk", 3, b"after")])
        watcher = self.hub.find_client("w")
        assert watcher is not None
        self.assertEqual(watcher.patterns, {"news.>"})

    def with_users(self) -> None:
        from txpubsub.auth.authenticator import Authenticator
        from txpubsub.auth.users import parse_users

        from .test_auth import USERS, run_now

        factory = self.net.server
        assert isinstance(factory, LineDoorFactory)
        factory.auth = Authenticator(self.hub, parse_users(USERS), run_in_thread=run_now)

    def test_logs_in_on_every_connection(self) -> None:
        """With user= the client logs in before it names itself (bob may take the
        name bob only as the user bob) and resumes as the user after a drop."""
        self.with_users()
        client = self.client(name="bob", user="bob", password="bob-pw")
        got: list[Delivery] = []
        subscribed = client.subscribe("news.uk", got.append)
        self.net.flush()
        self.successResultOf(subscribed)
        self.hub.publish("p", "news.uk", b"before")
        self.net.flush()
        self.hub.kick("bob")
        self.net.flush()
        self.hub.publish("p", "news.uk", b"during")
        self.net.advance(1.3)
        self.assertEqual(self.states.count("connected"), 2)
        self.assertEqual([m.payload for m in got], [b"before", b"during"])
        bob = self.hub.find_client("bob")
        assert bob is not None
        self.assertEqual(bob.user, "bob")

    def test_login_refused_on_a_reconnect_is_tried_again(self) -> None:
        """A login refused on a later connection (here: too many checks at once,
        as when every client of a restarted server logs in again) is not
        'connected' as nobody: the subscriptions stay, the client tries again on
        a new connection a pause later, and resumes as the user."""
        from txpubsub.client.connection import LOGIN_RETRY

        self.with_users()
        throttle = self.net.server.auth.throttle  # type: ignore[attr-defined]
        client = self.client(name="bob", user="bob", password="bob-pw")
        got: list[Delivery] = []
        subscribed = client.subscribe("news.uk", got.append)
        self.net.flush()
        self.successResultOf(subscribed)
        self.hub.publish("p", "news.uk", b"before")
        self.net.flush()
        throttle.checking = throttle.max_checks  # every check slot is busy
        self.hub.kick("bob")
        self.net.flush()
        self.net.advance(1.3)
        self.assertEqual(self.states.count("connected"), 1)
        self.assertIn("login refused: unavailable", self.states[-1])
        self.hub.publish("p", "news.uk", b"during")
        throttle.checking = 0
        self.net.advance(LOGIN_RETRY)
        self.net.advance(1.3)
        self.assertEqual(self.states.count("connected"), 2)
        self.assertEqual([m.payload for m in got], [b"before", b"during"])
        bob = self.hub.find_client("bob")
        assert bob is not None
        self.assertEqual(bob.user, "bob")

    def test_wrong_password_fails_once_without_retrying(self) -> None:
        self.with_users()
        connected = self.client(user="bob", password="nope").connection()
        self.net.flush()
        self.net.advance(1)
        failure = self.failureResultOf(connected, CommandError)
        self.assertEqual((failure.value.code, failure.value.text),
                         ("auth-failed", "wrong user or password"))
        self.net.advance(60)
        self.assertEqual(self.net.attempts, 1)
