"""Latency histograms for Prometheus, kept without prometheus_client.

A backplane or store records each round trip or commit here (a bisect and
two additions, no lock: everything runs in the reactor thread); the
``--http`` collector reads the counts at scrape time. So the parts that
record need no Prometheus import, and cost the same with ``--http`` off.
"""
from __future__ import annotations

from bisect import bisect_left

# Upper bounds in seconds: from a tenth of a millisecond (a local Redis, a
# commit to a fast disk) to ten seconds (a stalled disk).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                   0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """Counts of durations by bucket (not cumulative), their count and sum."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Record one duration (a clock stepped back counts as 0)."""
        if seconds < 0:
            seconds = 0.0
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus's buckets: (``le`` upper bound, count at or below it), +Inf last."""
        buckets = []
        total = 0
        for bound, count in zip(self.bounds, self.counts):
            total += count
            buckets.append((_le(bound), total))
        buckets.append(("+Inf", self.count))
        return buckets


def _le(bound: float) -> str:
    # As prometheus_client writes its own bounds (floatToGoString): 0.001, 1.0.
    return repr(float(bound))
