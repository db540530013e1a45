"""Regressions found in review: each test is a way the server once misbehaved."""
from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from txpubsub.core.hub import Hub
from txpubsub.doors.feeds import FeedFactory
from txpubsub.doors.line import LineDoorFactory
from txpubsub.doors.session import DoorSettings
from txpubsub.server.listeners import ListenerService

from .helpers import Conn, kept, make_hub
from .netclient import WAIT, connect


class ReplayWithinBufferTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hub = make_hub(history=10)
        writer = Conn(self.hub)
        writer.cmd("QUIET on")
        for i in range(10):
            writer.send(b"PUB big %d" % i + b"x" * 20000 + b"\r\n")
        self.reader = Conn(self.hub, max_buffer=100_000)

    def test_history_never_outgrows_the_buffer(self) -> None:
        """HISTORY sends the newest messages that fit in --max-buffer."""
        out = self.reader.send(b"HISTORY big\r\n")
        self.assertLess(len(out), 100_000)
        self.assertTrue(out.endswith(b"+OK 4\r\n"))
        self.assertIn(b"MSG big 10 ", out)
        self.assertFalse(self.reader.closed)

    def test_since_cut_short_says_partial(self) -> None:
        out = self.reader.send(b"SUB big since=0\r\n")
        self.assertTrue(out.endswith(b"+OK subscribed big 4 partial\r\n"))

    def test_last_cut_short_stays_quiet(self) -> None:
        out = self.reader.send(b"SUB big last=10\r\n")
        self.assertTrue(out.endswith(b"+OK subscribed big 4\r\n"))


class ProtocolRegressionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = make_hub(self.clock)

    def test_pubb_with_bad_header_payload_not_run(self) -> None:
        """A PUBB line that is not UTF-8 is refused, and its payload is skipped."""
        conn = Conn(self.hub)
        out = conn.send(b"PUBB caf\xe9 19\nNAME mallory\nSUB x\n\r\nPING\n")
        self.assertEqual(out, b"-ERR bad-encoding lines must be UTF-8\r\nPONG\r\n")
        self.assertIsNone(conn.proto.session.client.name)

    def test_slow_upload_is_alive(self) -> None:
        """Bytes of a PUBB payload still arriving count as life."""
        conn = Conn(self.hub, ping_interval=60)
        conn.send(b"PUBB up 100\r\n")
        for _ in range(9):
            self.clock.advance(30)
            self.assertEqual(conn.send(b"x" * 10), b"")
        self.assertEqual(conn.send(b"x" * 10 + b"\r\n"), b"+OK 1\r\n")

    def test_direct_messages_skip_raw_connections(self) -> None:
        """Feed readers cannot be sent direct messages (nothing would frame them)."""
        feed = FeedFactory("logs", self.hub).buildProtocol(None)
        feed.makeConnection(StringTransport())
        conn = Conn(self.hub)
        self.assertTrue(conn.cmd("PUB @c1 fake").startswith("-ERR no-such-client "))

    def test_inbox_ids_go_with_the_connection(self) -> None:
        a = Conn(self.hub)
        b = Conn(self.hub)
        self.assertEqual(b.cmd("PUB @c1 x"), "+OK 1\r\n")
        self.assertEqual(b.cmd("PUB @c1 x"), "+OK 2\r\n")
        a.lose()
        self.assertFalse(hasattr(self.hub, "_inbox_ids"))

    def test_unpublished_channels_leave_nothing_behind(self) -> None:
        conn = Conn(self.hub)
        conn.cmd("SUB empty")
        conn.cmd("UNSUB empty")
        self.hub._retire(self.hub.channel("empty"))
        self.assertEqual(self.hub._retired, {})

    def test_quit_keeps_earlier_reason(self) -> None:
        """QUIT after a slow-consumer cut does not rewrite why the connection ended."""
        conn = Conn(self.hub, max_buffer=65536)
        for _ in range(20):
            conn.proto.dataReceived(b"PING\r\n" * 1000)
            conn.flush()
        conn.proto.dataReceived(b"QUIT\r\n")
        self.assertEqual(conn.proto.session.close_reason.value, "slow-consumer")

    def test_replies_do_not_spend_pacing_budget(self) -> None:
        conn = Conn(self.hub, max_buffer=200_000)
        budget = conn.proto.session._stall_left
        conn.proto.dataReceived(b"PING\r\n" * 20000)
        self.assertEqual(conn.proto.session._stall_left, budget)
        self.assertEqual(self.hub.counters.pacing_stalls, 0)

    def test_long_names_cut_in_errors(self) -> None:
        conn = Conn(self.hub)
        conn.cmd("CREATE " + "n" * 120)
        reply = conn.cmd("CREATE " + "n" * 120)
        self.assertTrue(reply.startswith("-ERR exists "))
        self.assertLess(len(reply), 80)

    def test_help_names_pong(self) -> None:
        self.assertIn("HELP PONG ", Conn(self.hub).cmd("HELP"))


class CleanCloseTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.hub = Hub(reactor, epoch="itest")
        service = ListenerService(reactor, "tcp:0:interface=127.0.0.1",
                                  LineDoorFactory(self.hub, "tcp", DoorSettings(ping_interval=0)))
        service.startService()
        self.addCleanup(service.stopService)
        self.address = f"tcp:127.0.0.1:{service.port.getHost().port}"

    async def test_quit_after_backed_up_output_closes_cleanly(self) -> None:
        """After more than 64 KiB were queued, QUIT still ends in a clean close."""
        client = await connect(self.address)
        publish = b"PUB me " + b"x" * 1000 + b"\r\n"
        client.send(b"SUB me\r\nQUIET on\r\n" + publish * 100 + b"QUIT\r\n")
        await client.closed.addTimeout(WAIT, reactor)
        self.assertEqual(client.lines[-1], b"+OK bye")
        self.assertTrue(client.lost_reason.check(ConnectionDone), client.lost_reason)

    async def test_half_close_still_gets_replies(self) -> None:
        """printf 'PING\\nLIST\\n' | nc -N: the replies come, then the close."""
        client = await connect(self.address)
        client.send(b"PING\r\nSUB hc\r\nPUB hc hi\r\nLIST\r\n")
        client.transport.loseWriteConnection()
        await client.closed.addTimeout(WAIT, reactor)
        self.assertEqual(client.lines[1:], [b"PONG", b"+OK subscribed hc 0", b"MSG hc 1 c1 hi",
                                            b"+OK 1", b"CHANNEL hc 1 1 1", b"+OK 1"])


class SecondReviewTests(SynchronousTestCase):
    """Regressions from the second review (output, TLS, SQLite)."""

    def test_unsent_bytes_sees_tls_cleartext(self) -> None:
        """TLS keeps cleartext of its own before the handshake; it counts."""
        from txpubsub.doors.output import unsent_bytes

        class Inner(StringTransport):
            pass

        class TLSLike:  # forwards unknown attributes, as TLSMemoryBIOProtocol does
            def __init__(self) -> None:
                self.transport = Inner()
                self._appSendBuffer = [b"x" * 100, b"y" * 50]

            def __getattr__(self, name: str) -> object:
                return getattr(self.transport, name)

        wrapper = TLSLike()
        wrapper.transport.write(b"z" * 7)
        self.assertEqual(unsent_bytes(wrapper), 157)

    def test_close_while_backed_up_is_a_slow_consumer_cut(self) -> None:
        """KICK of a connection whose pending output would pass the limit says so."""
        hub = make_hub(Clock())
        conn = Conn(hub, max_buffer=100_000, max_stall=0)  # no pacing: the writer goes on
        conn.cmd("SUB t")
        writer = Conn(hub)
        for _ in range(70):  # > 64 KiB unsent: Twisted says we are backed up
            writer.send(b"PUB t " + b"x" * 1000 + b"\r\n")
        conn.flush()
        for _ in range(40):  # this turn's output would pass --max-buffer
            writer.proto.dataReceived(b"PUB t " + b"x" * 1000 + b"\r\n")
        hub.kick(conn.proto.session.client.client_id, "maintenance")
        self.assertEqual(conn.proto.session.close_reason.value, "slow-consumer")
        self.assertTrue(conn.transport.value().endswith(b"BYE slow-consumer over 100000 bytes "
                                                        b"unsent\r\n"))
        self.assertEqual(hub.counters.slow_consumers, 1)


class StoreReviewTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        import os
        import tempfile

        self.path = os.path.join(tempfile.mkdtemp(), "h.db")

    def start(self) -> Hub:
        from txpubsub.store.sqlite import open_store

        hub = Hub(reactor, store=open_store(self.path, reactor, "e"))
        self.addCleanup(hub.store.close)
        return hub

    async def restart(self, hub: Hub) -> Hub:
        await hub.store.close()
        return self.start()

    async def test_dropped_messages_stay_dropped(self) -> None:
        """Messages published and dropped within one flush window never come back."""
        hub = self.start()
        for i in range(3):
            hub.publish("x", "secret", b"secret-%d" % i)
        hub.drop("secret")
        hub.publish("x", "secret", b"fresh")
        hub = await self.restart(hub)
        self.assertEqual([m.payload for m in kept(hub, "secret")], [b"fresh"])
        self.assertEqual(kept(hub, "secret")[0].msg_id, 4)

    async def test_failed_write_keeps_last_ids(self) -> None:
        """A failed batch loses its messages, never the ids: they do not restart."""
        from twisted.enterprise import adbapi

        hub = self.start()
        store = hub.store
        good = store._pool
        store._pool = adbapi.ConnectionPool(
            "sqlite3", f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
            cp_min=1, cp_max=1, cp_reactor=reactor)
        for _ in range(3):
            hub.publish("x", "news", b"m")
        await store.flush()
        self.flushLoggedErrors()
        store._pool.close()
        store._pool = good
        hub = await self.restart(hub)
        self.assertEqual(hub.publish("x", "news", b"after"), 4)

    async def test_empty_dropped_channel_gone(self) -> None:
        hub = self.start()
        hub.create("empty")
        await hub.store.flush()
        hub.drop("empty")
        hub = await self.restart(hub)
        self.assertIsNone(hub.channel("empty"))
