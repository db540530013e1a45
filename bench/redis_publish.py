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
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.task import deferLater

from txpubsub.backplane.address import RedisAddress
from txpubsub.backplane.redis import RedisBackplane
from txpubsub.core.hub import Hub


class Reader:
    """A subscriber that only counts."""

    msgs_in = msgs_out = 0

    def __init__(self) -> None:
        self.count = 0

    def deliver(self, msg: object) -> bool:
        self.count += 1
        return False

    def close(self, *args: object) -> None:
        pass

    def pending_bytes(self) -> int:
        return 0

    def pace(self) -> bool:
        return False

    def charge_stall(self) -> None:
        pass

    def yield_turn(self) -> None:
        pass

    def channel_dropped(self, channel: str) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    redis = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hub = Hub(reactor, history=100)
    backplane = RedisBackplane(hub, RedisAddress.parse(f"redis://127.0.0.1:{port}/0"), reactor)
    hub.set_backplane(backplane)
    reader = Reader()
    figures: list[float] = []

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
                    yield DeferredList([cast("Deferred[int]", hub.publish("x", "bench", b"y" * 64))
                                        for _ in range(1000)])
                while reader.count < args.messages:
                    yield deferLater(reactor, 0.001)
                figures.append((time.process_time() - started) / args.messages * 1e6)
            yield backplane.stopService()
        finally:
            reactor.stop()

    reactor.callWhenRunning(run)
    reactor.run()
    redis.terminate()
    redis.wait(timeout=15)
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"server CPU per publish through Redis, one local subscriber: {min(figures):.1f} us "
          f"(best of {len(figures)}: {', '.join(f'{f:.1f}' for f in figures)})")


if __name__ == "__main__":
    main()
