"""The whole server as one service, and how a start that fails is reported.

twistd starts the services after it has daemonized. Its waiting parent
process learns how the start went from a status pipe that twistd writes to
only when starting raises an ``Exception``; a ``SystemExit`` passes it by,
and the parent waits forever (it holds the pipe's write end itself). So a
part that cannot start raises ``StartError``, and ``ServerService`` says
why: through the status pipe when daemonized, as the exit message in both
modes. It removes the pid file twistd wrote and exits 1, leaving no socket
or lock file of its own behind.
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any, Callable

from twisted.application.service import MultiService
from twisted.logger import ILogObserver, Logger
from twisted.python.components import Componentized

# twistd's parent reads at most 100 bytes from the status pipe: b"1 " and the reason.
STATUS_PIPE_TEXT = 98


class StartError(Exception):
    """A part of the server cannot start; the text is the one line a user sees."""


class ServerService(MultiService):
    """Every service of the server; a StartError in any of them ends the process."""

    _log = Logger()
    # Under twistd: the log observer the options ask for (None: twistd's own).
    make_log_observer: Callable[[], ILogObserver | None] | None = None

    def __init__(self, twistd_config: MutableMapping[str, Any] | None = None) -> None:
        super().__init__()
        self.twistd_config = twistd_config

    def setServiceParent(self, parent: Any) -> None:
        # twistd puts this service in its Application, then logs to the
        # Application's ILogObserver if it has one (and no --logger was given).
        if self.make_log_observer is not None and isinstance(parent, Componentized):
            observer = self.make_log_observer()
            if observer is not None:
                parent.setComponent(ILogObserver, observer)
        super().setServiceParent(parent)

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except StartError as e:
            self.fail(str(e))

    def startService(self) -> None:
        try:
            super().startService()
        except StartError as e:
            self.fail(str(e))

    def fail(self, reason: str) -> None:
        """Undo what started, tell twistd's parent why, remove the pid file, exit 1."""
        for service in self:
            abandon = getattr(service, "abandon", None)
            if abandon is not None:
                abandon()
        config = self.twistd_config
        if config is not None:
            pipe = config.get("statusPipe")
            if pipe is not None:
                # A daemon: the log file is where the whole line goes, written
                # before the waiting parent is told (it prints the line and
                # exits 1); postApplication must not write to the pipe again.
                self._log.error("{reason}", reason=reason)
                config["statusPipe"] = None
                text = reason.encode("utf-8", "replace")
                if len(text) > STATUS_PIPE_TEXT:
                    text = text[:STATUS_PIPE_TEXT - 3] + b"..."
                # The pid file goes first: once told, the parent exits, and a
                # script that looks for the pid file then must not find it.
                remove_own_pidfile(config.get("pidfile"))
                os.write(pipe, b"1 " + text)
                os.close(pipe)
                raise SystemExit(1)
            remove_own_pidfile(config.get("pidfile"))
        # In the foreground, twistd prints the message (to its log) and exits 1.
        raise SystemExit(reason)


def remove_own_pidfile(path: str | None) -> None:
    """Remove twistd's pid file if it names this process (twistd only does
    so itself after a start that raised an Exception)."""
    if not path:
        return
    try:
        with open(path, "rb") as f:
            ours = f.read().strip() == b"%d" % os.getpid()
        if ours:
            os.unlink(path)
    except OSError:
        pass
