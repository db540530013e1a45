"""The ``--ws`` listener's HTTP side: one twisted.web ``Site`` serving the web
console's files at ``/`` and the JSON WebSocket at ``/ws``, nothing else."""
from __future__ import annotations

import os
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.python.filepath import FilePath
from twisted.web import pages, resource, static
from twisted.web.server import Request, Site

from txpubsub.doors.websocket import JsonSocketFactory

CONSOLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "console")

# The page loads nothing from elsewhere and talks only to its own server.
_HEADERS = {
    b"Content-Security-Policy": b"default-src 'self'; connect-src 'self' ws: wss:; "
                               b"img-src 'self' data:; frame-ancestors 'none'",
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"Cache-Control": b"no-cache",
}


class ConsoleFiles(static.File):
    """The console's static files: no directory listings, no dot files, no NULs."""

    def directoryListing(self) -> resource.IResource:
        return pages.notFound()

    def getChild(self, path: bytes, request: Request) -> Any:
        if path.startswith(b".") or b"\0" in path:  # a NUL would reach os.stat
            return pages.notFound()
        return super().getChild(path, request)

    def render(self, request: Request) -> Any:
        for name, value in _HEADERS.items():
            request.setHeader(name, value)
        return super().render(request)


class UpgradeResource(WebSocketResource):
    """autobahn's resource, minus the HTTPChannel's hold on the connection.

    The HTTPChannel registered itself as the transport's producer and keeps an
    idle timeout; once autobahn takes the transport over, the session must be
    the producer (real backpressure) and the HTTP timeout must not fire
    (ECOSYSTEM.md section 2).
    """

    def render(self, request: Request) -> Any:
        if not request.requestHeaders.hasHeader(b"upgrade"):
            request.setResponseCode(426)
            request.setHeader(b"Upgrade", b"websocket")
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"This is txpubsub's WebSocket (JSON); see docs/websocket.md.\n"
        channel = request.channel
        transport: Any = channel.transport
        if transport is not None:
            transport.unregisterProducer()
            channel.setTimeout(None)
        return super().render(request)


def console_root(sockets: JsonSocketFactory, directory: str = CONSOLE) -> resource.Resource:
    """``/`` and the console's files, with the WebSocket at ``/ws``."""
    root = ConsoleFiles(FilePath(directory).path)
    root.putChild(b"ws", UpgradeResource(sockets))
    return root


def console_site(sockets: JsonSocketFactory) -> Site:
    """The Site for one ``--ws`` listener.

    A connection idle for the handshake timeout is dropped: twisted.web's own
    60 s would let unfinished upgrade requests hold sockets (they are not
    clients yet, so --max-clients does not count them), and autobahn's
    openHandshakeTimeout never runs under a Site.
    """
    site = Site(console_root(sockets), timeout=sockets.doors.settings.handshake_timeout)
    site.noisy = False
    site.displayTracebacks = False
    return site
