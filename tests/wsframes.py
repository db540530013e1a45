"""WebSocket frames for tests: a client's masked frames, and the server's output parsed."""
from __future__ import annotations

import json
import struct
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from txpubsub.core.hub import Hub
from txpubsub.doors.session import DoorSettings
from txpubsub.doors.websocket import JsonDoor, JsonDoorFactory, JsonSocketFactory

from .helpers import ConsumerTransport

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\n"
    b"Host: example.test:8080\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: txpubsub.json\r\n"
)


def client_frame(payload: bytes, opcode: int = 1, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    """One final frame as a client sends it (masked)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split the server's (unmasked) output into (opcode, payload)."""
    frames = []
    pos = 0
    while pos < len(data):
        opcode = data[pos] & 0x0F
        size = data[pos + 1] & 0x7F
        pos += 2
        if size == 126:
            (size,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif size == 127:
            (size,) = struct.unpack_from("!Q", data, pos)
            pos += 8
        frames.append((opcode, data[pos:pos + size]))
        pos += size
    return frames


class SocketTransport(ConsumerTransport):
    """Like a TCP transport, unregistering no producer is not an error
    (autobahn unregisters whatever is there when it drops a connection)."""

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


class WsConn:
    """One fake WebSocket client of the JSON door, past its opening handshake."""

    _port = 50000

    def __init__(self, hub: Hub, settings: DoorSettings | None = None,
                 origins: tuple[str, ...] = (), headers: bytes = b"",
                 factory: JsonSocketFactory | None = None, listening_on: str = "10.0.0.1",
                 host: bytes = b"example.test:8080") -> None:
        WsConn._port += 1
        self.transport = SocketTransport(
            peerAddress=IPv4Address("TCP", "127.0.0.1", WsConn._port),
            hostAddress=IPv4Address("TCP", listening_on, 8080))
        if factory is None:
            factory = JsonSocketFactory(JsonDoorFactory(hub, "ws:test", settings), origins)
        factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
        self.factory = factory
        self.proto: JsonDoor = factory.buildProtocol(None)  # type: ignore[assignment]
        self.proto.makeConnection(self.transport)
        self.proto.dataReceived(
            HANDSHAKE.replace(b"Host: example.test:8080", b"Host: " + host) + headers + b"\r\n")
        self.flush()
        head, _, rest = self.transport.drain().partition(b"\r\n\r\n")
        self.response = head
        self.greeting = [json.loads(p) for _, p in server_frames(rest)]

    def flush(self) -> None:
        self.factory.doors.batcher.flush()

    def frames(self) -> list[tuple[int, bytes]]:
        """Every frame written since the last call."""
        self.flush()
        return server_frames(self.transport.drain())

    def take(self) -> list[Any]:
        """Every text frame written since the last call, as JSON."""
        return [json.loads(p) for op, p in self.frames() if op == 1]

    def send_frame(self, payload: bytes, opcode: int = 1) -> None:
        self.proto.dataReceived(client_frame(payload, opcode))

    def ask(self, request: Any) -> list[Any]:
        """Send one JSON request and return every object written back."""
        self.send_frame(json.dumps(request).encode())
        return self.take()

    def lose(self) -> None:
        self.proto.connectionLost(Failure(ConnectionDone()))

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)
