"""Per-connection publish rates: a token bucket for messages and one for bytes.

Checked once per publish (direct messages included) against the hub's
clock: past the rate, the publish is refused with ``-ERR rate-limited`` and
nothing is kept or delivered. Each bucket holds one second's worth, so a
connection that was quiet may send that much at once (its burst).
"""
from __future__ import annotations

from txpubsub.wire.errors import HubError

# A rate that is off (0 in the options) as a bucket that never runs dry.
UNLIMITED = 1e18


class PublishBudget:
    """What one connection may still publish now; refilled as time passes.

    ``rate`` is messages a second and ``byte_rate`` bytes a second
    (UNLIMITED for either turns that one off).
    """

    __slots__ = ("at", "burst", "byte_burst", "byte_rate", "bytes", "messages", "rate")

    def __init__(self, rate: float, byte_rate: float, now: float, largest: int = 0) -> None:
        self.rate = rate
        self.byte_rate = byte_rate
        self.burst = max(rate, 1.0)
        # A message of the largest allowed size must fit in a full bucket.
        self.byte_burst = max(byte_rate, float(largest))
        self.messages = self.burst
        self.bytes = self.byte_burst
        self.at = now

    def take(self, size: int, now: float) -> None:
        """Spend one message of ``size`` bytes, or raise HubError rate-limited."""
        elapsed = now - self.at
        if elapsed < 0.0:
            elapsed = 0.0  # the wall clock went back: refill nothing, take nothing away
        self.at = now
        messages = self.messages + elapsed * self.rate
        if messages > self.burst:
            messages = self.burst
        nbytes = self.bytes + elapsed * self.byte_rate
        if nbytes > self.byte_burst:
            nbytes = self.byte_burst
        if messages < 1.0 or nbytes < size:
            self.messages, self.bytes = messages, nbytes
            if messages < 1.0:
                raise HubError("rate-limited",
                               f"over {self.rate:.0f} messages a second; slow down")
            raise HubError("rate-limited", f"over {self.byte_rate:.0f} bytes a second; slow down")
        self.messages = messages - 1.0
        self.bytes = nbytes - size
