"""A minimal real-socket test client: reads server lines, waits with timeouts."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from txpubsub.server.listeners import ListenerService

WAIT = 10.0  # seconds any single network wait may take before the test fails


class LineClient(Protocol):
    """Collects CRLF lines (MSGB payloads as their own item) and lets tests wait."""

    transport: Any  # a TCP, TLS or Unix transport: more than ITransport promises

    def __init__(self) -> None:
        self.buffer = b""
        self.lines: list[bytes] = []
        self.closed: Deferred[None] = Deferred()
        self._waiters: list[tuple[Callable[[list[bytes]], bool], Deferred[list[bytes]]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while True:
            eol = self.buffer.find(b"\r\n")
            if eol < 0:
                break
            line = self.buffer[:eol]
            if line.startswith(b"MSGB "):
                size = int(line.rsplit(b" ", 1)[1])
                end = eol + 2 + size + 2
                if len(self.buffer) < end:
                    break
                self.lines.append(line)
                self.lines.append(self.buffer[eol + 2 : end - 2])
                self.buffer = self.buffer[end:]
            else:
                self.lines.append(line)
                self.buffer = self.buffer[eol + 2 :]
        self._check()

    def _check(self) -> None:
        for waiter in list(self._waiters):
            if waiter[0](self.lines):
                self._waiters.remove(waiter)
                waiter[1].callback(self.lines)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost_reason = reason
        self.closed.callback(None)

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def wait(self, predicate: Callable[[list[bytes]], bool]) -> Deferred[list[bytes]]:
        """Fires once ``predicate(lines)`` holds; fails after WAIT seconds."""
        d: Deferred[list[bytes]] = Deferred()
        self._waiters.append((predicate, d))
        self._check()
        return d.addTimeout(WAIT, reactor)

    def wait_line(self, line: bytes) -> Deferred[list[bytes]]:
        return self.wait(lambda lines: line in lines)

    def ask(self, command: bytes, reply_prefix: bytes = b"") -> Deferred[bytes]:
        """Send a command and fire with the first new line that starts with the prefix."""
        start = len(self.lines)

        def found(lines: list[bytes]) -> bool:
            return any(x.startswith(reply_prefix) for x in lines[start:])

        self.send(command + b"\r\n")
        return self.wait(found).addCallback(
            lambda lines: next(x for x in lines[start:] if x.startswith(reply_prefix))
        )

    def quit(self) -> Deferred[None]:
        """QUIT and wait until the server has closed the connection."""
        if self.closed.called:
            return self.closed
        self.send(b"QUIT\r\n")
        return self.closed.addTimeout(WAIT, reactor)


async def connect(where: str | IStreamClientEndpoint) -> LineClient:
    """Connect to an endpoint (or endpoint string) and wait for the greeting."""
    client = LineClient()
    endpoint = clientFromString(reactor, where) if isinstance(where, str) else where
    await connectProtocol(endpoint, client).addTimeout(
        WAIT, reactor
    )
    await client.wait(lambda lines: len(lines) >= 1)
    return client


def serve(case: Any, hub: Any, description: str = "tcp:0:interface=127.0.0.1",
          settings: Any = None) -> tuple[Any, str]:
    """Listen for clients of ``hub`` until the test ends; returns (service, address)."""
    from txpubsub.doors.line import LineDoorFactory
    from txpubsub.server.listeners import ListenerService

    service = ListenerService(reactor, description, LineDoorFactory(hub, description, settings))
    service.startService()
    case.addCleanup(service.stopService)
    return service, f"tcp:127.0.0.1:{port_of(service)}"


def port_of(service: ListenerService) -> int:
    """The TCP port a started ListenerService listens on."""
    assert service.port is not None, f"{service.description} is not listening"
    address = service.port.getHost()
    assert isinstance(address, (IPv4Address, IPv6Address)), address
    return address.port
