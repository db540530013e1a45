"""Refused peers, logged without letting a scan flood the log.

Protected mode refuses every connection from other machines, and a password
guesser's logins get refused for a while (txpubsub.auth.throttle): both
happen as often as a peer likes. ``RefusalLog`` logs the first refusal of
each address in an interval in full, at most ``burst`` such lines per
interval in all, and counts the rest, said in one summary line when the
interval ends ("412 more refusals not logged in the last 60 s: protected
mode 400 from 37 addresses, ...").
"""
from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

INTERVAL = 60.0
BURST = 100
# Distinct addresses counted per kind for the summary; past it, "at least".
MAX_COUNTED = 10000


def peer_host(address: str) -> str:
    """The host of a peer address as sessions describe it (``1.2.3.4:5678``,
    ``[::1]:5678``, ``unix:/path``): what one machine's connections share."""
    if address.startswith("["):
        return address[1:address.find("]")]
    if address.startswith("unix:"):
        return address
    return address.rsplit(":", 1)[0]


class _Left:
    """Refusals of one kind not logged in this interval."""

    __slots__ = ("count", "hosts")

    def __init__(self) -> None:
        self.count = 0
        self.hosts: set[str] = set()


class RefusalLog:
    """One line per refused address per interval, and a summary of the rest."""

    _log = Logger()

    def __init__(self, clock: IReactorTime, interval: float = INTERVAL,
                 burst: int = BURST) -> None:
        self.clock = clock
        self.interval = interval
        self.burst = burst
        self._last: dict[tuple[str, str], float] = {}  # (kind, host) -> last logged
        self._window = float("-inf")  # when the current interval began
        self._logged = 0  # full lines in the current interval
        self._left: dict[str, _Left] = {}
        self._summary: IDelayedCall | None = None

    def refused(self, log: Logger, kind: str, address: str, format: str,
                **fields: Any) -> bool:
        """Log a refusal of ``address`` (``format`` and ``fields`` through
        ``log``, at warn) unless this address's refusals of this ``kind`` were
        logged within the interval or the interval's burst is spent; then
        count it for the summary. True if it was logged."""
        now = self.clock.seconds()
        if now - self._window >= self.interval:
            self._window = now
            self._logged = 0
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval}
        host = peer_host(address)
        key = (kind, host)
        last = self._last.get(key)
        if (last is None or now - last >= self.interval) and self._logged < self.burst:
            self._last[key] = now
            self._logged += 1
            log.warn(format, address=address, **fields)
            return True
        left = self._left.get(kind)
        if left is None:
            left = self._left[kind] = _Left()
        left.count += 1
        if len(left.hosts) < MAX_COUNTED:
            left.hosts.add(host)
        if self._summary is None:
            self._summary = self.clock.callLater(self.interval, self._summarize)
        return False

    def _summarize(self) -> None:
        self._summary = None
        left, self._left = self._left, {}
        total = sum(k.count for k in left.values())
        parts = []
        for kind, k in sorted(left.items()):
            some = "at least " if len(k.hosts) >= MAX_COUNTED else ""
            parts.append(f"{kind} {k.count} from {some}{len(k.hosts)} "
                         f"address{'' if len(k.hosts) == 1 else 'es'}")
        self._log.warn("{count} more refusals not logged in the last {interval:g} s: {kinds}",
                       count=total, interval=self.interval, kinds=", ".join(parts))

    def stop(self) -> None:
        """No summary is due any more (the server is stopping)."""
        if self._summary is not None and self._summary.active():
            self._summary.cancel()
        self._summary = None
