"""The seams new doors and servers plug into: codecs (encode once), a
backplane that numbers messages later, an authorizer, messages from elsewhere."""
from __future__ import annotations

from typing import cast

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.core.authorizer import Authorizer
from txpubsub.core.backplane import Backplane, LocalBackplane
from txpubsub.core.channel import Channel
from txpubsub.core.hub import Hub
from txpubsub.core.message import Message
from txpubsub.core.registry import ClientRecord
from txpubsub.core.session import Session
from txpubsub.doors.line import LineDoorFactory
from txpubsub.wire.errors import HubError

from .helpers import Conn, ConsumerTransport, make_hub


class RecordingTransport(ConsumerTransport):
    """Keeps every object written, to see which bytes objects were shared."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)


class EncodeOnceTests(SynchronousTestCase):
    def test_every_line_subscriber_gets_the_same_bytes_object(self) -> None:
        """Fan-out encodes a message once for all line readers, concrete or wildcard."""
        hub = make_hub()
        factory = LineDoorFactory(hub, "tcp:test")  # as the server: one codec for all
        readers = [Conn(hub, factory, RecordingTransport) for _ in range(3)]
        for reader, pattern in zip(readers, ("t", "t", "*")):
            reader.cmd(f"SUB {pattern}")
            cast(RecordingTransport, reader.transport).writes.clear()
        Conn(hub, factory).cmd("PUB t hello")
        reader.flush()
        sent = [cast(RecordingTransport, reader.transport).writes for reader in readers]
        self.assertEqual(sent[0], [b"MSG t 1 c4 hello\r\n"])
        self.assertTrue(all(len(w) == 1 and w[0] is sent[0][0] for w in sent))


class LaterBackplane:
    """A backplane that numbers each message when the test says so."""

    def __init__(self, hub_of: list[Hub]) -> None:
        self.pending: list[tuple[Deferred[int], Channel[Session], Message]] = []
        self.hub_of = hub_of

    def publish(self, channel: Channel[Session], sender: str, payload: bytes,
                publisher: ClientRecord | None) -> Deferred[int]:
        d: Deferred[int] = Deferred()
        msg = Message(channel.name, channel.last_id + 1 + len(self.pending), sender, payload, 0.0)
        self.pending.append((d, channel, msg))
        return d

    def direct(self, recipient: ClientRecord, sender: str, payload: bytes,
               publisher: ClientRecord | None) -> int:
        return LocalBackplane(self.hub_of[0]).direct(recipient, sender, payload, publisher)

    def number(self) -> None:
        d, channel, msg = self.pending.pop(0)
        self.hub_of[0].fan_out(channel, msg, None)
        d.callback(msg.msg_id)

    def refuse(self) -> None:
        d, _, _ = self.pending.pop(0)
        d.errback(HubError("forbidden", "not now"))


class BackplaneTests(SynchronousTestCase):
    def setUp(self) -> None:
        hub_of: list[Hub] = []
        self.backplane = LaterBackplane(hub_of)
        plane: Backplane = self.backplane  # the fake implements the seam
        self.hub = make_hub(Clock(), backplane=plane)
        hub_of.append(self.hub)

    def test_replies_keep_command_order_when_an_id_comes_later(self) -> None:
        """PUB answered after PING was sent still comes first: replies are in order."""
        conn = Conn(self.hub)
        self.assertEqual(conn.send(b"PUB t one\nPING\nPUB t two\n"), b"")
        self.backplane.number()
        self.assertEqual(conn.take(), b"+OK 1\r\nPONG\r\n")
        self.backplane.number()
        self.assertEqual(conn.take(), b"+OK 2\r\n")

    def test_a_refusal_that_comes_later_is_an_error_reply_in_order(self) -> None:
        conn = Conn(self.hub)
        conn.send(b"PUB t one\nPING\n")
        self.backplane.refuse()
        self.assertEqual(conn.take(), b"-ERR forbidden not now\r\nPONG\r\n")
        self.assertFalse(conn.closed)

    def test_subscribers_get_the_message_when_the_backplane_brings_it(self) -> None:
        reader = Conn(self.hub)
        reader.cmd("SUB t")
        Conn(self.hub).send(b"PUB t hi\n")
        self.assertEqual(reader.take(), b"")
        self.backplane.number()
        self.assertEqual(reader.take(), b"MSG t 1 c2 hi\r\n")

    def test_admin_pub_answers_in_order_when_the_id_comes_later(self) -> None:
        from twisted.internet.testing import StringTransport

        from txpubsub.doors.admin import AdminFactory

        admin = AdminFactory(self.hub, lambda grace: None).buildProtocol(None)
        transport = StringTransport()
        admin.makeConnection(transport)
        admin.dataReceived(b"PUB t hi\nHELP\n")
        self.assertEqual(transport.value(), b"")
        self.backplane.number()
        self.assertTrue(transport.value().startswith(b"+OK 1\r\nHELP "))

    def test_quiet_publisher_gets_nothing_for_a_later_id(self) -> None:
        conn = Conn(self.hub)
        conn.cmd("QUIET on")
        conn.send(b"PUB t one\nPING\n")
        self.backplane.number()
        self.assertEqual(conn.take(), b"PONG\r\n")


class ArrivedTests(SynchronousTestCase):
    def test_message_from_elsewhere_is_kept_and_delivered(self) -> None:
        """A message numbered by another server reaches local readers and history."""
        hub = make_hub()
        reader = Conn(hub)
        reader.cmd("SUB news")
        hub.arrived(Message("news", 7, "alice", b"from afar", 0.0))
        self.assertEqual(reader.take(), b"MSG news 7 alice from afar\r\n")
        news = hub.channel("news")
        assert news is not None
        self.assertEqual(news.last_id, 7)
        self.assertEqual(reader.cmd("HISTORY news"), "MSG news 7 alice from afar\r\n+OK 1\r\n")


class NoSecrets:
    """An authorizer: nobody may touch channels under ``secret.``."""

    def may_publish(self, client: ClientRecord, channel: str) -> bool:
        return not channel.startswith(("secret.", "@"))

    def may_subscribe(self, client: ClientRecord, pattern: str) -> bool:
        return not pattern.startswith(("secret.", ">"))

    def may_read(self, client: ClientRecord, channel: str) -> bool:
        return channel != "open.unreadable"


class AuthorizerTests(SynchronousTestCase):
    def setUp(self) -> None:
        rules: Authorizer = NoSecrets()  # the fake implements the seam
        self.hub = make_hub(authorizer=rules)
        self.conn = Conn(self.hub)

    def test_every_command_asks_the_authorizer(self) -> None:
        """PUB, PUBB, SUB, CREATE, HISTORY, last= and direct messages are all checked;
        the connection stays."""
        self.conn.cmd("NAME me")
        for line in ("PUB secret.x hi", "PUBB secret.x 2\nhi", "SUB secret.x", "SUB >",
                     "CREATE secret.y", "HISTORY open.unreadable",
                     "SUB open.unreadable last=5", "PUB @me hi"):
            self.assertTrue(self.conn.cmd(line).startswith("-ERR forbidden"), line)
        self.assertEqual(self.conn.cmd("PUB open.x hi"), "+OK 1\r\n")
        self.assertFalse(self.conn.closed)
        self.assertIsNone(self.hub.channel("secret.x"))  # nothing was auto-created

    def test_who_may_not_send_direct_messages_cannot_probe_names(self) -> None:
        """A refused direct message is forbidden whether or not the name is online
        (no-such-client would tell who is connected; found in review)."""
        self.assertTrue(self.conn.cmd("PUB @nobody hi").startswith("-ERR forbidden"))

    def test_admin_is_not_asked(self) -> None:
        """The server's own voice (admin PUB) is not a client: no authorizer."""
        self.assertEqual(self.hub.publish("$admin", "secret.x", b"hi"), 1)
