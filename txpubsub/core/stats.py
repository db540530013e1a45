"""Counters: bumped once per publish or per write, never per delivery line."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Counters:
    """Server-wide counters kept by the hub."""

    msgs_in: int = 0
    msgs_out: int = 0
    bytes_in: int = 0
    connections_total: int = 0
    slow_consumers: int = 0
    pacing_stalls: int = 0
    auth_failures: int = 0  # wrong AUTH user or password (--users)
    auth_refused: int = 0  # AUTH refused unchecked: too many checks, or failures from the address
    history_evictions: int = 0  # times --max-history-bytes let go of old messages
    rate_limited: int = 0  # publishes refused by --max-publish-rate or --max-publish-bytes
    # Connections that ended, by CloseReason value (once per connection, not per message).
    closes: dict[str, int] = field(default_factory=dict)


@dataclass
class DoorCounters:
    """What one kind of door (line, feed, ingest, ...) wrote to its connections."""

    bytes_out: int = 0
