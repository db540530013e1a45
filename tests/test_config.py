"""--config FILE: the options from TOML, the example file, and reloading it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.core.hub import Hub
from txpubsub.doors.factory import DoorFactory
from txpubsub.server.config import option_kinds
from txpubsub.server.lifecycle import Lifecycle
from txpubsub.server.listeners import ListenerService
from txpubsub.server.tap import Options, makeService

from .helpers import Conn
from .test_twistd import twistd

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "txpubsub.toml")
USERS = """
[users.alice]
publish = [">"]

[anonymous]
subscribe = ["feeds.>"]
publish = ["logs.in"]
"""


def non_defaults(directory: str) -> dict[str, Any]:
    """A value other than the default for every option, as TOML values."""
    return {
        "no-auto-create": True,
        "allow-anonymous": True,
        "max-line": 1000,
        "max-payload": 2000,
        "max-clients": 50,
        "max-subscriptions": 60,
        "history": 5,
        "max-history": 70,
        "max-replay": 80,
        "max-list": 90,
        "max-channels": 100,
        "max-client-channels": 110,
        "max-subscriptions-all": 120,
        "max-retired": 130,
        "max-history-bytes": 1000000,
        "max-channel-bytes": 100000,
        "max-publish-rate": 10,
        "max-publish-bytes": 5000,
        "store": f"sqlite:{directory}/store.db",
        "store-sync": "full",
        "redis": "redis://127.0.0.1:6390/0",
        "resp": ["tcp:23416:interface=127.0.0.1"],
        "admin": f"{directory}/admin.sock",
        "manhole": f"{directory}/manhole.sock",
        "connection-log": 140,
        "max-buffer": 70000,
        "max-stall": 150,
        "tls-name-from": "cn",
        "tls-handshake-timeout": 3,
        "users": f"{directory}/users.toml",
        "auth-timeout": 4,
        "max-auth-checks": 3,
        "ping-interval": 5,
        "time-interval": 0.5,
        "feed": ["feeds.>=tcp:23411:interface=127.0.0.1"],
        "ingest": ["logs.in=tcp:23412:interface=127.0.0.1"],
        "port": ["tcp:23413:interface=127.0.0.1", f"unix:{directory}/client.sock"],
        "ws": ["tcp:23414:interface=127.0.0.1"],
        "ws-origin": ["https://app.example", "*"],
        "http": "tcp:23415:interface=127.0.0.1",
        "log-format": "json",
        "log-level": "info,txpubsub.connections=warn",
    }


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def arguments(values: dict[str, Any]) -> list[str]:
    """The same options as a command line."""
    argv: list[str] = []
    for name, value in values.items():
        if value is True:
            argv.append(f"--{name}")
        elif isinstance(value, list):
            for one in value:
                argv += [f"--{name}", one]
        else:
            argv += [f"--{name}", str(value)]
    return argv


def settings_of(options: Options) -> dict[str, Any]:
    """What a parse gives, without how it was given."""
    return {k: v for k, v in options.items() if k != "config"}


def describe(top: MultiService) -> dict[str, Any]:
    """The parts of a service tree that options decide."""
    hub = next(s for s in top if isinstance(s, Hub))
    listeners = [s for s in top if isinstance(s, ListenerService)]
    return {
        "hub": {k: v for k, v in vars(hub).items() if k.startswith(("max_", "default_", "auto"))}
        | {"max_clients": hub.max_clients},
        "listeners": [(s.description, type(s.factory).__name__,
                       getattr(s.factory, "settings", None)) for s in listeners],
    }


class ConfigFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp()
        with open(os.path.join(self.directory, "users.toml"), "w") as f:
            f.write(USERS)

    def write(self, text: str, name: str = "txpubsub.toml") -> str:
        path = os.path.join(self.directory, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def refused(self, text: str) -> str:
        path = self.write(text)
        with self.assertRaises(SystemExit) as caught:
            self.parse("--config", path)
        message = str(caught.exception.code)
        self.assertIn(path, message)
        self.assertNotIn("\n", message)
        return message

    def test_every_option_round_trips(self) -> None:
        """Every option in the file gives the same options, and the same
        service, as on the command line."""
        values = non_defaults(self.directory)
        self.assertEqual(set(values), set(option_kinds(Options())))
        try:
            import autobahn  # noqa: F401
        except ImportError:  # a venv without txpubsub[ws] (PyPy here): --ws is refused
            del values["ws"]
        path = self.write("".join(f"{k} = {toml_value(v)}\n" for k, v in values.items()))
        from_file = self.parse("--config", path)
        from_line = self.parse(*arguments(values))
        self.assertEqual(settings_of(from_file), settings_of(from_line))
        self.assertNotEqual(settings_of(from_line), settings_of(self.parse()))
        services = []
        for options in (from_file, from_line):
            options["store"] = "memory"  # one sqlite file cannot serve both (its lock)
            top = makeService(options, MemoryReactorClock())
            assert isinstance(top, MultiService)
            services.append(describe(top))
        self.assertEqual(services[0], services[1])

    def test_example_file_has_every_option_and_its_default(self) -> None:
        """examples/txpubsub.toml names every option, and its values are the defaults."""
        with open(EXAMPLE, "rb") as f:
            table = tomllib.load(f)
        with open(EXAMPLE) as f:
            mentioned = set(re.findall(r"^#? ?([a-z][a-z-]*) = ", f.read(), re.M))
        self.assertEqual(mentioned, set(option_kinds(Options())))
        self.assertEqual(settings_of(self.parse("--config", EXAMPLE)), settings_of(self.parse()))
        self.assertTrue(table)

    def test_command_line_wins(self) -> None:
        """A value on the command line replaces the file's; a list replaces its list."""
        path = self.write('max-line = 1000\nmax-payload = 500\nport = ["tcp:1", "tcp:2"]\n'
                          'ws-origin = ["*"]\n')
        options = self.parse("--max-line", "2000", "--config", path, "-p", "tcp:3")
        self.assertEqual(options["max-line"], 2000)
        self.assertEqual(options["max-payload"], 500)
        self.assertEqual(options["ports"], ["tcp:3"])
        self.assertEqual(options["ws-origins"], ["*"])
        # Even a command-line value equal to the default wins.
        self.assertEqual(self.parse("--config", path, "--max-line", "65536")["max-line"], 65536)

    def test_a_single_listener_may_be_a_string(self) -> None:
        path = self.write('port = "tcp:4"\n')
        self.assertEqual(self.parse("--config", path)["ports"], ["tcp:4"])

    def test_unknown_key(self) -> None:
        self.assertIn("max-lines: unknown option", self.refused("max-lines = 10\n"))

    def test_bad_value(self) -> None:
        """The line names the file, the key's line and the key."""
        message = self.refused('# limits\nport = ["tcp:1"]\n  max-line = 10\n')
        self.assertEqual(message, f"txpubsub: {self.directory}/txpubsub.toml:3: max-line: "
                                  "expected a whole number of at least 64, got '10'")

    def test_wrong_types(self) -> None:
        self.assertIn("no-auto-create: expected true or false",
                      self.refused('no-auto-create = "yes"\n'))
        self.assertIn("max-line: expected a number or a string",
                      self.refused("max-line = true\n"))
        self.assertIn("port: expected a list of strings", self.refused("port = [1]\n"))
        self.assertIn("history: expected a number or a string",
                      self.refused("[history]\nkeep = 1\n"))

    def test_history_over_max_history_names_the_file(self) -> None:
        """A check across two options is one line naming the file too, not
        twistd's whole --help (found in review)."""
        message = self.refused("history = 20000\n")
        self.assertIn("history (20000) must not exceed max-history (10000)", message)

    def test_bad_endpoint(self) -> None:
        self.assertIn("port: bad endpoint 'tcp:nope'", self.refused('port = ["tcp:nope"]\n'))

    def test_not_toml(self) -> None:
        message = self.refused("max-line = \n")
        self.assertIn("not TOML", message)
        self.assertIn("line 1", message)

    def test_twistd_says_one_line_and_exits_1(self) -> None:
        """Under the real twistd, a bad file is its one line on stderr, exit status 1."""
        path = self.write("max-line = 10\n")
        result = subprocess.run([*twistd(), "-n", "txpubsub", "--config", path],
                                capture_output=True, text=True, timeout=60,
                                cwd=self.directory)
        self.assertEqual((result.returncode, result.stdout, result.stderr),
                         (1, "", f"txpubsub: {path}:1: max-line: expected a whole number "
                                 "of at least 64, got '10'\n"))

    def test_missing_file(self) -> None:
        path = os.path.join(self.directory, "nowhere.toml")
        with self.assertRaises(SystemExit) as caught:
            self.parse("--config", path)
        self.assertEqual(str(caught.exception.code),
                         f"txpubsub: --config {path}: No such file or directory")


class ReloadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp()
        self.path = os.path.join(self.directory, "txpubsub.toml")
        self.events = EventLoggingObserver()
        globalLogPublisher.addObserver(self.events)
        self.addCleanup(globalLogPublisher.removeObserver, self.events)

    def write(self, text: str) -> None:
        with open(self.path, "w") as f:
            f.write(text)

    def start(self) -> tuple[Hub, Lifecycle, DoorFactory]:
        options = Options()
        options.parseOptions(["--config", self.path, "--admin", "none"])
        self.reactor = MemoryReactorClock()
        top = makeService(options, self.reactor)
        assert isinstance(top, MultiService)
        hub = next(s for s in top if isinstance(s, Hub))
        lifecycle = next(s for s in top if isinstance(s, Lifecycle))
        factory = next(s for s in top if isinstance(s, ListenerService)).factory
        assert isinstance(factory, DoorFactory)
        return hub, lifecycle, factory

    def logged(self) -> str:
        from twisted.logger import formatEvent

        return "\n".join(formatEvent(e) for e in self.events)

    def test_reload_changes_limits_for_connected_clients(self) -> None:
        """After the file changes and a reload, a connected client gets the new
        limits; a changed listener is logged as needing a restart."""
        self.write('port = ["tcp:23420:interface=127.0.0.1"]\nmax-payload = 100\n'
                   "max-buffer = 100000\n")
        hub, lifecycle, factory = self.start()
        conn = Conn(hub, factory)
        self.assertEqual(conn.send(b"PUB news.uk " + b"x" * 50 + b"\r\n"), b"+OK 1\r\n")
        self.write('port = ["tcp:23421:interface=127.0.0.1"]\nmax-payload = 20\n'
                   "max-buffer = 200000\nping-interval = 7\n")
        self.assertEqual(lifecycle.reload(), (1, 0, ""))
        self.assertTrue(conn.send(b"PUB news.uk " + b"x" * 50 + b"\r\n")
                        .startswith(b"-ERR too-large"))
        session = conn.proto.session
        self.assertEqual((session.max_buffer, session.settings.ping_interval), (200000, 7))
        self.assertEqual(factory.settings.max_buffer, 200000)
        log = self.logged()
        self.assertIn("option max-payload changed from 100 to 20", log)
        self.assertIn("option ports changed from ['tcp:23420:interface=127.0.0.1'] to "
                      "['tcp:23421:interface=127.0.0.1']: needs a restart", log)

    def test_reload_changes_heartbeats_of_connected_clients(self) -> None:
        """ping-interval 0 stops a connected client's heartbeat; back to 5,
        a silent client gets PING after 5 s and BYE stale 5 s later."""
        self.write("ping-interval = 60\n")
        hub, lifecycle, factory = self.start()
        conn = Conn(hub, factory)
        self.write("ping-interval = 0\n")
        lifecycle.reload()
        self.reactor.advance(600)
        self.assertEqual(conn.take(), b"")
        self.assertFalse(conn.transport.disconnecting)
        self.write("ping-interval = 5\n")
        lifecycle.reload()
        self.reactor.advance(5)
        self.assertEqual(conn.take(), b"PING\r\n")
        self.reactor.advance(5)
        self.assertEqual(conn.take(), b"BYE stale nothing heard for 610 seconds\r\n")

    def test_reload_changes_auth_limits(self) -> None:
        """--auth-timeout and --max-auth-checks follow a reload."""
        users = os.path.join(self.directory, "users.toml")
        with open(users, "w") as f:
            f.write("[users.alice]\n")
        self.write(f"users = {users!r}\nmax-auth-checks = 4\nauth-timeout = 10\n")
        _, lifecycle, factory = self.start()
        auth: Any = factory.auth
        self.assertEqual((auth.throttle.max_checks, auth.timeout), (4, 10))
        self.write(f"users = {users!r}\nmax-auth-checks = 9\nauth-timeout = 3\n")
        lifecycle.reload()
        self.assertEqual((auth.throttle.max_checks, auth.timeout), (9, 3))

    def test_bad_file_on_reload_keeps_the_running_options(self) -> None:
        self.write("max-payload = 100\n")
        hub, lifecycle, _ = self.start()
        self.write("max-payload = -1\n")
        done, failed, why = lifecycle.reload()
        self.assertEqual((done, failed), (0, 1))
        self.assertIn("config not reloaded, old options kept: txpubsub: ", why)
        self.assertIn("max-payload: expected a whole number", why)
        self.assertEqual(hub.max_payload, 100)
