"""Prometheus metrics, read from the hub when scraped (in the reactor thread).

Nothing is counted for Prometheus alone: the collector reads the counters
the hub keeps anyway (admin STATS) and the sizes it knows, so publishing
costs the same with or without ``--http``.
"""
from __future__ import annotations

import platform
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.copyright import version as twisted_version

import txpubsub
from txpubsub.core.hub import Hub
from txpubsub.core.latency import LatencyHistogram

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
    "auth_refused": ("txpubsub_auth_refused",
                     "AUTH attempts refused unchecked: too many password checks at once, or "
                     "too many failures from the address."),
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
                                      "(line, feed, ingest, resp, ws).",
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
        yield CounterMetricFamily("txpubsub_rate_limited",
                                  "Publishes refused by --max-publish-rate or --max-publish-bytes "
                                  "(-ERR rate-limited; ingest lines dropped).",
                                  value=hub.counters.rate_limited)
        yield GaugeMetricFamily("txpubsub_max_clients", "--max-clients.",
                                value=hub.max_clients)
        yield GaugeMetricFamily("txpubsub_max_channels", "--max-channels.",
                                value=hub.max_channels)
        yield GaugeMetricFamily("txpubsub_start_time_seconds",
                                "When the server started, in seconds since the epoch.",
                                value=hub.started_at)
        yield from store_metrics(hub.store)
        yield from redis_metrics(hub.backplane)
        info = InfoMetricFamily("txpubsub_build", "txpubsub's version, Twisted's and Python's.")
        info.add_metric([], {"version": txpubsub.__version__, "twisted": twisted_version,
                             "python": platform.python_version(),
                             "implementation": platform.python_implementation()})
        yield info


def _histogram(name: str, documentation: str, histogram: LatencyHistogram) -> Metric:
    return HistogramMetricFamily(name, documentation, buckets=histogram.cumulative(),
                                 sum_value=histogram.sum)


def store_metrics(store: Any) -> Iterator[Metric]:
    """A durable store's commits and queue (--store sqlite:...); nothing for memory."""
    if not hasattr(store, "commit_seconds"):
        return
    yield _histogram("txpubsub_store_commit_seconds",
                     "Time each store transaction took on the writer thread (failed ones too).",
                     store.commit_seconds)
    yield _histogram("txpubsub_store_wait_seconds",
                     "Per commit, from its first message being queued to the commit's end: "
                     "the longest a publish in it waited for the disk before +OK.",
                     store.wait_seconds)
    yield CounterMetricFamily("txpubsub_store_committed_messages",
                              "Messages committed to the store.",
                              value=store.committed_messages)
    yield GaugeMetricFamily("txpubsub_store_queue_messages",
                            "Messages waiting for the store (queued or being committed).",
                            value=store.queued_messages)
    yield GaugeMetricFamily("txpubsub_store_queue_bytes",
                            "Bytes waiting for the store (payloads and 100 a message).",
                            value=store.queued_bytes)
    yield GaugeMetricFamily("txpubsub_store_max_queue_bytes",
                            "Past this many queued bytes publishes are refused (-ERR unavailable).",
                            value=store.max_pending_bytes)


def redis_metrics(backplane: Any) -> Iterator[Metric]:
    """The Redis backplane's connection and publish round trips (--redis); else nothing."""
    if not hasattr(backplane, "publish_seconds"):
        return
    yield GaugeMetricFamily("txpubsub_redis_connected",
                            "1 while both connections to Redis (commands, pub/sub) are usable.",
                            value=int(backplane.connected))
    yield CounterMetricFamily("txpubsub_redis_connection_losses",
                              "Usable connections to Redis that were lost.",
                              value=backplane.connection_losses)
    yield _histogram("txpubsub_redis_publish_seconds",
                     "Round trip of each publish through Redis (its script sent to its answer "
                     "read).", backplane.publish_seconds)
    yield GaugeMetricFamily("txpubsub_redis_pending_publishes",
                            "Publishes waiting for Redis's answer (at most 10000, then refused).",
                            value=backplane.pending)
    yield CounterMetricFamily("txpubsub_redis_publish_errors",
                              "Publishes and direct messages Redis did not take (away, behind, "
                              "failed or too slow): -ERR unavailable.",
                              value=backplane.publish_errors)


def hub_registry(hub: Hub) -> CollectorRegistry:
    """A registry of the hub's metrics and the process's (memory, CPU, open
    files: process_...), not prometheus_client's global one."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub))
    ProcessCollector(registry=registry)
    return registry
