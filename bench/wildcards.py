#!/usr/bin/env python3
"""The pathological wildcard case of issue 21, in process: many deep
overlapping patterns that all match one 64-token channel.

One connection holds PATTERNS distinct 64-token patterns (each token ``a``
or ``*``, chosen at random with a fixed seed); the script times one publish
to ``a.a.....a`` (64 tokens) the first time (nothing cached) and on repeats,
a SUB+UNSUB+PUB cycle (the subscription change forgets the channel's cached
match), a publish to a 64-token channel not published to before, and
``LIST`` over CHANNELS (at most 62) such channels:

    python bench/wildcards.py [--patterns 10000] [--channels 62]

``--repeat churn|fresh N`` only sets up and then runs N SUB+UNSUB+PUB
cycles, or N publishes to new channels (at most 62), printing nothing: for
instruction counts under callgrind (run with two N and take the difference).
"""
from __future__ import annotations

import argparse
import random
import statistics
import string
import time

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from txpubsub.core.hub import Hub
from txpubsub.doors.line import LineDoor, LineDoorFactory


def connect(factory: LineDoorFactory) -> LineDoor:
    proto: LineDoor = factory.buildProtocol(None)  # type: ignore[assignment]
    proto.makeConnection(StringTransport())
    return proto


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", type=int, default=10000)
    parser.add_argument("--channels", type=int, default=62, help="at most 62")
    parser.add_argument("--repeat", nargs=2, metavar=("churn|fresh", "N"))
    args = parser.parse_args()
    clock = Clock()
    hub = Hub(clock, epoch="x", max_subscriptions=args.patterns + 10)
    factory = LineDoorFactory(hub, "t")
    subscriber = connect(factory)
    rng = random.Random(21)
    patterns: set[str] = set()
    while len(patterns) < args.patterns:
        patterns.add(".".join(rng.choice("a*") for _ in range(64)))
    subscriber.dataReceived(b"".join(b"SUB %s\r\n" % p.encode() for p in patterns))
    clock.advance(0)  # a thousand lines a reactor turn: the rest of the SUBs
    subscriber.transport.clear()
    publisher = connect(factory)
    publisher.dataReceived(b"QUIET on\r\n")
    channel = ".".join(["a"] * 64).encode()

    def timed(data: bytes) -> float:
        start = time.perf_counter()
        publisher.dataReceived(data)
        clock.advance(0)  # input held for the next reactor turn (Hub.reading), if any
        factory.batcher.flush()
        return (time.perf_counter() - start) * 1000

    churn_cycle = b"SUB a.>\r\nUNSUB a.>\r\nPUB %s x\r\n" % channel
    letters = string.digits + string.ascii_letters
    fresh = [b"PUB %s x\r\n" % ".".join(["a"] * 62 + ["b", last]).encode() for last in letters]
    if args.repeat:
        what, count = args.repeat[0], int(args.repeat[1])
        timed(b"PUB %s x\r\n" % channel)
        for n in range(count):
            timed(churn_cycle if what == "churn" else fresh[n])
        return
    first = timed(b"PUB %s x\r\n" % channel)
    repeat = statistics.median(timed(b"PUB %s x\r\n" % channel) for _ in range(20))
    churn = statistics.median(timed(churn_cycle) for _ in range(5))
    new_channel = statistics.median(timed(data) for data in fresh[:20])
    # Channels of 64 tokens that the patterns ending in * match: a.a...a.<c>
    names = letters[:args.channels]
    for last in names:
        publisher.dataReceived(b"CREATE %s history=0\r\n"
                               % ".".join(["a"] * 63 + [last]).encode())
    publisher.transport.clear()
    listing = timed(b"LIST\r\n")
    lines = publisher.transport.value().count(b"\r\n")
    delivered = subscriber.transport.value().count(b"MSG ")
    print(f"{args.patterns} patterns of 64 tokens: first publish {first:.1f} ms, "
          f"repeated {repeat:.3f} ms, SUB+UNSUB+PUB {churn:.1f} ms, "
          f"to a new channel {new_channel:.1f} ms; "
          f"LIST over {args.channels} channels {listing:.0f} ms ({lines} lines); "
          f"{delivered} of 46 publishes delivered")


if __name__ == "__main__":
    main()
