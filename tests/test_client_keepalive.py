"""The client notices a server that went silent without closing, and reconnects."""
from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from txpubsub.client import Client, Connection

from .netclient import WAIT

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

    def connectionMade(self) -> None:
        self.factory.connections.append(self)
        self.transport.write(INFO)
        waiting = self.factory.waiting
        if len(self.factory.connections) == 2 and not waiting.called:
            waiting.callback(None)


class ReconnectTests(TestCase):
    timeout = 60

    async def silent_server(self) -> tuple[Factory, str]:
        """A SilentServer listening until the test ends: (its factory, its address)."""
        factory = Factory.forProtocol(SilentServer)
        factory.connections = []
        factory.waiting = Deferred()
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        return factory, f"tcp:127.0.0.1:{port.getHost().port}"

    async def test_client_reconnects_to_a_silent_server(self) -> None:
        factory, address = await self.silent_server()
        states: list[str] = []
        client = Client(reactor, address, on_state=states.append, keepalive=0.2)
        client.start()
        self.addCleanup(client.stop)
        await factory.waiting.addTimeout(WAIT, reactor)
        self.assertIn("disconnected (stale)", states)

    async def test_stop_does_not_wait_for_a_silent_server(self) -> None:
        factory, address = await self.silent_server()
        client = Client(reactor, address, keepalive=0)
        client.start()
        await client.connection().addTimeout(WAIT, reactor)
        # QUIT is never answered; stop() gives up on it (after QUIT_WAIT) instead of
        # waiting until something else cancels it.
        started = reactor.seconds()
        await client.stop().addTimeout(WAIT, reactor)
        self.assertLess(reactor.seconds() - started, WAIT / 2)
        self.assertEqual(len(factory.connections), 1)
