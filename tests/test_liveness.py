"""Heartbeats, slow consumers, publisher pacing and system channels, on a Clock."""
from __future__ import annotations

import json
import re

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.core.system import SystemTicker, iso_utc
from txpubsub.doors.session import CLOSE_GRACE, STALL, DoorSettings

from .helpers import Conn, make_hub


class HeartbeatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = make_hub(self.clock)

    def test_silent_client_pinged_then_dropped(self) -> None:
        """A silent client gets PING after one interval, BYE stale after two."""
        conn = Conn(self.hub, ping_interval=60)
        self.clock.advance(59)
        self.assertEqual(conn.take(), b"")
        self.clock.advance(1)
        self.assertEqual(conn.take(), b"PING\r\n")
        self.clock.advance(60)
        self.assertEqual(conn.take(), b"BYE stale nothing heard for 120 seconds\r\n")
        self.assertTrue(conn.closed)

    def test_any_line_keeps_it(self) -> None:
        """PONG (or any line) after PING keeps the connection; silence counts anew."""
        conn = Conn(self.hub, ping_interval=60)
        self.clock.advance(60)
        self.assertEqual(conn.take(), b"PING\r\n")
        self.clock.advance(30)
        conn.send(b"PONG\r\n")
        self.clock.advance(59)
        self.assertEqual(conn.take(), b"")
        self.clock.advance(1)
        self.assertEqual(conn.take(), b"PING\r\n")
        self.assertFalse(conn.closed)

    def test_talking_client_never_pinged(self) -> None:
        conn = Conn(self.hub, ping_interval=60)
        for _ in range(10):
            self.clock.advance(50)
            conn.send(b"\r\n")
        self.assertEqual(conn.take(), b"")

    def test_receiving_is_not_talking(self) -> None:
        """However much the server sends, a client that says nothing is pinged."""
        reader = Conn(self.hub, ping_interval=60)
        reader.cmd("SUB t")
        writer = Conn(self.hub, ping_interval=0)
        for _ in range(60):
            self.clock.advance(1)
            writer.cmd("PUB t x")
        self.assertIn(b"MSG t 59 c2 x\r\nPING\r\n", reader.take())

    def test_zero_disables(self) -> None:
        conn = Conn(self.hub, ping_interval=0)
        self.clock.advance(10000)
        self.assertEqual(conn.take(), b"")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_half_line_is_not_life(self) -> None:
        """Bytes without an LF do not keep a connection alive."""
        conn = Conn(self.hub, ping_interval=60)
        out = b""
        for _ in range(4):
            self.clock.advance(30)
            out += conn.send(b"x")
        self.assertTrue(conn.closed)
        self.assertEqual(out, b"PING\r\nBYE stale nothing heard for 120 seconds\r\n")


    def test_slow_pubb_upload_is_not_stale(self) -> None:
        """A PUBB payload trickling in over four minutes is life: no PING, no BYE stale."""
        conn = Conn(self.hub, ping_interval=60)
        conn.send(b"PUBB up 100\r\n")
        for _ in range(9):
            self.clock.advance(30)
            self.assertEqual(conn.send(b"x" * 10), b"")
        self.assertEqual(conn.send(b"x" * 10 + b"\r\n"), b"+OK 1\r\n")

class SlowConsumerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = make_hub(self.clock)
        self.limit = 200_000
        self.slow = Conn(self.hub, max_buffer=self.limit)
        self.slow.cmd("SUB t")
        self.fast = Conn(self.hub, max_buffer=self.limit)
        self.fast.cmd("SUB t")
        self.publisher = Conn(self.hub, max_buffer=self.limit)
        self.publisher.cmd("QUIET on")
        self.payload = b"x" * 1000

    def publish(self, n: int) -> None:
        for _ in range(n):
            self.publisher.send(b"PUB t " + self.payload + b"\r\n")
            self.fast.take()
            self.clock.advance(STALL)  # let any pacing stall end

    def test_cut_off_past_the_limit(self) -> None:
        """Past --max-buffer: BYE slow-consumer as the last line, closed, counted."""
        self.publish(300)
        data = self.slow.transport.value()
        self.assertTrue(data.endswith(b"BYE slow-consumer over 200000 bytes unsent\r\n"))
        # Enforced to within a sixteenth of the limit (docs/operations.md).
        self.assertLessEqual(len(data), self.limit + self.limit // 16 + 1100)
        self.assertTrue(self.slow.closed)
        self.assertEqual(self.hub.counters.slow_consumers, 1)
        # Nothing follows the BYE, and the socket is let go of within seconds.
        self.publish(5)
        self.assertTrue(self.slow.transport.value().endswith(b"unsent\r\n"))
        self.clock.advance(CLOSE_GRACE)
        self.assertTrue(self.slow.transport.disconnected)  # aborted

    def test_others_unharmed(self) -> None:
        """The reader that keeps up gets every message, in order."""
        ids = []
        for _ in range(250):
            self.publisher.send(b"PUB t " + self.payload + b"\r\n")
            self.clock.advance(STALL)
            ids += [int(m) for m in re.findall(rb"MSG t (\d+) ", self.fast.take())]
        self.assertEqual(ids, list(range(1, 251)))
        self.assertFalse(self.fast.closed)
        self.assertFalse(self.publisher.closed)

    def test_burst_that_fits_is_fine(self) -> None:
        """A burst under the limit, read later, costs nobody their connection."""
        self.publish(150)
        self.assertFalse(self.slow.closed)
        self.assertEqual(len(re.findall(rb"MSG t ", self.slow.take())), 150)
        self.publish(150)
        self.assertFalse(self.slow.closed)

    def test_publisher_paced_briefly(self) -> None:
        """Over half the limit, the publisher stops reading for a moment, within budget."""
        stalls = 0
        for _ in range(300):
            self.publisher.send(b"PUB t " + self.payload + b"\r\n")
            self.fast.take()
            if self.publisher.proto.session.stalled():
                stalls += 1
                # Input that arrives meanwhile waits its turn, then runs.
                self.publisher.send(b"PING\r\n")
                self.assertEqual(self.publisher.take(), b"")
                self.clock.advance(STALL)
                self.assertEqual(self.publisher.take(), b"PONG\r\n")
        self.assertGreater(stalls, 0)
        self.assertEqual(self.hub.counters.pacing_stalls, stalls)
        self.assertLessEqual(stalls, round(DoorSettings().max_stall / STALL))
        self.assertTrue(self.slow.closed)

    def test_pacing_off(self) -> None:
        """--max-stall 0: publishers are never paused; the laggard is still cut off."""
        hub = make_hub(self.clock)
        slow = Conn(hub, max_buffer=self.limit, max_stall=0)
        slow.cmd("SUB t")
        publisher = Conn(hub)
        for _ in range(300):
            publisher.send(b"PUB t " + self.payload + b"\r\n")
            self.assertFalse(publisher.proto.session.stalled())
        self.assertTrue(slow.closed)
        self.assertEqual(hub.counters.pacing_stalls, 0)

    def test_one_turn_cannot_queue_past_the_limit(self) -> None:
        """64 KiB of pipelined HELP in one read (14 MB of replies) is cut off early."""
        self.slow.proto.dataReceived(b"HELP\r\n" * 10000)
        self.assertTrue(self.slow.closed)
        self.assertLess(len(self.slow.transport.value()), self.limit * 2)

    def test_reader_that_catches_up_gets_budget_back(self) -> None:
        self.publish(110)
        self.slow.take()  # read everything: Twisted resumes us
        self.assertEqual(self.slow.proto.session._stall_left, DoorSettings().max_stall)

    def test_unread_replies_count_too(self) -> None:
        """A client that sends commands but never reads its replies is cut off too."""
        for _ in range(100):
            self.slow.proto.dataReceived(b"PING\r\n" * 1000)
            self.slow.flush()  # the reactor turn ends; the client reads nothing
            if self.slow.closed:
                break
        self.assertTrue(self.slow.closed)
        self.assertTrue(self.slow.transport.value().endswith(b"unsent\r\n"))


    def test_quit_after_slow_consumer_cut_still_says_slow_consumer(self) -> None:
        """QUIT after a slow-consumer cut does not rewrite why the connection ended."""
        conn = Conn(self.hub, max_buffer=65536)
        for _ in range(20):
            conn.proto.dataReceived(b"PING\r\n" * 1000)
            conn.flush()
        conn.proto.dataReceived(b"QUIT\r\n")
        assert conn.proto.session.close_reason is not None
        self.assertEqual(conn.proto.session.close_reason.value, "slow-consumer")

    def test_own_replies_never_pace_the_sender(self) -> None:
        """20,000 PINGs in one read are answered without pausing the sender's input."""
        conn = Conn(self.hub, max_buffer=200_000)
        budget = conn.proto.session._stall_left
        conn.proto.dataReceived(b"PING\r\n" * 20000)
        self.assertEqual(conn.proto.session._stall_left, budget)
        self.assertEqual(self.hub.counters.pacing_stalls, 0)

    def test_kick_of_a_backed_up_connection_says_slow_consumer(self) -> None:
        """KICK of a connection whose pending output would pass the limit says
        BYE slow-consumer, and is counted as one."""
        hub = make_hub(Clock())
        conn = Conn(hub, max_buffer=100_000, max_stall=0)  # no pacing: the writer goes on
        conn.cmd("SUB t")
        writer = Conn(hub)
        for _ in range(70):  # > 64 KiB unsent: Twisted says we are backed up
            writer.send(b"PUB t " + b"x" * 1000 + b"\r\n")
        conn.flush()
        for _ in range(40):  # this turn's output would pass --max-buffer
            writer.proto.dataReceived(b"PUB t " + b"x" * 1000 + b"\r\n")
        assert conn.proto.session.client is not None
        hub.kick(conn.proto.session.client.client_id, "maintenance")
        assert conn.proto.session.close_reason is not None
        self.assertEqual(conn.proto.session.close_reason.value, "slow-consumer")
        self.assertTrue(conn.transport.value().endswith(b"BYE slow-consumer over 100000 bytes "
                                                        b"unsent\r\n"))
        self.assertEqual(hub.counters.slow_consumers, 1)

class SystemChannelTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1763865866)  # 2025-11-23T02:44:26Z
        self.hub = make_hub(self.clock)
        self.ticker = SystemTicker(self.hub)
        self.ticker.startService()
        self.addCleanup(self.ticker.stopService)

    def test_time_every_second(self) -> None:
        conn = Conn(self.hub)
        conn.cmd("SUB $sys.time")
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(conn.take(), b"MSG $sys.time 1 $sys 2025-11-23T02:44:27Z\r\n"
                                      b"MSG $sys.time 2 $sys 2025-11-23T02:44:28Z\r\n")
        self.assertEqual(iso_utc(0), "1970-01-01T00:00:00Z")

    def test_time_interval_is_settable(self) -> None:
        """With a 0.1 s interval, $sys.time comes ten times a second."""
        ticker = SystemTicker(self.hub, time_interval=0.1)
        self.ticker.stopService()
        ticker.startService()
        self.addCleanup(ticker.stopService)
        conn = Conn(self.hub)
        conn.cmd("SUB $sys.time")
        self.clock.advance(0.05)  # between ticks, whatever the float rounding
        for _ in range(10):
            self.clock.advance(0.1)
        self.assertEqual(conn.take().count(b"MSG $sys.time "), 10)

    def test_nothing_computed_for_nobody(self) -> None:
        """With no reader, system channels publish nothing and keep no ids."""
        conn = Conn(self.hub)
        conn.cmd("SUB >")  # a leading wildcard does not read $sys
        self.clock.advance(30)
        conn.cmd("NAME bob")
        for name in ("$sys.time", "$sys.stats", "$sys.clients", "$sys.channels"):
            channel = self.hub.channel(name)
            assert channel is not None, name
            self.assertEqual(channel.last_id, 0)

    def test_clients_events(self) -> None:
        watcher = Conn(self.hub)
        watcher.cmd("SUB $sys.clients")
        other = Conn(self.hub)
        other.cmd("NAME bob")
        other.cmd("QUIT")
        other.lose()
        self.assertEqual(watcher.take(), b"MSG $sys.clients 1 $sys connect c2 ipv4\r\n"
                                         b"MSG $sys.clients 2 $sys name c2 bob\r\n"
                                         b"MSG $sys.clients 3 $sys disconnect c2 quit\r\n")

    def test_channels_events(self) -> None:
        watcher = Conn(self.hub)
        watcher.cmd("SUB $sys.>")
        other = Conn(self.hub)
        watcher.take()
        other.cmd("CREATE a")
        other.cmd("PUB b x")
        self.assertEqual(watcher.take(), b"MSG $sys.channels 1 $sys create a\r\n"
                                         b"MSG $sys.channels 2 $sys create b\r\n")
        clients = self.hub.channel("$sys.clients")
        assert clients is not None
        self.assertEqual(clients.last_id, 1)  # other's connect

    def test_stats_every_ten_seconds(self) -> None:
        watcher = Conn(self.hub)
        watcher.cmd("SUB $sys.stats")
        watcher.cmd("PUB t x")
        self.clock.advance(9)
        self.assertEqual(watcher.take(), b"")
        self.clock.advance(1)
        line = watcher.take()
        self.assertTrue(line.startswith(b"MSG $sys.stats 1 $sys {"))
        stats = json.loads(line.split(b" ", 4)[4])
        self.assertEqual(stats["clients"], 1)
        self.assertEqual(stats["msgs_in"], 1)
        self.assertEqual(stats["uptime_s"], 10)
        for key in ("channels", "subscriptions", "msgs_out", "bytes_in", "bytes_out",
                    "slow_consumers", "connections_total"):
            self.assertIn(key, stats)

    def test_read_only(self) -> None:
        conn = Conn(self.hub)
        self.assertTrue(conn.cmd("PUB $sys.time now").startswith("-ERR forbidden "))
        self.assertTrue(conn.send(b"PUBB $sys.stats 1\r\nx\r\n").startswith(b"-ERR forbidden"))
