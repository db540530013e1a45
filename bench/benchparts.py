"""What several bench scripts share: a subscriber that only counts, and a
throwaway redis-server on a free port."""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


class CountingReader:
    """A Session that only counts what it is handed (no socket, no output)."""

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


@contextmanager
def redis_server() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A redis-server on a free 127.0.0.1 port, no persistence: (process, port)."""
    tmp = tempfile.mkdtemp()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    redis = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield redis, port
    finally:
        redis.terminate()
        redis.wait(timeout=15)
        shutil.rmtree(tmp, ignore_errors=True)
