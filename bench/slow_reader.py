#!/usr/bin/env python3
"""Flood one channel as fast as the socket takes it while one subscriber reads
at full speed (or with a pause per read), and report whether that subscriber
kept up or was cut off as a slow consumer. Loopback only.

    python bench/slow_reader.py --port 23400 --count 200000 --size 200 [--hiccup 0.3]

--hiccup S: halfway through, the reader stops reading for S seconds (a GC
pause, a busy moment), then reads at full speed again.

Used to measure publisher pacing (--max-stall) in docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import socket
import threading
import time


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.recv(65536)  # INFO
    return sock


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=200000)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--read-pause", type=float, default=0.0, help="seconds to sleep per recv")
    ap.add_argument("--hiccup", type=float, default=0.0, help="seconds not reading, halfway")
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()

    reader = connect(a.port)
    reader.sendall(b"SUB flood\r\n")
    reader.recv(65536)
    writer = connect(a.port)
    writer.sendall(b"QUIET on\r\n")
    writer.recv(65536)
    writer.settimeout(a.timeout)
    reader.settimeout(a.timeout)

    line = b"PUB flood " + b"x" * a.size + b"\r\n"
    # The publisher has its own thread, so a reader's hiccup does not stop it.
    flood = threading.Thread(target=writer.sendall, args=(line * a.count,), daemon=True)
    got = 0
    tail = b""
    cut = ""
    start = time.perf_counter()
    flood.start()
    while got < a.count and not cut:
        data = reader.recv(1 << 20)
        if not data:
            cut = "closed"
            break
        chunk = tail + data
        got += chunk.count(b"MSG flood ")
        tail = chunk[-9:] if not chunk.endswith(b"\n") else b""
        if b"BYE " in chunk:
            cut = chunk[chunk.index(b"BYE "):].split(b"\r\n")[0].decode()
        if a.read_pause:
            time.sleep(a.read_pause)
        if a.hiccup and got >= a.count // 2:
            time.sleep(a.hiccup)
            a.hiccup = 0.0
    elapsed = time.perf_counter() - start
    print(f"delivered {got}/{a.count} in {elapsed:.2f}s "
          f"({got / elapsed:,.0f} msg/s, {got * (a.size + 20) / elapsed / 1e6:.1f} MB/s); "
          f"{'cut off: ' + cut if cut else 'kept up'}")


if __name__ == "__main__":
    main()
