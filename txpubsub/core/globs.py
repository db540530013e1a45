"""Glob subscribers: Redis-style pattern subscriptions (PSUBSCRIBE), kept
apart from the token pattern index so that only servers with glob
subscribers pay for them.

A glob cannot be indexed by tokens (``*`` crosses dots, ``[a-c]`` is one
byte), so, as Redis does, every distinct glob is tried against each
published channel name: one compiled regular expression per glob, however
many connections hold it. The hub looks here only when ``len(globs)`` is not
zero, so a server without glob subscribers pays one length test per publish.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

from twisted.logger import Logger

from txpubsub.core.message import Message
from txpubsub.wire.glob import compile_glob

if TYPE_CHECKING:
    from txpubsub.core.authorizer import Authorizer
    from txpubsub.core.registry import ClientRecord
    from txpubsub.core.session import Session


class GlobReader(Protocol):
    """A connection holding glob subscriptions (the RESP door)."""

    @property
    def client(self) -> ClientRecord | None: ...

    def deliver_glob(self, pattern: bytes, msg: Message, encoded: dict[int, bytes]) -> bool:
        """Send ``msg`` as matched by ``pattern``; ``encoded`` is shared by the
        readers of this pattern and message, to encode once per wire format.
        True when this connection is falling behind (pace the publisher)."""


class GlobIndex:
    """Which connections hold which globs."""

    _log = Logger()

    def __init__(self) -> None:
        self._globs: dict[bytes, tuple[Callable[[bytes], object], dict[GlobReader, None]]] = {}
        self.count = 0  # subscriptions (pattern, connection), for the limits and stats
        # What a publish walks: rebuilt after a change, not copied per publish.
        self._snapshot: tuple[tuple[bytes, Callable[[bytes], object], tuple[GlobReader, ...]],
                              ...] | None = None

    def __len__(self) -> int:
        """Distinct globs (PUBSUB NUMPAT)."""
        return len(self._globs)

    def add(self, pattern: bytes, reader: GlobReader) -> bool:
        """Subscribe ``reader`` to ``pattern``; False if it held it already."""
        entry = self._globs.get(pattern)
        if entry is None:
            entry = self._globs[pattern] = (compile_glob(pattern), {})
        if reader in entry[1]:
            return False
        entry[1][reader] = None  # a dict: delivery in subscription order
        self.count += 1
        self._snapshot = None
        return True

    def remove(self, pattern: bytes, reader: GlobReader) -> bool:
        """Drop one glob subscription; False if it was not held."""
        entry = self._globs.get(pattern)
        if entry is None or reader not in entry[1]:
            return False
        del entry[1][reader]
        self.count -= 1
        self._snapshot = None
        if not entry[1]:
            del self._globs[pattern]
        return True

    def deliver(self, msg: Message, authorizer: Authorizer | None) -> tuple[int, list[Session]]:
        """Hand ``msg`` to every (glob, connection) that matches its channel:
        returns the deliveries made and the sessions falling behind.

        With an ``authorizer``, a connection gets only channels it may
        subscribe to (a glob cannot be checked against the rules up front).
        """
        name = msg.channel.encode()
        delivered = 0
        behind: list[Session] = []
        snapshot = self._snapshot
        if snapshot is None:
            snapshot = self._snapshot = tuple(
                (pattern, match, tuple(readers))
                for pattern, (match, readers) in self._globs.items())
        for pattern, match, readers in snapshot:
            if not match(name):
                continue
            encoded: dict[int, bytes] = {}
            for reader in readers:
                client = reader.client
                if client is None:
                    continue
                if authorizer is not None and not authorizer.may_subscribe(client,
                                                                           msg.channel):
                    continue
                try:
                    if reader.deliver_glob(pattern, msg, encoded):
                        behind.append(client.session)
                except Exception:
                    self._log.failure("glob delivery to {client!r} failed", client=client)
                else:
                    delivered += 1
        return delivered, behind
