"""--ws and --ws-origin: listeners, origins, and a clear usage error without autobahn."""
from __future__ import annotations

import sys

from twisted.application.service import MultiService
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from txpubsub.server.listeners import ListenerService
from txpubsub.server.tap import Options, makeService

from .test_layout import loaded_after


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


class WebOptionsTests(SynchronousTestCase):
    def test_ws_listeners_share_one_codec(self) -> None:
        """Each --ws is a Site listener; all share one JSON codec and the line door's batcher."""
        options = parse("--ws", "tcp:8080", "--ws", "tcp:8081:interface=127.0.0.1",
                        "--ws-origin", "https://app.example", "--admin", "none")
        top = makeService(options, MemoryReactorClock())
        assert isinstance(top, MultiService)
        sites = [s for s in top if isinstance(s, ListenerService) and isinstance(s.factory, Site)]
        self.assertEqual([s.description for s in sites],
                         ["tcp:8080", "tcp:8081:interface=127.0.0.1"])
        sockets = [s.factory.resource.children[b"ws"]._factory  # type: ignore[attr-defined]
                   for s in sites]
        self.assertIs(sockets[0].doors.codec, sockets[1].doors.codec)
        self.assertIs(sockets[0].doors.batcher, sockets[1].doors.batcher)
        self.assertEqual(sockets[0].origins, frozenset({"https://app.example"}))
        self.assertEqual(sockets[0].doors.listener, "tcp:8080")

    def test_no_ws_no_websocket_door(self) -> None:
        """The server's options and wiring load the WebSocket door (and autobahn) only for --ws."""
        loaded = loaded_after("import txpubsub.server.tap")
        self.assertIn("txpubsub.server.tap", loaded)
        self.assertEqual([m for m in loaded if m.endswith((".websocket", ".web"))], [])

    def test_bad_values_are_usage_errors(self) -> None:
        for args in (["--ws", "bogus:1"], ["--ws-origin", "app.example"],
                     ["--ws-origin", "ftp://x"]):
            self.assertRaises(usage.UsageError, parse, *args)

    def test_without_autobahn_a_clear_usage_error(self) -> None:
        saved = sys.modules.get("autobahn")
        sys.modules["autobahn"] = None  # type: ignore[assignment]  # import fails
        try:
            with self.assertRaises(usage.UsageError) as error:
                parse("--ws", "tcp:8080")
        finally:
            if saved is not None:
                sys.modules["autobahn"] = saved
            else:
                del sys.modules["autobahn"]
        self.assertIn("pip install 'txpubsub[ws]'", str(error.exception))
