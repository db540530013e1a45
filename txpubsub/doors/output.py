"""Getting bytes out: one write per connection per reactor turn.

Twisted's ``FileDescriptor.write`` buffers, registers the socket for
writability, and sends on the next pass of the reactor: one call, and two
``epoll_ctl``, per write. A publish fanned out to many connections, or many
publishes arriving in one read, would pay that per delivery. Instead each
connection collects its output during a turn of the reactor, and a Batcher
flushes every connection that has some once per turn, before the reactor
polls again (as Redis writes replies before its next poll). When Twisted has
nothing queued for a plain TCP or Unix socket, the flush sends straight to
the socket, and only a partial send is left to Twisted.
"""
from __future__ import annotations

import socket
from typing import Any, Protocol

from twisted.internet import tcp, unix
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IReactorTime, ITransport
from twisted.logger import Logger

# Transports whose socket we may write to directly: plain TCP and Unix
# server connections, not TLS (whose transport proxies the same attributes).
_DIRECT_TYPES = (tcp.Server, unix.Server)


class Flushable(Protocol):
    def flush(self) -> None: ...


class Batcher:
    """Flushes connections with pending output once per reactor turn.

    One per server, shared by every door (they share the reactor's turns).
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._dirty: list[Flushable] = []
        self._call: Any = None

    def add(self, conn: Flushable) -> None:
        """``conn`` has output this turn: flush it before the next poll."""
        self._dirty.append(conn)
        if self._call is None:
            # callLater(0) runs after this pass's I/O, before the next poll.
            self._call = self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        """Write out every connection with pending output (normally at the turn's end)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            try:
                conn.flush()
            except Exception:
                self._log.failure("flushing {conn!r} failed", conn=conn)


def unsent_bytes(transport: object) -> int:
    """Bytes written to a transport that the kernel has not taken yet.

    Twisted has no public API for this; FileDescriptor keeps them in
    ``dataBuffer`` (from ``offset``) and ``_tempDataBuffer``. A TLS transport
    wraps a TCP one and holds cleartext in ``_appSendBuffer`` until its
    handshake is done (it forwards unknown attributes to the TCP transport,
    so only its own ``__dict__`` is read here), and a BufferingTLSTransport
    also up to 64 KB of small writes in ``_aggregator._buffer``. Any other transport
    (StringTransport in tests) counts what it holds.
    """
    total = 0
    for _ in range(4):
        if isinstance(transport, FileDescriptor):
            return total + len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        own = getattr(transport, "__dict__", {})
        total += sum(map(len, own.get("_appSendBuffer", ())))
        # BufferingTLSTransport (Twisted >= 22.8) holds small writes for a turn.
        total += sum(map(len, getattr(own.get("_aggregator"), "_buffer", ())))
        inner = own.get("transport")
        if inner is None:
            break
        transport = inner
    value = getattr(transport, "value", None)
    return total + (len(value()) if value is not None else 0)


def direct_socket(transport: ITransport) -> socket.socket | None:
    """The socket of a plain TCP/Unix transport, for ``send_now``; else None."""
    if type(transport) in _DIRECT_TYPES:
        return transport.socket  # type: ignore[attr-defined]
    return None


def send_now(transport: Any, sock: socket.socket | None, data: bytes) -> None:
    """Write ``data``: straight to the socket if Twisted holds nothing for it."""
    if (sock is not None and not transport.dataBuffer and not transport._tempDataLen
            and transport.connected and not transport.disconnecting):
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = 0  # let Twisted's own write find the error and close
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
