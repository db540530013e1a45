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
import statistics
import time
from collections import deque
from typing import Any, Callable

from channels_cg import ChannelsWorkload

from txpubsub.core.channel import Channel
from txpubsub.core.message import Message


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
        hubs[name] = ChannelsWorkload(args.channels)
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
