"""Socket activation: a server started by systemd-socket-activate serves the
socket it inherits (Twisted's systemd: endpoint), as systemd would start it."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from .netclient import WAIT, LineClient, connect
from .test_twistd import twistd

ACTIVATE = shutil.which("systemd-socket-activate")


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on (for systemd-socket-activate's -l)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Activator(ProcessProtocol):
    """systemd-socket-activate's output (then the server's, which inherits it)."""

    def __init__(self) -> None:
        self.output = b""
        self.listening: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if b"Listening on" in self.output and not self.listening.called:
            self.listening.callback(None)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        if not self.listening.called:
            self.listening.errback(RuntimeError(self.output.decode(errors="replace")))
        self.ended.callback(None)


class SocketActivationTests(TestCase):
    timeout = 60

    async def test_answers_ping_on_the_inherited_socket(self) -> None:
        """With port = ["systemd:domain=INET:name=client"] in its config file,
        the server takes the socket systemd-socket-activate made, answers PING
        on it, and an admin RELOAD there applies the file's new limits."""
        if ACTIVATE is None:
            raise SkipTest("systemd-socket-activate not installed (Debian's systemd package)")
        port = free_port()
        directory = tempfile.mkdtemp()
        config = os.path.join(directory, "txpubsub.toml")
        admin = os.path.join(directory, "admin.sock")
        with open(config, "w") as f:
            f.write(f'port = ["systemd:domain=INET:name=client"]\nadmin = "{admin}"\n'
                    "max-payload = 100\n")
        activator = Activator()
        process = reactor.spawnProcess(
            activator, ACTIVATE,
            [ACTIVATE, "-l", f"127.0.0.1:{port}", "--fdname=client",
             *twistd(), "-n", "--pidfile=", "txpubsub", "--config", config],
            env=os.environ.copy(), path=directory,
        )
        self.addCleanup(lambda: None if activator.ended.called else process.signalProcess("KILL"))
        await activator.listening.addTimeout(WAIT, reactor)
        # The first connection starts the server, which then greets it.
        client = await connect(f"tcp:127.0.0.1:{port}")
        self.assertIn(b'"max_payload":100', client.lines[0])
        self.assertEqual(await client.ask(b"PING", b"PONG"), b"PONG")
        with open(config, "a") as f:
            f.write("max-list = 50\n")
        control = LineClient()
        await connectProtocol(UNIXClientEndpoint(reactor, admin), control).addTimeout(
            WAIT, reactor)
        self.assertEqual(await control.ask(b"RELOAD", b"+OK"), b"+OK reloaded 1 failed 0")
        control.transport.loseConnection()
        await client.quit()
        process.signalProcess(signal.SIGTERM)
        await activator.ended.addTimeout(WAIT, reactor)
        self.assertIn(b"txpubsub listening on systemd:domain=INET:name=client", activator.output)
        self.assertIn(b"option max-list changed from 1000 to 50", activator.output)
        self.assertNotIn(b"Traceback", activator.output)

class UnitFileTests(TestCase):
    def test_units_verify(self) -> None:
        """examples/txpubsub.service and .socket pass systemd-analyze verify
        (with ExecStart pointing at this checkout's twistd)."""
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise SkipTest("systemd-analyze not installed (Debian's systemd package)")
        examples = os.path.join(os.path.dirname(__file__), "..", "examples")
        directory = tempfile.mkdtemp()
        for name in ("txpubsub.service", "txpubsub.socket"):
            with open(os.path.join(examples, name)) as f:
                text = f.read().replace("/opt/txpubsub/venv/bin/twistd", twistd()[0])
            with open(os.path.join(directory, name), "w") as f:
                f.write(text)
        result = subprocess.run(
            [analyze, "verify", os.path.join(directory, "txpubsub.socket"),
             os.path.join(directory, "txpubsub.service")],
            capture_output=True, text=True, timeout=60)
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""))
