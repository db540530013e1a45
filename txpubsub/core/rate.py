"""Per-connection publish rates: messages a second and payload bytes a second.

Checked once per publish (direct messages included) against the hub's
clock: past the rate, the publish is refused with ``-ERR rate-limited`` and
nothing is kept or delivered. Each limit is a token bucket holding one
second's worth, so a connection that was quiet may send that much at once
(its burst). Written as GCRA (the "virtual scheduling" form of a token
bucket): one time per limit, the moment the connection's budget would be
whole again.

A publish does not look at the buckets each time: it spends from a small
prepaid allowance (``left`` messages, ``left_bytes`` bytes: two
subtractions, written out in the hub), which is taken from the buckets 1%
of a second's worth at a time when it runs out. Taken early, it is
charged early, so a connection is never let through faster than its rates;
what it had prepaid and not spent before a pause may add 1% to the burst
after it.
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
        "chunk",
        "chunk_bytes",
        "cost",
        "counters",
        "due",
        "left",
        "left_bytes",
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
        # Prepaid: spent without the buckets, taken from them ``chunk`` (1% of
        # a second's worth) at a time. An unlimited side never runs out.
        unlimited = 1 << 62
        self.chunk = max(1, int(rate) // 100) if rate else unlimited
        self.chunk_bytes = max(1, int(byte_rate) // 100) if byte_rate else unlimited
        self.left = 0 if rate else unlimited
        self.left_bytes = 0 if byte_rate else unlimited

    def spend(self, size: int, now: float) -> None:
        """Spend one message of ``size`` bytes, or raise HubError rate-limited
        (Hub.publish writes the prepaid part out)."""
        self.left -= 1
        self.left_bytes -= size
        if self.left < 0 or self.left_bytes < 0:
            self.refill(size, now)

    def refill(self, size: int, now: float) -> None:
        """The prepaid allowance cannot pay for the message being spent (it
        went below zero): take more from the buckets and pay for it, or give
        its share back and raise HubError rate-limited."""
        self.left += 1
        self.left_bytes += size
        due, bytes_due = self.due, self.bytes_due
        more = more_bytes = 0
        if self.left < 1:
            start = due if due > now else now
            more = self.chunk
            if start + more * self.cost - now > self.window:
                more = 1  # less than the chunk is left: just this one, if it fits
            due = start + more * self.cost
        if self.left_bytes < size:
            start = bytes_due if bytes_due > now else now
            more_bytes = max(self.chunk_bytes, size - self.left_bytes)
            if start + more_bytes * self.byte_cost - now > self.byte_window:
                more_bytes = size - self.left_bytes
            bytes_due = start + more_bytes * self.byte_cost
        self._take_at(due, bytes_due, now)
        self.left += more - 1
        self.left_bytes += more_bytes - size

    def _take_at(self, due: float, bytes_due: float, now: float) -> None:
        """Move the buckets' due times to ``due`` and ``bytes_due``, or raise
        HubError rate-limited if either is past its window."""
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
