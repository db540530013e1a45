"""The Redis protocol door on StringTransport and Clock: the exact bytes a
Redis client reads."""
from __future__ import annotations

import os
import tempfile
from typing import ClassVar

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.auth.authenticator import Authenticator
from txpubsub.doors.line import LineDoorFactory
from txpubsub.doors.resp import RespDoor, RespDoorFactory, unknown_command
from txpubsub.doors.session import DoorSettings

from .helpers import Conn, ConsumerTransport, make_hub, next_turn
from .test_auth import USERS, run_now


def cmd(*args: bytes | str) -> bytes:
    """One command as client libraries send it (a multibulk)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RespCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = make_hub(self.clock)
        self.factory = RespDoorFactory(self.hub, "tcp:resp", DoorSettings())
        self.lines = LineDoorFactory(self.hub, "tcp:test", DoorSettings())

    def conn(self) -> Conn:
        conn = Conn(self.hub, self.factory)
        self.assertEqual(conn.greeting, b"")  # Redis says nothing first
        return conn

    def door(self, conn: Conn) -> RespDoor:
        door = conn.proto
        assert isinstance(door, RespDoor)
        return door


class CommandTests(RespCase):
    def test_ping_echo_inline_and_multibulk(self) -> None:
        """PING and ECHO as Redis answers them, typed (inline) or sent by a library."""
        c = self.conn()
        self.assertEqual(c.send(b"PING\r\n"), b"+PONG\r\n")
        self.assertEqual(c.send(b"ping hello\n"), b"$5\r\nhello\r\n")
        self.assertEqual(c.send(cmd("PING")), b"+PONG\r\n")
        self.assertEqual(c.send(cmd("ECHO", "a b")), b"$3\r\na b\r\n")
        self.assertEqual(c.send(b'echo "two words"\r\n'), b"$9\r\ntwo words\r\n")
        self.assertEqual(c.send(b"PING a b\r\n"),
                         b"-ERR wrong number of arguments for 'ping' command\r\n")

    def test_thousands_of_pipelined_commands_take_turns(self) -> None:
        """A read of 2,500 commands runs a thousand a reactor turn, in order,
        and another client's PING is answered between the turns."""
        c, other = self.conn(), self.conn()
        c.proto.dataReceived(b"".join(cmd("ECHO", str(n)) for n in range(2500)))
        for turn in (1, 2, 3):
            c.flush()
            self.assertEqual(c.transport.value().count(b"$"), min(1000 * turn, 2500))
            other.proto.dataReceived(b"PING\r\n")
            self.assertEqual(other.take(), b"+PONG\r\n")
            next_turn(self.clock)
        self.assertEqual(c.take(), b"".join(b"$%d\r\n%d\r\n" % (len(str(n)), n)
                                            for n in range(2500)))

    def test_unknown_command_worded_as_redis(self) -> None:
        c = self.conn()
        self.assertEqual(c.send(cmd("SET", "k", "v")),
                         b"-ERR unknown command 'SET', with args beginning with: 'k' 'v' \r\n")
        self.assertEqual(c.send(b"foo\r\n"),
                         b"-ERR unknown command 'foo', with args beginning with: \r\n")
        # Arguments are shown up to 128 bytes, CR and LF as spaces.
        long = unknown_command([b"x", b"a" * 200, b"b"])
        self.assertEqual(long, b"-ERR unknown command 'x', with args beginning with: '"
                         + b"a" * 128 + b"' \r\n")
        self.assertEqual(unknown_command([b"x", b"a\r\nb"]),
                         b"-ERR unknown command 'x', with args beginning with: 'a  b' \r\n")

    def test_connect_time_commands(self) -> None:
        """What redis-py and node-redis send on connect is answered."""
        c = self.conn()
        self.assertEqual(c.send(cmd("CLIENT", "SETINFO", "LIB-NAME", "redis-py")), b"+OK\r\n")
        self.assertEqual(c.send(cmd("CLIENT", "SETINFO", "LIB-VER", "5.0")), b"+OK\r\n")
        self.assertEqual(c.send(cmd("SELECT", "0")), b"+OK\r\n")
        self.assertEqual(c.send(cmd("SELECT", "1")), b"-ERR DB index is out of range\r\n")
        self.assertEqual(c.send(cmd("CLIENT", "ID")), b":1\r\n")
        self.assertEqual(c.send(cmd("CLIENT", "GETNAME")), b"$-1\r\n")
        self.assertEqual(c.send(cmd("CLIENT", "SETNAME", "bob")), b"+OK\r\n")
        self.assertEqual(c.send(cmd("CLIENT", "GETNAME")), b"$3\r\nbob\r\n")
        self.assertEqual(c.send(cmd("CLIENT", "NOPE")),
                         b"-ERR unknown subcommand 'NOPE'. Try CLIENT HELP.\r\n")
        self.assertEqual(c.send(cmd("CLIENT", "SETNAME")),
                         b"-ERR wrong number of arguments for 'client|setname' command\r\n")
        self.assertEqual(c.send(cmd("CONFIG", "GET", "save")), b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n")
        self.assertEqual(c.send(cmd("CONFIG", "GET", "maxmemory")), b"*0\r\n")
        self.assertEqual(c.send(cmd("COMMAND", "DOCS")), b"*0\r\n")

    def test_client_setinfo_refuses_what_would_break_client_info(self) -> None:
        """As Redis 7.2: a lib-name or lib-ver with a space, a newline or another
        byte outside ! to ~ is refused, so CLIENT INFO stays one line of
        key=value fields that client libraries split on spaces."""
        c = self.conn()
        for value in ("a b", "a\nid=7", "caf\u00e9"):
            self.assertEqual(c.send(cmd("CLIENT", "SETINFO", "lib-name", value)),
                             b"-ERR lib-name cannot contain spaces, newlines or special "
                             b"characters.\r\n")
        self.assertEqual(c.send(cmd("CLIENT", "SETINFO", "LIB-VER", "1 2")),
                         b"-ERR LIB-VER cannot contain spaces, newlines or special "
                         b"characters.\r\n")
        self.assertEqual(c.send(cmd("CLIENT", "SETINFO", "lib-name", "redis-py")), b"+OK\r\n")
        info = c.send(cmd("CLIENT", "INFO"))
        self.assertIn(b" lib-name=redis-py lib-ver=\n\r\n", info)
        self.assertEqual(info.count(b"\n"), 3, info)  # the bulk's header, the line, its CRLF
        self.assertEqual(c.send(cmd("CLIENT", "SETINFO", "lib-name", "")), b"+OK\r\n")

    def test_client_no_evict_and_no_touch_take_on_or_off(self) -> None:
        """As Redis: ON and OFF (any case) are +OK, anything else a syntax error."""
        c = self.conn()
        for sub in ("NO-EVICT", "no-touch"):
            self.assertEqual(c.send(cmd("CLIENT", sub, "on")), b"+OK\r\n")
            self.assertEqual(c.send(cmd("CLIENT", sub, "OFF")), b"+OK\r\n")
            self.assertEqual(c.send(cmd("CLIENT", sub, "maybe")), b"-ERR syntax error\r\n")

    def test_hello(self) -> None:
        """HELLO 3 answers a map and switches to RESP3; HELLO 2 back."""
        c = self.conn()
        reply = c.send(cmd("HELLO", "3"))
        self.assertTrue(reply.startswith(b"%8\r\n$6\r\nserver\r\n$5\r\nredis\r\n"), reply)
        self.assertIn(b"$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:1\r\n", reply)
        self.assertEqual(c.send(cmd("CLIENT", "GETNAME")), b"_\r\n")
        self.assertTrue(c.send(cmd("HELLO", "2")).startswith(b"*16\r\n"))
        self.assertEqual(c.send(cmd("HELLO", "4")), b"-NOPROTO unsupported protocol version\r\n")
        self.assertEqual(c.send(cmd("HELLO", "x")),
                         b"-ERR Protocol version is not an integer or out of range\r\n")
        self.assertEqual(c.send(cmd("HELLO", "3", "FOO")),
                         b"-ERR Syntax error in HELLO option 'FOO'\r\n")

    def test_hello_checks_the_version_before_its_options(self) -> None:
        """As Redis's helloCommand: an unsupported version is NOPROTO whatever
        follows it, so a client probing for RESP4 reads the code it looks for."""
        c = self.conn()
        self.assertEqual(c.send(cmd("HELLO", "4", "FOO")),
                         b"-NOPROTO unsupported protocol version\r\n")
        self.assertEqual(c.send(cmd("HELLO", "1", "SETNAME", "bob")),
                         b"-NOPROTO unsupported protocol version\r\n")
        self.assertEqual(c.send(cmd("CLIENT", "GETNAME")), b"$-1\r\n")

    def test_auth_without_users(self) -> None:
        c = self.conn()
        self.assertEqual(c.send(cmd("AUTH", "pw")),
                         b"-ERR AUTH <password> called without any password configured for "
                         b"the default user. Are you sure your configuration is correct?\r\n")
        self.assertEqual(c.send(cmd("AUTH", "u", "pw")),
                         b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")

    def test_flush_commands_answer_ok(self) -> None:
        """FLUSHALL, FLUSHDB and FUNCTION FLUSH (Redis's test suite sends them
        before each unit): there is nothing to delete, so +OK, as Redis answers
        an empty server; a bad option is Redis's syntax error."""
        c = self.conn()
        self.assertEqual(c.send(cmd("FLUSHALL")), b"+OK\r\n")
        self.assertEqual(c.send(cmd("flushdb", "ASYNC")), b"+OK\r\n")
        self.assertEqual(c.send(cmd("FUNCTION", "FLUSH", "sync")), b"+OK\r\n")
        self.assertEqual(c.send(cmd("FLUSHALL", "later")), b"-ERR syntax error\r\n")
        self.assertEqual(c.send(cmd("FUNCTION", "LOAD", "x")),
                         b"-ERR unknown subcommand 'LOAD'. Try FUNCTION HELP.\r\n")
        self.assertEqual(c.send(cmd("FUNCTION")),
                         b"-ERR wrong number of arguments for 'function' command\r\n")

    def test_nagle_is_off(self) -> None:
        """The door sets TCP_NODELAY, as Redis does: a second message written
        before the subscriber ACKs the first must not wait for its delayed ACK
        (40 ms a step, seen in Redis's own pub/sub tests)."""
        class Recording(ConsumerTransport):
            options: ClassVar[dict[str, bool]] = {}

            def setTcpNoDelay(self, enabled: bool) -> None:
                self.options["nodelay"] = enabled

            def setTcpKeepAlive(self, enabled: bool) -> None:
                self.options["keepalive"] = enabled

        Conn(self.hub, self.factory, transport=Recording)
        self.assertEqual(Recording.options, {"nodelay": True, "keepalive": True})

    def test_quit(self) -> None:
        c = self.conn()
        self.assertEqual(c.send(cmd("QUIT")), b"+OK\r\n")
        self.assertTrue(c.closed)


class PubSubTests(RespCase):
    def test_subscribe_and_messages_from_a_line_client(self) -> None:
        """A Redis subscriber gets a line client's PUB as a ``message``, and the
        line client sees the Redis client's name (or id) as sender."""
        r = self.conn()
        self.assertEqual(r.send(cmd("SUBSCRIBE", "news.uk", "news.fr")),
                         b"*3\r\n$9\r\nsubscribe\r\n$7\r\nnews.uk\r\n:1\r\n"
                         b"*3\r\n$9\r\nsubscribe\r\n$7\r\nnews.fr\r\n:2\r\n")
        line = Conn(self.hub, self.lines)
        self.assertEqual(line.cmd("PUB news.uk hello world"), "+OK 1\r\n")
        self.assertEqual(r.take(), b"*3\r\n$7\r\nmessage\r\n$7\r\nnews.uk\r\n"
                                   b"$11\r\nhello world\r\n")
        p = self.conn()
        line.cmd("SUB news.>")
        self.assertEqual(p.send(cmd("PUBLISH", "news.fr", "bonjour")), b":2\r\n")
        self.assertEqual(line.take(), b"MSG news.fr 1 c3 bonjour\r\n")
        p.send(cmd("CLIENT", "SETNAME", "pierre"))
        p.send(cmd("PUBLISH", "news.fr", "salut"))
        self.assertEqual(line.take(), b"MSG news.fr 2 pierre salut\r\n")

    def test_psubscribe_globs_cross_dots(self) -> None:
        """One ``message`` per channel subscription and one ``pmessage`` per glob;
        PUBLISH counts them all."""
        r = self.conn()
        r.send(cmd("SUBSCRIBE", "news.uk.london"))
        self.assertEqual(r.send(cmd("PSUBSCRIBE", "news.*", "n?ws.[tu]k.*")),
                         b"*3\r\n$10\r\npsubscribe\r\n$6\r\nnews.*\r\n:2\r\n"
                         b"*3\r\n$10\r\npsubscribe\r\n$12\r\nn?ws.[tu]k.*\r\n:3\r\n")
        p = self.conn()
        self.assertEqual(p.send(cmd("PUBLISH", "news.uk.london", "rain")), b":3\r\n")
        self.assertEqual(r.take(),
                         b"*3\r\n$7\r\nmessage\r\n$14\r\nnews.uk.london\r\n$4\r\nrain\r\n"
                         b"*4\r\n$8\r\npmessage\r\n$6\r\nnews.*\r\n$14\r\nnews.uk.london\r\n"
                         b"$4\r\nrain\r\n"
                         b"*4\r\n$8\r\npmessage\r\n$12\r\nn?ws.[tu]k.*\r\n$14\r\nnews.uk.london"
                         b"\r\n$4\r\nrain\r\n")
        self.assertEqual(p.send(cmd("PUBLISH", "sport", "goal")), b":0\r\n")
        self.assertEqual(p.send(cmd("PUBSUB", "NUMPAT")), b":2\r\n")
        self.assertEqual(r.send(cmd("PUNSUBSCRIBE")),
                         b"*3\r\n$12\r\npunsubscribe\r\n$6\r\nnews.*\r\n:2\r\n"
                         b"*3\r\n$12\r\npunsubscribe\r\n$12\r\nn?ws.[tu]k.*\r\n:1\r\n")
        self.assertEqual(self.hub.globs.count, 0)

    def test_glob_of_a_line_publish(self) -> None:
        r = self.conn()
        r.send(cmd("PSUBSCRIBE", "*"))
        line = Conn(self.hub, self.lines)
        self.assertEqual(line.cmd("PUB a.b.c x"), "+OK 1\r\n")
        self.assertEqual(r.take(), b"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$5\r\na.b.c\r\n$1\r\nx\r\n")

    def test_resp3_pushes(self) -> None:
        r = self.conn()
        r.send(cmd("HELLO", "3"))
        self.assertEqual(r.send(cmd("SUBSCRIBE", "a")),
                         b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n")
        self.assertEqual(r.send(cmd("PSUBSCRIBE", "a*")),
                         b">3\r\n$10\r\npsubscribe\r\n$2\r\na*\r\n:2\r\n")
        # RESP3 clients may go on with any command while subscribed.
        self.assertEqual(r.send(cmd("PUBLISH", "a", "x")), b">3\r\n$7\r\nmessage\r\n$1\r\na\r\n"
                         b"$1\r\nx\r\n>4\r\n$8\r\npmessage\r\n$2\r\na*\r\n$1\r\na\r\n$1\r\nx\r\n"
                         b":2\r\n")
        self.assertEqual(r.send(cmd("PING")), b"+PONG\r\n")

    def test_resp2_subscribed_mode(self) -> None:
        """In RESP2 a subscribed client may only (un)subscribe, PING, QUIT, RESET."""
        r = self.conn()
        r.send(cmd("SUBSCRIBE", "a"))
        self.assertEqual(r.send(cmd("PUBLISH", "a", "x")),
                         b"-ERR Can't execute 'publish': only (P|S)SUBSCRIBE / "
                         b"(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n")
        self.assertEqual(r.send(cmd("PING")), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
        self.assertEqual(r.send(cmd("PING", "hi")), b"*2\r\n$4\r\npong\r\n$2\r\nhi\r\n")
        self.assertEqual(r.send(cmd("UNSUBSCRIBE")),
                         b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n")
        self.assertEqual(r.send(cmd("UNSUBSCRIBE")), b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n")
        self.assertEqual(r.send(cmd("PING")), b"+PONG\r\n")

    def test_bad_channel_names(self) -> None:
        """A name txpubsub cannot carry gets a clear error and subscribes nothing."""
        r = self.conn()
        reply = r.send(cmd("SUBSCRIBE", "ok", "not valid"))
        self.assertTrue(reply.startswith(b"-ERR bad-channel 'not valid' is not a txpubsub "
                                         b"channel name"), reply)
        self.assertNotIn(b"\r\n", reply[:-2])
        self.assertEqual(r.send(cmd("PUBSUB", "NUMSUB", "ok")), b"*2\r\n$2\r\nok\r\n:0\r\n")
        self.assertEqual(r.send(cmd("PUBLISH", "a*b", "x")),
                         b"-ERR bad-channel bad channel name 'a*b'\r\n")
        self.assertEqual(r.send(cmd("PUBLISH", "$sys.time", "x")),
                         b"-NOPERM system channels are read-only\r\n")

    def test_pubsub_introspection(self) -> None:
        r = self.conn()
        r.send(cmd("SUBSCRIBE", "b.x", "a.y"))
        line = Conn(self.hub, self.lines)
        line.cmd("SUB c.>")
        line.cmd("PUB c.z hi")  # a channel with no exact subscriber is not listed
        q = self.conn()
        self.assertEqual(q.send(cmd("PUBSUB", "CHANNELS")),
                         b"*2\r\n$3\r\na.y\r\n$3\r\nb.x\r\n")
        self.assertEqual(q.send(cmd("PUBSUB", "CHANNELS", "b*")), b"*1\r\n$3\r\nb.x\r\n")
        self.assertEqual(q.send(cmd("PUBSUB", "NUMSUB", "a.y", "c.z")),
                         b"*4\r\n$3\r\na.y\r\n:1\r\n$3\r\nc.z\r\n:0\r\n")
        self.assertEqual(q.send(cmd("PUBSUB", "NOPE")),
                         b"-ERR unknown subcommand 'NOPE'. Try PUBSUB HELP.\r\n")

    def test_info_counts_channels_with_subscribers_by_section(self) -> None:
        """INFO's pubsub_channels is what Redis's is, the channels someone
        subscribes to by name (not every channel the server keeps), and INFO
        <section> answers that section only, as Redis does."""
        line = Conn(self.hub, self.lines)
        line.cmd("PUB kept.a hi")  # a channel nobody subscribes to
        q = self.conn()
        self.assertIn(b"\r\npubsub_channels:0\r\n", q.send(cmd("INFO")))
        r = self.conn()
        r.send(cmd("SUBSCRIBE", "b.x"))
        r.send(cmd("PSUBSCRIBE", "b*"))
        info = q.send(cmd("INFO", "stats"))
        self.assertEqual(info, b"$47\r\n# Stats\r\npubsub_channels:1\r\npubsub_patterns:1\r\n\r\n")
        clients = q.send(cmd("INFO", "CLIENTS"))
        self.assertTrue(clients.endswith(b"\r\n# Clients\r\nconnected_clients:3\r\n\r\n"),
                        clients)
        self.assertEqual(q.send(cmd("INFO", "keyspace")), b"$0\r\n\r\n")
        both = q.send(cmd("INFO", "server", "stats"))
        self.assertIn(b"# Server\r\n", both)
        self.assertIn(b"\r\n\r\n# Stats\r\n", both)
        self.assertNotIn(b"# Clients", both)
        self.assertIn(b"# Clients", q.send(cmd("INFO", "everything")))

    def test_reset(self) -> None:
        r = self.conn()
        r.send(cmd("HELLO", "3", "SETNAME", "rita"))
        r.send(cmd("SUBSCRIBE", "a"))
        r.send(cmd("PSUBSCRIBE", "a*"))
        self.assertEqual(r.send(cmd("RESET")), b"+RESET\r\n")
        self.assertEqual(r.send(cmd("CLIENT", "GETNAME")), b"$-1\r\n")
        self.assertEqual((self.hub.globs.count, self.hub.subscription_count()), (0, 0))

    def test_client_reply_off_keeps_pushes(self) -> None:
        """CLIENT REPLY OFF silences replies but not (un)subscribe
        confirmations or messages; ON answers +OK again (Redis's
        "PubSub messages with CLIENT REPLY OFF")."""
        r = self.conn()
        r.send(cmd("HELLO", "3"))
        self.assertEqual(r.send(cmd("CLIENT", "REPLY", "OFF")), b"")
        self.assertEqual(r.send(cmd("SUBSCRIBE", "channel")),
                         b">3\r\n$9\r\nsubscribe\r\n$7\r\nchannel\r\n:1\r\n")
        self.assertEqual(r.send(cmd("PING") + cmd("NOPE") + cmd("SUBSCRIBE", "bad name")), b"")
        self.assertEqual(self.conn().send(cmd("PUBLISH", "channel", "hi")), b":1\r\n")
        self.assertEqual(r.take(), b">3\r\n$7\r\nmessage\r\n$7\r\nchannel\r\n$2\r\nhi\r\n")
        # Its own PUBLISH: the message comes, the count does not.
        self.assertEqual(r.send(cmd("PUBLISH", "channel", "me")),
                         b">3\r\n$7\r\nmessage\r\n$7\r\nchannel\r\n$2\r\nme\r\n")
        self.assertEqual(r.send(cmd("UNSUBSCRIBE", "channel")),
                         b">3\r\n$11\r\nunsubscribe\r\n$7\r\nchannel\r\n:0\r\n")
        self.assertEqual(r.send(cmd("CLIENT", "REPLY", "SKIP")), b"")  # no effect while OFF
        self.assertEqual(r.send(cmd("CLIENT", "REPLY", "ON") + cmd("PING")),
                         b"+OK\r\n+PONG\r\n")

    def test_client_reply_skip_and_reset(self) -> None:
        """SKIP silences the one command after it; RESET ends OFF and answers."""
        r = self.conn()
        self.assertEqual(r.send(cmd("CLIENT", "REPLY", "SKIP") + cmd("ECHO", "a")
                                + cmd("ECHO", "b")), b"$1\r\nb\r\n")
        self.assertEqual(r.send(cmd("CLIENT", "REPLY", "MAYBE")), b"-ERR syntax error\r\n")
        self.assertEqual(r.send(cmd("CLIENT", "REPLY")),
                         b"-ERR wrong number of arguments for 'client|reply' command\r\n")
        self.assertEqual(r.send(cmd("CLIENT", "REPLY", "OFF") + cmd("ECHO", "a")
                                + cmd("RESET") + cmd("ECHO", "b")),
                         b"+RESET\r\n$1\r\nb\r\n")

    def test_hub_skips_the_glob_index_without_globs(self) -> None:
        """Servers whose clients hold no glob pay nothing for globs on publish."""
        def fail(*args: object) -> object:
            raise AssertionError("the glob index was asked")

        self.hub.globs.deliver = fail  # type: ignore[method-assign,assignment]
        r = self.conn()
        r.send(cmd("SUBSCRIBE", "a"))
        self.assertEqual(self.conn().send(cmd("PUBLISH", "a", "x")), b":1\r\n")

    def test_direct_message_to_a_line_client(self) -> None:
        line = Conn(self.hub, self.lines)
        line.cmd("NAME alice")
        r = self.conn()
        self.assertEqual(r.send(cmd("PUBLISH", "@alice", "psst")), b":1\r\n")
        self.assertEqual(line.take(), b"MSG @alice 1 c2 psst\r\n")

    def test_disconnect_forgets_globs(self) -> None:
        r = self.conn()
        r.send(cmd("PSUBSCRIBE", "a*", "b*"))
        self.assertEqual(self.hub.subscription_count(), 2)
        r.lose()
        self.assertEqual((self.hub.globs.count, len(self.hub.globs)), (0, 0))

    def test_dropped_channel_is_an_unsubscribe(self) -> None:
        r = self.conn()
        r.send(cmd("SUBSCRIBE", "a", "b"))
        self.hub.drop("a")
        self.assertEqual(r.take(), b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n")

    def test_subscription_limit_counts_globs(self) -> None:
        hub = make_hub(Clock(), max_subscriptions=2)
        factory = RespDoorFactory(hub, "tcp:resp", DoorSettings())
        r = Conn(hub, factory)
        r.send(cmd("PSUBSCRIBE", "a*"))
        self.assertEqual(r.send(cmd("SUBSCRIBE", "b", "c")),
                         b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
                         b"-ERR too-many-subscriptions at most 2 per connection\r\n")

    def test_slow_consumer(self) -> None:
        """A Redis subscriber that stops reading is cut off at --max-buffer, as
        on every door, without a goodbye."""
        factory = RespDoorFactory(self.hub, "tcp:resp", DoorSettings(max_buffer=100_000))
        r = Conn(self.hub, factory)
        r.send(cmd("PSUBSCRIBE", "big.*"))
        for _ in range(40):
            self.hub.publish("x", "big.x", b"x" * 5000)
            r.flush()  # the subscriber reads nothing
        self.assertTrue(r.closed)
        self.assertEqual(self.hub.counters.slow_consumers, 1)


class ProtocolErrorTests(RespCase):
    def test_bad_multibulk_closes(self) -> None:
        r = self.conn()
        self.assertEqual(r.send(b"*x\r\n"), b"-ERR Protocol error: invalid multibulk length\r\n")
        self.assertTrue(r.closed)

    def test_bulk_over_max_payload_refused_from_its_header(self) -> None:
        hub = make_hub(Clock(), max_payload=1000)
        r = Conn(hub, RespDoorFactory(hub, "tcp:resp", DoorSettings()))
        self.assertEqual(r.send(b"*3\r\n$7\r\nPUBLISH\r\n$1\r\na\r\n$1001\r\n"),
                         b"-ERR Protocol error: invalid bulk length\r\n")
        self.assertTrue(r.closed)

    def test_bulk_bound_follows_a_reloaded_max_payload(self) -> None:
        """A reload's --max-payload holds for connected Redis clients at once,
        as for line clients: raised, a bigger PUBLISH goes through; lowered, it
        is refused from its header."""
        hub = make_hub(Clock(), max_payload=1000)
        r = Conn(hub, RespDoorFactory(hub, "tcp:resp", DoorSettings(max_line=100)))
        hub.max_payload = 2000  # what a reload's LiveSettings does
        self.assertEqual(r.send(cmd("PUBLISH", "a", b"x" * 1500)), b":0\r\n")
        hub.max_payload = 500
        self.assertEqual(r.send(b"*3\r\n$7\r\nPUBLISH\r\n$1\r\na\r\n$600\r\n"),
                         b"-ERR Protocol error: invalid bulk length\r\n")
        self.assertTrue(r.closed)

    def test_command_over_the_input_bound(self) -> None:
        """Many bulks, each under --max-payload, cannot add up past the bound."""
        hub = make_hub(Clock(), max_payload=1000)
        r = Conn(hub, RespDoorFactory(hub, "tcp:resp", DoorSettings(max_line=100)))
        self.assertEqual(r.send(b"*9\r\n" + b"$900\r\n" + b"x" * 900 + b"\r\n"), b"")
        self.assertEqual(r.send(b"$900\r\n" + b"x" * 900 + b"\r\n"),
                         b"-ERR Protocol error: a command over 1200 bytes\r\n")
        self.assertTrue(r.closed)

    def test_expected_dollar(self) -> None:
        r = self.conn()
        self.assertEqual(r.send(b"*1\r\n+PING\r\n"),
                         b"-ERR Protocol error: expected '$', got '+'\r\n")

    def test_unbalanced_quotes(self) -> None:
        r = self.conn()
        self.assertEqual(r.send(b'ECHO "abc\r\n'),
                         b"-ERR Protocol error: unbalanced quotes in request\r\n")


class AuthTests(RespCase):
    def setUp(self) -> None:
        super().setUp()
        path = os.path.join(tempfile.mkdtemp(), "users.toml")
        with open(path, "w") as f:
            f.write(USERS)
        self.factory.auth = Authenticator.from_file(self.hub, path, run_in_thread=run_now)

    def test_noauth_then_auth(self) -> None:
        r = self.conn()
        self.assertEqual(r.send(cmd("PING")), b"-NOAUTH Authentication required.\r\n")
        self.assertEqual(r.send(cmd("NOPE")),
                         b"-ERR unknown command 'NOPE', with args beginning with: \r\n")
        self.assertEqual(r.send(cmd("HELLO", "3")),
                         b"-NOAUTH HELLO must be called with the client already authenticated, "
                         b"otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                         b"authenticate the client and select the RESP protocol version at the "
                         b"same time\r\n")
        r.proto.dataReceived(cmd("AUTH", "alice", "wrong") + cmd("PING"))
        self.clock.advance(5)
        self.assertEqual(r.take(), b"-WRONGPASS invalid username-password pair or user is "
                                   b"disabled.\r\n-NOAUTH Authentication required.\r\n")
        # Commands pipelined after AUTH run as the user it makes.
        self.assertEqual(r.send(cmd("AUTH", "alice", "alice pw with spaces") + cmd("PING")),
                         b"+OK\r\n+PONG\r\n")

    def test_pacing_and_a_pending_auth_hold_input_together(self) -> None:
        """An AUTH answered during a publisher's stall does not cut the stall short."""
        r = self.conn()
        self.assertEqual(r.send(cmd("AUTH", "alice", "wrong")), b"")
        self.clock.advance(0.999)
        self.assertTrue(r.proto.session.pace())
        self.clock.advance(0.001)
        self.assertEqual(r.send(cmd("PING")), b"-WRONGPASS invalid username-password pair or "
                                              b"user is disabled.\r\n")
        self.clock.advance(0.01)  # the stall is over
        self.assertEqual(r.take(), b"-NOAUTH Authentication required.\r\n")

    def test_reset_must_auth_again_in_time(self) -> None:
        """RESET makes the client nobody: it must AUTH again, within --auth-timeout."""
        r = self.conn()
        self.assertEqual(r.send(cmd("AUTH", "alice", "alice pw with spaces")), b"+OK\r\n")
        self.clock.advance(60)
        self.assertEqual(r.send(cmd("RESET") + cmd("PING")),
                         b"+RESET\r\n-NOAUTH Authentication required.\r\n")
        self.clock.advance(10)
        self.assertTrue(r.take().startswith(b"-ERR closing: auth-timeout"))
        self.assertTrue(r.closed)

    def test_hello_auth_and_pipelined(self) -> None:
        r = self.conn()
        reply = r.send(cmd("HELLO", "3", "AUTH", "alice", "alice pw with spaces")
                       + cmd("PING"))
        self.assertTrue(reply.startswith(b"%8\r\n"), reply)
        self.assertTrue(reply.endswith(b"+PONG\r\n"), reply)

    def test_unauthenticated_bulk_limit(self) -> None:
        r = self.conn()
        self.assertEqual(r.send(b"*2\r\n$4\r\nAUTH\r\n$20000\r\n"),
                         b"-ERR Protocol error: unauthenticated bulk length\r\n")

    def test_permissions_apply_to_globs_and_channels(self) -> None:
        """alice may read chat.> but not chat.secret: a glob does not bring it."""
        r = self.conn()
        r.send(cmd("AUTH", "alice", "alice pw with spaces"))
        self.assertEqual(r.send(cmd("PSUBSCRIBE", "chat.*")),
                         b"*3\r\n$10\r\npsubscribe\r\n$6\r\nchat.*\r\n:1\r\n")
        self.assertEqual(r.send(cmd("SUBSCRIBE", "chat.secret")),
                         b"-NOPERM not allowed on chat.secret\r\n")
        self.hub.publish("x", "chat.secret", b"s")
        self.hub.publish("x", "chat.lobby", b"l")
        self.assertEqual(r.take(), b"*4\r\n$8\r\npmessage\r\n$6\r\nchat.*\r\n$10\r\nchat.lobby"
                                   b"\r\n$1\r\nl\r\n")
