"""With a durable store, a publish is acknowledged and delivered only once
its commit has finished (issue 15), whenever that is."""
from __future__ import annotations

from typing import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.core.message import Message
from txpubsub.core.store import SavedChannel, Store
from txpubsub.wire.errors import HubError

from .helpers import Conn, kept, make_hub


class LaterStore:
    """A durable store whose commits finish (or fail) when the test says so."""

    durable = True
    epoch = "testepoch"
    errors = 0

    def __init__(self) -> None:
        self.waiting: list[Message] = []
        self.retired: dict[str, int] = {}
        self.bound = 100  # messages that may wait

    def load(self) -> list[SavedChannel]:
        return []

    def channel_created(self, name: str, keep: int, created_at: float, last_id: int) -> None:
        pass

    def listen(
        self, committed: Callable[[int], None], refused: Callable[[int, HubError], None]
    ) -> None:
        self.committed, self.refused = committed, refused

    def append(self, msg: Message, keep: int) -> None:
        if len(self.waiting) >= self.bound:
            raise HubError("unavailable", "too much waits")
        self.waiting.append(msg)

    def channel_retired(self, name: str, last_id: int) -> None:
        self.retired[name] = last_id

    def restart(self, epoch: str) -> None:
        self.epoch = epoch

    def drain(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)

    def commit(self, count: int | None = None) -> None:
        """The next ``count`` messages (all if None) are committed, in order."""
        done = self.waiting[:count]
        del self.waiting[:len(done)]
        self.committed(len(done))

    def fail(self) -> None:
        """The commit fails: it and everything waiting behind it (as SqliteStore)."""
        done, self.waiting = self.waiting, []
        self.refused(len(done), HubError("unavailable", "the history store cannot write: full"))


class AcknowledgeAfterCommitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = LaterStore()
        store: Store = self.store  # the fake implements the seam
        self.hub = make_hub(Clock(), store=store)

    def test_replies_keep_command_order_when_commits_finish_late(self) -> None:
        """Pipelined PUB, PING, PUB: +OK, PONG, +OK in that order, each +OK
        only once its commit has finished."""
        conn = Conn(self.hub)
        self.assertEqual(conn.send(b"PUB t one\nPING\nPUB t two\n"), b"")
        self.store.commit(1)
        self.assertEqual(conn.take(), b"+OK 1\r\nPONG\r\n")
        self.store.commit(1)
        self.assertEqual(conn.take(), b"+OK 2\r\n")

    def test_subscribers_get_a_message_only_after_its_commit(self) -> None:
        """Nobody sees a message, in a delivery or in HISTORY, before it is committed."""
        reader = Conn(self.hub)
        reader.cmd("SUB t")
        Conn(self.hub).send(b"PUB t hi\n")
        self.assertEqual(reader.take(), b"")
        self.assertEqual(reader.cmd("HISTORY t"), "+OK 0\r\n")
        self.assertEqual(reader.cmd("SUB t since=0"), "+OK subscribed t 0\r\n")
        self.store.commit()
        self.assertEqual(reader.take(), b"MSG t 1 c2 hi\r\n")
        self.assertEqual([d.payload for d in kept(self.hub, "t")], [b"hi"])

    def test_a_failed_commit_is_refused_and_its_ids_come_again(self) -> None:
        """-ERR unavailable, in order; nothing delivered or kept; the ids nobody
        saw are handed out again, with no gap."""
        reader = Conn(self.hub)
        reader.cmd("SUB t")
        conn = Conn(self.hub)
        conn.send(b"PUB t a\nPUB t b\nPING\n")
        self.store.fail()
        refused = b"-ERR unavailable the history store cannot write: full\r\n"
        self.assertEqual(conn.take(), refused * 2 + b"PONG\r\n")
        self.assertEqual(reader.take(), b"")
        self.assertEqual(kept(self.hub, "t"), [])
        conn.send(b"PUB t c\n")
        self.store.commit()
        self.assertEqual(conn.take(), b"+OK 1\r\n")
        self.assertEqual(reader.take(), b"MSG t 1 c2 c\r\n")

    def test_a_channel_dropped_while_committing_goes_on_after_its_ids(self) -> None:
        """Ids being committed when a channel is dropped are acknowledged, and
        the channel made again goes on after them."""
        conn = Conn(self.hub)
        conn.send(b"PUB t a\nPUB t b\n")
        self.hub.drop("t")
        self.assertEqual(self.store.retired, {"t": 2})
        self.store.commit()
        self.assertEqual(conn.take(), b"+OK 1\r\n+OK 2\r\n")
        conn.send(b"PUB t c\n")
        self.store.commit()
        self.assertEqual(conn.take(), b"+OK 3\r\n")


    def test_past_the_bound_a_publish_is_refused_at_once_in_order(self) -> None:
        """Past what may wait for the disk: -ERR unavailable at once, after the
        replies before it; its id goes to the next publish."""
        self.store.bound = 1
        conn = Conn(self.hub)
        self.assertEqual(conn.send(b"PUB t a\nPUB t b\nPING\n"), b"")
        self.store.commit()
        self.assertEqual(conn.take(), b"+OK 1\r\n-ERR unavailable too much waits\r\nPONG\r\n")
        conn.send(b"PUB t c\n")
        self.store.commit()
        self.assertEqual(conn.take(), b"+OK 2\r\n")


class EveryDoorTests(SynchronousTestCase):
    """Each door answers a publish once its commit has finished, in command
    order, and a refused one with its own error form."""

    def setUp(self) -> None:
        self.store = LaterStore()
        store: Store = self.store
        self.hub = make_hub(Clock(), store=store)

    def test_quiet_line_publisher(self) -> None:
        """QUIET: nothing for a stored publish, the error for a refused one,
        in order with the other replies; published counts only stored ones."""
        conn = Conn(self.hub)
        conn.cmd("QUIET on")
        self.assertEqual(conn.send(b"PUB t a\nPING\n"), b"")
        self.store.commit()
        self.assertEqual(conn.take(), b"PONG\r\n")
        conn.send(b"PUB t b\nPING\n")
        self.store.fail()
        self.assertEqual(conn.take(), b"-ERR unavailable the history store cannot write: "
                                      b"full\r\nPONG\r\n")
        self.assertEqual(conn.proto.session.msgs_in, 1)

    def test_websocket(self) -> None:
        from .wsframes import WsConn

        ws = WsConn(self.hub)
        self.addCleanup(ws.lose)
        self.assertEqual(ws.ask({"op": "pub", "channel": "t", "data": "a", "ref": 1}), [])
        self.store.commit()
        self.assertEqual(ws.take(), [{"type": "ok", "ref": 1, "id": 1}])
        ws.ask({"op": "pub", "channel": "t", "data": "b", "ref": 2})
        self.store.fail()
        self.assertEqual(ws.take(), [{"type": "err", "ref": 2, "code": "unavailable",
                                      "text": "the history store cannot write: full"}])

    def test_resp(self) -> None:
        """PUBLISH's count of this server's readers, after the commit."""
        from txpubsub.doors.resp import RespDoorFactory

        reader = Conn(self.hub)
        reader.cmd("SUB t")
        conn = Conn(self.hub, RespDoorFactory(self.hub, "tcp:resp"))
        self.assertEqual(conn.send(b"PUBLISH t a\r\nPING\r\n"), b"")
        self.store.commit()
        self.assertEqual(conn.take(), b":1\r\n+PONG\r\n")
        conn.send(b"PUBLISH t b\r\n")
        self.store.fail()
        self.assertEqual(conn.take(), b"-ERR unavailable the history store cannot write: full\r\n")

    def test_ingest(self) -> None:
        """An ingest line is delivered after its commit; a refusal is counted."""
        from txpubsub.doors.feeds import IngestDoor, IngestFactory

        reader = Conn(self.hub)
        reader.cmd("SUB t")
        ingest = Conn(self.hub, IngestFactory("t", self.hub, "tcp:ingest"))
        ingest.send(b"a\nb\n")
        self.assertEqual(reader.take(), b"")
        self.store.commit()
        self.assertEqual(reader.take(), b"MSG t 1 c2 a\r\nMSG t 2 c2 b\r\n")
        ingest.send(b"c\n")
        self.store.fail()
        door = ingest.proto
        assert isinstance(door, IngestDoor)
        self.assertEqual((door._refused, door.session.msgs_in), (1, 2))

    def test_admin(self) -> None:
        from twisted.internet.testing import StringTransport

        from txpubsub.doors.admin import AdminDoor

        door = AdminDoor(self.hub, lambda grace: None, lambda: ())
        transport = StringTransport()
        door.makeConnection(transport)
        door.dataReceived(b"PUB t a\nPUB t b\n")
        self.assertEqual(transport.value(), b"")
        self.store.commit(1)
        self.assertEqual(transport.value(), b"+OK 1\r\n")
        self.store.fail()
        self.assertEqual(transport.value(), b"+OK 1\r\n-ERR unavailable the history store "
                                            b"cannot write: full\r\n")


class MemoryStoreTests(SynchronousTestCase):
    def test_memory_publish_answers_at_once(self) -> None:
        """In memory the id comes back at once, an int: no Deferred on that path."""
        self.assertEqual(make_hub().publish("x", "t", b"y"), 1)
