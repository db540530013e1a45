"""Fanout through one, two and three ``--redis`` servers on one Redis, against
one server without Redis, in one run.

Starts its own ``redis-server`` and ``twistd -n txpubsub`` servers (all on
127.0.0.1), spreads SUBSCRIBERS line clients evenly over the servers of a
setup, all on one channel, and has one publisher on the first server send
MESSAGES 64-byte messages (QUIET on) in batches of 100 followed by a PING,
at most 10 batches un-PONGed (as ../shared/bench's fanout). It times until
every subscriber has every message, and reads the CPU time the servers and
Redis spent meanwhile from /proc. Setups alternate, ROUNDS times; the
medians are printed.

    .venv/bin/python bench/cluster.py [--subscribers 120] [--messages 20000] [--rounds 3]
        [--setups "memory,redis x1"] [--before OTHER_CHECKOUT/.venv/bin/python]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

PAYLOAD = b"x" * 64
BATCH = 100
IN_FLIGHT = 10
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start_redis(tmp: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start") from None
            time.sleep(0.05)


def start_server(tmp: str, name: str, redis_port: int | None,
                 python: str = sys.executable) -> tuple[subprocess.Popen[bytes], int]:
    twistd = os.path.join(os.path.dirname(python), "twistd")
    log_path = os.path.join(tmp, f"{name}.log")
    log = open(log_path, "wb")  # a file, not a pipe: a full pipe would stall the server
    extra = [] if redis_port is None else ["--redis", f"redis://127.0.0.1:{redis_port}/0"]
    proc = subprocess.Popen(
        [twistd, "-n", "--pidfile=", "txpubsub", "--admin", "none",
         "--max-publish-rate", "0", "--max-publish-bytes", "0",
         "--port", "tcp:0:interface=127.0.0.1:backlog=1024", *extra],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    deadline = time.monotonic() + 30
    while True:
        with open(log_path, "rb") as f:
            output = f.read()
        found = re.search(rb"txpubsub listening on .*?port=(\d+)", output)
        if found and (redis_port is None or b"redis: connected" in output):
            return proc, int(found.group(1))
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"server did not start: {output.decode(errors='replace')}")
        time.sleep(0.1)


async def subscriber(port: int, channel: str) -> tuple[asyncio.StreamReader, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()  # INFO
    writer.write(f"SUB {channel}\r\n".encode())
    line = await reader.readline()
    assert line.startswith(b"+OK subscribed"), line
    return reader, writer


async def count(reader: asyncio.StreamReader, expected: int) -> None:
    seen = 0
    while seen < expected:
        data = await reader.read(1 << 16)
        if not data:
            raise SystemExit("a subscriber was disconnected")
        seen += data.count(b"\r\n")


async def publish(port: int, channel: str, messages: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    writer.write(b"QUIET on\r\n")
    await reader.readline()
    batch = (b"PUB " + channel.encode() + b" " + PAYLOAD + b"\r\n") * BATCH + b"PING\r\n"
    sent = acked = 0
    while acked < messages // BATCH:
        while sent < messages // BATCH and sent - acked < IN_FLIGHT:
            writer.write(batch)
            sent += 1
        line = await reader.readline()
        if line.startswith(b"PONG"):
            acked += 1
        elif not line.startswith(b"PING"):
            raise SystemExit(f"publisher got {line!r}")
    writer.close()


async def one_round(ports: list[int], pids: list[int], subscribers: int, messages: int,
                    channel: str) -> dict[str, float]:
    subs = [await subscriber(ports[i % len(ports)], channel) for i in range(subscribers)]
    await asyncio.sleep(0.2)  # the servers' SUBSCRIBEs in Redis
    counters = [asyncio.ensure_future(count(r, messages)) for r, _ in subs]
    before = [cpu_seconds(pid) for pid in pids]
    start = time.perf_counter()
    await publish(ports[0], channel, messages)
    await asyncio.wait_for(asyncio.gather(*counters), 600)
    elapsed = time.perf_counter() - start
    used = [cpu_seconds(pid) - b for pid, b in zip(pids, before)]
    for _, writer in subs:
        writer.close()
    deliveries = subscribers * messages
    return {"deliveries/s": deliveries / elapsed, "publishes/s": messages / elapsed,
            # the txpubsub servers' CPU, all together, per million deliveries
            "srv CPU s/M": sum(used[:len(ports)]) / deliveries * 1e6,
            "redis us/publish": used[-1] / messages * 1e6 if len(pids) > len(ports) else 0.0}


def commit() -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
    return found.stdout.strip() or "unknown"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=120)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--setups", default="memory,redis x1,redis x2,redis x3",
                        help="which setups to run, comma-separated")
    parser.add_argument("--before", metavar="PYTHON",
                        help="also run 'before x1': one --redis server from another "
                             "checkout's venv (its python), to compare two versions")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    redis, redis_port = start_redis(tmp)
    known = {"memory": (1, None), "redis x1": (1, redis_port), "redis x2": (2, redis_port),
             "redis x3": (3, redis_port)}
    setups = {name: known[name] for name in args.setups.split(",")}
    if args.before:
        setups["before x1"] = (1, redis_port)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in setups}
    try:
        for n in range(args.rounds):
            order = list(setups) if n % 2 == 0 else list(reversed(setups))
            for name in order:
                servers, port = setups[name]
                python = args.before if name == "before x1" else sys.executable
                procs = [start_server(tmp, f"{name.replace(' ', '')}-{i}", port, python)
                         for i in range(servers)]
                pids = [p.pid for p, _ in procs] + ([redis.pid] if port else [])
                try:
                    row = await one_round([p for _, p in procs], pids, args.subscribers,
                                          args.messages, f"bench.{n}")
                finally:
                    for proc, _ in procs:
                        proc.terminate()
                    for proc, _ in procs:
                        proc.wait(timeout=15)
                results[name].append(row)
                print(f"round {n + 1} {name:9}: " + ", ".join(
                    f"{k} {v:,.2f}" for k, v in row.items()), flush=True)
    finally:
        redis.terminate()
        redis.wait(timeout=15)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ncommit {commit()}; medians of {args.rounds} rounds ({args.subscribers} "
          f"subscribers spread over the servers, {args.messages} messages of {len(PAYLOAD)} "
          f"bytes, publisher on the first server; load average {os.getloadavg()[0]:.1f}):")
    base_rows = results.get("memory") or next(iter(results.values()))
    base = statistics.median(r["deliveries/s"] for r in base_rows)
    base_cpu = statistics.median(r["srv CPU s/M"] for r in base_rows)
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(f"{name:9} deliveries/s {med['deliveries/s']:12,.0f} "
              f"({med['deliveries/s'] / base:.2f}x memory), publishes/s "
              f"{med['publishes/s']:8,.0f}, servers' CPU {med['srv CPU s/M']:.3f} s/M "
              f"deliveries ({med['srv CPU s/M'] / base_cpu:.2f}x memory), Redis "
              f"{med['redis us/publish']:.1f} us CPU/publish")
    if "memory" in results:
        # Each round's own ratio, which the machine's load moves less.
        for name, rows in results.items():
            ratios = [r["srv CPU s/M"] / m["srv CPU s/M"] for r, m in zip(rows, results["memory"])]
            print(f"{name:9} servers' CPU / memory's in the same round: median "
                  f"{statistics.median(ratios):.2f}x ({', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    asyncio.run(main())
