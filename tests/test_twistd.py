"""The real `twistd -n txpubsub` in a subprocess, as a user starts it."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from .netclient import WAIT, connect


def twistd() -> list[str]:
    """The twistd installed beside this interpreter (the one pip put there)."""
    path = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.exists(path):
        return [path]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class ServerProcess(ProcessProtocol):
    """Watches twistd's log for the listening line and for the exit."""

    def __init__(self) -> None:
        self.output = b""
        self.listening: Deferred[int] = Deferred()
        self.ended: Deferred[object] = Deferred()
        self._waiting: list[tuple[bytes, Deferred[None]]] = []

    def wait_for(self, text: bytes) -> Deferred[None]:
        """Fires once ``text`` has appeared in the server's log (WAIT at most)."""
        d: Deferred[None] = Deferred()
        self._waiting.append((text, d))
        self.outReceived(b"")
        return d.addTimeout(WAIT, reactor)

    def outReceived(self, data: bytes) -> None:
        self.output += data
        found = re.search(rb"txpubsub listening on .*port=(\d+)", self.output)
        if found and not self.listening.called:
            self.listening.callback(int(found.group(1)))
        for waiter in list(self._waiting):
            if waiter[0] in self.output:
                self._waiting.remove(waiter)
                waiter[1].callback(None)

    errReceived = outReceived

    def processEnded(self, reason: object) -> None:
        if not self.listening.called:
            self.listening.errback(RuntimeError(self.output.decode(errors="replace")))
        self.ended.callback(reason.value)  # the exception, not a Failure


class TwistdTests(TestCase):
    timeout = 60

    async def test_start_talk_and_stop(self) -> None:
        """twistd starts the plugin; a client talks; SIGTERM says BYE shutdown, exit 0."""
        server = ServerProcess()
        workdir = tempfile.mkdtemp()
        process = reactor.spawnProcess(
            server, twistd()[0],
            [*twistd(), "-n", "--pidfile=", "txpubsub",
             "--port", "tcp:0:interface=127.0.0.1", "--max-payload", "100"],
            env=os.environ.copy(), path=workdir,
        )
        self.addCleanup(lambda: None if server.ended.called else process.signalProcess("KILL"))
        port = await server.listening.addTimeout(WAIT * 2, reactor)
        client = await connect(f"tcp:127.0.0.1:{port}")
        self.assertIn(b'"max_payload":100', client.lines[0])
        await client.ask(b"SUB news.>", b"+OK")
        await client.ask(b"PUB news.uk hello", b"+OK")
        await client.wait_line(b"MSG news.uk 1 c1 hello")
        process.signalProcess(signal.SIGTERM)
        await client.closed.addTimeout(WAIT, reactor)
        self.assertEqual(client.lines[-1], b"BYE shutdown", client.lines)
        reason = await server.ended.addTimeout(WAIT, reactor)
        self.assertIsInstance(reason, ProcessDone, server.output)
        self.assertNotIn(b"Traceback", server.output)


class CommandLineTests(SynchronousTestCase):
    def run_twistd(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*twistd(), *args], capture_output=True, text=True, timeout=60,
            cwd=tempfile.gettempdir(),
        )

    def test_plugin_listed_outside_checkout(self) -> None:
        """From a directory outside the checkout, twistd --help lists txpubsub."""
        result = self.run_twistd("--help")
        self.assertIn("txpubsub", result.stdout)

    def test_help_lists_options_with_defaults(self) -> None:
        result = self.run_twistd("txpubsub", "--help")
        for text in ("--port", "--max-line", "[default: 65536]", "--max-payload",
                     "--max-clients", "--max-subscriptions", "--no-auto-create"):
            self.assertIn(text, result.stdout)

    def test_bad_option_is_usage_error(self) -> None:
        """A bad value: one clear line naming it and exit 1, no traceback."""
        result = self.run_twistd("-n", "txpubsub", "--max-line", "lots")
        self.assertEqual(result.returncode, 1)
        self.assertIn("expected a whole number", result.stdout + result.stderr)
        self.assertNotIn("Traceback", result.stdout + result.stderr)

    def test_port_in_use_is_one_line(self) -> None:
        """A listener that cannot start: exit 1 with a line naming the listener."""
        import socket

        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            result = self.run_twistd("-n", "--pidfile=", "txpubsub",
                                     "--port", f"tcp:{port}:interface=127.0.0.1")
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"txpubsub: cannot listen on tcp:{port}:interface=127.0.0.1",
                      result.stdout + result.stderr)
        self.assertNotIn("Traceback", result.stdout + result.stderr)
