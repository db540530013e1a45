"""A real-socket WebSocket test client (autobahn's): JSON objects in, waits with timeouts."""
from __future__ import annotations

import json
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS

from .netclient import WAIT


class JsonClient(WebSocketClientProtocol):
    """Collects the server's JSON objects; ``closed`` fires with (code, reason)."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: list[dict[str, Any]] = []
        self.opened: Deferred[None] = Deferred()
        self.closed: Deferred[tuple[int | None, str | None]] = Deferred()
        self._waiters: list[tuple[Callable[[list[dict[str, Any]]], bool], Deferred[Any]]] = []
        self._refs = 0

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.objects.append(json.loads(payload))
        for waiter in list(self._waiters):
            if waiter[0](self.objects):
                self._waiters.remove(waiter)
                waiter[1].callback(self.objects)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"refused: {code} {reason}"))
        if not self.closed.called:
            # The server's close frame if one came, even when the TCP side was cut.
            self.closed.callback((self.remoteCloseCode or code, self.remoteCloseReason or reason))

    def send(self, obj: Any) -> None:
        self.sendMessage(json.dumps(obj).encode())

    def wait(self, predicate: Callable[[list[dict[str, Any]]], bool]) -> Deferred[Any]:
        """Fires once ``predicate(objects)`` holds; fails after WAIT seconds."""
        d: Deferred[Any] = Deferred()
        if predicate(self.objects):
            d.callback(self.objects)
            return d
        self._waiters.append((predicate, d))
        return d.addTimeout(WAIT, reactor)

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send a request with a fresh ref and return its reply."""
        self._refs += 1
        ref = f"r{self._refs}"
        self.send({**request, "ref": ref})
        objects = await self.wait(lambda objs: any(o.get("ref") == ref for o in objs))
        return next(o for o in objects if o.get("ref") == ref)

    async def close(self) -> None:
        if not self.closed.called:
            self.sendClose(1000)
        await self.closed.addTimeout(WAIT, reactor)


async def ws_connect(port: int, origin: str | None = None, path: str = "/ws",
                     protocols: list[str] | None = None, tls: Any = None,
                     **options: Any) -> JsonClient:
    """Open a WebSocket to 127.0.0.1:port (wss with ``tls`` client options)
    and wait for its info object."""
    scheme = "wss" if tls is not None else "ws"
    factory = WebSocketClientFactory(f"{scheme}://127.0.0.1:{port}{path}", origin=origin,
                                     protocols=protocols or ["txpubsub.json"])
    factory.protocol = JsonClient
    if options:
        factory.setProtocolOptions(**options)
    endpoint: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=WAIT)
    if tls is not None:
        endpoint = wrapClientTLS(tls, endpoint)
    client: JsonClient = await endpoint.connect(factory).addTimeout(WAIT, reactor)
    await client.opened.addTimeout(WAIT, reactor)
    await client.wait(lambda objs: len(objs) >= 1)
    return client
