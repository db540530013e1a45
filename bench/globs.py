#!/usr/bin/env python3
"""What Redis-style glob subscriptions (RESP PSUBSCRIBE) cost per publish.

Publishes through the hub to a channel with one exact RESP subscriber,
while N distinct globs that do not match it are held by other RESP
connections (N = 0 shows the cost without any glob subscriber: one test of
an int). Redis tries every pattern on every publish; so does txpubsub, but
only while globs exist. StringTransports stand in for sockets:

    python bench/globs.py
    python bench/globs.py --counts 0 10 100 1000 --publishes 20000
"""
from __future__ import annotations

import argparse
import time

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from txpubsub.core.hub import Hub
from txpubsub.doors.resp import RespDoorFactory


def command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def run(globs: int, publishes: int, kind: str) -> float:
    """Microseconds per publish with ``globs`` distinct non-matching globs held."""
    hub = Hub(Clock(), epoch="x", max_subscriptions_total=10**7)
    factory = RespDoorFactory(hub, "t")
    reader = factory.buildProtocol(None)
    transport = StringTransport()
    reader.makeConnection(transport)
    reader.dataReceived(command(b"SUBSCRIBE", b"bench.x"))
    holders = []
    for i in range(globs):
        if i % 100 == 0:
            holder = factory.buildProtocol(None)
            holder.makeConnection(StringTransport())
            holders.append(holder)
        pattern = {"prefix": b"other%d.*" % i, "inner": b"*.other%d.*" % i,
                   "class": b"oth[e]r%d.?" % i}[kind]
        holder.dataReceived(command(b"PSUBSCRIBE", pattern))
    payload = b"x" * 64
    start = time.perf_counter()
    for i in range(publishes):
        hub.publish("p", "bench.x", payload)
        if i % 100 == 99:
            factory.batcher.flush()
            transport.clear()
    elapsed = time.perf_counter() - start
    return elapsed / publishes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="*", default=[0, 1, 10, 100, 1000])
    parser.add_argument("--publishes", type=int, default=20000)
    parser.add_argument("--kind", choices=["prefix", "inner", "class"], default="prefix")
    args = parser.parse_args()
    for n in args.counts:
        best = min(run(n, args.publishes, args.kind) for _ in range(3))
        print(f"{n:6d} globs ({args.kind}): {best:7.2f} us per publish")


if __name__ == "__main__":
    main()
