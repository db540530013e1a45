"""Fanout to 100 WebSocket subscribers against 100 TCP subscribers, one server, one run.

Starts ``twistd -n txpubsub`` with a line listener and a ``--ws`` listener,
then, for each door in turn (alternating, ROUNDS times), connects SUBSCRIBERS
clients of that door to one channel, has one TCP publisher send MESSAGES
messages in one go (QUIET on), and times until every subscriber has all of
them. The readers only count (CRLFs for the line door, frame headers for the
WebSocket door: the payloads are ASCII and short, so ``0x81`` starts every
frame and appears nowhere else), so the clients cost both doors the same.

    .venv/bin/python bench/ws_fanout.py [--subscribers 100] [--messages 5000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

PAYLOAD = b"x" * 40


def start_server(tmp: str) -> tuple[subprocess.Popen[bytes], int, int]:
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    log_path = os.path.join(tmp, "server.log")
    log = open(log_path, "wb")  # a file, not a pipe: a full pipe would stall the server
    proc = subprocess.Popen(
        [twistd, "-n", "--pidfile=", "txpubsub", "--admin", "none",
         "--max-publish-rate", "0", "--max-publish-bytes", "0",
         "--port", "tcp:0:interface=127.0.0.1:backlog=1024",
         "--ws", "tcp:0:interface=127.0.0.1:backlog=1023"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    output = b""
    ports: dict[str, int] = {}
    deadline = time.monotonic() + 30
    while len(ports) < 2:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"server did not start: {output.decode(errors='replace')}")
        time.sleep(0.1)
        with open(log_path, "rb") as f:
            output = f.read()
        for desc, port in re.findall(rb"txpubsub listening on (\S+) .*?port=(\d+)", output):
            ports["ws" if b"1023" in desc else "line"] = int(port)
    return proc, ports["line"], ports["ws"]


async def line_subscriber(port: int, channel: str) -> tuple[asyncio.StreamReader, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()  # INFO
    writer.write(f"SUB {channel}\r\n".encode())
    await reader.readline()  # +OK subscribed
    return reader, writer


def masked(payload: bytes) -> bytes:
    mask = os.urandom(4)
    return (bytes((0x81, 0x80 | len(payload))) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


async def ws_subscriber(port: int, channel: str) -> tuple[asyncio.StreamReader, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: txpubsub.json\r\n\r\n"
                  ).encode())
    await reader.readuntil(b"\r\n\r\n")
    await read_frame(reader)  # info
    writer.write(masked(json.dumps({"op": "sub", "pattern": channel}).encode()))
    await read_frame(reader)  # ok
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(2)
    size = head[1] & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return await reader.readexactly(size)


async def count(reader: asyncio.StreamReader, marker: bytes, expected: int) -> None:
    seen = 0
    while seen < expected:
        data = await reader.read(1 << 20)
        if not data:
            raise SystemExit("a subscriber was disconnected")
        seen += data.count(marker)


async def one_round(door: str, line_port: int, ws_port: int, subscribers: int,
                    messages: int, channel: str) -> float:
    make = ws_subscriber if door == "ws" else line_subscriber
    port = ws_port if door == "ws" else line_port
    subs = [await make(port, channel) for _ in range(subscribers)]
    pub_reader, pub_writer = await asyncio.open_connection("127.0.0.1", line_port)
    await pub_reader.readline()
    pub_writer.write(b"QUIET on\r\n")
    await pub_reader.readline()
    marker = b"\x81" if door == "ws" else b"\r\n"
    counters = [asyncio.ensure_future(count(r, marker, messages)) for r, _ in subs]
    line = b"PUB " + channel.encode() + b" " + PAYLOAD + b"\r\n"
    start = time.perf_counter()
    pub_writer.write(line * messages)
    await asyncio.wait_for(asyncio.gather(*counters), 300)
    elapsed = time.perf_counter() - start
    for _, writer in [*subs, (pub_reader, pub_writer)]:
        writer.close()
    return subscribers * messages / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    proc, line_port, ws_port = start_server(tmp)
    results: dict[str, list[float]] = {"line": [], "ws": []}
    try:
        for n in range(args.rounds):
            for door in ("line", "ws") if n % 2 == 0 else ("ws", "line"):
                rate = await one_round(door, line_port, ws_port, args.subscribers,
                                       args.messages, f"bench.{door}.{n}")
                results[door].append(rate)
                print(f"round {n + 1} {door:4}: {rate:12,.0f} deliveries/s", flush=True)
                await asyncio.sleep(0.5)  # let the server close the last round's sockets
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    line, ws = statistics.median(results["line"]), statistics.median(results["ws"])
    print(f"median: line {line:,.0f}/s, ws {ws:,.0f}/s, ws/line {ws / line:.2f}x "
          f"({args.subscribers} subscribers each, {args.messages} messages of {len(PAYLOAD)} "
          f"bytes, {args.rounds} rounds)")


if __name__ == "__main__":
    asyncio.run(main())
