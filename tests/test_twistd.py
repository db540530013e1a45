"""The real `twistd -n txpubsub` in a subprocess, as a user starts it."""
from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
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

    def processEnded(self, reason: Failure) -> None:
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
        shown = " ".join(result.stdout.split())  # however the columns wrap
        for text in ("--port", "--max-line", "[default: 65536]", "--max-payload",
                     "--max-clients", "--max-subscriptions", "--no-auto-create",
                     "--max-list", "--max-channels", "--max-subscriptions-all"):
            self.assertIn(text, shown)

    def test_bad_option_is_usage_error(self) -> None:
        """A bad value: one clear line naming it and exit 1, no traceback."""
        result = self.run_twistd("-n", "txpubsub", "--max-line", "lots")
        self.assertEqual(result.returncode, 1)
        self.assertIn("expected a whole number", result.stdout + result.stderr)
        self.assertNotIn("Traceback", result.stdout + result.stderr)

    def test_usage_error_names_the_option(self) -> None:
        """After twistd's usage text, the last line says which option was wrong."""
        result = self.run_twistd("txpubsub", "--max-line", "-1")
        self.assertEqual(result.returncode, 1)
        self.assertTrue(result.stdout.rstrip().endswith(
            "txpubsub: --max-line: expected a whole number of at least 64, got '-1'"),
            result.stdout[-300:])

    def test_bad_option_exits_1_where_twistd_would_exit_0(self) -> None:
        """Under a twistd that exits 0 after a usage error (Twisted before
        26.10, the newest PyPy 3.9 gets), txpubsub prints what twistd would
        and exits 1 itself, so a supervisor sees the failure."""
        from twisted.scripts.twistd import ServerOptions

        from txpubsub.server import tap

        self.patch(tap, "TWISTD_EXITS_ZERO", True)
        arguments = ["-n", "txpubsub", "--max-line", "-1"]
        self.patch(sys, "argv", ["twistd", *arguments])
        printed = io.StringIO()
        self.patch(sys, "stdout", printed)
        with self.assertRaises(SystemExit) as exited:
            ServerOptions().parseOptions(arguments)
        self.assertEqual(exited.exception.code, 1)
        self.assertIn("Usage: twistd [options]", printed.getvalue())
        self.assertTrue(printed.getvalue().rstrip().endswith(
            "twistd -n: --max-line: expected a whole number of at least 64, got '-1'"),
            printed.getvalue()[-300:])

    def test_version_is_txpubsubs(self) -> None:
        """twistd txpubsub --version shows txpubsub's version, not only Twisted's."""
        import txpubsub

        result = self.run_twistd("txpubsub", "--version")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(result.stdout.startswith(f"txpubsub {txpubsub.__version__} (Twisted "))

    def test_help_names_every_listener_kind(self) -> None:
        """--help shows ssl: and mtls: listeners and says where the docs are."""
        result = self.run_twistd("txpubsub", "--help")
        text = " ".join(result.stdout.split())
        for kind in ("tcp:PORT", "unix:PATH", "ssl:PORT", "mtls:PORT", "--time-interval"):
            self.assertIn(kind, text)
        self.assertIn("README.md and docs/ in txpubsub's source tree", text)

    def taken_port(self) -> socket.socket:
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        return taken

    def test_port_in_use_is_one_line(self) -> None:
        """A listener that cannot start: exit 1 with a line naming the listener,
        and no pid file left behind."""
        port = self.taken_port().getsockname()[1]
        workdir = tempfile.mkdtemp()
        result = subprocess.run(
            [*twistd(), "-n", "--pidfile=d.pid", "txpubsub",
             "--port", f"tcp:{port}:interface=127.0.0.1"],
            capture_output=True, text=True, timeout=60, cwd=workdir)
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"txpubsub: cannot listen on tcp:{port}:interface=127.0.0.1: "
                      "Address already in use", result.stdout + result.stderr)
        self.assertNotIn("Traceback", result.stdout + result.stderr)
        self.assertEqual(os.listdir(workdir), [])

    def test_daemon_port_in_use_exits_at_once(self) -> None:
        """Daemon mode (no -n) with the port taken: twistd returns 1 at once with
        the reason, instead of hanging; no pid file is left behind."""
        port = self.taken_port().getsockname()[1]
        workdir = tempfile.mkdtemp()
        result = subprocess.run(
            [*twistd(), "--pidfile=d.pid", "-l", "d.log", "txpubsub",
             "--port", f"tcp:{port}:interface=127.0.0.1"],
            capture_output=True, text=True, timeout=30, cwd=workdir)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(f"txpubsub: cannot listen on tcp:{port}:interface=127.0.0.1: "
                      "Address already in use", result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        self.assertFalse(os.path.exists(os.path.join(workdir, "d.pid")))
        with open(os.path.join(workdir, "d.log")) as log:
            self.assertIn("Address already in use", log.read())

    def test_daemon_starts(self) -> None:
        """Daemon mode that starts: twistd returns 0, the daemon serves, and
        stops on SIGTERM, removing its pid file."""
        workdir = tempfile.mkdtemp()
        pidfile = os.path.join(workdir, "d.pid")
        result = subprocess.run(
            [*twistd(), "--pidfile=d.pid", "-l", "d.log", "txpubsub",
             "--port", "unix:c.sock", "--admin", "none"],
            capture_output=True, text=True, timeout=30, cwd=workdir)
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(pidfile) as f:
            pid = int(f.read())
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(WAIT)
                s.connect(os.path.join(workdir, "c.sock"))
                self.assertTrue(s.recv(1000).startswith(b"INFO "))
        finally:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + WAIT
        while os.path.exists(pidfile) and time.monotonic() < deadline:
            time.sleep(0.05)  # another process: nothing to wait on but its files
        self.assertFalse(os.path.exists(pidfile))
