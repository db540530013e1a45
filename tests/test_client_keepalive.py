"""The client notices a server that went silent without closing, and reconnects."""
from __future__ import annotations

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.client import Client, Connection
from txpubsub.client.connection import QUIT_WAIT

from .memnet import MemoryEndpoint

INFO = b'INFO {"server":"silent","proto":1,"client_id":"c1","epoch":"e"}\r\n'


class KeepaliveTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.conn = Connection(clock=self.clock, keepalive=30)
        self.transport = StringTransport()
        self.conn.makeConnection(self.transport)
        self.conn.dataReceived(INFO)

    def test_ping_after_silence_then_drop(self) -> None:
        self.clock.advance(29)
        self.assertEqual(self.transport.value(), b"")
        self.clock.advance(1)
        self.assertEqual(self.transport.value(), b"PING\r\n")
        self.clock.advance(30)
        self.assertTrue(self.transport.disconnected)  # aborted: nothing waits on the peer
        self.conn.connectionLost(None)
        self.assertEqual(self.successResultOf(self.conn.closed), "stale")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_anything_heard_counts_as_life(self) -> None:
        self.clock.advance(30)
        self.assertEqual(self.transport.value(), b"PING\r\n")
        self.conn.dataReceived(b"PONG\r\n")
        self.clock.advance(29)
        self.conn.dataReceived(b"MSG news 1 c2 hi\r\n")  # live traffic, no reply owed
        self.clock.advance(29)
        self.assertFalse(self.transport.disconnected)
        self.assertEqual(self.transport.value(), b"PING\r\n")  # no second PING yet

    def test_ping_waits_its_turn(self) -> None:
        """The keepalive PING is a command: its PONG is not taken for another reply."""
        self.clock.advance(30)
        first = self.conn.publish("news", "one")
        self.assertEqual(self.transport.value(), b"PING\r\nPUB news one\r\n")
        self.conn.dataReceived(b"PONG\r\n+OK 7\r\n")  # the server answers in order
        self.assertEqual(self.successResultOf(first), 7)
        second = self.conn.publish("news", "two")
        self.conn.dataReceived(b"+OK 8\r\n")
        self.assertEqual(self.successResultOf(second), 8)

    def test_no_timer_outlives_the_connection(self) -> None:
        self.conn.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_off(self) -> None:
        clock = Clock()
        transport = StringTransport()
        Connection(clock=clock, keepalive=0).makeConnection(transport)
        clock.advance(3600)
        self.assertEqual((transport.value(), transport.disconnected), (b"", False))
        self.assertEqual(clock.getDelayedCalls(), [])


class SilentServer(Protocol):
    """Greets like a txpubsub server, then never says another word."""

    def __init__(self) -> None:
        self.received = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(INFO)

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class ReconnectTests(SynchronousTestCase):
    """A Client against a silent server in memory, on a Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.net = MemoryEndpoint(Factory.forProtocol(SilentServer), self.clock)
        self.states: list[str] = []

    def test_client_reconnects_to_a_silent_server(self) -> None:
        """Silent for a keepalive: PING; as long again: dropped as stale, and a new
        connection within the first backoff (0.2 s, times 1.5, plus up to 1 s jitter)."""
        client = Client(self.clock, self.net, on_state=self.states.append, keepalive=30)
        client.start()
        self.net.flush()
        self.assertEqual(self.states, ["connected"])
        self.net.advance(29.9)
        self.assertEqual(self.net.pumps[0].server.received, b"")
        self.net.advance(0.1)
        self.assertEqual(self.net.pumps[0].server.received, b"PING\r\n")
        self.net.advance(29.9)
        self.assertEqual(self.states, ["connected"])
        self.net.advance(0.1)
        self.assertEqual(self.states, ["connected", "disconnected (stale)"])
        self.assertEqual(self.net.attempts, 1)
        self.net.advance(1.3)
        self.assertEqual(self.net.attempts, 2)
        self.assertEqual(self.states, ["connected", "disconnected (stale)", "connected"])
        stopped = client.stop()
        self.net.advance(QUIT_WAIT)
        self.successResultOf(stopped)

    def test_stop_does_not_wait_for_a_silent_server(self) -> None:
        """QUIT is never answered: stop() gives up on it after QUIT_WAIT seconds,
        closes the connection and makes no other."""
        client = Client(self.clock, self.net, keepalive=0)
        client.start()
        self.net.flush()
        self.successResultOf(client.connection())
        stopped = client.stop()
        self.net.flush()
        self.assertEqual(self.net.pumps[0].server.received, b"QUIT\r\n")
        self.net.advance(QUIT_WAIT - 0.1)
        self.assertNoResult(stopped)
        self.net.advance(0.1)
        self.assertIsNone(self.successResultOf(stopped))
        self.assertTrue(self.net.pumps[0].clientIO.disconnected)
        self.net.advance(60)
        self.assertEqual(self.net.attempts, 1)
