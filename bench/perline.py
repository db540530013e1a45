#!/usr/bin/env python3
"""Per-publish CPU cost through the real protocol objects, without sockets.

200,000 pipelined PUB lines (100 per read) to 100 channels with 10
subscribers each; StringTransports stand in for sockets, so a noisy
machine's network and neighbours matter less than in the harness. Used to
compare two versions of the code, or what keeping history costs:

    PYTHONPATH=/path/to/version python bench/perline.py LABEL
    python bench/perline.py "no history" --history 0
    python bench/perline.py "users" --users    # the publisher checked by a users file's rules

Run each side several times, alternating, and compare medians: on PyPy a
single run moves by ±30% (garbage collection and JIT decisions).
"""
from __future__ import annotations

import argparse
import inspect
import time

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from txpubsub.core.hub import Hub
from txpubsub.doors.line import LineDoor, LineDoorFactory


def setup(history: int = 100, wildcard: bool = False
          ) -> tuple[Hub, LineDoor, list[StringTransport]]:
    """100 subscribers, each on 10 of 100 channels, and one quiet publisher;
    with ``wildcard`` they subscribe to ``ch<n>.*`` and publishes go to ``ch<n>.x``."""
    # The per-connection publish limits stay on (their check runs on every
    # publish) but so high that the Clock, which never moves here, never trips
    # them. Versions without them are given nothing.
    limits = {name: 10**12 for name in ("max_publish_rate", "max_publish_bytes_rate")
              if name in inspect.signature(Hub).parameters}
    hub = Hub(Clock(), epoch="x", history=history, **limits)  # type: ignore[arg-type]
    factory = LineDoorFactory(hub, "t")
    readers = []
    for i in range(100):
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        for c in range(10):
            proto.dataReceived(b"SUB ch%d%s\r\n" % ((i * 10 + c) % 100,
                                                     b".*" if wildcard else b""))
        readers.append(transport)
    publisher: LineDoor = factory.buildProtocol(None)  # type: ignore[assignment]
    publisher.makeConnection(StringTransport())
    publisher.dataReceived(b"QUIET on\r\n")
    return hub, publisher, readers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("label", nargs="?", default="this version")
    parser.add_argument("--users", action="store_true",
                        help="the publisher is a user of a users file with a few rules")
    parser.add_argument("--history", type=int, default=100,
                        help="messages each channel keeps (the server's default: 100)")
    parser.add_argument("--wildcard", action="store_true",
                        help="subscribe with ch<n>.* and publish to ch<n>.x")
    args = parser.parse_args()
    hub, publisher, readers = setup(args.history, args.wildcard)
    if args.users:
        from txpubsub.auth.authorizer import RulesAuthorizer
        from txpubsub.auth.users import parse_users

        hub.authorizer = RulesAuthorizer(parse_users(
            '[users.bench]\npublish = ["news.>", "@*", "*", "*.x"]\n'
            'deny_publish = ["secret", "news.secret"]\nsubscribe = [">"]\n'))
        publisher.session.client.user = "bench"  # type: ignore[union-attr]
    batcher = publisher.factory.batcher
    payload = b"hello world payload 64 bytes " + b"x" * 31
    suffix = b".x" if args.wildcard else b""
    chunk = b"".join(b"PUB ch%d%s %s\r\n" % (n % 100, suffix, payload) for n in range(100))

    def run(rounds: int) -> float:
        start = time.perf_counter()
        for _ in range(rounds):
            publisher.dataReceived(chunk)
            batcher.flush()  # the end of a reactor turn
            for transport in readers:
                transport.clear()
        return (time.perf_counter() - start) / (rounds * 100) * 1e6

    for _ in range(3):
        run(200)  # warm up (and let PyPy's JIT compile)
    best = min(run(2000) for _ in range(5))
    print(f"{args.label}: {best:.2f} us per publish (10 deliveries each)")


if __name__ == "__main__":
    main()
