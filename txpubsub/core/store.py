"""Where history lives between restarts: the store interface, and memory.

The hub keeps every channel's recent messages in memory and reads only
from there; a store persists them (and each channel's last id, and the
epoch) so that a restart can load them back. The memory store persists
nothing, so each start is a new epoch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from twisted.internet.defer import Deferred, succeed

from txpubsub.core.message import Message
from txpubsub.wire.errors import HubError


@dataclass
class SavedChannel:
    """A channel as a store gives it back at start."""

    name: str
    keep: int
    last_id: int
    created_at: float
    retired: bool = False  # dropped or forgotten: only its last id matters
    floor: int = 0  # ids up to this were an earlier life's (before a drop)
    messages: list[Message] = field(default_factory=list)


class Store(Protocol):
    """What the hub tells a store, and what it asks of it at start and stop."""

    durable: bool  # True: publishes are acknowledged once ``append``ed ones are committed
    epoch: str
    errors: int  # failed writes since start (admin STATS: store_errors)

    def load(self) -> list[SavedChannel]: ...

    def channel_created(self, name: str, keep: int, created_at: float, last_id: int) -> None: ...

    def append(self, msg: Message, keep: int) -> None:
        """Queue a numbered message for the next commit (its history row if
        ``keep``, and its channel's last id). Raises HubError unavailable at
        once if too much already waits for the disk. What became of it is told,
        in the order of the calls, to the functions given to ``listen``."""

    def listen(
        self, committed: Callable[[int], None], refused: Callable[[int, HubError], None]
    ) -> None:
        """``committed(n)``: the oldest n messages appended and not yet told of
        are committed; ``refused(n, error)``: they are not stored (nor will be)."""

    def channel_retired(self, name: str, last_id: int) -> None: ...

    def restart(self, epoch: str) -> None:
        """Ids start again in ``epoch`` (a shared backplane lost its data): every
        channel and message kept so far belongs to the old id space and goes."""

    def drain(self) -> Deferred[None]:
        """Fires once every message appended so far is committed or refused."""

    def close(self) -> Deferred[None]: ...


class MemoryStore:
    """History in memory only: nothing survives a restart, so the epoch is new."""

    durable = False
    errors = 0

    def __init__(self, epoch: str) -> None:
        self.epoch = epoch

    def load(self) -> list[SavedChannel]:
        return []

    def channel_created(self, name: str, keep: int, created_at: float, last_id: int) -> None:
        pass

    def append(self, msg: Message, keep: int) -> None:
        pass

    def listen(
        self, committed: Callable[[int], None], refused: Callable[[int, HubError], None]
    ) -> None:
        pass

    def channel_retired(self, name: str, last_id: int) -> None:
        pass

    def restart(self, epoch: str) -> None:
        self.epoch = epoch

    def drain(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)
