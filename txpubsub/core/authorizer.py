"""The Authorizer seam: may this client publish, subscribe, read a channel?

The hub asks once per command (never per delivery), so every door is covered
by the same check.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from txpubsub.core.registry import ClientRecord


class Authorizer(Protocol):
    """Answers for one server's rules; the hub raises ``forbidden`` on False.

    An authorizer may also have ``may_name(client, name) -> bool`` (NAME;
    False is ``name-taken``): txpubsub.auth reserves each user's user name
    for that user; and ``may_claim(name) -> bool`` (a TLS certificate's
    name; False refuses the connection): txpubsub.auth takes only its users.
    The hub asks them only if they are there.
    """

    def may_publish(self, client: ClientRecord, channel: str) -> bool:
        """Publish to (or CREATE) ``channel``; ``@name`` for direct messages."""

    def may_subscribe(self, client: ClientRecord, pattern: str) -> bool:
        """Subscribe to ``pattern`` (a concrete channel or a wildcard)."""

    def may_read(self, client: ClientRecord, channel: str) -> bool:
        """Read ``channel``'s history (HISTORY, SUB last=/since=)."""


class AllowAll:
    """The default: everyone may do everything."""

    def may_publish(self, client: ClientRecord, channel: str) -> bool:
        return True

    def may_subscribe(self, client: ClientRecord, pattern: str) -> bool:
        return True

    def may_read(self, client: ClientRecord, channel: str) -> bool:
        return True
