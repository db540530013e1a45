"""The hub: channels, subscriptions, publishing and fan-out.

No sockets and no wire format: doors turn bytes into these calls, and the
hub hands each published Message to the matching sessions (the Session
seam). Who is connected lives in the ClientRegistry; ids are assigned by the
Backplane; permissions are the Authorizer's.
"""
from __future__ import annotations

import heapq
import secrets
import string
import zlib
from collections import deque
from collections.abc import Iterable
from typing import Callable, Union

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txpubsub.core.authorizer import AllowAll, Authorizer
from txpubsub.core.backplane import Backplane, LocalBackplane, MessageId
from txpubsub.core.channel import Channel
from txpubsub.core.codec import Codec
from txpubsub.core.globs import GlobIndex
from txpubsub.core.index import NO_LIMIT, PatternIndex
from txpubsub.core.message import Message
from txpubsub.core.pending import PendingPublish
from txpubsub.core.rate import PublishBudget
from txpubsub.core.refusals import RefusalLog
from txpubsub.core.registry import ClientRecord, ClientRegistry, ClosedConnection, Member
from txpubsub.core.session import Session
from txpubsub.core.stats import Counters, DoorCounters
from txpubsub.core.store import MemoryStore, Store
from txpubsub.wire.errors import CloseReason, HubError, shorten
from txpubsub.wire.names import (
    INBOX,
    PLAIN,
    SYSTEM,
    channel_kind,
    check_name,
    is_client_id,
    is_wildcard,
    pattern_kind,
    pattern_regex,
)

SYSTEM_CHANNELS = ("$sys.time", "$sys.clients", "$sys.channels", "$sys.stats")
ADMIN_SENDER = "$admin"
# A channel with no subscribers and nothing kept, untouched for this long, is
# forgotten (its last id is remembered, so ids never restart in an epoch).
IDLE_CHANNEL = 300.0
SWEEP_INTERVAL = 60.0
# A listing stops early (and says "more") once counting its channels' wildcard
# subscribers has looked at this many pattern shapes: at most about 50 ms of CPU.
LIST_WORK = 50_000
# Past this many pattern shapes looked at (or names listed) for one read of a
# connection's input, the rest of that input waits for the next reactor turn
# (Hub.reading): a few ms of CPU, or one costlier command (an uncached match
# against --max-subscriptions deep patterns, ~10 ms), so one client's
# matching and listing cannot stall the others.
TURN_WORK = 5_000
# Most senders one DIRECT from ... names.
MAX_DIRECT_FROM = 100
# Retired names past --max-retired are forgotten into this many buckets, each
# keeping the highest last id of the names that fell into it.
RETIRED_BUCKETS = 65536

__all__ = ["ADMIN_SENDER", "LIST_WORK", "SYSTEM_CHANNELS", "TURN_WORK", "ClientRecord",
           "ClosedConnection", "Hub", "Session", "Subscribed", "new_epoch", "refused"]


# What subscribe returns: the replay and whether it is partial, or a Deferred of
# them when a shared backplane must first bring the channel up to date.
Subscribed = Union[tuple[list[Message], bool], "Deferred[tuple[list[Message], bool]]"]


# Each client's connect and disconnect lines, apart (not a class attribute: a
# Logger there takes the class's name): --log-level txpubsub.connections=warn
# turns them off on busy servers.
_connections = Logger(namespace="txpubsub.connections")


def refused(recipient: str, nobody: bool) -> HubError:
    """What a sender the recipient's DIRECT leaves out is told (``nobody``:
    DIRECT off, else DIRECT from others)."""
    if nobody:
        return HubError("refused", f"{recipient} takes no direct messages")
    return HubError("refused", f"{recipient} takes direct messages only from some senders")


def new_epoch() -> str:
    """A fresh epoch: names an id space that starts at this server start."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


class Hub(Service):
    """The channel service: owns all state, takes its clock as a parameter."""

    _log = Logger()
    # Slots, not the instance dict: past 30 attributes CPython 3.11 stops
    # sharing an instance dict's keys, and every self.<attribute> on the
    # publish path became a dict lookup (measured: ~1.5% of a publish).
    __slots__ = ("_all_gone", "_authorizer", "_by_head", "_channel_made", "_channels",
                 "_claim_certificate", "_claim_name", "_codec_users", "_create_shared", "_current",
                 "_direct_elsewhere", "_direct_policy", "_drop_shared", "_durable", "_eager",
                 "_everyone", "_fast_path", "_history_bytes", "_ids_here", "_interest", "_joined",
                 "_kick_elsewhere", "_left", "_local", "_may_claim", "_may_name", "_message_time",
                 "_patterns", "_plain_channels", "_record_of", "_restricted", "_retired",
                 "_retired_floors", "_share_event", "_store_on_fan_out", "_subscriptions",
                 "_sweeper", "_uncommitted", "auto_create", "backplane", "clock", "counters",
                 "default_history", "door_counters", "epoch", "globs", "max_channel_bytes",
                 "max_channels", "max_channels_per_client", "max_history", "max_history_bytes",
                 "max_list", "max_payload", "max_publish_bytes_rate", "max_publish_rate",
                 "max_replay", "max_retired", "max_subscriptions", "max_subscriptions_total",
                 "refusals", "registry", "server_id", "started_at", "store")

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
        max_list: int = 1000,
        max_channels: int = 100_000,
        max_channels_per_client: int = 10_000,
        max_subscriptions_total: int = 1_000_000,
        max_retired: int = 100_000,
        max_publish_rate: int = 20_000,
        max_publish_bytes_rate: int = 4 * 1024 * 1024,
        max_history_bytes: int = 1 << 30,
        max_channel_bytes: int = 64 << 20,
        connection_log: int = 10000,
        store: Store | None = None,
        epoch: str | None = None,
        backplane: Backplane | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.clock = clock
        self.default_history = history
        self.max_history = max_history
        self.max_payload = max_payload
        self.max_subscriptions = max_subscriptions
        self.auto_create = auto_create
        self.max_replay = max_replay
        self.max_list = max_list
        self.max_channels = max_channels
        self.max_channels_per_client = max_channels_per_client
        self.max_subscriptions_total = max_subscriptions_total
        self.max_retired = max_retired
        # Per connection, 0 = no limit (--max-publish-rate, --max-publish-bytes-rate).
        self.max_publish_rate = max_publish_rate
        self.max_publish_bytes_rate = max_publish_bytes_rate
        # Payload bytes kept in history, in all and per channel (--max-history-bytes,
        # --max-channel-bytes); past the first, the largest channels' oldest go.
        self.max_history_bytes = max_history_bytes
        self.max_channel_bytes = max_channel_bytes
        self._history_bytes = 0
        self._message_time = -1.0  # see message_time()
        self._subscriptions = 0
        self._plain_channels = 0
        # Where forgotten retired names' last ids went (see _new_channel).
        self._retired_floors: dict[int, int] = {}
        # Whether a publish to an existing channel may take publish()'s short
        # path: in memory, nothing to check (set with the backplane and authorizer).
        self._local = self._restricted = self._fast_path = False
        self.store: Store = store or MemoryStore(epoch or new_epoch())
        self.epoch = epoch or self.store.epoch
        self.set_backplane(backplane or LocalBackplane(self))
        # Messages appended to a durable store, oldest first, until it says
        # they are committed (None: one stored after its delivery).
        self._uncommitted: deque[PendingPublish | None] = deque()
        if self.store.durable:
            self.store.listen(self._committed, self._refused)
        self.authorizer = authorizer or AllowAll()
        self.started_at = clock.seconds()
        self.counters = Counters()
        self.door_counters: dict[str, DoorCounters] = {}
        self.registry = ClientRegistry(max_clients, connection_log)
        # Peers refused before they are clients (protected mode, throttled
        # logins), logged so that a scan cannot flood the log.
        self.refusals = RefusalLog(clock)
        self._channels: dict[str, Channel[Session]] = {}
        # Channel names by their first token, so LIST news.* looks only at news.<...>
        self._by_head: dict[str, dict[str, Channel[Session]]] = {}
        self._patterns: PatternIndex[Session] = PatternIndex()
        self._patterns.over_budget = self._over_budget
        # Redis-style glob subscriptions (the RESP door's PSUBSCRIBE), looked
        # at only while there are any.
        self.globs = GlobIndex()
        self._record_of: dict[Session, ClientRecord] = {}
        # Sessions connected per codec, and the eager codecs among them.
        self._codec_users: dict[Codec, int] = {}
        self._eager: list[Codec] = []
        self._retired: dict[str, int] = {}  # forgotten or dropped channel -> its last id
        self._sweeper: LoopingCall | None = None
        self._all_gone: list[Deferred[None]] = []
        for name in SYSTEM_CHANNELS:
            self._add_channel(Channel(name, 0, self.started_at, system=True))
        for saved in self.store.load():
            if saved.retired:
                self._remember_retired(saved.name, saved.last_id)
                continue
            ch: Channel[Session] = Channel(saved.name, saved.keep, saved.created_at,
                                           saved.last_id, byte_cap=max_channel_bytes)
            self._history_bytes += ch.restore(saved.messages)
            self._add_channel(ch)
        if self._history_bytes > self.max_history_bytes:
            self._evict_history()

    def set_backplane(self, backplane: Backplane) -> None:
        """Number and carry messages through ``backplane`` (made with this hub).

        A shared backplane may also offer ``interest(pattern, delta)``, told of
        every local subscription made (+1) and gone (-1), and
        ``current(channel)``: None when this server's copy of a channel is up
        to date, else a Deferred firing once it is (txpubsub.backplane.redis).
        """
        self.backplane = backplane
        local = type(backplane) is LocalBackplane
        # Three publish paths: in memory, numbered and delivered at once (kept
        # free of any extra call); with a durable store, acknowledged and
        # delivered after the commit (_publish_durable); through another
        # backplane, which numbers elsewhere and tells the store on arrival.
        self._local = local and not self.store.durable
        self._fast_path = self._local and not self._restricted
        self._durable = local and self.store.durable
        self._store_on_fan_out = self.store.durable and not local
        self._interest = getattr(backplane, "interest", None)
        self._current = getattr(backplane, "current", None)
        # Names and clients across servers: claim_name(client, name) -> Deferred,
        # client_joined(client), client_left(client, name), and
        # direct_elsewhere(recipient, sender, payload) -> Deferred[int].
        self._claim_name = getattr(backplane, "claim_name", None)
        self._joined = getattr(backplane, "client_joined", None)
        self._left = getattr(backplane, "client_left", None)
        self._direct_elsewhere = getattr(backplane, "direct_elsewhere", None)
        # direct_policy(client, allowed) -> Deferred: a client's DIRECT, on every server.
        self._direct_policy = getattr(backplane, "direct_policy", None)
        self._everyone = getattr(backplane, "everyone", None)  # () -> Deferred[list[Member]]
        # Cluster-wide events and admin acts: share_event(channel, text) sends
        # a $sys.clients line to the other servers; channel_made(channel)
        # registers a channel made here (the backplane then announces it on
        # $sys.channels everywhere); create_channel(channel, keep),
        # drop_channel(channel), kick_elsewhere(name_or_id, text) and
        # claim_certificate(client, name) -> Deferred.
        self._share_event = getattr(backplane, "share_event", None)
        self._channel_made = getattr(backplane, "channel_made", None)
        self._create_shared = getattr(backplane, "create_channel", None)
        self._drop_shared = getattr(backplane, "drop_channel", None)
        self._kick_elsewhere = getattr(backplane, "kick_elsewhere", None)
        self._claim_certificate = getattr(backplane, "claim_certificate", None)
        # Which server this is among those sharing the backplane (admin STATS).
        self.server_id: str | None = getattr(backplane, "server_id", None)
        # Ids come from here (memory or the store), not from elsewhere.
        self._ids_here = local

    def restart_ids(self, epoch: str) -> None:
        """A new epoch from elsewhere (a shared backplane lost its data): ids
        start again, so what this server kept of the old id space goes."""
        self._log.warn("new epoch {epoch} (was {old}): ids start again", epoch=epoch,
                       old=self.epoch)
        self.epoch = epoch
        self.store.restart(epoch)
        for ch in self._channels.values():
            if not ch.system:
                ch.last_id = 0
                self._history_bytes -= ch.clear_history()
                self.store.channel_created(ch.name, ch.keep, ch.created_at, 0)
        self._retired.clear()
        self._retired_floors.clear()

    @property
    def authorizer(self) -> Authorizer:
        """Who may do what; replace it to change the rules (connections keep going)."""
        return self._authorizer

    @authorizer.setter
    def authorizer(self, authorizer: Authorizer) -> None:
        self._authorizer = authorizer
        # A publish skips the call when everything is allowed anyway.
        self._restricted = not isinstance(authorizer, AllowAll)
        self._fast_path = self._local and not self._restricted
        self._may_name = getattr(authorizer, "may_name", None)  # optional (see Authorizer)
        self._may_claim = getattr(authorizer, "may_claim", None)  # optional too

    @property
    def max_clients(self) -> int:
        """Most connections at once (--max-clients)."""
        return self.registry.max_clients

    @property
    def connection_log(self) -> deque[ClosedConnection]:
        """Past connections, newest first."""
        return self.registry.connection_log

    def startService(self) -> None:
        Service.startService(self)
        self._sweeper = LoopingCall(self.forget_idle_channels)
        self._sweeper.clock = self.clock
        self._sweeper.start(SWEEP_INTERVAL, now=False)

    def stopService(self) -> Deferred[None]:
        """Answer the publishes a durable store is committing, say ``BYE
        shutdown`` to every client, wait until they are gone (each is let go
        of within seconds), then let the store finish writing.

        Listeners stop before the hub does, so nobody new arrives meanwhile.
        """
        Service.stopService(self)
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self.refusals.stop()
        # Publishes being committed are answered and delivered before BYE.
        d = self.store.drain()
        d.addBoth(lambda _: self.close_all())
        d.addBoth(lambda _: self.store.close())
        return d

    def close_all(self, grace: float = 0.0) -> Deferred[None]:
        """``BYE shutdown`` to every client, spread evenly over ``grace`` seconds
        (so they do not all reconnect at once); fires when all are gone."""
        clients = self.registry.all()
        if not clients:
            return succeed(None)
        gone: Deferred[None] = Deferred()
        self._all_gone.append(gone)
        for i, client in enumerate(clients):
            delay = grace * i / len(clients)
            if delay:
                self.clock.callLater(delay, client.session.close, CloseReason.SHUTDOWN)
            else:
                client.session.close(CloseReason.SHUTDOWN)
        return gone

    def kick(self, name_or_id: str, text: str = "") -> str:
        """Close a client with ``BYE kicked``; returns its id. HubError no-such-client."""
        client = self.registry.require(name_or_id)
        self._log.info("kicking {client_id} ({name}): {text}", client_id=client.client_id,
                       name=client.name or "-", text=text or "-")
        client.session.close(CloseReason.KICKED, text)
        return client.client_id

    def kick_anywhere(self, name_or_id: str, text: str = "") -> str | Deferred[str]:
        """``kick``, or with a shared backplane a client of another server (a
        Deferred of its id then, once its server was told)."""
        if self._kick_elsewhere is not None and self.registry.find(name_or_id) is None:
            return self._kick_elsewhere(name_or_id, text)
        return self.kick(name_or_id, text)

    def drop_everywhere(self, channel: str) -> Deferred[None] | None:
        """``drop``, or with a shared backplane on every server (a Deferred then)."""
        if self._drop_shared is None:
            self.drop(channel)
            return None
        if channel_kind(channel) != PLAIN:
            raise HubError("forbidden", f"{shorten(channel)} cannot be dropped")
        return self._drop_shared(channel)

    def drop(self, channel: str) -> None:
        """Remove a channel: its subscribers are told ``DROP`` and lose that
        subscription; wildcard subscriptions stay; ids go on if it comes back."""
        kind = channel_kind(channel)
        if kind != PLAIN:
            raise HubError("forbidden", f"{shorten(channel)} cannot be dropped")
        ch = self._channels.get(channel)
        if ch is None:
            raise HubError("no-such-channel", f"{shorten(channel)} does not exist")
        for session in list(ch.subscribers):
            self._record_of[session].patterns.discard(channel)
            self._subscriptions -= 1
            if self._interest is not None:
                self._interest(channel, -1)
            session.channel_dropped(channel)
        ch.subscribers.clear()
        self._history_bytes -= ch.clear_history()
        self._retire(ch)
        self._log.info("channel {channel} dropped", channel=channel)
        if self._channel_made is None:  # else the backplane tells every server
            self._announce("$sys.channels", f"drop {channel}")

    # -- clients ---------------------------------------------------------

    def attach(
        self, session: Session, address: str = "-", listener: str = "-", family: str = "-"
    ) -> ClientRecord:
        """Register a new connection; ServerFull past --max-clients (BYE too-many-clients)."""
        client = self.registry.add(session, self.clock.seconds(), address, listener)
        self._record_of[session] = client
        if self.max_publish_rate or self.max_publish_bytes_rate:
            client.publish_budget = PublishBudget(
                self.max_publish_rate, self.max_publish_bytes_rate, client.connected_at,
                self.max_payload, self.counters)
        self.counters.connections_total += 1
        _connections.info(
            "{client_id} connected from {address} on {listener}",
            client_id=client.client_id, address=address, listener=listener,
        )
        self._announce("$sys.clients", f"connect {client.client_id} {family}")
        if self._joined is not None:
            self._joined(client)
        return client

    def detach(self, client: ClientRecord, reason: CloseReason) -> None:
        """Forget a connection that is gone: its subscriptions and its name."""
        name = client.name
        if not self.registry.remove(client, reason.value, self.clock.seconds()):
            return
        closes = self.counters.closes
        closes[reason.value] = closes.get(reason.value, 0) + 1
        session = client.session
        del self._record_of[session]
        for pattern in client.patterns:
            self._forget_subscription(session, pattern)
        self._subscriptions -= len(client.patterns)
        client.patterns.clear()
        _connections.info(
            "{client_id} ({name}) disconnected: {reason}",
            client_id=client.client_id, name=name or "-", reason=reason.value,
        )
        self._announce("$sys.clients", f"disconnect {client.client_id} {reason.value}")
        if self._left is not None:
            self._left(client, name)
        if not len(self.registry):
            waiting, self._all_gone = self._all_gone, []
            for gone in waiting:
                gone.callback(None)

    def set_name(self, client: ClientRecord, name: str) -> str | Deferred[str]:
        """Give a client a name (or a new one); HubError bad-args or name-taken.

        With a shared backplane, the name is first claimed on every server
        (a Deferred of the name, or of the failure).
        """
        if client.name_locked:
            raise HubError("forbidden", "your name comes from your certificate")
        check_name(name)
        if self._may_name is not None:  # a users file says whose names are whose
            if not self._may_name(client, name):
                raise HubError("name-taken", f"{name} is reserved for the user of that name")
        elif name in self.registry.certificate_names:
            raise HubError("name-taken", f"{name} belongs to a client certificate")
        if self._claim_name is not None and client.name != check_name(name):
            holder = self.registry.by_name(name)
            if holder is not None:
                raise HubError("name-taken", f"{name} is taken by another client")
            return self._claim_name(client, name).addCallback(self._named, client, name)
        return self._rename(client, name)

    def _named(self, _: object, client: ClientRecord, name: str) -> str:
        if self._record_of.get(client.session) is not client:
            return name  # gone meanwhile; the backplane lets the name go
        return self._rename(client, name)

    def _rename(self, client: ClientRecord, name: str) -> str:
        if self.registry.rename(client, name):
            self._announce("$sys.clients", f"name {client.client_id} {name}")
        return name

    def claim_name(self, client: ClientRecord, name: str) -> Deferred[None] | None:
        """Give a client the name its TLS certificate carries, for good.

        A client that took that name with NAME loses it (``BYE kicked``);
        another connection holding it by certificate keeps it, and this one
        is refused (HubError auth-failed), as is a name the authorizer does
        not know as a user (``may_claim``, with a users file). Without one,
        the name stays reserved for certificates after this client has gone.
        With a shared backplane the name is claimed across servers: a
        Deferred, failing with auth-failed if a certificate client of another
        server holds it.
        """
        check_name(name)
        if self._may_claim is not None and not self._may_claim(name):
            raise HubError("auth-failed", f"the certificate's name {name} is not a user of the "
                                          f"users file (an operator may add [users.{name}], "
                                          "no password needed)")
        holder = self.registry.by_name(name)
        if holder is not None and holder is not client:
            if holder.name_locked:
                raise HubError("auth-failed", f"{name} is connected already")
            self.registry.unname(holder)
            holder.session.close(CloseReason.KICKED, "that name belongs to a certificate")
        # Not set_name: the certificate vouches for the name (a users file
        # maps it to its user when the door greets).
        self._rename(client, name)
        client.name_locked = True
        self.registry.remember_certificate_name(name)
        if self._claim_certificate is not None:
            claiming: Deferred[None] | None = self._claim_certificate(client, name)
            if claiming is not None:
                return claiming.addErrback(self._certificate_refused, client, name)
        return None

    def _certificate_refused(self, failure: Failure, client: ClientRecord, name: str) -> Failure:
        # Held elsewhere: not this connection's, not even while it closes.
        if client.name == name and self._record_of.get(client.session) is client:
            self.registry.unname(client)
        return failure

    def clients(self) -> list[ClientRecord]:
        """Every connected client, oldest connection first."""
        return self.registry.all()

    def everyone(self) -> list[ClientRecord] | Deferred[list[Member]]:
        """Every client, by id: this server's, or with a shared backplane,
        every server's (a Deferred then)."""
        if self._everyone is not None:
            return self._everyone()
        return self.registry.all()

    def find_client(self, name_or_id: str) -> ClientRecord | None:
        """A connected client by name, or by id."""
        return self.registry.find(name_or_id)

    def record_of(self, session: Session) -> ClientRecord | None:
        """The client record of a connected session."""
        return self._record_of.get(session)

    # -- channels --------------------------------------------------------

    def create(
        self, channel: str, history: int | None = None, client: ClientRecord | None = None
    ) -> Channel[Session]:
        """Create a channel keeping ``history`` messages (default: the server's)."""
        kind = channel_kind(channel)
        if kind != PLAIN:
            raise HubError("forbidden", f"{shorten(channel)} cannot be created by clients")
        self._check(client is None or self.authorizer.may_publish(client, channel), channel)
        if channel in self._channels:
            raise HubError("exists", f"{shorten(channel)} exists")
        if history is not None and history > self.max_history:
            raise HubError("bad-args", f"history= is at most {self.max_history}")
        return self._new_channel(channel, self.default_history if history is None else history,
                                 client)

    def create_channel(
        self, channel: str, history: int | None = None, client: ClientRecord | None = None
    ) -> Channel[Session] | Deferred[Channel[Session]]:
        """``create``, for a client's CREATE: with a shared backplane the
        channel and its history setting are made there first, for every
        server (a Deferred then; HubError exists if it exists anywhere)."""
        if self._create_shared is None:
            return self.create(channel, history, client)
        kind = channel_kind(channel)
        if kind != PLAIN:
            raise HubError("forbidden", f"{shorten(channel)} cannot be created by clients")
        self._check(client is None or self.authorizer.may_publish(client, channel), channel)
        if channel in self._channels:
            raise HubError("exists", f"{shorten(channel)} exists")
        if history is not None and history > self.max_history:
            raise HubError("bad-args", f"history= is at most {self.max_history}")
        keep = self.default_history if history is None else history
        self._may_create(client)
        d: Deferred[object] = self._create_shared(channel, keep)
        return d.addCallback(lambda _: self.shared_channel(channel, keep, made_by=client))

    def shared_channel(self, name: str, keep: int, last_id: int = 0,
                       made_by: ClientRecord | None = None) -> Channel[Session]:
        """This server's copy of a channel that exists on the shared backplane,
        made or brought in line with it: keeping ``keep`` messages, its ids
        known up to ``last_id`` (a copy with older ids forgets what it kept)."""
        ch = self._channels.get(name)
        if ch is None:
            if made_by is not None and self._record_of.get(made_by.session) is made_by:
                made_by.channels_created += 1
            ch = self._new_channel(name, keep, limited=False)
        elif ch.keep != keep:
            self._history_bytes -= ch.set_keep(keep)
        if last_id > ch.last_id:
            self._history_bytes -= ch.clear_history()
            ch.last_id = ch.pending_id = last_id
        return ch

    @staticmethod
    def _check(allowed: bool, what: str) -> None:
        if not allowed:
            raise HubError("forbidden", f"not allowed on {shorten(what)}")

    def _new_channel(
        self, name: str, keep: int, client: ClientRecord | None = None, limited: bool = True
    ) -> Channel[Session]:
        if limited:
            self._may_create(client)
            if client is not None:
                client.channels_created += 1
        # A channel made again goes on from its last id: ids never restart in an
        # epoch. A name forgotten from _retired goes on from its bucket's floor.
        # (Numbered elsewhere, a copy learns its ids from there.)
        start = self._retired.pop(name, None)
        if start is None:
            start = (self._retired_floors.get(zlib.crc32(name.encode()) % RETIRED_BUCKETS, 0)
                     if self._retired_floors and self._ids_here else 0)
        ch: Channel[Session] = Channel(name, keep, self.clock.seconds(), start,
                                       byte_cap=self.max_channel_bytes)
        self._add_channel(ch)
        self.store.channel_created(name, keep, ch.created_at, ch.last_id)
        if self._channel_made is None:
            self._announce("$sys.channels", f"create {name}")
        elif limited:
            self._channel_made(ch)  # the backplane announces it, if new there
        return ch

    def _may_create(self, client: ClientRecord | None) -> None:
        """HubError too-many-channels if a new channel would pass a limit."""
        if self._plain_channels >= self.max_channels:
            raise HubError("too-many-channels",
                           f"the server holds its most channels ({self.max_channels})")
        if client is not None and client.channels_created >= self.max_channels_per_client:
            raise HubError("too-many-channels", f"at most {self.max_channels_per_client}"
                                                " new channels per connection")

    def forget_idle_channels(self) -> int:
        """Forget channels nobody subscribes to, that keep nothing, idle IDLE_CHANNEL s.

        Returns how many were forgotten. Their last ids are remembered.
        """
        cutoff = self.clock.seconds() - IDLE_CHANNEL
        idle = [
            ch for ch in self._channels.values()
            if not (ch.system or ch.subscribers or ch.kept or ch.pending_id > ch.last_id)
            and (ch.last_publish_at or ch.created_at) <= cutoff
        ]
        for ch in idle:
            self._retire(ch)
        return len(idle)

    def _remember_retired(self, name: str, last_id: int) -> None:
        retired = self._retired
        retired.pop(name, None)
        retired[name] = last_id
        if len(retired) > self.max_retired:
            # The oldest is forgotten; its bucket keeps the highest last id.
            oldest = next(iter(retired))
            gone = retired.pop(oldest)
            bucket = zlib.crc32(oldest.encode()) % RETIRED_BUCKETS
            if gone > self._retired_floors.get(bucket, 0):
                self._retired_floors[bucket] = gone

    def _add_channel(self, ch: Channel[Session]) -> None:
        self._channels[ch.name] = ch
        if not ch.system:
            self._plain_channels += 1
        head = ch.name.partition(".")[0]
        named = self._by_head.get(head)
        if named is None:
            named = self._by_head[head] = {}
        named[ch.name] = ch

    def _retire(self, ch: Channel[Session]) -> None:
        del self._channels[ch.name]
        self._plain_channels -= 1
        head = ch.name.partition(".")[0]
        named = self._by_head[head]
        del named[ch.name]
        if not named:
            del self._by_head[head]
        # Ids still being committed count: they will be acknowledged.
        last_id = max(ch.last_id, ch.pending_id)
        # A channel that never had a message has nothing to go on from; one
        # numbered elsewhere goes on from there.
        if last_id and self._ids_here:
            self._remember_retired(ch.name, last_id)
        self.store.channel_retired(ch.name, last_id)

    def channel(self, name: str) -> Channel[Session] | None:
        """The channel of that exact name, if it exists."""
        return self._channels.get(name)

    def kept_messages(self) -> int:
        """Messages kept in every channel's history (walks all channels: for scrapes)."""
        return sum(ch.kept for ch in self._channels.values())

    def channels(
        self, pattern: str = ">", after: str | None = None, limit: int | None = None
    ) -> list[Channel[Session]]:
        """Channels whose names a pattern matches, sorted by name: those after
        ``after`` (a name), the first ``limit`` of them.

        A pattern whose first token is a name looks only at the channels
        starting with it; a concrete name is one lookup.
        """
        pattern_kind(pattern)
        if not is_wildcard(pattern):
            ch = self._channels.get(pattern)
            found = [] if ch is None or (after is not None and pattern <= after) else [ch]
            return found
        head = pattern.partition(".")[0]
        scanned = (self._channels if head in ("*", ">") else self._by_head.get(head, {}))
        self.charge(len(scanned))
        names: Iterable[str] = scanned
        if after is not None:
            names = (name for name in names if name > after)
        matching = filter(pattern_regex(pattern).fullmatch, names)
        chosen = sorted(matching) if limit is None else heapq.nsmallest(limit, matching)
        return [self._channels[name] for name in chosen]

    def subscribers_of(self, channel: str) -> set[Session]:
        """The connections that a message on ``channel`` would reach now."""
        channel_kind(channel)
        found: set[Session] = set()
        ch = self._channels.get(channel)
        if ch is not None:
            found.update(ch.subscribers)
        found.update(self._patterns.readers(channel))
        return found

    def clients_of(self, sessions: Iterable[Session]) -> list[ClientRecord]:
        """Client records of sessions, oldest connection first."""
        records = [r for r in map(self._record_of.get, sessions) if r is not None]
        # Ids are c<n>, numbered in connection order.
        records.sort(key=lambda r: int(r.client_id[1:]))
        return records

    def match_work(self) -> int:
        """Pattern shapes looked at so far, and names listings scanned: what
        matching and listing have cost, for budgets."""
        return self._patterns.work

    def charge(self, work: int) -> None:
        """Count ``work`` (names or clients a listing looked at) toward the
        budget of the read being handled (``reading``)."""
        self._patterns.spend(work)

    def reading(self, session: Session | None) -> None:
        """A door is handling a read of ``session``'s input (None: it is done).

        Matching that this read causes past TURN_WORK (uncached channels
        against many pattern shapes) is charged to it: the rest of its input
        waits for the next reactor turn (``Session.yield_turn``), so the
        other connections are served between two such reads.
        """
        index = self._patterns
        index.charged = session
        index.budget = index.work + TURN_WORK if session is not None else NO_LIMIT

    @staticmethod
    def _over_budget(reader: Session) -> None:
        reader.yield_turn()

    # -- subscriptions ---------------------------------------------------

    def subscribe(
        self,
        client: ClientRecord,
        pattern: str,
        last: int | None = None,
        since: int | None = None,
        epoch: str | None = None,
    ) -> Subscribed:
        """Subscribe a client to a pattern; returns (messages to replay, partial).

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

        With a shared backplane, the first local subscription to a concrete
        channel waits (a Deferred of the same result) until this server's
        copy of the channel is current, so that the replay is taken from a
        complete history and the live stream follows it with no gap.
        """
        kind = pattern_kind(pattern)
        if kind == INBOX:
            raise HubError("forbidden", "inboxes are delivered to their owner without SUB")
        wildcard = is_wildcard(pattern)
        replay = last is not None or since is not None
        if wildcard and replay:
            raise HubError("bad-args", "last= and since= need a concrete channel")
        authorizer = self.authorizer
        self._check(authorizer.may_subscribe(client, pattern), pattern)
        if replay:
            self._check(authorizer.may_read(client, pattern), pattern)
        if self._current is not None and not wildcard and kind == PLAIN:
            pending = self._current(pattern)
            if pending is not None:
                return pending.addCallback(self._subscribe_current, client, pattern, last,
                                           since, epoch)
        if pattern not in client.patterns:
            if len(client.patterns) >= self.max_subscriptions:
                raise HubError(
                    "too-many-subscriptions", f"at most {self.max_subscriptions} per connection"
                )
            if self._subscriptions + self.globs.count >= self.max_subscriptions_total:
                raise HubError("too-many-subscriptions", "the server holds its most "
                               f"subscriptions ({self.max_subscriptions_total})")
            if wildcard:
                self._patterns.add(pattern, client.session)
            else:
                ch = self._channels.get(pattern)
                if ch is None:
                    if kind == SYSTEM:
                        raise HubError("no-such-channel",
                                       f"no system channel {shorten(pattern)}")
                    ch = self._auto_create(pattern, client)
                ch.subscribers.add(client.session)
            client.patterns.add(pattern)
            self._subscriptions += 1
            if self._interest is not None:
                self._interest(pattern, 1)
        if not replay:
            return [], False
        return self._replay(self._channels[pattern], last, since, epoch)

    def _subscribe_current(
        self, _: object, client: ClientRecord, pattern: str, last: int | None,
        since: int | None, epoch: str | None,
    ) -> Subscribed:
        if self._record_of.get(client.session) is not client:
            return [], False  # gone meanwhile: nothing to subscribe, nobody to answer
        return self.subscribe(client, pattern, last, since, epoch)

    def _replay(
        self, ch: Channel[Session], last: int | None, since: int | None, epoch: str | None
    ) -> tuple[list[Message], bool]:
        kept = ch.kept
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
        return ch.newest(count), partial

    def history(
        self, channel: str, n: int | None = None, client: ClientRecord | None = None
    ) -> list[Message]:
        """The last ``n`` kept messages (all, at most --max-replay), oldest first."""
        kind = channel_kind(channel)
        if kind == INBOX:
            raise HubError("forbidden", "inboxes keep no history")
        self._check(client is None or self.authorizer.may_read(client, channel), channel)
        ch = self._channels.get(channel)
        if ch is None:
            raise HubError("no-such-channel", f"{shorten(channel)} does not exist")
        kept = ch.kept
        return ch.newest(min(kept if n is None else n, kept, self.max_replay))

    def read_history(
        self, channel: str, n: int | None = None, client: ClientRecord | None = None
    ) -> list[Message] | Deferred[list[Message]]:
        """``history``, for a client's HISTORY: with a shared backplane, a channel
        nobody here reads is first brought up to date (a Deferred then)."""
        if self._current is not None and channel_kind(channel) == PLAIN:
            self._check(client is None or self.authorizer.may_read(client, channel), channel)
            pending = self._current(channel)
            if pending is not None:
                return pending.addCallback(lambda _: self.history(channel, n, client))
        return self.history(channel, n, client)

    def unsubscribe(self, client: ClientRecord, pattern: str) -> None:
        """Drop one of a client's subscriptions; HubError not-subscribed if absent."""
        pattern_kind(pattern)
        if pattern not in client.patterns:
            raise HubError("not-subscribed", f"not subscribed to {shorten(pattern)}")
        client.patterns.discard(pattern)
        self._subscriptions -= 1
        self._forget_subscription(client.session, pattern)

    def _forget_subscription(self, session: Session, pattern: str) -> None:
        if self._interest is not None:
            self._interest(pattern, -1)
        if is_wildcard(pattern):
            self._patterns.remove(pattern, session)
        else:
            ch = self._channels.get(pattern)
            if ch is not None:
                ch.subscribers.discard(session)

    def subscription_count(self) -> int:
        """Subscriptions held by all connected clients."""
        return self._subscriptions + self.globs.count

    def _auto_create(self, channel: str, client: ClientRecord | None) -> Channel[Session]:
        if not self.auto_create:
            raise HubError("no-such-channel",
                           f"{shorten(channel)} does not exist (auto-create is off)")
        return self._new_channel(channel, self.default_history, client)

    # -- publishing ------------------------------------------------------

    def publish(
        self, sender: str, channel: str, payload: bytes, client: ClientRecord | None = None
    ) -> MessageId | PendingPublish:
        """Check a message and hand it to the backplane, which numbers it and
        brings it to every matching connection once.

        ``sender`` is the name shown to readers; ``client``, the connection
        that published (None for the server's own voice), is checked by the
        authorizer and paced if a reader is falling behind. Returns the id,
        a Deferred of it if the backplane numbers messages elsewhere, or a
        PendingPublish if a durable store must commit the message first
        (refused with HubError unavailable if the store cannot).
        """
        if len(payload) > self.max_payload:
            raise HubError("too-large", f"payload over {self.max_payload} bytes")
        ch = self._channels.get(channel)
        if ch is None or ch.system or not self._fast_path:
            return self._publish_checked(sender, channel, payload, client, ch)
        # The common case written out (an existing channel, the in-process
        # backplane, everything allowed): LocalBackplane.publish costs no call.
        now = self.clock.seconds()  # message_time() written out
        if 0.0 <= now - self._message_time < 0.001:
            now = self._message_time
        else:
            self._message_time = now
        if client is not None:
            budget = client.publish_budget
            if budget is not None:
                # PublishBudget.spend written out: the prepaid part costs no call.
                budget.left -= 1
                budget.left_bytes -= len(payload)
                if budget.left < 0 or budget.left_bytes < 0:
                    budget.refill(len(payload), now)  # rate-limited
        msg = Message(ch.name, ch.last_id + 1, sender, payload, now)
        self.fan_out(ch, msg, client)
        return msg.msg_id

    def message_time(self) -> float:
        """The time to stamp a new message with: the clock, but the same float
        for every message of one millisecond, so that history keeps one time
        object per millisecond instead of one per message. On CPython, with
        100,000 messages kept, a float per message cost ~5 cache misses per
        publish (cachegrind with a 1 MiB last-level cache, docs/benchmarks.md).
        A clock set back starts a new millisecond at once."""
        now = self.clock.seconds()
        if 0.0 <= now - self._message_time < 0.001:
            return self._message_time
        self._message_time = now
        return now

    def _publish_checked(
        self, sender: str, channel: str, payload: bytes, client: ClientRecord | None,
        ch: Channel[Session] | None,
    ) -> MessageId | PendingPublish:
        """``publish`` for everything but the common case: a new channel, a
        direct message, a system channel, permissions, a durable store or a
        shared backplane."""
        now = self.message_time()
        if client is not None and client.publish_budget is not None:
            client.publish_budget.spend(len(payload), now)  # rate-limited
        if ch is None:
            kind = channel_kind(channel)
            if kind == INBOX:
                return self._direct(sender, channel[1:], payload, client)
            if kind == SYSTEM:
                raise HubError("forbidden", "system channels are read-only")
            if client is not None:
                self._check(self.authorizer.may_publish(client, channel), channel)
            ch = self._auto_create(channel, client)
        elif ch.system:
            raise HubError("forbidden", "system channels are read-only")
        elif (self._restricted and client is not None
              and not self._authorizer.may_publish(client, channel)):
            self._check(False, channel)
        if self._local:
            msg = Message(ch.name, ch.last_id + 1, sender, payload, now)
            self.fan_out(ch, msg, client)
            return msg.msg_id
        if self._durable:
            return self._publish_durable(ch, sender, payload, client)
        return self.backplane.publish(ch, sender, payload, client)

    def _publish_durable(
        self, ch: Channel[Session], sender: str, payload: bytes, client: ClientRecord | None
    ) -> PendingPublish:
        """Number a message, have the store commit it, and only then keep it in
        memory, deliver it and acknowledge it: nobody sees an id a crash could
        take back. Commits finish in order, so deliveries stay in id order."""
        msg = Message(ch.name, ch.pending_id + 1, sender, payload, self.message_time())
        self.store.append(msg, ch.keep)  # HubError unavailable: refused at once
        ch.pending_id += 1
        pending = PendingPublish(ch, msg, client)
        self._uncommitted.append(pending)
        return pending

    def _committed(self, count: int) -> None:
        """The store committed the next ``count`` messages: deliver them, then
        have their acknowledgements written (each waiter told once)."""
        uncommitted = self._uncommitted
        channels = self._channels
        record_of = self._record_of
        waiters: dict[Callable[[], None], None] = {}
        for _ in range(count):
            pending = uncommitted.popleft()
            if pending is None:  # stored after delivery (another backplane)
                continue
            ch = pending.channel
            client = pending.client
            if client is not None:
                if record_of.get(client.session) is client:
                    client.session.msgs_in += 1
                else:
                    client = None  # a publisher gone meanwhile is not paced
            # A channel dropped (or forgotten) meanwhile has no history or readers
            # left to give it to; its last id already counts this one (_retire).
            if channels.get(ch.name) is ch:
                self.fan_out(ch, pending.msg, client)
            pending.settled = True
            if pending.waiter is not None:
                waiters[pending.waiter] = None
        self._wake(waiters)

    def _refused(self, count: int, error: HubError) -> None:
        """The store could not commit the next ``count`` messages: refuse them.

        The store refuses everything appended after a failure too, so the ids
        go back to before the first of them (nobody saw any) with no gap."""
        uncommitted = self._uncommitted
        waiters: dict[Callable[[], None], None] = {}
        for _ in range(count):
            pending = uncommitted.popleft()
            if pending is None:
                continue
            ch, msg_id = pending.channel, pending.msg.msg_id
            if ch.pending_id >= msg_id:
                ch.pending_id = msg_id - 1
            pending.error = error
            pending.settled = True
            if pending.waiter is not None:
                waiters[pending.waiter] = None
        self._wake(waiters)

    def _wake(self, waiters: Iterable[Callable[[], None]]) -> None:
        for waiter in waiters:
            try:
                waiter()
            except Exception:
                self._log.failure("writing the answers to publishes failed")

    def publish_system(self, channel: str, payload: bytes) -> int:
        """Publish on a system channel (the server's own voice, this server only)."""
        ch = self._channels[channel]
        msg = Message(channel, ch.last_id + 1, "$sys", payload, self.message_time())
        self.fan_out(ch, msg, None)
        return msg.msg_id

    def _announce(self, channel: str, text: str) -> None:
        # Nothing is formatted or kept for a system channel nobody reads here.
        if self.has_readers(channel):
            self.publish_system(channel, text.encode())
        if self._share_event is not None:
            self._share_event(channel, text)  # the other servers' readers

    def has_readers(self, channel: str) -> bool:
        """Whether anyone would receive a message on ``channel`` now."""
        ch = self._channels.get(channel)
        return bool((ch is not None and ch.subscribers) or self._patterns.readers(channel))

    def arrived(self, msg: Message) -> None:
        """A message numbered elsewhere (another server, through the backplane):
        keep it and deliver it to this server's subscribers."""
        ch = self._channels.get(msg.channel)
        if ch is None:
            # Numbered elsewhere: it exists there, whatever our limits.
            ch = self._new_channel(msg.channel, self.default_history, limited=False)
        self.fan_out(ch, msg, None)

    def fan_out(
        self, ch: Channel[Session], msg: Message, publisher: ClientRecord | None
    ) -> None:
        """Keep a numbered message and hand it once to every matching connection.

        The backplane calls this; ``publisher`` is paced if a reader is behind.
        """
        # The eager codecs in use are primed first, so their sessions take the
        # bytes without a check (txpubsub.core.codec), and the first one's
        # bytes carry the payload into PyPy's history (RingHistory). A
        # delivery never publishes (the Session seam), so they stay this
        # message's bytes. Codec.prime written out for the first: a call here
        # costs ~0.8% of a publish, and on PyPy a loop here is a JIT loop of
        # its own, entered through a call that allocates a frame.
        carrier = None
        eager = self._eager
        if eager:
            codec = eager[0]
            carrier = codec.last_bytes = codec.encode(msg)
            codec.last_size = len(carrier)
            codec.last = msg
            if len(eager) > 1:  # line and raw feed readers both connected
                for other in eager[1:]:
                    other.prime(msg)
        held = self._history_bytes = self._history_bytes + ch.record(msg, carrier)
        if held > self.max_history_bytes:
            self._evict_history()
        if self._store_on_fan_out and not ch.system:
            self._store_delivered(ch, msg)
        readers: Iterable[Session] = ch.subscribers
        if self._patterns.count:
            # One copy per connection, however many subscriptions match.
            wild = self._patterns.readers(ch.name)
            if wild:
                readers = wild | ch.subscribers if ch.subscribers else wild
        behind = self._deliver(msg, readers)
        if self.globs.count and not ch.system:
            behind = self._deliver_globs(msg, behind)
        if behind and publisher is not None:
            self._pace(publisher.session, behind)

    def _deliver_globs(self, msg: Message, behind: list[Session] | None) -> list[Session] | None:
        """Hand a message to the glob subscribers it matches (after the others,
        as Redis sends ``pmessage`` after ``message``)."""
        delivered, late = self.globs.deliver(msg, self._authorizer if self._restricted else None)
        self.counters.msgs_out += delivered
        if late:
            behind = late if behind is None else behind + late
        return behind

    def _evict_history(self) -> None:
        """History holds more than --max-history-bytes: forget the oldest kept
        messages of the largest channels first, down to 7/8 of the limit, so
        that the scan of every channel here is paid once per eighth of the
        limit published, not per publish. A replay with since= from before
        then says partial, as for any message no longer kept."""
        target = self.max_history_bytes - self.max_history_bytes // 8
        largest = [(-ch.kept_bytes, name) for name, ch in self._channels.items()
                   if ch.kept_bytes]
        heapq.heapify(largest)
        while self._history_bytes > target and largest:
            _, name = heapq.heappop(largest)
            ch = self._channels[name]
            # Down to the next largest channel (or the target): at least one message.
            runner_up = -largest[0][0] if largest else 0
            want = min(ch.kept_bytes - runner_up, self._history_bytes - target)
            self._history_bytes -= ch.drop_oldest(max(want, 1))
            if ch.kept_bytes:
                heapq.heappush(largest, (-ch.kept_bytes, name))
        self.counters.history_evictions += 1
        self._log.info("history over {limit} bytes: oldest messages let go of, "
                       "{held} bytes kept", limit=self.max_history_bytes,
                       held=self._history_bytes)

    @property
    def history_bytes(self) -> int:
        """Payload bytes kept in every channel's history now."""
        return self._history_bytes

    def _store_delivered(self, ch: Channel[Session], msg: Message) -> None:
        # Numbered and delivered elsewhere already: stored without waiting (a
        # refusal is logged and counted by the store).
        try:
            self.store.append(msg, ch.keep)
        except HubError:
            return
        self._uncommitted.append(None)

    def _pace(self, publisher: Session, behind: list[Session]) -> None:
        if publisher.pace():
            self.counters.pacing_stalls += 1
            for session in behind:
                session.charge_stall()

    def _direct(
        self, sender: str, recipient: str, payload: bytes, client: ClientRecord | None
    ) -> MessageId:
        # Permission first: a client that may not send here must not learn
        # whether the name is online (found in review).
        if client is not None:
            self._check(self.authorizer.may_publish(client, "@" + recipient), "@" + recipient)
        target = self.registry.find(recipient)
        if client is not None and target is not None and self._restricted:
            # Reached by its id, a client is still the one an inbox rule names
            # (@bob denied must not let @c7 reach bob), by name or by user.
            for alias in (target.name, target.user):
                if alias is not None and alias != recipient:
                    self._check(self.authorizer.may_publish(client, "@" + alias),
                                "@" + recipient)
        if target is None and self._direct_elsewhere is not None:
            return self._direct_elsewhere(recipient, sender, payload, client)
        if target is None or not target.addressable:
            raise HubError("no-such-client", f"no client called {shorten(recipient)}")
        allowed = target.direct_from
        if allowed is not None and client is not None and not (
                client.client_id in allowed or client.name in allowed):
            raise refused(target.sender, not allowed)
        return self.backplane.direct(target, sender, payload, client)

    def take_direct(self, client: ClientRecord, senders: Iterable[str] | None
                    ) -> Deferred[None] | None:
        """Whose direct messages ``client`` takes from now on: everyone's
        (None), or only those of the senders named, by name or client id
        (none: nobody's). Others get HubError refused; the server's own
        voice (the admin's PUB) always gets through. With a shared backplane,
        a Deferred that fires once every server refuses them too."""
        allowed = None if senders is None else frozenset(senders)
        if allowed is not None:
            if len(allowed) > MAX_DIRECT_FROM:
                raise HubError("bad-args", f"at most {MAX_DIRECT_FROM} senders")
            for who in allowed:
                if not is_client_id(who):
                    check_name(who)
        if self._direct_policy is not None:
            return self._direct_policy(client, allowed).addCallback(self._took, client, allowed)
        client.direct_from = allowed
        return None

    @staticmethod
    def _took(_: object, client: ClientRecord, allowed: frozenset[str] | None) -> None:
        client.direct_from = allowed

    def deliver_direct(
        self, recipient: ClientRecord, msg: Message, publisher: ClientRecord | None
    ) -> None:
        """Hand a numbered direct message to its recipient (the backplane calls this)."""
        for codec in self._eager:
            codec.prime(msg)
        behind = self._deliver(msg, (recipient.session,))
        if behind and publisher is not None:
            self._pace(publisher.session, behind)

    def _deliver(self, msg: Message, readers: Iterable[Session]) -> list[Session] | None:
        """Hand a message to each reader (the eager codecs primed with it);
        returns those falling behind, if any."""
        counters = self.counters
        delivered = 0
        behind = None
        for session in readers:
            try:
                if session.deliver(msg):
                    if behind is None:
                        behind = []
                    behind.append(session)
            except Exception:
                # One broken connection must not cost the others their copy.
                self._log.failure("delivery to {session!r} failed", session=session)
            else:
                delivered += 1
        counters.msgs_in += 1
        counters.bytes_in += len(msg.payload)
        counters.msgs_out += delivered
        return behind

    def use_codec(self, codec: Codec) -> None:
        """A session of ``codec``'s format joined: an eager codec is primed
        for every delivery while any of its sessions is here."""
        users = self._codec_users
        users[codec] = users.get(codec, 0) + 1
        self._eager = [c for c in users if c.eager]

    def release_codec(self, codec: Codec) -> None:
        """A session of ``codec``'s format left (or changed format)."""
        users = self._codec_users
        left = users.get(codec, 0) - 1
        if left > 0:
            users[codec] = left
        else:
            users.pop(codec, None)
        self._eager = [c for c in users if c.eager]

    def counters_for(self, door: str) -> DoorCounters:
        """The counters of one kind of door (``line``, ``feed``, ...), made on first use."""
        counters = self.door_counters.get(door)
        if counters is None:
            counters = self.door_counters[door] = DoorCounters()
        return counters

    def stats(self) -> dict[str, int]:
        """The server's counters and sizes, true at the moment asked."""
        c = self.counters
        return {
            "uptime_s": int(self.clock.seconds() - self.started_at),
            "clients": len(self.registry),
            "channels": self._plain_channels,
            "subscriptions": self.subscription_count(),
            "msgs_in": c.msgs_in,
            "msgs_out": c.msgs_out,
            "bytes_in": c.bytes_in,
            "bytes_out": sum(d.bytes_out for d in self.door_counters.values()),
            "slow_consumers": c.slow_consumers,
            "connections_total": c.connections_total,
            "pacing_stalls": c.pacing_stalls,
            "auth_failures": c.auth_failures,
            "auth_refused": c.auth_refused,
            "store_errors": self.store.errors,
            "history_bytes": self._history_bytes,
            "history_evictions": c.history_evictions,
        }
