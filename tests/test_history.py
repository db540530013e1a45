"""History, replay and resume: HISTORY, SUB last=/since=/epoch=, ids that never restart."""
from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.core import channel as channel_module
from txpubsub.core.channel import Channel
from txpubsub.core.history import FlatHistory, RingHistory
from txpubsub.core.hub import IDLE_CHANNEL, SWEEP_INTERVAL
from txpubsub.core.message import Message
from txpubsub.wire.line import encode_message

from .helpers import Conn, make_hub


def ids(data: bytes, channel: bytes = b"news") -> list[int]:
    return [int(x) for x in re.findall(rb"^MSG " + re.escape(channel) + rb" (\d+) ", data, re.M)]


class HistoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = make_hub(self.clock, history=5, max_replay=3)
        self.pub = Conn(self.hub)
        self.pub.cmd("QUIET on")
        for i in range(1, 8):
            self.pub.cmd(f"PUB news m{i}")
        self.reader = Conn(self.hub)

    def test_history(self) -> None:
        """The last n kept messages, oldest first, then +OK count (capped by --max-replay)."""
        self.assertEqual(self.reader.cmd("HISTORY news 2"),
                         "MSG news 6 c1 m6\r\nMSG news 7 c1 m7\r\n+OK 2\r\n")
        self.assertEqual(ids(self.reader.send(b"HISTORY news\n")), [5, 6, 7])
        self.assertEqual(self.reader.cmd("HISTORY news 0"), "+OK 0\r\n")

    def test_history_errors(self) -> None:
        for line, code in (("HISTORY nope", "no-such-channel"), ("HISTORY news.*", "bad-channel"),
                           ("HISTORY @c1", "forbidden"), ("HISTORY news -1", "bad-args"),
                           ("HISTORY news x", "bad-args"), ("HISTORY", "bad-args"),
                           ("HISTORY news 1 2", "bad-args")):
            self.assertTrue(self.reader.cmd(line).startswith(f"-ERR {code} "), line)

    def test_history_of_binary(self) -> None:
        self.pub.send(b"PUBB news 3\r\na\nb\r\n")
        out = self.reader.send(b"HISTORY news 1\n")
        self.assertEqual(out, b"MSGB news 8 c1 3\r\na\nb\r\n+OK 1\r\n")

    def test_last(self) -> None:
        """last=n replays the newest n kept (never partial), then live."""
        out = self.reader.cmd("SUB news last=2")
        self.assertEqual(out, "MSG news 6 c1 m6\r\nMSG news 7 c1 m7\r\n+OK subscribed news 2\r\n")
        self.pub.cmd("PUB news m8")
        self.assertEqual(ids(self.reader.take()), [8])

    def test_last_capped_quietly(self) -> None:
        self.assertEqual(self.reader.cmd("SUB news last=100").splitlines()[-1],
                         "+OK subscribed news 3")

    def test_since_resumes_exactly(self) -> None:
        out = self.reader.send(b"SUB news since=5\n")
        self.assertEqual(ids(out), [6, 7])
        self.assertTrue(out.endswith(b"+OK subscribed news 2\r\n"))

    def test_since_up_to_date(self) -> None:
        self.assertEqual(self.reader.cmd("SUB news since=7"), "+OK subscribed news 0\r\n")

    def test_ids_that_jump_replay_as_they_were(self) -> None:
        """Messages numbered elsewhere (a --redis server that did not hear
        some: ids jump) come back from HISTORY and SUB last= with their own
        ids, senders and payloads, and STATS counts the payload bytes kept."""
        hub = make_hub(self.clock, history=4)
        far = 1 << 40
        for msg_id, payload in ((3, b"a"), (4, b""), (300, b"\r\n\xff"), (301, b"dd"),
                                (far, b"e"), (far + 7, b"ff")):
            hub.arrived(Message("far", msg_id, "bob", payload, 0.0))
        reader = Conn(hub)
        self.assertEqual(reader.send(b"HISTORY far\n"),
                         b"MSGB far 300 bob 3\r\n\r\n\xff\r\nMSG far 301 bob dd\r\n"
                         b"MSG far %d bob e\r\nMSG far %d bob ff\r\n+OK 4\r\n" % (far, far + 7))
        self.assertEqual(reader.send(b"SUB far last=2\n"),
                         b"MSG far %d bob e\r\nMSG far %d bob ff\r\n"
                         b"+OK subscribed far 2\r\n" % (far, far + 7))
        self.assertEqual(hub.stats()["history_bytes"], 3 + 2 + 1 + 2)

    def test_since_no_longer_kept(self) -> None:
        """Asking for messages history dropped: what is kept (capped), and partial."""
        out = self.reader.send(b"SUB news since=1\n")
        self.assertEqual(ids(out), [5, 6, 7])  # newest 3: contiguous with live
        self.assertTrue(out.endswith(b"+OK subscribed news 3 partial\r\n"))

    def test_capped_replay_is_partial(self) -> None:
        hub = make_hub(history=10, max_replay=3)
        pub = Conn(hub)
        for _ in range(6):
            pub.cmd("PUB news x")
        reader = Conn(hub)
        out = reader.send(b"SUB news since=2\n")
        self.assertEqual(ids(out), [4, 5, 6])
        self.assertTrue(out.endswith(b" 3 partial\r\n"))

    def test_other_epoch(self) -> None:
        """An id from another epoch means nothing here: everything kept, partial."""
        out = self.reader.send(b"SUB news since=6 epoch=other\n")
        self.assertEqual(ids(out), [5, 6, 7])
        self.assertTrue(out.endswith(b" partial\r\n"))
        same = Conn(self.hub).send(b"SUB news since=6 epoch=testepoch\n")
        self.assertEqual(ids(same), [7])
        self.assertTrue(same.endswith(b"+OK subscribed news 1\r\n"))

    def test_since_from_the_future(self) -> None:
        out = self.reader.send(b"SUB news since=99\n")
        self.assertEqual(ids(out), [5, 6, 7])
        self.assertTrue(out.endswith(b" partial\r\n"))

    def test_since_on_new_channel(self) -> None:
        self.assertEqual(self.reader.cmd("SUB fresh since=0"), "+OK subscribed fresh 0\r\n")

    def test_bad_args(self) -> None:
        for line in ("SUB news last=-1", "SUB news last=x", "SUB news since=1.5",
                     "SUB news.* last=1", "SUB > since=1", "SUB news last=1 since=2",
                     "SUB news epoch=x", "SUB news since=1 since=2", "SUB news foo=1",
                     "SUB news last", "CREATE c history=-1", "CREATE c history=1e3"):
            self.assertTrue(self.reader.cmd(line).startswith("-ERR bad-args "), line)

    def test_history_zero_keeps_nothing(self) -> None:
        self.reader.cmd("CREATE quiet history=0")
        self.pub.cmd("PUB quiet x")
        self.assertEqual(self.reader.cmd("HISTORY quiet"), "+OK 0\r\n")
        self.assertEqual(self.reader.cmd("SUB quiet since=0"),
                         "+OK subscribed quiet 0 partial\r\n")

    def test_history_changed_live_counts_the_bytes_kept(self) -> None:
        """A channel's history= changed while it keeps messages (a --redis
        server brings its copy in line with the cluster's): it keeps the
        newest that many, and the payload bytes counted (STATS history_bytes,
        what --max-history-bytes and --max-channel-bytes go by) stay those kept."""
        for keep in (2, 8, 3):
            self.hub.shared_channel("news", keep)
            for i in range(10):
                self.pub.cmd(f"PUB news n{i}")
            channel = self.hub.channel("news")
            assert channel is not None
            newest = channel.newest(100)
            self.assertEqual([m.payload for m in newest],
                             [b"n%d" % i for i in range(10 - keep, 10)])
            self.assertEqual((channel.kept_bytes, self.hub.history_bytes,
                              self.hub.stats()["history_bytes"]), (2 * keep,) * 3)


class ReplayWithinBufferTests(SynchronousTestCase):
    """Replays of 20 kB messages to a reader whose --max-buffer holds only four."""

    def setUp(self) -> None:
        self.hub = make_hub(history=10)
        writer = Conn(self.hub)
        writer.cmd("QUIET on")
        for i in range(10):
            writer.send(b"PUB big %d" % i + b"x" * 20000 + b"\r\n")
        self.reader = Conn(self.hub, max_buffer=100_000)

    def test_history_sends_only_the_newest_that_fit_in_max_buffer(self) -> None:
        """HISTORY sends the newest messages that fit in --max-buffer; no slow-consumer cut."""
        out = self.reader.send(b"HISTORY big\r\n")
        self.assertLess(len(out), 100_000)
        self.assertTrue(out.endswith(b"+OK 4\r\n"))
        self.assertIn(b"MSG big 10 ", out)
        self.assertFalse(self.reader.closed)

    def test_history_encodes_no_more_than_fits(self) -> None:
        """Messages are encoded newest first and only while they fit: fifty
        pipelined HISTORY from a reader with its buffer full encode about one
        message each, not all that are kept."""
        codec = self.reader.proto.codec
        encode, encoded = codec.encode, []

        def counting(msg: Message) -> bytes:
            encoded.append(msg)
            return encode(msg)

        codec.encode = counting
        out = self.reader.send(b"HISTORY big\r\n")
        self.assertTrue(out.endswith(b"+OK 4\r\n"))
        self.assertEqual(len(encoded), 5)  # four fit, the fifth did not
        self.reader.proto.dataReceived(b"HISTORY big\r\n" * 50)  # never read
        self.assertLessEqual(len(encoded), 5 + 5 + 50)

    def test_sub_since_cut_short_by_max_buffer_says_partial(self) -> None:
        """SUB since= whose replay --max-buffer cuts short says partial."""
        out = self.reader.send(b"SUB big since=0\r\n")
        self.assertTrue(out.endswith(b"+OK subscribed big 4 partial\r\n"))

    def test_sub_last_cut_short_by_max_buffer_does_not_say_partial(self) -> None:
        """SUB last= cut short by --max-buffer replays what fits and, like any last=, no partial."""
        out = self.reader.send(b"SUB big last=10\r\n")
        self.assertTrue(out.endswith(b"+OK subscribed big 4\r\n"))


class IdsNeverRestartTests(SynchronousTestCase):
    def test_forgotten_channel_goes_on(self) -> None:
        """Idle, empty, unsubscribed channels are forgotten; their ids go on."""
        clock = Clock()
        hub = make_hub(clock)
        hub.startService()
        self.addCleanup(hub.stopService)
        conn = Conn(hub, ping_interval=0)
        conn.cmd("CREATE gone history=0")
        conn.cmd("CREATE kept")
        for _ in range(3):
            conn.cmd("PUB gone x")
        conn.cmd("PUB kept x")
        clock.advance(IDLE_CHANNEL + SWEEP_INTERVAL)
        self.assertIsNone(hub.channel("gone"))
        self.assertIsNotNone(hub.channel("kept"))  # it keeps a message
        self.assertEqual(conn.cmd("LIST"), "CHANNEL kept 0 1 1\r\n+OK 1\r\n")
        self.assertEqual(conn.cmd("PUB gone y"), "+OK 4\r\n")

    def test_subscribed_channel_never_forgotten(self) -> None:
        clock = Clock()
        hub = make_hub(clock, history=0)
        hub.startService()
        self.addCleanup(hub.stopService)
        conn = Conn(hub)
        conn.cmd("SUB watched")
        clock.advance(IDLE_CHANNEL * 3)
        self.assertIsNotNone(hub.channel("watched"))

    def test_channel_retired_before_any_message_leaves_no_id_behind(self) -> None:
        """A channel retired before its first message keeps no last id: names never
        published to do not pile up in the server for ever."""
        hub = make_hub(Clock())
        conn = Conn(hub)
        conn.cmd("SUB empty")
        conn.cmd("UNSUB empty")
        empty = hub.channel("empty")
        assert empty is not None
        hub._retire(empty)
        self.assertEqual(hub._retired, {})


@st.composite
def schedules(draw):
    """Random interleavings: publishes (alone or pipelined), resubscribes, restarts."""
    steps = []
    for _ in range(draw(st.integers(1, 40))):
        steps.append(draw(st.one_of(
            st.tuples(st.just("pub"), st.integers(1, 4)),
            st.tuples(st.just("since"), st.integers(0, 3)),
            st.tuples(st.just("last"), st.integers(0, 6)),
            st.tuples(st.just("restart"), st.just(0)),
        )))
    return steps


class ReplayPropertyTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(schedules(), st.integers(0, 6), st.integers(1, 8))
    def test_each_id_once_and_gaps_only_when_told(self, steps, keep, cap) -> None:
        """A subscriber that reconnects with since= its last id sees each id at most
        once per epoch, and misses ids only where the server said partial."""
        hub = make_hub(history=keep, max_replay=cap, epoch="e0")
        epoch_number = 0
        publisher = Conn(hub)
        publisher.cmd("QUIET on")
        reader = Conn(hub)
        reader.cmd("SUB news")
        seen: dict[str, list[int]] = {"e0": []}
        told_partial = False

        def read(data: bytes) -> None:
            nonlocal told_partial
            seen[hub.epoch] += ids(data)
            told_partial |= b" partial\r\n" in data

        for action, n in steps:
            if action == "pub":
                # Pipelined publishes, with the reader's resume in the middle of them.
                publisher.send(b"PUB news x\r\n" * n)
                read(reader.take())
            elif action == "restart":
                # A memory-only restart: nothing kept, a new epoch, ids start again.
                epoch_number += 1
                hub = make_hub(history=keep, max_replay=cap, epoch=f"e{epoch_number}")
                seen[hub.epoch] = []
                publisher = Conn(hub)
                publisher.cmd("QUIET on")
                old_epoch = reader.greeting  # the reader's view of the epoch
                reader = Conn(hub)
                last_seen = seen[f"e{epoch_number - 1}"][-1:] or [0]
                old = re.search(rb'"epoch":"(\w+)"', old_epoch)
                assert old is not None, old_epoch
                data = reader.send(b"SUB news since=%d epoch=%s\r\n" % (
                    last_seen[0], old.group(1)))
                if last_seen[0] > 0 or keep:
                    # Another epoch: whatever is kept is replayed, and it says partial.
                    self.assertIn(b" partial\r\n", data)
                told_partial = True  # a new id space starts
                read(data)
            else:
                # Drop the connection and come back, resuming from the last id seen.
                reader.lose()
                reader = Conn(hub)
                mine = seen[hub.epoch]
                if action == "since":
                    data = reader.send(b"SUB news since=%d\r\n" % (mine[-1] if mine else 0))
                else:
                    data = reader.send(b"SUB news last=%d\r\n" % n)
                    mine.clear()  # last= is a fresh start: its ids may repeat older ones
                    told_partial = True
                read(data)
            for epoch, got in seen.items():
                self.assertEqual(len(got), len(set(got)), f"repeated id in {epoch}: {got}")
                self.assertEqual(got, sorted(got))
        final = seen[hub.epoch]
        if final and not told_partial:
            self.assertEqual(final, list(range(final[0], final[-1] + 1)))


class HistoryInRingsTests(HistoryTests):
    """The same behaviours through PyPy's form (RingHistory, which keeps the
    delivered line carrying each payload), whatever runs the tests."""

    def setUp(self) -> None:
        self.patch(Channel, "record", Channel.record_in_rings)
        self.patch(channel_module, "History", RingHistory)  # restore, set_keep
        super().setUp()
        channel = self.hub.channel("news")
        assert channel is not None
        self.assertIsInstance(channel._kept, RingHistory)


class HistoryFormsTests(SynchronousTestCase):
    @given(form=st.sampled_from([FlatHistory, RingHistory]), keep=st.integers(1, 12),
           published=st.integers(0, 40), asked=st.integers(0, 50),
           dropped=st.integers(0, 200), carried=st.booleans(), jumps=st.booleans())
    def test_newest_are_the_last_published_oldest_first(
        self, form: type[FlatHistory | RingHistory], keep: int, published: int, asked: int,
        dropped: int, carried: bool, jumps: bool,
    ) -> None:
        """Either form (PyPy's rings, CPython's flat deque), however often it wrapped,
        replays the newest messages in order, counts the payload bytes it keeps
        and lets go of the oldest first; given the delivery line that carries
        the payload (as the hub gives it), it replays the payload itself; ids
        that jump (messages a --redis server did not hear) come back as they were."""
        ring = form("t", keep)

        def message(i: int) -> Message:
            binary = b"\r\n\xff" if i % 7 == 0 else b""  # a MSGB line carries it
            msg_id = i + (i // 3) * 1000 if jumps else i
            payload = b"p%d" % i * (i % 5) + binary
            return Message("t", msg_id, f"s{i % 3}é" * (i % 4), payload, i / 3)

        def add(msg: Message) -> int:
            return ring.add(msg, encode_message(msg) if carried else None)

        sent = [message(i) for i in range(1, published + 1)]
        held = sum(add(msg) for msg in sent)
        kept = sent[len(sent) - min(keep, published):]
        self.assertEqual(held, sum(len(m.payload) for m in kept))
        want = kept[len(kept) - min(asked, len(kept)):]
        got = ring.newest(asked)
        self.assertEqual(ring.message_count(), min(keep, published))
        self.assertEqual([(m.channel, m.msg_id, m.sender, m.payload, m.published_at) for m in got],
                         [(m.channel, m.msg_id, m.sender, m.payload, m.published_at) for m in want])
        if kept:
            self.assertEqual(ring.newest(keep)[0].msg_id, kept[0].msg_id)
            self.assertEqual(ring.newest(1)[0].payload, kept[-1].payload)
        freed = ring.drop_oldest(dropped)
        gone = 0
        while kept and gone < dropped:
            gone += len(kept.pop(0).payload)
        self.assertEqual(freed, gone)
        self.assertEqual([m.msg_id for m in ring.newest(keep)], [m.msg_id for m in kept])
        more = [message(i) for i in range(published + 1, published + 3)]
        for msg in more:
            add(msg)
        kept = (kept + more)[-keep:]
        self.assertEqual([(m.msg_id, m.payload) for m in ring.newest(keep)],
                         [(m.msg_id, m.payload) for m in kept])


class HistoryIdsTests(SynchronousTestCase):
    def test_ids_past_what_a_double_holds_come_back_exactly(self) -> None:
        """Either form keeps ids past 2**53 (a --redis channel's counter set
        that high) exactly, with the ones kept before them."""
        for form in (FlatHistory, RingHistory):
            ring = form("t", 3)
            ids = [2**53 - 1, 2**53 + 1, 2**60 + 3, 2**60 + 4]
            for msg_id in ids:
                ring.add(Message("t", msg_id, "s", b"p%d" % msg_id, 1.5))
            self.assertEqual([m.msg_id for m in ring.newest(3)], ids[1:], form)
            self.assertEqual([m.payload for m in ring.newest(3)],
                             [b"p%d" % i for i in ids[1:]], form)
