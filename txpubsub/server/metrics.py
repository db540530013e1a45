"""Prometheus metrics, read from the hub when scraped (in the reactor thread).

Nothing is counted for Prometheus alone: the collector reads the counters
the hub keeps anyway (admin STATS) and the sizes it knows, so publishing
costs the same with or without ``--http``.
"""
from __future__ import annotations

import platform
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.copyright import version as twisted_version

import txpubsub
from txpubsub.core.hub import Hub

# admin STATS's counters and the metric that carries each (without ``_total``;
# bytes_out is per kind of door, summed in STATS).
COUNTERS = {
    "msgs_in": ("txpubsub_messages_published", "Messages published (each counted once)."),
    "msgs_out": ("txpubsub_messages_delivered",
                 "Messages delivered to subscribers (one per subscriber)."),
    "bytes_in": ("txpubsub_published_payload_bytes", "Payload bytes published."),
    "connections_total": ("txpubsub_connections", "Client connections accepted."),
    "slow_consumers": ("txpubsub_slow_consumers",
                       "Connections closed for --max-buffer (BYE slow-consumer)."),
    "pacing_stalls": ("txpubsub_pacing_stalls",
                      "Times a publisher was paused for a lagging subscriber (--max-stall)."),
    "auth_failures": ("txpubsub_auth_failures", "AUTH attempts with a wrong user or password."),
    "store_errors": ("txpubsub_store_errors", "Failed writes to the --store."),
    "history_evictions": ("txpubsub_history_evictions",
                          "Times --max-history-bytes let go of old messages."),
}
GAUGES = {
    "clients": ("txpubsub_clients", "Clients connected."),
    "channels": ("txpubsub_channels", "Channels (not counting system channels)."),
    "subscriptions": ("txpubsub_subscriptions", "Subscriptions of all clients."),
    "history_bytes": ("txpubsub_history_bytes",
                      "Payload bytes kept in the history of all channels."),
}


class HubCollector(Collector):
    """One hub's counters and sizes as Prometheus metrics."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        stats = hub.stats()
        for key, (name, documentation) in COUNTERS.items():
            yield CounterMetricFamily(name, documentation, value=stats[key])
        for key, (name, documentation) in GAUGES.items():
            yield GaugeMetricFamily(name, documentation, value=stats[key])
        by_door = CounterMetricFamily("txpubsub_sent_bytes",
                                      "Bytes written to client connections, by kind of door "
                                      "(line, feed, ingest, ws).",
                                      labels=["door"])
        for door, counters in sorted(hub.door_counters.items()):
            by_door.add_metric([door], counters.bytes_out)
        yield by_door
        closes = CounterMetricFamily("txpubsub_disconnects",
                                     "Client connections that ended, by reason (the BYE "
                                     "reasons, quit, closed-by-peer, error).",
                                     labels=["reason"])
        for reason, count in sorted(hub.counters.closes.items()):
            closes.add_metric([reason], count)
        yield closes
        yield GaugeMetricFamily("txpubsub_history_messages",
                                "Messages kept in the history of all channels.",
                                value=hub.kept_messages())
        yield GaugeMetricFamily("txpubsub_max_history_bytes", "--max-history-bytes.",
                                value=hub.max_history_bytes)
        yield GaugeMetricFamily("txpubsub_max_clients", "--max-clients.",
                                value=hub.max_clients)
        yield GaugeMetricFamily("txpubsub_start_time_seconds",
                                "When the server started, in seconds since the epoch.",
                                value=hub.started_at)
        info = InfoMetricFamily("txpubsub_build", "txpubsub's version, Twisted's and Python's.")
        info.add_metric([], {"version": txpubsub.__version__, "twisted": twisted_version,
                             "python": platform.python_version(),
                             "implementation": platform.python_implementation()})
        yield info


def hub_registry(hub: Hub) -> CollectorRegistry:
    """A registry of the hub's metrics and the process's (memory, CPU, open
    files: process_...), not prometheus_client's global one."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub))
    ProcessCollector(registry=registry)
    return registry
