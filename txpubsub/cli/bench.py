"""``txpubsub bench``: a load generator for a txpubsub server (like ``nats bench``).

One process, one selector loop, raw non-blocking sockets: subscribers count
deliveries with ``bytes.count`` over large reads (or, in latency mode, read
the send time each payload carries), so the generator costs little next to
the server; it reports its own CPU so that this can be checked.

Throughput mode: each publisher sends batches of 100 publishes and a PING,
with at most 10 batches not yet answered (the same flow control as the
side-by-side harness). Latency mode (``--rate``): publishes go out at a
fixed rate, one at a time, carrying their send time; 10 probe subscribers
time every delivery, the others count theirs.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import selectors
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

BATCH = 100
IN_FLIGHT = 10
PROBES = 10
DRAIN = 0.005
OPEN = sys.maxsize  # a publish count not known yet


@dataclass
class Conn:
    sock: socket.socket
    role: str  # "sub", "probe" (a subscriber whose latencies are read) or "pub"
    buffer: bytes = b""
    received: int = 0
    tail: bytes = b""
    pongs: int = 0
    latencies: list[float] = field(default_factory=list)


def _connect(host: str, port: int) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError as e:
        raise SystemExit(f"txpubsub bench: cannot connect to {host}:{port}: "
                         f"{e.strerror or e}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("txpubsub bench: the server closed the connection")
        data += chunk
    if not data.startswith(b"INFO "):
        raise SystemExit(f"txpubsub bench: unexpected greeting {data[:60]!r}")
    return sock


def _request(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line + b"\r\n")
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("txpubsub bench: the server closed the connection")
        data += chunk
    if data.startswith(b"-ERR"):
        raise SystemExit(f"txpubsub bench: the server refused {line!r}: {data.strip()!r}")
    return data


def _address(server: str) -> tuple[str, int]:
    from txpubsub.cli.connect import parse_server

    try:
        parsed = parse_server(server)
    except ValueError as e:
        raise SystemExit(f"txpubsub bench: --server: {e}") from None
    if not parsed.host or parsed.tls:
        raise SystemExit(f"txpubsub bench: --server must be a plain HOST:PORT, not {server!r}")
    return parsed.host, parsed.port


def run(args: argparse.Namespace) -> dict[str, object]:
    """Run one benchmark; returns the figures (also printed by ``main``)."""
    host, port = _address(args.server)
    channels = [f"bench.{i}" for i in range(args.channels)]
    subs = []
    for i in range(args.subs):
        sock = _connect(host, port)
        _request(sock, f"SUB {channels[i % len(channels)]}".encode())
        # In latency mode a few subscribers read every send time; the rest only
        # count, so that the generator stays cheap next to the server.
        subs.append(Conn(sock, "probe" if args.rate and i < PROBES else "sub"))
    pubs = []
    for _ in range(args.pubs):
        sock = _connect(host, port)
        _request(sock, b"QUIET on")
        pubs.append(Conn(sock, "pub"))
    per_channel = [sum(1 for i in range(args.subs) if i % len(channels) == c)
                   for c in range(len(channels))]
    per_cycle = sum(per_channel)

    def expected_for(count: int) -> int:
        """Deliveries owed for the first ``count`` publishes (round-robin channels)."""
        cycles, left = divmod(count, len(channels))
        return cycles * per_cycle + sum(per_channel[:left])

    # With --duration the count is OPEN until the time is up (or the run gives up).
    total = OPEN if args.duration else args.msgs
    for conn in subs + pubs:
        # Reads come after select says so; sends may wait (sendall needs that).
        conn.sock.settimeout(args.timeout)
    selector = selectors.DefaultSelector()
    # In latency mode only the probes wake the loop; the other subscribers are
    # drained every DRAIN seconds (they must still get everything).
    bulk = [conn for conn in subs if args.rate and conn.role == "sub"]
    for conn in subs + pubs:
        if conn not in bulk:
            selector.register(conn.sock, selectors.EVENT_READ, conn)
    next_drain = 0.0

    filler = b"x" * max(0, args.size - 20)
    sent = 0
    batches_sent = [0] * len(pubs)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    stop_sending = start + args.duration if args.duration else float("inf")
    last_progress = start  # given up after --timeout seconds without any
    next_progress = start + 0.25
    interval = 1.0 / args.rate if args.rate else 0.0
    next_send = start
    delivered = 0
    show_progress = args.progress and sys.stderr.isatty()

    def publish_batch(i: int) -> None:
        nonlocal sent
        count = min(BATCH, total - sent)
        lines = []
        for n in range(sent, sent + count):
            lines.append(b"PUB %s %s\r\n" % (channels[n % len(channels)].encode(), filler))
        sent += count
        pubs[i].sock.sendall(b"".join(lines) + b"PING\r\n")
        batches_sent[i] += 1

    expected = OPEN if total == OPEN else expected_for(total)
    gave_up = False
    while delivered < expected:
        now = time.perf_counter()
        if total == OPEN and now >= stop_sending:
            total, expected = sent, expected_for(sent)
            continue
        if args.rate:
            while sent < total and now >= next_send:
                pub = pubs[sent % len(pubs)]
                payload = b"%d %s" % (time.perf_counter_ns(), filler)
                pub.sock.sendall(b"PUB %s %s\r\n" % (channels[sent % len(channels)].encode(),
                                                     payload))
                sent += 1
                next_send += interval
                last_progress = now  # a slow rate waits between sends on purpose
        else:
            for i, pub in enumerate(pubs):
                while sent < total and batches_sent[i] - pub.pongs < IN_FLIGHT:
                    publish_batch(i)
        if now - last_progress > args.timeout:
            gave_up = True
            break
        timeout = max(0.0, next_send - time.perf_counter()) if args.rate and sent < total else 0.05
        ready = [key.data for key, _ in selector.select(min(timeout, DRAIN) if bulk else timeout)]
        if bulk and time.perf_counter() >= next_drain:
            next_drain = time.perf_counter() + DRAIN
            ready.extend(bulk)
        for conn in ready:
            if conn.role == "sub" and args.rate:  # drained on a timer: may have nothing
                conn.sock.setblocking(False)
                try:
                    data = conn.sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                finally:
                    conn.sock.settimeout(args.timeout)
            else:
                data = conn.sock.recv(1 << 20)
            if not data:
                raise SystemExit("txpubsub bench: the server closed a connection")
            last_progress = now
            if conn.role == "pub":  # PONGs: batches the server has taken
                joined = conn.tail + data
                conn.pongs += joined.count(b"PONG\r\n")
                conn.tail = joined[-5:]
                continue
            if conn.role == "probe":
                arrived = time.perf_counter_ns()
                conn.buffer += data
                *lines, conn.buffer = conn.buffer.split(b"\r\n")
                for line in lines:
                    if line.startswith(b"MSG "):
                        stamp = int(line.split(b" ", 5)[4])
                        conn.latencies.append((arrived - stamp) / 1000.0)
                        conn.received += 1
                        delivered += 1
            else:
                joined = conn.tail + data
                found = joined.count(b"MSG bench.")
                conn.tail = joined[-9:]  # a delivery's head may straddle two reads
                conn.received += found
                delivered += found
        if show_progress and now >= next_progress:
            next_progress = now + 0.25
            if total == OPEN:  # --duration: progress is time
                done = min(1.0, (now - start) / args.duration)
                count = f"{delivered:,} deliveries"
            else:
                done = delivered / expected if expected else 1.0
                count = f"{delivered:,}/{expected:,} deliveries"
            bar = "#" * int(done * 30)
            sys.stderr.write(f"\r[{bar:<30}] {done:6.1%} {count}")
            sys.stderr.flush()
    if total == OPEN:  # gave up before --duration was up
        expected = expected_for(sent)
    # A run that gave up is timed to its last sign of life, not its dead time.
    elapsed = (last_progress if gave_up else time.perf_counter()) - start
    elapsed = max(elapsed, 1e-6)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    if show_progress:
        sys.stderr.write("\r" + " " * 70 + "\r")
    for conn in subs + pubs:
        conn.sock.close()
    own_cpu = (cpu_after.ru_utime - cpu_before.ru_utime
               + cpu_after.ru_stime - cpu_before.ru_stime)
    result: dict[str, object] = {
        "publishers": args.pubs, "subscribers": args.subs, "channels": args.channels,
        "size": args.size, "published": sent, "deliveries": delivered, "expected": expected,
        "complete": sent > 0 and delivered >= expected, "elapsed_s": round(elapsed, 3),
        "publishes_per_s": round(sent / elapsed), "deliveries_per_s": round(delivered / elapsed),
        "bench_cpu_s": round(own_cpu, 3), "bench_cpu_share": round(own_cpu / elapsed, 2),
    }
    if args.rate:
        samples = sorted(x for conn in subs for x in conn.latencies)
        if samples:
            def pct(p: float) -> float:
                return round(samples[min(len(samples) - 1, int(p * len(samples)))], 1)

            result.update(rate=args.rate, p50_us=pct(0.5), p90_us=pct(0.9), p99_us=pct(0.99),
                          p999_us=pct(0.999), max_us=round(samples[-1], 1))
    return result


DESCRIPTION = """\
Measure a server: subscribers on bench.0..N-1, publishers sending as fast
as the server takes them (throughput), or at --rate per second with each
delivery timed (latency). Plain TCP only; see docs/benchmarks.md."""

EXAMPLES = """\
examples:
  txpubsub bench --subs 100 --msgs 100000
  txpubsub bench --subs 1000 --channels 10 --duration 10 --json
  txpubsub bench --subs 50 --rate 1000 --msgs 10000     latency percentiles"""


def add_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    parser.add_argument("-s", "--server", default=env.get("TXPUBSUB_SERVER", "127.0.0.1:23400"),
                        help="HOST:PORT or tcp:HOST:PORT (default: $TXPUBSUB_SERVER or "
                             "127.0.0.1:23400)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds without progress before giving up (default 10)")
    parser.add_argument("--pubs", type=int, default=1, help="publisher connections (default 1)")
    parser.add_argument("--subs", type=int, default=10, help="subscriber connections (default 10)")
    parser.add_argument("--channels", type=int, default=1,
                        help="channels bench.0..N-1; subscribers spread over them (default 1)")
    parser.add_argument("--size", type=int, default=64, help="payload bytes (default 64)")
    parser.add_argument("--msgs", type=int, default=100000,
                        help="messages to publish (default 100000)")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="publish for this many seconds instead of --msgs")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="latency mode: publishes per second, each timed (default: off)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar on stderr")


def main(args: argparse.Namespace) -> int:
    for name in ("pubs", "subs", "channels", "msgs", "size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"txpubsub bench: --{name} must be at least 1")
    if not (math.isfinite(args.duration) and args.duration >= 0):
        raise SystemExit("txpubsub bench: --duration must be a number of seconds (0: use --msgs)")
    if args.rate and args.size < 24:
        args.size = 24  # room for the send time
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['published']:,} publishes to {args.subs} subscribers "
              f"({args.channels} channels, {args.size} B) in {result['elapsed_s']} s")
        print(f"  {result['deliveries_per_s']:,} deliveries/s, "
              f"{result['publishes_per_s']:,} publishes/s, "
              f"{result['deliveries']:,}/{result['expected']:,} delivered")
        if "p50_us" in result:
            print(f"  latency at {args.rate:g}/s: p50 {result['p50_us']} us, "
                  f"p90 {result['p90_us']} us, p99 {result['p99_us']} us, "
                  f"p99.9 {result['p999_us']} us, max {result['max_us']} us")
        print(f"  bench itself: {result['bench_cpu_s']} s CPU "
              f"({result['bench_cpu_share']:.0%} of one core)")
    return 0 if result["complete"] else 1
