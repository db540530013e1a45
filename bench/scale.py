#!/usr/bin/env python3
"""Publish cost against the number of idle wildcard subscriptions elsewhere.

In-process, through the hub only (no sockets), so that the figure is the
matching and delivery work of one publish: one subscriber on the channel
published to, plus N subscriptions to wildcard patterns on other channels.

    python bench/scale.py            # 10 and 100,000 idle subscriptions, three shapes
"""
from __future__ import annotations

import gc
import time

from benchparts import CountingReader as Reader
from twisted.internet.task import Clock

from txpubsub.core.hub import Hub

SHAPES = {
    # idle patterns whose first token differs from the published channel's
    "o{i}.>": "own first token",
    # idle patterns under the same first token as the published channel
    "bench.o{i}.*": "same first token",
    # idle patterns starting with a wildcard, which every publish walks into
    "*.o{i}": "leading wildcard",
}


def build(idle: int, shape: str) -> tuple[Hub, Reader]:
    hub = Hub(Clock(), epoch="scale", max_subscriptions=idle + 10)
    reader = Reader()
    hub.subscribe(hub.attach(reader), "bench.x")
    owner = hub.attach(Reader())
    for i in range(idle):
        hub.subscribe(owner, shape.format(i=i))
    return hub, reader


def timed(hub: Hub, publishes: int = 100_000) -> float:
    """Microseconds per publish, with the garbage collector out of the way."""
    payload = b"x" * 64
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(publishes):
            hub.publish("p", "bench.x", payload)
        return (time.perf_counter() - start) / publishes * 1e6
    finally:
        gc.enable()


def compare(shape: str, rounds: int = 7) -> tuple[float, float]:
    """Best of several rounds, the two sizes alternating (so drift hits both)."""
    few, _ = build(10, shape)
    many, _ = build(100_000, shape)
    best_few = best_many = float("inf")
    for _ in range(rounds):
        best_few = min(best_few, timed(few))
        best_many = min(best_many, timed(many))
    return best_few, best_many


def main() -> None:
    print("| idle wildcard subscriptions | shape | µs per publish (10) | µs per publish "
          "(100,000) | ratio |")
    print("|---|---|---|---|---|")
    for shape, what in SHAPES.items():
        few, many = compare(shape)
        print(f"| `{shape}` | {what} | {few:.2f} | {many:.2f} | {many / few:.2f}x |")


if __name__ == "__main__":
    main()
