"""The periodic system channels: $sys.time every second (--time-interval), $sys.stats every 10 s."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from twisted.application.service import Service
from twisted.internet.task import LoopingCall

from txpubsub.core.hub import Hub

TIME_INTERVAL = 1.0
STATS_INTERVAL = 10.0


def iso_utc(seconds: float) -> str:
    """``2026-11-23T02:44:26Z``: ISO 8601, UTC, whole seconds."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class SystemTicker(Service):
    """Publishes the clock and the counters, but only while someone listens."""

    def __init__(self, hub: Hub, time_interval: float = TIME_INTERVAL) -> None:
        self.hub = hub
        self.time_interval = time_interval
        self._loops: list[LoopingCall] = []

    def startService(self) -> None:
        Service.startService(self)
        for interval, tick in ((self.time_interval, self.tick_time),
                               (STATS_INTERVAL, self.tick_stats)):
            loop = LoopingCall(tick)
            loop.clock = self.hub.clock
            loop.start(interval, now=False)
            self._loops.append(loop)

    def stopService(self) -> None:
        Service.stopService(self)
        for loop in self._loops:
            loop.stop()
        self._loops = []

    def tick_time(self) -> None:
        if self.hub.has_readers("$sys.time"):
            self.hub.publish_system("$sys.time", iso_utc(self.hub.clock.seconds()).encode())

    def tick_stats(self) -> None:
        if self.hub.has_readers("$sys.stats"):
            stats: dict[str, object] = dict(self.hub.stats())
            if self.hub.server_id is not None:  # which of the servers sharing Redis
                stats["server"] = self.hub.server_id
            self.hub.publish_system("$sys.stats", json.dumps(stats, separators=(",", ":")).encode())
