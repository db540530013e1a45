"""The import rules of the layout (README, Architecture): the client side
never loads the server, and the core never loads a door or the server."""
from __future__ import annotations

import json
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

SERVER_SIDE = ("txpubsub.core", "txpubsub.doors", "txpubsub.server", "txpubsub.store")


def loaded_after(statement: str) -> list[str]:
    """The txpubsub modules a fresh interpreter has loaded after ``statement``."""
    code = (f"import sys, json; {statement}; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('txpubsub'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                         timeout=60).stdout
    return json.loads(out)


class LayoutTests(SynchronousTestCase):
    def test_client_library_loads_nothing_of_the_server(self) -> None:
        loaded = loaded_after("import txpubsub.client, txpubsub.client.blocking, "
                              "txpubsub.client.tls, txpubsub.client.failures")
        self.assertIn("txpubsub.client.connection", loaded)
        self.assertEqual([m for m in loaded if m.startswith(SERVER_SIDE)], [])

    def test_command_line_loads_nothing_of_the_server(self) -> None:
        loaded = loaded_after("import txpubsub.cli.main, txpubsub.cli.chat, txpubsub.cli.bench")
        self.assertEqual([m for m in loaded if m.startswith(SERVER_SIDE)], [])

    def test_passwd_loads_nothing_of_the_server(self) -> None:
        """`txpubsub passwd` needs only the standard library's scrypt."""
        loaded = loaded_after("import txpubsub.cli.passwd, txpubsub.auth.passwords")
        self.assertEqual([m for m in loaded if m.startswith(SERVER_SIDE)], [])
        self.assertEqual([m for m in loaded if m.startswith("txpubsub.auth")],
                         ["txpubsub.auth", "txpubsub.auth.passwords"])

    def test_core_loads_no_door_and_no_server(self) -> None:
        loaded = loaded_after("import txpubsub.core.hub, txpubsub.core.system")
        self.assertIn("txpubsub.core.hub", loaded)
        others = ("txpubsub.doors", "txpubsub.server", "txpubsub.store", "txpubsub.client",
                  "txpubsub.cli")
        self.assertEqual([m for m in loaded if m.startswith(others)], [])

    def test_no_redis_without_the_option(self) -> None:
        """Without --redis, a whole server is made and nothing of Redis is imported."""
        code = ("import sys, json; from txpubsub.server.tap import Options, makeService; "
                "o = Options(); o.parseOptions(['--admin', 'none']); makeService(o); "
                "print(json.dumps(sorted(m for m in sys.modules "
                "if 'redis' in m or m.startswith('txpubsub.backplane'))))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                             timeout=60).stdout
        self.assertEqual(json.loads(out.splitlines()[-1]), [])
