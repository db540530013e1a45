#!/usr/bin/env python3
"""What a form of history costs a publish, against another, in one process.

The harness's channels workload (1,000 channels, 10 subscribers each, 100
kept messages each: 100,000 kept) on StringTransports, one hub per form,
their turns interleaved in one process, so the machine's drift (which moves
fresh-server runs by ±5% on CPython) falls on every form alike:

    python bench/history_forms.py                 # current against ids-kept
    python bench/history_forms.py --rounds 2000 --reps 12

``current`` is ``Channel.record`` as it is; ``ids-kept`` is CPython's form
before session 6 (four entries a message: id, sender, payload, time; the
size let go of read from the oldest payload), written here for writing
only (its replays are not needed to time a publish). CPython only: on PyPy
switching ``Channel.record`` between hubs throws the JIT's traces away.
Found that keeping an int per message cost ~5% of a publish
(docs/benchmarks.md), which cachegrind's counts had not shown.
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import deque
from typing import Any, Callable

from channels_cg import MovingClock
from twisted.internet.testing import StringTransport

from txpubsub.core.channel import Channel
from txpubsub.core.hub import Hub
from txpubsub.core.message import Message
from txpubsub.doors.line import LineDoor, LineDoorFactory


def record_ids_kept(self: Any, msg: Message, carrier: bytes | None = None) -> int:
    """The four-entry form: id, sender, payload, time."""
    self.last_id = msg.msg_id
    self.published += 1
    self.last_publish_at = msg.published_at
    kept = self._kept
    if kept is None:
        kept = self._kept = deque(maxlen=4 * self.keep)
    size = len(msg.payload)
    if len(kept) == 4 * self.keep:
        size -= len(kept[2])
    kept.extend((msg.msg_id, msg.sender, msg.payload, msg.published_at))
    self.kept_bytes += size
    return size


FORMS: dict[str, Callable[..., int]] = {"current": vars(Channel)["record"],
                                        "ids-kept": record_ids_kept}


def use_form(name: str) -> None:
    """Make every channel keep its history in the form ``name``."""
    channel_class: Any = Channel
    channel_class.record = FORMS[name]


class Workload:
    """One hub with the channels workload's readers and publishers."""

    def __init__(self, channels: int) -> None:
        hub = Hub(MovingClock(), epoch="x", history=100, max_publish_rate=0,
                  max_publish_bytes_rate=0)
        self.factory = LineDoorFactory(hub, "t")
        channels_of: list[list[int]] = [[] for _ in range(100)]
        for channel in range(channels):
            used: set[int] = set()
            for j in range(10):
                k = (channel + j * 10) % 100
                while k in used:
                    k = (k + 1) % 100
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
    parser.add_argument("--forms", default="current,ids-kept")
    parser.add_argument("--rounds", type=int, default=1000, help="rounds (100 publishes) per turn")
    parser.add_argument("--reps", type=int, default=10, help="turns per form")
    parser.add_argument("--channels", type=int, default=1000)
    args = parser.parse_args()
    names = args.forms.split(",")
    hubs = {}
    for name in names:
        use_form(name)
        hubs[name] = Workload(args.channels)
        hubs[name].run(args.channels + 100)  # fills every channel's history
    cost: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(args.reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            use_form(name)
            started = time.process_time()
            hubs[name].run(args.rounds)
            cost[name].append((time.process_time() - started) / (args.rounds * 100) * 1e6)
    use_form("current")
    first = names[0]
    for name in names:
        ratios = [a / b for a, b in zip(cost[name], cost[first])]
        print(f"{name:10} {statistics.median(cost[name]):.3f} us per publish (median), "
              f"x{statistics.median(ratios):.3f} of {first}")


if __name__ == "__main__":
    main()
