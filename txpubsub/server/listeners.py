"""A listener: one endpoint string served by one factory, failing loudly at start."""
from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.logger import Logger
from twisted.python.failure import Failure


class ListenError(SystemExit):
    """A listener could not start. A SystemExit, so twistd prints one line and exits 1."""


class ListenerService(Service):
    """Listens on a Twisted endpoint string while running.

    Unlike strports.service, a listener that cannot start (port taken, bad
    path) stops the server at start with one line naming it, rather than
    logging a traceback and serving without it.
    """

    _log = Logger()

    def __init__(self, reactor: object, description: str, factory: IProtocolFactory) -> None:
        self.reactor = reactor
        self.description = description
        self.factory = factory
        # Parsed now (no listening yet), so the endpoint can be asked about
        # itself (mtls: certificates) before and while it serves.
        self.endpoint = serverFromString(reactor, description)
        self.port: IListeningPort | None = None
        self._listening: Deferred[IListeningPort] | None = None

    def privilegedStartService(self) -> None:
        # Listen before twistd drops privileges, so ports under 1024 work.
        Service.privilegedStartService(self)
        failures: list[Failure] = []
        self._listening = self.endpoint.listen(self.factory)
        self._listening.addCallbacks(self._started, failures.append)
        if failures:
            why = failures[0].getErrorMessage()
            if "Cannot acquire lock" in why:
                why = "another server is running on this socket (its lock file is held)"
            raise ListenError(f"txpubsub: cannot listen on {self.description}: {why}")

    def _started(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        self._log.info(
            "txpubsub listening on {description} ({address})",
            description=self.description,
            address=port.getHost(),
        )
        return port

    def startService(self) -> None:
        Service.startService(self)
        if self._listening is None:
            self.privilegedStartService()

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        port, self.port = self.port, None
        self._listening = None
        if port is not None:
            return port.stopListening()
        return None
