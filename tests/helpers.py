"""Helpers for driving the hub and the client protocol without sockets."""
from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from txpubsub.core.hub import Hub
from txpubsub.core.message import Message
from txpubsub.doors.factory import DoorFactory
from txpubsub.doors.line import LineDoor, LineDoorFactory
from txpubsub.doors.session import DoorSettings
from txpubsub.wire.errors import CloseReason
from txpubsub.wire.parser import Delivery


def make_hub(clock: Clock | None = None, **kwargs: Any) -> Hub:
    """A hub on a Clock with a fixed epoch, so outputs are comparable."""
    kwargs.setdefault("epoch", "testepoch")
    return Hub(clock or Clock(), **kwargs)


def kept(hub: Hub, channel: str) -> list[Delivery]:
    """A channel's history as a reader of HISTORY would see it."""
    return [Delivery(m.channel, m.msg_id, m.sender, m.payload) for m in hub.history(channel)]


def next_turn(clock: object) -> None:
    """Run the calls due now on a Clock, but not the ones they schedule for
    now: the reactor runs a callLater(0) made by a timed call in its next
    iteration, after I/O, where Clock.advance(0) would run it at once."""
    assert isinstance(clock, Clock)
    due = [call for call in clock.calls if call.getTime() <= clock.seconds()]
    for call in due:
        if call.active():
            clock.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)


class ConsumerTransport(StringTransport):
    """A StringTransport that keeps the IConsumer promise FileDescriptor keeps.

    Everything written stays unsent until ``drain()`` (the client read it);
    the registered streaming producer is paused when more than 64 KiB wait
    and resumed once all of it has been sent.
    """

    bufferSize = 65536

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None and len(self.value()) > self.bufferSize:
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        data = self.value()
        self.clear()
        if self.producer is not None:
            self.producer.resumeProducing()
        return data


class Conn:
    """One fake client connection: feed it bytes, read what the server wrote."""

    _port = 40000

    def __init__(self, hub: Hub, factory: DoorFactory | None = None,
                 transport: type[ConsumerTransport] | None = None, **settings: Any) -> None:
        Conn._port += 1
        self.transport = (transport or ConsumerTransport)(
            peerAddress=IPv4Address("TCP", "127.0.0.1", Conn._port)
        )
        if factory is None:
            factory = LineDoorFactory(hub, "tcp:test", DoorSettings(**settings))
        self.proto: LineDoor = factory.buildProtocol(None)  # type: ignore[assignment]
        self.proto.makeConnection(self.transport)
        self.greeting = self.take()

    def flush(self) -> None:
        """End the reactor turn: pending output is written to the transport."""
        self.proto.factory.batcher.flush()

    def take(self) -> bytes:
        """Everything written since the last take (the client reads it all)."""
        self.flush()
        return self.transport.drain()

    def send(self, data: bytes) -> bytes:
        """Feed bytes in one chunk and return what the server wrote back,
        once the turns it takes are over (a large read of many lines is
        handled a thousand lines a turn)."""
        self.proto.dataReceived(data)
        clock = getattr(self.proto, "hub", None) and self.proto.hub.clock
        if isinstance(clock, Clock):
            clock.advance(0)
        return self.take()

    def cmd(self, line: str) -> str:
        """Send one line; return the reply text, CRLFs and all."""
        return self.send(line.encode() + b"\n").decode("utf-8", "replace")

    def lose(self) -> None:
        """The peer goes away."""
        self.proto.connectionLost(None)

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting


class Recorder:
    """A Session that keeps what it is given, and is never behind."""

    msgs_in = 0
    msgs_out = 0

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def deliver(self, msg: Message) -> bool:
        self.messages.append(msg)
        return False

    def pace(self) -> bool:
        return False

    def charge_stall(self) -> None:
        pass

    def yield_turn(self) -> None:
        pass

    def channel_dropped(self, channel: str) -> None:
        pass

    def close(self, reason: CloseReason, text: str = "") -> None:
        pass

    def pending_bytes(self) -> int:
        return 0
