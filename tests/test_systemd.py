"""systemd: socket activation (a server started by systemd-socket-activate
serves the socket it inherits, Twisted's systemd: endpoint), the
notifications of Type=notify (READY=1, STOPPING=1, WATCHDOG=1 to a Unix
datagram socket the test binds), and the example unit files.

There is no systemd here to run the units themselves (systemd-run has no bus
to talk to in a container): each part is tested with what systemd would do."""
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
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import DatagramProtocol, Factory, ProcessProtocol
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from txpubsub.server.listeners import ListenerService
from txpubsub.server.notify import Notifier, notify_address, watchdog_interval

from .netclient import WAIT, LineClient, connect
from .test_twistd import ServerProcess, twistd

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


def bound_datagram_socket(name: str) -> socket.socket:
    """A Unix datagram socket bound where NOTIFY_SOCKET=name points, as systemd's."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:] if name.startswith("@") else name)
    sock.setblocking(False)
    return sock


def received(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on ``sock`` (a send to a Unix socket is there at once)."""
    found = []
    while True:
        try:
            found.append(sock.recv(4096))
        except BlockingIOError:
            return found


class NotifyAddressTests(SynchronousTestCase):
    def test_addresses(self) -> None:
        """A path, an abstract name (@ becomes NUL), and nothing otherwise."""
        self.assertEqual(notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"}),
                         "/run/systemd/notify")
        self.assertEqual(notify_address({"NOTIFY_SOCKET": "@/org/systemd/x"}),
                         "\0/org/systemd/x")
        for environ in ({}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"}):
            self.assertIsNone(notify_address(environ))

    def test_watchdog_interval(self) -> None:
        """Half WATCHDOG_USEC, unless it is meant for another process."""
        self.assertEqual(watchdog_interval({"WATCHDOG_USEC": "30000000"}, 7), 15.0)
        self.assertEqual(watchdog_interval({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "7"}, 7),
                         0.1)
        for environ in ({}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "x"},
                        {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "8"}):
            self.assertIsNone(watchdog_interval(environ, 7))


class NotifierTests(SynchronousTestCase):
    """The Notifier on a MemoryReactorClock, sending to a real datagram socket."""

    def setUp(self) -> None:
        self.name = f"@txpubsub-test-{os.getpid()}-{id(self)}"
        self.sock = bound_datagram_socket(self.name)
        self.addCleanup(self.sock.close)
        self.reactor = MemoryReactorClock()
        self.listener = ListenerService(self.reactor, "tcp:23400", Factory())
        self.environ = {"NOTIFY_SOCKET": self.name, "WATCHDOG_USEC": "2000000"}

    def notifier(self) -> Notifier:
        notifier = Notifier(self.reactor, [self.listener], self.environ)
        notifier.startService()
        self.addCleanup(lambda: None if not notifier.running else notifier.stopService())
        return notifier

    def run_reactor(self) -> None:
        for f, args, kwargs in self.reactor.whenRunningHooks:
            f(*args, **kwargs)

    def test_ready_watchdog_reload_stopping(self) -> None:
        """READY=1 once the reactor runs with every listener up, WATCHDOG=1
        every half WATCHDOG_USEC, RELOADING=1 then READY=1 around a reload,
        STOPPING=1 once."""
        self.listener.startService()
        notifier = self.notifier()
        self.assertEqual(received(self.sock), [])  # the reactor is not running yet
        self.run_reactor()
        self.assertEqual(received(self.sock), [b"READY=1", b"WATCHDOG=1"])
        self.reactor.advance(0.9)
        self.assertEqual(received(self.sock), [])
        self.reactor.advance(0.1)
        self.reactor.advance(1.0)
        self.assertEqual(received(self.sock), [b"WATCHDOG=1", b"WATCHDOG=1"])
        notifier.reloading()
        notifier.reloaded()
        reloading, ready = received(self.sock)
        state, monotonic = reloading.split(b"\n")
        self.assertEqual((state, ready), (b"RELOADING=1", b"READY=1"))
        now = time_usec()
        self.assertTrue(now - 10_000_000 < int(monotonic.split(b"=")[1]) <= now, monotonic)
        notifier.shutting_down()
        notifier.stopService()
        self.reactor.advance(10)
        self.assertEqual(received(self.sock), [b"STOPPING=1"])

    def test_not_ready_while_a_listener_is_down(self) -> None:
        """No READY=1 (systemd's start times out) if a listener is not listening."""
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.notifier()
        self.run_reactor()
        self.assertEqual(received(self.sock), [])
        self.assertEqual(logged[0]["log_format"],
                         "systemd: not ready, not listening on {down}; READY=1 not sent")

    def test_nothing_without_notify_socket(self) -> None:
        """Outside systemd (or Type=simple) no socket is opened, nothing is scheduled."""
        self.environ = {"WATCHDOG_USEC": "2000000"}
        self.listener.startService()
        notifier = self.notifier()
        self.run_reactor()
        notifier.shutting_down()
        self.assertEqual((notifier._socket, self.reactor.getDelayedCalls()), (None, []))

    def test_send_failure_logged_once(self) -> None:
        """A socket that is gone costs one warning, never an exception."""
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.sock.close()
        self.listener.startService()
        notifier = self.notifier()
        self.run_reactor()
        self.reactor.advance(5)
        notifier.stopService()
        warnings = [e for e in logged if e["log_format"].startswith("systemd")]
        self.assertEqual([e["log_format"] for e in warnings],
                         ["systemd: cannot notify {address}: {why}"])
        self.assertEqual(warnings[0]["address"], self.name)

    def test_same_datagram_as_systemd_notify(self) -> None:
        """systemd's own client sends READY=1 to the same @name as we do."""
        notify = shutil.which("systemd-notify")
        if notify is None:
            raise SkipTest("systemd-notify not installed (Debian's systemd package)")
        subprocess.run([notify, "--no-block", "--ready"], check=True, timeout=30,
                       env={**os.environ, "NOTIFY_SOCKET": self.name})
        self.listener.startService()
        self.notifier()
        self.run_reactor()
        theirs, ours, _ = received(self.sock)
        self.assertEqual(theirs, ours)


def time_usec() -> int:
    import time

    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifications(DatagramProtocol):
    """What a server sent to NOTIFY_SOCKET, and Deferreds for what is awaited."""

    def __init__(self) -> None:
        self.states: list[bytes] = []
        self._waiting: list[tuple[bytes, int, Deferred[None]]] = []

    def datagramReceived(self, datagram: bytes, addr: object) -> None:
        self.states.append(datagram)
        for waiter in list(self._waiting):
            if self.states.count(waiter[0]) >= waiter[1]:
                self._waiting.remove(waiter)
                waiter[2].callback(None)

    def wait_for(self, state: bytes, times: int = 1) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self.states.count(state) >= times:
            d.callback(None)
        else:
            self._waiting.append((state, times, d))
        return d.addTimeout(WAIT, reactor)


class TypeNotifyTests(TestCase):
    timeout = 60

    async def test_real_server_notifies(self) -> None:
        """twistd -n txpubsub under NOTIFY_SOCKET: READY=1 once its port takes
        connections, WATCHDOG=1 while it runs, RELOADING=1/READY=1 for an
        admin RELOAD, STOPPING=1 on SIGTERM, then exit 0."""
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "notify")
        notifications = Notifications()
        port = reactor.listenUNIXDatagram(path, notifications)  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        client_port = free_port()
        admin = os.path.join(directory, "admin.sock")
        server = ServerProcess()
        process = reactor.spawnProcess(
            server, twistd()[0],
            [*twistd(), "-n", "--pidfile=", "txpubsub", "--port",
             f"tcp:{client_port}:interface=127.0.0.1", "--admin", admin],
            env={**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"},
            path=directory)
        self.addCleanup(lambda: None if server.ended.called else process.signalProcess("KILL"))
        await notifications.wait_for(b"READY=1")
        self.assertEqual(notifications.states[0], b"READY=1")
        # Ready means listening: the port answers now.
        client = await connect(f"tcp:127.0.0.1:{client_port}")
        self.assertEqual(await client.ask(b"PING", b"PONG"), b"PONG")
        await notifications.wait_for(b"WATCHDOG=1", 3)
        control = LineClient()
        await connectProtocol(UNIXClientEndpoint(reactor, admin), control).addTimeout(
            WAIT, reactor)
        self.assertEqual(await control.ask(b"RELOAD", b"+OK"), b"+OK reloaded 0 failed 0")
        await notifications.wait_for(b"READY=1", 2)
        reloading = [s for s in notifications.states if s.startswith(b"RELOADING=1\n")]
        self.assertEqual(len(reloading), 1)
        control.transport.loseConnection()
        process.signalProcess(signal.SIGTERM)
        await notifications.wait_for(b"STOPPING=1")
        self.assertIsInstance(await server.ended.addTimeout(WAIT, reactor), ProcessDone)
        await client.wait(lambda lines: b"BYE shutdown" in lines)
        self.assertEqual(notifications.states.count(b"STOPPING=1"), 1)
        self.assertEqual([s for s in notifications.states if s != b"WATCHDOG=1"],
                         [b"READY=1", reloading[0], b"READY=1", b"STOPPING=1"])
        self.assertNotIn(b"Traceback", server.output)
