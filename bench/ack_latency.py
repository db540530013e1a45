#!/usr/bin/env python3
"""Publish-to-acknowledgement latency at a fixed rate, against a running server.

One connection publishes at ``--rate`` per second, one PUB at a time (not
pipelined, not QUIET), and times each ``+OK <id>`` from the moment its PUB
was written. With ``--store sqlite`` the +OK waits for the commit, so the
difference against ``--store memory`` is what acknowledging after the
commit adds (docs/benchmarks.md, "Acknowledged means stored"):

    python bench/ack_latency.py 127.0.0.1:23400 --rate 1000 --seconds 10
"""
from __future__ import annotations

import argparse
import json
import selectors
import socket
import time


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of the sorted values lie."""
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", help="HOST:PORT")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not counted")
    args = parser.parse_args()
    host, _, port = args.server.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = b""
    while b"\r\n" not in buffer:  # the greeting
        buffer += sock.recv(65536)
    buffer = buffer.split(b"\r\n", 1)[1]
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    interval = 1.0 / args.rate
    start = time.perf_counter()
    end = start + args.warmup + args.seconds
    sent: list[float] = []
    latencies: list[float] = []
    answered = 0
    deadline = end + 10.0
    next_send = start
    while answered < len(sent) or time.perf_counter() < end:
        now = time.perf_counter()
        if now > deadline:
            raise SystemExit(f"only {answered} of {len(sent)} publishes answered")
        if now >= next_send and now < end:
            sent.append(now)
            sock.sendall(b"PUB bench.ack %d\r\n" % len(sent))
            next_send += interval
        timeout = max(0.0, next_send - time.perf_counter()) if now < end else 0.1
        for _ in selector.select(timeout):
            data = sock.recv(65536)
            if not data:
                raise SystemExit("the server closed the connection")
            buffer += data
            *lines, buffer = buffer.split(b"\r\n")
            got = time.perf_counter()
            for line in lines:
                if line.startswith((b"+OK", b"-ERR")):
                    if not line.startswith(b"+OK"):
                        raise SystemExit(f"refused: {line!r}")
                    if sent[answered] - start >= args.warmup:
                        latencies.append((got - sent[answered]) * 1e6)
                    answered += 1
    latencies.sort()
    print(json.dumps({
        "rate": args.rate, "count": len(latencies),
        "p50_us": round(percentile(latencies, 0.5)),
        "p90_us": round(percentile(latencies, 0.9)),
        "p99_us": round(percentile(latencies, 0.99)),
        "max_us": round(latencies[-1]),
    }))


if __name__ == "__main__":
    main()
