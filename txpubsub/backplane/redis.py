"""Several servers as one, through Redis (``--redis URL``, docs/cluster.md).

Each publish is one Lua script: it takes the channel's next id (INCR), keeps
the message in the channel's Stream (XADD, trimmed to the channel's
history, the stream id being the message id) and PUBLISHes it. So ids are
consecutive and the same on every server, and the message reaches this
server's subscribers when it comes back over Redis pub/sub, through
``Hub.arrived``, like any other server's. A channel's settings (its
history) live in Redis too, made by the first server that makes the channel.

A server subscribes in Redis once per channel it has local subscribers for,
and once per glob covering its wildcard patterns (filtered again by the
hub's own matcher). A channel's first local subscriber waits until Redis
confirmed the subscription and the Stream filled in what this server missed
(``current``), so a replay comes from complete history and the live stream
follows it with no gap; after a reconnect the same catch-up hands the
messages published meanwhile to the subscribers still in place, and
txpubsub.backplane.missed does it for channels read only through wildcards.

The client side (names, ids, WHO, direct messages, KICK) is in
txpubsub.backplane.names. txredisapi imports the reactor: this module is
imported only with --redis.
"""
from __future__ import annotations

import time
import zlib
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from txredisapi import ConnectionError as LostConnection
from zope.interface import implementer

from txpubsub.backplane.address import REPLY_TIMEOUT, RedisAddress
from txpubsub.backplane.connection import Commands, Factory, Listener, arguments
from txpubsub.backplane.missed import MAX_HELD, MissedReader
from txpubsub.backplane.names import HEARTBEAT, PREFIX, ClusterNames
from txpubsub.backplane.scripts import (
    CHANNEL_SCRIPT,
    CREATE_SCRIPT,
    DROP_SCRIPT,
    EPOCH_SCRIPT,
    PUBLISH_SCRIPT,
    TOUCH_SCRIPT,
)
from txpubsub.core.channel import Channel
from txpubsub.core.hub import IDLE_CHANNEL, RETIRED_BUCKETS, SWEEP_INTERVAL, Hub, new_epoch
from txpubsub.core.latency import LatencyHistogram
from txpubsub.core.message import Message
from txpubsub.core.registry import ClientRecord
from txpubsub.core.session import Session
from txpubsub.wire.errors import HubError, shorten
from txpubsub.wire.names import is_wildcard

EPOCH_KEY = PREFIX + "epoch"
FLOORS_KEY = PREFIX + "floors"
# Publishes waiting for Redis at once; past this a publish is refused.
MAX_PENDING = 10000
# A channel that keeps nothing is forgotten in Redis this long after its last
# publish, or after the last minute a server had subscribers for it: as a
# single server forgets such a channel IDLE_CHANNEL seconds after its last use
# (checking every SWEEP_INTERVAL).
CHANNEL_TTL = int(IDLE_CHANNEL + SWEEP_INTERVAL)
# Keys renewed in one script, at most.
TOUCH_BATCH = 500
# Channels whose publish arguments are kept ready, at most.
CHANNEL_ARGS_KEPT = 10_000


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


def floor_bucket(channel: str) -> int:
    """Which of the id floors covers ``channel`` (as the hub's retired names)."""
    return zlib.crc32(channel.encode()) % RETIRED_BUCKETS


def stream_entry(channel: str, entry: list[Any]) -> Message:
    """A Message from a Stream entry ``[b"<id>-0", [b"s", sender, b"t", time, b"p", payload]]``."""
    fields = entry[1]
    values = dict(zip(fields[::2], fields[1::2]))
    return Message(channel, int(entry[0].split(b"-")[0]), values[b"s"].decode(), values[b"p"],
                   float(values[b"t"]))


class RedisBackplane(ClusterNames, Service):
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
        self._publish_head = self._publish_middle = b""
        self._epoch_bytes = b""  # the epoch in the last publish's reply
        self._answer = self._answered  # bound once: made per publish otherwise
        self._channel_args: dict[str, tuple[bytes, bytes]] = {}
        self._channels: dict[str, int] = {}  # concrete channel -> local subscriptions
        self._globs: dict[str, int] = {}  # Redis glob -> local wildcard subscriptions
        self._current: set[str] = set()  # subscribed in Redis and caught up
        # Live messages (and their channel's history) held while a channel
        # subscribed in Redis is caught up; the catch-ups being read (each a
        # token its reply must still find there), and those waiting for the
        # command connection.
        self._held: dict[str, list[tuple[Message, int]]] = {}
        self._reading: dict[str, object] = {}
        self._stalled: set[str] = set()
        self._waiters: dict[str, list[Deferred[None]]] = {}
        # Redis's time when this server last heard from it (a message, a
        # heartbeat), and that time when the pub/sub connection was lost.
        self.seen: float | None = None
        self._lost_at: float | None = None
        self._missed: MissedReader | None = None  # reading what wildcards missed
        self._last_event = b""
        self.server_id = new_epoch()  # this server, among those sharing Redis
        hub.registry.next_number = self._next_client_number
        self._heartbeat = LoopingCall(self._refresh)
        self._heartbeat.clock = self._clock
        self._toucher = LoopingCall(self._touch_channels)
        self._toucher.clock = self._clock
        self._watchdog = LoopingCall(self._check_replies)
        self._watchdog.clock = self._clock
        self._replies_seen = 0  # the command connection's replies at the last check
        self._silent_since: float | None = None  # waiting for a reply, none came since
        retry = backoffPolicy(initialDelay=0.2, maxDelay=2.0)
        endpoint = _Attempts(address.endpoint(reactor), self)
        self._commands = ClientService(endpoint, Factory(Commands, address, self, self._clock),
                                       retryPolicy=retry, clock=self._clock,
                                       prepareConnection=self._commands_ready)
        self._pubsub = ClientService(endpoint, Factory(Listener, address, self),
                                     retryPolicy=retry, clock=self._clock,
                                     prepareConnection=self._listener_ready)

    @property
    def connection(self) -> Any:
        """The command connection, or None while Redis is away."""
        return self._conn

    @property
    def hub(self) -> Hub:
        """The hub this backplane carries messages for."""
        return self._hub

    def reads_through_globs(self, channel: str) -> bool:
        """Whether only wildcard subscriptions here read ``channel``."""
        return channel not in self._channels and self._hub.has_readers(channel)

    # -- connections ---------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        self._commands.startService()
        self._pubsub.startService()
        self._heartbeat.start(HEARTBEAT, now=False)
        self._toucher.start(SWEEP_INTERVAL, now=False)
        self._watchdog.start(REPLY_TIMEOUT / 4, now=False)

    def stopService(self) -> Deferred[Any]:
        Service.stopService(self)
        for loop in (self._heartbeat, self._toucher, self._watchdog):
            if loop.running:
                loop.stop()
        return DeferredList([self._commands.stopService(), self._pubsub.stopService()])

    @staticmethod
    def _no_delay(conn: Any) -> None:
        # A publish is one small write waiting for its answer: no Nagle delay.
        set_no_delay = getattr(conn.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)

    def _commands_ready(self, proxy: Any) -> Deferred[None]:
        self._no_delay(proxy)
        # Fires with the protocol itself: used directly, not through
        # ClientService's proxy (an attribute lookup less per publish).
        d = proxy.whenConnected()
        d.addCallback(self._handshake)
        return d

    def _handshake(self, conn: Any) -> Deferred[None]:
        d = conn.execute_command("EVAL", EPOCH_SCRIPT, 1, EPOCH_KEY, self._candidate)
        d.addCallback(self._epoch_known)
        d.addCallback(lambda _: conn.execute_command("SCRIPT", "LOAD", PUBLISH_SCRIPT))
        d.addCallback(self._usable, conn)
        return d

    def _usable(self, sha: bytes, conn: Any) -> None:
        self._sha = sha.decode()
        self._publish_parts()
        self._conn = conn
        self.last_error = None
        self._log.info("redis: connected")
        self._fetch_block()
        self._refresh()
        # ClientService hands over a proxy; the protocol reports itself.
        conn.whenDisconnected().addCallback(lambda _: self._commands_lost(conn))
        # Channels subscribed in Redis whose catch-up waited for this connection.
        for channel in list(self._stalled):
            self._catch_up(channel)
        if self._missed is not None:
            self._missed.resume()
        self._maybe_connected()

    def _check_replies(self) -> None:
        """Commands waiting and no reply for REPLY_TIMEOUT seconds: Redis is
        stuck or the network is; the connection is dropped, which refuses
        what waited (-ERR unavailable) and connects again."""
        conn = self._conn
        if conn is None or not conn.waiting or conn.replies != self._replies_seen:
            self._replies_seen = 0 if conn is None else conn.replies
            self._silent_since = None
            return
        now = self._clock.seconds()
        if self._silent_since is None:
            self._silent_since = now
        elif now - self._silent_since >= REPLY_TIMEOUT:
            self._log.warn("redis: no reply for {seconds:.0f} s to {count} commands; "
                           "connecting again", seconds=now - self._silent_since,
                           count=conn.waiting)
            self._silent_since = None
            conn.transport.abortConnection()

    def _commands_lost(self, conn: Any) -> None:
        if self._conn is conn:
            self._conn = None
            self.connection_losses += 1
            self._candidate = new_epoch()
            self._publish_parts()
            self._log.warn("redis: connection lost; publishes are refused until it is back")

    def _epoch_known(self, epoch: bytes) -> None:
        self._new_epoch(epoch.decode())

    def _new_epoch(self, epoch: str) -> None:
        hub = self._hub
        self._epoch_bytes = b""  # the next publish's reply is compared again
        if epoch == self._candidate:
            # Ours is Redis's epoch now: should Redis lose it again (FLUSHALL,
            # no reconnect), the next epoch must be another, or ids would
            # start again at 1 in the epoch that already numbered them.
            self._candidate = new_epoch()
            if self._sha:
                self._publish_parts()
        if not self._epoch_known_once and not (hub.store.durable and epoch != hub.epoch):
            self._epoch_known_once = True  # at start: Redis's epoch is ours
            hub.epoch = epoch
        elif epoch != hub.epoch:
            # Redis lost its data, or (at start) the history a --store file
            # kept is of another id space: ids start again.
            self._epoch_known_once = True
            hub.restart_ids(epoch)

    def _listener_ready(self, listener: Any) -> Deferred[None]:
        self._no_delay(listener)
        d = listener.whenConnected()
        d.addCallback(self._listening, listener)
        return d

    def _listening(self, _: object, listener: Any) -> None:
        self._listener = listener
        listener.whenDisconnected().addCallback(lambda _: self._listener_lost(listener))
        # One channel or glob per command: txredisapi matches each confirmation
        # to the next command waiting for one.
        for server in (self.server_id, "all"):
            listener.subscribe(PREFIX + "srv:" + server).addErrback(self._ignore)
        globs = list(self._globs)
        if globs:
            subscribed: Deferred[Any] = DeferredList(
                [listener.psubscribe(glob) for glob in globs], fireOnOneErrback=True,
                consumeErrors=True)
            if self._lost_at is not None:
                # What wildcard subscriptions here missed while away: read
                # from the Streams once the globs are live again.
                self._missed = reader = MissedReader(self, self._lost_at, globs)
                subscribed.addCallbacks(reader.subscribed, reader.finish)
            else:
                subscribed.addErrback(self._ignore)
        self._lost_at = None
        for channel in self._channels:
            self._watch(channel)
        self._maybe_connected()

    def _listener_lost(self, listener: Any) -> None:
        if self._listener is listener:
            self._listener = None
            self.connection_losses += 1
            self._current.clear()
            self._reading.clear()
            self._stalled.clear()
            held, self._held = self._held, {}
            for messages in held.values():
                # Not caught up: what the Stream keeps is read again once the
                # listener is back (delivering it now would skip what came
                # before it); what nothing keeps goes on now.
                for msg, keep in messages:
                    if not keep:
                        self.arrive(msg, keep)
            cut = self.seen
            if self._missed is not None:
                cut = self._missed.cut  # not read back yet: from the first loss
                self._missed.interrupt()
            if self._globs and self._lost_at is None:
                self._lost_at = cut
                if cut is None:
                    self._log.warn("redis: pub/sub lost before Redis's time was known: "
                                   "what wildcard subscriptions miss meanwhile is not read back")

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

    def missed_done(self, reader: MissedReader) -> None:
        """The wildcard catch-up after a reconnect has finished (or given up)."""
        if self._missed is reader:
            self._missed = None

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
        # The script's arguments, in RESP: what stays the same for a
        # connection and for a channel is made once.
        name = channel.name
        keys = self._channel_args.get(name)
        if keys is None:
            keys = self._channel_parts(name)
        sender_bytes = sender.encode()
        keep = channel.keep
        # One Deferred per publish: the connection hands its reply to
        # _answered, with no callbacks of the backplane's on it.
        return conn.send(b"%s%s$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%d\r\n%s%s" % (
            self._publish_head, keys[0], len(sender_bytes), sender_bytes, len(payload), payload,
            len(b"%d" % keep), keep, self._publish_middle, keys[1]), self._answer, self._now())

    def _channel_parts(self, name: str) -> tuple[bytes, bytes]:
        """The publish script's arguments about one channel, in RESP (kept for
        the channels published to lately)."""
        if len(self._channel_args) >= CHANNEL_ARGS_KEPT:
            self._channel_args.clear()
        self._channel_args[name] = found = (
            arguments(PREFIX + "id:" + name, PREFIX + "s:" + name, PREFIX + "ch:" + name),
            arguments(PREFIX + "m:" + name, floor_bucket(name), name))
        return found

    def _publish_parts(self) -> None:
        """The publish script's arguments that stay the same on a connection."""
        self._publish_head = b"*17\r\n" + arguments("EVALSHA", self._sha, 5, EPOCH_KEY,
                                                      FLOORS_KEY)
        self._publish_middle = arguments(self._candidate, CHANNEL_TTL, self.server_id)

    def _answered(self, reply: Any, sent: float) -> int:
        """A publish's id from Redis's reply ``[id, epoch]``; HubError
        unavailable if the script failed or the connection was lost."""
        self._pending -= 1
        if isinstance(reply, Exception):
            self.publish_errors += 1
            # A lost connection is logged once, not per publish that waited.
            if not isinstance(reply, LostConnection):
                self._log.warn("redis: publish failed: {why}", why=reply)
            # A timeout may hide a publish that did happen: never +OK, maybe -ERR.
            raise HubError("unavailable", "redis did not take it; not acknowledged")
        # Answered within a read of the command connection (replies_arrived).
        self.publish_seconds.observe(self._replies_at - sent)
        msg_id, epoch = reply
        if epoch != self._epoch_bytes:
            self._epoch_bytes = epoch
            if epoch.decode() != self._hub.epoch:
                self._new_epoch(epoch.decode())
        return int(msg_id)

    # -- channels and their events across servers ---------------------------------

    def channel_made(self, ch: Channel[Session]) -> None:
        """A channel made here by a client: made in Redis too, with its history,
        unless it exists there (then Redis's settings win, as messages say)."""
        conn = self._conn
        if conn is not None:
            name = ch.name
            conn.execute_command(
                "EVAL", CHANNEL_SCRIPT, 3, PREFIX + "ch:" + name, PREFIX + "id:" + name,
                PREFIX + "s:" + name, ch.keep, "", CHANNEL_TTL, self.server_id,
                name).addErrback(self._ignore)

    def create_channel(self, channel: str, keep: int) -> Deferred[None]:
        """CREATE: the channel and its history setting, for every server;
        HubError exists if it exists in Redis."""
        conn = self._conn
        if conn is None:
            raise HubError("unavailable", "redis cannot be reached; channels are made there")
        d = conn.execute_command("EVAL", CREATE_SCRIPT, 1, PREFIX + "ch:" + channel, keep,
                                 CHANNEL_TTL, self.server_id, channel)
        return d.addCallbacks(self._created, self._failed, (channel,))

    @staticmethod
    def _created(made: int, channel: str) -> None:
        if not made:
            raise HubError("exists", f"{shorten(channel)} exists")

    def _failed(self, failure: Failure) -> None:
        self._log.warn("redis: command failed: {why}", why=failure.value)
        raise HubError("unavailable", "redis did not answer; nothing done")

    def drop_channel(self, channel: str) -> Deferred[None]:
        """Admin DROP: the channel's history and settings go from Redis, and
        every server drops its copy (its subscribers get DROP)."""
        conn = self._conn
        if conn is None:
            raise HubError("unavailable", "redis cannot be reached; channels are dropped there")
        d = conn.execute_command(
            "EVAL", DROP_SCRIPT, 4, PREFIX + "ch:" + channel, PREFIX + "id:" + channel,
            PREFIX + "s:" + channel, FLOORS_KEY, floor_bucket(channel), CHANNEL_TTL,
            self.server_id, channel)
        return d.addCallbacks(self._dropped, self._failed, (channel,))

    def _dropped(self, existed: int, channel: str) -> None:
        if self._hub.channel(channel) is not None:
            self._hub.drop(channel)
        elif not existed:
            raise HubError("no-such-channel", f"{shorten(channel)} does not exist")

    def _server_message(self, data: bytes) -> None:
        if data.startswith(b"epoch "):  # on txpubsub:srv:all: Redis lost its data
            epoch = data[6:].decode()
            if epoch != self._hub.epoch:
                self._new_epoch(epoch)
            return
        if data.startswith(b"drop "):  # on txpubsub:srv:all: a channel dropped elsewhere
            _, server, channel = data.decode().split(" ", 2)
            if server != self.server_id and self._hub.channel(channel) is not None:
                self._hub.drop(channel)
            return
        ClusterNames._server_message(self, data)

    def share_event(self, channel: str, text: str) -> None:
        """A $sys.clients line of this server, for the other servers' readers
        (channel events come from the scripts that change channels)."""
        conn = self._conn
        if conn is not None and channel == "$sys.clients":
            conn.execute_command(
                "PUBLISH", PREFIX + "m:" + channel,
                f"0 {self._clock.seconds()!r} 0 {self.server_id} {text}").addErrback(self._ignore)

    def _system_event(self, channel: str, server: str, text: bytes) -> None:
        if channel == "$sys.clients" and server == self.server_id:
            return  # told to this server's readers when it happened
        hub = self._hub
        if hub.has_readers(channel):
            hub.publish_system(channel, text)

    def _touch_channels(self) -> None:
        """Channels with subscribers here that keep nothing in Redis live on
        there (those with a Stream live as long as it does)."""
        conn = self._conn
        if conn is None:
            return
        keys = []
        for channel in self._channels:
            if channel[0] != "$":
                keys += [PREFIX + "ch:" + channel, PREFIX + "id:" + channel]
        for i in range(0, len(keys), TOUCH_BATCH * 2):
            batch = keys[i:i + TOUCH_BATCH * 2]
            conn.execute_command("EVAL", TOUCH_SCRIPT, len(batch), *batch,
                                 CHANNEL_TTL).addErrback(self._ignore)

    # -- receiving ---------------------------------------------------------------

    def received(self, redis_channel: bytes, data: bytes) -> None:
        """A message from Redis pub/sub (any server's, ours included):
        ``<id> <time> <history> <sender> <payload>`` on ``txpubsub:m:<channel>``."""
        if redis_channel[9:11] != b"m:":  # txpubsub:srv:...
            self._server_message(data)
            return
        channel = redis_channel[11:].decode()
        msg_id, at, keep, sender, payload = data.split(b" ", 4)
        if msg_id == b"0":  # a system channel's event
            # A channel and a glob both subscribed bring it twice, one right
            # after the other (its time and server make it unique).
            if data != self._last_event:
                self._last_event = data
                self._system_event(channel, sender.decode(), payload)
            return
        self.seen = published_at = float(at)
        msg = Message(channel, int(msg_id), sender.decode(), payload, published_at)
        history = int(keep)
        if not self._held and self._missed is None:
            # arrive() written out for a channel here and current: this runs
            # once per message.
            hub = self._hub
            ch = hub.channel(channel)
            if ch is not None and ch.keep == history:
                if msg.msg_id > ch.last_id:
                    hub.fan_out(ch, msg, None)
                return
            self.arrive(msg, history)
            return
        held = self._held.get(channel)
        if held is not None:
            held.append((msg, history))
            if len(held) > MAX_HELD:
                self._log.warn("redis: catching up {channel} takes too long: more than "
                               "{count} live messages came meanwhile; some before them may "
                               "be missing", channel=channel, count=MAX_HELD)
                self._release(channel)
        elif self._missed is not None and channel not in self._channels:
            self._missed.hold(msg, history)
        else:
            self.arrive(msg, history)

    def _saw_time(self, now: bytes) -> None:
        self.seen = float(now)

    def arrive(self, msg: Message, keep: int) -> None:
        """Hand on a message from Redis, if it is new here and wanted here."""
        hub = self._hub
        ch = hub.channel(msg.channel)
        if ch is None:
            # A glob is wider than the patterns it covers: a channel none of
            # them matches (and no one here waits for) is not made here.
            if msg.channel in self._channels or hub.has_readers(msg.channel):
                hub.shared_channel(msg.channel, keep)
                hub.arrived(msg)
        elif msg.msg_id > ch.last_id:
            # Each message once: a channel and a glob may both bring it, and
            # a catch-up may overlap what pub/sub brings.
            if ch.keep != keep:
                hub.shared_channel(msg.channel, keep)  # Redis's setting wins
            hub.arrived(msg)

    def arrive_all(self, channel: str, keep: int | None, entries: list[Any]) -> None:
        """Stream entries of ``channel`` (oldest first) that this server may have
        missed, each handed on once; ``keep`` is the channel's history in Redis."""
        if keep is None:
            ch = self._hub.channel(channel)
            keep = ch.keep if ch is not None else self._hub.default_history
        for entry in entries:
            self.arrive(stream_entry(channel, entry), keep)

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
            self._reading.pop(key, None)
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
        d = listener.subscribe(PREFIX + "m:" + channel)
        if channel[0] == "$":
            d.addErrback(self._ignore)  # events: nothing to catch up
            return
        self._held.setdefault(channel, [])
        d.addCallbacks(lambda _: self._catch_up(channel), self._ignore)

    def _catch_up(self, channel: str) -> None:
        """Read from Redis what came after this server's last id (and the
        channel's settings), then go live. The channel is subscribed in
        Redis; live messages are held meanwhile."""
        if self._listener is None or channel in self._reading:
            return  # caught up when the listener is back, or being read
        if channel not in self._channels:
            self._release(channel)  # nobody here wants it any more
            return
        self._held.setdefault(channel, [])
        conn = self._conn
        if conn is None:
            self._stalled.add(channel)  # read once the command connection is back
            return
        self._stalled.discard(channel)
        self._reading[channel] = token = object()
        ch = self._hub.channel(channel)
        start = f"({ch.last_id}" if ch is not None and ch.last_id else "-"
        d = conn.execute_command(
            "EVAL", CHANNEL_SCRIPT, 3, PREFIX + "ch:" + channel, PREFIX + "id:" + channel,
            PREFIX + "s:" + channel, "", start, CHANNEL_TTL, self.server_id, channel)
        d.addCallbacks(self._caught_up, self._not_caught_up, (channel, token),
                       errbackArgs=(channel, token))

    def _not_caught_up(self, failure: Failure, channel: str, token: object) -> None:
        if self._reading.get(channel) is not token:
            return
        del self._reading[channel]
        if self._conn is None:
            self._stalled.add(channel)  # again once the command connection is back
        else:
            self._log.warn("redis: catching up {channel} failed: {why}; some messages may "
                           "be missing", channel=channel, why=failure.value)
            self._release(channel)

    def _caught_up(self, reply: list[Any], channel: str, token: object) -> None:
        if self._reading.get(channel) is not token:
            return  # read for a subscription that has gone since
        del self._reading[channel]
        keep, last, entries = reply
        hub = self._hub
        self._hole(channel, keep, int(last), entries)
        if keep is not None or entries or last != b"0":
            # It exists in Redis: a copy here (even with --no-auto-create), its
            # history Redis's, its ids known up to Redis's last.
            if keep is not None:
                hub.shared_channel(channel, int(keep))
            self.arrive_all(channel, None if keep is None else int(keep), entries)
            ch = hub.channel(channel)
            hub.shared_channel(channel, ch.keep if ch is not None else hub.default_history,
                               int(last))
        if self._release(channel) and channel in self._channels:
            self._current.add(channel)
            waiters = self._waiters.pop(channel, [])
            for d in waiters:
                if not d.called:
                    d.callback(None)  # the hub subscribes its waiting clients now
                # Held one turn more: the hub may take its own interest after
                # this returns (when the catch-up was immediate).
                self._clock.callLater(0, self.interest, channel, -1)

    def _hole(self, channel: str, keep: bytes | None, last: int, entries: list[Any]) -> None:
        """Say so when messages published while this server was away are no
        longer in the channel's history: its subscribers here miss them."""
        ch = self._hub.channel(channel)
        if ch is None or not ch.last_id or not ch.subscribers or keep in (None, b"0"):
            return
        first = int(entries[0][0].split(b"-")[0]) if entries else last + 1
        if first > ch.last_id + 1:
            self._log.warn("redis: {count} messages of {channel} published while this server "
                           "was away are no longer in its history ({keep}): its subscribers "
                           "here miss them", count=first - ch.last_id - 1, channel=channel,
                           keep=int(keep))

    def _release(self, channel: str) -> bool:
        """End a catch-up: what pub/sub brought meanwhile goes on its way."""
        self._stalled.discard(channel)
        held = self._held.pop(channel, None)
        for msg, keep in held or ():
            self.arrive(msg, keep)
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
