"""Graceful stop of the whole server (admin SHUTDOWN, SIGTERM and SIGINT), and
reloading certificates and the users file (admin RELOAD, SIGHUP).

Stop accepting, tell every client ``BYE shutdown`` (spread over a grace
period if asked, as NATS's lame-duck mode does, so they do not all come back
at once), wait until they are gone (each is let go of within seconds), then
stop the reactor; the hub's store is flushed as services stop, and the
process exits 0.
"""
from __future__ import annotations

import signal
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger

from txpubsub.core.hub import Hub
from txpubsub.doors.session import CLOSE_GRACE
from txpubsub.server.listeners import ListenerService


def reload_certificates(listeners: list[ListenerService]) -> tuple[int, int]:
    """Read every mtls: listener's certificate files again: (reloaded, failed)."""
    try:
        from txpubsub.server.tls import reload_endpoints
    except ImportError:  # no pyOpenSSL: no TLS listeners either
        return 0, 0
    done, errors = reload_endpoints([listener.endpoint for listener in listeners])
    Logger().info("certificates reloaded for {done} listeners, {failed} failed",
                  done=done, failed=len(errors))
    return done, len(errors)


class Lifecycle(Service):
    """Owns the server's way out."""

    _log = Logger()

    def __init__(self, reactor: Any, hub: Hub, listeners: list[ListenerService],
                 handle_signals: bool = True, users: Any = None,
                 reread: Callable[[], str | None] | None = None) -> None:
        self.reactor = reactor
        # --config: parse the options again and apply what may change (None: why not).
        self.reread = reread
        self.users = users  # the Authenticator (txpubsub.auth) with --users, else None
        self.hub = hub
        self.listeners = listeners
        self.handle_signals = handle_signals
        self.stopping: Deferred[None] | None = None
        # systemd's Notifier (txpubsub.server.notify), told of stops and reloads.
        self.notifier: Any = None

    def startService(self) -> None:
        Service.startService(self)
        if self.handle_signals:
            # After the reactor's own handlers, which would make twistd exit
            # "killed by SIGTERM" rather than 0 after a clean stop.
            self.reactor.callWhenRunning(self._install)

    def _install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_hangup)

    def _on_hangup(self, signum: int, frame: object) -> None:
        self.reactor.callFromThread(self.reload)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.reactor.callFromThread(self._signalled, signum)

    def _signalled(self, signum: int) -> None:
        if self.stopping is None:
            self._log.info("signal {signum}: shutting down", signum=signum)
            self.shutdown(0.0)
        else:
            self._log.info("signal {signum} again: stopping now", signum=signum)
            self.reactor.stop()

    def reload(self) -> tuple[int, int, str]:
        """SIGHUP and admin RELOAD: read the --config file, certificate files
        and the users file again: (reloaded, failed, why something failed or "")."""
        if self.notifier is not None:
            self.notifier.reloading()
        done, failed = reload_certificates(self.listeners)
        whys = []
        if self.reread is not None:
            why = self.reread()
            if why is None:
                done += 1
            else:
                failed += 1
                whys.append(f"config not reloaded, old options kept: {why}")
        if self.users is not None:
            why = self.users.reload()
            if why is None:
                done += 1
            else:
                failed += 1
                whys.append(f"users file not reloaded, old rules kept: {why}")
        if self.notifier is not None:
            self.notifier.reloaded()
        return done, failed, "; ".join(whys)

    def shutdown(self, grace: float = 0.0) -> Deferred[None]:
        """Stop listening, close every client over ``grace`` seconds, stop the reactor."""
        if self.stopping is None:
            self.stopping = Deferred.fromCoroutine(self._shutdown(grace))
        return self.stopping

    async def _shutdown(self, grace: float) -> None:
        if self.notifier is not None:
            self.notifier.shutting_down()
        self._log.info("shutting down: {clients} clients, grace {grace} s",
                       clients=len(self.hub.clients()), grace=grace)
        await gatherResults([maybeDeferred(listener.stopService)
                             for listener in self.listeners if listener.running])
        try:
            await self.hub.close_all(grace).addTimeout(grace + CLOSE_GRACE + 5, self.reactor)
        except Exception:
            self._log.failure("clients did not all go in time; stopping anyway")
        if self.reactor.running:
            self.reactor.stop()
