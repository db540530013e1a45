"""A listener: one endpoint string served by one factory, failing loudly at start."""
from __future__ import annotations

import os
import stat
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from txpubsub.server.startup import StartError


class ListenError(StartError):
    """A listener could not start: the server stops with this one line."""


def listen_failure_reason(failure: Failure) -> str:
    """Why a listen failed, in the words of the OS (no errno, no repr of a path)."""
    error = failure.value
    if isinstance(error, CannotListenError):
        if error.socketError == "Cannot acquire lock":
            return "another server is running on this socket (its lock file is held)"
        if isinstance(error.socketError, OSError):
            error = error.socketError
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return failure.getErrorMessage()


class ListenerService(Service):
    """Listens on a Twisted endpoint string while running.

    Unlike strports.service, a listener that cannot start (port taken, bad
    path) stops the server at start with one line naming it, rather than
    logging a traceback and serving without it.

    ``socket_path`` is the file of a ``unix:...:lockfile=1`` listener: if
    the start fails, its lock file (``PATH.lock``, which Twisted keeps when
    bind fails) and a socket made before the failure are removed, so nothing
    is left behind.
    """

    _log = Logger()
    # The DoorFactory behind a Site (--ws), whose settings a reload changes.
    doors: Any = None

    def __init__(self, reactor: object, description: str, factory: IProtocolFactory,
                 socket_path: str | None = None) -> None:
        self.reactor = reactor
        self.description = description
        self.factory = factory
        # Parsed now (no listening yet), so the endpoint can be asked about
        # itself (mtls: certificates) before and while it serves.
        self.endpoint = serverFromString(reactor, description)
        self.socket_path = socket_path
        self.port: IListeningPort | None = None
        self._listening: Deferred[IListeningPort] | None = None

    def privilegedStartService(self) -> None:
        # Listen before twistd drops privileges, so ports under 1024 work.
        Service.privilegedStartService(self)
        failures: list[Failure] = []
        self._listening = self.endpoint.listen(self.factory)
        self._listening.addCallbacks(self._started, failures.append)
        if failures:
            self._remove_own_files()
            raise ListenError(f"txpubsub: cannot listen on {self.description}: "
                              f"{listen_failure_reason(failures[0])}")

    def _started(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        self._log.info(
            "txpubsub listening on {description} ({address})",
            description=self.description,
            address=port.getHost(),
        )
        return port

    def abandon(self) -> None:
        """The server's start failed and the reactor will not run: stop
        listening, and remove our socket and lock files now (stopListening
        would only remove them from within the reactor)."""
        port, self.port = self.port, None
        if port is not None:
            port.stopListening()
            self._remove_own_files()

    def _remove_own_files(self) -> None:
        if self.socket_path is None:
            return
        lock = self.socket_path + ".lock"
        try:
            if os.readlink(lock) != str(os.getpid()):
                return  # another process's lock, or none
        except OSError:
            return
        try:
            if stat.S_ISSOCK(os.lstat(self.socket_path).st_mode):
                os.unlink(self.socket_path)
        except OSError:
            pass
        try:
            os.unlink(lock)
        except OSError:
            pass

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
