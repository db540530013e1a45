"""A small blocking client for scripts: connect, publish, iterate messages.

    with BlockingClient("tcp:127.0.0.1:23400", name="script") as client:  # user=, password=
        client.publish("news.uk", "hello")
        client.subscribe("news.>")
        for msg in client.messages(timeout=5):
            print(msg.channel, msg.text)

It speaks the same protocol through the same parser as the Twisted client,
without reconnecting. Server strings: ``tcp:HOST:PORT``, ``unix:PATH``.
"""
from __future__ import annotations

import socket
from collections import deque
from collections.abc import Iterator
from typing import Any

from txpubsub.client import CommandError, Payload, ServerClosed
from txpubsub.wire.line import is_text
from txpubsub.wire.parser import Delivery, Item, Reply, ServerLine, ServerParser


def open_socket(server: str, timeout: float) -> socket.socket:
    """A connected socket for ``tcp:HOST:PORT`` or ``unix:PATH``."""
    kind, _, rest = server.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(timeout)
        sock.connect(rest)
        return sock
    if kind in ("tcp", "tcp6"):
        host, _, port = rest.rpartition(":")
        return socket.create_connection((host.strip("[]").replace("\\:", ":"), int(port)),
                                        timeout=timeout)
    raise ValueError(f"expected tcp:HOST:PORT or unix:PATH, got {server!r}")


class BlockingClient:
    """One blocking connection; deliveries wait in a queue until read."""

    def __init__(self, server: str = "tcp:127.0.0.1:23400", name: str | None = None,
                 timeout: float = 10.0, user: str | None = None, password: str = "") -> None:
        self.sock = open_socket(server, timeout)
        self.parser = ServerParser()
        self.info: dict[str, Any] = {}
        self._queue: deque[Delivery] = deque()
        self._events: deque[object] = deque()
        self.broken = False
        while not self.info:
            event = self._next()
            if isinstance(event, ServerLine) and event.kind == "INFO" and event.info:
                self.info = event.info
        try:
            if user is not None:
                self.command(f"AUTH {user} {password}")  # a server with --users
            if name:
                self.command(f"NAME {name}")
        except BaseException:
            self.sock.close()  # refused: the caller gets the error, not a socket
            raise

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next(self) -> object:
        while not self._events:
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                # A reply may still come, and would be taken for the next one's.
                self.broken = True
                raise
            if not data:
                raise ServerClosed("lost")
            self._events.extend(self.parser.feed(data))
        return self._events.popleft()

    def command(self, line: str, payload: bytes | None = None) -> tuple[Reply, list[Any]]:
        """Send one command; return its reply and item lines (deliveries queue up)."""
        if self.broken:
            raise ServerClosed("this connection is unusable after a timeout")
        data = line.encode() + b"\r\n" + (payload + b"\r\n" if payload is not None else b"")
        self.sock.sendall(data)
        items: list[Any] = []
        while True:
            event = self._next()
            if isinstance(event, Reply):
                if not event.ok:
                    raise CommandError(event.code, event.text)
                return event, items
            if isinstance(event, Item):
                items.append(event)
            elif isinstance(event, Delivery):
                self._queue.append(event)
            elif isinstance(event, ServerLine):
                self._server_line(event)

    def _server_line(self, event: ServerLine) -> None:
        if event.kind == "PING":
            self.sock.sendall(b"PONG\r\n")
        elif event.kind == "BYE":
            raise ServerClosed(event.text)

    def publish(self, channel: str, payload: Payload) -> int:
        data = payload.encode() if isinstance(payload, str) else payload
        if is_text(data) and len(channel) + len(data) + 5 <= self.info.get("max_line", 65536):
            reply, _ = self.command(f"PUB {channel} {data.decode()}")
        else:
            reply, _ = self.command(f"PUBB {channel} {len(data)}", data)
        return int(reply.text)

    def subscribe(self, pattern: str, last: int | None = None,
                  since: int | None = None) -> tuple[int, bool]:
        """Subscribe (replayed messages queue up first); returns (replayed, partial)."""
        line = f"SUB {pattern}"
        line += f" last={last}" if last is not None else ""
        line += f" since={since}" if since is not None else ""
        reply, _ = self.command(line)
        words = reply.text.split(" ")
        return int(words[2]), words[-1] == "partial"

    def messages(self, timeout: float | None = None) -> Iterator[Delivery]:
        """Deliveries as they come; stops after ``timeout`` seconds of silence."""
        self.sock.settimeout(timeout)
        while True:
            while self._queue:
                yield self._queue.popleft()
            try:
                event = self._next()
            except (socket.timeout, TimeoutError):
                self.broken = False  # silence between messages, not a lost reply
                return
            if isinstance(event, Delivery):
                yield event
            elif isinstance(event, ServerLine):
                self._server_line(event)

    def close(self) -> None:
        try:
            self.sock.sendall(b"QUIT\r\n")
        except OSError:
            pass
        self.sock.close()
