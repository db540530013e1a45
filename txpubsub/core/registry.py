"""Who is connected: client records by id, name and session, and the log of
past connections."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from txpubsub.core.rate import PublishBudget
from txpubsub.core.session import Session
from txpubsub.wire.errors import HubError, ServerFull, shorten
from txpubsub.wire.names import check_name, is_client_id

# Certificate names remembered (so reserved) at most; the oldest go first.
MAX_CERTIFICATE_NAMES = 100000


class ClientRecord:
    """The hub's record of one connection: its id, name, subscriptions, session."""

    __slots__ = ("address", "addressable", "channels_created", "client_id", "connected_at",
                 "direct_from", "inbox_last_id", "listener", "name", "name_locked", "patterns",
                 "publish_budget", "sender", "session", "user")

    def __init__(
        self, client_id: str, session: Session, connected_at: float, address: str,
        listener: str,
    ) -> None:
        self.client_id = client_id
        self.session = session
        self.connected_at = connected_at
        self.address = address
        self.listener = listener
        self.name: str | None = None
        self.sender = client_id  # the name shown as sender: the name, or the id
        self.user: str | None = None  # who it authenticated as, when the server has users
        self.patterns: set[str] = set()
        self.addressable = True  # raw feed/ingest connections take no direct messages
        self.name_locked = False  # a name from a TLS certificate cannot be changed
        self.inbox_last_id = 0
        # Whose direct messages it takes (DIRECT): None everyone's, else the
        # senders named here by name or id (empty: nobody's).
        self.direct_from: frozenset[str] | None = None
        self.channels_created = 0  # by its PUB, SUB and CREATE, for --max-client-channels
        self.publish_budget: PublishBudget | None = None  # --max-publish-rate; None: no limit

    def __repr__(self) -> str:
        return f"<ClientRecord {self.client_id} {self.name or '-'}>"


@dataclass(frozen=True)
class ClosedConnection:
    """One line of the connection log."""

    client_id: str
    name: str | None
    address: str
    connected_at: float
    disconnected_at: float
    reason: str


class Member(NamedTuple):
    """A client as WHO lists it, on this server or another."""

    client_id: str
    name: str | None
    connected_at: float


def _plus_one(last: int) -> int:
    return last + 1


class ClientRegistry:
    """Connected clients, unique names, and the last ``log_size`` disconnections."""

    def __init__(self, max_clients: int, log_size: int) -> None:
        self.max_clients = max_clients
        self._by_id: dict[str, ClientRecord] = {}  # in connection order
        self._by_name: dict[str, ClientRecord] = {}
        self._last_number = 0
        # The number of the next client id after the last one (a shared
        # backplane hands out numbers unique across servers).
        self.next_number: Callable[[int], int] = _plus_one
        self.reserved = 0  # connections not yet clients (TLS handshakes) that count
        # Names TLS certificates have carried since the start, oldest first:
        # NAME may not take them, also while their holder is away.
        self.certificate_names: dict[str, None] = {}
        self.connection_log: deque[ClosedConnection] = deque(maxlen=log_size)

    def __len__(self) -> int:
        return len(self._by_id)

    def reserve(self) -> bool:
        """Hold a place for a connection that is not a client yet (a TLS
        handshake under way); False when the server is full."""
        if len(self._by_id) + self.reserved >= self.max_clients:
            return False
        self.reserved += 1
        return True

    def release(self) -> None:
        """Give back a place taken by ``reserve`` (before ``add``, or when it failed)."""
        self.reserved -= 1

    def add(self, session: Session, now: float, address: str, listener: str) -> ClientRecord:
        """A record with a new id; ServerFull past ``max_clients`` (counting reserved places)."""
        if len(self._by_id) + self.reserved >= self.max_clients:
            raise ServerFull(f"the server is full ({self.max_clients} clients)")
        self._last_number = self.next_number(self._last_number)
        client = ClientRecord(f"c{self._last_number}", session, now, address, listener)
        self._by_id[client.client_id] = client
        return client

    def remove(self, client: ClientRecord, reason: str, now: float) -> bool:
        """Forget a client and log its connection; False if it was gone already."""
        if self._by_id.pop(client.client_id, None) is None:
            return False
        if client.name is not None:
            del self._by_name[client.name]
        self.connection_log.appendleft(ClosedConnection(
            client.client_id, client.name, client.address, client.connected_at, now, reason))
        return True

    def rename(self, client: ClientRecord, name: str) -> bool:
        """Give ``client`` a unique name; False if it had it already.
        HubError bad-args or name-taken."""
        check_name(name)
        holder = self._by_name.get(name)
        if holder is client:
            return False
        if holder is not None:
            raise HubError("name-taken", f"{name} is taken by another client")
        if client.name is not None:
            del self._by_name[client.name]
        self._by_name[name] = client
        client.name = client.sender = name
        return True

    def remember_certificate_name(self, name: str) -> None:
        """Keep ``name`` for certificates (the last MAX_CERTIFICATE_NAMES of them)."""
        names = self.certificate_names
        names.pop(name, None)
        while len(names) >= MAX_CERTIFICATE_NAMES:
            del names[next(iter(names))]
        names[name] = None

    def unname(self, client: ClientRecord) -> None:
        """Take a client's name away; it is shown by its id again."""
        if client.name is not None:
            del self._by_name[client.name]
            client.name, client.sender = None, client.client_id

    def by_name(self, name: str) -> ClientRecord | None:
        """The connected client holding ``name``."""
        return self._by_name.get(name)

    def find(self, name_or_id: str) -> ClientRecord | None:
        """A connected client by name, or by id."""
        if is_client_id(name_or_id):
            return self._by_id.get(name_or_id)
        return self._by_name.get(name_or_id)

    def require(self, name_or_id: str) -> ClientRecord:
        """Like ``find``; HubError no-such-client when there is none."""
        client = self.find(name_or_id)
        if client is None:
            raise HubError("no-such-client", f"no client {shorten(name_or_id)}")
        return client

    def all(self) -> list[ClientRecord]:
        """Every connected client, oldest connection first."""
        return list(self._by_id.values())
