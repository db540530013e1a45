"""The installed `txpubsub` command, run in subprocesses against a real server."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from txpubsub.core.hub import Hub
from txpubsub.doors.admin import AdminFactory
from txpubsub.server.listeners import ListenerService
from txpubsub.server.tap import unix_endpoint

from .helpers import kept
from .netclient import WAIT, connect, serve


def command() -> str:
    path = os.path.join(os.path.dirname(sys.executable), "txpubsub")
    return path if os.path.exists(path) else shutil.which("txpubsub") or "txpubsub"


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
            d = self._with_stdin(args, stdin, env or self.env)
        return d.addTimeout(WAIT * 3, reactor)

    def _with_stdin(self, args, stdin, env) -> Deferred[tuple[bytes, bytes, int]]:
        from twisted.internet.protocol import ProcessProtocol

        done: Deferred[tuple[bytes, bytes, int]] = Deferred()

        class Collect(ProcessProtocol):
            out = err = b""

            def connectionMade(self) -> None:
                self.transport.write(stdin)
                self.transport.closeStdin()

            def outReceived(self, data: bytes) -> None:
                self.out += data

            def errReceived(self, data: bytes) -> None:
                self.err += data

            def processEnded(self, reason) -> None:
                done.callback((self.out, self.err, reason.value.exitCode))

        reactor.spawnProcess(Collect(), command(), [command(), *args], env=env)
        return done

    async def test_pub_and_sub(self) -> None:
        """sub prints payloads as they come and exits after --count."""
        sub = self.run_cli("sub", "news.>", "--count", "2")
        while not self.hub.subscribers_of("news.uk"):
            await deferLater(reactor, 0.05)
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
        path = os.path.join(tempfile.mkdtemp(), "a.sock")
        service = ListenerService(reactor, unix_endpoint(path), AdminFactory(self.hub, print))
        service.startService()
        self.addCleanup(service.stopService)
        out, err, code = await self.run_cli("admin", path, "STATS")
        self.assertEqual(code, 0, err)
        self.assertIn(b"STAT clients 0\n", out)
        self.assertTrue(out.endswith(b"+OK 12\n"))
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


class ChatTerminalTests(TestCase):
    """txpubsub chat in a real terminal (tmux): typing is not broken by arrivals."""

    timeout = 60

    def setUp(self) -> None:
        if shutil.which("tmux") is None:
            self.skipTest("tmux is not installed")
        self.hub = Hub(reactor, epoch="chat")
        _, self.server = serve(self, self.hub)
        self.session = f"txpubsub-test-{os.getpid()}"
        self.addCleanup(subprocess.run, ["tmux", "kill-session", "-t", self.session],
                        capture_output=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session],
                              capture_output=True, text=True, timeout=10).stdout

    async def until(self, text: str) -> str:
        for _ in range(100):
            screen = self.screen()
            if text in screen:
                return screen
            await deferLater(reactor, 0.1)
        self.fail(f"{text!r} never appeared on:\n{self.screen()}")

    async def test_half_typed_line_survives_a_message(self) -> None:
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", "100", "-y", "20",
                        "env", f"TXPUBSUB_SERVER={self.server}", command(), "chat",
                        "--name", "alice", "room"], check=True, timeout=10)
        await self.until("room>")
        subprocess.run(["tmux", "send-keys", "-t", self.session, "hello wor"], check=True)
        await self.until("room> hello wor")
        other = await connect(self.server)
        await other.ask(b"PUB room ping from outside", b"+OK")
        screen = await self.until("[room] c2: ping from outside")
        lines = [line for line in screen.splitlines() if line.strip()]
        self.assertEqual(lines[-1].rstrip(), "room> hello wor")  # still there to finish
        await other.ask(b"SUB room", b"+OK")
        subprocess.run(["tmux", "send-keys", "-t", self.session, "ld", "Enter"], check=True)
        await other.wait_line(b"MSG room 2 alice hello world")
        subprocess.run(["tmux", "send-keys", "-t", self.session, "/quit", "Enter"], check=True)
        await other.quit()
        for _ in range(100):  # the chat says QUIT and goes
            if not self.hub.clients():
                break
            await deferLater(reactor, 0.1)
        self.assertEqual(self.hub.clients(), [])
