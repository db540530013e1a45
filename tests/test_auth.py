"""Users, AUTH and permissions (PROTOCOL.md, "Authentication"), on fake
transports and a Clock: every rule a client or an operator would notice."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import tracemalloc
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.auth.authenticator import Authenticator
from txpubsub.auth.cred import make_portal
from txpubsub.auth.passwords import hash_password, verify_password
from txpubsub.auth.throttle import LoginThrottle
from txpubsub.auth.users import UsersFileError, load_users, parse_users
from txpubsub.core.hub import Hub
from txpubsub.doors.admin import AdminFactory
from txpubsub.doors.line import LineDoorFactory
from txpubsub.doors.session import DoorSettings, is_local
from txpubsub.server.lifecycle import Lifecycle
from txpubsub.wire.errors import HubError

from .helpers import Conn, ConsumerTransport, make_hub


def cheap(password: str) -> str:
    """A hash with tiny scrypt parameters: the format is the same, the tests fast."""
    return hash_password(password, ln=4, r=1)


ALICE = cheap("alice pw with spaces")
BOB = cheap("bob-pw")

USERS = f"""
[users.alice]
password = "{ALICE}"
publish = ["chat.>", "@*"]
subscribe = ["chat.>", "news.>"]
deny_publish = ["chat.announce"]
deny_subscribe = ["chat.secret"]

[users.bob]
password = "{BOB}"
publish = ["news.uk"]
subscribe = ["news.uk", "chat.lobby"]

[users.carol]
password = "{cheap("carol")}"
"""

ANONYMOUS = """
[anonymous]
subscribe = ["news.>"]
publish = ["news.anon"]
"""


def run_now(f: Any, *args: Any) -> Deferred[Any]:
    """Instead of a thread: the check runs at once (the Clock is the only time)."""
    return maybeDeferred(f, *args)


def log_events(case: SynchronousTestCase) -> list[dict[str, Any]]:
    """The events logged from now to the end of the test."""
    events: list[dict[str, Any]] = []
    observer: Any = events.append
    globalLogPublisher.addObserver(observer)
    case.addCleanup(globalLogPublisher.removeObserver, observer)
    return events


class FarTransport(ConsumerTransport):
    """A connection from another machine."""

    def __init__(self, peerAddress: Any = None, **kwargs: Any) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "203.0.113.7", 40123), **kwargs)


class AuthCase(SynchronousTestCase):
    """A hub with the users file USERS (plus ``extra``) and line connections to it."""

    extra = ""

    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = make_hub(self.clock)
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "users.toml")
        self.write(USERS + self.extra)
        self.auth = Authenticator.from_file(self.hub, self.path, run_in_thread=run_now)
        self.factory = LineDoorFactory(self.hub, "tcp:test", DoorSettings())
        self.factory.auth = self.auth

    def write(self, text: str) -> None:
        with open(self.path, "w") as f:
            f.write(text)

    def conn(self, user: str | None = None, password: str = "") -> Conn:
        conn = Conn(self.hub, self.factory)
        if user is not None:
            self.assertEqual(conn.cmd(f"AUTH {user} {password}"), f"+OK {user}\r\n")
        return conn

    def alice(self) -> Conn:
        return self.conn("alice", "alice pw with spaces")

    def bob(self) -> Conn:
        return self.conn("bob", "bob-pw")


class AuthRequiredTests(AuthCase):
    def test_greeting_says_auth_required(self) -> None:
        """With users and no anonymous rules, INFO says auth_required true."""
        info = json.loads(self.conn().greeting[5:])
        self.assertIs(info["auth_required"], True)
        self.assertNotIn("user", info)

    def test_only_some_commands_before_auth(self) -> None:
        """Before AUTH, only AUTH, PING, PONG, HELP and QUIT; the rest auth-required."""
        conn = self.conn()
        for line in ("SUB news.uk", "PUB news.uk hi", "NAME zed", "LIST", "WHO",
                     "CREATE x", "HISTORY news.uk", "UNSUB x", "QUIET on", "pub a b",
                     "PUBB news.uk 4\nPING"):
            # A refused PUBB's payload is read, not taken for a command.
            self.assertTrue(conn.cmd(line).startswith("-ERR auth-required "), line)
        self.assertEqual(conn.cmd("PING"), "PONG\r\n")
        self.assertEqual(conn.cmd("PONG"), "")
        self.assertTrue(conn.cmd("HELP").endswith("+OK\r\n"))
        self.assertIn("HELP AUTH <user> <password>", conn.cmd("HELP"))
        self.assertTrue(conn.cmd("NOPE").startswith("-ERR unknown-command "))
        self.assertEqual(conn.cmd("QUIT"), "+OK bye\r\n")
        self.assertTrue(conn.closed)

    def test_auth_then_commands(self) -> None:
        """AUTH with the password (spaces and all) gets +OK <user>; then commands work."""
        conn = self.alice()
        self.assertEqual(conn.cmd("SUB chat.*.x"), "+OK subscribed chat.*.x 0\r\n")
        self.assertEqual(conn.cmd("SUB chat.x"), "+OK subscribed chat.x 0\r\n")
        self.assertEqual(conn.cmd("PUB chat.x hi"), "MSG chat.x 1 c1 hi\r\n+OK 1\r\n")
        self.assertEqual(self.hub.find_client("c1").user, "alice")  # type: ignore[union-attr]

    def test_auth_does_not_name(self) -> None:
        """AUTH does not change the client's name."""
        conn = self.alice()
        self.assertEqual(conn.cmd("WHO"), "CLIENT c1 - 0\r\n+OK 1\r\n")

    def test_pipelined_after_auth(self) -> None:
        """Commands sent right behind AUTH, in the same packet, run as the user."""
        conn = self.conn()
        self.assertEqual(conn.send(b"AUTH bob bob-pw\nSUB news.uk\nPUB news.uk hi\n"),
                         b"+OK bob\r\n+OK subscribed news.uk 0\r\nMSG news.uk 1 c1 hi\r\n"
                         b"+OK 1\r\n")

    def test_a_refused_pubb_is_read_past_without_being_held(self) -> None:
        """Before AUTH, a PUBB of --max-payload bytes is refused once read, and
        the server does not hold its bytes meanwhile: an unauthenticated
        client cannot make it keep a megabyte per connection."""
        conn = self.conn()
        size = self.hub.max_payload
        self.assertEqual(conn.send(b"PUBB news.uk %d\n" % size), b"")
        tracemalloc.start()
        try:
            for _ in range(size // 65536):  # a new 64 KiB read each time, as from a socket
                self.assertEqual(conn.send(b"x" * 65536), b"")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertLess(peak, size // 4)
        self.assertEqual(conn.send(b"\r\nPING\n"),
                         b"-ERR auth-required AUTH <user> <password> first\r\nPONG\r\n")

    def test_a_refused_pubb_with_a_zero_padded_count(self) -> None:
        """Before AUTH, a PUBB whose count is zero-padded to thousands of
        digits is refused once its payload has gone by, not run as commands
        and not an internal error."""
        conn = self.conn()
        out = conn.send(b"PUBB news.uk " + b"0" * 5000 + b"6\r\nQUIT\r\n\r\nPING\r\n")
        self.assertEqual(out, b"-ERR auth-required AUTH <user> <password> first\r\nPONG\r\n")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_wrong_password_delayed(self) -> None:
        """A wrong password gets -ERR auth-failed a second later, not before; what
        was pipelined behind it waits and then runs unauthenticated."""
        conn = self.conn()
        self.assertEqual(conn.send(b"AUTH alice nope\nSUB news.uk\n"), b"")
        self.clock.advance(0.9)
        self.assertEqual(conn.take(), b"")
        self.clock.advance(0.1)
        self.assertEqual(conn.take(), b"-ERR auth-failed wrong user or password\r\n"
                                      b"-ERR auth-required AUTH <user> <password> first\r\n")
        self.assertFalse(conn.closed)
        self.assertEqual(self.hub.stats()["auth_failures"], 1)

    def test_pacing_and_a_pending_auth_hold_input_together(self) -> None:
        """A publisher's stall ending does not read past a pending AUTH, and an
        AUTH answered during a stall does not cut the stall short."""
        conn = self.conn()
        session = conn.proto.session
        self.assertEqual(conn.send(b"AUTH bob no\nPING\n"), b"")
        self.assertTrue(session.pace())
        self.clock.advance(0.5)
        self.assertEqual(conn.take(), b"")
        self.clock.advance(0.5)
        self.assertEqual(conn.take(), b"-ERR auth-failed wrong user or password\r\nPONG\r\n")
        self.assertEqual(conn.send(b"AUTH bob no\n"), b"")
        self.clock.advance(0.999)
        self.assertTrue(session.pace())
        self.clock.advance(0.001)
        self.assertEqual(conn.send(b"PING\n"), b"-ERR auth-failed wrong user or password\r\n")
        self.clock.advance(0.01)  # the stall is over
        self.assertEqual(conn.take(), b"PONG\r\n")

    def test_unknown_user_is_the_same_failure(self) -> None:
        """An unknown user is answered exactly as a wrong password."""
        conn = self.conn()
        conn.cmd("AUTH mallory x")
        self.clock.advance(1)
        self.assertEqual(conn.take(), b"-ERR auth-failed wrong user or password\r\n")

    def test_unknown_user_costs_a_users_check_on_the_thread(self) -> None:
        """An unknown user's password is checked against a real user's hash (the
        same cost, whatever the file's costs: no enumeration by timing), on the
        thread: nothing is hashed on the reactor, not even a first decoy."""
        from txpubsub.auth import cred

        self.patch(cred, "_decoy", [])
        calls: list[tuple[Any, ...]] = []

        def recording(f: Any, *args: Any) -> Deferred[Any]:
            calls.append((f, *args))
            return Deferred()

        self.auth.portal = make_portal(lambda: self.auth.table, recording)
        self.auth.authenticate("mallory", "x")
        self.auth.authenticate("alice", "x")
        [(check, stored, decoy, password), (_, alice, _, _)] = calls
        self.assertEqual((stored, decoy, password, alice), (None, ALICE, "x", ALICE))
        self.assertEqual(cred._decoy, [])
        self.assertFalse(check(None, ALICE, "alice pw with spaces"))  # never a user
        cred._decoy.append(cheap("x"))  # what the first check would make (at the default cost)
        self.assertFalse(check(None, None, "x"))  # no user has a password: the default
        self.assertTrue(check(ALICE, ALICE, "alice pw with spaces"))

    def test_failure_log_line_cannot_be_forged(self) -> None:
        """The user a client gave is logged as it is only if it is a name: a newline
        in it (WebSocket JSON may carry one) cannot forge a log line, nor can a
        long one flood the log."""
        events = log_events(self)
        ws = WebSocketAuthTests.ws(self)  # type: ignore[arg-type]
        forged = "x\n2030-01-01T00:00:00+0000 [txpubsub] c9 authenticated as alice"
        ws.ask({"op": "auth", "user": forged, "password": "x"})
        ws.ask({"op": "auth", "user": "y" * 5000, "password": "x"})
        self.clock.advance(1)
        lines = [formatEvent(e) for e in events if "failed (" in e["log_format"]]
        self.assertEqual(len(lines), 2)
        self.assertEqual([line.count("\n") for line in lines], [0, 0])
        self.assertIn("as 'x\\n2030-01-01T00:00:00+0000 [txpubsub] c9 authenticated as alic... "
                      "failed", lines[0])
        self.assertLess(len(lines[1]), 200)
        conn = self.conn()
        conn.cmd("AUTH mallory x")
        self.assertIn("authentication as mallory failed", formatEvent(events[-1]))
        ws.lose()

    def test_third_failure_bye(self) -> None:
        """The third failure on one connection gets BYE auth-failed and the close."""
        conn = self.conn()
        for _ in range(2):
            conn.cmd("AUTH alice nope")
            self.clock.advance(1)
            self.assertTrue(conn.take().startswith(b"-ERR auth-failed"))
        conn.cmd("AUTH alice nope")
        self.clock.advance(1)
        self.assertEqual(conn.take(), b"BYE auth-failed 3 failed attempts\r\n")
        self.assertTrue(conn.closed)
        self.assertEqual(self.hub.stats()["auth_failures"], 3)

    def test_auth_timeout(self) -> None:
        """No AUTH within --auth-timeout: BYE auth-timeout; failures do not reset it."""
        conn = self.conn()
        self.clock.advance(5)
        conn.cmd("AUTH alice nope")
        self.clock.advance(1)
        conn.take()
        self.clock.advance(3.9)
        self.assertFalse(conn.closed)
        self.clock.advance(0.1)
        self.assertEqual(conn.take(), b"BYE auth-timeout not authenticated within 10 seconds\r\n")
        self.assertTrue(conn.closed)

    def test_no_timeout_after_auth(self) -> None:
        conn = self.alice()
        self.clock.advance(60)
        self.assertFalse(conn.closed)

    def test_auth_twice(self) -> None:
        """A second AUTH is refused: a client is one user for its whole connection."""
        conn = self.alice()
        self.assertTrue(conn.cmd("AUTH bob bob-pw").startswith("-ERR forbidden already "))
        self.assertEqual(conn.cmd("PING"), "PONG\r\n")

    def test_auth_usage(self) -> None:
        conn = self.conn()
        self.assertTrue(conn.cmd("AUTH").startswith("-ERR bad-args "))
        self.assertTrue(conn.cmd("AUTH alice").startswith("-ERR bad-args "))

    def held_checks(self) -> list[tuple[Deferred[Any], Any, tuple[Any, ...]]]:
        """Password checks stay pending until the test answers them."""
        checks: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []

        def held(f: Any, *args: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            checks.append((d, f, args))
            return d

        self.auth.portal = make_portal(lambda: self.auth.table, held)
        return checks

    def test_user_removed_while_its_password_is_checked(self) -> None:
        """A reload takes a user out while its AUTH is being checked: the right
        password is then a failure, not a login as a user the file no longer has."""
        checks = self.held_checks()
        conn = self.conn()
        self.assertEqual(conn.send(b"AUTH bob bob-pw\nPING\n"), b"")
        self.write(USERS.split("[users.bob]")[0])
        self.auth.reload()
        [(d, check, args)] = checks
        d.callback(check(*args))  # the thread's answer: the password was right
        self.clock.advance(1)
        self.assertEqual(conn.take(), b"-ERR auth-failed wrong user or password\r\nPONG\r\n")
        self.assertIsNone(conn.proto.session.client.user)  # type: ignore[union-attr]

    def test_pipelined_after_auth_answered_after_it(self) -> None:
        """Commands pipelined behind an AUTH checked on the thread (answered
        later, as in a real server) are answered after its +OK, and the
        messages they cause come after it too, not ahead of the replies."""
        checks = self.held_checks()
        conn = self.conn()
        self.assertEqual(conn.send(b"AUTH bob bob-pw\nSUB news.uk\nPUB news.uk hi\n"), b"")
        [(d, check, args)] = checks
        d.callback(check(*args))
        self.assertEqual(conn.take(), b"+OK bob\r\n+OK subscribed news.uk 0\r\n"
                                      b"MSG news.uk 1 c1 hi\r\n+OK 1\r\n")

    def test_gone_during_the_check(self) -> None:
        """A client that leaves while its password is checked leaves no timer behind."""
        checks = self.held_checks()
        conn = self.conn()
        conn.cmd("AUTH alice nope")
        conn.lose()
        [(d, check, args)] = checks
        d.callback(check(*args))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.hub.stats()["auth_failures"], 1)

    def test_gone_during_delay(self) -> None:
        """A client that leaves while its failure is delayed leaves no timer behind."""
        conn = self.conn()
        conn.cmd("AUTH alice nope")
        conn.lose()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class LoginThrottleTests(SynchronousTestCase):
    """The server-wide bounds on password checking (auth/throttle.py), on a Clock."""

    def test_checks_at_once(self) -> None:
        throttle = LoginThrottle(Clock(), max_checks=2)
        throttle.admit("203.0.113.7")
        throttle.admit("127.0.0.1")
        with self.assertRaises(HubError) as refused:
            throttle.admit("198.51.100.1")
        self.assertEqual(refused.exception.code, "unavailable")
        throttle.done("127.0.0.1", failed=False)
        throttle.admit("198.51.100.1")

    def test_failure_budget_per_address(self) -> None:
        """Ten failures from an address, then one every six seconds; a right
        password gives its try back; loopback and Unix sockets have no budget."""
        clock = Clock()
        throttle = LoginThrottle(clock, max_checks=100)
        for _ in range(10):
            throttle.admit("203.0.113.7")
            throttle.done("203.0.113.7", failed=True)
        with self.assertRaises(HubError) as refused:
            throttle.admit("203.0.113.7")
        self.assertEqual((refused.exception.code, refused.exception.text),
                         ("rate-limited", "too many failed logins from 203.0.113.7; try again "
                                          "in 6 s"))
        throttle.admit("198.51.100.1")  # another address is not concerned
        for local in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "unix:/run/x.sock"):
            for _ in range(20):
                throttle.admit(local)
                throttle.done(local, failed=True)
        clock.advance(5.9)
        self.assertRaises(HubError, throttle.admit, "203.0.113.7")
        clock.advance(0.1)
        throttle.admit("203.0.113.7")
        throttle.done("203.0.113.7", failed=False)  # given back
        throttle.admit("203.0.113.7")
        throttle.done("203.0.113.7", failed=True)
        self.assertRaises(HubError, throttle.admit, "203.0.113.7")
        clock.advance(60)
        for _ in range(10):
            throttle.admit("203.0.113.7")  # a check in progress holds a try
        self.assertRaises(HubError, throttle.admit, "203.0.113.7")

    def test_addresses_remembered_are_bounded(self) -> None:
        throttle = LoginThrottle(Clock(), max_checks=10**6, max_addresses=100)
        for i in range(1000):
            host = f"10.0.{i // 256}.{i % 256}"
            throttle.admit(host)
            throttle.done(host, failed=True)
        self.assertEqual(len(throttle._budgets), 100)
        self.assertIn("10.0.3.231", throttle._budgets)  # the latest are kept


class ThrottledAuthTests(AuthCase):
    """The throttle seen by clients: a flood of guesses does not hold up a real login."""

    def far(self, host: str = "203.0.113.7") -> Conn:
        transport = ConsumerTransport(peerAddress=IPv4Address("TCP", host, 50000))
        return Conn(self.hub, self.factory, transport=lambda **_: transport)  # type: ignore[arg-type]

    def test_guesser_address_refused_unchecked(self) -> None:
        """After ten failures from one address (on any connections), its AUTHs are
        refused at once with rate-limited and how long to wait, unchecked and not
        counted as failures; other addresses log in as usual."""
        checked: list[str] = []

        def counting(f: Any, *args: Any) -> Deferred[Any]:
            checked.append(args[-1])
            return run_now(f, *args)

        self.auth.throttle.max_checks = 100
        self.auth.portal = make_portal(lambda: self.auth.table, counting)
        events = log_events(self)
        guessers = [self.far() for _ in range(10)]
        for guesser in guessers:
            self.assertEqual(guesser.cmd("AUTH bob guess"), "")
        self.assertEqual(len(checked), 10)
        late = self.far()
        self.assertEqual(late.cmd("AUTH bob bob-pw"),
                         "-ERR rate-limited too many failed logins from 203.0.113.7; try again "
                         "in 6 s\r\n")
        self.clock.advance(1)
        for guesser in guessers:
            self.assertTrue(guesser.take().startswith(b"-ERR auth-failed "))
        self.assertEqual(guessers[0].cmd("AUTH bob guess").split()[:2], ["-ERR", "rate-limited"])
        self.assertEqual(len(checked), 10)
        stats = self.hub.stats()
        self.assertEqual((stats["auth_failures"], stats["auth_refused"]), (10, 2))
        self.assertFalse(late.closed)
        refusals = [formatEvent(e) for e in events if "refused unchecked" in e["log_format"]]
        self.assertEqual(refusals, ["203.0.113.7:50000: AUTH refused unchecked: too many failed "
                                    "logins from 203.0.113.7; try again in 6 s"])
        self.assertEqual(self.far("198.51.100.1").cmd("AUTH bob bob-pw"), "+OK bob\r\n")
        self.assertEqual(self.conn().cmd("AUTH bob bob-pw"), "+OK bob\r\n")  # loopback
        self.clock.advance(5)
        self.assertEqual(late.cmd("AUTH bob bob-pw"), "+OK bob\r\n")

    def test_checks_at_once_are_bounded(self) -> None:
        """Past --max-auth-checks checks in progress, an AUTH is answered at once
        with unavailable (not queued behind the others), and the connection stays."""
        waiting: list[Deferred[Any]] = []

        def held(f: Any, *args: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            waiting.append(d)
            return d

        self.auth.throttle.max_checks = 2
        self.auth.portal = make_portal(lambda: self.auth.table, held)
        slow = [self.far(f"198.51.100.{i}") for i in (1, 2)]
        for conn in slow:
            self.assertEqual(conn.cmd("AUTH bob guess"), "")
        real = self.conn()
        self.assertEqual(real.send(b"AUTH bob bob-pw\nPING\n"),
                         b"-ERR unavailable 2 passwords are being checked, the most at once; "
                         b"try again in a moment\r\nPONG\r\n")
        waiting[0].callback(False)
        self.clock.advance(1)
        self.assertTrue(slow[0].take().startswith(b"-ERR auth-failed "))
        self.assertEqual(real.cmd("AUTH bob bob-pw"), "")
        waiting[2].callback(True)
        self.assertEqual(real.take(), b"+OK bob\r\n")
        self.assertEqual(self.hub.stats()["auth_refused"], 1)

    def test_websocket_and_resp_say_why(self) -> None:
        """The JSON door answers a refused auth with its code; RESP with the text."""
        from txpubsub.doors.resp import RespDoorFactory

        from .test_resp import cmd

        self.auth.throttle.max_checks = 0
        ws = WebSocketAuthTests.ws(self)  # type: ignore[arg-type]
        reply = ws.ask({"op": "auth", "user": "bob", "password": "bob-pw", "ref": 1})
        self.assertEqual((reply[0]["ref"], reply[0]["code"]), (1, "unavailable"))
        self.assertEqual(ws.ask({"op": "ping"}), [{"type": "pong"}])
        ws.lose()
        factory = RespDoorFactory(self.hub, "tcp:resp", DoorSettings())
        factory.auth = self.auth
        resp = Conn(self.hub, factory)
        self.assertEqual(resp.send(cmd("AUTH", "bob", "bob-pw") + cmd("PING")),
                         b"-ERR 0 passwords are being checked, the most at once; try again "
                         b"in a moment\r\n-NOAUTH Authentication required.\r\n")


class PermissionTests(AuthCase):
    def test_deny_wins_on_publish(self) -> None:
        """A publish matched by a deny rule is forbidden whatever the allow rules."""
        conn = self.alice()
        self.assertTrue(conn.cmd("PUB chat.announce x").startswith("-ERR forbidden "))
        self.assertTrue(conn.cmd("PUB news.uk x").startswith("-ERR forbidden "))
        self.assertEqual(conn.cmd("PUB chat.lobby x"), "+OK 1\r\n")

    def test_sub_must_be_covered(self) -> None:
        """A pattern is covered only if every channel it matches is allowed, none denied."""
        conn = self.bob()
        self.assertTrue(conn.cmd("SUB news.>").startswith("-ERR forbidden "))
        self.assertEqual(conn.cmd("SUB news.uk"), "+OK subscribed news.uk 0\r\n")
        alice = self.alice()
        self.assertTrue(alice.cmd("SUB chat.>").startswith("-ERR forbidden "))  # chat.secret
        self.assertTrue(alice.cmd("SUB chat.secret").startswith("-ERR forbidden "))
        self.assertEqual(alice.cmd("SUB chat.lobby.>"), "+OK subscribed chat.lobby.> 0\r\n")
        self.assertEqual(alice.cmd("SUB news.>"), "+OK subscribed news.> 0\r\n")
        self.assertTrue(alice.cmd("SUB >").startswith("-ERR forbidden "))
        self.assertTrue(alice.cmd("SUB $sys.time").startswith("-ERR forbidden "))

    def test_forbidden_publish_reaches_nobody(self) -> None:
        alice = self.alice()
        alice.cmd("SUB news.>")
        bob = self.bob()
        self.assertTrue(bob.cmd("PUB news.fr x").startswith("-ERR forbidden "))
        self.assertEqual(alice.take(), b"")
        self.assertEqual(self.hub.channel("news.fr"), None)

    def test_create_needs_publish(self) -> None:
        bob = self.bob()
        self.assertTrue(bob.cmd("CREATE chat.lobby").startswith("-ERR forbidden "))
        self.assertEqual(bob.cmd("CREATE news.uk"), "+OK created news.uk\r\n")

    def test_history_and_replay_need_subscribe(self) -> None:
        alice = self.alice()
        alice.cmd("PUB chat.lobby one")
        alice.cmd("PUB chat.x two")
        bob = self.bob()
        self.assertEqual(bob.cmd("HISTORY chat.lobby"), "MSG chat.lobby 1 c1 one\r\n+OK 1\r\n")
        self.assertTrue(bob.cmd("HISTORY chat.x").startswith("-ERR forbidden "))
        self.assertTrue(bob.cmd("SUB chat.x last=5").startswith("-ERR forbidden "))
        self.assertTrue(bob.cmd("SUB chat.x since=0").startswith("-ERR forbidden "))
        self.assertEqual(bob.cmd("SUB chat.lobby last=5"),
                         "MSG chat.lobby 1 c1 one\r\n+OK subscribed chat.lobby 1\r\n")

    def test_direct_messages_need_inbox_rule(self) -> None:
        """PUB @name needs a publish rule matching @name; every inbox is received."""
        alice = self.alice()
        self.assertEqual(alice.cmd("NAME alice"), "+OK alice\r\n")
        bob = self.bob()
        self.assertEqual(bob.cmd("NAME bob"), "+OK bob\r\n")
        self.assertEqual(alice.cmd("PUB @bob hello"), "+OK 1\r\n")
        self.assertEqual(bob.take(), b"MSG @bob 1 alice hello\r\n")
        self.assertTrue(bob.cmd("PUB @alice hi").startswith("-ERR forbidden "))

    def test_inbox_deny_rule_holds_for_a_client_id(self) -> None:
        """deny_publish = ["@bob"] stops direct messages to the client named bob,
        and to the user bob, also when they are sent to its client id."""
        self.write(USERS + f"""
[users.dave]
password = "{cheap("dave")}"
publish = ["@*"]
deny_publish = ["@bob"]
""")
        self.assertIsNone(self.auth.reload())
        bob = self.bob()
        dave = self.conn("dave", "dave")
        self.assertTrue(dave.cmd("PUB @c1 x").startswith("-ERR forbidden "))  # the user bob
        self.assertEqual(bob.cmd("NAME bob"), "+OK bob\r\n")
        self.assertTrue(dave.cmd("PUB @bob x").startswith("-ERR forbidden "))
        self.assertTrue(dave.cmd("PUB @c1 x").startswith("-ERR forbidden "))
        self.assertEqual(bob.take(), b"")
        alice = self.alice()
        self.assertEqual(dave.cmd("PUB @c3 hi"), "+OK 1\r\n")
        self.assertEqual(alice.take(), b"MSG @c3 1 c2 hi\r\n")

    def test_user_without_rules(self) -> None:
        """A user with no rules may publish, subscribe and read nowhere; the rest works."""
        carol = self.conn("carol", "carol")
        for line in ("PUB news.uk x", "SUB news.uk", "CREATE news.x", "HISTORY news.uk"):
            self.assertTrue(carol.cmd(line).startswith("-ERR forbidden "), line)
        self.assertEqual(carol.cmd("NAME carol"), "+OK carol\r\n")
        self.assertEqual(carol.cmd("QUIET on"), "+OK quiet on\r\n")
        self.assertRegex(carol.cmd("LIST"), r"\+OK \d+\r\n$")
        self.assertTrue(carol.cmd("WHO").endswith("+OK 1\r\n"))

    def test_user_names_are_reserved(self) -> None:
        """NAME may not take another user's user name; its own is fine."""
        bob = self.bob()
        self.assertTrue(bob.cmd("NAME alice").startswith("-ERR name-taken "))
        alice = self.alice()
        self.assertEqual(alice.cmd("NAME alice"), "+OK alice\r\n")
        self.assertEqual(alice.cmd("NAME someone"), "+OK someone\r\n")
        self.assertTrue(alice.cmd("NAME bob").startswith("-ERR name-taken "))


class AnonymousTests(AuthCase):
    extra = ANONYMOUS

    def test_anonymous_rules(self) -> None:
        """With [anonymous], INFO says auth_required false and clients have its rules."""
        conn = self.conn()
        self.assertIs(json.loads(conn.greeting[5:])["auth_required"], False)
        self.assertEqual(conn.cmd("SUB news.>"), "+OK subscribed news.> 0\r\n")
        self.assertEqual(conn.cmd("PUB news.anon x"), "MSG news.anon 1 c1 x\r\n+OK 1\r\n")
        self.assertTrue(conn.cmd("PUB news.uk x").startswith("-ERR forbidden "))
        self.assertTrue(conn.cmd("NAME alice").startswith("-ERR name-taken "))

    def test_no_timeout(self) -> None:
        conn = self.conn()
        self.clock.advance(100)
        self.assertFalse(conn.closed)

    def test_auth_from_anonymous(self) -> None:
        """An anonymous client may AUTH and then has the user's rules."""
        conn = self.conn()
        self.assertTrue(conn.cmd("PUB chat.x hi").startswith("-ERR forbidden "))
        self.assertEqual(conn.cmd("AUTH alice alice pw with spaces"), "+OK alice\r\n")
        self.assertEqual(conn.cmd("PUB chat.x hi"), "+OK 1\r\n")


class ReloadTests(AuthCase):
    def lifecycle(self) -> Lifecycle:
        return Lifecycle(self.clock, self.hub, [], handle_signals=False, users=self.auth)

    def test_reload_changes_rules_of_connected_clients(self) -> None:
        """After RELOAD a connected client keeps its session and has the new rules;
        a subscription the new rules do not cover goes, with DROP."""
        bob = self.bob()
        bob.cmd("SUB news.uk")
        bob.cmd("SUB chat.lobby")
        self.write(USERS.replace('subscribe = ["news.uk", "chat.lobby"]',
                                 'subscribe = ["news.>"]')
                   .replace('publish = ["news.uk"]', 'publish = ["news.fr"]'))
        self.assertEqual(self.lifecycle().reload(), (1, 0, ""))
        self.assertEqual(bob.take(), b"DROP chat.lobby\r\n")
        self.assertEqual(bob.cmd("SUB news.>"), "+OK subscribed news.> 0\r\n")
        self.assertTrue(bob.cmd("PUB news.uk x").startswith("-ERR forbidden "))
        self.assertEqual(bob.cmd("PUB news.fr x"), "MSG news.fr 1 c1 x\r\n+OK 1\r\n")

    def test_reload_takes_a_new_users_name_from_whoever_held_it(self) -> None:
        """A name taken before RELOAD made it a user's name: its holder is kicked,
        so the user's direct messages stop reaching it and the user can take it
        (found in review)."""
        bob = self.bob()
        self.assertEqual(bob.cmd("NAME dave"), "+OK dave\r\n")
        self.write(USERS + f'\n[users.dave]\npassword = "{cheap("dave")}"\n')
        self.assertEqual(self.lifecycle().reload(), (1, 0, ""))
        self.assertEqual(bob.take(), b"BYE kicked dave now belongs to a user\r\n")
        bob.lose()
        dave = self.conn("dave", "dave")
        self.assertEqual(dave.cmd("NAME dave"), "+OK dave\r\n")

    def test_users_file_open_to_others_is_said(self) -> None:
        """A users file other users may read gets a warning at start and reload."""
        os.chmod(self.path, 0o640)
        events = log_events(self)
        Authenticator.from_file(self.hub, self.path)
        self.assertEqual([e for e in events if "open to other users" in e["log_format"]], [])
        os.chmod(self.path, 0o644)
        Authenticator.from_file(self.hub, self.path).reload()
        said = [formatEvent(e) for e in events if "open to other users" in e["log_format"]]
        self.assertEqual(said, [f"users file {self.path} is open to other users of this "
                                f"machine (mode 0644): chmod o-rwx {self.path}"] * 2)

    def test_bad_file_keeps_old_rules(self) -> None:
        """A users file that cannot be used keeps the old rules and says why."""
        bob = self.bob()
        self.write(USERS + "\n[users.dave]\npublish = [\"bad..channel\"]\n")
        done, failed, why = self.lifecycle().reload()
        self.assertEqual((done, failed), (0, 1))
        self.assertIn("[users.dave]", why)
        self.assertEqual(bob.cmd("PUB news.uk x"), "+OK 1\r\n")

    def test_admin_reload_reply(self) -> None:
        admin = AdminFactory(self.hub, lambda grace: None,
                             self.lifecycle().reload).buildProtocol(None)
        from twisted.internet.testing import StringTransport

        transport = StringTransport()
        admin.makeConnection(transport)
        admin.dataReceived(b"RELOAD\r\n")
        self.assertEqual(transport.value(), b"+OK reloaded 1 failed 0\r\n")
        transport.clear()
        self.write("[users")
        admin.dataReceived(b"RELOAD\r\n")
        self.assertRegex(transport.value().decode(),
                         r"^\+OK reloaded 0 failed 1; users file not reloaded, old rules "
                         r"kept: .*users.toml: not valid TOML: .*\r\n$")

    def test_kick_by_user(self) -> None:
        """Admin KICK user:<user> closes every connection of that user."""
        from twisted.internet.testing import StringTransport

        first, second, bob = self.alice(), self.alice(), self.bob()
        admin = AdminFactory(self.hub, lambda grace: None).buildProtocol(None)
        transport = StringTransport()
        admin.makeConnection(transport)
        admin.dataReceived(b"KICK user:alice new password\r\nKICK user:zed\r\n")
        self.assertEqual(transport.value(), b"+OK kicked c1 c2\r\n"
                                            b"-ERR no-such-client no client is user zed\r\n")
        self.assertTrue(first.take().endswith(b"BYE kicked new password\r\n"))
        self.assertTrue(second.closed)
        self.assertFalse(bob.closed)

    def test_user_removed(self) -> None:
        """A user taken out of the file is let go of (as Redis's ACL DELUSER and
        NATS's reload do), with nothing before its BYE; a password change
        keeps sessions."""
        bob = self.bob()
        bob.cmd("SUB news.uk")
        alice = self.alice()
        self.write(USERS.split("[users.bob]")[0].replace(ALICE, cheap("new")))
        self.lifecycle().reload()
        self.assertEqual(bob.take(), b"BYE kicked user bob was removed\r\n")
        self.assertTrue(bob.closed)
        self.assertEqual(alice.cmd("PUB chat.x hi"), "+OK 1\r\n")

    def test_anonymous_rules_taken_away(self) -> None:
        """A reload without [anonymous]: connected anonymous clients must AUTH now,
        within --auth-timeout of the reload; a user's connection is not concerned."""
        self.write(USERS + ANONYMOUS)
        self.lifecycle().reload()
        anonymous, other, bob = self.conn(), self.conn(), self.bob()
        self.assertEqual(anonymous.cmd("LIST"), "+OK 0\r\n")
        self.clock.advance(30)
        self.write(USERS)
        self.lifecycle().reload()
        self.assertEqual(anonymous.cmd("LIST"),
                         "-ERR auth-required AUTH <user> <password> first\r\n")
        self.assertEqual(other.cmd("AUTH bob bob-pw"), "+OK bob\r\n")
        self.clock.advance(10)
        self.assertEqual(anonymous.take(),
                         b"BYE auth-timeout not authenticated within 10 seconds\r\n")
        self.assertFalse(other.closed or bob.closed)

    def test_anonymous_rules_given(self) -> None:
        """A reload that adds [anonymous] lets clients waiting to AUTH in, with
        those rules, and their timeout stops."""
        waiting = self.conn()
        self.write(USERS + ANONYMOUS)
        self.lifecycle().reload()
        self.assertEqual(waiting.cmd("SUB news.uk"), "+OK subscribed news.uk 0\r\n")
        self.clock.advance(60)
        self.assertFalse(waiting.closed)


class ProtectedModeTests(SynchronousTestCase):
    def conn(self, transport: Any, **settings: Any) -> Conn:
        return Conn(make_hub(), transport=transport, **settings)

    def test_far_peer_refused(self) -> None:
        """Without --users a peer from another machine gets BYE protected-mode, with how."""
        conn = self.conn(FarTransport, protected=True)
        self.assertTrue(conn.greeting.startswith(b"BYE protected-mode "), conn.greeting)
        self.assertIn(b"--users", conn.greeting)
        self.assertIn(b"--allow-anonymous", conn.greeting)
        self.assertTrue(conn.closed)

    def test_refusals_logged_once_per_address_per_interval(self) -> None:
        """A scan does not flood the log: one line per address per minute (at most
        BURST a minute in all), the rest counted in one summary line a minute later."""
        events = log_events(self)
        clock = Clock()
        hub = make_hub(clock)
        hub.refusals.burst = 3

        def connect(host: str, port: int) -> None:
            address = (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)
            conn = Conn(hub, transport=lambda **_: ConsumerTransport(peerAddress=address),  # type: ignore[arg-type]
                        protected=True)
            self.assertTrue(conn.greeting.startswith(b"BYE protected-mode "))

        def said() -> list[str]:
            lines = [formatEvent(e) for e in events]
            del events[:]
            return lines

        for port in range(1000, 1050):
            connect("203.0.113.7", port)
        connect("198.51.100.1", 1)
        connect("2001:db8::1", 1)
        connect("198.51.100.2", 1)  # past the burst of 3 lines
        lines = said()
        self.assertEqual(len(lines), 3, lines)
        self.assertTrue(lines[0].startswith("refused 203.0.113.7:1000 (tcp:test): protected "
                                            "mode: this server has no --users"), lines[0])
        self.assertIn("refused 198.51.100.1:1 ", lines[1])
        self.assertIn("refused [2001:db8::1]:1 ", lines[2])
        clock.advance(59)
        self.assertEqual(said(), [])
        clock.advance(1)
        self.assertEqual(said(), ["50 more refusals not logged in the last 60 s: protected mode "
                                  "50 from 2 addresses"])
        connect("203.0.113.7", 2000)  # a new interval: logged again
        self.assertEqual(len(said()), 1)
        clock.advance(120)
        self.assertEqual(said(), [])  # nothing left out, no summary

    def test_local_peer_let_in(self) -> None:
        conn = self.conn(None, protected=True)
        self.assertTrue(conn.greeting.startswith(b"INFO "))

    def test_allow_anonymous(self) -> None:
        conn = self.conn(FarTransport, protected=False)
        self.assertTrue(conn.greeting.startswith(b"INFO "))

    def test_local_addresses(self) -> None:
        self.assertTrue(is_local(IPv4Address("TCP", "127.0.0.1", 1)))
        self.assertTrue(is_local(IPv4Address("TCP", "127.8.9.10", 1)))
        self.assertTrue(is_local(IPv6Address("TCP", "::1", 1)))
        self.assertTrue(is_local(IPv6Address("TCP", "::ffff:127.0.0.1", 1)))
        self.assertTrue(is_local(UNIXAddress(b"/tmp/x.sock")))
        self.assertFalse(is_local(IPv4Address("TCP", "10.0.0.1", 1)))
        self.assertFalse(is_local(IPv6Address("TCP", "fe80::1%eth0", 1)))


class CertificateUserTests(AuthCase):
    def test_certificate_name_is_a_user(self) -> None:
        """A verified certificate whose name is a user of the file is that user."""
        self.assertEqual(self.auth.certificate_user("alice").name, "alice")  # type: ignore[union-attr]
        self.assertIsNone(self.auth.certificate_user("zed"))

    def test_certificate_name_must_be_a_user(self) -> None:
        """With --users a certificate's name is taken only if it is a user (whose
        name the users file reserves); the user alice may still NAME alice after
        AUTH by password, though her certificate has carried it."""
        alice_cert = self.conn()
        client = self.hub.find_client("c1")
        assert client is not None
        with self.assertRaises(HubError) as refused:
            self.hub.claim_name(client, "zed")
        self.assertEqual(refused.exception.code, "auth-failed")
        self.hub.claim_name(client, "alice")
        alice_cert.lose()
        self.assertTrue(self.bob().cmd("NAME alice").startswith("-ERR name-taken alice is "
                                                                "reserved for the user"))
        self.assertEqual(self.alice().cmd("NAME alice"), "+OK alice\r\n")

    def test_certificate_names_remembered_are_bounded(self) -> None:
        from txpubsub.core import registry

        self.patch(registry, "MAX_CERTIFICATE_NAMES", 3)
        names = self.hub.registry
        for name in ("a", "b", "c", "a", "d"):
            names.remember_certificate_name(name)
        self.assertEqual(list(names.certificate_names), ["c", "a", "d"])

    def test_certificate_user_greeting(self) -> None:
        """A client named by its certificate after a user is that user from the start:
        INFO has "user", no AUTH is needed, no timeout runs."""
        hub = self.hub
        real_attach = hub.attach

        def attach(*args: Any, **kwargs: Any) -> Any:
            client = real_attach(*args, **kwargs)
            hub.claim_name(client, "alice")
            return client

        hub.attach = attach  # type: ignore[method-assign]
        conn = Conn(hub, self.factory)
        info = json.loads(conn.greeting[5:])
        self.assertEqual((info["user"], info["name"], info["auth_required"]),
                         ("alice", "alice", False))
        self.assertEqual(conn.cmd("PUB chat.x hi"), "+OK 1\r\n")
        self.clock.advance(60)
        self.assertFalse(conn.closed)


class UsersFileTests(SynchronousTestCase):
    def test_complete_example(self) -> None:
        table = parse_users(USERS + ANONYMOUS)
        self.assertEqual(sorted(table.users), ["alice", "bob", "carol"])
        self.assertEqual(table.users["alice"].rules.deny_publish, ("chat.announce",))
        self.assertEqual(table.anonymous.subscribe, ("news.>",))  # type: ignore[union-attr]
        self.assertFalse(table.rules_for("nobody").may_publish("news.uk"))

    def test_mistakes_are_named(self) -> None:
        for text, expected in [
            ("[users", "not valid TOML"),
            ("[users.alice]\npublsh = []", "unknown key 'publsh'"),
            ("[users.alice]\npublish = ['a..b']", "[users.alice]: bad channel name 'a..b'"),
            ("[users.alice]\npublish = 'a'", "publish must be a list"),
            ("[users.alice]\npassword = 'secret'", "not a txpubsub passwd line"),
            ("[users.c12]\n", "a user name must be a client name"),
            ("[other]\n", "unknown section [other]"),
            ("[users.alice]\npassword = '$scrypt$ln=30,r=8,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA'",
             "out of range"),
        ]:
            with self.assertRaises(UsersFileError) as caught:
                parse_users(text, "users.toml")
            self.assertIn(expected, str(caught.exception), text)

    def test_docs_example(self) -> None:
        """The complete example in docs/auth.md is a users file the server takes."""
        import re

        path = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "auth.md")
        with open(path) as f:
            found = re.search(r"```toml\n(.*?)```", f.read(), re.S)
        assert found is not None
        table = parse_users(found.group(1), "docs/auth.md")
        self.assertEqual(sorted(table.users), ["alice", "auditor", "newsroom", "sensor-7"])
        self.assertFalse(table.users["alice"].rules.may_subscribe("chat.>"))
        self.assertIsNone(table.users["sensor-7"].password)

    def test_missing_file(self) -> None:
        with self.assertRaises(UsersFileError) as caught:
            load_users("/nonexistent/users.toml")
        self.assertIn("cannot read", str(caught.exception))


class PasswdTests(SynchronousTestCase):
    def test_hash_round_trip(self) -> None:
        stored = cheap("pw")
        self.assertTrue(stored.startswith("$scrypt$ln=4,r=1,p=1$"))
        self.assertTrue(verify_password(stored, "pw"))
        self.assertFalse(verify_password(stored, "pW"))
        self.assertNotEqual(cheap("pw"), stored)  # salted

    def test_python_scrypt(self) -> None:
        """The scrypt PyPy uses (its hashlib has none) is RFC 7914's and hashlib's."""
        from txpubsub.auth.passwords import scrypt_python

        self.assertEqual(scrypt_python(b"", b"", 16, 1, 1, 64).hex(),
                         "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442"
                         "fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906")
        if hasattr(__import__("hashlib"), "scrypt"):
            import hashlib

            self.assertEqual(scrypt_python(b"x y", b"saltsalt", 32, 3, 2, 33),
                             hashlib.scrypt(b"x y", salt=b"saltsalt", n=32, r=3, p=2, dklen=33))

    def test_passwd_command(self) -> None:
        """`txpubsub passwd` reads a piped password and prints one line to paste."""
        result = subprocess.run(
            [sys.executable, "-m", "txpubsub.cli.main", "passwd", "--cost", "10"],
            input="correct horse battery\n", capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        line = result.stdout
        self.assertEqual(line.count("\n"), 1)
        self.assertTrue(verify_password(line.strip(), "correct horse battery"))
        table = parse_users(f'[users.alice]\npassword = "{line.strip()}"\n')
        self.assertIn("alice", table.users)

    def test_passwd_empty(self) -> None:
        result = subprocess.run([sys.executable, "-m", "txpubsub.cli.main", "passwd"],
                                input="", capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        self.assertIn("empty", result.stderr)
        self.assertEqual(result.stdout, "")


class NoUsersTests(SynchronousTestCase):
    def test_auth_without_users(self) -> None:
        """Without --users, AUTH is refused and says why; nothing else changes."""
        conn = Conn(make_hub())
        self.assertTrue(conn.cmd("AUTH a b").startswith("-ERR auth-failed this server has no "))
        self.assertEqual(conn.cmd("PUB x y"), "+OK 1\r\n")

    def test_hub_skips_authorizer_without_users(self) -> None:
        hub: Hub = make_hub()
        self.assertFalse(hub._restricted)


class WebSocketAuthTests(AuthCase):
    """The same rules through the JSON WebSocket door's auth op."""

    def ws(self) -> Any:
        from txpubsub.doors.websocket import JsonDoorFactory, JsonSocketFactory

        from .wsframes import WsConn

        doors = JsonDoorFactory(self.hub, "ws:test", DoorSettings())
        doors.auth = self.auth
        return WsConn(self.hub, factory=JsonSocketFactory(doors))

    def test_auth_required_then_auth(self) -> None:
        ws = self.ws()
        self.assertIs(ws.greeting[0]["auth_required"], True)
        self.assertEqual(ws.ask({"op": "sub", "pattern": "news.uk", "ref": 1})[0]["code"],
                         "auth-required")
        self.assertEqual(ws.ask({"op": "ping", "ref": 2}), [{"type": "pong", "ref": 2}])
        self.assertEqual(ws.ask({"op": "auth", "user": "bob", "password": "bob-pw", "ref": 3}),
                         [{"type": "ok", "ref": 3, "user": "bob"}])
        self.assertEqual(ws.ask({"op": "pub", "channel": "news.uk", "data": "x", "ref": 4}),
                         [{"type": "ok", "ref": 4, "id": 1}])
        self.assertEqual(ws.ask({"op": "pub", "channel": "news.fr", "data": "x"})[0]["code"],
                         "forbidden")
        ws.lose()

    def test_failure_delay_and_requests_behind_it(self) -> None:
        """A wrong password is answered a second later; requests sent behind it wait."""
        ws = self.ws()
        self.assertEqual(ws.ask({"op": "auth", "user": "bob", "password": "no", "ref": 1}), [])
        self.assertEqual(ws.ask({"op": "ping", "ref": 2}), [])
        self.clock.advance(1)
        self.assertEqual(ws.take(), [
            {"type": "err", "ref": 1, "code": "auth-failed", "text": "wrong user or password"},
            {"type": "pong", "ref": 2}])
        ws.lose()

    def test_requests_behind_an_auth_are_not_read_until_it_is_answered(self) -> None:
        """Frames pipelined behind an auth wait, unread (the socket is paused), until
        it is answered: guesses are checked one at a time, a second apart, and what
        follows a right password runs as that user, its replies in order."""
        from .wsframes import client_frame

        ws = self.ws()
        wrong = {"op": "auth", "user": "bob", "password": "no"}
        requests = [dict(wrong, ref=1), dict(wrong, ref=2),
                    {"op": "auth", "user": "bob", "password": "bob-pw", "ref": 3},
                    {"op": "pub", "channel": "news.uk", "data": "x", "ref": 4}]
        ws.proto.dataReceived(b"".join(client_frame(json.dumps(r).encode()) for r in requests))
        self.assertEqual(ws.take(), [])
        self.assertEqual(ws.transport.producerState, "paused")
        self.assertEqual(self.hub.stats()["auth_failures"], 1)
        self.clock.advance(1)
        self.assertEqual([r["ref"] for r in ws.take()], [1])
        self.assertEqual(ws.transport.producerState, "paused")
        self.assertEqual(self.hub.stats()["auth_failures"], 2)
        self.clock.advance(1)
        self.assertEqual(ws.take(), [
            {"type": "err", "ref": 2, "code": "auth-failed", "text": "wrong user or password"},
            {"type": "ok", "ref": 3, "user": "bob"},
            {"type": "ok", "ref": 4, "id": 1}])
        self.assertEqual(ws.transport.producerState, "producing")
        ws.lose()

    def test_requests_behind_an_auth_checked_later_answered_after_it(self) -> None:
        """An auth checked on the thread (answered later, as in a real server):
        the requests behind it are answered after its ok, and the messages they
        cause come after it too, not ahead of the replies."""
        from .wsframes import client_frame

        checks = AuthRequiredTests.held_checks(self)  # type: ignore[arg-type]
        ws = self.ws()
        requests = [{"op": "auth", "user": "bob", "password": "bob-pw", "ref": 1},
                    {"op": "sub", "pattern": "news.uk", "ref": 2},
                    {"op": "pub", "channel": "news.uk", "data": "x", "ref": 3}]
        ws.proto.dataReceived(b"".join(client_frame(json.dumps(r).encode()) for r in requests))
        [(d, check, args)] = checks
        d.callback(check(*args))
        self.assertEqual([(r["type"], r.get("ref")) for r in ws.take()],
                         [("ok", 1), ("ok", 2), ("msg", None), ("ok", 3)])
        ws.lose()

    def test_pacing_does_not_read_past_a_pending_auth(self) -> None:
        """The end of a publisher's stall does not resume reading while an auth
        is checked; the auth's answer does not resume it during a stall."""
        ws = self.ws()
        session = ws.proto.session
        ws.ask({"op": "auth", "user": "bob", "password": "no", "ref": 1})
        self.assertTrue(session.pace())
        self.clock.advance(0.5)
        self.assertEqual(ws.transport.producerState, "paused")
        self.clock.advance(0.5)
        self.assertEqual(ws.take()[0]["code"], "auth-failed")
        self.assertEqual(ws.transport.producerState, "producing")
        ws.ask({"op": "auth", "user": "bob", "password": "no", "ref": 2})
        self.clock.advance(0.999)
        self.assertTrue(session.pace())
        self.clock.advance(0.001)
        self.assertEqual(ws.take()[0]["code"], "auth-failed")
        self.assertEqual(ws.transport.producerState, "paused")  # the stall's
        self.clock.advance(0.01)
        self.assertEqual(ws.transport.producerState, "producing")
        ws.lose()

    def test_frames_before_auth_are_small(self) -> None:
        """Until it has authenticated, a client's frames are at most 16 KiB (as
        Redis's unauthenticated input): past it, closed 1009 too-large."""
        ws = self.ws()
        ws.ask({"op": "auth", "user": "bob", "password": "bob-pw"})
        ok = ws.ask({"op": "pub", "channel": "news.uk", "data": "x" * 20000, "ref": 1})
        self.assertEqual(ok, [{"type": "ok", "ref": 1, "id": 1}])
        stranger = self.ws()
        stranger.ask({"op": "ping", "data": "x" * 16000})
        self.assertFalse(stranger.closed)
        stranger.send_frame(json.dumps({"op": "ping", "data": "x" * 17000}).encode())
        frames = stranger.frames()
        self.assertEqual((frames[-1][0], int.from_bytes(frames[-1][1][:2], "big"),
                          frames[-1][1][2:]), (8, 1009, b"too-large"))
        self.assertTrue(stranger.closed)
        ws.lose()
        stranger.lose()

    def test_lone_surrogates_are_bad_args(self) -> None:
        """JSON may escape a lone surrogate ("\\ud800"): an auth carrying one is a
        clear bad-args, not an internal error with a traceback in the log; nor
        can one make the Authenticator raise."""
        ws = self.ws()
        for user, password in (("bob", "\ud800"), ("\udfff", "x")):
            reply = ws.ask({"op": "auth", "user": user, "password": password, "ref": 1})
            self.assertEqual((reply[0]["code"], reply[0]["ref"]), ("bad-args", 1))
        self.assertEqual(self.flushLoggedErrors(), [])
        failed: list[Any] = []
        self.auth.authenticate("bob", "\ud800").addErrback(failed.append)
        self.assertTrue(failed[0].check(UnauthorizedLogin))
        ws.lose()

    def test_third_failure_and_timeout_close(self) -> None:
        ws = self.ws()
        for _ in range(3):
            ws.ask({"op": "auth", "user": "bob", "password": "no"})
            self.clock.advance(1)
        frames = ws.frames()
        self.assertEqual(frames[-1][0], 8)
        self.assertEqual(frames[-1][1][2:], b"auth-failed")
        other = self.ws()
        self.clock.advance(10)
        frames = other.frames()
        self.assertEqual((int.from_bytes(frames[-1][1][:2], "big"), frames[-1][1][2:]),
                         (1008, b"auth-timeout"))
        ws.lose()
        other.lose()


class RawDoorTests(AuthCase):
    extra = ANONYMOUS

    def test_ingest_follows_the_anonymous_rules(self) -> None:
        """Ingest lines are anonymous publishes: refused ones reach no subscriber."""
        from txpubsub.doors.feeds import IngestFactory

        reader = self.conn()
        reader.cmd("SUB news.>")
        ingest = Conn(self.hub, IngestFactory("news.anon", self.hub, "tcp:ingest"))
        ingest.send(b"first\n")
        self.assertEqual(reader.take(), b"MSG news.anon 1 c2 first\r\n")
        self.write(USERS + ANONYMOUS.replace('publish = ["news.anon"]', ""))
        Lifecycle(self.clock, self.hub, [], handle_signals=False, users=self.auth).reload()
        ingest.send(b"second\n")
        self.assertEqual(reader.take(), b"")
        self.assertFalse(ingest.closed)

    def test_feed_refused_after_reload(self) -> None:
        """A new feed connection whose channel the anonymous rules no longer cover is
        closed; a line subscriber's forbidden SUB receives nothing."""
        from txpubsub.doors.feeds import FeedFactory

        self.write(USERS + ANONYMOUS.replace('subscribe = ["news.>"]', 'subscribe = ["x"]'))
        Lifecycle(self.clock, self.hub, [], handle_signals=False, users=self.auth).reload()
        feed = Conn(self.hub, FeedFactory("news.>", self.hub, "tcp:feed"))
        self.assertTrue(feed.closed)
        reader = self.conn()
        self.assertTrue(reader.cmd("SUB news.>").startswith("-ERR forbidden "))
        self.alice().cmd("PUB news.uk x")  # alice may not; bob may
        self.bob().cmd("PUB news.uk x")
        self.assertEqual(reader.take(), b"")
