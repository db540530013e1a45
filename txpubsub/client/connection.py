"""A Twisted client library for txpubsub.

``Connection`` is one connection: every command returns a Deferred of its
reply (replies come in command order, so a FIFO of Deferreds matches them),
and deliveries go to the callback of each matching subscription.

``Client`` keeps a connection up with ``ClientService``: after a reconnect it
names itself again and resumes every subscription with ``since=`` the last id
it saw on each channel (and that id's epoch), so a restart of a server with
durable history loses nothing history still holds. A wildcard subscription
is resumed channel by channel for the channels it brought (the server
replays concrete channels only), then taken again.

Both notice a server that has gone silent without closing (a dead host, a
cut network): after ``keepalive`` seconds (default 30) with nothing heard
the client sends PING, and after as long again it drops the connection,
which ``Client`` then makes again.

    client = Client(reactor, "tcp:127.0.0.1:23400", name="alice")
    client.start()
    await client.subscribe("news.>", lambda msg: print(msg.channel, msg.text))
    msg_id = await client.publish("news.uk", "hello")
"""
from __future__ import annotations

import builtins
import functools
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Union, cast

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txpubsub.wire.line import is_text
from txpubsub.wire.names import is_wildcard, pattern_matches
from txpubsub.wire.parser import Delivery, Item, Reply, ServerLine, ServerParser

Payload = Union[bytes, str]
OnMessage = Callable[[Delivery], object]
KEEPALIVE = 30.0  # seconds of silence before PING; as long again before giving up
QUIT_WAIT = 2.0  # seconds Client.stop waits for the server's answer to QUIT


def deferred(method: Callable[..., Any]) -> Callable[..., Deferred[Any]]:
    """Make a coroutine method return a Deferred (which ``await`` takes too)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(method(*args, **kwargs))

    return wrapper


class CommandError(Exception):
    """The server answered ``-ERR <code> <text>``."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


class ServerClosed(Exception):
    """The server said ``BYE <reason>`` or the connection was lost.

    ``cause`` is the transport's reason when there was no BYE (a TLS
    handshake that failed, say): ``txpubsub.client.failures.describe`` words it.
    """

    def __init__(self, reason: str, cause: BaseException | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause


@dataclass
class _Waiting:
    deferred: Deferred[Any]
    items: list[Any]  # the reply's Items; a HISTORY's Deliveries once it is answered
    history: str | None = None  # HISTORY <channel>: collect its deliveries
    collected: list[Delivery] | None = None


class Connection(Protocol):
    """One connection to a txpubsub server."""

    _log = Logger()
    transport: Any  # a TCP, TLS or Unix transport: more than ITransport promises

    def __init__(self, on_direct: OnMessage | None = None, clock: IReactorTime | None = None,
                 keepalive: float = KEEPALIVE) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        self.clock = clock
        self.keepalive = keepalive  # 0: never check
        self.parser = ServerParser()
        self.info: dict[str, Any] = {}
        self.ready: Deferred[dict[str, Any]] = Deferred()  # fires with INFO
        self.closed: Deferred[str] = Deferred()  # fires with the BYE reason, or "lost"
        self.on_direct = on_direct
        self.subscriptions: dict[str, OnMessage] = {}
        self.last_ids: dict[str, int] = {}  # channel -> last id seen on this connection
        self.bye: str | None = None
        self.on_drop: Callable[[str], object] | None = None
        self._waiting: deque[_Waiting] = deque()
        self._last_heard = 0.0
        self._pinged = False
        self._timer: IDelayedCall | None = None

    # -- liveness ----------------------------------------------------------

    def connectionMade(self) -> None:
        self._last_heard = self.clock.seconds()
        if self.keepalive:
            self._timer = self.clock.callLater(self.keepalive, self._check_alive)

    def _check_alive(self) -> None:
        quiet = self.clock.seconds() - self._last_heard
        if quiet < self.keepalive:
            self._timer = self.clock.callLater(self.keepalive - quiet, self._check_alive)
        elif not self._pinged:
            self._pinged = True
            # A command like any other, so that its PONG is matched in order.
            self.ping().addErrback(lambda failure: None)
            self._timer = self.clock.callLater(self.keepalive, self._check_alive)
        else:
            self._timer = None
            self._log.warn("nothing heard from the server for {quiet:.0f} s: dropping the "
                           "connection", quiet=quiet)
            self.bye = "stale"
            self.transport.abortConnection()

    # -- incoming --------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self._last_heard = self.clock.seconds()
        self._pinged = False
        for event in self.parser.feed(data):
            try:
                self._event(event)
            except Exception:
                self._log.failure("handling {event!r} failed", event=event)

    def _event(self, event: object) -> None:
        if isinstance(event, Delivery):
            head = self._waiting[0] if self._waiting else None
            if head is not None and head.history == event.channel:
                assert head.collected is not None
                head.collected.append(event)
            else:
                self._deliver(event)
        elif isinstance(event, Reply):
            self._reply(event)
        elif isinstance(event, Item):
            if self._waiting:
                self._waiting[0].items.append(event)
        elif isinstance(event, ServerLine):
            if event.kind == "INFO" and event.info is not None:
                self.info = event.info
                if not self.ready.called:
                    self.ready.callback(event.info)
            elif event.kind == "PING":
                self.transport.write(b"PONG\r\n")
            elif event.kind == "BYE":
                self.bye = event.text.split(" ", 1)[0] or "bye"
            elif event.kind == "DROP":
                self.subscriptions.pop(event.text, None)
                if self.on_drop is not None:
                    self.on_drop(event.text)

    def _deliver(self, msg: Delivery) -> None:
        if msg.channel.startswith("@"):
            if self.on_direct is not None:
                self.on_direct(msg)
            return
        self.last_ids[msg.channel] = msg.msg_id
        # The server sends a message once per connection; each subscription
        # whose pattern matches sees it.
        for pattern, callback in list(self.subscriptions.items()):
            if pattern_matches(pattern, msg.channel):
                callback(msg)

    def _reply(self, reply: Reply) -> None:
        if not self._waiting:
            self._log.warn("a reply nobody waits for: {reply!r}", reply=reply)
            return
        waiting = self._waiting.popleft()
        if waiting.history is not None and waiting.collected is not None:
            # HISTORY's messages are the last <count> of its channel before +OK;
            # anything earlier on that channel was live.
            count = int(reply.text) if reply.ok else 0
            live = waiting.collected[: len(waiting.collected) - count]
            for msg in live:
                self._deliver(msg)
            waiting.items = waiting.collected[len(live):]
        if reply.ok:
            waiting.deferred.callback((reply, waiting.items))
        else:
            waiting.deferred.errback(CommandError(reply.code, reply.text))

    def connectionLost(self, reason: object = None) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        why = self.bye or "lost"
        cause = None if self.bye else getattr(reason, "value", None)
        while self._waiting:
            self._waiting.popleft().deferred.errback(ServerClosed(why, cause))
        if not self.ready.called:
            self.ready.errback(ServerClosed(why, cause))
        self.closed.callback(why)

    # -- commands ----------------------------------------------------------

    def _command(self, line: str, payload: bytes | None = None,
                 history: str | None = None) -> Deferred[tuple[Reply, list[Any]]]:
        if self.closed.called:
            return fail(ServerClosed(self.bye or "lost"))
        d: Deferred[tuple[Reply, list[Any]]] = Deferred()
        self._waiting.append(_Waiting(d, [], history, [] if history else None))
        data = line.encode() + b"\r\n"
        if payload is not None:
            data += payload + b"\r\n"
        self.transport.write(data)
        return d

    @deferred
    async def auth(self, user: str, password: str) -> str:
        """Log in as a user of the server's ``--users`` file; returns the user."""
        reply, _ = await self._command(f"AUTH {user} {password}")
        return reply.text

    @deferred
    async def name(self, name: str) -> str:
        reply, _ = await self._command(f"NAME {name}")
        return reply.text

    @deferred
    async def subscribe(self, pattern: str, callback: OnMessage, last: int | None = None,
                        since: int | None = None, epoch: str | None = None) -> tuple[int, bool]:
        """Subscribe; returns (messages replayed, partial)."""
        line = f"SUB {pattern}"
        if last is not None:
            line += f" last={last}"
        if since is not None:
            line += f" since={since}"
            if epoch is not None:
                line += f" epoch={epoch}"
        self.subscriptions[pattern] = callback
        try:
            reply, _ = await self._command(line)
        except Exception:
            self.subscriptions.pop(pattern, None)
            raise
        words = reply.text.split(" ")
        return int(words[2]), words[-1] == "partial"

    @deferred
    async def unsubscribe(self, pattern: str) -> None:
        await self._command(f"UNSUB {pattern}")
        self.subscriptions.pop(pattern, None)

    @deferred
    async def publish(self, channel: str, payload: Payload) -> int:
        """Publish text or bytes (as PUB when it can be, else PUBB); returns the id."""
        data = payload.encode() if isinstance(payload, str) else payload
        if is_text(data) and len(channel) + len(data) + 5 <= self.info.get("max_line", 65536):
            reply, _ = await self._command(f"PUB {channel} {data.decode()}")
        else:
            reply, _ = await self._command(f"PUBB {channel} {len(data)}", data)
        return int(reply.text)

    @deferred
    async def direct(self, name: str, payload: Payload) -> int:
        return await self.publish("@" + name, payload)

    @deferred
    async def history(self, channel: str, n: int | None = None) -> list[Delivery]:
        line = f"HISTORY {channel}" + (f" {n}" if n is not None else "")
        _, kept = await self._command(line, history=channel)
        return kept

    @deferred
    async def list(self, pattern: str | None = None) -> list[Item]:
        _, items = await self._command("LIST" + (f" {pattern}" if pattern else ""))
        return items

    @deferred
    async def who(self, channel: str | None = None) -> builtins.list[Item]:
        _, items = await self._command("WHO" + (f" {channel}" if channel else ""))
        return items

    @deferred
    async def ping(self) -> None:
        await self._command("PING")

    @deferred
    async def quit(self) -> None:
        await self._command("QUIT")


@implementer(IStreamClientEndpoint)
class _Noting:
    """An endpoint that reports each failed connection attempt before passing it on."""

    def __init__(self, endpoint: IStreamClientEndpoint,
                 on_failure: Callable[[BaseException], object]) -> None:
        self._endpoint = endpoint
        self._on_failure = on_failure

    def connect(self, factory: Any) -> Deferred[Any]:
        def failed(failure: Failure) -> Failure:
            assert failure.value is not None
            self._on_failure(failure.value)
            return failure

        return self._endpoint.connect(factory).addErrback(failed)


# Resuming a wildcard subscription resumes at most this many of the channels
# it brought (the most recently first seen), each with its own since=.
RESUME_PER_PATTERN = 1000
# Seconds before a connection whose login was refused (after the first
# connection) is dropped for a new try.
LOGIN_RETRY = 10.0


class Client:
    """A connection kept up across failures, resuming its subscriptions."""

    _log = Logger()

    def __init__(self, reactor: Any, endpoint: str | IStreamClientEndpoint,
                 name: str | None = None, on_direct: OnMessage | None = None,
                 on_state: Callable[[str], object] | None = None,
                 keepalive: float = KEEPALIVE,
                 on_connect_failed: Callable[[BaseException], object] | None = None,
                 user: str | None = None, password: str = "") -> None:
        """``on_connect_failed`` hears why each failed attempt failed (before the
        server's INFO: refused, unreachable, a TLS handshake); ``Client`` retries
        regardless until ``stop()``. With ``user``, each connection first
        logs in (``AUTH``) with ``password``."""
        if isinstance(endpoint, str):
            endpoint = cast(IStreamClientEndpoint, clientFromString(reactor, endpoint))
        self.name = name
        self.user = user
        self._password = password
        self.on_connect_failed = on_connect_failed
        self.on_direct = on_direct
        self.on_state = on_state or (lambda state: None)
        self.epoch: str | None = None
        self._subscriptions: dict[str, tuple[OnMessage, int | None, int | None]] = {}
        # channel -> (last id seen, the epoch it was seen in): what resuming asks for
        self._last: dict[str, tuple[int, str | None]] = {}
        self._connection: Connection | None = None
        self._waiting: list[Deferred[Connection]] = []
        self._connected_once = False
        self._stopping = False
        self._reactor = reactor
        self._keepalive = keepalive
        factory = Factory.forProtocol(self._build)
        # No prepareConnection: naming and resuming happen once the connection
        # counts as made, so that any failure there is an ordinary disconnect.
        self._service = ClientService(
            _Noting(endpoint, self._attempt_failed), factory,
            retryPolicy=backoffPolicy(initialDelay=0.2, maxDelay=5.0), clock=reactor)

    def _build(self) -> Connection:
        conn = Connection(self._on_direct, self._reactor, self._keepalive)
        conn.ready.addCallback(lambda info: Deferred.fromCoroutine(self._resume(conn, info)))
        # Lost before INFO (a failed TLS handshake, say): ClientService retries.
        conn.ready.addErrback(self._not_ready)
        conn.closed.addCallback(self._lost, conn)
        return conn

    def start(self) -> None:
        self._service.startService()

    @deferred
    async def stop(self) -> None:
        """Say QUIT if connected, and stop reconnecting."""
        self._stopping = True
        conn = self._connection
        if conn is not None and conn.transport is not None:
            try:
                # A server that has stopped answering does not hold up stopping.
                await conn.quit().addTimeout(QUIT_WAIT, self._reactor)
            except Exception:
                pass
        await self._service.stopService()
        self._fail_waiting(ServerClosed("stopped"))

    async def _resume(self, conn: Connection, info: dict[str, Any]) -> None:
        """On every new connection: log in, name, then make every subscription again."""
        self.epoch = info.get("epoch")
        step = "login"
        try:
            if self.user is not None:
                await conn.auth(self.user, self._password)
            step = "name"
            if self.name:
                await conn.name(self.name)
        except CommandError as e:
            if not self._connected_once:
                # The first connection: the caller hears why, and nothing retries.
                self._stopping = True
                self._fail_waiting(e)
                conn.transport.loseConnection()
                await self._service.stopService()
                return
            if step == "login":
                # Not in as the user, so not "connected": its commands and
                # subscriptions would be refused (and the subscriptions lost).
                # A new connection tries again, a pause later (a login may be
                # refused for a while: unavailable, rate-limited, a password
                # being changed), slower than the server's failure budget.
                self.on_state(f"login refused: {e}; trying again in {LOGIN_RETRY:g} s")
                self._reactor.callLater(LOGIN_RETRY, conn.transport.loseConnection)
                return
            self.on_state(f"{step} refused: {e}")
        except ServerClosed:
            return  # ClientService reconnects (a third failed login is a BYE)
        for pattern, (callback, last, since) in list(self._subscriptions.items()):
            try:
                await self._resubscribe(conn, pattern, callback, last, since)
            except CommandError as e:
                self._subscriptions.pop(pattern, None)
                self.on_state(f"subscription to {pattern} refused: {e}")
            except ServerClosed:
                return
        self._connection = conn
        self._connected_once = True
        self.on_state("connected")
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(conn)

    async def _resubscribe(self, conn: Connection, pattern: str, callback: OnMessage,
                           last: int | None, since: int | None) -> None:
        if not is_wildcard(pattern):
            seen = self._last.get(pattern)
            if seen is not None:
                await conn.subscribe(pattern, callback, since=seen[0], epoch=seen[1])
            else:
                await conn.subscribe(pattern, callback, last=last, since=since)
            return
        # The server replays concrete channels only: for each channel this
        # pattern brought, resume it on its own, take the pattern, then let the
        # concrete ones go. The server sends a message once per connection, and
        # the callback drops any id it has already seen, so nothing comes twice.
        channels = [channel for channel in self._last
                    if pattern_matches(pattern, channel) and channel not in self._subscriptions]
        channels = channels[-RESUME_PER_PATTERN:]
        for channel in channels:
            seen = self._last[channel]
            try:
                await conn.subscribe(channel, callback, since=seen[0], epoch=seen[1])
            except CommandError:
                channels.remove(channel)  # gone (dropped, no auto-create): nothing to resume
        await conn.subscribe(pattern, callback)
        for channel in channels:
            await conn.unsubscribe(channel)

    def _not_ready(self, failure: Failure) -> None:
        assert failure.value is not None
        self._attempt_failed(failure.value)

    def _attempt_failed(self, reason: BaseException) -> None:
        if self.on_connect_failed is not None and not self._stopping:
            self.on_connect_failed(reason)

    def _fail_waiting(self, error: Exception) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(error)

    def _lost(self, why: str, conn: Connection) -> str:
        if self._connection is conn:
            self._connection = None
            if not self._stopping:
                self.on_state(f"disconnected ({why})")
        return why

    def _on_direct(self, msg: Delivery) -> None:
        if self.on_direct is not None:
            self.on_direct(msg)

    def _tracked(self, callback: OnMessage) -> OnMessage:
        """The callback, seeing each message once even across a resume replay.

        Each subscription keeps its own record of what it has seen; the client
        keeps the newest id per channel, which is where a resume starts.
        """
        mine: dict[str, tuple[int, str | None]] = {}

        def seen(msg: Delivery) -> None:
            epoch = self.epoch
            last = mine.get(msg.channel)
            if last is not None and last[1] == epoch and msg.msg_id <= last[0]:
                return  # already seen in this epoch
            mine[msg.channel] = (msg.msg_id, epoch)
            newest = self._last.get(msg.channel)
            if newest is None or newest[1] != epoch or newest[0] < msg.msg_id:
                self._last[msg.channel] = (msg.msg_id, epoch)
            callback(msg)

        return seen

    def connection(self) -> Deferred[Connection]:
        """The live connection, named and resubscribed (waiting for one if needed)."""
        if self._connection is not None:
            return succeed(self._connection)
        if self._stopping:
            return fail(ServerClosed("stopped"))
        d: Deferred[Connection] = Deferred()
        self._waiting.append(d)
        return d

    @deferred
    async def subscribe(self, pattern: str, callback: OnMessage, last: int | None = None,
                        since: int | None = None) -> tuple[int, bool]:
        """Subscribe now and after every reconnect; returns (replayed, partial)."""
        tracked = self._tracked(callback)
        conn = await self.connection()
        if pattern in conn.subscriptions:  # already made (by a resume)
            return 0, False
        try:
            result = await conn.subscribe(pattern, tracked, last=last, since=since)
        except CommandError:
            raise  # refused: not remembered, so no reconnect tries it again
        self._subscriptions[pattern] = (tracked, last, since)
        return result

    @deferred
    async def unsubscribe(self, pattern: str) -> None:
        self._subscriptions.pop(pattern, None)
        await (await self.connection()).unsubscribe(pattern)

    @deferred
    async def publish(self, channel: str, payload: Payload) -> int:
        """Publish once connected. If the connection drops before the reply, this
        fails with ServerClosed and the message may or may not have been published."""
        return await (await self.connection()).publish(channel, payload)

    @deferred
    async def direct(self, name: str, payload: Payload) -> int:
        return await (await self.connection()).direct(name, payload)

    @deferred
    async def history(self, channel: str, n: int | None = None) -> list[Delivery]:
        return await (await self.connection()).history(channel, n)

    @deferred
    async def list(self, pattern: str | None = None) -> list[Item]:
        return await (await self.connection()).list(pattern)

    @deferred
    async def who(self, channel: str | None = None) -> builtins.list[Item]:
        return await (await self.connection()).who(channel)
