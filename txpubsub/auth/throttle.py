"""How fast passwords may be tried across connections (docs/auth.md, "Password
guessing").

A connection tries one password at a time, each failure answered a second
after its AUTH, three at most (``Login``). Across connections:

- at most ``max_checks`` password checks run at once (scrypt is slow on
  purpose and runs on the thread pool): an AUTH past that is refused at once,
  unchecked, with ``unavailable``, so a flood of guesses cannot queue real
  users' logins behind it;
- each address has ``burst`` tries that may fail, and gets one more every
  ``refill`` seconds (a token bucket); a check in progress holds one, given
  back if the password was right. An AUTH from an address with none left is
  refused at once, unchecked, with ``rate-limited`` and how long to wait.
  Loopback and Unix-socket peers are exempt: a local reverse proxy brings
  every client from 127.0.0.1.

Neither refusal counts as a failure of the connection (nothing was checked).
"""
from __future__ import annotations

import ipaddress
import math

from twisted.internet.interfaces import IReactorTime

from txpubsub.wire.errors import HubError

MAX_CHECKS = 4
FAILURE_BURST = 10
FAILURE_REFILL = 6.0  # seconds: 10 failures a minute, once the burst is spent
MAX_ADDRESSES = 100000  # addresses remembered; the oldest go first past it


def exempt(host: str) -> bool:
    """A peer on this machine (loopback, Unix socket): no per-address budget."""
    if host.startswith("unix:"):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


class LoginThrottle:
    """Password checks in progress, server-wide, and each address's failure budget."""

    def __init__(self, clock: IReactorTime, max_checks: int = MAX_CHECKS,
                 burst: int = FAILURE_BURST, refill: float = FAILURE_REFILL,
                 max_addresses: int = MAX_ADDRESSES) -> None:
        self.clock = clock
        self.max_checks = max_checks
        self.burst = burst
        self.refill = refill
        self.max_addresses = max_addresses
        self.checking = 0
        # host -> (tries left, when counted), least recently counted first;
        # a host with a full budget is not kept.
        self._budgets: dict[str, tuple[float, float]] = {}

    def _left(self, host: str, now: float) -> float:
        found = self._budgets.get(host)
        if found is None:
            return float(self.burst)
        left, then = found
        return min(float(self.burst), left + (now - then) / self.refill)

    def admit(self, host: str) -> None:
        """Start a password check for a client at ``host``, or refuse it with
        HubError unavailable (too many checks at once) or rate-limited (the
        address has failed too often)."""
        if self.checking >= self.max_checks:
            raise HubError("unavailable", f"{self.checking} passwords are being checked, the "
                                          "most at once; try again in a moment")
        if not exempt(host):
            now = self.clock.seconds()
            left = self._left(host, now)
            if left < 1:
                wait = math.ceil((1 - left) * self.refill)
                raise HubError("rate-limited", f"too many failed logins from {host}; try "
                                               f"again in {wait} s")
            self._store(host, left - 1, now)
        self.checking += 1

    def done(self, host: str, failed: bool) -> None:
        """The check started by ``admit`` is over; a right password gives its
        try back."""
        self.checking -= 1
        if not failed and not exempt(host):
            now = self.clock.seconds()
            self._store(host, self._left(host, now) + 1, now)

    def _store(self, host: str, left: float, now: float) -> None:
        budgets = self._budgets
        budgets.pop(host, None)
        if left >= self.burst:
            return  # a full budget is the same as none remembered
        while len(budgets) >= self.max_addresses:
            del budgets[next(iter(budgets))]  # the least recently counted
        budgets[host] = (left, now)
