#!/usr/bin/env python3
"""Per-publish CPU cost of a durable store, through the real protocol objects.

The harness's channels workload in one process, without sockets: 1000
channels keeping 100 messages each, 100 subscriber connections on 100 of
them each (10 subscribers a channel), one QUIET publisher pipelining 2000
PUB lines (20 reads of 100) to random channels, then waiting for the store
to acknowledge them all. With a SQLite store the real SqliteStore commits
on its writer thread under the real reactor, so the figure is the
process's CPU (both threads, garbage collection included) per publish,
which moves far less than a rate on a shared machine:

    python bench/durable.py memory
    python bench/durable.py sqlite --sync normal
    python bench/durable.py compare --times 5   # all three, alternating, medians

``compare`` runs memory, sqlite normal and sqlite full one after the other,
each in a fresh process pinned to one CPU (taskset, when there is one),
``--times`` times, and prints each run and the medians with their ratios
against memory (docs/benchmarks.md, "Acknowledged means stored").
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import cast

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.task import react
from twisted.internet.testing import StringTransport

from txpubsub.core.hub import Hub
from txpubsub.core.store import MemoryStore
from txpubsub.doors.line import LineDoor, LineDoorFactory
from txpubsub.store.sqlite import open_store

CHANNELS = 1000
READS = 20  # of 100 publishes each, between waits for the store


def setup(store: str, sync: str, path: str) -> tuple[Hub, LineDoor, list[StringTransport]]:
    durable = (open_store(path, cast(IReactorThreads, reactor), "bench", sync)
               if store == "sqlite" else MemoryStore("bench"))
    hub = Hub(reactor, store=durable, max_publish_rate=0, max_publish_bytes_rate=0)
    factory = LineDoorFactory(hub, "t")
    readers = []
    for i in range(100):
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        # Connection i reads channels 10i to 10i+99: ten readers a channel.
        proto.dataReceived(b"".join(b"SUB bench.%d\r\n" % ((i * 10 + c) % CHANNELS)
                                    for c in range(100)))
        readers.append(transport)
    publisher: LineDoor = factory.buildProtocol(None)  # type: ignore[assignment]
    publisher.makeConnection(StringTransport())
    publisher.dataReceived(b"QUIET on\r\n")
    return hub, publisher, readers


async def measure(store: str, sync: str, rounds: int) -> dict[str, object]:
    path = os.path.join(tempfile.mkdtemp(), "bench.db")
    hub, publisher, readers = setup(store, sync, path)
    batcher = publisher.factory.batcher
    payload = b"x" * 64
    rng = random.Random(1)
    reads = [b"".join(b"PUB bench.%d %s\r\n" % (rng.randrange(CHANNELS), payload)
                      for _ in range(100)) for _ in range(50)]

    async def run(count: int) -> tuple[float, float, float]:
        cpu, wall, main = time.process_time(), time.perf_counter(), time.thread_time()
        for n in range(count):
            for k in range(READS):
                publisher.dataReceived(reads[(n * READS + k) % len(reads)])
                batcher.flush()
            await hub.store.drain()
            batcher.flush()
            for transport in readers:
                transport.clear()
        publishes = count * READS * 100
        return ((time.process_time() - cpu) / publishes * 1e6,
                (time.thread_time() - main) / publishes * 1e6,
                (time.perf_counter() - wall) / publishes * 1e6)

    await run(60)  # warm up: fill every channel's history
    cpu, main, wall = await run(rounds)
    await hub.store.close()
    shutil.rmtree(os.path.dirname(path))
    return {"store": store if store == "memory" else f"sqlite-{sync}",
            "cpu_us_per_pub": round(cpu, 2), "reactor_thread_us": round(main, 2),
            "wall_us_per_pub": round(wall, 2)}


def compare(times: int, rounds: int) -> None:
    """Each configuration ``times`` times, alternating; medians and ratios."""
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
    configs = [["memory"], ["sqlite", "--sync", "normal"], ["sqlite", "--sync", "full"]]
    runs: dict[str, list[dict[str, float]]] = {}
    for _ in range(times):
        for config in configs:
            out = subprocess.run([*pin, sys.executable, __file__, *config, "--rounds", str(rounds)],
                                 capture_output=True, text=True, check=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            print(json.dumps(result))
            runs.setdefault(result.pop("store"), []).append(result)
    base = statistics.median(r["cpu_us_per_pub"] for r in runs["memory"])
    for name, results in runs.items():
        cpu = statistics.median(r["cpu_us_per_pub"] for r in results)
        main = statistics.median(r["reactor_thread_us"] for r in results)
        print(f"{name:14} median CPU {cpu:6.2f} us/publish (reactor thread {main:5.2f}), "
              f"memory/this {base / cpu:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", choices=["memory", "sqlite", "compare"])
    parser.add_argument("--sync", choices=["normal", "full"], default="normal")
    parser.add_argument("--rounds", type=int, default=50, help="of 2000 publishes")
    parser.add_argument("--times", type=int, default=5, help="compare: runs of each")
    args = parser.parse_args()
    if args.store == "compare":
        compare(args.times, args.rounds)
        return

    async def run(_: object) -> None:
        print(json.dumps(await measure(args.store, args.sync, args.rounds)))

    react(lambda r: ensureDeferred(run(r)))


if __name__ == "__main__":
    main()
