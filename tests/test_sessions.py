"""What every door's session does alike: the bounded close, slow consumers,
kicks, shutdown and --max-clients, written once and run against each door
(line, raw feed, raw ingest), each with its own goodbye."""
from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.doors.factory import DoorFactory
from txpubsub.doors.feeds import FeedFactory, IngestFactory
from txpubsub.doors.line import LineDoorFactory
from txpubsub.doors.session import CLOSE_GRACE, DoorSettings
from txpubsub.wire.errors import CloseReason

from .helpers import Conn, make_hub, next_turn

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object


class SessionBehaviour(_Base):
    """Mixed into one TestCase per door; ``door`` builds that door's factory."""

    def door(self, settings: DoorSettings) -> DoorFactory:
        raise NotImplementedError

    def goodbye(self, reason: str, text: str = "") -> bytes:
        """What this door's peer reads last when the server closes."""
        raise NotImplementedError

    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = make_hub(self.clock, max_clients=2)

    def connect(self, **settings: object) -> Conn:
        return Conn(self.hub, self.door(DoorSettings(**settings)))  # type: ignore[arg-type]

    def test_kicked_reader_gets_its_doors_goodbye_then_is_let_go(self) -> None:
        conn = self.connect()
        client = conn.proto.session.client
        assert client is not None
        self.hub.kick(client.client_id, "maintenance")
        self.assertEqual(conn.take(), self.goodbye("kicked", "maintenance"))
        self.assertTrue(conn.closed)
        self.assertEqual(self.hub.clients(), [client])  # until the socket is really gone
        conn.lose()
        self.assertEqual(self.hub.clients(), [])

    def test_peer_that_never_reads_is_aborted_after_the_grace(self) -> None:
        conn = self.connect()
        self.hub.close_all()
        self.assertFalse(conn.transport.disconnected)
        self.clock.advance(CLOSE_GRACE)
        self.assertTrue(conn.transport.disconnected)  # aborted

    def test_shutdown_says_goodbye_to_everyone(self) -> None:
        conns = [self.connect(), self.connect()]
        gone = self.hub.close_all()
        for conn in conns:
            self.assertEqual(conn.take(), self.goodbye("shutdown"))
            conn.lose()
        self.assertIsNone(self.successResultOf(gone))

    def test_one_over_max_clients_is_refused_and_others_stay(self) -> None:
        first, second = self.connect(), self.connect()
        third = self.connect()
        self.assertEqual(third.greeting, self.goodbye("too-many-clients"))
        self.assertTrue(third.closed)
        self.assertFalse(first.closed or second.closed)
        self.assertEqual(len(self.hub.clients()), 2)

    def test_reader_past_max_buffer_is_cut_and_others_go_on(self) -> None:
        slow = self.connect(max_buffer=65536)
        assert slow.proto.session.client is not None
        self.hub.subscribe(slow.proto.session.client, "t")
        fast = Conn(self.hub)
        fast.cmd("SUB t")
        for _ in range(40):
            self.hub.publish("x", "t", b"y" * 4000)
            slow.flush()  # the slow reader reads nothing
            fast.take()
        self.assertTrue(slow.closed)
        self.assertEqual(slow.proto.session.close_reason, CloseReason.SLOW_CONSUMER)
        self.assertFalse(fast.closed)
        self.assertEqual(self.hub.counters.slow_consumers, 1)

    def test_door_counts_the_bytes_it_wrote(self) -> None:
        before = self.hub.stats()["bytes_out"]
        conn = self.connect()
        written = len(conn.greeting)
        assert conn.proto.session.client is not None
        self.hub.subscribe(conn.proto.session.client, "t")
        self.hub.publish("x", "t", b"hello")
        written += len(conn.take())
        self.assertGreater(written, 0)
        self.assertEqual(self.hub.stats()["bytes_out"] - before, written)

    def test_messages_out_counts_deliveries_not_replies(self) -> None:
        """admin CLIENTS' "out" counts the messages a connection was handed,
        written or still waiting, and none of its replies or greeting."""
        conn = self.connect()
        session = conn.proto.session
        assert session.client is not None
        self.hub.subscribe(session.client, "t")
        self.hub.publish("x", "t", b"one")
        self.assertEqual(session.msgs_out, 1)  # waiting for the turn's write
        conn.take()
        session.send(b"+OK a reply\r\n")
        self.hub.publish("x", "t", b"two")
        self.hub.publish("x", "t", b"three")
        self.assertEqual(session.msgs_out, 3)
        conn.take()
        self.assertEqual(session.msgs_out, 3)

    def test_goodbye_counts_in_bytes_out(self) -> None:
        """A kicked client's last line (BYE for the line door) is a byte the
        server wrote: STATS bytes_out counts it like every other."""
        conn = self.connect()
        written = len(conn.greeting)
        before = self.hub.stats()["bytes_out"] - written
        client = conn.proto.session.client
        assert client is not None
        self.hub.kick(client.client_id, "maintenance")
        written += len(conn.take())
        self.assertEqual(self.hub.stats()["bytes_out"] - before, written)


class LineSessionTests(SessionBehaviour, SynchronousTestCase):
    def door(self, settings: DoorSettings) -> DoorFactory:
        return LineDoorFactory(self.hub, "tcp:test", settings)

    def goodbye(self, reason: str, text: str = "") -> bytes:
        return f"BYE {reason} {text}".strip().encode() + b"\r\n"

    def test_door_counts_the_bytes_it_wrote(self) -> None:
        """Replies count too: STATS bytes_out is what went to the sockets."""
        super().test_door_counts_the_bytes_it_wrote()


class FeedSessionTests(SessionBehaviour, SynchronousTestCase):
    """A raw feed reader takes every line for a payload: it is never told BYE."""

    def door(self, settings: DoorSettings) -> DoorFactory:
        return FeedFactory("t", self.hub, "tcp:feed", settings)

    def goodbye(self, reason: str, text: str = "") -> bytes:
        return b""

    def test_feed_reader_gets_payloads_alone(self) -> None:
        conn = self.connect()
        self.hub.publish("x", "t", b"line one")
        self.assertEqual(conn.take(), b"line one\r\n")


class IngestSessionTests(SessionBehaviour, SynchronousTestCase):
    def door(self, settings: DoorSettings) -> DoorFactory:
        return IngestFactory("t", self.hub, "tcp:ingest", settings)

    def goodbye(self, reason: str, text: str = "") -> bytes:
        return b""

    def test_door_counts_the_bytes_it_wrote(self) -> None:
        """An ingest connection is sent nothing, so it counts nothing."""
        before = self.hub.stats()["bytes_out"]
        conn = self.connect()
        conn.send(b"published\n")
        self.assertEqual(conn.take(), b"")
        self.assertEqual(self.hub.stats()["bytes_out"], before)
        self.assertEqual([m.payload for m in self.hub.history("t")], [b"published"])

    def test_a_read_of_many_lines_takes_turns(self) -> None:
        """2,500 lines in one read (27 KB) are published a thousand a reactor
        turn, in order."""
        conn = self.connect()
        conn.proto.dataReceived(b"".join(b"line %05d\n" % n for n in range(2500)))
        channel = self.hub.channel("t")
        assert channel is not None
        published = []
        for _ in range(3):
            published.append(channel.published)
            next_turn(self.clock)
        self.assertEqual(published, [1000, 2000, 2500])
        self.assertEqual([m.payload for m in channel.newest(2)], [b"line 02498", b"line 02499"])


class RespSessionTests(SessionBehaviour, SynchronousTestCase):
    def door(self, settings: DoorSettings) -> DoorFactory:
        from txpubsub.doors.resp import RespDoorFactory

        return RespDoorFactory(self.hub, "tcp:resp", settings)

    def goodbye(self, reason: str, text: str = "") -> bytes:
        if reason == "too-many-clients":
            return b"-ERR max number of clients reached\r\n"
        return b"-ERR closing: %s%s\r\n" % (reason.encode(), b" " + text.encode() if text else b"")
