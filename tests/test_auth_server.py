"""--users, --auth-timeout and --allow-anonymous as twistd takes them, and a
real `twistd -n txpubsub --users FILE` over 127.0.0.1."""
from __future__ import annotations

import json
import os
import signal
import tempfile

from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from txpubsub.auth.authenticator import Authenticator
from txpubsub.auth.authorizer import RulesAuthorizer
from txpubsub.auth.passwords import hash_password
from txpubsub.core.hub import Hub
from txpubsub.doors.line import LineDoorFactory
from txpubsub.doors.session import DoorSettings
from txpubsub.server.listeners import ListenerService
from txpubsub.server.tap import Options, beyond_loopback, makeService

from .netclient import WAIT, connect, port_of
from .test_tls import Certs
from .test_twistd import ServerProcess, twistd


def users_file(text: str) -> str:
    path = os.path.join(tempfile.mkdtemp(), "users.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


USERS = f"""
[users.alice]
password = "{hash_password("s3cret pw", ln=10, r=2)}"
publish = ["news.>", "@*"]
subscribe = ["news.>"]
"""


def make(*args: str) -> list[object]:
    options = Options()
    options.parseOptions([*args, "--admin", "none"])
    top = makeService(options, MemoryReactorClock())
    assert isinstance(top, MultiService)
    return list(top)


class UsersOptionTests(SynchronousTestCase):
    def factories(self, services: list[object]) -> list[object]:
        return [s.factory for s in services if isinstance(s, ListenerService)]

    def test_users_wired(self) -> None:
        """--users gives the hub the file's rules and every client listener the login."""
        services = make("--users", users_file(USERS), "--auth-timeout", "3",
                        "--port", "tcp:1234")
        hub = services[0]
        self.assertIsInstance(hub.authorizer, RulesAuthorizer)  # type: ignore[attr-defined]
        [factory] = self.factories(services)
        self.assertEqual(factory.auth.timeout, 3.0)  # type: ignore[attr-defined]
        self.assertFalse(factory.settings.protected)  # type: ignore[attr-defined]

    def test_protected_without_users(self) -> None:
        """Without --users protected mode is on, unless --allow-anonymous."""
        [factory] = self.factories(make("--port", "tcp:1234"))
        self.assertTrue(factory.settings.protected)  # type: ignore[attr-defined]
        self.assertIsNone(factory.auth)  # type: ignore[attr-defined]
        [factory] = self.factories(make("--port", "tcp:1234", "--allow-anonymous"))
        self.assertFalse(factory.settings.protected)  # type: ignore[attr-defined]

    def test_protected_mode_said_at_start(self) -> None:
        """A listener beyond loopback in protected mode gets one startup line saying so."""
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher

        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        make("--port", "tcp:1234", "--port", "tcp:1235:interface=127.0.0.1",
             "--port", "tcp6:1236:interface=\\:\\:1", "--port", "unix:/tmp/x.sock")
        said = [e["listener"] for e in events if "protected mode" in e["log_format"]]
        self.assertEqual(said, ["tcp:1234"])
        self.assertEqual(beyond_loopback("tcp:1:interface=0.0.0.0"), True)
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        make("--port", "tcp:1234", "--allow-anonymous")
        self.assertEqual([e for e in events if "protected mode" in e["log_format"]], [])

    def test_bad_users_file_stops_the_start(self) -> None:
        """A users file that cannot be used stops the server with one line saying why."""
        with self.assertRaises(SystemExit) as caught:
            make("--users", users_file("[users.alice]\npublish = ['x..y']\n"))
        self.assertIn("--users: ", str(caught.exception))
        self.assertIn("[users.alice]: bad channel name", str(caught.exception))

    def test_feed_needs_anonymous_rules(self) -> None:
        """Feed and ingest connections are anonymous: the anonymous rules must allow
        their channel, or the server does not start and says what to add."""
        path = users_file(USERS)
        with self.assertRaises(SystemExit) as caught:
            make("--users", path, "--feed", "news.>=tcp:1600")
        self.assertIn("[anonymous] subscribe", str(caught.exception))
        with self.assertRaises(SystemExit) as caught:
            make("--users", path, "--ingest", "news.in=tcp:1601")
        self.assertIn("[anonymous] publish", str(caught.exception))
        path = users_file(USERS + '[anonymous]\nsubscribe = ["news.>"]\n'
                          'publish = ["news.in"]\n')
        make("--users", path, "--feed", "news.>=tcp:1600", "--ingest", "news.in=tcp:1601")


class UsersTwistdTests(TestCase):
    timeout = 60

    async def test_users_over_tcp(self) -> None:
        """twistd with --users: AUTH, permissions, a wrong password, and SIGHUP
        applying an edited file to a connected client."""
        path = users_file(USERS)
        server = ServerProcess()
        process = reactor.spawnProcess(
            server, twistd()[0],
            [*twistd(), "-n", "--pidfile=", "txpubsub", "--port", "tcp:0:interface=127.0.0.1",
             "--users", path, "--admin", "none"],
            env=os.environ.copy(), path=tempfile.mkdtemp())
        self.addCleanup(lambda: None if server.ended.called else process.signalProcess("KILL"))
        port = await server.listening.addTimeout(WAIT * 2, reactor)
        client = await connect(f"tcp:127.0.0.1:{port}")
        self.assertIn(b'"auth_required":true', client.lines[0])
        self.assertTrue((await client.ask(b"SUB news.uk", b"-ERR")).startswith(
            b"-ERR auth-required"))
        self.assertTrue((await client.ask(b"AUTH alice Xyzzy-guess", b"-ERR")).startswith(
            b"-ERR auth-failed"))
        self.assertEqual(await client.ask(b"AUTH alice s3cret pw", b"+OK"), b"+OK alice")
        await client.ask(b"SUB news.>", b"+OK subscribed")
        self.assertEqual(await client.ask(b"PUB news.uk hi", b"+OK"), b"+OK 1")
        self.assertTrue((await client.ask(b"PUB chat.x hi", b"-ERR")).startswith(
            b"-ERR forbidden"))
        with open(path, "w") as f:
            f.write(USERS.replace('subscribe = ["news.>"]', 'subscribe = ["news.uk"]')
                    .replace('publish = ["news.>", "@*"]', 'publish = ["chat.>"]'))
        process.signalProcess(signal.SIGHUP)
        await client.wait_line(b"DROP news.>")
        self.assertEqual(await client.ask(b"PUB chat.x hi", b"+OK"), b"+OK 1")
        await server.wait_for(b"users file")
        self.assertIn(b"reloaded", server.output)
        await client.quit()
        process.signalProcess(signal.SIGTERM)
        await server.ended.addTimeout(WAIT, reactor)
        self.assertNotIn(b"Traceback", server.output)
        self.assertIn(b"authentication as alice failed", server.output)
        # The log names the address and the user, never a password.
        self.assertNotIn(b"Xyzzy-guess", server.output)
        self.assertNotIn(b"s3cret", server.output)


class CertificateUserTLSTests(TestCase):
    timeout = 60

    async def test_certificate_maps_to_user(self) -> None:
        """Over mtls: with --tls-name-from cn, a certificate named after a user is
        that user from the start (INFO "user"); a certificate whose name is no
        user is refused (nothing would reserve its name), saying what to add."""

        certs = Certs()
        hub = Hub(reactor, epoch="itest")
        auth = Authenticator.from_file(hub, users_file(USERS))
        description = (f"mtls:0:interface=127.0.0.1:privateKey={certs.key_path}"
                       f":certKey={certs.cert_path}:caCerts={certs.ca_path}")
        factory = LineDoorFactory(hub, description, DoorSettings(tls_name_from="cn"))
        factory.auth = auth
        service = ListenerService(reactor, description, factory)
        service.startService()
        self.addCleanup(service.stopService)
        port = port_of(service)
        def endpoint(cn: str) -> IStreamClientEndpoint:
            options = certs.client_options(certs.client("x.example", common_name=cn))
            return wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", port))

        alice = await connect(endpoint("alice"))
        info = json.loads(alice.lines[0][5:])
        self.assertEqual((info["user"], info["name"], info["auth_required"]),
                         ("alice", "alice", False))
        self.assertEqual(await alice.ask(b"PUB news.uk hi", b"+OK"), b"+OK 1")
        other = await connect(endpoint("zed"))
        await other.closed.addTimeout(WAIT, reactor)
        self.assertEqual(other.lines, [
            b"BYE auth-failed the certificate's name zed is not a user of the users file (an "
            b"operator may add [users.zed], no password needed)"])
        await alice.quit()
