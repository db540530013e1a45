"""twistd options: defaults, repeatable ports, and usage errors instead of tracebacks."""
from __future__ import annotations

import os
import tempfile

from twisted.application.service import MultiService
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.core.hub import Hub
from txpubsub.core.system import SystemTicker
from txpubsub.doors.factory import DoorFactory
from txpubsub.server.listeners import ListenerService
from txpubsub.server.tap import DEFAULT_PORT, Options, makeService


class OptionsTests(SynchronousTestCase):
    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(list(args))
        return options

    def test_defaults(self) -> None:
        """The defaults of PROTOCOL.md, and a loopback-only default port."""
        options = self.parse()
        self.assertEqual(options["ports"], [DEFAULT_PORT])
        self.assertEqual(options["max-line"], 65536)
        self.assertEqual(options["max-payload"], 1048576)
        self.assertEqual(options["max-clients"], 10000)
        self.assertEqual(options["max-subscriptions"], 10000)
        self.assertEqual(options["history"], 100)
        self.assertFalse(options["no-auto-create"])

    def test_ports_repeat(self) -> None:
        options = self.parse("--port", "tcp:1234", "-p", "unix:/tmp/x.sock",
                             "--port=tcp6:1235:interface=\\:\\:1")
        self.assertEqual(options["ports"],
                         ["tcp:1234", "unix:/tmp/x.sock", "tcp6:1235:interface=\\:\\:1"])

    def test_bad_values_are_usage_errors(self) -> None:
        for args in (["--feed", "$sys.nope=tcp:1600"], ["--feed", "nochannel"],
                     ["--ingest", "a.*=tcp:1600"], ["--store", "postgres:x"],
                     ["--max-line", "abc"], ["--max-line", "10"], ["--max-clients", "0"],
                     ["--max-payload", "-5"], ["--history", "1e3"], ["--port", "bogus:1"],
                     ["--port", "tcp:notaport"], ["--history", "20", "--max-history", "10"]):
            self.assertRaises(usage.UsageError, self.parse, *args)

    def test_bad_value_names_its_option(self) -> None:
        """A refused value says which option it was given to."""
        for args, text in (
            (["--max-line", "-1"], "--max-line: expected a whole number of at least 64"),
            (["--time-interval", "0"], "--time-interval: expected a number of seconds above 0"),
            (["--port", "bogus:1"], "--port: bad endpoint 'bogus:1'"),
            (["--feed", "nochannel"], "--feed: bad binding 'nochannel'"),
            (["--history", "20", "--max-history", "10"], "--history: must not exceed"),
        ):
            e = self.assertRaises(usage.UsageError, self.parse, *args)
            self.assertTrue(str(e).startswith(text), str(e))

    def test_socket_paths_checked_before_start(self) -> None:
        """--admin/--manhole in a missing directory, or at a file that is not a
        socket, are usage errors naming the option (nothing is created)."""
        workdir = tempfile.mkdtemp()
        regular = os.path.join(workdir, "notes.txt")
        with open(regular, "w"):
            pass
        for option in ("--admin", "--manhole"):
            e = self.assertRaises(usage.UsageError, self.parse, option, "/nonexistent/dir/a.sock")
            self.assertEqual(str(e), f"{option}: no directory /nonexistent/dir")
            e = self.assertRaises(usage.UsageError, self.parse, option, regular)
            self.assertEqual(str(e), f"{option}: {regular} exists and is not a socket; "
                                     "give another path")
        self.assertEqual(sorted(os.listdir(workdir)), ["notes.txt"])
        cwd = os.getcwd()
        os.chdir(workdir)
        self.addCleanup(os.chdir, cwd)
        os.rename("notes.txt", "txpubsub-admin.sock")  # the default path, not a socket
        e = self.assertRaises(usage.UsageError, self.parse)
        self.assertTrue(str(e).startswith("--admin: txpubsub-admin.sock exists and is not"))
        self.assertEqual(self.parse("--admin", os.path.join(workdir, "a.sock"))["admin"],
                         os.path.join(workdir, "a.sock"))

    def test_socket_directory_writable_by_others_refused(self) -> None:
        """--admin/--manhole in a directory others may write to (where they could
        plant the lock or the socket) are refused with one line; a sticky one of
        ours is allowed."""
        for option in ("--admin", "--manhole"):
            shared = tempfile.mkdtemp()
            os.chmod(shared, 0o777)
            path = os.path.join(shared, "a.sock")
            e = self.assertRaises(usage.UsageError, self.parse, option, path)
            self.assertEqual(str(e), f"{option}: directory {shared} is writable by other users, "
                             "who could take the socket's place; give a path in a directory "
                             "only you can write to")
            os.chmod(shared, 0o1777)  # sticky and ours: nobody else can move our files
            self.assertEqual(self.parse(option, path)[option[2:]], path)
            os.chmod(shared, 0o700)
            self.assertEqual(self.parse(option, path)[option[2:]], path)
        cwd = os.getcwd()
        os.chdir(shared)
        self.addCleanup(os.chdir, cwd)
        os.chmod(shared, 0o777)
        e = self.assertRaises(usage.UsageError, self.parse)  # the default, relative path
        self.assertEqual(str(e), f"--admin: directory . ({shared}) is writable by other users, "
                         "who could take the socket's place; give a path in a directory only "
                         "you can write to")

    def test_time_interval(self) -> None:
        """--time-interval sets $sys.time's period; fractions of a second allowed."""
        self.assertEqual(self.parse()["time-interval"], 1.0)
        top = makeService(self.parse("--time-interval", "0.1", "--admin", "none"),
                          MemoryReactorClock())
        assert isinstance(top, MultiService)
        ticker = next(s for s in top if isinstance(s, SystemTicker))
        self.assertEqual(ticker.time_interval, 0.1)
        for bad in ("0", "-1", "nan", "inf", "soon"):
            self.assertRaises(usage.UsageError, self.parse, "--time-interval", bad)

    def test_admin_socket_by_default(self) -> None:
        """The admin socket listens by default, 0600, with a lock file."""
        reactor = MemoryReactorClock()
        top = makeService(self.parse("--admin", "/tmp/some:where.sock"), reactor)
        assert isinstance(top, MultiService)
        descriptions = [s.description for s in top if isinstance(s, ListenerService)]
        self.assertIn("unix:/tmp/some\\:where.sock:mode=600:lockfile=1", descriptions)

    def test_name_from_certificates_only_on_mtls(self) -> None:
        """--tls-name-from applies to mtls: listeners, never to tcp: or ssl: ones."""
        top = makeService(self.parse("--port", "tcp:1234", "--tls-name-from", "cn",
                                     "--admin", "none"), MemoryReactorClock())
        assert isinstance(top, MultiService)
        factory = next(s for s in top if isinstance(s, ListenerService)).factory
        assert isinstance(factory, DoorFactory)
        self.assertEqual(factory.settings.tls_name_from, "none")

    def test_make_service(self) -> None:
        """One hub and one listener per --port, wired to the options."""
        reactor = MemoryReactorClock()
        options = self.parse("--port", "tcp:1234:interface=127.0.0.1", "--port", "tcp:1235",
                             "--max-line", "100", "--no-auto-create", "--max-payload", "50",
                             "--admin", "none")
        top = makeService(options, reactor)
        assert isinstance(top, MultiService)
        services = list(top)
        hub = services[0]
        self.assertIsInstance(hub, Hub)
        self.assertFalse(hub.auto_create)
        self.assertEqual(hub.max_payload, 50)
        listeners = [s for s in services if isinstance(s, ListenerService)]
        self.assertEqual(len(listeners), 2)
        top.privilegedStartService()
        top.startService()
        self.assertEqual([(p[0], p[3]) for p in reactor.tcpServers],
                         [(1234, "127.0.0.1"), (1235, "")])
        factory = reactor.tcpServers[0][1]
        assert isinstance(factory, DoorFactory)
        self.assertEqual(factory.settings.max_line, 100)
        top.stopService()
