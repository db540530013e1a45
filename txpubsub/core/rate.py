"""Per-connection publish rates: messages a second and payload bytes a second.

Checked once per publish (direct messages included) against the hub's
clock: past the rate, the publish is refused with ``-ERR rate-limited`` and
nothing is kept or delivered. Each limit is a token bucket holding one
second's worth, so a connection that was quiet may send that much at once
(its burst). Written as GCRA (the "virtual scheduling" form of a token
bucket): one time per limit, the moment the connection's budget would be
whole again, so a publish costs two additions and two comparisons.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from txpubsub.wire.errors import HubError

if TYPE_CHECKING:
    from txpubsub.core.stats import Counters


class PublishBudget:
    """What one connection may still publish now.

    ``rate`` is messages a second and ``byte_rate`` bytes a second (0 turns
    either off). ``largest`` is the largest payload allowed: the byte bucket
    holds at least that much, so any allowed message can be sent. A refusal
    is counted in ``counters.rate_limited`` (the server's, if given).
    """

    __slots__ = (
        "byte_cost",
        "byte_rate",
        "byte_window",
        "bytes_due",
        "cost",
        "counters",
        "due",
        "rate",
        "window",
    )

    def __init__(self, rate: float, byte_rate: float, now: float, largest: int = 0,
                 counters: Counters | None = None) -> None:
        self.counters = counters
        self.rate = rate
        self.byte_rate = byte_rate
        # Seconds of budget one message, and one byte, use up.
        self.cost = 1.0 / rate if rate else 0.0
        self.byte_cost = 1.0 / byte_rate if byte_rate else 0.0
        # How far ahead of now the budget may be spent: a second's worth
        # (a little more, so that float rounding never refuses the last one).
        self.window = 1.0 + self.cost / 2
        self.byte_window = max(1.0, largest * self.byte_cost) + 1e-9
        # When the budget is whole again; now or earlier: it is whole now.
        self.due = self.bytes_due = now

    def take(self, size: int, now: float) -> None:
        """Spend one message of ``size`` bytes, or raise HubError rate-limited."""
        due = (self.due if self.due > now else now) + self.cost
        bytes_due = (self.bytes_due if self.bytes_due > now else now) + size * self.byte_cost
        if due - now > self.window:
            self._refused()
            raise HubError("rate-limited", f"over {self.rate:.0f} messages a second; slow down")
        if bytes_due - now > self.byte_window:
            self._refused()
            raise HubError("rate-limited", f"over {self.byte_rate:.0f} bytes a second; slow down")
        self.due = due
        self.bytes_due = bytes_due

    def _refused(self) -> None:
        if self.counters is not None:
            self.counters.rate_limited += 1
