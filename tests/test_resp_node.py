"""node-redis, a second real Redis client beside redis-py, against a real
`twistd -n txpubsub --resp ...`, with a line client on the same channel.

node-redis is pinned in tests/node/package.json; `.ci/run` installs it with
`npm ci --prefix tests/node`. Without node or that install the test is
skipped, saying so."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import unittest
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from .test_resp_net import WAIT, LineClient, Server

NODE_DIR = os.path.join(os.path.dirname(__file__), "node")


def node() -> str:
    """The node to run, or SkipTest saying what is missing."""
    path = shutil.which("node")
    if path is None:
        raise unittest.SkipTest("node is not installed (Debian: nodejs)")
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "redis")):
        raise unittest.SkipTest("node-redis is not installed: npm ci --prefix tests/node")
    return path


class NodeRedisTests(SynchronousTestCase):
    def run_script(self, server: Server, resp: int, line: LineClient) -> dict[str, Any]:
        """pubsub.mjs subscribes (channel and glob); the line client then
        subscribes too, and the script publishes once."""
        script = subprocess.Popen(
            [node(), "pubsub.mjs", str(server.resp_port), "itest.node", str(resp)],
            cwd=NODE_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addCleanup(script.wait)
        self.addCleanup(script.kill)
        assert script.stdin is not None and script.stdout is not None
        self.assertEqual(json.loads(script.stdout.readline()), {"subscribed": True})
        self.assertTrue(line.ask("SUB itest.node").startswith(b"+OK subscribed"))
        out, _ = script.communicate("go\n", timeout=WAIT * 3)
        self.assertEqual(script.returncode, 0, out)
        return json.loads(out)

    def test_node_redis_resp2_and_resp3(self) -> None:
        """node-redis subscribes, psubscribes and publishes, in RESP2 and
        RESP3: one message and one pmessage, a count of three receivers (the
        line client is the third), and the line client gets it too."""
        node()
        server = Server()
        self.addCleanup(server.stop)
        for resp in (2, 3):
            line = LineClient(server.line_port)
            self.addCleanup(line.close)
            seen = self.run_script(server, resp, line)
            self.assertEqual(seen, {
                "receivers": 3,
                "got": [["message", "itest.node", "from node"],
                        ["pmessage", "itest.node", "from node"]],
                "numsub": {"itest.node": 2},
                "ping": "PONG"}, resp)
            self.assertRegex(line.readline(), rb"^MSG itest\.node \d+ c\d+ from node$")
            line.close()  # the next round counts its own line client
        server.stop()
        self.assertNotIn("Traceback", server.text())
