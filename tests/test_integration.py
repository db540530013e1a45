"""The real service on the real reactor, talked to over real loopback sockets."""
from __future__ import annotations

import os
import socket
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP6ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.trial.unittest import TestCase

from txpubsub.core.hub import Hub
from txpubsub.doors.line import LineDoorFactory
from txpubsub.doors.session import DoorSettings
from txpubsub.server.listeners import ListenError, ListenerService

from .netclient import WAIT, LineClient, connect, port_of


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class ServerTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.hub = Hub(reactor, epoch="itest")
        self.clients: list[LineClient] = []
        self.tcp = self.listen("tcp:0:interface=127.0.0.1:backlog=512")
        self.address = f"tcp:127.0.0.1:{port_of(self.tcp)}"

    def listen(self, description: str) -> ListenerService:
        service = ListenerService(reactor, description, LineDoorFactory(self.hub, description))
        service.startService()
        self.addCleanup(service.stopService)
        return service

    async def connect(self, where: str | IStreamClientEndpoint | None = None) -> LineClient:
        client = await connect(where or self.address)
        self.clients.append(client)
        return client

    async def tearDown(self) -> None:  # type: ignore[override]  # trial awaits it
        await gatherResults([c.quit() for c in self.clients])

    async def test_telnet_session(self) -> None:
        """INFO, then NAME alice, SUB news.>, and a publish from someone else arrives."""
        alice = await self.connect()
        self.assertTrue(alice.lines[0].startswith(b'INFO {"server":"txpubsub"'))
        self.assertEqual(await alice.ask(b"NAME alice", b"+OK"), b"+OK alice")
        self.assertEqual(await alice.ask(b"SUB news.>", b"+OK"), b"+OK subscribed news.> 0")
        bob = await self.connect()
        self.assertEqual(await bob.ask(b"PUB news.uk hello world", b"+OK"), b"+OK 1")
        await alice.wait_line(b"MSG news.uk 1 c2 hello world")

    async def test_200_clients_each_get_every_message_once(self) -> None:
        """200 concurrent subscribers with overlapping patterns: each id exactly once."""
        subscribers = await gatherResults(
            [Deferred.fromCoroutine(self.connect()) for _ in range(200)]
        )
        subs = []
        for i, client in enumerate(subscribers):
            patterns = [b"load.x", b"load.>"] if i % 2 else [b"load.*", b">"]
            for pattern in patterns:
                subs.append(client.ask(b"SUB " + pattern, b"+OK"))
        await gatherResults(subs)
        publisher = await self.connect()
        count = 50
        publisher.send(b"QUIET on\r\n" + b"".join(b"PUB load.x m%d\r\n" % i
                                                  for i in range(count)))

        def received(lines: list[bytes]) -> bool:
            return sum(line.startswith(b"MSG ") for line in lines) >= count

        await gatherResults([c.wait(received) for c in subscribers])
        # A PING answered after the publishes proves nothing more was on its way.
        await gatherResults([c.ask(b"PING", b"PONG") for c in subscribers])
        expected = [b"MSG load.x %d c201 m%d" % (i + 1, i) for i in range(count)]
        for client in subscribers:
            self.assertEqual([x for x in client.lines if x.startswith(b"MSG ")], expected)

    async def test_binary_payload_across_segments(self) -> None:
        """A 200 kB PUBB with CR, LF and NUL arrives byte-exact as MSGB."""
        reader = await self.connect()
        await reader.ask(b"SUB bin", b"+OK")
        writer = await self.connect()
        payload = bytes(range(256)) * 800
        writer.send(b"PUBB bin %d\r\n" % len(payload) + payload + b"\r\n")
        lines = await reader.wait(lambda lines: len(lines) >= 4)
        self.assertEqual(lines[2], b"MSGB bin 1 c2 %d" % len(payload))
        self.assertEqual(lines[3], payload)

    async def test_abuser_does_not_disturb_others(self) -> None:
        """A client sending an endless line is cut off; others carry on."""
        reader = await self.connect()
        await reader.ask(b"SUB t", b"+OK")
        abuser = await self.connect()
        abuser.send(b"x" * 70000)
        await abuser.closed.addTimeout(10, reactor)
        self.assertEqual(abuser.lines[-1],
                         b"BYE line-too-long lines are at most 65536 bytes")
        writer = await self.connect()
        await writer.ask(b"PUB t still-here", b"+OK")
        await reader.wait_line(b"MSG t 1 c3 still-here")

    async def test_unix_and_tcp_share_the_hub(self) -> None:
        """A publisher on a Unix socket reaches a subscriber on TCP."""
        path = os.path.join(tempfile.mkdtemp(), "c.sock")
        self.listen(f"unix:{path}")
        reader = await self.connect()
        await reader.ask(b"SUB t", b"+OK")
        writer = await self.connect(f"unix:{path}")
        await writer.ask(b"PUB t via-unix", b"+OK")
        await reader.wait_line(b"MSG t 1 c2 via-unix")
        who = await reader.ask(b"WHO", b"+OK")
        self.assertEqual(who, b"+OK 2")

    async def test_tcp6(self) -> None:
        """A tcp6 listener on ::1 works beside the IPv4 one."""
        if not has_ipv6_loopback():
            self.skipTest("no IPv6 loopback on this machine")
        six = self.listen("tcp6:0:interface=\\:\\:1")
        port = port_of(six)
        reader = await self.connect(TCP6ClientEndpoint(reactor, "::1", port))
        await reader.ask(b"SUB t", b"+OK")
        writer = await self.connect()
        await writer.ask(b"PUB t v4", b"+OK")
        await reader.wait_line(b"MSG t 1 c2 v4")

    async def test_port_in_use_is_one_clear_error(self) -> None:
        """A listener that cannot start stops the server with a line naming it."""
        taken = port_of(self.tcp)
        service = ListenerService(reactor, f"tcp:{taken}:interface=127.0.0.1",
                                  LineDoorFactory(self.hub))
        e = self.assertRaises(ListenError, service.privilegedStartService)
        self.assertIn(f"cannot listen on tcp:{taken}:interface=127.0.0.1", str(e))

    async def test_server_closes_after_quit(self) -> None:
        client = await self.connect()
        client.send(b"QUIT\r\n")
        await client.closed.addTimeout(10, reactor)
        self.assertEqual(client.lines[-1], b"+OK bye")
        done: Deferred[None] = Deferred()
        reactor.callLater(0, done.callback, None)
        await done
        self.assertEqual(self.hub.clients(), [])


class CleanCloseTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.hub = Hub(reactor, epoch="itest")
        service = ListenerService(reactor, "tcp:0:interface=127.0.0.1",
                                  LineDoorFactory(self.hub, "tcp", DoorSettings(ping_interval=0)))
        service.startService()
        self.addCleanup(service.stopService)
        self.address = f"tcp:127.0.0.1:{port_of(service)}"

    async def test_quit_after_backed_up_output_closes_cleanly(self) -> None:
        """After more than 64 KiB were queued, QUIT still gets +OK bye and a clean close."""
        client = await connect(self.address)
        publish = b"PUB me " + b"x" * 1000 + b"\r\n"
        client.send(b"SUB me\r\nQUIET on\r\n" + publish * 100 + b"QUIT\r\n")
        await client.closed.addTimeout(WAIT, reactor)
        self.assertEqual(client.lines[-1], b"+OK bye")
        self.assertTrue(client.lost_reason.check(ConnectionDone), client.lost_reason)

    async def test_half_closed_client_gets_every_reply_then_close(self) -> None:
        """printf 'PING\\nLIST\\n' | nc -N: the replies come, then the close."""
        client = await connect(self.address)
        client.send(b"PING\r\nSUB hc\r\nPUB hc hi\r\nLIST\r\n")
        client.transport.loseWriteConnection()
        await client.closed.addTimeout(WAIT, reactor)
        self.assertEqual(client.lines[1:], [b"PONG", b"+OK subscribed hc 0", b"MSG hc 1 c1 hi",
                                            b"+OK 1", b"CHANNEL hc 1 1 1", b"+OK 1"])
