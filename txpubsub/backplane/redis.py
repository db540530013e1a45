"""Several servers as one, through Redis (``--redis URL``, docs/cluster.md).

Each publish is one Lua script: it takes the channel's next id (INCR), keeps
the message in the channel's Stream (XADD, trimmed to the channel's
history, the stream id being the message id) and PUBLISHes it. So ids are
consecutive and the same on every server, and the message reaches this
server's subscribers when it comes back over Redis pub/sub, through
``Hub.arrived``, like any other server's.

A server subscribes in Redis once per channel it has local subscribers for,
and once per glob covering its wildcard patterns (filtered again by the
hub's own matcher). A channel's first local subscriber waits until Redis
confirmed the subscription and the Stream filled in what this server missed
(``current``), so a replay comes from complete history and the live stream
follows it with no gap; after a reconnect the same catch-up hands the
messages published meanwhile to the subscribers still in place.

txredisapi imports the reactor: this module is imported only with --redis.
"""
from __future__ import annotations

from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txpubsub.backplane.address import REPLY_TIMEOUT, RedisAddress
from txpubsub.backplane.connection import Commands, Factory, Listener
from txpubsub.backplane.scripts import (
    CLAIM_SCRIPT,
    DIRECT_SCRIPT,
    PUBLISH_SCRIPT,
    REFRESH_SCRIPT,
    RELEASE_SCRIPT,
    SERVER_SCRIPT,
    WHO_SCRIPT,
)
from txpubsub.core.channel import Channel
from txpubsub.core.hub import Hub, new_epoch
from txpubsub.core.message import Message
from txpubsub.core.registry import ClientRecord, Member
from txpubsub.core.session import Session
from txpubsub.wire.errors import HubError, shorten
from txpubsub.wire.names import is_client_id, is_wildcard

PREFIX = "txpubsub:"
EPOCH_KEY = PREFIX + "epoch"
# Publishes waiting for Redis at once; past this a publish is refused.
MAX_PENDING = 10000

# Names and client ids of a server that stops refreshing them are freed this
# many seconds later; they are refreshed every HEARTBEAT seconds.
NAME_TTL = 30
HEARTBEAT = 10.0
# Client numbers are taken from Redis this many at a time.
ID_BLOCK = 1000


def _glob(pattern: str) -> str:
    """A Redis glob matching at least every channel ``pattern`` matches."""
    tokens = []
    for token in pattern.split("."):
        if token in ("*", ">"):
            tokens.append("*")
        else:
            tokens.append("".join("\\" + c if c in "*?[]\\" else c for c in token))
    return PREFIX + "m:" + ".".join(tokens)


class RedisBackplane(Service):
    """Numbers and carries messages through Redis, for every server sharing it."""

    _log = Logger()

    def __init__(self, hub: Hub, address: RedisAddress, reactor: Any = None,
                 clock: IReactorTime | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self._hub = hub
        self._clock = clock or reactor
        self._candidate = new_epoch()  # the epoch, should Redis have none
        self._epoch_known_once = False
        self._conn: Any = None  # the command connection, while ready
        self._listener: Any = None  # the pub/sub connection, while ready
        self._sha = ""
        self._pending = 0
        self._channels: dict[str, int] = {}  # concrete channel -> local subscriptions
        self._globs: dict[str, int] = {}  # Redis glob -> local wildcard subscriptions
        self._current: set[str] = set()  # subscribed in Redis and caught up
        self._held: dict[str, list[Message]] = {}  # live messages held during a catch-up
        self._waiters: dict[str, list[Deferred[None]]] = {}
        self.server_id = new_epoch()  # this server, among those sharing Redis
        self._block = (0, 0)  # client numbers to hand out: [next, end)
        self._spare_block: tuple[int, int] | None = None
        self._fetching_block = False
        hub.registry.next_number = self._next_client_number
        self._heartbeat = LoopingCall(self._refresh)
        self._heartbeat.clock = self._clock
        retry = backoffPolicy(initialDelay=0.2, maxDelay=2.0)
        endpoint = address.endpoint(reactor)
        self._commands = ClientService(endpoint, Factory(Commands, address, self),
                                       retryPolicy=retry, clock=self._clock,
                                       prepareConnection=self._commands_ready)
        self._pubsub = ClientService(endpoint, Factory(Listener, address, self),
                                     retryPolicy=retry, clock=self._clock,
                                     prepareConnection=self._listener_ready)

    # -- connections ---------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        self._commands.startService()
        self._pubsub.startService()
        self._heartbeat.start(HEARTBEAT, now=False)

    def stopService(self) -> Deferred[Any]:
        Service.stopService(self)
        if self._heartbeat.running:
            self._heartbeat.stop()
        return DeferredList([self._commands.stopService(), self._pubsub.stopService()])

    @staticmethod
    def _no_delay(conn: Any) -> None:
        # A publish is one small write waiting for its answer: no Nagle delay.
        set_no_delay = getattr(conn.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)

    def _commands_ready(self, conn: Any) -> Deferred[None]:
        self._no_delay(conn)
        d = conn.whenConnected()
        d.addCallback(lambda _: conn.execute_command("SET", EPOCH_KEY, self._candidate, "NX"))
        d.addCallback(lambda _: conn.execute_command("GET", EPOCH_KEY))
        d.addCallback(self._epoch_known)
        d.addCallback(lambda _: conn.execute_command("SCRIPT", "LOAD", PUBLISH_SCRIPT))
        d.addCallback(self._usable, conn)
        return d

    def _usable(self, sha: bytes, conn: Any) -> None:
        self._sha = sha.decode()
        self._conn = conn
        self._log.info("redis: connected")
        self._fetch_block()
        self._refresh()
        # ClientService hands over a proxy; the protocol reports itself.
        conn.whenDisconnected().addCallback(lambda _: self._commands_lost(conn))
        # Channels whose catch-up failed while this connection was down.
        for channel in self._channels:
            if channel not in self._current and channel not in self._held:
                self._catch_up(channel)

    def _commands_lost(self, conn: Any) -> None:
        if self._conn is conn:
            self._conn = None
            self._candidate = new_epoch()
            self._log.warn("redis: connection lost; publishes are refused until it is back")

    def _epoch_known(self, epoch: bytes) -> None:
        self._new_epoch(epoch.decode())

    def _new_epoch(self, epoch: str) -> None:
        if not self._epoch_known_once:
            self._epoch_known_once = True  # at start: Redis's epoch is ours
            self._hub.epoch = epoch
        elif epoch != self._hub.epoch:
            self._hub.restart_ids(epoch)  # Redis lost its data: ids start again

    def _listener_ready(self, listener: Any) -> Deferred[None]:
        self._no_delay(listener)
        d = listener.whenConnected()
        d.addCallback(self._listening, listener)
        return d

    def _listening(self, _: object, listener: Any) -> None:
        self._listener = listener
        listener.whenDisconnected().addCallback(lambda _: self._listener_lost(listener))
        listener.subscribe(PREFIX + "srv:" + self.server_id).addErrback(self._ignore)
        for glob in self._globs:
            listener.psubscribe(glob).addErrback(self._ignore)
        for channel in self._channels:
            self._watch(channel)

    def _listener_lost(self, listener: Any) -> None:
        if self._listener is listener:
            self._listener = None
            self._current.clear()
            for channel in list(self._held):
                self._release(channel)

    @staticmethod
    def _ignore(failure: Failure) -> None:
        """A lost connection fails what it had sent; the reconnect does it again."""

    # -- publishing ------------------------------------------------------------

    def publish(
        self, channel: Channel[Session], sender: str, payload: bytes,
        publisher: ClientRecord | None,
    ) -> Deferred[int]:
        conn = self._conn
        if conn is None:
            raise HubError("unavailable", "redis cannot be reached; not published")
        if self._pending >= MAX_PENDING:
            raise HubError("unavailable", "redis is behind; not published")
        self._pending += 1
        name = channel.name
        d = conn.execute_command(
            "EVALSHA", self._sha, 3, EPOCH_KEY, PREFIX + "id:" + name, PREFIX + "s:" + name,
            self._candidate, channel.keep, sender, payload, PREFIX + "m:" + name)
        return d.addCallbacks(self._published, self._not_published)

    def _published(self, reply: list[Any]) -> int:
        self._pending -= 1
        msg_id, epoch = reply
        epoch = epoch.decode()
        if epoch != self._hub.epoch:
            self._new_epoch(epoch)
        return int(msg_id)

    def _not_published(self, failure: Failure) -> None:
        self._pending -= 1
        self._log.warn("redis: publish failed: {why}", why=failure.value)
        # A timeout may hide a publish that did happen: never +OK, maybe -ERR.
        raise HubError("unavailable", "redis did not take it; not acknowledged")

    def direct(
        self, recipient: ClientRecord, sender: str, payload: bytes,
        publisher: ClientRecord | None,
    ) -> Deferred[int]:
        """A direct message to a client of this server: numbered in Redis too,
        so an inbox has one id space wherever its messages come from."""
        return self.direct_elsewhere(recipient.client_id, sender, payload)

    def direct_elsewhere(self, recipient: str, sender: str, payload: bytes) -> Deferred[int]:
        """A direct message to a name or client id held on any server."""
        conn = self._conn
        if conn is None:
            raise HubError("unavailable", "redis cannot be reached; not sent")
        key = PREFIX + ("client:" if is_client_id(recipient) else "name:") + recipient
        d = conn.execute_command("EVAL", DIRECT_SCRIPT, 1, key, sender, payload, NAME_TTL)
        return d.addCallbacks(self._sent, self._not_sent, (recipient,))

    @staticmethod
    def _sent(msg_id: int, recipient: str) -> int:
        if not msg_id:
            raise HubError("no-such-client", f"no client called {shorten(recipient)}")
        return int(msg_id)

    def _not_sent(self, failure: Failure) -> None:
        self._log.warn("redis: direct message failed: {why}", why=failure.value)
        raise HubError("unavailable", "redis did not take it; not acknowledged")

    def _direct_received(self, data: bytes) -> None:
        client_id, msg_id, at, sender, payload = data.split(b" ", 4)
        hub = self._hub
        target = hub.find_client(client_id.decode())
        if target is None or not target.addressable:
            return  # gone since Redis looked it up
        target.inbox_last_id = int(msg_id)
        hub.deliver_direct(target, Message("@" + target.sender, int(msg_id), sender.decode(),
                                           payload, float(at)), None)

    # -- names and client ids across servers -------------------------------------

    def _holder(self, client: ClientRecord) -> str:
        return f"{self.server_id} {client.client_id}"

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
        self._let_go(keys, [self._holder(client)] * len(keys))
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
        conn.execute_command("EVAL", SERVER_SCRIPT, 2, PREFIX + "servers", self._who_key,
                             self.server_id, NAME_TTL, *listed).addErrback(self._ignore)
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

    # -- receiving ---------------------------------------------------------------

    def received(self, redis_channel: bytes, data: bytes) -> None:
        """A message from Redis pub/sub (any server's, ours included)."""
        if redis_channel.startswith(b"txpubsub:srv:"):
            self._direct_received(data)
            return
        channel = redis_channel.decode()[len(PREFIX) + 2:]
        msg_id, at, sender, payload = data.split(b" ", 3)
        msg = Message(channel, int(msg_id), sender.decode(), payload, float(at))
        held = self._held.get(channel)
        if held is not None:
            held.append(msg)
        else:
            self._arrive(msg)

    def _arrive(self, msg: Message) -> None:
        hub = self._hub
        ch = hub.channel(msg.channel)
        if ch is None:
            # A glob is wider than the patterns it covers: a channel none of
            # them matches (and no one here waits for) is not made here.
            if msg.channel in self._channels or hub.has_readers(msg.channel):
                hub.arrived(msg)
        elif msg.msg_id > ch.last_id:
            # Each message once: a channel and a glob may both bring it, and
            # a catch-up may overlap what pub/sub brings.
            hub.arrived(msg)

    # -- interest ------------------------------------------------------------------

    def interest(self, pattern: str, delta: int) -> None:
        """A local subscription to ``pattern`` was made (+1) or is gone (-1)."""
        if is_wildcard(pattern):
            counts, key = self._globs, _glob(pattern)
        else:
            counts, key = self._channels, pattern
        count = counts.get(key, 0) + delta
        if count > 0:
            counts[key] = count
            if count == 1 and delta > 0:
                if counts is self._globs:
                    if self._listener is not None:
                        self._listener.psubscribe(key).addErrback(self._ignore)
                else:
                    self._watch(key)
            return
        counts.pop(key, None)
        listener = self._listener
        if counts is self._globs:
            if listener is not None:
                listener.punsubscribe(key).addErrback(self._ignore)
        else:
            self._current.discard(key)
            if key in self._held:
                self._release(key)
            if listener is not None:
                listener.unsubscribe(PREFIX + "m:" + key).addErrback(self._ignore)

    def current(self, channel: str) -> Deferred[None] | None:
        """None if this server's copy of ``channel`` is up to date (subscribed in
        Redis and caught up); else a Deferred firing once it is."""
        if channel in self._current:
            return None
        if self._listener is None or self._conn is None:
            raise HubError("unavailable", "redis cannot be reached")
        d: Deferred[None] = Deferred()
        self._waiters.setdefault(channel, []).append(d)
        self.interest(channel, 1)  # held until the waiters have subscribed
        if channel not in self._held and channel not in self._current:
            self._catch_up(channel)  # subscribed already, an earlier catch-up failed
        timer = self._clock.callLater(REPLY_TIMEOUT, self._too_slow, channel, d)
        d.addBoth(self._stop_timer, timer)
        return d

    def _watch(self, channel: str) -> None:
        listener = self._listener
        if listener is None:
            return  # subscribed when the listener is back
        self._held.setdefault(channel, [])
        d = listener.subscribe(PREFIX + "m:" + channel)
        d.addCallbacks(lambda _: self._catch_up(channel), lambda f: self._release(channel))

    def _catch_up(self, channel: str) -> None:
        """Read from the Stream what came after this server's last id, then go live."""
        conn = self._conn
        if conn is None or channel not in self._channels:
            self._release(channel)
            return
        self._held.setdefault(channel, [])
        ch = self._hub.channel(channel)
        start = f"({ch.last_id}" if ch is not None and ch.last_id else "-"
        d = conn.execute_command("XRANGE", PREFIX + "s:" + channel, start, "+")
        d.addCallbacks(self._caught_up, lambda f: self._release(channel), (channel,))

    def _caught_up(self, entries: list[Any], channel: str) -> None:
        for entry_id, fields in entries:
            values = dict(zip(fields[::2], fields[1::2]))
            self._arrive(Message(channel, int(entry_id.split(b"-")[0]), values[b"s"].decode(),
                                 values[b"p"], float(values[b"t"])))
        if self._release(channel) and channel in self._channels:
            self._current.add(channel)
            waiters = self._waiters.pop(channel, [])
            for d in waiters:
                if not d.called:
                    d.callback(None)  # the hub subscribes its waiting clients now
                # Held one turn more: the hub may take its own interest after
                # this returns (when the catch-up was immediate).
                self._clock.callLater(0, self.interest, channel, -1)

    def _release(self, channel: str) -> bool:
        """End a catch-up: what pub/sub brought meanwhile goes on its way."""
        held = self._held.pop(channel, None)
        for msg in held or ():
            self._arrive(msg)
        return held is not None

    @staticmethod
    def _stop_timer(result: object, timer: Any) -> object:
        if timer.active():
            timer.cancel()
        return result

    def _too_slow(self, channel: str, d: Deferred[None]) -> None:
        if d.called:
            return
        waiters = self._waiters.get(channel, [])
        if d in waiters:
            waiters.remove(d)
        d.errback(HubError("unavailable", "redis did not answer in time"))
        self.interest(channel, -1)
