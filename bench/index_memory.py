#!/usr/bin/env python3
"""Memory of the wildcard index per subscription, measured with tracemalloc.

One subscriber (one connection) adds N patterns to a PatternIndex: short
ones (``news<n>.*.>``, 3 tokens) and deep ones (64 random tokens of ``a<k>``
and ``*``, so few prefixes are shared). Prints bytes per subscription:

    PYTHONPATH=/path/to/version python bench/index_memory.py
"""
from __future__ import annotations

import argparse
import random
import tracemalloc

from txpubsub.core.index import PatternIndex


def per_subscription(patterns: list[str]) -> float:
    subscriber = object()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index: PatternIndex[object] = PatternIndex()
    for pattern in patterns:
        index.add(pattern, subscriber)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(index) == len(patterns)
    return used / len(patterns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="patterns of each kind")
    args = parser.parse_args()
    rng = random.Random(21)
    short = [f"news{n}.*.>" for n in range(args.n)]
    deep = [".".join(rng.choice(("*", f"a{rng.randrange(4)}")) for _ in range(64))
            for _ in range(args.n)]
    print(f"3 tokens ({len(short[0])} chars): {per_subscription(short):,.0f} B per subscription")
    print(f"64 tokens (~{sum(map(len, deep)) // len(deep)} chars): "
          f"{per_subscription(deep):,.0f} B per subscription")


if __name__ == "__main__":
    main()
