"""Counting unsent output and writing straight to the socket.

``unsent_bytes`` (what the slow-consumer limit and pacing are measured by) and
``send_now`` read private attributes of Twisted's transports, so besides a
fake they are tested against real loopback connections on the real reactor:
a reader that stops reading fills the kernel's buffers, and what Twisted then
holds must be counted, byte for byte, until the reader drains it.
"""
from __future__ import annotations

import socket
from typing import Any, Callable

from twisted.internet import reactor, tcp
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    serverFromString,
    wrapClientTLS,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from txpubsub.doors.output import direct_socket, send_now, unsent_bytes

from .helpers import Conn, make_hub
from .netclient import WAIT
from .test_tls import Certs

SMALL_BUFFER = 4096  # kernel socket buffers, kept small so they fill quickly


async def turn() -> None:
    """Let the reactor run one short pass (its I/O and Twisted's pending writes)."""
    await deferLater(reactor, 0.005, lambda: None)


async def until(condition: Callable[[], object], what: str) -> None:
    """Poll ``condition`` across reactor turns; fail after WAIT seconds."""
    deadline = reactor.seconds() + WAIT
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {WAIT} s waiting for {what}")
        await turn()


class Sink(Protocol):
    """The server side of a test connection: it keeps its transport, and says
    hello at once (over TLS, before the handshake), noting what was unsent then."""

    transport: Any  # a TCP or TLS transport: more than ITransport promises

    def connectionMade(self) -> None:
        self.transport.write(self.factory.hello)
        self.unsent_at_hello = unsent_bytes(self.transport)
        self.factory.connections.append(self)


class SinkFactory(Factory):
    """Makes Sinks: what each says first, and every one made."""

    hello: bytes
    connections: list[Sink]


def sink_factory(hello: bytes = b"hello\r\n") -> SinkFactory:
    factory = SinkFactory()  # as Factory.forProtocol does, which types it a plain Factory
    factory.protocol = Sink
    factory.hello = hello
    factory.connections = []
    return factory


def fill_kernel(sock: socket.socket) -> bytes:
    """Write to a non-blocking socket until the kernel takes no more; what it took."""
    taken: list[bytes] = []
    chunk = b"k" * 65536
    while True:
        try:
            sent = sock.send(chunk)
        except BlockingIOError:
            return b"".join(taken)
        taken.append(chunk[:sent])


class UnsentBytesTests(SynchronousTestCase):
    def test_tls_cleartext_before_the_handshake_counts(self) -> None:
        """TLS keeps cleartext of its own before the handshake; it counts as unsent,
        so a TLS client that never reads is cut off like a plain one."""

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


class PendingBytesTests(SynchronousTestCase):
    def test_this_turns_output_counts_as_it_queues(self) -> None:
        """A session's pending bytes are what its transport holds plus this
        turn's queued output (kept as a running total, not summed per ask:
        a read of thousands of pipelined SUB asks once per SUB)."""
        conn = Conn(make_hub())
        session = conn.proto.session
        conn.proto.dataReceived(b"SUB a\n" * 100)
        reply = b"+OK subscribed a 0\r\n"
        self.assertEqual(conn.transport.value(), b"")  # queued for the end of the turn
        self.assertEqual(session.pending_bytes(), 100 * len(reply))
        conn.flush()
        self.assertEqual(session.pending_bytes(), 100 * len(reply))  # now in the transport
        conn.transport.drain()
        self.assertEqual(session.pending_bytes(), 0)


class RealTCPTests(TestCase):
    """A real listening port on 127.0.0.1 and a plain client socket that reads
    only when the test says so."""

    timeout = 60

    async def connect(self) -> tuple[tcp.Server, socket.socket]:
        """A server-side transport and the client socket at its other end."""
        factory = sink_factory()
        port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(client.close)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        client.settimeout(WAIT)
        client.connect(("127.0.0.1", port.getHost().port))
        await until(lambda: factory.connections, "the server to accept")
        transport = factory.connections[0].transport
        self.addCleanup(transport.abortConnection)
        self.assertEqual(factory.connections[0].unsent_at_hello, 7)
        await until(lambda: unsent_bytes(transport) == 0, "Twisted to send hello")
        self.assertEqual(client.recv(100), b"hello\r\n")
        transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        return transport, client

    async def drain(self, client: socket.socket, size: int, transport: tcp.Server) -> bytes:
        """Read ``size`` bytes as the reactor sends them. At every step Twisted may
        hold at most what the client has still to read."""
        received = bytearray()
        client.setblocking(False)
        deadline = reactor.seconds() + WAIT
        while len(received) < size:
            try:
                received += client.recv(65536)
            except BlockingIOError:
                if reactor.seconds() > deadline:
                    raise AssertionError(
                        f"got {len(received)} of {size} bytes in {WAIT} s") from None
                await turn()
            self.assertLessEqual(unsent_bytes(transport), size - len(received))
        return bytes(received)

    async def test_unsent_bytes_follows_a_reader_that_stops_then_drains(self) -> None:
        """Once the kernel is full, every write counts in full as unsent; when the
        reader drains, the count falls with it, to 0."""
        transport, client = await self.connect()
        in_kernel = fill_kernel(transport.socket)
        self.assertEqual(unsent_bytes(transport), 0)
        chunks = [bytes([ord("a") + i]) * 100_000 for i in range(5)]
        for i, chunk in enumerate(chunks):
            transport.write(chunk)
            self.assertEqual(unsent_bytes(transport), 100_000 * (i + 1))
        for _ in range(3):  # Twisted tries to send; the kernel has no room
            await turn()
        self.assertGreater(unsent_bytes(transport), 0)
        expected = in_kernel + b"".join(chunks)
        self.assertEqual(await self.drain(client, len(expected), transport), expected)
        self.assertEqual(unsent_bytes(transport), 0)

    async def test_send_now_with_nothing_buffered_goes_straight_to_the_socket(self) -> None:
        """With nothing queued, the bytes are in the kernel before the reactor turns."""
        transport, client = await self.connect()
        sock = direct_socket(transport)
        self.assertIs(sock, transport.socket)
        send_now(transport, sock, b"PONG\r\n")
        self.assertEqual(unsent_bytes(transport), 0)
        self.assertEqual(client.recv(100), b"PONG\r\n")  # blocking: no reactor turn

    async def test_send_now_partial_send_leaves_the_rest_to_twisted(self) -> None:
        """More than the kernel takes: it keeps what it can, Twisted the rest, and the
        reader gets every byte once, in order."""
        transport, client = await self.connect()
        data = b"".join(b"%09d\n" % i for i in range(100_000))  # 1 MB, each line unique
        send_now(transport, direct_socket(transport), data)
        left = unsent_bytes(transport)
        self.assertGreater(left, 0)
        self.assertLess(left, len(data))
        self.assertEqual(await self.drain(client, len(data), transport), data)
        self.assertEqual(unsent_bytes(transport), 0)

    async def test_send_now_queues_behind_what_twisted_holds(self) -> None:
        """Output Twisted has not sent yet goes first, even when the socket has room."""
        transport, client = await self.connect()
        transport.write(b"first\r\n")  # sent by Twisted on the next reactor turn
        send_now(transport, direct_socket(transport), b"second\r\n")
        self.assertEqual(unsent_bytes(transport), len(b"first\r\nsecond\r\n"))
        self.assertEqual(await self.drain(client, 15, transport), b"first\r\nsecond\r\n")

    async def test_send_now_queues_behind_a_partly_sent_buffer(self) -> None:
        """When Twisted is part way through its buffer and the reader makes room,
        new output still waits its turn behind the rest."""
        transport, client = await self.connect()
        client.setblocking(False)
        in_kernel = fill_kernel(transport.socket)
        queued = b"".join(b"%09d\n" % i for i in range(50_000))
        transport.write(queued)
        head = bytearray()

        def read_what_is_there() -> None:
            while True:
                try:
                    head.extend(client.recv(65536))
                except BlockingIOError:
                    return

        read_what_is_there()  # room in the kernel: Twisted sends part of its buffer
        await until(lambda: transport.offset > 0, "Twisted to send part of its buffer")
        read_what_is_there()  # room again, and Twisted has not had a turn yet
        send_now(transport, direct_socket(transport), b"tail\n")
        expected = in_kernel + queued + b"tail\n"
        rest = await self.drain(client, len(expected) - len(head), transport)
        self.assertEqual(bytes(head) + rest, expected)


class Reader(Protocol):
    """A TLS client that keeps what it reads and can stop reading."""

    transport: Any  # a TLS transport: more than ITransport promises

    def __init__(self) -> None:
        self.received = bytearray()

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class RealTLSTests(TestCase):
    timeout = 60

    async def tls_connection(self, hello: bytes) -> tuple[Any, Reader]:
        """A TLS server that greets with ``hello`` and a client connected to it."""
        certs = Certs()
        factory = sink_factory(hello)
        port = await serverFromString(
            reactor, f"ssl:0:interface=127.0.0.1:privateKey={certs.key_path}"
                     f":certKey={certs.cert_path}").listen(factory)
        self.addCleanup(port.stopListening)
        reader = Reader()
        endpoint = wrapClientTLS(certs.client_options(),
                                 TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port))
        await connectProtocol(endpoint, reader).addTimeout(WAIT, reactor)
        self.addCleanup(lambda: reader.transport.abortConnection())
        await until(lambda: factory.connections, "the server to accept")
        return factory, reader

    async def test_tls_output_counts_before_and_after_the_handshake(self) -> None:
        """Over TLS, output written before the handshake and output waiting for a
        reader that stopped both count as unsent; never written to the socket direct."""
        # Over 64,000 bytes: Twisted's TLS write coalescing (BufferingTLSTransport)
        # hands it to TLS at once (the next test covers the smaller writes it holds).
        hello = b"h" * 100_000
        factory, reader = await self.tls_connection(hello)
        transport = factory.connections[0].transport
        self.assertIsNone(direct_socket(transport))
        self.assertEqual(factory.connections[0].unsent_at_hello, len(hello))  # cleartext
        await until(lambda: reader.received == hello, "the greeting")
        self.assertEqual(unsent_bytes(transport), 0)
        reader.transport.pauseProducing()  # the reader stops reading
        data = b"x" * 1_000_000
        transport.write(data)
        # Encrypted, it is a little more than was written: TLS records cost ~30 bytes.
        self.assertGreaterEqual(unsent_bytes(transport), len(data))
        self.assertLess(unsent_bytes(transport), len(data) * 1.01)
        reader.transport.resumeProducing()
        await until(lambda: len(reader.received) == len(hello) + len(data),
                    "the reader to drain")
        self.assertEqual(unsent_bytes(transport), 0)

    async def test_small_tls_writes_held_for_a_turn_count_as_unsent(self) -> None:
        """A short write that Twisted's TLS transport holds back for a turn
        (BufferingTLSTransport's small-write aggregation) still counts."""
        hello = b"INFO {}\r\n"
        factory, reader = await self.tls_connection(hello)
        self.assertEqual(factory.connections[0].unsent_at_hello, len(hello))
        await until(lambda: reader.received == hello, "the greeting")
        self.assertEqual(unsent_bytes(factory.connections[0].transport), 0)
