"""Redis's own pub/sub tests (tests/unit/pubsub.tcl of Redis 7.0.15, the
release Debian 12 ships, vendored in tests/redis_suite/) run with Redis's
test runner against a real `twistd -n txpubsub --resp ...`, in its external
server mode; the tests that need keyspace notifications are skipped, each
listed with its reason in docs/resp.md."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

from twisted.trial.unittest import SynchronousTestCase

from .test_resp_net import Server

SUITE = os.path.join(os.path.dirname(__file__), "redis_suite")
UNIT = "unit/pubsub"
DOCS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs", "resp.md")

# Test name -> what it needs that txpubsub has not (docs/resp.md lists the
# same). txpubsub keeps no keys, so it raises no keyspace events.
_KS = "keyspace notifications; "
SKIPPED = {
    "Keyspace notifications: we receive keyspace notifications": _KS + "SET",
    "Keyspace notifications: we receive keyevent notifications": _KS + "SET",
    "Keyspace notifications: we can receive both kind of events": _KS + "SET",
    "Keyspace notifications: we are able to mask events": _KS + "SET, DEL, LPUSH",
    "Keyspace notifications: general events test": _KS + "SET, EXPIRE, DEL",
    "Keyspace notifications: list events test": _KS + "DEL, LPUSH, RPUSH, RPOP",
    "Keyspace notifications: set events test": _KS + "DEL, SADD, SREM",
    "Keyspace notifications: zset events test": _KS + "DEL, ZADD, ZREM",
    "Keyspace notifications: hash events test": _KS + "DEL, HMSET, HINCRBY",
    "Keyspace notifications: stream events test":
        _KS + "DEL, XGROUP, XADD, XREADGROUP, XCLAIM, XAUTOCLAIM",
    "Keyspace notifications: expired events (triggered expire)": _KS + "DEL, PSETEX, EXISTS",
    "Keyspace notifications: expired events (background expire)": _KS + "DEL, PSETEX",
    "Keyspace notifications: evicted events": _KS + "CONFIG SET maxmemory, FLUSHDB, SET",
    "Keyspace notifications: test CONFIG GET/SET of event flags":
        "CONFIG SET and GET of notify-keyspace-events",
    "Keyspace notifications: new key test": _KS + "SET",
}


def tclsh() -> str | None:
    """A Tcl 8.5+ shell, as Redis's runtest looks for one (Debian: tcl)."""
    for name in ("tclsh8.6", "tclsh8.7", "tclsh8.5", "tclsh"):
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def names_in_unit() -> list[str]:
    """The names of the tests in the vendored unit file."""
    with open(os.path.join(SUITE, "tests", UNIT + ".tcl")) as f:
        return re.findall(r'^\s*test "([^"]+)"', f.read(), re.MULTILINE)


class RedisPubSubSuiteTests(SynchronousTestCase):
    def test_skips_are_documented(self) -> None:
        """Every skipped test is one of the unit's, and docs/resp.md names it."""
        with open(DOCS) as f:
            docs = f.read()
        for name in SKIPPED:
            self.assertIn(name, names_in_unit())
            self.assertIn(f"| {name} | {SKIPPED[name]} |", docs)

    def test_redis_pubsub_unit_passes(self) -> None:
        """Redis's runner (`--host/--port`, one database) passes every test of
        the unit but the skipped ones, against the RESP door."""
        shell = tclsh()
        if shell is None:
            raise unittest.SkipTest("tclsh is not installed (Debian: tcl)")
        server = Server()
        self.addCleanup(server.stop)
        # The runner writes tests/tmp beside its files: run a copy.
        work = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, work, True)
        shutil.copytree(SUITE, work, dirs_exist_ok=True)
        skips = [arg for name in SKIPPED for arg in ("--skiptest", name)]
        runner = subprocess.Popen(
            [shell, "tests/test_helper.tcl", "--host", "127.0.0.1",
             "--port", str(server.resp_port), "--single", UNIT, "--singledb",
             "--timeout", "60", *skips],
            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "TERM": "dumb"}, start_new_session=True)
        try:
            out, _ = runner.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)  # the runner and the test client it started
            out, _ = runner.communicate()
            self.fail("Redis's test runner timed out:\n" + out)
        passed = re.findall(r"^\[ok\]: (.+) \(\d+ ms\)$", out, re.MULTILINE)
        skipped = re.findall(r"^\[skip\]: (.+)$", out, re.MULTILINE)
        self.assertEqual(runner.returncode, 0, out)
        self.assertIn("All tests passed without errors!", out)
        self.assertEqual(skipped, list(SKIPPED), out)
        self.assertEqual(passed, [t for t in names_in_unit() if t not in SKIPPED], out)
        server.stop()
        self.assertNotIn("Traceback", server.text())
