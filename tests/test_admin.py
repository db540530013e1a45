"""The admin socket, the connection log, graceful shutdown and the manhole."""
from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import tempfile

from twisted.internet import reactor
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone, ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from txpubsub.doors.admin import AdminFactory
from txpubsub.doors.manhole import manhole_factory
from txpubsub.server.listeners import ListenError, ListenerService
from txpubsub.server.tap import unix_endpoint

from .helpers import Conn, make_hub
from .netclient import WAIT, LineClient, connect
from .test_seams import LaterBackplane
from .test_twistd import ServerProcess, twistd

ISO = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


class Admin:
    """One admin connection over StringTransport."""

    def __init__(self, hub, shutdown=None) -> None:
        self.shutdowns: list[float] = []
        self.proto = AdminFactory(hub, shutdown or self.shutdowns.append).buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def cmd(self, line: str) -> bytes:
        self.transport.clear()
        self.proto.dataReceived(line.encode() + b"\r\n")
        return self.transport.value()


class AdminCommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1763865866)  # 2025-11-23T02:44:26Z
        self.hub = make_hub(self.clock, connection_log=2)
        self.alice = Conn(self.hub, ping_interval=0)
        self.alice.cmd("NAME alice")
        self.alice.cmd("SUB news")
        self.alice.cmd("SUB other.>")
        self.bob = Conn(self.hub, ping_interval=0)
        self.clock.advance(5)
        self.bob.cmd("PUB news hello")
        self.admin = Admin(self.hub)

    def test_no_greeting_and_not_a_client(self) -> None:
        self.assertEqual(self.admin.transport.value(), b"")
        self.assertEqual(len(self.hub.clients()), 2)

    def test_clients(self) -> None:
        """CLIENT id name address listener connected-at subscriptions in out buffered
        seconds-connected user: how long each client has been connected, then its
        --users user (- for none)."""
        self.clock.advance(2.5)
        self.assertEqual(self.admin.cmd("CLIENTS").decode().splitlines(), [
            f"CLIENT c1 alice 127.0.0.1:{self.alice.transport.getPeer().port} tcp:test "
            "2025-11-23T02:44:26Z 2 0 1 21 7 -",  # alice has not read her MSG yet
            f"CLIENT c2 - 127.0.0.1:{self.bob.transport.getPeer().port} tcp:test "
            "2025-11-23T02:44:26Z 0 1 0 0 7 -",
            "+OK 2",
        ])

    def test_channels(self) -> None:
        """CHANNEL name subscribers published kept created-at last-publish-at-or-dash."""
        lines = self.admin.cmd("CHANNELS").decode().splitlines()
        self.assertEqual(lines[0],
                         "CHANNEL news 1 1 1 2025-11-23T02:44:26Z 2025-11-23T02:44:31Z")
        self.assertEqual(lines[1], "CHANNEL $sys.channels 0 0 0 2025-11-23T02:44:26Z -")
        self.assertEqual(lines[-1], "+OK 5")

    def test_history(self) -> None:
        self.assertEqual(self.admin.cmd("HISTORY news"), b"MSG news 1 c2 hello\r\n+OK 1\r\n")
        self.assertTrue(self.admin.cmd("HISTORY nope").startswith(b"-ERR no-such-channel "))

    def test_connections_newest_first_and_bounded(self) -> None:
        """CONN id name address connected-at disconnected-at seconds reason; newest first."""
        self.clock.advance(3)
        self.bob.cmd("QUIT")
        self.bob.lose()
        self.alice.lose()
        Conn(self.hub).lose()  # the log keeps 2: this one pushes the oldest out
        lines = self.admin.cmd("CONNECTIONS").decode().splitlines()
        self.assertEqual(len(lines), 3)
        self.assertTrue(lines[0].startswith("CONN c3 - 127.0.0.1:"))
        self.assertRegex(lines[1], r"^CONN c1 alice 127\.0\.0\.1:\d+ "
                                   r"2025-11-23T02:44:26Z 2025-11-23T02:44:34Z 8 closed-by-peer$")
        self.assertEqual(lines[2], "+OK 2")
        self.assertEqual(self.admin.cmd("CONNECTIONS 1").count(b"CONN "), 1)

    def test_stats(self) -> None:
        stats = dict(line.split(" ")[1:] for line in
                     self.admin.cmd("STATS").decode().splitlines()[:-1])
        for key in ("uptime_s", "clients", "channels", "subscriptions", "msgs_in", "msgs_out",
                    "bytes_in", "bytes_out", "slow_consumers", "connections_total"):
            self.assertIn(key, stats)
        self.assertEqual((stats["clients"], stats["subscriptions"], stats["msgs_in"],
                          stats["uptime_s"]), ("2", "2", "1", "5"))
        # "hello" is kept in news's history; nothing was ever let go of.
        self.assertEqual((stats["history_bytes"], stats["history_evictions"]), ("5", "0"))

    def test_kick(self) -> None:
        self.alice.take()
        self.assertEqual(self.admin.cmd("KICK alice too loud"), b"+OK kicked c1\r\n")
        self.assertEqual(self.alice.take(), b"BYE kicked too loud\r\n")
        self.assertTrue(self.alice.closed)
        self.assertEqual(self.admin.cmd("KICK c2"), b"+OK kicked c2\r\n")
        self.assertTrue(self.admin.cmd("KICK nobody").startswith(b"-ERR no-such-client "))
        self.alice.lose()
        self.assertIn(b" kicked\r\n", self.admin.cmd("CONNECTIONS"))

    def test_drop(self) -> None:
        """DROP: subscribers see DROP and lose it; ids go on if the channel returns."""
        self.alice.take()
        self.assertEqual(self.admin.cmd("DROP news"), b"+OK dropped news\r\n")
        self.assertEqual(self.alice.take(), b"DROP news\r\n")
        self.assertTrue(self.alice.cmd("UNSUB news").startswith("-ERR not-subscribed "))
        self.assertEqual(self.bob.cmd("PUB news again"), "+OK 2\r\n")
        self.assertEqual(self.alice.take(), b"")
        self.assertTrue(self.admin.cmd("DROP nope").startswith(b"-ERR no-such-channel "))
        self.assertTrue(self.admin.cmd("DROP $sys.time").startswith(b"-ERR forbidden "))

    def test_pub_as_admin(self) -> None:
        self.alice.take()
        self.assertEqual(self.admin.cmd("PUB news from  the top"), b"+OK 2\r\n")
        self.assertEqual(self.alice.take(), b"MSG news 2 $admin from  the top\r\n")
        self.assertEqual(self.admin.cmd("PUB @alice psst"), b"+OK 1\r\n")
        self.assertTrue(self.admin.cmd("PUB $sys.time x").startswith(b"-ERR forbidden "))

    def test_shutdown_asks_for_a_graceful_stop(self) -> None:
        self.assertEqual(self.admin.cmd("SHUTDOWN 30"), b"+OK shutting down\r\n")
        self.clock.advance(0)
        self.assertEqual(self.admin.shutdowns, [30.0])
        self.assertTrue(self.admin.cmd("SHUTDOWN soon").startswith(b"-ERR bad-args "))

    def test_quit_answers_then_closes(self) -> None:
        """QUIT ends an admin session from a script, with any netcat."""
        self.assertEqual(self.admin.cmd("QUIT"), b"+OK bye\r\n")
        self.assertTrue(self.admin.transport.disconnecting)

    def test_help_and_errors(self) -> None:
        help_text = self.admin.cmd("HELP").decode()
        for verb in ("CLIENTS", "CHANNELS", "HISTORY", "CONNECTIONS", "STATS", "KICK", "DROP",
                     "PUB", "SHUTDOWN", "QUIT", "HELP"):
            self.assertIn(f"HELP {verb}", help_text)
        self.assertTrue(help_text.endswith("+OK\r\n"))
        self.assertTrue(self.admin.cmd("FROB").startswith(b"-ERR unknown-command "))
        self.assertTrue(self.admin.cmd("KICK").startswith(b"-ERR bad-args "))
        self.assertTrue(self.admin.cmd("CONNECTIONS x").startswith(b"-ERR bad-args "))

    def test_grace_spreads_closes(self) -> None:
        """close_all(grace) says BYE shutdown to clients spread over the grace period."""
        gone = self.hub.close_all(10)
        self.assertTrue(self.alice.take().endswith(b"BYE shutdown\r\n"))
        self.assertFalse(self.bob.closed)
        self.clock.advance(5)
        self.assertTrue(self.bob.take().endswith(b"BYE shutdown\r\n"))
        self.assertFalse(gone.called)
        self.alice.lose()
        self.bob.lose()
        self.assertTrue(gone.called)


class AdminProcessTests(TestCase):
    """The real twistd: admin socket file mode, KICK, DROP, SHUTDOWN, SIGTERM, manhole."""

    timeout = 60

    async def start(self, *extra: str) -> tuple[ServerProcess, IProcessTransport, int, str]:
        workdir = tempfile.mkdtemp()
        server = ServerProcess()
        process = reactor.spawnProcess(
            server, twistd()[0],
            [*twistd(), "-n", "--pidfile=", "txpubsub", "--port", "tcp:0:interface=127.0.0.1",
             "--ping-interval", "0", *extra],
            env=os.environ.copy(), path=workdir)
        self.addCleanup(lambda: None if server.ended.called else process.signalProcess("KILL"))
        port = await server.listening.addTimeout(WAIT * 2, reactor)
        # The admin socket comes after the client listener: wait until it is there too.
        if "none" not in extra:
            await server.wait_for(b"txpubsub-admin.sock:mode=600")
        return server, process, port, workdir

    async def admin(self, workdir: str, command: bytes) -> list[bytes]:
        client = LineClient()
        endpoint = UNIXClientEndpoint(reactor, os.path.join(workdir, "txpubsub-admin.sock"))
        await connectProtocol(endpoint, client).addTimeout(WAIT, reactor)
        client.send(command + b"\r\n")
        lines = await client.wait(lambda lines: any(x.startswith((b"+OK", b"-ERR"))
                                                    for x in lines))
        client.transport.loseConnection()
        await client.closed
        return lines

    async def test_admin_socket_kick_drop_shutdown(self) -> None:
        server, _process, port, workdir = await self.start()
        path = os.path.join(workdir, "txpubsub-admin.sock")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        alice = await connect(f"tcp:127.0.0.1:{port}")
        await alice.ask(b"NAME alice", b"+OK")
        await alice.ask(b"SUB news", b"+OK")
        bob = await connect(f"tcp:127.0.0.1:{port}")
        carol = await connect(f"tcp:127.0.0.1:{port}")
        await carol.ask(b"SUB news", b"+OK")

        clients = await self.admin(workdir, b"CLIENTS")
        self.assertEqual(clients[-1], b"+OK 3")
        self.assertRegex(clients[0], rb"^CLIENT c1 alice 127\.0\.0\.1:\d+ tcp:0:interface=127"
                                     rb"\.0\.0\.1 " + ISO + rb" 1 0 0 0 \d+ -$")
        self.assertEqual(await self.admin(workdir, b"DROP news"), [b"+OK dropped news"])
        await alice.wait_line(b"DROP news")
        await carol.wait_line(b"DROP news")
        self.assertEqual(await self.admin(workdir, b"KICK alice"), [b"+OK kicked c1"])
        await alice.closed.addTimeout(WAIT, reactor)
        self.assertEqual(alice.lines[-1], b"BYE kicked")
        log = await self.admin(workdir, b"CONNECTIONS")
        self.assertRegex(log[0], rb"^CONN c1 alice 127\.0\.0\.1:\d+ " + ISO + b" " + ISO
                         + rb" \d+ kicked$")

        self.assertEqual(await self.admin(workdir, b"SHUTDOWN"), [b"+OK shutting down"])
        for client in (bob, carol):
            await client.closed.addTimeout(WAIT, reactor)
            self.assertEqual(client.lines[-1], b"BYE shutdown")
        reason = await server.ended.addTimeout(WAIT, reactor)
        self.assertIsInstance(reason, ProcessDone, server.output)  # exit status 0
        self.assertFalse(os.path.exists(path))

    async def test_sigterm_exits_zero(self) -> None:
        server, process, port, _workdir = await self.start("--admin", "none")
        client = await connect(f"tcp:127.0.0.1:{port}")
        process.signalProcess(signal.SIGTERM)
        await client.closed.addTimeout(WAIT, reactor)
        self.assertEqual(client.lines[-1], b"BYE shutdown")
        reason = await server.ended.addTimeout(WAIT, reactor)
        self.assertIsInstance(reason, ProcessDone, server.output)

    async def test_live_socket_is_not_taken_over(self) -> None:
        """A second server on the same admin socket stops with one clear line."""
        server, process, _port, workdir = await self.start()
        second = ServerProcess()
        reactor.spawnProcess(
            second, twistd()[0],
            [*twistd(), "-n", "--pidfile=", "txpubsub", "--port", "tcp:0:interface=127.0.0.1"],
            env=os.environ.copy(), path=workdir)
        reason = await second.ended.addTimeout(WAIT * 2, reactor)
        assert isinstance(reason, ProcessTerminated), reason
        self.assertEqual(reason.exitCode, 1)
        self.assertIn(b"another server is running on this socket", second.output)
        self.assertNotIn(b"Traceback", second.output)
        self.assertEqual((await self.admin(workdir, b"STATS"))[-1], b"+OK 16")
        process.signalProcess(signal.SIGTERM)
        await server.ended.addTimeout(WAIT, reactor)

    async def test_stale_socket_is_replaced(self) -> None:
        """A socket file left by a killed server does not stop the next one."""
        server, process, _port, workdir = await self.start()
        process.signalProcess(signal.SIGKILL)
        await server.ended.addTimeout(WAIT, reactor)
        self.assertTrue(os.path.exists(os.path.join(workdir, "txpubsub-admin.sock")))
        again = ServerProcess()
        proc2 = reactor.spawnProcess(
            again, twistd()[0],
            [*twistd(), "-n", "--pidfile=", "txpubsub", "--port", "tcp:0:interface=127.0.0.1"],
            env=os.environ.copy(), path=workdir)
        self.addCleanup(lambda: None if again.ended.called else proc2.signalProcess("KILL"))
        await again.listening.addTimeout(WAIT * 2, reactor)
        await again.wait_for(b"txpubsub-admin.sock:mode=600")
        self.assertEqual((await self.admin(workdir, b"CLIENTS")), [b"+OK 0"])
        proc2.signalProcess(signal.SIGTERM)
        await again.ended.addTimeout(WAIT, reactor)

    async def test_manhole_evaluates_in_the_server(self) -> None:
        """Python typed at the manhole runs inside the server, with the hub at hand."""
        server, process, port, workdir = await self.start("--manhole", "mh.sock")
        await server.wait_for(b"mh.sock:mode=600")
        path = os.path.join(workdir, "mh.sock")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        client = await connect(f"tcp:127.0.0.1:{port}")
        await client.ask(b"NAME alice", b"+OK")
        shell = LineClient()
        await connectProtocol(UNIXClientEndpoint(reactor, path), shell).addTimeout(WAIT, reactor)
        shell.send(b"[c.name for c in hub.clients()] + [6 * 7]\r\n")  # telnet: CR LF
        await shell.wait(lambda lines: b"['alice', 42]" in shell.buffer
                         or any(b"['alice', 42]" in x for x in lines))
        shell.transport.loseConnection()
        await shell.closed
        await client.quit()
        process.signalProcess(signal.SIGTERM)
        reason = await server.ended.addTimeout(WAIT, reactor)
        self.assertIsInstance(reason, ProcessDone, server.output)

    async def test_grace_spreads_over_time(self) -> None:
        server, _process, port, workdir = await self.start()
        clients = [await connect(f"tcp:127.0.0.1:{port}") for _ in range(3)]
        await self.admin(workdir, b"SHUTDOWN 1")
        for client in clients:
            await client.closed.addTimeout(WAIT, reactor)
            self.assertEqual(client.lines[-1], b"BYE shutdown")
        reason = await server.ended.addTimeout(WAIT, reactor)
        self.assertIsInstance(reason, ProcessDone, server.output)


def ask_and_half_close(path: str, commands: bytes) -> bytes:
    """What ``printf COMMANDS | nc -U -N PATH`` prints: send, shut the write
    side, read until the server closes (blocking; run it in a thread)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(WAIT)
        s.connect(path)
        s.sendall(commands)
        s.shutdown(socket.SHUT_WR)
        received = b""
        while True:
            data = s.recv(65536)
            if not data:
                return received
            received += data


class HalfCloseTests(SynchronousTestCase):
    def test_half_close_waits_for_a_later_reply(self) -> None:
        """With a backplane that numbers PUB later, a script that half-closes
        still gets PUB's id and every reply after it before the socket closes."""
        hub_of: list = []
        backplane = LaterBackplane(hub_of)
        hub = make_hub(Clock(), backplane=backplane)
        hub_of.append(hub)
        admin = Admin(hub)
        admin.proto.dataReceived(b"PUB t hi\nHELP\nQUIT\nSTATS\n")
        admin.proto.readConnectionLost()
        self.assertEqual(admin.transport.value(), b"")
        self.assertFalse(admin.transport.disconnecting)
        backplane.number()
        self.assertTrue(admin.transport.value().startswith(b"+OK 1\r\nHELP CLIENTS"))
        self.assertTrue(admin.transport.value().endswith(b"+OK\r\n+OK bye\r\n"))
        self.assertTrue(admin.transport.disconnecting)


class AdminSocketTests(TestCase):
    """The admin door on a real Unix socket."""

    timeout = 30

    def setUp(self) -> None:
        self.path = os.path.join(tempfile.mkdtemp(), "admin.sock")
        self.hub = make_hub()
        service = ListenerService(reactor, unix_endpoint(self.path),
                                  AdminFactory(self.hub, lambda grace: None))
        service.startService()
        self.addCleanup(service.stopService)

    async def test_half_close_gets_every_reply(self) -> None:
        """printf 'STATS\\nCLIENTS\\n' | nc -U -N prints both replies and exits."""
        reply = await deferToThread(ask_and_half_close, self.path, b"STATS\nCLIENTS\n")
        self.assertIn(b"STAT uptime_s ", reply)
        self.assertTrue(reply.endswith(b"+OK 16\r\n+OK 0\r\n"), reply)

    async def test_last_line_without_line_end_is_answered(self) -> None:
        """printf 'STATS' (no newline) | nc -U -N still gets the STATS reply."""
        reply = await deferToThread(ask_and_half_close, self.path, b"HELP\r\nSTATS")
        self.assertTrue(reply.startswith(b"HELP CLIENTS"), reply)
        self.assertTrue(reply.endswith(b"+OK 16\r\n"), reply)


class AdminPathTests(SynchronousTestCase):
    def test_failed_start_leaves_no_lock(self) -> None:
        """A socket path that cannot be bound (too long for a Unix socket): one
        line, and no PATH.lock left behind to confuse the next start."""
        path = os.path.join(tempfile.mkdtemp(), "a" * 120 + ".sock")
        service = ListenerService(reactor, unix_endpoint(path),
                                  AdminFactory(make_hub(), lambda grace: None), socket_path=path)
        e = self.assertRaises(ListenError, service.privilegedStartService)
        self.assertIn("cannot listen on unix:", str(e))
        self.assertNotIn("Errno", str(e))
        self.assertFalse(os.path.lexists(path + ".lock"))

    def test_twistd_refuses_a_regular_file(self) -> None:
        """--admin naming a regular file: exit 1 with a line naming --admin,
        the file untouched and no lock file left."""
        workdir = tempfile.mkdtemp()
        with open(os.path.join(workdir, "notes.txt"), "w") as f:
            f.write("keep me\n")
        result = subprocess.run(
            [*twistd(), "-n", "--pidfile=", "txpubsub", "--port", "tcp:0:interface=127.0.0.1",
             "--admin", "notes.txt"],
            capture_output=True, text=True, timeout=60, cwd=workdir)
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, output)
        self.assertIn("--admin: notes.txt exists and is not a socket", output.splitlines()[-1])
        self.assertNotIn("Traceback", output)
        self.assertEqual(sorted(os.listdir(workdir)), ["notes.txt"])

    def test_twistd_refuses_a_directory_others_may_write(self) -> None:
        """The default admin socket in a directory anyone may write to: exit 1,
        one line naming --admin and the directory, nothing created there."""
        workdir = tempfile.mkdtemp()
        os.chmod(workdir, 0o777)
        result = subprocess.run(
            [*twistd(), "-n", "--pidfile=", "txpubsub", "--port", "tcp:0:interface=127.0.0.1"],
            capture_output=True, text=True, timeout=60, cwd=workdir)
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, output)
        self.assertTrue(output.splitlines()[-1].endswith(
            f"--admin: directory . ({workdir}) is writable by other users, who could take the "
            "socket's place; give a path in a directory only you can write to"), output)
        self.assertNotIn("Traceback", output)
        self.assertEqual(os.listdir(workdir), [])

    def test_twistd_names_a_missing_directory(self) -> None:
        """--admin /nonexistent/dir/a.sock: a line naming the missing directory."""
        result = subprocess.run(
            [*twistd(), "-n", "--pidfile=", "txpubsub", "--admin", "/nonexistent/dir/a.sock"],
            capture_output=True, text=True, timeout=60, cwd=tempfile.gettempdir())
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, output)
        self.assertTrue(output.splitlines()[-1].endswith(
            "--admin: no directory /nonexistent/dir"), output)


class ManholeTests(SynchronousTestCase):
    def test_leaving_logs_no_errors(self) -> None:
        """Ctrl-D at the manhole from socat (no telnet answers) logs no critical errors."""
        # Twisted types it for trial's TestCase; it needs only addCleanup.
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        proto = manhole_factory({}).buildProtocol(None)
        assert proto is not None
        transport = StringTransport()
        proto.makeConnection(transport)
        self.assertIn(b">>> ", transport.value())
        proto.dataReceived(b"\x04")  # Ctrl-D
        self.assertTrue(transport.disconnecting)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([e for e in events if e["log_level"] >= LogLevel.error], [])


class UnixEndpointTests(SynchronousTestCase):
    def test_escaped(self) -> None:
        self.assertEqual(unix_endpoint("a:b.sock"), "unix:a\\:b.sock:mode=600:lockfile=1")
