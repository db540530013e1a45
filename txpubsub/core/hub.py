"""The hub: every channel, subscription, client name and counter.

No sockets and no wire format: doors (the line protocol, later the admin
socket and WebSocket) turn bytes into these calls, and the hub hands each
published Message to the matching subscribers through the small Subscriber
interface below.
"""
from __future__ import annotations

import secrets
import string
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from txpubsub.core.channel import Channel
from txpubsub.core.index import PatternIndex
from txpubsub.core.message import Message
from txpubsub.core.store import MemoryStore, Store
from txpubsub.wire.errors import CloseReason, HubError, ServerFull, shorten
from txpubsub.wire.names import (
    INBOX,
    PLAIN,
    SYSTEM,
    channel_kind,
    check_name,
    is_client_id,
    is_wildcard,
    pattern_kind,
    pattern_matches,
)

SYSTEM_CHANNELS = ("$sys.time", "$sys.clients", "$sys.channels", "$sys.stats")
ADMIN_SENDER = "$admin"
# A channel with no subscribers and nothing kept, untouched for this long, is
# forgotten (its last id is remembered, so ids never restart in an epoch).
IDLE_CHANNEL = 300.0
SWEEP_INTERVAL = 60.0


class Subscriber(Protocol):
    """What the hub needs from a connection, whatever door it came through.

    ``deliver`` is called once per matching message on the publish path: it
    must be cheap and must not call back into the hub; it returns True when
    this subscriber is falling behind and the publisher should be paced.
    ``pace`` is then called on the publisher (True if it was held back), and
    ``charge_stall`` on each subscriber that asked for it. ``close`` ends the connection
    with a reason; the door calls ``Hub.detach`` later, when the connection
    is really gone, never from inside ``close``.
    """

    msgs_in: int
    msgs_out: int

    def deliver(self, msg: Message) -> bool: ...

    def pace(self) -> bool: ...

    def charge_stall(self) -> None: ...

    def channel_dropped(self, channel: str) -> None: ...

    def close(self, reason: CloseReason, text: str = "") -> None: ...

    def pending_bytes(self) -> int: ...


class Client:
    """The hub's record of one connected client."""

    __slots__ = ("address", "addressable", "client_id", "connected_at", "inbox_last_id",
                 "listener", "name", "name_locked", "patterns", "sender", "subscriber")

    def __init__(
        self, client_id: str, subscriber: Subscriber, connected_at: float, address: str,
        listener: str,
    ) -> None:
        self.client_id = client_id
        self.subscriber = subscriber
        self.connected_at = connected_at
        self.address = address
        self.listener = listener
        self.name: str | None = None
        self.sender = client_id  # the name shown as sender: the name, or the id
        self.patterns: set[str] = set()
        self.addressable = True  # raw feed/ingest connections take no direct messages
        self.name_locked = False  # a name from a TLS certificate cannot be changed
        self.inbox_last_id = 0

    def __repr__(self) -> str:
        return f"<Client {self.client_id} {self.name or '-'}>"


@dataclass(frozen=True)
class ClosedConnection:
    """One line of the connection log."""

    client_id: str
    name: str | None
    address: str
    connected_at: float
    disconnected_at: float
    reason: str


@dataclass
class Counters:
    """Server-wide counters, bumped once per publish, never per delivery."""

    msgs_in: int = 0
    msgs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    connections_total: int = 0
    slow_consumers: int = 0
    pacing_stalls: int = 0


def new_epoch() -> str:
    """A fresh epoch: names an id space that starts at this server start."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


class Hub(Service):
    """The channel service: owns all state, takes its clock as a parameter."""

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        *,
        history: int = 100,
        max_history: int = 10000,
        max_payload: int = 1048576,
        max_clients: int = 10000,
        max_subscriptions: int = 10000,
        auto_create: bool = True,
        max_replay: int = 1000,
        connection_log: int = 10000,
        store: Store | None = None,
        epoch: str | None = None,
    ) -> None:
        self.clock = clock
        self.default_history = history
        self.max_history = max_history
        self.max_payload = max_payload
        self.max_clients = max_clients
        self.max_subscriptions = max_subscriptions
        self.auto_create = auto_create
        self.max_replay = max_replay
        self.store: Store = store or MemoryStore(epoch or new_epoch())
        self.epoch = epoch or self.store.epoch
        self.started_at = clock.seconds()
        self.counters = Counters()
        self._channels: dict[str, Channel[Subscriber]] = {}
        self._patterns: PatternIndex[Subscriber] = PatternIndex()
        self._clients: dict[str, Client] = {}  # by id, in connection order
        self._by_name: dict[str, Client] = {}
        self._by_subscriber: dict[Subscriber, Client] = {}
        self._retired: dict[str, int] = {}  # forgotten or dropped channel -> its last id
        self._last_client_number = 0
        self._sweeper: LoopingCall | None = None
        self.connection_log: deque[ClosedConnection] = deque(maxlen=connection_log)
        self._all_gone: list[Deferred[None]] = []
        for name in SYSTEM_CHANNELS:
            self._channels[name] = Channel(name, 0, self.started_at, system=True)
        for saved in self.store.load():
            if saved.retired:
                self._retired[saved.name] = saved.last_id
                continue
            ch: Channel[Subscriber] = Channel(saved.name, saved.keep, saved.created_at,
                                              saved.last_id)
            ch.restore(saved.messages)
            self._channels[saved.name] = ch

    def startService(self) -> None:
        Service.startService(self)
        self._sweeper = LoopingCall(self.forget_idle_channels)
        self._sweeper.clock = self.clock
        self._sweeper.start(SWEEP_INTERVAL, now=False)

    def stopService(self) -> Deferred[None]:
        """Say ``BYE shutdown`` to every client, wait until they are gone (each
        is let go of within seconds), then let the store finish writing.

        Listeners stop before the hub does, so nobody new arrives meanwhile.
        """
        Service.stopService(self)
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        d = self.close_all()
        d.addBoth(lambda _: self.store.close())
        return d

    def close_all(self, grace: float = 0.0) -> Deferred[None]:
        """``BYE shutdown`` to every client, spread evenly over ``grace`` seconds
        (so they do not all reconnect at once); fires when all are gone."""
        clients = list(self._clients.values())
        if not clients:
            return succeed(None)
        gone: Deferred[None] = Deferred()
        self._all_gone.append(gone)
        for i, client in enumerate(clients):
            delay = grace * i / len(clients)
            if delay:
                self.clock.callLater(delay, client.subscriber.close, CloseReason.SHUTDOWN)
            else:
                client.subscriber.close(CloseReason.SHUTDOWN)
        return gone

    def kick(self, name_or_id: str, text: str = "") -> str:
        """Close a client with ``BYE kicked``; returns its id. HubError no-such-client."""
        client = self.find_client(name_or_id)
        if client is None:
            raise HubError("no-such-client", f"no client {shorten(name_or_id)}")
        self._log.info("kicking {client_id} ({name}): {text}", client_id=client.client_id,
                       name=client.name or "-", text=text or "-")
        client.subscriber.close(CloseReason.KICKED, text)
        return client.client_id

    def drop(self, channel: str) -> None:
        """Remove a channel: its subscribers are told ``DROP`` and lose that
        subscription; wildcard subscriptions stay; ids go on if it comes back."""
        kind = channel_kind(channel)
        if kind != PLAIN:
            raise HubError("forbidden", f"{shorten(channel)} cannot be dropped")
        ch = self._channels.get(channel)
        if ch is None:
            raise HubError("no-such-channel", f"{shorten(channel)} does not exist")
        for subscriber in list(ch.subscribers):
            self._by_subscriber[subscriber].patterns.discard(channel)
            subscriber.channel_dropped(channel)
        ch.subscribers.clear()
        ch.clear_history()
        self._retire(ch)
        self._log.info("channel {channel} dropped", channel=channel)
        self._announce("$sys.channels", f"drop {channel}")

    # -- clients ---------------------------------------------------------

    def attach(
        self, subscriber: Subscriber, address: str = "-", listener: str = "-", family: str = "-"
    ) -> Client:
        """Register a new connection; ServerFull past --max-clients (BYE too-many-clients)."""
        if len(self._clients) >= self.max_clients:
            raise ServerFull(f"the server is full ({self.max_clients} clients)")
        self._last_client_number += 1
        client = Client(
            f"c{self._last_client_number}", subscriber, self.clock.seconds(), address, listener
        )
        self._clients[client.client_id] = client
        self._by_subscriber[subscriber] = client
        self.counters.connections_total += 1
        self._log.info(
            "{client_id} connected from {address} on {listener}",
            client_id=client.client_id, address=address, listener=listener,
        )
        self._announce("$sys.clients", f"connect {client.client_id} {family}")
        return client

    def detach(self, client: Client, reason: CloseReason) -> None:
        """Forget a connection that is gone: its subscriptions and its name."""
        if self._clients.pop(client.client_id, None) is None:
            return
        subscriber = client.subscriber
        del self._by_subscriber[subscriber]
        for pattern in client.patterns:
            self._forget_subscription(subscriber, pattern)
        client.patterns.clear()
        if client.name is not None:
            del self._by_name[client.name]
        self.connection_log.appendleft(ClosedConnection(
            client.client_id, client.name, client.address, client.connected_at,
            self.clock.seconds(), reason.value))
        self._log.info(
            "{client_id} ({name}) disconnected: {reason}",
            client_id=client.client_id, name=client.name or "-", reason=reason.value,
        )
        self._announce("$sys.clients", f"disconnect {client.client_id} {reason.value}")
        if not self._clients:
            waiting, self._all_gone = self._all_gone, []
            for gone in waiting:
                gone.callback(None)

    def set_name(self, client: Client, name: str) -> str:
        """Give a client a name (or a new one); HubError bad-args or name-taken."""
        if client.name_locked:
            raise HubError("forbidden", "your name comes from your certificate")
        check_name(name)
        holder = self._by_name.get(name)
        if holder is client:
            return name
        if holder is not None:
            raise HubError("name-taken", f"{name} is taken by another client")
        if client.name is not None:
            del self._by_name[client.name]
        self._by_name[name] = client
        client.name = client.sender = name
        self._announce("$sys.clients", f"name {client.client_id} {name}")
        return name

    def claim_name(self, client: Client, name: str) -> None:
        """Give a client the name its TLS certificate carries, for good.

        A client that took that name with NAME loses it (``BYE kicked``);
        another connection holding it by certificate keeps it, and this one
        is refused (HubError auth-failed).
        """
        check_name(name)
        holder = self._by_name.get(name)
        if holder is not None and holder is not client:
            if holder.name_locked:
                raise HubError("auth-failed", f"{name} is connected already")
            del self._by_name[name]
            holder.name, holder.sender = None, holder.client_id
            holder.subscriber.close(CloseReason.KICKED, "that name belongs to a certificate")
        self.set_name(client, name)
        client.name_locked = True

    def clients(self) -> list[Client]:
        """Every connected client, oldest connection first."""
        return list(self._clients.values())

    def find_client(self, name_or_id: str) -> Client | None:
        """A connected client by name, or by id."""
        if is_client_id(name_or_id):
            return self._clients.get(name_or_id)
        return self._by_name.get(name_or_id)

    # -- channels --------------------------------------------------------

    def create(self, channel: str, history: int | None = None) -> Channel[Subscriber]:
        """Create a channel keeping ``history`` messages (default: the server's)."""
        kind = channel_kind(channel)
        if kind != PLAIN:
            raise HubError("forbidden", f"{shorten(channel)} cannot be created by clients")
        if channel in self._channels:
            raise HubError("exists", f"{shorten(channel)} exists")
        if history is not None and history > self.max_history:
            raise HubError("bad-args", f"history= is at most {self.max_history}")
        return self._new_channel(channel, self.default_history if history is None else history)

    def _new_channel(self, name: str, keep: int) -> Channel[Subscriber]:
        # A channel made again goes on from its last id: ids never restart in an epoch.
        ch: Channel[Subscriber] = Channel(name, keep, self.clock.seconds(),
                                          self._retired.pop(name, 0))
        self._channels[name] = ch
        self.store.channel_created(name, keep, ch.created_at, ch.last_id)
        self._announce("$sys.channels", f"create {name}")
        return ch

    def forget_idle_channels(self) -> int:
        """Forget channels nobody subscribes to, that keep nothing, idle IDLE_CHANNEL s.

        Returns how many were forgotten. Their last ids are remembered.
        """
        cutoff = self.clock.seconds() - IDLE_CHANNEL
        idle = [
            ch for ch in self._channels.values()
            if not (ch.system or ch.subscribers or ch.history)
            and (ch.last_publish_at or ch.created_at) <= cutoff
        ]
        for ch in idle:
            self._retire(ch)
        return len(idle)

    def _retire(self, ch: Channel[Subscriber]) -> None:
        del self._channels[ch.name]
        if ch.last_id:  # a channel that never had a message has nothing to go on from
            self._retired[ch.name] = ch.last_id
        self.store.channel_retired(ch.name, ch.last_id)

    def channel(self, name: str) -> Channel[Subscriber] | None:
        """The channel of that exact name, if it exists."""
        return self._channels.get(name)

    def channels(self, pattern: str = ">") -> list[Channel[Subscriber]]:
        """Channels whose names a pattern matches, sorted by name."""
        pattern_kind(pattern)
        return sorted(
            (ch for name, ch in self._channels.items() if pattern_matches(pattern, name)),
            key=lambda ch: ch.name,
        )

    def subscribers_of(self, channel: str) -> set[Subscriber]:
        """The connections that a message on ``channel`` would reach now."""
        channel_kind(channel)
        found: set[Subscriber] = set()
        ch = self._channels.get(channel)
        if ch is not None:
            found.update(ch.subscribers)
        for matched in self._patterns.match(channel):
            found.update(matched)
        return found

    def clients_of(self, subscribers: Iterable[Subscriber]) -> list[Client]:
        """Client records of subscribers, oldest connection first."""
        wanted = set(subscribers)
        return [c for c in self._clients.values() if c.subscriber in wanted]

    # -- subscriptions ---------------------------------------------------

    def subscribe(
        self,
        client: Client,
        pattern: str,
        last: int | None = None,
        since: int | None = None,
        epoch: str | None = None,
    ) -> tuple[list[bytes], bool]:
        """Subscribe a client to a pattern; returns (lines to replay, partial).

        ``last``/``since`` (concrete channels only) ask for a replay from
        history. The replay is taken and the subscription made in this one
        call, and the reactor runs nothing else meanwhile, so no message can
        fall between the replay and the live stream, nor come twice. Partial
        means the replay could not start right after ``since``: the messages
        are no longer kept, the replay was capped, ``epoch`` is not ours, or
        ``since`` is newer than anything here.

        Subscribing again to a pattern it holds changes nothing (as Redis
        SUBSCRIBE). A concrete channel is created if it does not exist,
        unless auto-create is off.
        """
        kind = pattern_kind(pattern)
        if kind == INBOX:
            raise HubError("forbidden", "inboxes are delivered to their owner without SUB")
        wildcard = is_wildcard(pattern)
        if wildcard and (last is not None or since is not None):
            raise HubError("bad-args", "last= and since= need a concrete channel")
        if pattern not in client.patterns:
            if len(client.patterns) >= self.max_subscriptions:
                raise HubError(
                    "too-many-subscriptions", f"at most {self.max_subscriptions} per connection"
                )
            if wildcard:
                self._patterns.add(pattern, client.subscriber)
            else:
                ch = self._channels.get(pattern)
                if ch is None:
                    if kind == SYSTEM:
                        raise HubError("no-such-channel",
                                       f"no system channel {shorten(pattern)}")
                    ch = self._auto_create(pattern)
                ch.subscribers.add(client.subscriber)
            client.patterns.add(pattern)
        if last is None and since is None:
            return [], False
        return self._replay(self._channels[pattern], last, since, epoch)

    def _replay(
        self, ch: Channel[Subscriber], last: int | None, since: int | None, epoch: str | None
    ) -> tuple[list[bytes], bool]:
        kept = len(ch.history)
        partial = False
        if last is not None:
            count = min(last, kept, self.max_replay)  # last= never says partial
        else:
            assert since is not None
            if (epoch is not None and epoch != self.epoch) or since > ch.last_id:
                # Not our id space: everything kept, and the client is told.
                count, partial = kept, True
            else:
                count = ch.last_id - since
                if count > kept:
                    count, partial = kept, True
            if count > self.max_replay:
                # The newest ones: the replay stays contiguous with the live stream.
                count, partial = self.max_replay, True
        return list(islice(ch.history, kept - count, kept)), partial

    def history(self, channel: str, n: int | None = None) -> list[bytes]:
        """The last ``n`` kept messages' delivery lines (all, at most
        --max-replay), oldest first."""
        kind = channel_kind(channel)
        if kind == INBOX:
            raise HubError("forbidden", "inboxes keep no history")
        ch = self._channels.get(channel)
        if ch is None:
            raise HubError("no-such-channel", f"{shorten(channel)} does not exist")
        kept = len(ch.history)
        count = min(kept if n is None else n, kept, self.max_replay)
        return list(islice(ch.history, kept - count, kept))

    def unsubscribe(self, client: Client, pattern: str) -> None:
        """Drop one of a client's subscriptions; HubError not-subscribed if absent."""
        pattern_kind(pattern)
        if pattern not in client.patterns:
            raise HubError("not-subscribed", f"not subscribed to {shorten(pattern)}")
        client.patterns.discard(pattern)
        self._forget_subscription(client.subscriber, pattern)

    def _forget_subscription(self, subscriber: Subscriber, pattern: str) -> None:
        if is_wildcard(pattern):
            self._patterns.remove(pattern, subscriber)
        else:
            ch = self._channels.get(pattern)
            if ch is not None:
                ch.subscribers.discard(subscriber)

    def subscription_count(self) -> int:
        """Subscriptions held by all connected clients."""
        return sum(len(c.patterns) for c in self._clients.values())

    def _auto_create(self, channel: str) -> Channel[Subscriber]:
        if not self.auto_create:
            raise HubError("no-such-channel",
                           f"{shorten(channel)} does not exist (auto-create is off)")
        return self._new_channel(channel, self.default_history)

    # -- publishing ------------------------------------------------------

    def publish(
        self, sender: str, channel: str, payload: bytes, publisher: Subscriber | None = None
    ) -> int:
        """Keep a message and hand it once to every matching connection.

        ``sender`` is the name shown to readers; ``publisher``, the connection
        that published, is paced if a reader is falling behind. Returns the id.
        """
        if len(payload) > self.max_payload:
            raise HubError("too-large", f"payload over {self.max_payload} bytes")
        ch = self._channels.get(channel)
        if ch is None:
            kind = channel_kind(channel)
            if kind == INBOX:
                return self._direct(sender, channel[1:], payload, publisher)
            if kind == SYSTEM:
                raise HubError("forbidden", "system channels are read-only")
            ch = self._auto_create(channel)
        elif ch.system:
            raise HubError("forbidden", "system channels are read-only")
        return self._fan_out(ch, sender, payload, publisher)

    def publish_system(self, channel: str, payload: bytes) -> int:
        """Publish on a system channel (the server's own voice)."""
        return self._fan_out(self._channels[channel], "$sys", payload, None)

    def _announce(self, channel: str, text: str) -> None:
        # Nothing is formatted or kept for a system channel nobody reads.
        if self.has_readers(channel):
            self.publish_system(channel, text.encode())

    def has_readers(self, channel: str) -> bool:
        """Whether anyone would receive a message on ``channel`` now."""
        ch = self._channels.get(channel)
        return bool((ch is not None and ch.subscribers) or self._patterns.match(channel))

    def _fan_out(
        self, ch: Channel[Subscriber], sender: str, payload: bytes,
        publisher: Subscriber | None,
    ) -> int:
        msg = ch.append(sender, payload, self.clock.seconds())
        if self.store.durable and not ch.system:
            self.store.message_added(msg, ch.keep)
        readers: Iterable[Subscriber] = ch.subscribers
        if len(self._patterns):
            sets = self._patterns.match(ch.name)
            if sets:
                if ch.subscribers:
                    sets.append(ch.subscribers)
                # One copy per connection, however many subscriptions match.
                readers = sets[0] if len(sets) == 1 else set().union(*sets)
        behind = self._deliver(msg, readers)
        if behind and publisher is not None:
            self._pace(publisher, behind)
        return msg.msg_id

    def _pace(self, publisher: Subscriber, behind: list[Subscriber]) -> None:
        if publisher.pace():
            self.counters.pacing_stalls += 1
            for subscriber in behind:
                subscriber.charge_stall()

    def _direct(
        self, sender: str, recipient: str, payload: bytes, publisher: Subscriber | None
    ) -> int:
        client = self.find_client(recipient)
        if client is None or not client.addressable:
            raise HubError("no-such-client", f"no client called {shorten(recipient)}")
        client.inbox_last_id += 1
        msg_id = client.inbox_last_id
        msg = Message("@" + client.sender, msg_id, sender, payload, self.clock.seconds())
        behind = self._deliver(msg, (client.subscriber,))
        if behind and publisher is not None:
            self._pace(publisher, behind)
        return msg_id

    def _deliver(self, msg: Message, readers: Iterable[Subscriber]) -> list[Subscriber] | None:
        """Hand a message to each reader; returns those falling behind, if any."""
        counters = self.counters
        size = msg.size
        delivered = 0
        behind = None
        for subscriber in readers:
            try:
                if subscriber.deliver(msg):
                    if behind is None:
                        behind = []
                    behind.append(subscriber)
            except Exception:
                # One broken connection must not cost the others their copy.
                self._log.failure("delivery to {subscriber!r} failed", subscriber=subscriber)
            else:
                delivered += 1
        counters.msgs_in += 1
        counters.bytes_in += len(msg.payload)
        counters.msgs_out += delivered
        counters.bytes_out += delivered * size
        return behind

    def stats(self) -> dict[str, int]:
        """The server's counters and sizes, true at the moment asked."""
        c = self.counters
        return {
            "uptime_s": int(self.clock.seconds() - self.started_at),
            "clients": len(self._clients),
            "channels": sum(1 for ch in self._channels.values() if not ch.system),
            "subscriptions": self.subscription_count(),
            "msgs_in": c.msgs_in,
            "msgs_out": c.msgs_out,
            "bytes_in": c.bytes_in,
            "bytes_out": c.bytes_out,
            "slow_consumers": c.slow_consumers,
            "connections_total": c.connections_total,
            "pacing_stalls": c.pacing_stalls,
            "store_errors": self.store.errors,
        }

