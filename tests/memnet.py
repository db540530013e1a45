"""Client connections that reach a server protocol in memory, on a Clock.

For client-library behaviour that is about time (keepalive, reconnect
backoff, the wait for QUIT's answer): the client, the server and their
timers all run on one ``task.Clock``, and bytes move only when pumped, so a
test says exactly how much time passes instead of waiting for it.
"""
from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.test import iosim
from zope.interface import implementer


@implementer(IStreamClientEndpoint)
class MemoryEndpoint:
    """Each ``connect`` joins a new client protocol to a new protocol of
    ``server`` (a factory) through an iosim pump."""

    def __init__(self, server: IProtocolFactory, clock: Clock) -> None:
        self.server = server
        self.clock = clock
        self.pumps: list[iosim.IOPump] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        client = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 23400))
        server = self.server.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        assert client is not None and server is not None
        self.pumps.append(iosim.connect(server, iosim.makeFakeServer(server),
                                        client, iosim.makeFakeClient(client),
                                        greet=False, clock=self.clock))
        return succeed(client)

    @property
    def attempts(self) -> int:
        """How many connections were made."""
        return len(self.pumps)

    def flush(self) -> None:
        """Move bytes both ways on every connection until nothing moves."""
        for pump in self.pumps:
            pump.flush()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, then deliver whatever that made happen."""
        self.clock.advance(seconds)
        self.flush()
