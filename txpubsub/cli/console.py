"""What a command prints, and how a Twisted command runs to its exit status.

Results go to stdout as bytes (payloads exactly as sent); notices and errors
go to stderr as one line each, ``txpubsub: ...``. Once the outcome is known
(an error, Ctrl-C, a reader that went away) nothing more is said: a refusal
is not followed by "reconnecting".
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Coroutine
from typing import IO, Any, Callable, cast

STATUS_SIGINT = 130
STATUS_SIGTERM = 143


class Failed(Exception):
    """An error for the user: printed as one line, exit status 1."""


class Console:
    """stdout for results, stderr for notices; quiet once the outcome is decided."""

    def __init__(self, stdout: IO[Any] | None = None, stderr: IO[str] | None = None) -> None:
        out: IO[Any] = stdout if stdout is not None else sys.stdout
        self._stdout: IO[bytes] = getattr(out, "buffer", out)
        self._stderr = stderr if stderr is not None else sys.stderr
        self.quiet = False
        self.stdout_closed = False
        self.stdout_status = 0  # the exit status once stdout is gone: 1 if it failed
        # Called once when the reader of stdout goes away (`| head -1`).
        self.on_stdout_closed: Callable[[], object] | None = None

    def out(self, data: bytes) -> bool:
        """Write bytes to stdout now; False once nobody reads them any more."""
        if self.stdout_closed:
            return False
        try:
            self._stdout.write(data)
            self._stdout.flush()
        except (BrokenPipeError, ValueError):
            self._closed()
            return False
        except OSError as e:
            if e.errno not in (32, 104):  # not EPIPE, ECONNRESET: a full disk, say
                self.say(f"cannot write to stdout: {e.strerror or e}")
                self.stdout_status = 1
            self._closed()
            return False
        return True

    def line(self, text: str) -> bool:
        return self.out(text.encode("utf-8", "surrogateescape") + b"\n")

    def _closed(self) -> None:
        self.stdout_closed = True
        try:
            # What is still buffered would fail again when Python flushes at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
        if self.on_stdout_closed is not None:
            self.on_stdout_closed()

    def say(self, text: str) -> None:
        """One line on stderr, unless the outcome is already decided."""
        if self.quiet:
            return
        try:
            self._stderr.write(f"txpubsub: {text}\n")
            self._stderr.flush()
        except OSError:
            pass


def error_text(failure: Any) -> str:
    """The one line that says why a command failed."""
    from twisted.internet.defer import FirstError

    from txpubsub.client import CommandError, ServerClosed

    if failure.check(FirstError):
        return error_text(failure.value.subFailure)
    if failure.check(Failed):
        return str(failure.value)
    if failure.check(CommandError):
        return f"the server refused: -ERR {failure.value.code} {failure.value.text}"
    if failure.check(ServerClosed):
        return f"the server closed the connection ({failure.value.reason})"
    value = failure.value
    return str(value).strip() or type(value).__name__


Command = Callable[[Any, argparse.Namespace, Console], Coroutine[Any, Any, int]]


def run_twisted(command: Command, args: argparse.Namespace, console: Console) -> int:
    """Run ``command`` on the reactor; return its exit status.

    Ctrl-C (130), SIGTERM (143) and a closed stdout (0) cancel the command,
    which stops its connections in its ``finally`` (saying QUIT); nothing is
    said on the way out. A second signal stops at once.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import CancelledError, Deferred
    from twisted.internet.interfaces import IReactorThreads

    status: list[int] = []
    interrupted: list[int] = []
    running: list[Deferred[int]] = []  # the command, once started

    def finish(code: int) -> None:
        if status:
            return  # the first reason to stop is the exit status
        status.append(code)
        console.quiet = True
        if reactor.running:
            reactor.stop()

    def succeeded(code: object) -> None:
        if interrupted:  # it finished after being told to stop: say why it stopped
            finish(interrupted[0])
            return
        finish(code if isinstance(code, int) else 0)

    def failed(failure: Any) -> None:
        if interrupted and failure.check(CancelledError):
            finish(interrupted[0])
            return
        console.say(error_text(failure))
        finish(interrupted[0] if interrupted else 1)

    def interrupt(code: int) -> None:
        console.quiet = True
        if interrupted or not running or running[0].called:
            finish(interrupted[0] if interrupted else code)
            return
        interrupted.append(code)
        running[0].cancel()

    def install() -> None:
        # The reactor provides IReactorThreads; Twisted types `reactor` with fewer.
        threads = cast(IReactorThreads, reactor)
        signal.signal(signal.SIGINT,
                      lambda *a: threads.callFromThread(interrupt, STATUS_SIGINT))
        signal.signal(signal.SIGTERM,
                      lambda *a: threads.callFromThread(interrupt, STATUS_SIGTERM))

    console.on_stdout_closed = lambda: interrupt(console.stdout_status)
    reactor.callWhenRunning(install)
    done: Deferred[int] = Deferred.fromCoroutine(command(reactor, args, console))
    running.append(done)
    done.addCallbacks(succeeded, failed)
    if not status:
        reactor.run()
    return status[0] if status else 1
