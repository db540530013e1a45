"""Redis's CPU per txpubsub publish, against how many servers read the channel.

Starts its own ``redis-server`` and runs the backplane's publish script
(txpubsub.backplane.scripts.PUBLISH_SCRIPT, by EVALSHA, pipelined) MESSAGES
times with SERVERS pub/sub connections subscribed to the channel: plain
sockets standing in for servers (Redis does the same work for them; what
does not fit their socket buffers waits in Redis's output buffers). Redis's
CPU time comes from /proc, so the figure is what one Redis core spends per
publish: the script, plus one PUBLISH write per server.

    .venv/bin/python bench/redis_fanout.py [--messages 50000] [--servers 0,1,3,10,30]
"""
from __future__ import annotations

import argparse
import os
import socket
import time

from benchparts import redis_server

from txpubsub.backplane.connection import _command
from txpubsub.backplane.scripts import PUBLISH_SCRIPT

TICKS = os.sysconf("SC_CLK_TCK")
PAYLOAD = b"x" * 64


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def read_replies(sock: socket.socket, count: int) -> None:
    """Read until ``count`` replies have come (each publish's is one array of two)."""
    seen = 0
    data = b""
    while seen < count:
        data += sock.recv(1 << 20)
        seen += data.count(b"*2\r\n")
        data = data[data.rfind(b"\r\n") + 2:] if b"\r\n" in data else data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50000)
    parser.add_argument("--servers", default="0,1,3,10,30")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with redis_server() as (redis, port):
        for _ in range(100):
            try:
                conn = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                time.sleep(0.05)
        conn.sendall(_command("SCRIPT", "LOAD", PUBLISH_SCRIPT))
        sha = conn.recv(1024).split(b"\r\n")[1]
        results: dict[int, list[float]] = {}
        for round_ in range(args.rounds):
            for servers in [int(n) for n in args.servers.split(",")]:
                channel = f"bench.{round_}.{servers}"
                subscribers = [socket.create_connection(("127.0.0.1", port))
                               for _ in range(servers)]
                for sub in subscribers:
                    sub.sendall(_command("SUBSCRIBE", "txpubsub:m:" + channel))
                    sub.recv(1024)
                publish = _command(
                    "EVALSHA", sha, 5, "txpubsub:epoch", "txpubsub:floors",
                    "txpubsub:id:" + channel, "txpubsub:s:" + channel, "txpubsub:ch:" + channel,
                    "c1", PAYLOAD, 100, "bench", 360, "srv", "txpubsub:m:" + channel, 1, channel)
                before = cpu_seconds(redis.pid)
                for _ in range(0, args.messages, 1000):
                    conn.sendall(publish * 1000)
                    read_replies(conn, 1000)
                used = cpu_seconds(redis.pid) - before
                results.setdefault(servers, []).append(used / args.messages * 1e6)
                for sub in subscribers:
                    sub.close()
        for servers, figures in results.items():
            print(f"{servers:3} servers reading: {min(figures):5.1f} us of Redis CPU per publish "
                  f"(best of {args.rounds}: {', '.join(f'{f:.1f}' for f in figures)})")


if __name__ == "__main__":
    main()
