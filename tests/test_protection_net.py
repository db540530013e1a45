"""Protection over real loopback sockets: a subscriber that stops reading during
a flood, and the raw feed and ingest listeners spoken to with plain sockets."""
from __future__ import annotations

import re

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.interfaces import IProtocolFactory
from twisted.trial.unittest import TestCase

from txpubsub.core.hub import Hub
from txpubsub.doors.feeds import FeedFactory, IngestFactory
from txpubsub.doors.line import LineDoorFactory
from txpubsub.doors.session import DoorSettings
from txpubsub.server.listeners import ListenerService

from .netclient import WAIT, LineClient, connect, port_of


class ProtectionTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.hub = Hub(reactor, epoch="itest")
        self.clients: list[LineClient] = []

    def listen(self, factory: IProtocolFactory) -> str:
        service = ListenerService(reactor, "tcp:0:interface=127.0.0.1", factory)
        service.startService()
        self.addCleanup(service.stopService)
        return f"tcp:127.0.0.1:{port_of(service)}"

    async def connect(self, where: str) -> LineClient:
        client = await connect(where)
        self.clients.append(client)
        return client

    async def tearDown(self) -> None:  # type: ignore[override]  # trial awaits it
        await gatherResults([c.quit() for c in self.clients])

    async def test_non_reader_cut_off_during_flood(self) -> None:
        """One subscriber stops reading: it is cut off; the reader gets every
        message once and in order; a third client's PING is answered meanwhile."""
        self.hub.max_publish_bytes_rate = 0  # 12 MB at once: this is about the reader
        address = self.listen(LineDoorFactory(self.hub, "tcp", DoorSettings(max_buffer=256 * 1024)))
        reader = await self.connect(address)
        await reader.ask(b"SUB flood", b"+OK")
        stuck = await self.connect(address)
        await stuck.ask(b"SUB flood", b"+OK")
        stuck.transport.pauseProducing()  # never reads again (until the end)
        bystander = await self.connect(address)
        publisher = await self.connect(address)
        await publisher.ask(b"QUIET on", b"+OK")

        count, payload = 3000, b"p" * 4000  # 12 MB: past kernel buffers and the limit
        batch = 100
        pongs = []
        for start in range(0, count, batch):
            publisher.send(b"".join(
                b"PUB flood %d %s\r\n" % (i, payload) for i in range(start, start + batch)))
            await publisher.ask(b"PING", b"PONG")  # bounded: one batch in flight
            if start % 1000 == 0:
                pongs.append(await bystander.ask(b"PING", b"PONG"))
        self.assertEqual(len(pongs), 3)

        def got_all(lines: list[bytes]) -> bool:
            return sum(x.startswith(b"MSG ") for x in lines) >= count

        await reader.wait(got_all)
        ids = [int(m) for m in re.findall(rb"^MSG flood (\d+) ", b"\n".join(reader.lines), re.M)]
        self.assertEqual(ids, list(range(1, count + 1)))
        self.assertEqual(self.hub.counters.slow_consumers, 1)
        stuck.transport.resumeProducing()
        await stuck.closed.addTimeout(WAIT, reactor)
        self.clients.remove(stuck)
        self.assertFalse(reader.closed.called)
        self.assertFalse(publisher.closed.called)

    async def test_feed_and_ingest(self) -> None:
        """Lines sent to an ingest port come out of a feed port as bare lines."""
        feed = self.listen(FeedFactory("logs", self.hub))
        ingest = self.listen(IngestFactory("logs", self.hub))
        watcher = await self.connect(self.listen(LineDoorFactory(self.hub)))
        await watcher.ask(b"SUB logs", b"+OK")
        reader = LineClient()
        await connectProtocol(clientFromString(reactor, feed), reader).addTimeout(WAIT, reactor)
        writer = LineClient()
        await connectProtocol(clientFromString(reactor, ingest), writer).addTimeout(
            WAIT, reactor)
        # Both raw connections are clients of the hub before anything is sent.
        await watcher.ask(b"WHO", b"+OK 3")
        writer.send(b"first line\nsecond  line \r\n\xff binary\n")
        await reader.wait(lambda lines: len(lines) >= 3)
        self.assertEqual(reader.lines, [b"first line", b"second  line ", b"\xff binary"])
        await watcher.wait(lambda lines: sum(x.startswith(b"MSG") for x in lines) >= 3)
        self.assertIn(b"MSG logs 1 c3 first line", watcher.lines)
        for raw in (reader, writer):
            raw.transport.loseConnection()
        await gatherResults([reader.closed, writer.closed])
        done: Deferred[None] = Deferred()
        reactor.callLater(0, done.callback, None)
        await done
        await watcher.ask(b"WHO", b"+OK 1")
