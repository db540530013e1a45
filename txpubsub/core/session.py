"""The Session seam: what the hub holds for a connection, whatever its door."""
from __future__ import annotations

from typing import Protocol

from txpubsub.core.message import Message
from txpubsub.wire.errors import CloseReason


class Session(Protocol):
    """A connection as the hub sees it: deliver, close, pace, count.

    A door owns one (txpubsub.doors.session.Session is the one every door
    shares). ``deliver`` is called once per matching message on the publish
    path: it must be cheap and must not call back into the hub; it returns
    True when this session is falling behind and its publisher should be
    paced. ``pace`` is then called on the publisher's session (True if it
    was held back), and ``charge_stall`` on each session that was behind.
    ``yield_turn`` asks it to read no more input until the next reactor turn
    (its input has cost the hub its budget for one read).
    ``close`` ends the connection with a reason; the door calls
    ``Hub.detach`` later, when the connection is really gone, never from
    inside ``close``.
    """

    msgs_in: int

    @property
    def msgs_out(self) -> int: ...

    def deliver(self, msg: Message) -> bool: ...

    def pace(self) -> bool: ...

    def charge_stall(self) -> None: ...

    def yield_turn(self) -> None: ...

    def channel_dropped(self, channel: str) -> None: ...

    def close(self, reason: CloseReason, text: str = "") -> None: ...

    def pending_bytes(self) -> int: ...
