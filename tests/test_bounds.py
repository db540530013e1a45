"""Issue 21: nothing one client sends can exhaust the server. Each attack at
a bounded scale, asserting the limit holds and that another client's PING is
answered meanwhile."""
from __future__ import annotations

import random

from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from txpubsub.core.hub import LIST_WORK, TURN_WORK
from txpubsub.wire.errors import HubError

from .helpers import Conn, ConsumerTransport, Recorder, make_hub, next_turn


def lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")[:-1]


def ping(conn: Conn) -> bytes:
    """PING and its answer within this reactor turn (Conn.cmd would run the
    turns after it too)."""
    conn.proto.dataReceived(b"PING\n")
    return conn.take()


class ListingLimitTests(SynchronousTestCase):
    def test_list_capped_then_continued_with_after(self) -> None:
        """LIST sends at most --max-list channels and says `more`; after= goes on
        from the last name shown, until a page ends without `more`."""
        hub = make_hub(max_list=5)
        conn = Conn(hub)
        for n in range(12):
            conn.cmd(f"CREATE ch.{n:02d}")
        first = lines(conn.send(b"LIST\n"))
        self.assertEqual(first[-1], b"+OK 5 more")
        self.assertEqual([line.split()[1] for line in first[:-1]],
                         [b"ch.00", b"ch.01", b"ch.02", b"ch.03", b"ch.04"])
        second = lines(conn.send(b"LIST > after=ch.04\n"))
        self.assertEqual(second[0], b"CHANNEL ch.05 0 0 0")
        self.assertEqual(second[-1], b"+OK 5 more")
        third = lines(conn.send(b"LIST ch.* after=ch.09\n"))
        self.assertEqual(third, [b"CHANNEL ch.10 0 0 0", b"CHANNEL ch.11 0 0 0", b"+OK 2"])
        self.assertEqual(conn.cmd("LIST nomatch.* after=ch.09"), "+OK 0\r\n")
        self.assertEqual(conn.cmd("LIST ch.03 after=ch.02"), "CHANNEL ch.03 0 0 0\r\n+OK 1\r\n")
        self.assertTrue(conn.cmd("LIST > after=no..good").startswith("-ERR bad-channel"))

    def test_list_pattern_same_as_a_scan(self) -> None:
        """LIST <pattern> finds exactly what matching every channel finds, sorted."""
        from txpubsub.wire.names import pattern_matches

        hub = make_hub()
        rng = random.Random(3)
        names = {".".join(rng.choice("ab") for _ in range(rng.randint(1, 4)))
                 for _ in range(200)}
        for name in names:
            hub.create(name)
        for pattern in ("a.*", "*.b", ">", "a.>", "b.a.*.b", "a", "a.b", "c.>"):
            for after in (None, "a.b", "b"):
                expected = sorted(n for n in names if pattern_matches(pattern, n)
                                  and (after is None or n > after))
                got = [ch.name for ch in hub.channels(pattern, after, limit=7)]
                self.assertEqual(got, expected[:7], (pattern, after))

    def test_who_capped_then_continued_with_after(self) -> None:
        """WHO sends at most --max-list clients, oldest first; after=<id> goes on."""
        hub = make_hub(max_list=3)
        conns = [Conn(hub) for _ in range(5)]
        for conn in conns:
            conn.cmd("SUB room")
        first = lines(conns[0].send(b"WHO\n"))
        self.assertEqual([line.split()[1] for line in first[:-1]], [b"c1", b"c2", b"c3"])
        self.assertEqual(first[-1], b"+OK 3 more")
        rest = lines(conns[0].send(b"WHO room after=c3\n"))
        self.assertEqual([line.split()[1] for line in rest[:-1]], [b"c4", b"c5"])
        self.assertEqual(rest[-1], b"+OK 2")
        self.assertTrue(conns[0].cmd("WHO after=bob").startswith("-ERR bad-args"))

    def test_list_non_reader_cut_at_max_buffer(self) -> None:
        """A client that pipelines LISTs and never reads is cut off as a slow
        consumer at --max-buffer, before the listings are all made; another
        client's PING is answered meanwhile."""
        hub = make_hub(max_list=100000)
        setup = Conn(hub)
        for n in range(3000):
            hub.create(f"channel.with.a.rather.long.name.to.fill.the.buffer.{n:05d}")
        setup.lose()
        limit = 256 * 1024
        stuck = Conn(hub, max_buffer=limit)
        other = Conn(hub)
        one_listing = 3000 * 70
        stuck.proto.dataReceived(b"LIST\n" * 20)  # 20 listings: about 4 MB of replies
        stuck.flush()
        held = stuck.transport.value()
        self.assertTrue(held.endswith(b"BYE slow-consumer over 262144 bytes unsent\r\n"))
        self.assertLessEqual(len(held), limit + 4096)
        self.assertLess(len(held), 2 * one_listing)
        self.assertTrue(stuck.closed)
        self.assertEqual(other.cmd("PING"), "PONG\r\n")

    def test_who_non_reader_cut_at_max_buffer(self) -> None:
        """Pipelined WHO with many clients, never read: cut at --max-buffer."""
        hub = make_hub(max_list=100000)
        crowd = [Conn(hub) for _ in range(2000)]
        limit = 64 * 1024
        stuck = Conn(hub, max_buffer=limit)
        stuck.proto.dataReceived(b"WHO\n" * 50)
        stuck.flush()
        held = stuck.transport.value()
        self.assertTrue(held.endswith(b"BYE slow-consumer over 65536 bytes unsent\r\n"))
        self.assertLessEqual(len(held), limit + 4096)
        self.assertEqual(crowd[0].cmd("PING"), "PONG\r\n")


class WildcardCostTests(SynchronousTestCase):
    def deep_patterns(self, count: int) -> list[str]:
        rng = random.Random(21)
        patterns: set[str] = set()
        while len(patterns) < count:
            patterns.add(".".join(rng.choice("a*") for _ in range(64)))
        return sorted(patterns)

    def subscribe(self, conn: Conn, patterns: list[str]) -> None:
        """SUB each pattern, in one write (a thousand lines a reactor turn)."""
        out = conn.send(b"".join(b"SUB %s\n" % p.encode() for p in patterns))
        self.assertEqual(out.count(b"+OK subscribed"), len(patterns))

    def test_deep_patterns_list_stops_within_its_budget(self) -> None:
        """2000 deep overlapping patterns that match 30 deep channels: LIST
        stops once its matching work is spent and says `more`; after= makes
        progress page by page; a PING meanwhile is answered."""
        hub = make_hub(max_subscriptions=5000)
        attacker = Conn(hub)
        patterns = self.deep_patterns(2000)
        self.subscribe(attacker, patterns)
        deep = ["a." * 63 + last for last in "0123456789ABCDEFGHIJKLMNOPQRST"]
        for name in deep:
            hub.create(name)
        other = Conn(hub)
        seen: list[bytes] = []
        after = b""
        pages = 0
        while True:
            before = hub.match_work()
            page = lines(attacker.send(b"LIST a.>" + after + b"\n"))
            next_turn(hub.clock)
            pages += 1
            # One channel's matching (a lookup per pattern) may pass the budget;
            # the names scanned count too.
            self.assertLessEqual(hub.match_work() - before, LIST_WORK + len(patterns) + 64)
            self.assertEqual(other.cmd("PING"), "PONG\r\n")
            items = [line.split()[1] for line in page[:-1]]
            self.assertTrue(items, "every page makes progress")
            seen += items
            if page[-1].endswith(b" more"):
                after = b" after=" + items[-1]
                continue
            break
        self.assertEqual(seen, [name.encode() for name in deep])
        self.assertGreater(pages, 1)

    def test_uncached_publishes_cost_one_lookup_per_pattern_and_yield(self) -> None:
        """Pipelined publishes to 20 deep channels not matched before, each met
        by 2000 deep overlapping patterns: each costs one lookup per pattern
        (the token trie walked every token of every one), and once a read
        has cost TURN_WORK the rest of it waits for the next reactor turn, so
        another client's PING is answered in between."""
        hub = make_hub(max_subscriptions=5000)
        attacker = Conn(hub)
        patterns = self.deep_patterns(2000)
        self.subscribe(attacker, patterns)
        attacker.send(b"QUIET on\n")
        other = Conn(hub)
        names = ["a." * 63 + last for last in "bcdefghijklmnopqrstu"]
        before = hub.match_work()
        attacker.proto.dataReceived(b"".join(f"PUB {name} m\n".encode() for name in names))
        turns = 1
        while True:
            self.assertLessEqual(hub.match_work() - before, TURN_WORK + len(patterns))
            self.assertEqual(ping(other), b"PONG\r\n")
            if hub.channel(names[-1]) is not None or turns == 100:
                break
            before = hub.match_work()
            next_turn(hub.clock)
            turns += 1
        self.assertGreaterEqual(turns, 20 * len(patterns) // (TURN_WORK + len(patterns)))
        self.assertEqual([getattr(hub.channel(name), "published", 0) for name in names], [1] * 20)
        self.assertEqual(attacker.take().count(b"MSG "), 20)

    def test_subscription_churn_costs_one_lookup_per_pattern(self) -> None:
        """SUB a.>, UNSUB a.> and a publish, over and over: each publish
        matches again (the pattern could change its readers) at one lookup
        per pattern of the channel's length."""
        hub = make_hub(max_subscriptions=5000)
        attacker = Conn(hub)
        patterns = self.deep_patterns(2000)
        self.subscribe(attacker, patterns)
        channel = "a." * 63 + "a"
        for _ in range(3):
            before = hub.match_work()
            reply = attacker.cmd(f"SUB a.>\nUNSUB a.>\nPUB {channel} x")
            self.assertEqual(reply.count("MSG "), 1)
            self.assertLessEqual(hub.match_work() - before, len(patterns) + 1)

    def test_scanning_listings_yield_between_reads(self) -> None:
        """LIST with a leading wildcard looks at every channel name (and WHO at
        every client): pipelined, they are charged to the lister's read, whose
        rest waits for the next reactor turn once past TURN_WORK, so another
        client's PING is answered between them."""
        hub = make_hub()
        for n in range(TURN_WORK + 1000):
            hub.create(f"ch{n}")
        lister, other = Conn(hub), Conn(hub)
        lister.proto.dataReceived(b"LIST *.nomatch\nWHO\n" * 5)
        for turn in range(5):
            lister.flush()
            self.assertEqual(lister.transport.value().count(b"+OK 0\r\n"), turn + 1)
            self.assertEqual(ping(other), b"PONG\r\n")
            next_turn(hub.clock)
        lister.flush()
        self.assertEqual(lister.transport.value().count(b"+OK 2\r\n"), 5)  # the WHOs

    def test_a_read_of_many_short_commands_takes_turns(self) -> None:
        """64 KiB of short commands is ~10,000 of them: handled a thousand a
        turn, in order, with another client's PING answered in between."""
        hub = make_hub()
        attacker, other = Conn(hub), Conn(hub)
        attacker.proto.dataReceived(b"".join(b"SUB s%d\n" % n for n in range(4500)))
        for turn in range(1, 6):
            attacker.flush()
            self.assertEqual(attacker.transport.value().count(b"+OK subscribed"),
                             min(1000 * turn, 4500))
            self.assertEqual(ping(other), b"PONG\r\n")
            next_turn(hub.clock)
        replies = lines(attacker.take())
        self.assertEqual(replies, [b"+OK subscribed s%d 0" % n for n in range(4500)])

    def test_a_pattern_change_forgets_only_what_it_could_match(self) -> None:
        """The attacker's SUB/UNSUB under its own first token leaves other
        channels' cached matches alone; a pattern starting with a wildcard
        forgets them all, and its subscriber gets the next message."""
        hub = make_hub(max_subscriptions=5000)
        attacker = Conn(hub)
        self.subscribe(attacker, self.deep_patterns(500))
        reader = Conn(hub)
        reader.cmd("SUB news.*")
        publisher = Conn(hub)
        publisher.cmd("PUB news.uk one")
        attacker.cmd("SUB a.>\nUNSUB a.>")
        before = hub.match_work()
        publisher.cmd("PUB news.uk two")
        self.assertEqual(hub.match_work(), before)
        self.assertEqual(reader.take().count(b"MSG news.uk"), 2)
        attacker.cmd("SUB *.uk")
        publisher.cmd("PUB news.uk three")
        self.assertGreater(hub.match_work(), before)
        self.assertEqual(attacker.take(), b"MSG news.uk 3 c3 three\r\n")

    def test_repeated_publish_reuses_the_match(self) -> None:
        """Publishing again to a channel that 1000 deep patterns match walks
        nothing; a subscription change is seen at once."""
        hub = make_hub(max_subscriptions=5000)
        attacker = Conn(hub)
        self.subscribe(attacker, self.deep_patterns(1000))
        channel = "a." * 63 + "a"
        publisher = Conn(hub)
        publisher.cmd(f"PUB {channel} one")
        walked = hub.match_work()
        publisher.cmd(f"PUB {channel} two")
        self.assertEqual(hub.match_work(), walked)
        self.assertEqual(attacker.take().count(b"MSG "), 2)  # once each, not 1000 times
        newcomer = Conn(hub)
        newcomer.cmd("SUB a.>")
        publisher.cmd(f"PUB {channel} three")
        self.assertEqual(newcomer.take(), f"MSG {channel} 3 c2 three\r\n".encode())
        newcomer.cmd("UNSUB a.>")
        publisher.cmd(f"PUB {channel} four")
        self.assertEqual(newcomer.take(), b"")


@implementer(ISSLTransport)
class HandshakingTransport(ConsumerTransport):  # type: ignore[misc]
    """A TLS connection whose handshake the test finishes by hand."""

    def getPeerCertificate(self) -> None:
        return None


class PendingHandshakeTests(SynchronousTestCase):
    def test_pending_handshakes_hold_places(self) -> None:
        """TLS connections count toward --max-clients before their handshake; a
        timed-out or finished handshake gives its place back exactly once."""
        clock = Clock()
        hub = make_hub(clock, max_clients=3)
        pending = [Conn(hub, transport=HandshakingTransport) for _ in range(3)]
        refused = Conn(hub, transport=HandshakingTransport)
        self.assertTrue(refused.closed)
        refused.lose()
        self.assertEqual(Conn(hub).greeting, b"BYE too-many-clients\r\n")
        pending[0].proto.handshakeCompleted()
        self.assertTrue(pending[0].take().startswith(b"INFO "))
        clock.advance(10)  # the other two never finish: let go of
        for conn in pending[1:]:
            self.assertTrue(conn.closed)
            conn.lose()
        self.assertEqual(hub.registry.reserved, 0)
        self.assertTrue(Conn(hub).greeting.startswith(b"INFO "))
        self.assertTrue(Conn(hub).greeting.startswith(b"INFO "))
        self.assertEqual(Conn(hub).greeting, b"BYE too-many-clients\r\n")
        self.assertEqual(pending[0].cmd("PING"), "PONG\r\n")


class MemoryBudgetTests(SynchronousTestCase):
    def test_new_channels_capped_per_server(self) -> None:
        """A flood of PUB to new names stops at --max-channels with
        -ERR too-many-channels; existing channels still take messages; another
        client's PING is answered."""
        hub = make_hub(max_channels=1000)
        attacker = Conn(hub)
        other = Conn(hub)
        other.cmd("SUB mine")  # one channel already
        replies = attacker.send(b"".join(b"PUB ch.%d x\n" % n for n in range(3000)))
        self.assertEqual(replies.count(b"+OK 1\r\n"), 999)
        self.assertEqual(replies.count(b"-ERR too-many-channels "), 2001)
        self.assertEqual(hub.stats()["channels"], 1000)
        self.assertTrue(attacker.cmd("CREATE another").startswith("-ERR too-many-channels "))
        self.assertTrue(attacker.cmd("SUB another").startswith("-ERR too-many-channels "))
        self.assertEqual(attacker.cmd("PUB mine still"), "+OK 1\r\n")
        self.assertEqual(other.cmd("PING"), "MSG mine 1 c1 still\r\nPONG\r\n")

    def test_new_channels_capped_per_connection(self) -> None:
        """One connection creates at most --max-client-channels channels;
        another connection still can."""
        hub = make_hub(max_channels_per_client=100)
        attacker = Conn(hub)
        replies = attacker.send(b"".join(b"PUB ch.%d x\n" % n for n in range(150)))
        self.assertEqual(replies.count(b"-ERR too-many-channels "), 50)
        self.assertEqual(Conn(hub).cmd("PUB fresh x"), "+OK 1\r\n")

    def test_subscriptions_capped_per_server(self) -> None:
        """--max-subscriptions-all holds across connections, and places come
        back when subscriptions go."""
        hub = make_hub(max_subscriptions_total=50)
        first, second = Conn(hub), Conn(hub)
        first.send(b"".join(b"SUB a.%d.*\n" % n for n in range(30)))
        replies = second.send(b"".join(b"SUB b.%d\n" % n for n in range(30)))
        self.assertEqual(replies.count(b"-ERR too-many-subscriptions "), 10)
        self.assertEqual(hub.stats()["subscriptions"], 50)
        first.lose()
        self.assertEqual(hub.stats()["subscriptions"], 20)
        self.assertEqual(second.cmd("SUB b.100"), "+OK subscribed b.100 0\r\n")
        second.cmd("UNSUB b.100")
        self.assertEqual(hub.stats()["subscriptions"], 20)

    def test_retired_names_bounded_ids_never_go_back(self) -> None:
        """Past --max-retired, forgotten channels' names are let go of, yet a
        channel created again never reuses an id it handed out."""
        hub = make_hub(max_retired=10)
        conn = Conn(hub)
        last = {}
        for n in range(200):
            name = f"old.{n}"
            for _ in range(n % 5 + 1):
                conn.cmd(f"PUB {name} x")
            last[name] = n % 5 + 1
            hub.drop(name)
        self.assertLessEqual(len(hub._retired), 10)
        for name, last_id in last.items():
            reply = conn.cmd(f"PUB {name} again")
            self.assertGreater(int(reply.split()[1]), last_id, name)


class PublishRateTests(SynchronousTestCase):
    def test_message_rate_holds_then_refills(self) -> None:
        """Past --max-publish-rate (a second's worth at once), PUB gets
        -ERR rate-limited and nothing is kept (counted for /metrics); another
        client's PING is answered; the budget comes back with time."""
        clock = Clock()
        hub = make_hub(clock, max_publish_rate=100)
        attacker, other = Conn(hub), Conn(hub)
        replies = attacker.send(b"".join(b"PUB flood x%d\n" % n for n in range(1000)))
        self.assertEqual(replies.count(b"+OK "), 100)
        self.assertEqual(replies.count(b"-ERR rate-limited over 100 messages a second; "
                                       b"slow down\r\n"), 900)
        self.assertEqual(len(hub.history("flood")), 100)
        self.assertEqual(hub.counters.rate_limited, 900)
        self.assertEqual(other.cmd("PING"), "PONG\r\n")
        self.assertEqual(other.cmd("PUB flood mine"), "+OK 101\r\n")  # its own budget
        clock.advance(0.5)
        replies = attacker.send(b"PUB flood again\n" * 60)
        self.assertEqual(replies.count(b"+OK "), 50)
        self.assertEqual(replies.count(b"-ERR rate-limited "), 10)

    def test_prepaid_budget_never_lets_more_through_than_the_rate(self) -> None:
        """At 10,000 a second (spent from a prepaid 1% at a time), a flood gets
        exactly a second's worth, then half a second's worth after 0.5 s; a
        pause after spending part of a prepaid chunk adds at most 1% to the
        next burst."""
        clock = Clock()
        hub = make_hub(clock, max_publish_rate=10_000, max_publish_bytes_rate=0)
        client = hub.attach(Recorder(), "127.0.0.1:1", "tcp:test")

        def burst(n: int) -> int:
            sent = 0
            for _ in range(n):
                try:
                    hub.publish("x", "flood", b"y", client)
                except HubError as e:
                    self.assertEqual(e.code, "rate-limited")
                else:
                    sent += 1
            return sent

        self.assertEqual(burst(20_000), 10_000)
        clock.advance(0.5)
        self.assertEqual(burst(20_000), 5_000)
        clock.advance(10)
        self.assertEqual(burst(30), 30)  # 100 taken from the bucket, 70 still prepaid
        clock.advance(10)
        self.assertEqual(burst(20_000), 10_070)
        self.assertEqual(hub.counters.rate_limited, 10_000 + 15_000 + 9_930)

    def test_direct_message_flood_refused_before_the_reader_is_cut(self) -> None:
        """A flood of 64 KiB PUBB @alice stops at --max-publish-bytes; alice,
        who reads nothing meanwhile, is not cut off and answers PING after."""
        clock = Clock()
        hub = make_hub(clock, max_publish_bytes_rate=1024 * 1024, max_payload=65536)
        alice = Conn(hub, max_buffer=4 * 1024 * 1024, max_stall=0)  # no pacing to help
        alice.cmd("NAME alice")
        attacker = Conn(hub, max_buffer=4 * 1024 * 1024)
        blob = b"\xff" * 65536
        replies = attacker.send(b"".join(b"PUBB @alice 65536\r\n" + blob + b"\r\n"
                                         for _ in range(200)))
        self.assertEqual(replies.count(b"+OK "), 16)  # 1 MiB, the bucket's second
        self.assertEqual(replies.count(b"-ERR rate-limited over 1048576 bytes a second; "
                                       b"slow down\r\n"), 184)
        self.assertEqual(hub.counters.rate_limited, 184)
        self.assertFalse(alice.closed)
        self.assertEqual(attacker.cmd("PING"), "PONG\r\n")
        received = alice.send(b"PING\n")
        self.assertEqual(received.count(b"MSGB @alice "), 16)
        self.assertTrue(received.endswith(b"PONG\r\n"))

    def test_without_the_limit_the_flood_cuts_the_reader(self) -> None:
        """What the limit prevents: the same flood unlimited cuts alice off."""
        hub = make_hub(max_publish_bytes_rate=0, max_payload=65536)
        alice = Conn(hub, max_buffer=4 * 1024 * 1024, max_stall=0)
        alice.cmd("NAME alice")
        attacker = Conn(hub, max_buffer=4 * 1024 * 1024)
        blob = b"\xff" * 65536
        attacker.send(b"".join(b"PUBB @alice 65536\r\n" + blob + b"\r\n" for _ in range(200)))
        self.assertTrue(alice.closed)

    def test_a_payload_as_large_as_allowed_always_fits(self) -> None:
        """The byte bucket holds at least one largest payload, whatever the rate."""
        hub = make_hub(max_publish_bytes_rate=10, max_payload=1000)
        conn = Conn(hub)
        self.assertEqual(conn.send(b"PUBB big 1000\r\n" + b"x" * 1000 + b"\r\n"), b"+OK 1\r\n")
        self.assertTrue(conn.cmd("PUB big y").startswith("-ERR rate-limited "))

    def test_zero_means_no_limit(self) -> None:
        hub = make_hub(max_publish_rate=0, max_publish_bytes_rate=0)
        conn = Conn(hub)
        replies = conn.send(b"PUB a x\n" * 30000)
        self.assertEqual(replies.count(b"+OK "), 30000)


class HistoryBytesTests(SynchronousTestCase):
    def test_server_wide_history_bytes_hold(self) -> None:
        """Payloads pile up in many channels: kept bytes never pass
        --max-history-bytes, the largest channel loses its oldest first, since=
        from before says partial, and another client's PING is answered."""
        hub = make_hub(max_history_bytes=100_000, max_payload=10_000, history=1000)
        attacker, other = Conn(hub), Conn(hub)
        other.cmd("PUB small keep-me")
        blob = b"x" * 1000
        # One big channel (hog) and nine smaller ones, 30 times the limit in all.
        evictions = 0
        for n in range(1500):
            channel = b"hog" if n % 2 else b"ch.%d" % (n % 9)
            attacker.send(b"PUBB " + channel + b" 1000\r\n" + blob + b"\r\n")
            self.assertLessEqual(hub.history_bytes, 100_000)
            if hub.counters.history_evictions > evictions:
                if not evictions:
                    # The first time, the hog alone loses messages.
                    hog = hub.channel("hog")
                    assert hog is not None
                    self.assertLess(hog.kept, hog.last_id)
                    for ch in hub._channels.values():
                        if ch.name.startswith("ch."):
                            self.assertEqual(ch.kept, ch.last_id)
                evictions = hub.counters.history_evictions
                self.assertLessEqual(hub.history_bytes, 87_500)  # down to 7/8 of the limit
        self.assertGreater(evictions, 10)
        self.assertEqual(other.cmd("PING"), "PONG\r\n")
        self.assertEqual(hub.history_bytes, sum(ch.kept_bytes for ch in hub._channels.values()))
        # What admin STATS and $sys.stats show.
        self.assertEqual((hub.stats()["history_bytes"], hub.stats()["history_evictions"]),
                         (hub.history_bytes, evictions))
        hog = hub.channel("hog")
        assert hog is not None
        self.assertEqual(other.cmd("HISTORY small"), "MSG small 1 c2 keep-me\r\n+OK 1\r\n")
        kept = hog.kept
        reply = other.cmd("SUB hog since=0")
        self.assertTrue(reply.endswith(f"+OK subscribed hog {kept} partial\r\n"), reply[-60:])
        self.assertEqual(reply.count("MSG hog "), kept)

    def test_one_channel_bounded_by_bytes_whatever_its_history(self) -> None:
        """CREATE x history=10000 keeps at most --max-channel-bytes of payload;
        the newest messages stay, ids go on."""
        hub = make_hub(max_channel_bytes=10_000, max_payload=4000)
        conn = Conn(hub)
        self.assertEqual(conn.cmd("CREATE big history=10000"), "+OK created big\r\n")
        for _ in range(100):
            conn.send(b"PUBB big 3000\r\n" + b"y" * 3000 + b"\r\n")
        big = hub.channel("big")
        assert big is not None
        self.assertEqual((big.kept, big.kept_bytes, big.last_id), (3, 9000, 100))
        self.assertEqual([m.msg_id for m in hub.history("big")], [98, 99, 100])
        self.assertEqual(hub.history_bytes, 9000)
        hub.drop("big")
        self.assertEqual(hub.history_bytes, 0)

    def test_ring_history_drops_oldest_in_order(self) -> None:
        """PyPy's ring keeps the same promises when its oldest are let go of."""
        from txpubsub.core.history import RingHistory
        from txpubsub.core.message import Message

        ring = RingHistory("r", 4)
        for i in range(1, 7):  # wrapped: 3 4 5 6
            ring.add(Message("r", i, "s", b"p" * i, 0.0))
        kept = ring.newest(10)
        self.assertEqual([kept[0].msg_id, kept[-1].msg_id, kept[3].payload], [3, 6, b"p" * 6])
        self.assertEqual(ring.drop_oldest(5), 7)  # 3 and 4
        self.assertEqual([m.msg_id for m in ring.newest(10)], [5, 6])
        ring.add(Message("r", 7, "s", b"p", 0.0))
        ring.add(Message("r", 8, "s", b"p", 0.0))
        ring.add(Message("r", 9, "s", b"p", 0.0))
        self.assertEqual([m.msg_id for m in ring.newest(10)], [6, 7, 8, 9])
