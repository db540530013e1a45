"""``--http``: the operations endpoint, /metrics, /healthz and /readyz.

Everything runs in the reactor thread: prometheus_client's own Twisted
resource renders through a WSGI thread pool, where reading the hub would
race with the reactor (ECOSYSTEM.md, Prometheus).
"""
from __future__ import annotations

from typing import Any, Callable

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from txpubsub.core.hub import Hub
from txpubsub.server.listeners import ListenerService
from txpubsub.server.metrics import hub_registry

# How long /readyz waits for the store (or backplane) to answer.
PING_TIMEOUT = 5.0


class Readiness:
    """Whether the server can take clients: why not, or None.

    ``dependencies`` are the parts it needs, by name (the store, Redis);
    one with a ``ping() -> Deferred`` (SqliteStore, RedisBackplane) is
    asked each time, and must answer within PING_TIMEOUT seconds."""

    def __init__(self, reactor: IReactorTime, listeners: list[ListenerService],
                 dependencies: dict[str, Any], stopping: Callable[[], bool]) -> None:
        self.reactor = reactor
        self.listeners = listeners
        self.dependencies = dependencies
        self.stopping = stopping

    def check(self) -> Deferred[str | None]:
        return Deferred.fromCoroutine(self._check())

    async def _check(self) -> str | None:
        if self.stopping():
            return "shutting down"
        down = [listener.description for listener in self.listeners if listener.port is None]
        if down:
            return f"not listening on {', '.join(down)}"
        for name, dependency in self.dependencies.items():
            ping: Callable[[], Deferred[None]] | None = getattr(dependency, "ping", None)
            if ping is None:
                continue
            try:
                await ping().addTimeout(PING_TIMEOUT, self.reactor)
            except TimeoutError:
                return f"{name} unreachable: no answer within {PING_TIMEOUT:g} s"
            except Exception as e:
                return f"{name} unreachable: {e}"
        return None


def _plain(request: Request, code: int, text: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return (text + "\n").encode()


class MetricsResource(Resource):
    """Renders a registry in the reactor thread, in the format the scraper asks for."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        accept = request.getHeader(b"accept")
        encoder, content_type = choose_encoder(accept.decode("latin-1") if accept else "")
        request.setHeader(b"content-type", content_type.encode())
        return encoder(self.registry)


class HealthResource(Resource):
    """/healthz: 200 while the server runs, 503 once it is shutting down."""

    isLeaf = True

    def __init__(self, stopping: Callable[[], bool]) -> None:
        super().__init__()
        self.stopping = stopping

    def render_GET(self, request: Request) -> bytes:
        if self.stopping():
            return _plain(request, 503, "shutting down")
        return _plain(request, 200, "ok")


class ReadyResource(Resource):
    """/readyz: 200 when listening and the store and Redis answer; 503 and why otherwise."""

    isLeaf = True
    _log = Logger()

    def __init__(self, readiness: Readiness) -> None:
        super().__init__()
        self.readiness = readiness

    def render_GET(self, request: Request) -> int:
        gone: list[object] = []
        request.notifyFinish().addErrback(gone.append)

        def answer(why: str | None) -> None:
            if gone:
                return  # the prober hung up
            request.write(_plain(request, 503, why) if why else _plain(request, 200, "ready"))
            request.finish()

        def failed(failure: Failure) -> None:
            self._log.failure("readiness check failed", failure)
            answer("readiness check failed (see the server log)")

        self.readiness.check().addCallback(answer).addErrback(failed)
        return NOT_DONE_YET


class _Root(Resource):
    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()


def ops_site(hub: Hub, readiness: Readiness) -> Site:
    """The --http Site: /metrics, /healthz, /readyz; 404 elsewhere."""
    root = _Root()
    root.putChild(b"metrics", MetricsResource(hub_registry(hub)))
    root.putChild(b"healthz", HealthResource(readiness.stopping))
    root.putChild(b"readyz", ReadyResource(readiness))
    site = Site(root)
    site.noisy = False
    site.displayTracebacks = False
    return site
