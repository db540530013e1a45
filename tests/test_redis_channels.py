"""Channels shared through a real Redis: every server's events on $sys.clients
and $sys.channels, admin KICK, DROP and STATS across servers, CREATE's
history shared, and how long Redis keeps what a channel leaves there."""
from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from txpubsub.core.hub import Hub
from txpubsub.wire.errors import CloseReason, HubError

from .helpers import Conn, Recorder
from .test_admin import Admin
from .test_redis import TwoServers, redis_cli, wait_until


class Watcher(Recorder):
    """A Recorder that also keeps the DROPs and the close it is told of."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped: list[str] = []
        self.closed: tuple[CloseReason, str] | None = None

    def channel_dropped(self, channel: str) -> None:
        self.dropped.append(channel)

    def close(self, reason: CloseReason, text: str = "") -> None:
        self.closed = (reason, text)


def events(reader: Recorder) -> list[tuple[str, str]]:
    return [(m.channel, m.payload.decode()) for m in reader.messages]


class ClusterTests(TwoServers):
    def watcher(self, hub: Hub) -> Any:
        reader = Watcher()
        return hub.attach(reader), reader

    def line(self, hub: Hub) -> Conn:
        conn = Conn(hub)
        self.addCleanup(conn.proto.connectionLost, Failure(ConnectionDone()))
        return conn

    def until_reply(self, conn: Conn, ending: bytes) -> Deferred[bytes]:
        """Everything ``conn`` reads until it ends with ``ending``."""
        read = [b""]

        def check() -> bool:
            read[0] += conn.take()
            return read[0].endswith(ending)

        return wait_until(check, timeout=5).addCallback(lambda _: read[0])

    def subscribed_in_redis(self, channel: str, servers: int = 1) -> Deferred[None]:
        """Fires once ``servers`` servers have SUBSCRIBEd to ``channel`` in Redis."""
        return wait_until(lambda: redis_cli(self.redis, "PUBSUB", "NUMSUB",
                                            "txpubsub:m:" + channel).split()[-1]
                          == str(servers))


class EventsTests(ClusterTests):
    @inlineCallbacks
    def test_system_channels_carry_every_servers_events(self) -> Any:
        """$sys.clients and $sys.channels readers on either server see the
        connects, names and disconnects of both servers' clients, and the
        channels made and dropped on both, each once."""
        a, b = self.hubs
        wa, on_a = self.client(a)
        wb, on_b = self.client(b)
        # The watchers' own connects have reached Redis (a PING is answered
        # after them) before anyone reads $sys.clients: not seen, on no server.
        for hub in (a, b):
            yield hub.backplane.ping()  # type: ignore[attr-defined]
        for hub, watcher in ((a, wa), (b, wb)):
            yield self.subscribe(hub, watcher, "$sys.clients")
            yield self.subscribe(hub, watcher, "$sys.channels")
            yield self.subscribe(hub, watcher, "$sys.>")  # a second match: still once
        yield self.subscribed_in_redis("$sys.clients", 2)
        yield self.subscribed_in_redis("$sys.channels", 2)
        alice, _ = self.client(a)
        yield a.set_name(alice, "alice")
        yield a.publish("alice", "news", b"made on a")
        bob, _ = self.client(b)
        yield b.publish("bob", "news", b"exists already")
        yield b.publish("bob", "sport", b"made on b")
        yield a.drop_everywhere("news")
        a.detach(alice, CloseReason.QUIT)
        b.detach(bob, CloseReason.QUIT)
        expected = [
            ("$sys.clients", f"connect {alice.client_id} -"),
            ("$sys.clients", f"name {alice.client_id} alice"),
            ("$sys.channels", "create news"),
            ("$sys.clients", f"connect {bob.client_id} -"),
            ("$sys.channels", "create sport"),
            ("$sys.channels", "drop news"),
            ("$sys.clients", f"disconnect {alice.client_id} quit"),
            ("$sys.clients", f"disconnect {bob.client_id} quit"),
        ]
        yield wait_until(lambda: len(on_a.messages) >= 8 and len(on_b.messages) >= 8)
        yield deferLater(reactor, 0.1)  # nothing more comes
        # Each server's own client events come at once, the others' through
        # Redis: in the order they happened per server and system channel.
        from_a, from_b = [0, 1, 2, 5, 6], [3, 4, 7]
        for seen in (events(on_a), events(on_b)):
            self.assertEqual(sorted(seen), sorted(expected))
            for origin in (from_a, from_b):
                for channel in ("$sys.clients", "$sys.channels"):
                    mine = [expected[i] for i in origin if expected[i][0] == channel]
                    self.assertEqual([e for e in seen if e in mine], mine)

    @inlineCallbacks
    def test_admin_kick_and_stats(self) -> Any:
        """Admin KICK on one server closes a client of the other, by id or name;
        STATS says which server it is."""
        a, b = self.hubs
        carol, carol_session = self.watcher(b)
        yield b.set_name(carol, "carol")
        dave, dave_session = self.watcher(b)
        yield deferLater(reactor, 0.05)  # the joins are announced a turn later
        admin = Admin(a)
        admin.cmd("KICK carol go away")
        yield wait_until(lambda: carol_session.closed is not None)
        self.assertEqual(carol_session.closed, (CloseReason.KICKED, "go away"))
        self.assertEqual(admin.transport.value(), f"+OK kicked {carol.client_id}\r\n".encode())
        admin.cmd(f"KICK {dave.client_id}")
        yield wait_until(lambda: dave_session.closed is not None)
        self.assertEqual(admin.transport.value(), f"+OK kicked {dave.client_id}\r\n".encode())
        admin.cmd("KICK nobody")
        yield wait_until(lambda: bool(admin.transport.value()))
        self.assertEqual(admin.transport.value(),
                         b"-ERR no-such-client no client called nobody\r\n")
        stats = admin.cmd("STATS").decode().splitlines()
        assert a.server_id is not None and a.server_id != b.server_id
        self.assertIn(f"STAT server {a.server_id}", stats)
        self.assertIn("STAT clients 0", stats)  # CLIENTS and counts stay per server

    @inlineCallbacks
    def test_drop_everywhere(self) -> Any:
        """Admin DROP on one server drops the channel on every server (their
        subscribers get DROP), its history and settings leave Redis, and its
        ids go on if it comes back."""
        a, b = self.hubs
        reader, session = self.watcher(b)
        yield self.subscribe(b, reader, "news")
        for i in range(3):
            yield a.publish("x", "news", b"%d" % i)
        yield wait_until(lambda: len(session.messages) == 3)
        admin = Admin(a)
        admin.cmd("DROP news")
        yield wait_until(lambda: session.dropped == ["news"])
        self.assertEqual(admin.transport.value(), b"+OK dropped news\r\n")
        self.assertIsNone(b.channel("news"))
        self.assertEqual(redis_cli(self.redis, "EXISTS", "txpubsub:s:news", "txpubsub:ch:news"),
                         "0")
        self.assertEqual((yield b.publish("x", "news", b"back")), 4)
        admin.cmd("DROP nothing")
        yield wait_until(lambda: bool(admin.transport.value()))
        self.assertEqual(admin.transport.value(),
                         b"-ERR no-such-channel nothing does not exist\r\n")


class SettingsTests(ClusterTests):
    @inlineCallbacks
    def test_create_history_is_shared(self) -> Any:
        """CREATE ... history= on one server holds on every server: the other
        says exists, and both keep that many messages (Redis's Stream too)."""
        a, b = self.hubs
        alice, bob = self.line(a), self.line(b)
        alice.proto.dataReceived(b"CREATE log history=3\r\n")
        self.assertEqual((yield self.until_reply(alice, b"\r\n")), b"+OK created log\r\n")
        bob.proto.dataReceived(b"CREATE log\r\n")
        self.assertEqual((yield self.until_reply(bob, b"\r\n")), b"-ERR exists log exists\r\n")
        bob.proto.dataReceived(b"".join(b"PUB log m%d\r\n" % i for i in range(1, 6)))
        yield self.until_reply(bob, b"+OK 5\r\n")
        for conn in (alice, bob):
            conn.proto.dataReceived(b"HISTORY log\r\n")
            reply = yield self.until_reply(conn, b"+OK 3\r\n")
            self.assertEqual([line.split(b" ")[2] for line in reply.splitlines()[:-1]],
                             [b"3", b"4", b"5"])
        self.assertEqual(redis_cli(self.redis, "XLEN", "txpubsub:s:log"), "3")

    @inlineCallbacks
    def test_first_server_sets_the_history(self) -> Any:
        """A channel made by PUB or SUB keeps the --history of the server that
        made it first, on every server."""
        a, _ = self.hubs
        small = self.server(history=2)
        yield wait_until(lambda: self.connected(small))
        client, _ = self.client(small)
        yield self.subscribe(small, client, "tiny")
        yield wait_until(lambda: redis_cli(self.redis, "HGET", "txpubsub:ch:tiny", "keep") == "2")
        for i in range(4):
            yield a.publish("x", "tiny", b"%d" % i)
        history = yield a.read_history("tiny")
        self.assertEqual([m.msg_id for m in history], [3, 4])
        self.assertEqual(a.channel("tiny").keep, 2)  # type: ignore[union-attr]


class LifetimeTests(ClusterTests):
    def ttl(self, key: str) -> int:
        return int(redis_cli(self.redis, "TTL", key))

    @inlineCallbacks
    def test_what_redis_keeps(self) -> Any:
        """A channel that keeps messages stays in Redis with its Stream; one that
        keeps nothing is forgotten CHANNEL_TTL seconds after its last publish,
        or after the last minute a server had a subscriber for it."""
        from txpubsub.backplane.redis import CHANNEL_TTL

        a, b = self.hubs
        yield a.publish("x", "kept", b"1")
        yield a.create_channel("quiet", 0)
        yield a.publish("x", "quiet", b"1")
        self.assertEqual([self.ttl("txpubsub:" + k) for k in ("ch:kept", "id:kept", "s:kept")],
                         [-1, -1, -1])
        for key in ("ch:quiet", "id:quiet"):
            self.assertTrue(CHANNEL_TTL - 5 < self.ttl("txpubsub:" + key) <= CHANNEL_TTL)
        self.assertEqual(self.ttl("txpubsub:s:quiet"), -2)
        # A subscriber on b keeps it: its server renews it every minute.
        reader, _ = self.client(b)
        yield self.subscribe(b, reader, "quiet")
        yield self.subscribe(b, reader, "kept")
        for key in ("ch:quiet", "id:quiet"):
            redis_cli(self.redis, "EXPIRE", "txpubsub:" + key, "5")
        b.backplane._touch_channels()  # type: ignore[attr-defined]
        yield wait_until(lambda: self.ttl("txpubsub:ch:quiet") > 5)
        self.assertTrue(CHANNEL_TTL - 5 < self.ttl("txpubsub:id:quiet") <= CHANNEL_TTL)
        self.assertEqual(self.ttl("txpubsub:ch:kept"), -1)  # still for good

    @inlineCallbacks
    def test_ids_never_go_back(self) -> Any:
        """Once a channel that keeps nothing is forgotten in Redis (its keys
        expired), its ids go on from its bucket's floor, never from 1."""
        a, _ = self.hubs
        yield a.create_channel("quiet", 0)
        for i in range(3):
            yield a.publish("x", "quiet", b"%d" % i)
        redis_cli(self.redis, "DEL", "txpubsub:ch:quiet", "txpubsub:id:quiet")  # expired
        a.forget_idle_channels()
        self.assertGreater((yield a.publish("x", "quiet", b"again")), 3)

    @inlineCallbacks
    def test_unavailable_while_away(self) -> Any:
        """CREATE, DROP and KICK of another server's client need Redis: refused
        with unavailable while it is away."""
        a, _ = self.hubs
        yield a.publish("x", "news", b"1")
        self.redis.stop()
        yield wait_until(lambda: not self.connected(a))
        for call in (lambda: a.create_channel("new"), lambda: a.drop_everywhere("news"),
                     lambda: a.kick_anywhere("c999999")):
            with self.assertRaises(HubError) as caught:
                call()
            self.assertEqual(caught.exception.code, "unavailable")
