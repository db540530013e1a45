"""The hub on its own: channels, ids, matching, names and limits, no sockets."""
from __future__ import annotations

from typing import cast

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.core.message import Message
from txpubsub.core.registry import ClientRecord
from txpubsub.wire.errors import CloseReason, HubError, ServerFull

from .helpers import Recorder, kept, make_hub


class Broken(Recorder):
    def deliver(self, msg: Message) -> bool:
        raise RuntimeError("this connection is broken")


class HubTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = make_hub(self.clock)

    def join(self, name: str | None = None,
             cls: type[Recorder] = Recorder) -> tuple[ClientRecord, Recorder]:
        sub = cls()
        client = self.hub.attach(sub, "127.0.0.1:1", "tcp:test")
        if name:
            self.hub.set_name(client, name)
        return client, sub

    def assertCode(self, code: str, f, *args) -> None:
        self.assertEqual(self.assertRaises(HubError, f, *args).code, code)

    def test_hub_keeps_its_state_in_slots(self) -> None:
        """Every attribute the hub sets is a slot: an instance dict past 30 keys
        stops sharing its keys in CPython 3.11, and then each self.<attribute>
        on the publish path is a dict lookup (docs/benchmarks.md, issue 13)."""
        self.hub.startService()
        self.addCleanup(self.hub.stopService)
        self.assertEqual(sorted(vars(self.hub)), ["running"])  # Service's own

    def test_messages_of_one_millisecond_share_their_time(self) -> None:
        """Messages published within a millisecond carry the same time (one
        float for history to keep, not one per message); a later one, or one
        after the clock was set back, carries the clock's."""
        clock = Clock()
        hub = make_hub(clock)
        times = []
        for at in (10.0, 10.0004, 10.0009, 10.0011, 5.0):
            clock.rightNow = at
            hub.publish("x", "a", b"")
            times.append(hub.history("a")[-1].published_at)
        self.assertEqual(times, [10.0, 10.0, 10.0, 10.0011, 5.0])
        self.assertIs(hub.history("a")[0].published_at, hub.history("a")[1].published_at)

    def test_ids_per_channel_from_one(self) -> None:
        """Each channel numbers its messages 1, 2, 3 on its own."""
        self.assertEqual([self.hub.publish("x", "a", b"") for _ in range(3)], [1, 2, 3])
        self.assertEqual(self.hub.publish("x", "b", b""), 1)

    def test_client_ids_unique(self) -> None:
        """Ids are c1, c2, ... and never reused."""
        a, _ = self.join()
        b, _ = self.join()
        self.hub.detach(a, CloseReason.QUIT)
        c, _ = self.join()
        self.assertEqual([a.client_id, b.client_id, c.client_id], ["c1", "c2", "c3"])

    def test_one_copy_per_connection(self) -> None:
        """Overlapping subscriptions still deliver a message once."""
        client, sub = self.join()
        for pattern in ("news.uk", "news.*", "news.>", ">"):
            self.hub.subscribe(client, pattern)
        self.hub.publish("x", "news.uk", b"hello")
        self.assertEqual([m.payload for m in sub.messages], [b"hello"])

    def test_same_message_for_everyone(self) -> None:
        """Every subscriber, concrete or wildcard, is handed the very same Message."""
        subs = []
        for _ in range(3):
            client, sub = self.join()
            self.hub.subscribe(client, "t")
            subs.append(sub)
        wild, wsub = self.join()
        self.hub.subscribe(wild, "*")
        self.hub.publish("x", "t", b"p")
        self.assertEqual(len({id(s.messages[0]) for s in [*subs, wsub]}), 1)

    def test_leading_wildcard_skips_system_and_inboxes(self) -> None:
        """`>` gets neither $sys channels nor anybody's inbox; $sys.> does."""
        client, sub = self.join()
        self.hub.subscribe(client, ">")
        _, bob = self.join("bob")
        self.hub.publish_system("$sys.time", b"now")
        self.hub.publish("x", "@bob", b"psst")
        self.assertEqual(sub.messages, [])
        self.assertEqual(len(bob.messages), 1)
        self.hub.subscribe(client, "$sys.>")
        self.hub.publish_system("$sys.time", b"now")
        self.assertEqual([m.channel for m in sub.messages], ["$sys.time"])

    def test_direct_message(self) -> None:
        """@name reaches that client alone, by name or by id, with its own ids."""
        _, alice = self.join("alice")
        unnamed, other = self.join()
        self.assertEqual(self.hub.publish("bob", "@alice", b"hi"), 1)
        self.assertEqual(self.hub.publish("bob", "@alice", b"hi"), 2)
        self.assertEqual(self.hub.publish("bob", f"@{unnamed.client_id}", b"yo"), 1)
        self.assertEqual([(m.channel, m.sender) for m in alice.messages],
                         [("@alice", "bob")] * 2)
        self.assertEqual([m.channel for m in other.messages], [f"@{unnamed.client_id}"])
        self.assertCode("no-such-client", self.hub.publish, "bob", "@nobody", b"")

    def test_names_unique_and_released(self) -> None:
        """A name is taken while its holder is connected, and free after."""
        a, _ = self.join("alice")
        b, _ = self.join()
        self.assertCode("name-taken", self.hub.set_name, b, "alice")
        self.assertEqual(self.hub.set_name(a, "alice"), "alice")
        self.hub.detach(a, CloseReason.QUIT)
        self.assertEqual(self.hub.set_name(b, "alice"), "alice")
        self.assertEqual(b.sender, "alice")

    def test_rename_frees_old_name(self) -> None:
        a, _ = self.join("alice")
        self.hub.set_name(a, "alicia")
        b, _ = self.join("alice")
        self.assertEqual(self.hub.find_client("alice"), b)
        self.assertEqual(self.hub.find_client("alicia"), a)

    def test_detach_forgets_subscriptions(self) -> None:
        """A gone client receives nothing and its wildcard branches are pruned."""
        client, sub = self.join()
        self.hub.subscribe(client, "a.*.c")
        self.hub.subscribe(client, "a")
        self.hub.detach(client, CloseReason.PEER_CLOSED)
        self.hub.publish("x", "a.b.c", b"")
        self.hub.publish("x", "a", b"")
        self.assertEqual(sub.messages, [])
        self.assertEqual(len(self.hub._patterns), 0)
        self.assertEqual(self.hub.subscription_count(), 0)

    def test_auto_create_off(self) -> None:
        """Without auto-create only CREATE makes channels."""
        hub = make_hub(auto_create=False)
        client = hub.attach(Recorder())
        self.assertEqual(self.assertRaises(HubError, hub.publish, "x", "a", b"").code,
                         "no-such-channel")
        self.assertEqual(self.assertRaises(HubError, hub.subscribe, client, "a").code,
                         "no-such-channel")
        hub.subscribe(client, "a.*")  # patterns create nothing, so they are fine
        hub.create("a")
        self.assertEqual(hub.publish("x", "a", b""), 1)

    def test_create(self) -> None:
        ch = self.hub.create("news", 5)
        self.assertEqual(ch.keep, 5)
        self.assertEqual(self.hub.create("other").keep, 100)
        self.assertCode("exists", self.hub.create, "news")
        self.assertCode("forbidden", self.hub.create, "$sys.mine")
        self.assertCode("forbidden", self.hub.create, "@alice")
        self.assertCode("bad-channel", self.hub.create, "news.*")
        self.assertCode("bad-args", self.hub.create, "big", 10001)

    def test_history_is_bounded(self) -> None:
        ch = self.hub.create("news", 2)
        for i in range(5):
            self.hub.publish("x", "news", b"%d" % i)
        self.assertEqual([(m.msg_id, m.payload) for m in kept(self.hub, "news")],
                         [(4, b"3"), (5, b"4")])
        self.assertEqual(ch.kept, 2)
        self.assertEqual(ch.published, 5)

    def test_system_channels_read_only(self) -> None:
        client, _ = self.join()
        self.assertCode("forbidden", self.hub.publish, "x", "$sys.time", b"")
        self.assertCode("forbidden", self.hub.publish, "x", "$sys.other", b"")
        self.assertCode("no-such-channel", self.hub.subscribe, client, "$sys.other")
        self.assertCode("forbidden", self.hub.subscribe, client, "@alice")

    def test_limits(self) -> None:
        hub = make_hub(max_clients=1, max_subscriptions=2, max_payload=4)
        client = hub.attach(Recorder())
        self.assertRaises(ServerFull, hub.attach, Recorder())
        hub.subscribe(client, "a")
        hub.subscribe(client, "b.>")
        hub.subscribe(client, "a")  # already held: no new subscription
        self.assertEqual(self.assertRaises(HubError, hub.subscribe, client, "c").code,
                         "too-many-subscriptions")
        hub.unsubscribe(client, "a")
        hub.subscribe(client, "c")
        self.assertEqual(hub.publish("x", "a", b"1234"), 1)
        self.assertEqual(self.assertRaises(HubError, hub.publish, "x", "a", b"12345").code,
                         "too-large")

    def test_unsubscribe(self) -> None:
        client, sub = self.join()
        self.assertCode("not-subscribed", self.hub.unsubscribe, client, "a")
        self.assertCode("bad-channel", self.hub.unsubscribe, client, "a..b")
        self.hub.subscribe(client, "a.>")
        self.hub.unsubscribe(client, "a.>")
        self.hub.publish("x", "a.b", b"")
        self.assertEqual(sub.messages, [])

    def test_broken_subscriber_does_not_hurt_others(self) -> None:
        """An exception in one delivery is logged; the others still get theirs."""
        for cls in (Recorder, Broken, Recorder):
            client, _ = self.join(cls=cls)
            self.hub.subscribe(client, "t")
        self.hub.publish("x", "t", b"p")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        delivered = [len(cast(Recorder, c.session).messages) for c in self.hub.clients()]
        self.assertEqual(sorted(delivered), [0, 1, 1])
        self.assertEqual(self.hub.counters.msgs_out, 2)

    def test_counters(self) -> None:
        client, _ = self.join()
        self.hub.subscribe(client, "t")
        self.hub.publish("x", "t", b"abc")
        self.hub.publish("x", "u", b"abc")
        c = self.hub.counters
        self.assertEqual((c.msgs_in, c.msgs_out, c.bytes_in), (2, 1, 6))
        self.assertEqual(c.connections_total, 1)

    def test_channels_listing(self) -> None:
        for name in ("b", "a.x", "a.y.z"):
            self.hub.create(name)
        self.assertEqual([c.name for c in self.hub.channels()], ["a.x", "a.y.z", "b"])
        self.assertEqual([c.name for c in self.hub.channels("a.*")], ["a.x"])
        self.assertEqual([c.name for c in self.hub.channels("$sys.>")],
                         ["$sys.channels", "$sys.clients", "$sys.stats", "$sys.time"])
