"""systemd's service notifications (``Type=notify``): sd_notify(3) in a few lines.

Each notification is one datagram to the Unix socket that ``$NOTIFY_SOCKET``
names (a path, or an abstract name written with a leading ``@``). Without
that variable (not under systemd, or ``Type=simple``) nothing is sent and
nothing is opened. The server says ``READY=1`` once every listener listens
and the reactor runs, ``STOPPING=1`` when it starts to shut down,
``RELOADING=1`` then ``READY=1`` around a reload (``Type=notify-reload``),
and ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` while the reactor turns
(``WatchdogSec=``), so a reactor stuck for that long is restarted.
"""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from txpubsub.server.listeners import ListenerService


def notify_address(environ: Mapping[str, str]) -> str | None:
    """The socket address ``$NOTIFY_SOCKET`` names (abstract: a leading NUL), or None."""
    name = environ.get("NOTIFY_SOCKET", "")
    if name.startswith("@"):
        return "\0" + name[1:]
    if name.startswith("/"):
        return name
    return None  # unset, empty, or a kind we do not speak (vsock:)


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between two ``WATCHDOG=1`` (half ``$WATCHDOG_USEC``), or None if
    systemd asks for none, or asks another process (``$WATCHDOG_PID``)."""
    usec = environ.get("WATCHDOG_USEC", "")
    watched = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if watched and watched != str(pid):
        return None
    return int(usec) / 1e6 / 2


class Notifier(Service):
    """Tells systemd how the server is doing, when it runs under ``Type=notify``."""

    _log = Logger()

    def __init__(self, reactor: Any, listeners: list[ListenerService],
                 environ: Mapping[str, str] | None = None) -> None:
        self.reactor = reactor
        self.listeners = listeners
        environ = os.environ if environ is None else environ
        self.address = notify_address(environ)
        self.interval = watchdog_interval(environ, os.getpid())
        self._socket: socket.socket | None = None
        self._watchdog: LoopingCall | None = None
        self._failed = False  # a send failed: said once in the log
        self.ready = False
        self.stopping = False

    def startService(self) -> None:
        Service.startService(self)
        if self.address is None:
            return
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self.reactor.callWhenRunning(self._started)

    def _started(self) -> None:
        if not self.running or self.stopping:
            return
        down = [listener.description for listener in self.listeners if listener.port is None]
        if down:
            self._log.error("systemd: not ready, not listening on {down}; READY=1 not sent",
                            down=", ".join(down))
            return
        self.ready = True
        self.send("READY=1")
        if self.interval is not None:
            self._watchdog = LoopingCall(self.send, "WATCHDOG=1")
            self._watchdog.clock = self.reactor
            self._watchdog.start(self.interval, now=True)

    def reloading(self) -> None:
        """A reload begins (SIGHUP, admin RELOAD); ``reloaded`` follows it."""
        if self.ready and not self.stopping:
            monotonic = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            self.send(f"RELOADING=1\nMONOTONIC_USEC={monotonic}")

    def reloaded(self) -> None:
        if self.ready and not self.stopping:
            self.send("READY=1")

    def shutting_down(self) -> None:
        """The server stops (once; SIGTERM, admin SHUTDOWN or twistd stopping)."""
        if self.stopping or self._socket is None:
            return
        self.stopping = True
        self.send("STOPPING=1")

    def stopService(self) -> None:
        # After a graceful shutdown's drain (WATCHDOG=1 went on meanwhile).
        self.shutting_down()
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        Service.stopService(self)

    def send(self, state: str) -> None:
        """One notification; a failure is logged (once) and never stops the server."""
        if self._socket is None or self.address is None:
            return
        try:
            self._socket.sendto(state.encode(), self.address)
        except OSError as e:
            if not self._failed:
                self._failed = True
                shown = self.address.replace("\0", "@")
                self._log.warn("systemd: cannot notify {address}: {why}", address=shown,
                               why=e.strerror or str(e))
