"""Names, client ids, WHO, direct messages and KICK across the servers sharing
Redis: the RedisBackplane's part that is about clients (docs/cluster.md).

A name key holds ``<server> <client id>`` (and `` cert`` when the name comes
from the client's TLS certificate); a server renews its clients' keys every
HEARTBEAT seconds, so those of a server that died are free NAME_TTL seconds
later. Each server listens on ``txpubsub:srv:<server>`` for what is meant
for its clients (direct messages, kicks) and on ``txpubsub:srv:all`` for
what is meant for all of them (a channel dropped).
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txpubsub.backplane.scripts import (
    CERTIFICATE_SCRIPT,
    CLAIM_SCRIPT,
    DIRECT_SCRIPT,
    KICK_SCRIPT,
    REFRESH_SCRIPT,
    RELEASE_SCRIPT,
    SERVER_SCRIPT,
    WHO_SCRIPT,
)
from txpubsub.core.hub import Hub, refused
from txpubsub.core.message import Message
from txpubsub.core.registry import ClientRecord, Member
from txpubsub.wire.errors import HubError, shorten
from txpubsub.wire.names import is_client_id

PREFIX = "txpubsub:"
# Names and client ids of a server that stops refreshing them are freed this
# many seconds later; they are refreshed every HEARTBEAT seconds.
NAME_TTL = 30
HEARTBEAT = 10.0
# Client numbers are taken from Redis this many at a time.
ID_BLOCK = 1000


def _policy(allowed: frozenset[str]) -> str:
    """A DIRECT as DIRECT_SCRIPT reads it: the senders taken, or "-" for none."""
    return " ".join(sorted(allowed)) or "-"


class ClusterNames:
    """The client side of RedisBackplane (a mixin: it shares its connection)."""

    _log: Logger
    _hub: Hub
    _clock: IReactorTime
    _conn: Any  # the command connection, while ready
    server_id: str
    _block: tuple[int, int] = (0, 0)  # client numbers to hand out: [next, end)
    _spare_block: tuple[int, int] | None = None
    _fetching_block = False
    publish_errors = 0  # publishes and direct messages Redis did not take

    @staticmethod
    def _ignore(failure: Failure) -> None:
        """A lost connection fails what it had sent; the reconnect does it again."""

    def _saw_time(self, now: bytes) -> None:
        """Redis's time, as its heartbeat reply says (RedisBackplane keeps it)."""

    # -- direct messages ---------------------------------------------------------

    def direct(
        self, recipient: ClientRecord, sender: str, payload: bytes,
        publisher: ClientRecord | None,
    ) -> Deferred[int]:
        """A direct message to a client of this server: numbered in Redis too,
        so an inbox has one id space wherever its messages come from."""
        return self.direct_elsewhere(recipient.client_id, sender, payload, publisher)

    def direct_elsewhere(self, recipient: str, sender: str, payload: bytes,
                         publisher: ClientRecord | None = None) -> Deferred[int]:
        """A direct message to a name or client id held on any server."""
        conn = self._conn
        if conn is None:
            self.publish_errors += 1
            raise HubError("unavailable", "redis cannot be reached; not sent")
        key = PREFIX + ("client:" if is_client_id(recipient) else "name:") + recipient
        d = conn.execute_command("EVAL", DIRECT_SCRIPT, 1, key, sender, payload, NAME_TTL,
                                 publisher.client_id if publisher is not None else "")
        return d.addCallbacks(self._sent, self._not_sent, (recipient,))

    @staticmethod
    def _sent(msg_id: int, recipient: str) -> int:
        if not msg_id:
            raise HubError("no-such-client", f"no client called {shorten(recipient)}")
        if msg_id < 0:
            raise refused(shorten(recipient), msg_id == -1)
        return int(msg_id)

    def direct_policy(self, client: ClientRecord, allowed: frozenset[str] | None
                      ) -> Deferred[None]:
        """A client's DIRECT, for every server (DIRECT_SCRIPT reads it)."""
        conn = self._conn
        if conn is None:
            raise HubError("unavailable", "redis cannot be reached; nothing changed")
        key = PREFIX + "direct:" + client.client_id
        if allowed is None:
            d = conn.execute_command("DEL", key)
        else:
            d = conn.execute_command("SET", key, _policy(allowed), "EX", NAME_TTL)
        return d.addCallbacks(lambda _: None, self._policy_not_set)

    def _policy_not_set(self, failure: Failure) -> None:
        self._log.warn("redis: DIRECT failed: {why}", why=failure.value)
        raise HubError("unavailable", "redis did not answer; nothing changed")

    def _not_sent(self, failure: Failure) -> None:
        self.publish_errors += 1
        self._log.warn("redis: direct message failed: {why}", why=failure.value)
        raise HubError("unavailable", "redis did not take it; not acknowledged")

    def _server_message(self, data: bytes) -> None:
        """What another server sent this one: a direct message for one of its
        clients (``<client id> <id> <time> <sender> <payload>``) or a kick
        (``kick <client id> <reason>``)."""
        if data.startswith(b"kick "):
            _, client_id, reason = data.split(b" ", 2)
            try:
                self._hub.kick(client_id.decode(), reason.decode(errors="replace"))
            except HubError:
                pass  # gone meanwhile
            return
        client_id, msg_id, at, sender, payload = data.split(b" ", 4)
        hub = self._hub
        target = hub.find_client(client_id.decode())
        if target is None or not target.addressable:
            return  # gone since Redis looked it up
        target.inbox_last_id = int(msg_id)
        hub.deliver_direct(target, Message("@" + target.sender, int(msg_id), sender.decode(),
                                           payload, float(at)), None)

    # -- names and client ids ----------------------------------------------------

    def _holder(self, client: ClientRecord) -> str:
        """What the keys of a client's name and id hold."""
        held = f"{self.server_id} {client.client_id}"
        return held + " cert" if client.name_locked else held

    def claim_name(self, client: ClientRecord, name: str) -> Deferred[None]:
        """Take ``name`` for ``client`` on every server (HubError name-taken)."""
        conn = self._conn
        if conn is None:
            raise HubError("unavailable", "redis cannot be reached; names are shared there")
        old = client.name
        d = conn.execute_command("EVAL", CLAIM_SCRIPT, 1, PREFIX + "name:" + name,
                                 self._holder(client), NAME_TTL)
        return d.addCallbacks(self._claimed, self._not_claimed, (client, name, old))

    def _claimed(self, ok: int, client: ClientRecord, name: str, old: str | None) -> None:
        if not ok:
            raise HubError("name-taken", f"{name} is taken by another client")
        if old is not None:
            self._let_go([PREFIX + "name:" + old], [self._holder(client)])
        if self._hub.find_client(client.client_id) is not client:
            self._let_go([PREFIX + "name:" + name], [self._holder(client)])
        elif client.addressable:
            self._list(client, name)

    def _not_claimed(self, failure: Failure) -> None:
        self._log.warn("redis: NAME failed: {why}", why=failure.value)
        raise HubError("unavailable", "redis did not answer; no name taken")

    def claim_certificate(self, client: ClientRecord, name: str) -> Deferred[None] | None:
        """Take the name ``client``'s certificate carries on every server: a
        client that chose it with NAME elsewhere is kicked there; HubError
        auth-failed if a certificate client of another server holds it.
        With Redis away, it is held here only until the heartbeat claims it."""
        conn = self._conn
        if conn is None:
            return None
        d = conn.execute_command("EVAL", CERTIFICATE_SCRIPT, 1, PREFIX + "name:" + name,
                                 self._holder(client), NAME_TTL,
                                 "that name belongs to a certificate")
        return d.addCallbacks(self._certified, self._not_certified, (name,))

    @staticmethod
    def _certified(ok: int, name: str) -> None:
        if not ok:
            raise HubError("auth-failed", f"{name} is connected already")

    def _not_certified(self, failure: Failure) -> None:
        self._log.warn("redis: certificate name claim failed: {why}", why=failure.value)
        raise HubError("unavailable", "redis did not answer; the name could not be claimed")

    def kick_elsewhere(self, name_or_id: str, reason: str) -> Deferred[str]:
        """Close a client of another server (by name or id): its id, once its
        server has been told; HubError no-such-client if nobody holds it."""
        conn = self._conn
        if conn is None:
            raise HubError("unavailable", "redis cannot be reached; other servers' clients "
                                          "are found there")
        key = PREFIX + ("client:" if is_client_id(name_or_id) else "name:") + name_or_id
        d = conn.execute_command("EVAL", KICK_SCRIPT, 1, key, reason)
        return d.addCallbacks(self._kicked, self._not_kicked, (name_or_id,))

    def _not_kicked(self, failure: Failure) -> None:
        self._log.warn("redis: KICK failed: {why}", why=failure.value)
        raise HubError("unavailable", "redis did not answer; nobody kicked")

    @staticmethod
    def _kicked(client_id: bytes | None, name_or_id: str) -> str:
        if not client_id:
            raise HubError("no-such-client", f"no client called {shorten(name_or_id)}")
        return client_id.decode()

    def client_joined(self, client: ClientRecord) -> None:
        """A new local client: reachable by id from every server (after this
        reactor turn, when its door has said whether it takes direct messages)."""
        self._clock.callLater(0, self._announce_client, client)

    def _announce_client(self, client: ClientRecord) -> None:
        conn = self._conn
        if conn is not None and client.addressable and \
                self._hub.find_client(client.client_id) is client:
            conn.execute_command("SET", PREFIX + "client:" + client.client_id,
                                 self._holder(client), "EX", NAME_TTL).addErrback(self._ignore)
            self._list(client, client.name)

    def _list(self, client: ClientRecord, name: str | None) -> None:
        """Show ``client`` in every server's WHO."""
        conn = self._conn
        if conn is not None:
            conn.execute_command("HSET", self._who_key, client.client_id,
                                 f"{name or '-'} {client.connected_at!r}").addErrback(self._ignore)

    @property
    def _who_key(self) -> str:
        return PREFIX + "who:" + self.server_id

    def everyone(self) -> Deferred[list[Member]]:
        """Every client of every live server sharing Redis, by id number."""
        conn = self._conn
        if conn is None:
            raise HubError("unavailable", "redis cannot be reached; WHO lists every server's")
        d = conn.execute_command("EVAL", WHO_SCRIPT, 1, PREFIX + "servers", NAME_TTL)
        return d.addCallbacks(self._members, self._not_listed)

    @staticmethod
    def _members(found: list[bytes]) -> list[Member]:
        members = []
        for client_id, value in zip(found[::2], found[1::2]):
            name, _, connected_at = value.decode().partition(" ")
            members.append(Member(client_id.decode(), None if name == "-" else name,
                                  float(connected_at)))
        members.sort(key=lambda m: int(m.client_id[1:]))
        return members

    def _not_listed(self, failure: Failure) -> None:
        self._log.warn("redis: WHO failed: {why}", why=failure.value)
        raise HubError("unavailable", "redis did not answer")

    def client_left(self, client: ClientRecord, name: str | None) -> None:
        """A local client is gone: its id and name are free on every server."""
        keys = [PREFIX + "client:" + client.client_id]
        if name is not None:
            keys.append(PREFIX + "name:" + name)
        values = [self._holder(client)] * len(keys)
        if client.direct_from is not None:
            keys.append(PREFIX + "direct:" + client.client_id)
            values.append(_policy(client.direct_from))
        self._let_go(keys, values)
        conn = self._conn
        if conn is not None:
            conn.execute_command("HDEL", self._who_key, client.client_id).addErrback(self._ignore)

    def _let_go(self, keys: list[str], values: list[str]) -> None:
        conn = self._conn
        if conn is not None:
            conn.execute_command("EVAL", RELEASE_SCRIPT, len(keys), *keys,
                                 *values).addErrback(self._ignore)

    def _refresh(self) -> None:
        """The heartbeat: this server's names and client ids stay held."""
        conn = self._conn
        if conn is None:
            return
        keys, values, listed = [], [], []
        for client in self._hub.clients():
            if client.addressable:
                listed += [client.client_id, f"{client.name or '-'} {client.connected_at!r}"]
                holder = self._holder(client)
                keys.append(PREFIX + "client:" + client.client_id)
                values.append(holder)
                if client.name is not None:
                    keys.append(PREFIX + "name:" + client.name)
                    values.append(holder)
                if client.direct_from is not None:
                    keys.append(PREFIX + "direct:" + client.client_id)
                    values.append(_policy(client.direct_from))
        conn.execute_command("EVAL", SERVER_SCRIPT, 2, PREFIX + "servers", self._who_key,
                             self.server_id, NAME_TTL, *listed).addCallbacks(
                                 self._saw_time, self._ignore)
        if keys:
            d = conn.execute_command("EVAL", REFRESH_SCRIPT, len(keys), *keys, NAME_TTL,
                                     *values)
            d.addCallbacks(self._lost_names, self._ignore)

    def _lost_names(self, lost: list[bytes]) -> None:
        for key in lost:
            # Redis was away longer than NAME_TTL and another server's client
            # took the name meanwhile: both hold it until one lets go.
            self._log.warn("redis: {key} is held by another server now", key=key.decode())

    def _next_client_number(self, last: int) -> int:
        start, end = self._block
        if start >= end and self._spare_block is not None:
            (start, end), self._spare_block = self._spare_block, None
        if start < end:
            self._block = (start + 1, end)
            if end - start < ID_BLOCK // 2:
                self._fetch_block()
            return start
        # No numbers from Redis yet (it has not been reached): local ones,
        # unique on this server only until it has.
        self._fetch_block()
        return last + 1

    def _fetch_block(self) -> None:
        conn = self._conn
        if conn is None or self._fetching_block or self._spare_block is not None:
            return
        self._fetching_block = True
        d = conn.execute_command("INCRBY", PREFIX + "client-ids", ID_BLOCK)
        d.addCallbacks(self._block_fetched, self._block_failed)

    def _block_fetched(self, end: int) -> None:
        self._fetching_block = False
        end = int(end) + 1
        block = (end - ID_BLOCK, end)
        if self._block[0] >= self._block[1]:
            self._block = block
        else:
            self._spare_block = block

    def _block_failed(self, failure: Failure) -> None:
        self._fetching_block = False
