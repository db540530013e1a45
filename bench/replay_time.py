#!/usr/bin/env python3
"""How long a resume takes: publish N messages to a channel that keeps them,
then time `SUB <channel> since=0` from the request to its `+OK`, over
loopback, repeated. Loopback only.

    python bench/replay_time.py --port 23400 --count 300 --repeat 50
"""
from __future__ import annotations

import argparse
import socket
import statistics
import time


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.recv(65536)  # INFO
    return sock


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise SystemExit("server closed the connection")
        data += chunk
    return data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=50)
    a = ap.parse_args()
    channel = b"replay.%d" % time.time_ns()
    pub = connect(a.port)
    pub.sendall(b"CREATE %s history=%d\r\n" % (channel, a.count))
    read_until(pub, b"\r\n")
    publish = b"PUB %s %s\r\n" % (channel, b"x" * a.size)
    pub.sendall(b"QUIET on\r\n" + publish * a.count + b"PING\r\n")
    read_until(pub, b"PONG\r\n")
    times = []
    for _ in range(a.repeat):
        sub = connect(a.port)
        start = time.perf_counter()
        sub.sendall(b"SUB %s since=0\r\n" % channel)
        data = read_until(sub, b"+OK subscribed")
        times.append(time.perf_counter() - start)
        assert data.count(b"MSG ") == a.count, data.count(b"MSG ")
        sub.close()
    print(f"replay of {a.count} x {a.size} B: median {statistics.median(times) * 1e3:.2f} ms, "
          f"best {min(times) * 1e3:.2f} ms, worst {max(times) * 1e3:.2f} ms "
          f"over {a.repeat} resumes")


if __name__ == "__main__":
    main()
