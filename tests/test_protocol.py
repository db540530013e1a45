"""The client line protocol, byte for byte, over StringTransport."""
from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.core.hub import ADMIN_SENDER, MAX_DIRECT_FROM
from txpubsub.doors.feeds import FeedFactory

from .helpers import Conn, make_hub


class GreetingTests(SynchronousTestCase):
    def test_info_has_every_key(self) -> None:
        """INFO carries every key PROTOCOL.md lists, with the server's limits."""
        conn = Conn(make_hub(max_payload=1000), max_line=500)
        self.assertTrue(conn.greeting.startswith(b"INFO {"))
        self.assertTrue(conn.greeting.endswith(b"}\r\n"))
        info = json.loads(conn.greeting[5:])
        self.assertEqual(info, {
            "server": "txpubsub", "version": "0.1.0", "proto": 1, "client_id": "c1",
            "max_line": 500, "max_payload": 1000, "tls": False, "auth_required": False,
            "epoch": "testepoch",
        })

    def test_too_many_clients(self) -> None:
        """The connection over --max-clients gets one BYE line and is closed."""
        hub = make_hub(max_clients=1)
        Conn(hub)
        second = Conn(hub)
        self.assertEqual(second.greeting, b"BYE too-many-clients\r\n")
        self.assertTrue(second.closed)
        second.lose()
        self.assertEqual(len(hub.clients()), 1)


class CommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = make_hub(self.clock)
        self.alice = Conn(self.hub)
        self.bob = Conn(self.hub)

    def test_telnet_session(self) -> None:
        """The README's session: NAME, SUB news.>, PUB news.uk hello."""
        self.assertEqual(self.alice.cmd("NAME alice"), "+OK alice\r\n")
        self.assertEqual(self.alice.cmd("SUB news.>"), "+OK subscribed news.> 0\r\n")
        self.assertEqual(self.bob.cmd("PUB news.uk hello"), "+OK 1\r\n")
        self.assertEqual(self.alice.take(), b"MSG news.uk 1 c2 hello\r\n")

    def test_publisher_gets_own_message(self) -> None:
        self.alice.cmd("SUB t")
        self.assertEqual(self.alice.cmd("PUB t x"), "MSG t 1 c1 x\r\n+OK 1\r\n")

    def test_pub_payload_exactly_as_sent(self) -> None:
        """Everything after the one space after the channel, spaces kept; CR is data."""
        self.alice.cmd("SUB t")
        self.bob.cmd("PUB t   two  spaces  ")
        self.bob.cmd("PUB t")
        self.bob.cmd("PUB t ")
        self.bob.send(b"PUB   t x\r\n")
        self.assertEqual(self.alice.take(),
                         b"MSG t 1 c2   two  spaces  \r\nMSG t 2 c2 \r\nMSG t 3 c2 \r\n"
                         b"MSG t 4 c2 x\r\n")

    def test_pub_with_inner_cr_is_msgb(self) -> None:
        """A CR inside a PUB line is payload, so it travels as MSGB."""
        self.alice.cmd("SUB t")
        self.bob.send(b"PUB t a\rb\r\n")
        self.assertEqual(self.alice.take(), b"MSGB t 1 c2 3\r\na\rb\r\n")

    def test_pubb(self) -> None:
        """PUBB takes exactly nbytes, binary and all; text payloads arrive as MSG."""
        self.alice.cmd("SUB t")
        self.assertEqual(self.bob.send(b"PUBB t 5\r\na\nb\x00c\r\n"), b"+OK 1\r\n")
        self.assertEqual(self.bob.send(b"PUBB t 3\nabc\n"), b"+OK 2\r\n")
        self.assertEqual(self.bob.send(b"PUBB t 0\n\n"), b"+OK 3\r\n")
        self.assertEqual(self.bob.send(b"PUBB t 2\n\xff\xfe\r\n"), b"+OK 4\r\n")
        self.assertEqual(self.alice.take(),
                         b"MSGB t 1 c2 5\r\na\nb\x00c\r\nMSG t 2 c2 abc\r\nMSG t 3 c2 \r\n"
                         b"MSGB t 4 c2 2\r\n\xff\xfe\r\n")

    def test_pubb_refused_payload_is_skipped(self) -> None:
        """A refused PUBB still reads its payload; the connection stays in step."""
        out = self.bob.send(b"PUBB $sys.time 4\r\nPING\r\nPING\r\n")
        self.assertEqual(out, b"-ERR forbidden system channels are read-only\r\nPONG\r\n")
        self.assertFalse(self.bob.closed)

    def test_pubb_too_large(self) -> None:
        """Announcing more than --max-payload: -ERR too-large, BYE too-large, closed."""
        conn = Conn(make_hub(max_payload=10))
        self.assertEqual(conn.send(b"PUBB t 11\r\n"),
                         b"-ERR too-large payload over 10 bytes\r\nBYE too-large\r\n")
        self.assertTrue(conn.closed)

    def test_pubb_bad_frame(self) -> None:
        """Bytes other than CRLF/LF after the payload: BYE bad-frame."""
        out = self.bob.send(b"PUBB t 2\r\nabcPING\r\n")
        self.assertEqual(out, b"BYE bad-frame a PUBB payload must be followed by CRLF or LF\r\n")
        self.assertTrue(self.bob.closed)
        conn = Conn(self.hub)
        self.assertTrue(conn.send(b"PUBB t 2\r\nab\rX").startswith(b"BYE bad-frame"))

    def test_pubb_bad_count(self) -> None:
        for line in (b"PUBB t -1", b"PUBB t 1x", b"PUBB t", b"PUBB t 1 2"):
            self.assertTrue(self.bob.send(line + b"\n").startswith(b"-ERR bad-args"), line)
        self.assertFalse(self.bob.closed)

    def test_numbers_too_long_to_read_get_bad_args(self) -> None:
        """Numbers of thousands of digits (more than int() reads) get -ERR
        bad-args, not -ERR internal-error; zero-padded ones are read."""
        huge = "9" * 5000
        for line in (f"SUB t last={huge}", f"SUB t since={huge}", f"CREATE u history={huge}",
                     f"HISTORY t {huge}", f"WHO after=c{huge}"):
            self.assertTrue(self.bob.cmd(line).startswith("-ERR bad-args "), line[:20])
        self.assertEqual(self.bob.cmd("WHO after=c" + "0" * 5000 + "2"), "+OK 0\r\n")
        self.assertEqual(self.bob.send(b"PUBB t " + b"0" * 5000 + b"2\r\nab\r\n"), b"+OK 1\r\n")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_pubb_count_too_long_to_read_is_too_large(self) -> None:
        """A PUBB announcing a count of thousands of digits is over
        --max-payload: -ERR too-large and BYE, as for any count over it."""
        out = self.bob.send(b"PUBB t " + b"9" * 5000 + b"\r\n")
        self.assertEqual(out, b"-ERR too-large payload over 1048576 bytes\r\nBYE too-large\r\n")
        self.assertTrue(self.bob.closed)

    def test_pub_too_large(self) -> None:
        conn = Conn(make_hub(max_payload=3))
        self.assertEqual(conn.cmd("PUB t 1234"), "-ERR too-large payload over 3 bytes\r\n")
        self.assertFalse(conn.closed)

    def test_direct_messages(self) -> None:
        """@name goes to that client alone, without SUB."""
        self.alice.cmd("NAME alice")
        self.bob.cmd("SUB >")
        self.assertEqual(self.bob.cmd("PUB @alice psst"), "+OK 1\r\n")
        self.assertEqual(self.alice.take(), b"MSG @alice 1 c2 psst\r\n")
        self.assertEqual(self.bob.cmd("PUB @carol x"),
                         "-ERR no-such-client no client called carol\r\n")
        self.assertEqual(self.alice.cmd("PUB @c2 by-id"), "+OK 1\r\n")
        self.assertEqual(self.bob.take(), b"MSG @c2 1 alice by-id\r\n")

    def test_name(self) -> None:
        self.assertEqual(self.alice.cmd("NAME alice"), "+OK alice\r\n")
        self.assertTrue(self.bob.cmd("NAME alice").startswith("-ERR name-taken "))
        self.assertTrue(self.bob.cmd("NAME c9").startswith("-ERR bad-args "))
        self.assertTrue(self.bob.cmd("NAME").startswith("-ERR bad-args "))
        self.assertTrue(self.bob.cmd("NAME a b").startswith("-ERR bad-args "))

    def test_sender_is_name_or_id(self) -> None:
        self.alice.cmd("SUB t")
        self.bob.cmd("PUB t 1")
        self.bob.cmd("NAME bob")
        self.bob.cmd("PUB t 2")
        self.assertEqual(self.alice.take(), b"MSG t 1 c2 1\r\nMSG t 2 bob 2\r\n")

    def test_create(self) -> None:
        self.assertEqual(self.alice.cmd("CREATE news history=5"), "+OK created news\r\n")
        self.assertTrue(self.alice.cmd("CREATE news").startswith("-ERR exists "))
        self.assertTrue(self.alice.cmd("CREATE x history=-1").startswith("-ERR bad-args "))
        self.assertTrue(self.alice.cmd("CREATE x history=ten").startswith("-ERR bad-args "))
        self.assertTrue(self.alice.cmd("CREATE x keep=1").startswith("-ERR bad-args "))
        self.assertTrue(self.alice.cmd("CREATE a..b").startswith("-ERR bad-channel "))
        self.assertTrue(self.alice.cmd("CREATE $sys.x").startswith("-ERR forbidden "))
        news = self.hub.channel("news")
        assert news is not None
        self.assertEqual(news.keep, 5)

    def test_sub_unsub(self) -> None:
        self.assertEqual(self.alice.cmd("SUB a.*"), "+OK subscribed a.* 0\r\n")
        self.assertEqual(self.alice.cmd("SUB a.*"), "+OK subscribed a.* 0\r\n")
        self.assertEqual(self.alice.cmd("UNSUB a.*"), "+OK unsubscribed a.*\r\n")
        self.assertTrue(self.alice.cmd("UNSUB a.*").startswith("-ERR not-subscribed "))
        self.assertTrue(self.alice.cmd("SUB a.>.b").startswith("-ERR bad-channel "))
        self.assertTrue(self.alice.cmd("SUB @bob").startswith("-ERR forbidden "))
        self.assertTrue(self.alice.cmd("SUB").startswith("-ERR bad-args "))
        self.assertTrue(self.alice.cmd("SUB a.* last=5").startswith("-ERR bad-args "))
        self.bob.cmd("PUB a.b x")
        self.assertEqual(self.alice.take(), b"")

    def test_too_many_subscriptions(self) -> None:
        conn = Conn(make_hub(max_subscriptions=1))
        conn.cmd("SUB a")
        self.assertTrue(conn.cmd("SUB b").startswith("-ERR too-many-subscriptions "))

    def test_no_auto_create(self) -> None:
        conn = Conn(make_hub(auto_create=False))
        self.assertTrue(conn.cmd("PUB a x").startswith("-ERR no-such-channel "))
        self.assertTrue(conn.cmd("SUB a").startswith("-ERR no-such-channel "))
        self.assertTrue(conn.send(b"PUBB a 1\r\nx\r\n").startswith(b"-ERR no-such-channel "))
        conn.cmd("CREATE a")
        self.assertEqual(conn.cmd("PUB a x"), "+OK 1\r\n")

    def test_list(self) -> None:
        """CHANNEL lines (subscribers, published, kept) then +OK count; no inboxes."""
        self.alice.cmd("NAME alice")
        self.alice.cmd("SUB news.*")
        self.bob.cmd("SUB news.uk")
        self.bob.cmd("CREATE news.fr history=1")
        for _ in range(3):
            self.bob.cmd("PUB news.fr x")
        self.bob.cmd("PUB news.uk x")
        self.bob.cmd("PUB @alice x")
        self.alice.take()
        self.assertEqual(self.alice.cmd("LIST"),
                         "CHANNEL news.fr 1 3 1\r\nCHANNEL news.uk 2 1 1\r\n+OK 2\r\n")
        self.assertEqual(self.alice.cmd("LIST news.uk"),
                         "CHANNEL news.uk 2 1 1\r\n+OK 1\r\n")
        self.assertEqual(self.alice.cmd("LIST other.>"), "+OK 0\r\n")
        self.assertTrue(self.alice.cmd("LIST $sys.>").endswith("+OK 4\r\n"))
        self.assertTrue(self.alice.cmd("LIST a..b").startswith("-ERR bad-channel "))

    def test_who(self) -> None:
        """CLIENT id name-or-dash seconds-connected, then +OK count."""
        self.alice.cmd("NAME alice")
        self.clock.advance(7)
        Conn(self.hub)
        self.alice.cmd("SUB t.>")
        self.assertEqual(self.bob.cmd("WHO"),
                         "CLIENT c1 alice 7\r\nCLIENT c2 - 7\r\nCLIENT c3 - 0\r\n+OK 3\r\n")
        self.assertEqual(self.bob.cmd("WHO t.x"), "CLIENT c1 alice 7\r\n+OK 1\r\n")
        self.assertEqual(self.bob.cmd("WHO nobody.here"), "+OK 0\r\n")
        self.assertTrue(self.bob.cmd("WHO t.*").startswith("-ERR bad-channel "))

    def test_who_after_disconnect(self) -> None:
        self.alice.lose()
        self.assertEqual(self.bob.cmd("WHO"), "CLIENT c2 - 0\r\n+OK 1\r\n")

    def test_quiet(self) -> None:
        """QUIET on: successful publishes get no reply, errors still do."""
        self.assertEqual(self.alice.cmd("quiet ON"), "+OK quiet on\r\n")
        self.assertEqual(self.alice.cmd("PUB t x"), "")
        self.assertEqual(self.alice.send(b"PUBB t 1\r\nx\r\n"), b"")
        self.assertTrue(self.alice.cmd("PUB $sys.time x").startswith("-ERR forbidden "))
        self.assertEqual(self.alice.cmd("QUIET off"), "+OK quiet off\r\n")
        self.assertEqual(self.alice.cmd("PUB t x"), "+OK 3\r\n")
        self.assertTrue(self.alice.cmd("QUIET maybe").startswith("-ERR bad-args "))

    def test_ping_pong_help_quit(self) -> None:
        self.assertEqual(self.alice.cmd("ping"), "PONG\r\n")
        self.assertEqual(self.alice.cmd("PONG"), "")
        help_text = self.alice.cmd("HELP")
        self.assertTrue(help_text.endswith("\r\n+OK\r\n"))
        for verb in ("NAME", "CREATE", "SUB", "UNSUB", "PUB", "PUBB", "LIST", "WHO", "QUIET",
                     "PING", "PONG", "HISTORY", "HELP", "QUIT"):
            self.assertIn(f"HELP {verb} ", help_text)
        self.assertEqual(self.alice.cmd("QUIT"), "+OK bye\r\n")
        self.assertTrue(self.alice.closed)

    def test_help_lists_pong(self) -> None:
        """HELP lists PONG, the answer a client gives to the server's PING."""
        self.assertIn("HELP PONG ", self.alice.cmd("HELP"))

    def test_verbs_case_insensitive_names_not(self) -> None:
        self.alice.cmd("sub News")
        self.bob.cmd("Pub news x")
        self.assertEqual(self.alice.take(), b"")
        self.bob.cmd("pUb News x")
        self.assertEqual(self.alice.take(), b"MSG News 1 c2 x\r\n")

    def test_empty_lines_ignored(self) -> None:
        self.assertEqual(self.alice.send(b"\n\r\n   \r\nPING\n"), b"PONG\r\n")

    def test_unknown_command(self) -> None:
        self.assertEqual(self.alice.cmd("FROB x"),
                         "-ERR unknown-command unknown command 'FROB', try HELP\r\n")

    def test_pipelined_replies_in_order(self) -> None:
        """Many commands in one chunk: one reply each, in order."""
        out = self.alice.send(b"PING\nSUB t\nPUB t a\nBAD\nPUB t b\nUNSUB t\nPING\n")
        self.assertEqual(out, b"PONG\r\n+OK subscribed t 0\r\nMSG t 1 c1 a\r\n+OK 1\r\n"
                              b"-ERR unknown-command unknown command 'BAD', try HELP\r\n"
                              b"MSG t 2 c1 b\r\n+OK 2\r\n+OK unsubscribed t\r\nPONG\r\n")


class DirectMessageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = make_hub(self.clock)

    def test_direct_message_to_a_feed_reader_is_no_such_client(self) -> None:
        """Feed readers cannot be sent direct messages (nothing would frame them)."""
        feed = FeedFactory("logs", self.hub).buildProtocol(None)
        feed.makeConnection(StringTransport())
        conn = Conn(self.hub)
        self.assertTrue(conn.cmd("PUB @c1 fake").startswith("-ERR no-such-client "))

    def test_direct_message_ids_count_per_recipient_and_end_with_it(self) -> None:
        """Direct messages to a connection are numbered 1, 2, ... for it alone; once it
        is gone it cannot be sent to, and the next connection's inbox starts at 1."""
        a = Conn(self.hub)
        b = Conn(self.hub)
        self.assertEqual(b.cmd("PUB @c1 x"), "+OK 1\r\n")
        self.assertEqual(b.cmd("PUB @c1 x"), "+OK 2\r\n")
        a.lose()
        self.assertTrue(b.cmd("PUB @c1 x").startswith("-ERR no-such-client "))
        Conn(self.hub)
        self.assertEqual(b.cmd("PUB @c3 x"), "+OK 1\r\n")


class DirectRefusalTests(SynchronousTestCase):
    """DIRECT: a client chooses whose direct messages it takes."""

    def setUp(self) -> None:
        self.hub = make_hub()
        self.alice, self.bob, self.carol = Conn(self.hub), Conn(self.hub), Conn(self.hub)
        self.alice.cmd("NAME alice")
        self.bob.cmd("NAME bob")

    def test_direct_off_refuses_every_sender_but_the_server(self) -> None:
        """DIRECT off: PUB and PUBB to @alice get -ERR refused (a PUBB's payload
        is still read), nothing reaches her; the admin's voice still does;
        DIRECT on takes everyone's again."""
        self.assertEqual(self.alice.cmd("DIRECT off"), "+OK direct off\r\n")
        self.assertEqual(self.bob.cmd("PUB @alice hi"),
                         "-ERR refused alice takes no direct messages\r\n")
        self.assertEqual(self.bob.send(b"PUBB @alice 3\r\nPUB\r\nPING\r\n"),
                         b"-ERR refused alice takes no direct messages\r\nPONG\r\n")
        self.assertEqual(self.alice.take(), b"")
        self.hub.publish(ADMIN_SENDER, "@alice", b"maintenance")
        self.assertEqual(self.alice.take(), b"MSG @alice 1 $admin maintenance\r\n")
        self.assertEqual(self.alice.cmd("direct ON"), "+OK direct on\r\n")
        self.assertEqual(self.bob.cmd("PUB @alice hi"), "+OK 2\r\n")
        self.assertEqual(self.alice.take(), b"MSG @alice 2 bob hi\r\n")

    def test_direct_from_takes_the_senders_named_by_name_or_id(self) -> None:
        """DIRECT from bob c3: bob (by name) and carol (by her id) get through,
        anyone else is refused, and so is whoever stops being bob."""
        self.assertEqual(self.alice.cmd("DIRECT from bob c3 bob"), "+OK direct from 2\r\n")
        self.assertEqual(self.bob.cmd("PUB @alice from bob"), "+OK 1\r\n")
        self.assertEqual(self.carol.cmd("PUB @alice from carol"), "+OK 2\r\n")
        dave = Conn(self.hub)
        refusal = "-ERR refused alice takes direct messages only from some senders\r\n"
        self.assertEqual(dave.cmd("PUB @c1 from dave"), refusal)
        self.bob.cmd("NAME robert")
        self.assertEqual(self.bob.cmd("PUB @alice again"), refusal)
        self.assertEqual(self.alice.take(),
                         b"MSG @alice 1 bob from bob\r\nMSG @alice 2 c3 from carol\r\n")

    def test_direct_bad_arguments(self) -> None:
        """Anything but on, off or from with names and ids is bad-args, and
        changes nothing."""
        self.alice.cmd("DIRECT off")
        for line in ("DIRECT", "DIRECT maybe", "DIRECT from", "DIRECT on now",
                     "DIRECT from bob 9lives", "DIRECT from " + " ".join(
                         f"n{i}" for i in range(MAX_DIRECT_FROM + 1))):
            self.assertTrue(self.alice.cmd(line).startswith("-ERR bad-args "), line)
        self.assertTrue(self.bob.cmd("PUB @alice hi").startswith("-ERR refused "))

    def test_help_names_direct(self) -> None:
        self.assertIn("HELP DIRECT on|off ", self.alice.cmd("HELP"))


class BadInputTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hub = make_hub()
        self.conn = Conn(self.hub, max_line=16)

    def test_bad_encoding(self) -> None:
        """A line that is not UTF-8 is refused without echoing its bytes."""
        out = self.conn.send(b"PUB t \xff\xfe\nPING\n")
        self.assertEqual(out, b"-ERR bad-encoding lines must be UTF-8\r\nPONG\r\n")
        self.assertEqual(self.conn.send("PUB t é\n".encode()), b"+OK 1\r\n")

    def test_line_too_long(self) -> None:
        """max-line bytes are fine (CR not counted); one more: BYE line-too-long."""
        self.assertEqual(self.conn.send(b"PUB t " + b"x" * 10 + b"\r\n"), b"+OK 1\r\n")
        out = self.conn.send(b"PUB t " + b"x" * 11 + b"\n")
        self.assertEqual(out, b"BYE line-too-long lines are at most 16 bytes\r\n")
        self.assertTrue(self.conn.closed)

    def test_line_too_long_without_lf(self) -> None:
        """Too many bytes with no LF yet is enough to say BYE."""
        self.assertEqual(self.conn.send(b"x" * 16), b"")
        self.assertEqual(self.conn.send(b"\r"), b"")  # could still be a CRLF
        self.assertTrue(self.conn.send(b"y").startswith(b"BYE line-too-long"))

    def test_trickled_line(self) -> None:
        """A command arriving one byte at a time works like one sent whole."""
        conn = Conn(self.hub)
        out = b"".join(conn.send(bytes([b])) for b in b"SUB t\r\nPUB t hi\r\n")
        self.assertEqual(out, b"+OK subscribed t 0\r\nMSG t 1 c2 hi\r\n+OK 1\r\n")

    def test_nothing_after_bye(self) -> None:
        """Input after a BYE is not executed."""
        out = self.conn.send(b"x" * 20 + b"\nPUB t x\n")
        self.assertTrue(out.startswith(b"BYE line-too-long"))
        self.assertEqual(self.hub.channel("t"), None)

    def test_internal_error_is_contained(self) -> None:
        """A bug in one command is logged and answered; the connection goes on."""
        def broken(*args: object) -> None:
            raise ZeroDivisionError()

        self.patch(self.hub, "set_name", broken)
        self.assertTrue(self.conn.cmd("NAME x").startswith("-ERR internal-error "))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.conn.cmd("PING"), "PONG\r\n")

    def test_pubb_refused_for_bad_encoding_still_reads_its_payload(self) -> None:
        """A PUBB line that is not UTF-8 is refused, and its payload is skipped, not run."""
        conn = Conn(self.hub)
        out = conn.send(b"PUBB caf\xe9 19\nNAME mallory\nSUB x\n\r\nPING\n")
        self.assertEqual(out, b"-ERR bad-encoding lines must be UTF-8\r\nPONG\r\n")
        assert conn.proto.session.client is not None
        self.assertIsNone(conn.proto.session.client.name)

    def test_pubb_not_utf8_with_a_count_too_long_to_read(self) -> None:
        """A PUBB line that is not UTF-8 with a zero-padded count of thousands
        of digits still has its payload skipped; one too large to read gets
        -ERR bad-encoding alone; the connection goes on either way."""
        conn = Conn(self.hub)
        out = conn.send(b"PUBB caf\xe9 " + b"0" * 5000 + b"9\nNAME evil\nPING\n")
        self.assertEqual(out, b"-ERR bad-encoding lines must be UTF-8\r\nPONG\r\n")
        out = conn.send(b"PUBB caf\xe9 " + b"9" * 5000 + b"\nPING\n")
        self.assertEqual(out, b"-ERR bad-encoding lines must be UTF-8\r\nPONG\r\n")
        self.assertFalse(conn.closed)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_error_reply_cuts_a_long_channel_name(self) -> None:
        """An -ERR about a 120-byte channel name shortens it: the reply stays short."""
        conn = Conn(self.hub)
        conn.cmd("CREATE " + "n" * 120)
        reply = conn.cmd("CREATE " + "n" * 120)
        self.assertTrue(reply.startswith("-ERR exists "))
        self.assertLess(len(reply), 80)
