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

import txredisapi
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from txpubsub.backplane.address import REPLY_TIMEOUT, RedisAddress
from txpubsub.core.channel import Channel
from txpubsub.core.hub import Hub, new_epoch
from txpubsub.core.message import Message
from txpubsub.core.registry import ClientRecord
from txpubsub.core.session import Session
from txpubsub.wire.errors import HubError
from txpubsub.wire.names import is_wildcard

PREFIX = "txpubsub:"
EPOCH_KEY = PREFIX + "epoch"
# Publishes waiting for Redis at once; past this a publish is refused.
MAX_PENDING = 10000

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


class _Listener(txredisapi.SubscriberProtocol):
    """The pub/sub connection: every message goes to the backplane."""

    def messageReceived(self, pattern: bytes | None, channel: bytes, message: bytes) -> None:
        self.factory.backplane.received(channel, message)


class _Factory(Factory):
    """txredisapi protocols that keep bytes as bytes (ECOSYSTEM.md section 1)."""

    isLazy = False
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
        retry = backoffPolicy(initialDelay=0.2, maxDelay=2.0)
        endpoint = address.endpoint(reactor)
        self._commands = ClientService(endpoint, _Factory(txredisapi.RedisProtocol, address, self),
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

    def stopService(self) -> Deferred[Any]:
        Service.stopService(self)
        return DeferredList([self._commands.stopService(), self._pubsub.stopService()])

    def _commands_ready(self, conn: Any) -> Deferred[None]:
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
        d = listener.whenConnected()
        d.addCallback(self._listening, listener)
        return d

    def _listening(self, _: object, listener: Any) -> None:
        self._listener = listener
        listener.whenDisconnected().addCallback(lambda _: self._listener_lost(listener))
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
    ) -> int:
        """Direct messages stay on this server (names are per server for now)."""
        recipient.inbox_last_id += 1
        hub = self._hub
        msg = Message("@" + recipient.sender, recipient.inbox_last_id, sender, payload,
                      hub.clock.seconds())
        hub.deliver_direct(recipient, msg, publisher)
        return msg.msg_id

    # -- receiving ---------------------------------------------------------------

    def received(self, redis_channel: bytes, data: bytes) -> None:
        """A message from Redis pub/sub (any server's, ours included)."""
        channel = redis_channel.decode()[len(PREFIX) + 2:]
        msg_id, at, sender, payload = data.split(b" ", 3)
        msg = Message(channel, int(msg_id), sender.decode(), payload, float(at))
        held = self._held.get(channel)
        if held is not None:
            held.append(msg)
        else:
            self._arrive(msg)

    def _arrive(self, msg: Message) -> None:
        ch = self._hub.channel(msg.channel)
        # Each message once: a channel and a glob may both bring it, and a
        # catch-up may overlap what pub/sub brings.
        if ch is None or msg.msg_id > ch.last_id:
            self._hub.arrived(msg)

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
