#!/usr/bin/env python3
"""The harness's channels workload in-process, a fixed number of rounds, for
instruction counts (callgrind/cachegrind) that the neighbours' load does not move.

1,000 channels (``--channels``) with 10 subscribers each among 100
connections, 4 QUIET publishers sending 100 ``PUB`` lines and a ``PING`` per
read to random channels, 64-byte payloads, history 100 (``--history``): as
../shared/bench's ``channels``, on StringTransports. A round is one read
and the end of its reactor turn. Count instructions per publish as the
difference between two round counts after the same warm-up, which also
fills the history (1,000 rounds for 1,000 channels), so eviction is paid:

    ir() { PYTHONHASHSEED=0 PYTHONPATH=<tree> valgrind --tool=callgrind \\
        --callgrind-out-file=/dev/null python bench/channels_cg.py "$@" 2>&1 |
        grep -o 'Collected : [0-9]*'; }
    ir 0 --warm 1000; ir 150 --warm 1000    # (second - first) / 15,000

``--tool=cachegrind --cache-sim=yes --cachegrind-out-file=F`` for both, then
comparing the files function by function, is how issue 13's losses were
found (docs/benchmarks.md); add ``--LL=1048576,16,64`` for a last-level
cache the size of the test machine's L2, where the memory costs show.
Rate limits are off unless ``--rate-limits``.
"""
from __future__ import annotations

import argparse
import random

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from txpubsub.core.hub import Hub
from txpubsub.doors.line import LineDoor, LineDoorFactory


class MovingClock(Clock):
    """A Clock that moves a little at every read, as the reactor's does: a
    Clock's one float forever hid what keeping a time per message costs."""

    def seconds(self) -> float:
        self.rightNow += 1e-7
        return self.rightNow


class ChannelsWorkload:
    """The harness's channels workload on one hub: 1,000 channels (``channels``)
    with 10 subscribers each among 100 QUIET connections, and 4 publishers
    whose reads are 100 ``PUB`` lines to random channels and a ``PING``."""

    def __init__(self, channels: int = 1000, history: int = 100, rate_limit: int = 0) -> None:
        hub = Hub(MovingClock(), epoch="x", history=history, max_publish_rate=rate_limit,
                  max_publish_bytes_rate=rate_limit)
        self.factory = LineDoorFactory(hub, "t")
        connections, per_channel = 100, 10
        channels_of: list[list[int]] = [[] for _ in range(connections)]
        step = connections // per_channel
        for channel in range(channels):
            used: set[int] = set()
            for j in range(per_channel):
                k = (channel + j * step) % connections
                while k in used:
                    k = (k + 1) % connections
                used.add(k)
                channels_of[k].append(channel)
        self.readers = []
        for mine in channels_of:
            reader: LineDoor = self.factory.buildProtocol(None)  # type: ignore[assignment]
            transport = StringTransport()
            reader.makeConnection(transport)
            subs = b"".join(b"SUB bench.ch.%d\r\n" % c for c in mine)
            reader.dataReceived(b"QUIET on\r\n" + subs)
            self.readers.append(transport)
        self.publishers: list[LineDoor] = []
        for _ in range(4):
            publisher: LineDoor = self.factory.buildProtocol(None)  # type: ignore[assignment]
            publisher.makeConnection(StringTransport())
            publisher.dataReceived(b"QUIET on\r\n")
            self.publishers.append(publisher)
        picks = random.Random(42)
        self.reads = [b"".join(b"PUB bench.ch.%d %s\n" % (picks.randrange(channels), b"x" * 64)
                               for _ in range(100)) + b"PING\n" for _ in range(64)]

    def run(self, rounds: int) -> None:
        """``rounds`` reads, each with the end of its reactor turn."""
        flush = self.factory.batcher.flush
        for r in range(rounds):
            publisher = self.publishers[r % 4]
            publisher.dataReceived(self.reads[r % 64])
            flush()  # the end of the reactor turn
            publisher.transport.clear()
            for transport in self.readers:
                transport.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rounds", type=int, help="rounds measured after the warm-up")
    parser.add_argument("--warm", type=int, default=0, help="rounds before them")
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--history", type=int, default=100)
    parser.add_argument("--rate-limits", action="store_true",
                        help="the default per-connection limits, raised out of reach")
    args = parser.parse_args()
    workload = ChannelsWorkload(args.channels, args.history,
                                10**12 if args.rate_limits else 0)
    workload.run(args.warm)
    workload.run(args.rounds)


if __name__ == "__main__":
    main()
