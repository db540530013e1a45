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

import time
from typing import Any

import txredisapi
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txpubsub.backplane.address import REPLY_TIMEOUT, RedisAddress
from txpubsub.core.channel import Channel
from txpubsub.core.hub import Hub, new_epoch
from txpubsub.core.latency import LatencyHistogram
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

# KEYS[1] the name; ARGV[1] "<server> <client id>", ARGV[2] the TTL. 1 if ours now.
CLAIM_SCRIPT = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""
# KEYS: names and client keys; ARGV[i]: what each should hold. Deletes those still ours.
RELEASE_SCRIPT = """
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then redis.call('DEL', key) end
end
return 1
"""
# KEYS: names and client keys; ARGV[1] the TTL, ARGV[i + 1] what each holds.
# Renews those still ours (or free again); returns the names lost to others.
REFRESH_SCRIPT = """
local lost = {}
for i, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  if held and held ~= ARGV[i + 1] then
    table.insert(lost, key)
  else
    redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
  end
end
return lost
"""
# KEYS[1] the recipient's name or client key; ARGV: sender, payload, TTL.
# Numbers the message in the recipient's inbox and sends it to its server.
DIRECT_SCRIPT = """
local held = redis.call('GET', KEYS[1])
if not held then return 0 end
local server, client = string.match(held, '^(%S+) (%S+)$')
local inbox = 'txpubsub:inbox:' .. client
local id = redis.call('INCR', inbox)
redis.call('EXPIRE', inbox, 86400)
local now = redis.call('TIME')
local at = now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
redis.call('PUBLISH', 'txpubsub:srv:' .. server,
           client .. ' ' .. id .. ' ' .. at .. ' ' .. ARGV[1] .. ' ' .. ARGV[2])
return id
"""

# KEYS[1] the servers' sorted set, KEYS[2] this server's client list;
# ARGV[1] this server, ARGV[2] the TTL, then client id, "name connected_at" pairs.
# The heartbeat: this server is alive, and these are its clients.
SERVER_SCRIPT = """
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], now[1], ARGV[1])
redis.call('DEL', KEYS[2])
if #ARGV > 2 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 3))
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return 1
"""
# KEYS[1] the servers' sorted set; ARGV[1] the TTL. Every live server's clients,
# as client id, "name connected_at" pairs.
WHO_SCRIPT = """
local now = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now[1] - ARGV[1]))
local found = {}
for _, server in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  for _, item in ipairs(redis.call('HGETALL', 'txpubsub:who:' .. server)) do
    table.insert(found, item)
  end
end
return found
"""

PUBLISH_SCRIPT = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
end
local id = redis.call('INCR', KEYS[2])
local now = redis.call('TIME')
local at = now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
local keep = tonumber(ARGV[2])
if keep > 0 then
  redis.call('XADD', KEYS[3], 'MAXLEN', keep, id, 's', ARGV[3], 't', at, 'p', ARGV[4])
else
  redis.call('DEL', KEYS[3])
end
redis.call('PUBLISH', ARGV[5], id .. ' ' .. at .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
return {id, epoch}
"""


_INCOMPLETE = object()


def _parse(buf: bytes, pos: int) -> tuple[Any, int]:
    """One RESP2 reply at ``pos``: (value, next position), or (_INCOMPLETE, pos).

    Values as txredisapi gives them with charset=None, convertNumbers=False:
    bulk strings as bytes, status replies as str, errors as ResponseError.
    """
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return _INCOMPLETE, pos
    kind = buf[pos]
    after = end + 2
    if kind == 36:  # $ bulk string
        size = int(buf[pos + 1:end])
        if size < 0:
            return None, after
        if len(buf) < after + size + 2:
            return _INCOMPLETE, pos
        return buf[after:after + size], after + size + 2
    if kind == 42:  # * array
        count = int(buf[pos + 1:end])
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = _parse(buf, after)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            items.append(item)
        return items, after
    if kind == 58:  # : integer
        return int(buf[pos + 1:end]), after
    text = buf[pos + 1:end].decode(errors="replace")
    if kind == 45:  # - error
        return txredisapi.ResponseError(text[4:] if text[:4] == "ERR " else text), after
    return text, after  # + status


def _command(*args: Any, **options: Any) -> bytes:
    """A command in RESP, in one join (txredisapi's builder makes two calls per
    argument: a third of a publish's CPU)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        elif not isinstance(arg, bytes):
            arg = format(arg, "f").encode() if isinstance(arg, float) else bytes(arg)
        parts.append(b"$%d\r\n" % len(arg))
        parts.append(arg)
        parts.append(b"\r\n")
    return b"".join(parts)


class _FastReplies:
    """Reads replies in one pass per read, and writes commands in one join.

    txredisapi's own reader gives every bulk string a reactor turn of its own
    (pausing and resuming the socket) and copies its buffer at every line:
    measured, about 2,300 messages/s through pub/sub. This hands the same
    values to its ``replyReceived``.
    """

    _unread = b""
    _build_command = staticmethod(_command)

    def dataReceived(self, data: bytes) -> None:
        buf = self._unread + data if self._unread else data
        pos = 0
        size = len(buf)
        while pos < size:
            reply, end = _parse(buf, pos)
            if reply is _INCOMPLETE:
                break
            pos = end
            self.replyReceived(reply)  # type: ignore[attr-defined]
        self._unread = buf[pos:]


class _Commands(_FastReplies, txredisapi.RedisProtocol):
    """The command connection."""

    def dataReceived(self, data: bytes) -> None:
        # One clock read per read, for every publish answered in it.
        self.factory.backplane.replies_arrived()
        _FastReplies.dataReceived(self, data)


class _Listener(_FastReplies, txredisapi.SubscriberProtocol):
    """The pub/sub connection: every message goes to the backplane."""

    def messageReceived(self, pattern: bytes | None, channel: bytes, message: bytes) -> None:
        self.factory.backplane.received(channel, message)


class _Factory(Factory):
    """txredisapi protocols that keep bytes as bytes (ECOSYSTEM.md section 1)."""

    isLazy = False
    noisy = False
    _log = Logger()

    def __init__(self, protocol: type, address: RedisAddress, backplane: RedisBackplane) -> None:
        self.protocol_class = protocol
        self.address = address
        self.backplane = backplane

    def buildProtocol(self, addr: Any) -> Any:
        p = self.protocol_class(None, replyTimeout=REPLY_TIMEOUT, password=self.address.password,
                          dbid=self.address.db or None, convertNumbers=False,
                          username=self.address.username)
        p.factory = self
        return p

    # What txredisapi's protocol calls when AUTH or SELECT fail.
    def stopTrying(self) -> None:
        pass

    def connectionError(self, why: str) -> None:
        self._log.error("redis: {why}", why=why)


@implementer(IStreamClientEndpoint)
class _Attempts:
    """A client endpoint that remembers why its last connection attempt failed
    (for /readyz: ClientService only counts failures)."""

    def __init__(self, endpoint: IStreamClientEndpoint, backplane: RedisBackplane) -> None:
        self.endpoint = endpoint
        self.backplane = backplane

    def connect(self, factory: Any) -> Deferred[Any]:
        return self.endpoint.connect(factory).addErrback(self._failed)

    def _failed(self, failure: Failure) -> Failure:
        self.backplane.last_error = failure.getErrorMessage()
        return failure


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
        # Latency is measured on the monotonic clock, or a test's.
        self._now = time.monotonic if clock is None else clock.seconds
        self.where = address.where  # for /readyz and the log: no password
        # --http: read at scrape time (txpubsub.server.metrics).
        self.publish_seconds = LatencyHistogram()  # publish sent -> Redis's answer read
        self.publish_errors = 0  # publishes and direct messages Redis did not take
        self.connection_losses = 0  # usable connections (either) that were lost
        self.last_error: str | None = None  # why the last connection attempt failed
        self._replies_at = 0.0  # when the command connection's last read came
        self._connected_waiters: list[Deferred[None]] = []
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
        endpoint = _Attempts(address.endpoint(reactor), self)
        self._commands = ClientService(endpoint, _Factory(_Commands, address, self),
                                       retryPolicy=retry, clock=self._clock,
                                       prepareConnection=self._commands_ready)
        self._pubsub = ClientService(endpoint, _Factory(_Listener, address, self),
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
        self.last_error = None
        self._log.info("redis: connected")
        self._fetch_block()
        self._refresh()
        # ClientService hands over a proxy; the protocol reports itself.
        conn.whenDisconnected().addCallback(lambda _: self._commands_lost(conn))
        # Channels whose catch-up failed while this connection was down.
        for channel in self._channels:
            if channel not in self._current and channel not in self._held:
                self._catch_up(channel)
        self._maybe_connected()

    def _commands_lost(self, conn: Any) -> None:
        if self._conn is conn:
            self._conn = None
            self.connection_losses += 1
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
        self._maybe_connected()

    def _listener_lost(self, listener: Any) -> None:
        if self._listener is listener:
            self._listener = None
            self.connection_losses += 1
            self._current.clear()
            for channel in list(self._held):
                self._release(channel)

    @staticmethod
    def _ignore(failure: Failure) -> None:
        """A lost connection fails what it had sent; the reconnect does it again."""

    @property
    def connected(self) -> bool:
        """Both connections are up and usable: publishes are taken and come back."""
        return self._conn is not None and self._listener is not None

    def when_connected(self) -> Deferred[None]:
        """Fires once both connections are usable (at once if they are)."""
        if self.connected:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._connected_waiters.append(d)
        return d

    def _maybe_connected(self) -> None:
        if self.connected:
            waiters, self._connected_waiters = self._connected_waiters, []
            for d in waiters:
                d.callback(None)

    def ping(self) -> Deferred[None]:
        """Fires once Redis answers PING on the command connection (behind the
        publishes waiting there); fails at once while a connection is down
        (--http /readyz)."""
        conn = self._conn
        if conn is None or self._listener is None:
            why = f"not connected to {self.where}"
            if self.last_error:
                why += f" ({self.last_error})"
            return fail(ConnectionError(why))
        return conn.execute_command("PING").addCallback(lambda _: None)

    @property
    def pending(self) -> int:
        """Publishes waiting for Redis's answer (at most MAX_PENDING)."""
        return self._pending

    def replies_arrived(self) -> None:
        """The command connection read something: the time its answers came."""
        self._replies_at = self._now()

    # -- publishing ------------------------------------------------------------

    def publish(
        self, channel: Channel[Session], sender: str, payload: bytes,
        publisher: ClientRecord | None,
    ) -> Deferred[int]:
        conn = self._conn
        if conn is None:
            self.publish_errors += 1
            raise HubError("unavailable", "redis cannot be reached; not published")
        if self._pending >= MAX_PENDING:
            self.publish_errors += 1
            raise HubError("unavailable", "redis is behind; not published")
        self._pending += 1
        name = channel.name
        sent = self._now()
        d = conn.execute_command(
            "EVALSHA", self._sha, 3, EPOCH_KEY, PREFIX + "id:" + name, PREFIX + "s:" + name,
            self._candidate, channel.keep, sender, payload, PREFIX + "m:" + name)
        return d.addCallbacks(self._published, self._not_published, (sent,))

    def _published(self, reply: list[Any], sent: float) -> int:
        self._pending -= 1
        # Answered within a read of the command connection (replies_arrived).
        self.publish_seconds.observe(self._replies_at - sent)
        msg_id, epoch = reply
        epoch = epoch.decode()
        if epoch != self._hub.epoch:
            self._new_epoch(epoch)
        return int(msg_id)

    def _not_published(self, failure: Failure) -> None:
        self._pending -= 1
        self.publish_errors += 1
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
            self.publish_errors += 1
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
        self.publish_errors += 1
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
