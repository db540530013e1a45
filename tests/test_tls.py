"""TLS listeners: ssl: and mtls:, names from certificates, failures that stay local."""
from __future__ import annotations

import json
import os
import tempfile

import trustme
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ClientEndpoint,
    connectProtocol,
    serverFromString,
    wrapClientTLS,
)
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.internet.task import deferLater
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from txpubsub.core.hub import Hub
from txpubsub.doors.admin import AdminFactory
from txpubsub.doors.line import LineDoorFactory
from txpubsub.doors.session import DoorSettings
from txpubsub.server.lifecycle import reload_certificates
from txpubsub.server.listeners import ListenerService
from txpubsub.server.tap import Options

from .netclient import WAIT, LineClient, connect, port_of


class Certs:
    """A test CA, a server certificate for localhost, and client certificates."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.ca = trustme.CA()
        self.ca_path = self.write("ca.pem", self.ca.cert_pem.bytes())
        server = self.ca.issue_cert("localhost", "127.0.0.1", "::1")
        self.key_path = self.write("server-key.pem", server.private_key_pem.bytes())
        self.cert_path = self.write("server-cert.pem",
                                    b"".join(c.bytes() for c in server.cert_chain_pems))

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def client(self, *identities: str, common_name: str | None = None) -> PrivateCertificate:
        issued = self.ca.issue_cert(*identities, common_name=common_name)
        return PrivateCertificate.loadPEM(
            issued.cert_chain_pems[0].bytes() + issued.private_key_pem.bytes())

    def client_options(self, client: PrivateCertificate | None = None,
                       ca: trustme.CA | None = None):
        root = Certificate.loadPEM((ca or self.ca).cert_pem.bytes())
        if client is None:
            return optionsForClientTLS("localhost", trustRoot=root)
        return optionsForClientTLS("localhost", trustRoot=root, clientCertificate=client)


class TLSTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.certs = Certs()
        self.hub = Hub(reactor, epoch="itest")
        self.clients: list[LineClient] = []
        self.listeners: list[ListenerService] = []

    def listen(self, description: str, settings: DoorSettings | None = None) -> int:
        service = ListenerService(reactor, description,
                                  LineDoorFactory(self.hub, description, settings))
        service.startService()
        self.addCleanup(service.stopService)
        self.listeners.append(service)
        return port_of(service)

    def ssl(self) -> int:
        return self.listen(f"ssl:0:interface=127.0.0.1:privateKey={self.certs.key_path}"
                           f":certKey={self.certs.cert_path}")

    def mtls(self, settings: DoorSettings | None = None) -> int:
        return self.listen(f"mtls:0:interface=127.0.0.1:privateKey={self.certs.key_path}"
                           f":certKey={self.certs.cert_path}:caCerts={self.certs.ca_path}",
                           settings)

    async def tls_connect(self, port: int, options) -> LineClient:
        endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", port))
        client = await connect(endpoint)
        self.clients.append(client)
        return client

    async def plain_connect(self, port: int) -> LineClient:
        client = await connect(f"tcp:127.0.0.1:{port}")
        self.clients.append(client)
        return client

    async def tearDown(self) -> None:  # type: ignore[override]  # trial awaits it
        await gatherResults([c.quit() for c in self.clients])

    async def test_tls_and_plain_share_channels(self) -> None:
        """A TLS subscriber gets a plain publish and the reverse; INFO says tls."""
        tls = await self.tls_connect(self.ssl(), self.certs.client_options())
        plain = await self.plain_connect(self.listen("tcp:0:interface=127.0.0.1"))
        self.assertTrue(json.loads(tls.lines[0][5:])["tls"])
        self.assertFalse(json.loads(plain.lines[0][5:])["tls"])
        await tls.ask(b"SUB t", b"+OK")
        await plain.ask(b"SUB t", b"+OK")
        await plain.ask(b"PUB t from-plain", b"+OK")
        await tls.wait_line(b"MSG t 1 c2 from-plain")
        await tls.ask(b"PUB t from-tls", b"+OK")
        await plain.wait_line(b"MSG t 2 c1 from-tls")

    async def test_mtls_needs_a_client_certificate(self) -> None:
        """Without a certificate the handshake fails; with one, all is well."""
        port = self.mtls()
        refused = LineClient()
        endpoint = wrapClientTLS(self.certs.client_options(),
                                 TCP4ClientEndpoint(reactor, "127.0.0.1", port))
        await connectProtocol(endpoint, refused).addTimeout(WAIT, reactor)
        await refused.closed.addTimeout(WAIT, reactor)
        self.assertEqual(refused.lines, [])
        good = await self.tls_connect(port, self.certs.client_options(
            self.certs.client("alice", common_name="alice")))
        self.assertEqual(await good.ask(b"PING", b"PONG"), b"PONG")

    async def test_untrusted_certificate_refused(self) -> None:
        stranger = trustme.CA().issue_cert("mallory", common_name="mallory")
        cert = PrivateCertificate.loadPEM(stranger.cert_chain_pems[0].bytes()
                                          + stranger.private_key_pem.bytes())
        client = LineClient()
        endpoint = wrapClientTLS(self.certs.client_options(cert),
                                 TCP4ClientEndpoint(reactor, "127.0.0.1", self.mtls()))
        await connectProtocol(endpoint, client).addTimeout(WAIT, reactor)
        await client.closed.addTimeout(WAIT, reactor)
        self.assertEqual(client.lines, [])
        self.assertEqual(self.hub.clients(), [])

    async def test_name_from_certificate(self) -> None:
        """--tls-name-from cn: the client is called by its certificate, for good."""
        port = self.mtls(DoorSettings(tls_name_from="cn"))
        alice = await self.tls_connect(port, self.certs.client_options(
            self.certs.client("alice-laptop", common_name="alice")))
        self.assertEqual(json.loads(alice.lines[0][5:])["name"], "alice")
        reply = await alice.ask(b"NAME bob", b"-ERR")
        self.assertTrue(reply.startswith(b"-ERR forbidden "))
        self.assertEqual(await alice.ask(b"WHO", b"CLIENT"), b"CLIENT c1 alice 0")

    async def test_name_from_san(self) -> None:
        port = self.mtls(DoorSettings(tls_name_from="san"))
        bob = await self.tls_connect(port, self.certs.client_options(
            self.certs.client("bob-laptop", common_name="Bob Smith")))
        self.assertEqual(json.loads(bob.lines[0][5:])["name"], "bob-laptop")

    async def test_unusable_certificate_name(self) -> None:
        """A CN that is not a valid client name: BYE auth-failed and closed."""
        port = self.mtls(DoorSettings(tls_name_from="cn"))
        client = LineClient()
        endpoint = wrapClientTLS(
            self.certs.client_options(self.certs.client("x", common_name="Alice Smith")),
            TCP4ClientEndpoint(reactor, "127.0.0.1", port))
        await connectProtocol(endpoint, client).addTimeout(WAIT, reactor)
        await client.closed.addTimeout(WAIT, reactor)
        self.assertEqual(len(client.lines), 1)
        self.assertTrue(client.lines[0].startswith(b"BYE auth-failed bad name 'Alice Smith'"),
                        client.lines)

    async def test_not_a_client_before_the_handshake(self) -> None:
        """A TCP connection to a TLS port that has not finished its handshake is
        nobody: not in WHO, and nothing can be sent to it."""
        port = self.mtls()
        raw = await connect_raw(port)
        plain = await self.plain_connect(self.listen("tcp:0:interface=127.0.0.1"))
        self.assertEqual(await plain.ask(b"WHO", b"CLIENT"), b"CLIENT c1 - 0")  # itself only
        reply = await plain.ask(b"PUB @c2 flood", b"-ERR")  # no id was given to the raw one
        self.assertTrue(reply.startswith(b"-ERR no-such-client "))
        raw.transport.loseConnection()
        await raw.closed.addTimeout(WAIT, reactor)

    async def test_pending_handshakes_count_toward_max_clients(self) -> None:
        """Silent TCP connections to a TLS port count toward --max-clients from
        accept: past it they are closed at once, a plain client gets
        BYE too-many-clients, and a connected client's PING is answered."""
        self.hub.registry.max_clients = 6
        plain_port = self.listen("tcp:0:interface=127.0.0.1")
        first = await self.plain_connect(plain_port)
        port = self.mtls()
        silent = [await connect_raw(port) for _ in range(8)]
        # The last three found no place: closed without waiting for the timeout.
        for refused in silent[5:]:
            await refused.closed.addTimeout(WAIT, reactor)
        late = await connect_raw(plain_port)
        await late.closed.addTimeout(WAIT, reactor)
        self.assertEqual(late.lines, [b"BYE too-many-clients"])
        self.assertEqual(await first.ask(b"PING", b"PONG"), b"PONG")
        for waiting in silent[:5]:
            waiting.transport.loseConnection()
            await waiting.closed.addTimeout(WAIT, reactor)
        for _ in range(int(WAIT / 0.01)):  # the server side sees each close a moment later
            if not self.hub.registry.reserved:
                break
            await deferLater(reactor, 0.01)
        self.assertEqual(self.hub.registry.reserved, 0)
        again = await self.plain_connect(plain_port)
        self.assertEqual(await again.ask(b"PING", b"PONG"), b"PONG")

    async def test_certificate_name_beats_a_squatter(self) -> None:
        """A client that took a certificate's name with NAME loses it to the holder."""
        squatter = await self.plain_connect(self.listen("tcp:0:interface=127.0.0.1"))
        await squatter.ask(b"NAME alice", b"+OK")
        port = self.mtls(DoorSettings(tls_name_from="cn"))
        alice = await self.tls_connect(port, self.certs.client_options(
            self.certs.client("x", common_name="alice")))
        self.assertEqual(json.loads(alice.lines[0][5:])["name"], "alice")
        await squatter.closed.addTimeout(WAIT, reactor)
        self.assertEqual(squatter.lines[-1], b"BYE kicked that name belongs to a certificate")
        self.clients.remove(squatter)

    async def test_certificate_name_stays_reserved_after_its_holder_leaves(self) -> None:
        """Once a certificate has carried a name, NAME cannot take it, also after
        the holder has gone (a squatter polling NAME would get its direct
        messages); the holder comes back to it."""
        plain = await self.plain_connect(self.listen("tcp:0:interface=127.0.0.1"))
        port = self.mtls(DoorSettings(tls_name_from="cn"))
        options = self.certs.client_options(self.certs.client("x", common_name="sensor-7"))
        sensor = await self.tls_connect(port, options)
        await sensor.quit()
        self.clients.remove(sensor)
        self.assertEqual(await plain.ask(b"NAME sensor-7", b"-ERR"),
                         b"-ERR name-taken sensor-7 belongs to a client certificate")
        self.assertEqual(await plain.ask(b"NAME sensor-8", b"+OK"), b"+OK sensor-8")
        again = await self.tls_connect(port, options)
        self.assertEqual(json.loads(again.lines[0][5:])["name"], "sensor-7")

    async def test_plain_client_on_tls_port(self) -> None:
        """Plain text to a TLS port fails for that client alone."""
        port = self.ssl()
        bystander = await self.tls_connect(port, self.certs.client_options())
        confused = await connect_raw(port)
        confused.send(b"PING\r\n")
        await confused.closed.addTimeout(WAIT, reactor)
        self.assertNotIn(b"PONG", b"".join(confused.lines) + confused.buffer)
        self.assertEqual(await bystander.ask(b"PING", b"PONG"), b"PONG")

    async def test_handshake_timeout(self) -> None:
        """A client that never starts its handshake is let go of."""
        port = self.listen(f"ssl:0:interface=127.0.0.1:privateKey={self.certs.key_path}"
                           f":certKey={self.certs.cert_path}",
                           DoorSettings(handshake_timeout=0.5))
        silent = await connect_raw(port)
        await silent.closed.addTimeout(WAIT, reactor)
        self.assertEqual(self.hub.clients(), [])

    async def test_reload_certificates(self) -> None:
        """RELOAD picks up new certificate files for new connections."""
        port = self.mtls()
        client_cert = self.certs.client("alice", common_name="alice")
        before = await self.tls_connect(port, self.certs.client_options(client_cert))
        # A new server certificate, from a new CA that also signs client certificates.
        new_ca = trustme.CA()
        issued = new_ca.issue_cert("localhost", "127.0.0.1")
        self.certs.write("server-key.pem", issued.private_key_pem.bytes())
        self.certs.write("server-cert.pem", b"".join(c.bytes() for c in issued.cert_chain_pems))
        self.certs.write("ca.pem", new_ca.cert_pem.bytes())
        admin = AdminFactory(self.hub, lambda grace: None,
                             lambda: reload_certificates(self.listeners)).buildProtocol(None)
        from twisted.internet.testing import StringTransport

        transport = StringTransport()
        admin.makeConnection(transport)
        admin.dataReceived(b"RELOAD\r\n")
        self.assertRegex(transport.value(), rb"^\+OK reloaded \d+ failed 0\r\n$")
        new_client = new_ca.issue_cert("alice", common_name="alice")
        after = await self.tls_connect(port, self.certs.client_options(
            PrivateCertificate.loadPEM(new_client.cert_chain_pems[0].bytes()
                                       + new_client.private_key_pem.bytes()), ca=new_ca))
        self.assertEqual(await after.ask(b"PING", b"PONG"), b"PONG")
        self.assertEqual(await before.ask(b"PING", b"PONG"), b"PONG")  # live ones keep theirs


async def connect_raw(port: int) -> LineClient:
    client = LineClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client).addTimeout(
        WAIT, reactor)
    return client


class TLSOptionTests(SynchronousTestCase):
    def test_missing_key_file_is_one_line(self) -> None:
        options = Options()
        e = self.assertRaises(usage.UsageError, options.parseOptions,
                              ["--port", "ssl:23443:privateKey=/nonexistent/key.pem"])
        self.assertIn("bad endpoint 'ssl:23443:privateKey=/nonexistent/key.pem'", str(e))

    def test_mtls_needs_ca(self) -> None:
        certs = Certs()
        e = self.assertRaises(usage.UsageError, Options().parseOptions, [
            "--port", f"mtls:23443:privateKey={certs.key_path}:certKey={certs.cert_path}"])
        self.assertIn("needs caCerts=", str(e))

    def test_mtls_endpoint_string(self) -> None:
        certs = Certs()
        endpoint = serverFromString(
            reactor, f"mtls:0:privateKey={certs.key_path}:certKey={certs.cert_path}"
                     f":caCerts={certs.ca_path}")
        self.assertIsInstance(endpoint, SSL4ServerEndpoint)

    def test_name_from_choices(self) -> None:
        self.assertRaises(usage.UsageError, Options().parseOptions, ["--tls-name-from", "dn"])
