"""The installed `txpubsub` command, run in subprocesses against a real server."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from txpubsub.cli.connect import Server, parse_server
from txpubsub.cli.main import SUBCOMMANDS, build_parser, parse
from txpubsub.core.hub import Hub
from txpubsub.doors.admin import AdminFactory
from txpubsub.server.listeners import ListenerService
from txpubsub.server.tap import unix_endpoint

from .helpers import kept
from .netclient import WAIT, connect, serve


def command() -> str:
    path = os.path.join(os.path.dirname(sys.executable), "txpubsub")
    return path if os.path.exists(path) else shutil.which("txpubsub") or "txpubsub"


def usage_error(*argv: str, env: dict[str, str] | None = None) -> str:
    """Parse argv as the command would; it must be a usage error (exit 2): its message."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parse(list(argv), env or {})
        except SystemExit as e:
            if e.code == 2:
                return err.getvalue()
            raise AssertionError(f"{argv}: exit {e.code}, not 2: {err.getvalue()}") from None
    raise AssertionError(f"{argv} parsed without a usage error")


def help_text(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        parse([*argv, "--help"], {})
    return out.getvalue()


class ArgumentTests(SynchronousTestCase):
    """What the command refuses before connecting, and how it reads its arguments."""

    def test_bad_numbers_are_usage_errors(self) -> None:
        """--timeout -1, --last -5, --count 0: exit 2 naming the option, no connection."""
        self.assertIn("argument --timeout: expected a number of seconds above 0, not '-1'",
                      usage_error("sub", "news", "--timeout", "-1"))
        self.assertIn("argument --last: expected a whole number (0 or more), not '-5'",
                      usage_error("sub", "news", "--last", "-5"))
        self.assertIn("argument -c/--count: expected a whole number above 0, not '0'",
                      usage_error("sub", "news", "--count", "0"))
        self.assertIn("argument --connect-timeout:",
                      usage_error("pub", "news", "x", "--connect-timeout", "nan"))
        self.assertIn("argument --repeat:", usage_error("pub", "news", "x", "--repeat", "0"))

    def test_user_without_a_password_to_hand(self) -> None:
        """--user with no $TXPUBSUB_PASSWORD and no terminal to ask on: exit 2 saying
        what to set (never a prompt read from the message stdin)."""
        self.patch(sys, "stdin", io.StringIO("secret\n"))
        self.assertIn("--user needs a password: set $TXPUBSUB_PASSWORD",
                      usage_error("pub", "news", "-", "--user", "bob"))
        args = parse(["sub", "news"], {"TXPUBSUB_USER": "bob", "TXPUBSUB_PASSWORD": "pw"})
        self.assertEqual((args.user, args.password), ("bob", "pw"))

    def test_bad_channels_and_names_are_usage_errors(self) -> None:
        """sub a..b, chat a..b and --name 'bad name' are refused by the command itself."""
        self.assertIn("argument PATTERN: bad channel name 'a..b'", usage_error("sub", "a..b"))
        self.assertIn("argument channel: bad channel name 'a..b'", usage_error("chat", "a..b"))
        self.assertIn("argument CHANNEL: bad channel name 'a..b'",
                      usage_error("pub", "a..b", "hi"))
        self.assertIn("argument --name: bad name 'bad name'",
                      usage_error("sub", "news", "--name", "bad name"))
        self.assertIn("argument --name: bad name 'c12'",
                      usage_error("chat", "room", env={"TXPUBSUB_NAME": "c12"}))
        self.assertIn("--last and --since need concrete channels, not 'news.>'",
                      usage_error("sub", "news.>", "--last", "5"))

    def test_the_rest_of_pub_is_the_message(self) -> None:
        """pub news hello world publishes "hello world"; "-hello" is a message, not -h."""
        self.assertEqual(parse(["pub", "news", "hello", "world"], {}).payload, b"hello world")
        self.assertEqual(parse(["pub", "news", "-hello"], {}).payload, b"-hello")
        self.assertEqual(parse(["pub", "news", "--", "-v", "--", "x"], {}).payload,
                         b"-v -- x")
        args = parse(["pub", "-v", "news", "up", "-v", "--repeat=2"], {})
        self.assertEqual((args.payload, args.verbose, args.repeat), (b"up", True, 2))
        self.assertIn("nothing to publish", usage_error("pub", "news"))

    def test_binary_goes_with_stdin(self) -> None:
        """--binary without -, --repeat with -: usage errors, not silently ignored."""
        self.assertIn("--binary goes with -", usage_error("pub", "news", "hi", "--binary"))
        self.assertIn("do not go with -", usage_error("pub", "news", "-", "--repeat", "3"))
        self.assertIn("cannot read /nonexistent: No such file",
                      usage_error("pub", "news", "-f", "/nonexistent"))
        self.assertTrue(parse(["pub", "news", "-", "--binary"], {}).binary)

    def test_each_subcommand_takes_only_its_options(self) -> None:
        """admin --server is refused, and admin and manhole list no client or TLS options."""
        self.assertIn("unrecognized arguments: --server",
                      usage_error("admin", "--server", "tcp:x:1", "STATS"))
        for command in ("admin", "manhole"):
            text = help_text(command)
            for option in ("--server", "--ca", "--cert", "--name", "--tls-name"):
                self.assertNotIn(option, text, command)
        self.assertNotIn("--ca", help_text("bench"))

    def test_every_help_explains_and_shows_examples(self) -> None:
        for command, (module, _) in SUBCOMMANDS.items():
            text = help_text(command)
            self.assertIn(module.DESCRIPTION.split("\n")[0], text)
            self.assertIn("examples:\n  txpubsub " + command, text)
        for command in ("sub", "pub", "chat", "admin", "manhole"):
            self.assertIn("positional arguments:\n  ", help_text(command))
        self.assertIn("TXPUBSUB_SERVER", help_text())

    def test_version(self) -> None:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), self.assertRaises(SystemExit) as e:
            parse(["--version"], {})
        self.assertEqual(e.exception.code, 0)
        self.assertRegex(out.getvalue(), r"^txpubsub \d+\.\d+\.\d+ \(Twisted ")

    def test_server_forms(self) -> None:
        """-s takes HOST:PORT, [::1]:PORT, tls://HOST:PORT, unix:PATH and endpoint strings."""
        self.assertEqual(parse_server("localhost:23400"),
                         Server("localhost:23400", "localhost", 23400))
        self.assertEqual(parse_server("[::1]:23400"), Server("[::1]:23400", "::1", 23400))
        self.assertEqual(parse_server("tls://example.org:23443"),
                         Server("tls://example.org:23443", "example.org", 23443, tls=True))
        self.assertEqual(parse_server("tcp:127.0.0.1:23400"),
                         Server("tcp:127.0.0.1:23400", "127.0.0.1", 23400))
        self.assertEqual(parse_server("tcp6:host=\\:\\:1:port=5"),
                         Server("tcp6:host=\\:\\:1:port=5", "::1", 5))
        self.assertEqual(parse_server("ssl:example.org:23443"),
                         Server("ssl:example.org:23443", "example.org", 23443, tls=True))
        self.assertEqual(parse_server("unix:/run/a.sock").endpoint, "unix:/run/a.sock")
        for bad in ("nonsense", "host:99999", "tcp:h:1:bindAddress=x", "tls://h"):
            self.assertRaises(ValueError, parse_server, bad)
        self.assertIn("argument -s/--server: expected HOST:PORT",
                      usage_error("sub", "news", "-s", "nonsense"))

    def test_environment(self) -> None:
        """TXPUBSUB_SERVER, _NAME, _CA, _CERT and _KEY are the defaults; options win."""
        env = {"TXPUBSUB_SERVER": "tls://example.org:1", "TXPUBSUB_NAME": "alice",
               "TXPUBSUB_CA": "/nonexistent/ca.pem"}
        self.assertIn("cannot read the CA file /nonexistent/ca.pem: No such file",
                      usage_error("sub", "news", env=env))
        parser = build_parser(env)
        args = parser.parse_args(["sub", "news", "--name", "bob"])
        self.assertEqual((args.server.host, args.server.tls, args.name, args.ca),
                         ("example.org", True, "bob", "/nonexistent/ca.pem"))
        self.assertIn("--insecure and --ca contradict",
                      usage_error("sub", "news", "--insecure", env=env))


class Proc(ProcessProtocol):
    """A running command: its output so far, and a Deferred of how it ended."""

    transport: IProcessTransport  # from before connectionMade

    def __init__(self, stdin: bytes | None, close_stdin: bool) -> None:
        self.stdin = stdin
        self.close_stdin = close_stdin
        self.out = self.err = b""
        self.ended: Deferred[tuple[bytes, bytes, int]] = Deferred()
        self._waiters: list[tuple[Callable[[], bool], Deferred[None]]] = []

    def connectionMade(self) -> None:
        if self.stdin:
            self.transport.write(self.stdin)
        if self.close_stdin:
            self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out += data
        self._check()

    def errReceived(self, data: bytes) -> None:
        self.err += data
        self._check()

    def _check(self) -> None:
        for waiter in list(self._waiters):
            if waiter[0]():
                self._waiters.remove(waiter)
                waiter[1].callback(None)

    def until(self, condition: Callable[[], bool]) -> Deferred[None]:
        """Fires once the condition holds on the output; fails after WAIT seconds."""
        d: Deferred[None] = Deferred()
        self._waiters.append((condition, d))
        self._check()
        return d.addTimeout(WAIT, reactor)

    def processEnded(self, reason) -> None:
        self.ended.callback((self.out, self.err, reason.value.exitCode))

    def kill(self) -> Deferred[object] | None:
        if self.ended.called:
            return None
        self.transport.signalProcess("KILL")
        return self.ended.addBoth(lambda _: None)


class CLITests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.hub = Hub(reactor, epoch="cli")
        _, self.server = serve(self, self.hub)
        self.env = {**os.environ, "TXPUBSUB_SERVER": self.server}

    def run_cli(self, *args: str, stdin: bytes | None = None,
                env: dict[str, str] | None = None) -> Deferred[tuple[bytes, bytes, int]]:
        """Run the command without blocking the reactor that serves it."""
        if stdin is None:
            d = getProcessOutputAndValue(command(), args, env=env or self.env)
        else:
            d = self.spawn(*args, stdin=stdin, env=env).ended
        return d.addTimeout(WAIT * 3, reactor)

    def spawn(self, *args: str, stdin: bytes | None = b"", close_stdin: bool = True,
              env: dict[str, str] | None = None) -> Proc:
        proc = Proc(stdin, close_stdin)
        reactor.spawnProcess(proc, command(), [command(), *args], env=env or self.env)
        self.addCleanup(proc.kill)
        return proc

    async def subscribed(self, channel: str, count: int = 1) -> None:
        """Wait until ``count`` connections subscribe to the channel."""
        for _ in range(int(WAIT / 0.02)):
            if len(self.hub.subscribers_of(channel)) >= count:
                return
            await deferLater(reactor, 0.02)
        self.fail(f"nobody subscribed to {channel}")

    async def test_pub_and_sub(self) -> None:
        """sub prints payloads as they come and exits after --count."""
        sub = self.run_cli("sub", "news.>", "--count", "2")
        await self.subscribed("news.uk")
        self.assertEqual(await self.run_cli("pub", "news.uk", "hello world", "-v"),
                         (b"1\n", b"", 0))
        await self.run_cli("pub", "news.fr", "bonjour")
        out, err, code = await sub
        self.assertEqual((out, err, code), (b"hello world\nbonjour\n", b"", 0))

    async def test_pub_stdin_lines(self) -> None:
        """pub CHANNEL - publishes every stdin line."""
        _out, err, code = await self.run_cli("pub", "logs", "-", stdin=b"one\ntwo\r\nthree\n")
        self.assertEqual(code, 0, err)
        self.assertEqual([m.payload for m in kept(self.hub, "logs")], [b"one", b"two", b"three"])

    async def test_pub_stdin_last_line_and_refusals(self) -> None:
        """A last line without a newline is sent; a refused line is said, exit 1."""
        _, err, code = await self.run_cli("pub", "logs", "-", stdin=b"a\nlast")
        self.assertEqual(code, 0, err)
        self.assertEqual([m.payload for m in kept(self.hub, "logs")], [b"a", b"last"])
        _, err, code = await self.run_cli("pub", "$sys.time", "-", stdin=b"x\n")
        self.assertEqual(code, 1)
        self.assertEqual(err, b"txpubsub: the server refused a line: -ERR forbidden system "
                              b"channels are read-only\n")

    async def test_sub_overlapping_patterns_print_once(self) -> None:
        sub = self.run_cli("sub", "news.uk", "news.>", "--count", "2")
        while len(self.hub.subscribers_of("news.uk")) < 1 or not self.hub._patterns.match(
                "news.uk"):
            await deferLater(reactor, 0.05)
        self.hub.publish("p", "news.uk", b"once")
        self.hub.publish("p", "news.fr", b"other")
        out, err, code = await sub
        self.assertEqual((out, code), (b"once\nother\n", 0), err)

    async def test_sub_name_taken(self) -> None:
        holder = await connect(self.server)
        await holder.ask(b"NAME alice", b"+OK")
        _, err, code = await self.run_cli("sub", "room", "--name", "alice")
        self.assertEqual(code, 1)
        self.assertEqual(err, b"txpubsub: the server refused: -ERR name-taken alice is taken "
                              b"by another client\n")
        await holder.quit()

    async def test_user_logs_in(self) -> None:
        """--user logs in, the password from $TXPUBSUB_PASSWORD: sub and pub work as
        that user on a server with --users; a wrong password is one line, exit 1."""
        from txpubsub.auth.authenticator import Authenticator
        from txpubsub.auth.users import parse_users

        from .test_auth import USERS

        hub = Hub(reactor, epoch="users")
        service, address = serve(self, hub)
        service.factory.auth = Authenticator(hub, parse_users(USERS), failure_delay=0.1)
        env = {**os.environ, "TXPUBSUB_SERVER": address, "TXPUBSUB_PASSWORD": "bob-pw"}
        sub = self.spawn("sub", "news.uk", "--count", "1", "--user", "bob", env=env)
        for _ in range(int(WAIT / 0.02)):
            if hub.subscribers_of("news.uk"):
                break
            await deferLater(reactor, 0.02)
        self.assertEqual(await self.run_cli("pub", "news.uk", "hi", env={
            **env, "TXPUBSUB_USER": "bob"}), (b"", b"", 0))
        self.assertEqual(await sub.ended.addTimeout(WAIT, reactor), (b"hi\n", b"", 0))
        self.assertEqual(await self.run_cli("pub", "news.uk", "x", "--user", "bob", env={
            **env, "TXPUBSUB_PASSWORD": "no"}),
            (b"", b"txpubsub: the server refused: -ERR auth-failed wrong user or password\n",
             1))

    async def test_pub_binary(self) -> None:
        _out, err, code = await self.run_cli("pub", "bin", "-", "--binary", stdin=b"\x00\xff\n")
        self.assertEqual(code, 0, err)
        self.assertEqual(kept(self.hub, "bin")[0].payload, b"\x00\xff\n")

    async def test_sub_replay_json(self) -> None:
        self.hub.publish("someone", "news", b"old")
        out, _, _ = await self.run_cli("sub", "news", "--last", "1", "--count", "1", "--json")
        self.assertEqual(json.loads(out), {"channel": "news", "id": 1, "sender": "someone",
                                           "text": "old"})

    async def test_errors_are_one_line(self) -> None:
        """A refused command and an unreachable server: one line, exit 1."""
        _, err, code = await self.run_cli("pub", "$sys.time", "x")
        self.assertEqual(code, 1)
        self.assertEqual(err, b"txpubsub: the server refused: -ERR forbidden system channels "
                              b"are read-only\n")
        _out, err, code = await self.run_cli(
            "pub", "x", "y", env={**os.environ, "TXPUBSUB_SERVER": "tcp:127.0.0.1:1"})
        self.assertEqual(code, 1)
        self.assertTrue(err.startswith(b"txpubsub: cannot connect to tcp:127.0.0.1:1: "), err)
        self.assertEqual(err.count(b"\n"), 1)

    async def test_admin(self) -> None:
        path = self.admin_socket()
        out, err, code = await self.run_cli("admin", path, "STATS")
        self.assertEqual(code, 0, err)
        self.assertIn(b"STAT clients 0\n", out)
        self.assertTrue(out.endswith(b"+OK 16\n"))
        out, err, code = await self.run_cli("admin", path, "KICK", "nobody")
        self.assertEqual((code, err), (1, b"-ERR no-such-client no client nobody\n"))
        out, err, code = await self.run_cli("admin", path, stdin=b"STATS\nHELP\n")
        self.assertEqual(out.count(b"+OK"), 2)

    async def test_bench_smoke(self) -> None:
        """txpubsub bench runs against a server and reports what it measured."""
        out, err, code = await self.run_cli(
            "bench", "--server", self.server, "--subs", "5", "--msgs", "2000", "--json")
        self.assertEqual(code, 0, err)
        result = json.loads(out)
        self.assertEqual((result["deliveries"], result["expected"]), (10000, 10000))
        self.assertGreater(result["deliveries_per_s"], 0)
        out, err, code = await self.run_cli(
            "bench", "--server", self.server, "--subs", "3", "--msgs", "50", "--rate", "200")
        self.assertEqual(code, 0, err)
        self.assertIn(b"latency at 200/s: p50 ", out)

    async def test_bench_for_a_duration(self) -> None:
        """--duration publishes until the time is up, then waits for every delivery."""
        self.hub.max_publish_rate = self.hub.max_publish_bytes_rate = 0  # as benchmarks run
        out, err, code = await self.run_cli(
            "bench", "--server", self.server, "--subs", "4", "--channels", "3",
            "--duration", "0.5", "--json")
        self.assertEqual(code, 0, err)
        result = json.loads(out)
        self.assertGreater(result["published"], 0)
        # 4 subscribers over 3 channels: bench.0 has two, so the count is uneven.
        cycles, left = divmod(result["published"], 3)
        self.assertEqual(result["expected"], cycles * 4 + [0, 2, 3][left])
        self.assertEqual(result["deliveries"], result["expected"])
        self.assertGreaterEqual(result["elapsed_s"], 0.5)

    async def test_bench_slow_rate_is_not_a_stall(self) -> None:
        """Waiting between slow publishes is not the server going quiet."""
        out, err, code = await self.run_cli(
            "bench", "--server", self.server, "--subs", "2", "--msgs", "2", "--rate", "2",
            "--timeout", "0.3", "--json")
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["deliveries"], 4)

    async def test_bench_refuses_endless_durations(self) -> None:
        for duration in ("nan", "inf", "-1"):
            _out, err, code = await self.run_cli(
                "bench", "--server", self.server, "--duration", duration)
            self.assertEqual(code, 1)
            self.assertIn(b"--duration must be a number of seconds", err)

    async def test_chat_without_a_terminal(self) -> None:
        watcher = await connect(self.server)
        await watcher.ask(b"SUB room", b"+OK")
        out, err, code = await self.run_cli(
            "chat", "--name", "bob", "room", stdin=b"hello\n/join other\nthere\n/quit\n")
        self.assertEqual(code, 0, err)
        self.assertIn(b"[room] bob: hello\n", out)
        self.assertIn(b"[other] bob: there\n", out)
        await watcher.wait_line(b"MSG room 1 bob hello")
        await watcher.quit()


    async def publish_until_it_ends(self, proc: Any) -> tuple[bytes, int]:
        """Publish on news every 50 ms until ``proc`` ends; its stderr and status."""
        for _ in range(int(WAIT / 0.05)):
            if proc.ended.called:
                break
            self.hub.publish("p", "news", b"more")
            await deferLater(reactor, 0.05)
        _, err, code = await proc.ended.addTimeout(WAIT, reactor)
        return err, code

    async def test_sub_ends_quietly_when_its_reader_goes_away(self) -> None:
        """`txpubsub sub ... | head -1` ends at the next message: status 0, nothing on stderr."""
        proc = self.spawn("sub", "news")
        await self.subscribed("news")
        self.hub.publish("p", "news", b"first")
        await proc.until(lambda: proc.out == b"first\n")
        proc.transport.closeChildFD(1)  # what head does after its line
        err, code = await self.publish_until_it_ends(proc)
        self.assertEqual((err, code), (b"", 0))

    async def test_sub_stops_when_its_output_cannot_be_written(self) -> None:
        """`txpubsub sub news > file` on a full disk: one line saying why, status 1,
        not a traceback per message while it goes on reading (and losing) them."""
        if not os.path.exists("/dev/full"):
            self.skipTest("no /dev/full")
        full = os.open("/dev/full", os.O_WRONLY)
        self.addCleanup(os.close, full)
        proc = Proc(b"", True)
        reactor.spawnProcess(proc, command(), [command(), "sub", "news"], env=self.env,
                             childFDs={0: "w", 1: full, 2: "r"})
        self.addCleanup(proc.kill)
        await self.subscribed("news")
        err, code = await self.publish_until_it_ends(proc)
        self.assertEqual((err, code), (b"txpubsub: cannot write to stdout: No space left on "
                                       b"device\n", 1))

    async def test_pub_v_fails_when_its_id_cannot_be_written(self) -> None:
        """`txpubsub pub -v news hi > file` on a full disk: published, but the id
        was not written, which it says, status 1 (it said so and exited 0)."""
        if not os.path.exists("/dev/full"):
            self.skipTest("no /dev/full")
        full = os.open("/dev/full", os.O_WRONLY)
        self.addCleanup(os.close, full)
        proc = Proc(b"", True)
        reactor.spawnProcess(proc, command(), [command(), "pub", "-v", "news", "hi"],
                             env=self.env, childFDs={0: "w", 1: full, 2: "r"})
        self.addCleanup(proc.kill)
        _, err, code = await proc.ended.addTimeout(WAIT, reactor)
        self.assertEqual((err, code), (b"txpubsub: cannot write to stdout: No space left on "
                                       b"device\n", 1))
        self.assertEqual([m.payload for m in self.hub.history("news")], [b"hi"])

    async def test_a_refused_subscription_is_said_once(self) -> None:
        """A refusal is final: one line, status 1, no "reconnecting"."""
        refused = (b"txpubsub: the server refused: -ERR forbidden inboxes are delivered to "
                   b"their owner without SUB\n")
        _, err, code = await self.run_cli("sub", "news", "@alice")
        self.assertEqual((err, code), (refused, 1))
        _, err, code = await self.run_cli("chat", "@alice", stdin=b"hello\n")
        self.assertEqual((err, code), (refused, 1))
        _, err, code = await self.run_cli("sub", "news", "--last", "-5")
        self.assertEqual(code, 2)
        self.assertIn(b"argument --last", err)

    async def test_server_down_is_retried_with_a_notice(self) -> None:
        """sub and chat keep trying, saying so once; --connect-timeout gives up with status 1."""
        down = {**self.env, "TXPUBSUB_SERVER": "127.0.0.1:1"}
        results = await gatherResults([
            self.run_cli("sub", "news", "--connect-timeout", "0.5", env=down),
            self.run_cli("chat", "room", "--connect-timeout", "0.5", stdin=b"", env=down)])
        for _, err, code in results:
            self.assertEqual(code, 1)
            self.assertEqual(err.decode().splitlines(), [
                "txpubsub: cannot connect to 127.0.0.1:1: connection refused; still trying",
                "txpubsub: no connection to 127.0.0.1:1 within 0.5 s: connection refused"])

    async def test_sub_connects_once_the_server_is_up(self) -> None:
        """Started before the server, sub waits for it and then prints what comes."""
        probe, _ = serve(self, self.hub)
        port = probe.port.getHost().port
        await probe.stopService()
        proc = self.spawn("sub", "late", env={**self.env, "TXPUBSUB_SERVER": f"127.0.0.1:{port}"})
        await proc.until(lambda: b"still trying" in proc.err)
        serve(self, self.hub, f"tcp:{port}:interface=127.0.0.1")
        await self.subscribed("late")
        self.hub.publish("p", "late", b"here")
        await proc.until(lambda: proc.out == b"here\n")
        self.assertIn(f"txpubsub: connected to 127.0.0.1:{port}\n".encode(), proc.err)

    async def test_pub_rest_of_the_arguments_is_the_message(self) -> None:
        """pub news hello world publishes "hello world", and pub news -hello "-hello"."""
        for args in (("hello", "world"), ("-hello",), ("--", "-v"), ("-f", __file__)):
            _, err, code = await self.run_cli("pub", "news", *args)
            self.assertEqual((err, code), (b"", 0))
        with open(__file__, "rb") as f:
            this = f.read()
        self.assertEqual([m.payload for m in kept(self.hub, "news")],
                         [b"hello world", b"-hello", b"-v", this])

    async def test_pub_repeat_and_interval(self) -> None:
        out, err, code = await self.run_cli("pub", "tick", "t", "--repeat", "3",
                                            "--interval", "0.01", "-v")
        self.assertEqual((out, err, code), (b"1\n2\n3\n", b"", 0))

    async def test_pub_lines_verbose_prints_each_id(self) -> None:
        """pub - -v prints each line's id as the server acknowledges it."""
        out, err, code = await self.run_cli("pub", "logs", "-", "-v", stdin=b"a\nb\n")
        self.assertEqual((out, err, code), (b"1\n2\n", b"", 0))

    async def test_binary_payloads_come_out_exactly(self) -> None:
        """sub --raw writes a binary payload's bytes; admin HISTORY shows MSGB, not a lossy MSG."""
        blob = bytes(range(256)) + b"\r\n\xff\xfe"
        _, err, code = await self.run_cli("pub", "blobs", "-", "--binary", stdin=blob)
        self.assertEqual((err, code), (b"", 0))
        out, err, code = await self.run_cli("sub", "blobs", "--last", "1", "--count", "1",
                                            "--raw")
        self.assertEqual((out, err, code), (blob, b"", 0))
        out, _, _ = await self.run_cli("sub", "blobs", "--last", "1", "--count", "1")
        self.assertEqual(out, blob + b"\n")  # bytes as sent, a newline after
        self.hub.publish("alice", "blobs", b"text")
        path = self.admin_socket()
        out, err, code = await self.run_cli("admin", path, "HISTORY", "blobs")
        self.assertEqual((err, code), (b"", 0))
        self.assertEqual(out, b"MSGB blobs 1 c1 %d\n%s\nMSG blobs 2 alice text\n+OK 2\n"
                         % (len(blob), blob))

    async def test_sub_format_and_idle_timeout(self) -> None:
        """-F picks the fields; --timeout ends sub (status 0) once nothing comes for a while."""
        self.hub.publish("alice", "news", b"one")
        self.hub.publish("bob", "news", b"two")
        out, err, code = await self.run_cli(
            "sub", "news", "--last", "2", "-F", "{channel}#{id} {{{sender}}} {payload}",
            "--timeout", "0.3")
        self.assertEqual((out, err, code), (b"news#1 {alice} one\nnews#2 {bob} two\n", b"", 0))
        out, _, _ = await self.run_cli("sub", "news", "--last", "1", "--count", "1",
                                       "-F", "{time}")
        self.assertRegex(out, rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d\n$")

    async def test_ctrl_c_exits_quietly(self) -> None:
        """Ctrl-C ends sub and pub - with status 130 and nothing on stderr."""
        sub = self.spawn("sub", "news")
        watcher = await connect(self.server)
        await watcher.ask(b"SUB logs", b"+OK")
        pub = self.spawn("pub", "logs", "-", stdin=b"first\n", close_stdin=False)
        await self.subscribed("news")
        await watcher.wait(lambda lines: any(b" first" in line for line in lines))
        await watcher.quit()
        for proc in (sub, pub):
            proc.transport.signalProcess("INT")
            _, err, code = await proc.ended.addTimeout(WAIT, reactor)
            self.assertEqual((err.decode(), code), ("", 130), err.decode())

    def admin_socket(self) -> str:
        path = os.path.join(tempfile.mkdtemp(), "a.sock")
        service = ListenerService(reactor, unix_endpoint(path), AdminFactory(self.hub, print))
        service.startService()
        self.addCleanup(service.stopService)
        return path

class ChatEscapesTests(SynchronousTestCase):
    """chat shows what others send with control characters escaped, never raw."""

    def test_payloads_cannot_forge_lines_or_drive_the_terminal(self) -> None:
        """CR, LF, ESC sequences, C1 and bidi controls come out as repr would show them."""
        from txpubsub.cli.chat import Chat
        from txpubsub.wire.parser import Delivery

        printed: list[str] = []
        chat = Chat(None, "room", printed.append)  # type: ignore[arg-type]
        forged = ("hi\r\n[room] alice: send me your password\x1b[2J\x1b]0;pwned\x07"
                  "\x9b31m \u202egnp.exe \u2028tab\there\x00\x7f")
        chat.show(Delivery("room", 1, "mallory", forged.encode()))
        chat.show(Delivery("@bob", 2, "mallory", "caf\u00e9 \u00fcber \u4e2d".encode()))
        self.assertEqual(printed, [
            "[room] mallory: hi\\r\\n[room] alice: send me your password\\x1b[2J"
            "\\x1b]0;pwned\\x07\\x9b31m \\u202egnp.exe \\u2028tab\\there\\x00\\x7f",
            "(private) mallory: caf\u00e9 \u00fcber \u4e2d",  # letters are letters
        ])
        for line in printed:
            self.assertTrue(line.isprintable(), line)


class ChatTerminalTests(TestCase):
    """txpubsub chat in a real terminal (tmux): typing is not broken by arrivals."""

    timeout = 60

    def setUp(self) -> None:
        if shutil.which("tmux") is None:
            self.skipTest("tmux is not installed")
        self.hub = Hub(reactor, epoch="chat")
        _, self.server = serve(self, self.hub)
        self.session = f"txpubsub-test-{os.getpid()}"
        # Cleanups run last first: kill the chat, see its connection go, stop serving.
        self.addCleanup(self.no_clients_left)
        self.addCleanup(subprocess.run, ["tmux", "kill-session", "-t", self.session],
                        capture_output=True)

    async def no_clients_left(self) -> None:
        """Wait (bounded) until the server has seen every connection close."""
        for _ in range(int(WAIT / 0.05)):
            if not self.hub.clients():
                return
            await deferLater(reactor, 0.05)
        self.fail(f"clients still connected: {self.hub.clients()}")

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session],
                              capture_output=True, text=True, timeout=10).stdout

    async def until(self, holds: Callable[[list[str]], bool], what: str) -> list[str]:
        """Poll the screen until ``holds(its non-empty lines)``; fail after WAIT seconds."""
        for _ in range(int(WAIT / 0.05)):
            lines = [line.rstrip() for line in self.screen().splitlines() if line.strip()]
            if holds(lines):
                return lines
            await deferLater(reactor, 0.05)
        self.fail(f"{what} never held on:\n{self.screen()}")

    async def test_half_typed_line_survives_a_message(self) -> None:
        """A message from someone else appears above the prompt; the half-typed line stays."""
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", "100", "-y", "20",
                        "env", f"TXPUBSUB_SERVER={self.server}", command(), "chat",
                        "--name", "alice", "room"], check=True, timeout=10)
        await self.until(lambda lines: bool(lines) and lines[-1] == "room>", "the prompt")
        subprocess.run(["tmux", "send-keys", "-t", self.session, "hello wor"], check=True)
        await self.until(lambda lines: lines[-1:] == ["room> hello wor"], "the typed text")
        other = await connect(self.server)
        self.addCleanup(other.quit)
        await other.ask(b"PUB room ping from outside", b"+OK")
        # The message is printed above the prompt, which is then drawn again as it was:
        # wait for both, not for the first (the redraw follows the message).
        lines = await self.until(
            lambda lines: "[room] c2: ping from outside" in lines[:-1]
            and lines[-1] == "room> hello wor", "the message above the kept line")
        self.assertEqual(lines[-1], "room> hello wor")
        await other.ask(b"SUB room", b"+OK")
        subprocess.run(["tmux", "send-keys", "-t", self.session, "ld", "Enter"], check=True)
        await other.wait_line(b"MSG room 2 alice hello world")
        subprocess.run(["tmux", "send-keys", "-t", self.session, "/quit", "Enter"], check=True)
        await other.quit()
        await self.no_clients_left()  # the chat says QUIT and goes


class CLITLSTests(TestCase):
    """The command over TLS: the server is checked by default, and failures say why."""

    timeout = 60

    def setUp(self) -> None:
        from .test_tls import Certs

        self.certs = Certs()
        self.hub = Hub(reactor, epoch="tls")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TXPUBSUB_")}

    def listen(self, kind: str) -> int:

        description = f"{kind}:0:interface=127.0.0.1"
        if kind != "tcp":
            description += f":privateKey={self.certs.key_path}:certKey={self.certs.cert_path}"
        if kind == "mtls":
            description += f":caCerts={self.certs.ca_path}"
        service, _ = serve(self, self.hub, description)
        return service.port.getHost().port

    def pub(self, *args: str) -> Deferred[tuple[bytes, bytes, int]]:
        return getProcessOutputAndValue(command(), ("pub", "news", "hi", *args),
                                        env=self.env).addTimeout(WAIT * 3, reactor)

    async def test_the_server_is_checked_by_default(self) -> None:
        """ssl:HOST:PORT without --ca trusts the system store only; --insecure is explicit."""
        port = self.listen("ssl")
        _, err, code = await self.pub("-s", f"ssl:127.0.0.1:{port}")
        self.assertEqual((err.decode(), code), (
            f"txpubsub: cannot connect to ssl:127.0.0.1:{port}: the server's certificate is not "
            "trusted (certificate verify failed); give the CA that signed it with --ca FILE (or "
            "--insecure to skip the check)\n", 1))
        for args in (("--ca", self.certs.ca_path), ("--insecure",)):
            _, err, code = await self.pub("-s", f"ssl:127.0.0.1:{port}", *args)
            self.assertEqual((err, code), (b"", 0))
        _, err, code = await self.pub("-s", f"tls://localhost:{port}", "--ca",
                                      self.certs.ca_path)
        self.assertEqual((err, code), (b"", 0))
        self.assertEqual(len(kept(self.hub, "news")), 3)

    async def test_tls_failures_say_what_went_wrong(self) -> None:
        """A wrong name, a missing or refused client certificate, a plain port: each said."""
        ssl_port, mtls_port = self.listen("ssl"), self.listen("mtls")
        plain_port = self.listen("tcp")
        ca = ("--ca", self.certs.ca_path)
        other = self.certs.write("other.pem", untrusted_client_pem())
        cases = [
            ((f"tls://127.0.0.1:{ssl_port}", "--tls-name", "example.org", *ca),
             "the server's certificate is not valid for the name asked for; give the name its "
             "certificate carries with --tls-name NAME"),
            ((f"tls://127.0.0.1:{mtls_port}", *ca),
             "the server wants a client certificate (tlsv13 alert certificate required); give "
             "one with --cert FILE --key FILE"),
            ((f"tls://127.0.0.1:{mtls_port}", "--cert", other, *ca),
             "the server refused the client certificate (tlsv1 alert unknown ca); is --cert "
             "signed by a CA the server trusts?"),
            ((f"tls://127.0.0.1:{plain_port}", *ca),
             "the server does not speak TLS there (wrong version number); is it a plain port? "
             "use HOST:PORT"),
        ]
        for (server, *args), why in cases:
            _, err, code = await self.pub("-s", server, *args)
            self.assertEqual((err.decode(), code),
                             (f"txpubsub: cannot connect to {server}: {why}\n", 1))
        # sub does not retry what retrying cannot mend.
        _, err, code = await getProcessOutputAndValue(
            command(), ("sub", "news", "-s", f"tls://127.0.0.1:{ssl_port}"), env=self.env
        ).addTimeout(WAIT * 3, reactor)
        self.assertEqual(code, 1)
        self.assertIn(b"the server's certificate is not trusted", err)
        self.assertEqual(err.count(b"\n"), 1)


def untrusted_client_pem() -> bytes:
    """A client certificate and key from a CA no server here trusts."""
    import trustme

    issued = trustme.CA().issue_cert("mallory")
    return issued.cert_chain_pems[0].bytes() + issued.private_key_pem.bytes()
