"""twistd options: defaults, repeatable ports, and usage errors instead of tracebacks."""
from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.core.hub import Hub
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

    def test_admin_socket_by_default(self) -> None:
        """The admin socket listens by default, 0600, with a lock file."""
        reactor = MemoryReactorClock()
        top = makeService(self.parse("--admin", "/tmp/some:where.sock"), reactor)
        descriptions = [s.description for s in top if isinstance(s, ListenerService)]
        self.assertIn("unix:/tmp/some\\:where.sock:mode=600:lockfile=1", descriptions)

    def test_name_from_certificates_only_on_mtls(self) -> None:
        """--tls-name-from applies to mtls: listeners, never to tcp: or ssl: ones."""
        top = makeService(self.parse("--port", "tcp:1234", "--tls-name-from", "cn",
                                     "--admin", "none"), MemoryReactorClock())
        factory = next(s for s in top if isinstance(s, ListenerService)).factory
        self.assertEqual(factory.settings.tls_name_from, "none")

    def test_make_service(self) -> None:
        """One hub and one listener per --port, wired to the options."""
        reactor = MemoryReactorClock()
        options = self.parse("--port", "tcp:1234:interface=127.0.0.1", "--port", "tcp:1235",
                             "--max-line", "100", "--no-auto-create", "--max-payload", "50",
                             "--admin", "none")
        top = makeService(options, reactor)
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
        self.assertEqual(reactor.tcpServers[0][1].settings.max_line, 100)
        top.stopService()
