"""--log-format json and --log-level: unit checks and the real twistd."""
from __future__ import annotations

import io
import json
import os
import signal
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.logger import Logger, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from txpubsub.server.logs import JsonLines, level_filter, parse_levels

from .helpers import Conn, make_hub
from .netclient import WAIT, connect
from .test_twistd import ServerProcess, twistd


class LevelTests(SynchronousTestCase):
    def test_parse(self) -> None:
        self.assertEqual(parse_levels("info"), (LogLevel.info, {}))
        self.assertEqual(parse_levels("WARN, txpubsub.connections=error"),
                         (LogLevel.warn, {"txpubsub.connections": LogLevel.error}))
        self.assertEqual(parse_levels("txpubsub=debug"), (LogLevel.info,
                                                          {"txpubsub": LogLevel.debug}))

    def test_bad(self) -> None:
        for spec in ("loud", "", "=warn", "txpubsub=loud"):
            with self.assertRaises(ValueError, msg=spec):
                parse_levels(spec)

    def test_connection_lines_can_be_turned_off(self) -> None:
        """txpubsub.connections=warn drops each client's connect and disconnect
        lines and nothing else."""
        seen: list[dict[str, Any]] = []
        observer = level_filter(seen.append, "info,txpubsub.connections=warn")  # type: ignore[arg-type]
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        hub = make_hub()
        conn = Conn(hub)
        conn.send(b"QUIT\r\n")
        Logger(namespace="txpubsub.core.hub.Hub").info("other")
        texts = [e.get("log_format") for e in seen]
        self.assertNotIn("{client_id} connected from {address} on {listener}", texts)
        self.assertNotIn("{client_id} ({name}) disconnected: {reason}", texts)
        self.assertIn("other", texts)


class JsonLinesTests(SynchronousTestCase):
    def test_one_object_a_line(self) -> None:
        out = io.StringIO()
        observer = JsonLines(out)
        observer({"log_format": "{client_id} connected", "client_id": "c1", "log_time": 0.5,
                  "log_level": LogLevel.info, "log_namespace": "txpubsub.connections",
                  "address": object()})
        failure = Failure(ZeroDivisionError("division by zero"))
        observer({"log_format": "oops", "log_failure": failure, "log_time": 1.0,
                  "log_level": LogLevel.critical, "log_namespace": "x"})
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        first = json.loads(lines[0])
        self.assertEqual(first, {"time": "1970-01-01T00:00:00.500+00:00", "level": "info",
                                 "namespace": "txpubsub.connections",
                                 "message": "c1 connected", "client_id": "c1"})
        second = json.loads(lines[1])
        self.assertEqual(second["level"], "critical")
        self.assertIn("ZeroDivisionError", second["traceback"])


class TwistdLogTests(TestCase):
    timeout = 60

    async def run_server(self, *options: str) -> bytes:
        """Start twistd with options, connect and quit one client, stop it: its log."""
        server = ServerProcess()
        process = reactor.spawnProcess(
            server, twistd()[0],
            [*twistd(), "-n", "--pidfile=", "txpubsub", "--port", "tcp:0:interface=127.0.0.1",
             "--admin", "none", *options],
            env=os.environ.copy(), path=tempfile.mkdtemp(),
        )
        self.addCleanup(lambda: None if server.ended.called else process.signalProcess("KILL"))
        port = await server.listening.addTimeout(WAIT * 2, reactor)
        client = await connect(f"tcp:127.0.0.1:{port}")
        await client.quit()
        process.signalProcess(signal.SIGTERM)
        await server.ended.addTimeout(WAIT, reactor)
        return server.output

    async def test_json_lines_without_connection_lines(self) -> None:
        output = await self.run_server("--log-format", "json",
                                       "--log-level", "info,txpubsub.connections=warn")
        records = [json.loads(line) for line in output.splitlines()]
        messages = [r["message"] for r in records]
        self.assertTrue(any(m.startswith("txpubsub listening on") for m in messages), messages)
        self.assertFalse([m for m in messages if "connected" in m], messages)
        self.assertIn("signal 15: shutting down", messages)

    async def test_text_by_default_with_connection_lines(self) -> None:
        output = await self.run_server()
        self.assertIn(b"[txpubsub.connections#info] c1 connected from 127.0.0.1", output)
        self.assertIn(b"c1 (-) disconnected: quit", output)
