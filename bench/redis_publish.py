"""The server's CPU per publish through Redis (``--redis``), in one process.

Starts its own ``redis-server``, a hub with a RedisBackplane on the real
reactor and one subscriber that only counts, then publishes MESSAGES
64-byte messages (1000 at a time, each batch waiting for its ids) and waits
until all have come back through Redis's pub/sub. The figure is this
process's CPU time (user and system, sockets included) per publish: what
the backplane's round trip costs a server, over the hub's own work.

    .venv/bin/python bench/redis_publish.py [--messages 30000] [--rounds 5]
"""
from __future__ import annotations

import argparse
import time
from typing import Any, cast

from benchparts import CountingReader, redis_server
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.task import deferLater

from txpubsub.backplane.address import RedisAddress
from txpubsub.backplane.redis import RedisBackplane
from txpubsub.core.hub import Hub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures: list[float] = []
    with redis_server() as (_, port):
        hub = Hub(reactor, history=100)
        backplane = RedisBackplane(hub, RedisAddress.parse(f"redis://127.0.0.1:{port}/0"), reactor)
        hub.set_backplane(backplane)
        reader = CountingReader()

        @inlineCallbacks
        def run() -> Any:
            try:
                backplane.startService()
                while backplane.connection is None or backplane._listener is None:
                    yield deferLater(reactor, 0.05)
                yield hub.subscribe(hub.attach(reader), "bench")
                for _ in range(args.rounds):
                    reader.count = 0
                    started = time.process_time()
                    for _ in range(0, args.messages, 1000):
                        yield DeferredList([
                            cast("Deferred[int]", hub.publish("x", "bench", b"y" * 64))
                            for _ in range(1000)])
                    while reader.count < args.messages:
                        yield deferLater(reactor, 0.001)
                    figures.append((time.process_time() - started) / args.messages * 1e6)
                yield backplane.stopService()
            finally:
                reactor.stop()

        reactor.callWhenRunning(run)
        reactor.run()
    print(f"server CPU per publish through Redis, one local subscriber: {min(figures):.1f} us "
          f"(best of {len(figures)}: {', '.join(f'{f:.1f}' for f in figures)})")


if __name__ == "__main__":
    main()
