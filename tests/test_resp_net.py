"""Real Redis clients (redis-py, redis-cli, redis-benchmark) against a real
`twistd -n txpubsub --resp ...` over 127.0.0.1, with a line client beside them."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
from typing import Any, ClassVar

import redis
from twisted.trial.unittest import SynchronousTestCase

from .test_twistd import twistd

WAIT = 10.0
LINE = "tcp:0:interface=127.0.0.1"
RESP = "tcp:0:interface=127.0.0.1:backlog=128"


class Server:
    """A twistd subprocess with a line and a RESP listener on free ports."""

    def __init__(self, *extra: str) -> None:
        self.dir = tempfile.mkdtemp()
        self.log = os.path.join(self.dir, "twistd.log")
        self.process = subprocess.Popen(
            [*twistd(), "-n", "--pidfile=", "-l", self.log, "txpubsub", "--port", LINE,
             "--resp", RESP, "--admin", "none", *extra],
            cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        ports: dict[str, int] = {}
        deadline = time.monotonic() + WAIT * 3
        while len(ports) < 2:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(self.text())
            time.sleep(0.05)
            for description, port in re.findall(r"listening on (\S+) \(.*port=(\d+)\)",
                                                self.text()):
                ports[description] = int(port)
        self.line_port, self.resp_port = ports[LINE], ports[RESP]

    def text(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class LineClient:
    """A blocking line-protocol client."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.file = self.sock.makefile("rb")
        self.info = self.file.readline()

    def ask(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.readline()

    def readline(self) -> bytes:
        return self.file.readline().rstrip(b"\r\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class RespNetTests(SynchronousTestCase):
    server: ClassVar[Server]

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = Server()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        assert "Traceback" not in cls.server.text(), cls.server.text()

    def redis(self, **kwargs: Any) -> Any:
        client = redis.Redis(port=self.server.resp_port, socket_timeout=WAIT, **kwargs)
        self.addCleanup(client.close)
        return client

    def line(self) -> LineClient:
        client = LineClient(self.server.line_port)
        self.addCleanup(client.close)
        return client

    def next_message(self, pubsub: Any) -> Any:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            msg = pubsub.get_message(timeout=0.5)
            if msg is not None and msg["type"] in ("message", "pmessage"):
                return msg
        self.fail("no message")

    def test_redis_py_both_ways_with_a_line_client(self) -> None:
        """redis-py (RESP2) subscribes and publishes; a line client sees the
        RESP client's CLIENT SETNAME as sender, and its PUB reaches redis-py."""
        r = self.redis(single_connection_client=True, client_name="pyclient")
        sub = self.redis().pubsub()
        sub.subscribe("itest.both")
        self.assertEqual(sub.get_message(timeout=WAIT)["type"], "subscribe")
        line = self.line()
        self.assertTrue(line.ask("SUB itest.both").startswith(b"+OK subscribed"))
        self.assertEqual(r.publish("itest.both", "from redis"), 2)
        self.assertRegex(line.readline(), rb"^MSG itest\.both \d+ pyclient from redis$")
        self.assertEqual(self.next_message(sub)["data"], b"from redis")
        self.assertRegex(line.ask("PUB itest.both from line"), rb"^MSG itest\.both \d+ c\d+ ")
        self.assertTrue(line.readline().startswith(b"+OK"))
        self.assertEqual(self.next_message(sub)["data"], b"from line")
        self.assertEqual(r.pubsub_numsub("itest.both"), [(b"itest.both", 2)])
        with self.assertRaises(redis.ResponseError) as caught:
            r.publish("not a channel", "x")
        self.assertIn("bad-channel", str(caught.exception))

    def test_redis_py_psubscribe(self) -> None:
        sub = self.redis().pubsub()
        sub.psubscribe("itest.glob.*")
        self.assertEqual(sub.get_message(timeout=WAIT)["type"], "psubscribe")
        line = self.line()
        line.ask("PUB itest.glob.a.b deep")
        msg = self.next_message(sub)
        self.assertEqual((msg["type"], msg["pattern"], msg["channel"], msg["data"]),
                         ("pmessage", b"itest.glob.*", b"itest.glob.a.b", b"deep"))

    def test_redis_py_resp3_push(self) -> None:
        """redis-py with protocol=3 says HELLO 3 and gets messages as pushes."""
        r = self.redis(protocol=3)
        self.assertEqual(r.ping(), True)
        sub = r.pubsub()
        sub.subscribe("itest.resp3")
        self.assertEqual(sub.get_message(timeout=WAIT)["type"], "subscribe")
        self.assertEqual(self.redis(protocol=3).publish("itest.resp3", "pushed"), 1)
        self.assertEqual(self.next_message(sub)["data"], b"pushed")
        self.assertEqual(r.client_id(), r.client_id())
        self.assertIn("proto", {k.decode() if isinstance(k, bytes) else k: v for k, v in
                                r.execute_command("HELLO", "3").items()})

    def cli(self, *args: str, timeout: float = WAIT) -> str:
        if shutil.which("redis-cli") is None:
            raise unittest.SkipTest("redis-cli is not installed (Debian: redis-tools)")
        done = subprocess.run(["redis-cli", "-p", str(self.server.resp_port), *args],
                              capture_output=True, text=True, timeout=timeout)
        return done.stdout

    def test_redis_cli(self) -> None:
        """redis-cli's commands, and its SUBSCRIBE receiving a line client's PUB."""
        self.assertEqual(self.cli("PING"), "PONG\n")
        self.assertEqual(self.cli("PUBLISH", "itest.cli", "nobody"), "0\n")
        self.assertEqual(self.cli("-3", "HELLO", "3").splitlines()[:2],
                         ["server redis", "version 7.2.0"])
        self.assertIn("unknown command 'GET'", self.cli("GET", "x"))
        sub = subprocess.Popen(["redis-cli", "-p", str(self.server.resp_port), "SUBSCRIBE",
                                "itest.cli"], stdout=subprocess.PIPE, text=True)
        try:
            assert sub.stdout is not None
            self.assertEqual([sub.stdout.readline() for _ in range(3)],
                             ["subscribe\n", "itest.cli\n", "1\n"])
            self.line().ask("PUB itest.cli hello cli")
            self.assertEqual([sub.stdout.readline() for _ in range(3)],
                             ["message\n", "itest.cli\n", "hello cli\n"])
        finally:
            sub.terminate()
            sub.wait()

    def test_redis_benchmark_publish(self) -> None:
        if shutil.which("redis-benchmark") is None:
            raise unittest.SkipTest("redis-benchmark is not installed (Debian: redis-tools)")
        done = subprocess.run(["redis-benchmark", "-p", str(self.server.resp_port), "-n", "2000",
                               "-c", "10", "-q", "PUBLISH", "itest.bench", "hello"],
                              capture_output=True, text=True, timeout=WAIT * 6)
        self.assertIn("requests per second", done.stdout)
        self.assertNotIn("WARNING", done.stdout + done.stderr)
