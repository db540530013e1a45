"""The hub's Authorizer for a users file: each client's rules by its user."""
from __future__ import annotations

from txpubsub.auth.users import UserTable
from txpubsub.core.registry import ClientRecord


class RulesAuthorizer:
    """Answers from one reading of the users file.

    A reload makes a new one and sets it as ``hub.authorizer``, so connected
    clients get the new rules at their next command; decisions are cached in
    each user's Rules, which a reload replaces too.
    """

    __slots__ = ("table",)

    def __init__(self, table: UserTable) -> None:
        self.table = table

    def may_publish(self, client: ClientRecord, channel: str) -> bool:
        return self.table.rules_for(client.user).may_publish(channel)

    def may_subscribe(self, client: ClientRecord, pattern: str) -> bool:
        return self.table.rules_for(client.user).may_subscribe(pattern)

    def may_read(self, client: ClientRecord, channel: str) -> bool:
        return self.table.rules_for(client.user).may_read(channel)

    def may_name(self, client: ClientRecord, name: str) -> bool:
        """A user's user name is reserved for that user."""
        return name not in self.table.users or client.user == name

    def may_claim(self, name: str) -> bool:
        """A TLS certificate's name must be a user: only then is it reserved
        (on every listener, whether or not its holder is connected)."""
        return name in self.table.users
