"""The session every door owns: joining the hub, output within --max-buffer,
slow consumers, publisher pacing, heartbeats and the bounded close.

A door (the line protocol, a raw feed, later WebSocket or RESP) parses its
own input and encodes its own output; it owns one ``Session``, which is what
the hub holds for the connection (the ``txpubsub.core.session.Session``
seam). The door supplies its greeting, its goodbye (``BYE`` for the line
protocol, nothing for a raw feed, a close frame for WebSocket), its
heartbeat probe and a way to hold its input, through the ``Door`` interface
below.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.interfaces import IAddress, IDelayedCall, IPushProducer, ISSLTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txpubsub.core.hub import Hub
from txpubsub.core.message import Message
from txpubsub.core.registry import ClientRecord
from txpubsub.core.stats import DoorCounters
from txpubsub.doors.codecs import Codec
from txpubsub.doors.output import Batcher, direct_socket, send_now, unsent_bytes
from txpubsub.wire.errors import CloseReason, HubError, ServerFull

# After the goodbye, a peer that does not read gets this long before the
# socket is aborted: a plain loseConnection would wait for it forever.
CLOSE_GRACE = 2.0
# Pacing: a publisher whose message lands on a subscriber with more than half
# of --max-buffer unsent stops reading for STALL seconds. Each subscriber may
# cause at most DoorSettings.max_stall seconds of stalls until it has drained, so
# one that never reads still reaches the limit and is cut off.
STALL = 0.005


def describe_address(address: IAddress) -> tuple[str, str]:
    """The address as text and its family: ``host:port`` (ipv4), ``[host]:port``
    (ipv6), ``unix:path`` (unix)."""
    host = getattr(address, "host", None)
    if host is not None:
        if ":" in host:
            return f"[{host}]:{address.port}", "ipv6"  # type: ignore[attr-defined]
        return f"{host}:{address.port}", "ipv4"  # type: ignore[attr-defined]
    name = getattr(address, "name", None)
    return f"unix:{name.decode() if isinstance(name, bytes) else name or '-'}", "unix"


# What a peer refused by protected mode reads (and the log says): how to let it in.
PROTECTED_MODE_TEXT = ("this server has no --users and only lets in clients on its own "
                       "machine; start it with --users FILE (docs/auth.md) or --allow-anonymous")


def is_local(address: IAddress) -> bool:
    """Whether a peer is on this machine: a loopback address or a Unix socket."""
    host = getattr(address, "host", None)
    if host is None:
        return True  # a Unix socket
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


@dataclass(frozen=True)
class DoorSettings:
    """Per-connection limits and settings, from the command line (docs/operations.md)."""

    max_line: int = 65536
    max_buffer: int = 8 * 1024 * 1024
    ping_interval: float = 60.0
    max_stall: float = 0.1
    tls_name_from: str = "none"  # none, cn or san: a TLS client's name from its certificate
    handshake_timeout: float = 10.0
    protected: bool = False  # protected mode: refuse peers not on this machine


class Door(Protocol):
    """What a session needs from the door that owns it."""

    def greet(self) -> None:
        """The session joined the hub: say hello (or nothing)."""

    def goodbye(self, reason: CloseReason, text: str) -> bytes:
        """The last bytes before the server closes (b"" for none)."""

    def heartbeat_probe(self) -> bytes | None:
        """What to send a silent peer to see if it is alive; None: no heartbeats."""

    def channel_dropped(self, channel: str) -> None:
        """The admin dropped a channel this connection was subscribed to."""

    def hold_input(self) -> None:
        """Stop reading for a moment (pacing)."""

    def release_input(self) -> None:
        """Go on reading."""


@implementer(IPushProducer)
class Session:
    """A connection attached to the hub, whatever its door speaks.

    It registers as its transport's streaming producer, so Twisted tells it
    (pauseProducing) when more than 64 KiB of output wait; only then does a
    delivery look at the real backlog. Below that, ``deliver`` is one append.
    """

    _log = Logger()
    __slots__ = (
        "_backed_up",
        "_batcher",
        "_codec",
        "_counters",
        "_door",
        "_early",
        "_handshake",
        "_lagging",
        "_last_heard",
        "_out",
        "_out_len",
        "_producing",
        "_queued",
        "_replies",
        "_reserved",
        "_socket",
        "_stall_left",
        "_stalled",
        "_timer",
        "_unsent",
        "address",
        "client",
        "close_reason",
        "family",
        "heard",
        "hub",
        "listener",
        "max_buffer",
        "msgs_in",
        "pinged",
        "settings",
        "transport",
    )

    def __init__(
        self, door: Door, hub: Hub, listener: str, settings: DoorSettings, codec: Codec,
        batcher: Batcher, counters: DoorCounters,
    ) -> None:
        self._door = door
        self.hub = hub
        self.listener = listener
        self.settings = settings
        self.max_buffer = settings.max_buffer
        self._codec = codec
        self._batcher = batcher
        self._counters = counters
        self.transport: Any = None
        self.client: ClientRecord | None = None
        self.close_reason: CloseReason | None = None
        self.msgs_in = 0
        # Messages out are counted per write, not per delivery: what this
        # session queued ever, less the replies and server lines among it.
        self._queued = 0
        self._replies = 0
        self.pinged = False
        self.heard = False  # a whole line (or payload) arrived in this read
        self._out: list[bytes] | None = None  # output of this reactor turn
        self._out_len = 0
        self._unsent = 0  # the backlog at the last measure
        # A turn's output goes to the transport early past this, so a burst of
        # input cannot queue more than --max-buffer before it is accounted for.
        self._early = max(65536, settings.max_buffer // 8)
        self._socket: Any = None  # for sending without Twisted's buffer, when it is empty
        self._producing = False  # registered as our transport's producer
        self._backed_up = False  # Twisted says over 64 KiB wait to be sent
        self._lagging = False  # over half of --max-buffer, with stall budget left
        self._stall_left = settings.max_stall
        self._stalled: IDelayedCall | None = None
        self._timer: IDelayedCall | None = None
        self._last_heard = 0.0
        self._handshake: IDelayedCall | None = None  # TLS: pending until the handshake is done
        self._reserved = False  # holds a place in --max-clients during its TLS handshake
        self.address = self.family = "-"

    def __repr__(self) -> str:
        return f"<Session {self.client!r} on {self.listener}>"

    def update_settings(self, settings: DoorSettings) -> None:
        """New limits from a reload: this connection follows them from now on.

        A new --ping-interval starts its count again from now (0 stops the
        heartbeat), so a shorter one cannot call a client stale at once."""
        interval_changed = settings.ping_interval != self.settings.ping_interval
        self.settings = settings
        self.max_buffer = settings.max_buffer
        self._early = max(65536, settings.max_buffer // 8)
        if not interval_changed or self.client is None or self.close_reason is not None:
            return  # not joined yet (it reads the settings when it joins), or closing
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if settings.ping_interval and self._door.heartbeat_probe() is not None:
            self._timer = self.hub.clock.callLater(settings.ping_interval, self._check_alive)

    # -- joining and leaving -------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        """The door's connectionMade: join the hub now, or after a TLS handshake."""
        self.transport = transport
        self.address, self.family = describe_address(transport.getPeer())
        if self.settings.protected and not is_local(transport.getPeer()):
            self.hub.refusals.refused(self._log, "protected mode", self.address,
                                      "refused {address} ({listener}): protected mode: {text}",
                                      listener=self.listener, text=PROTECTED_MODE_TEXT)
            self.close(CloseReason.PROTECTED_MODE, PROTECTED_MODE_TEXT)
            return
        if ISSLTransport.providedBy(transport):
            # Not a client until its handshake is done: nothing can be sent to
            # it, and its certificate (and so its name) is known then. It
            # counts toward --max-clients from now, so connections that never
            # handshake cannot take every file descriptor.
            if not self.hub.registry.reserve():
                self._log.warn("refused {address}: --max-clients reached (TLS, before "
                               "its handshake)", address=self.address)
                self.close_reason = CloseReason.TOO_MANY_CLIENTS
                transport.abortConnection()
                return
            self._reserved = True
            self._handshake = self.hub.clock.callLater(
                self.settings.handshake_timeout, self._handshake_too_slow)
        else:
            self._attach(None)

    def _release(self) -> None:
        if self._reserved:
            self._reserved = False
            self.hub.registry.release()

    def _attach(self, name: str | None) -> None:
        self._release()
        try:
            self.client = self.hub.attach(self, self.address, self.listener, self.family)
        except ServerFull:
            self._log.warn("refused {address}: --max-clients reached", address=self.address)
            self.close(CloseReason.TOO_MANY_CLIENTS)
            return
        self.hub.use_codec(self._codec)
        self._socket = direct_socket(self.transport)
        self.transport.registerProducer(self, True)
        self._producing = True
        self._last_heard = self.hub.clock.seconds()
        if self.settings.ping_interval and self._door.heartbeat_probe() is not None:
            self._timer = self.hub.clock.callLater(self.settings.ping_interval,
                                                   self._check_alive)
        if name is not None:
            # The name its TLS certificate carries: it may not change it.
            try:
                claiming = self.hub.claim_name(self.client, name)
            except HubError as e:
                self.refuse(e.text)
                return
            if claiming is not None:
                # Claimed on every server sharing Redis first; nothing is read
                # from the client, nor sent to it, until then.
                self.transport.pauseProducing()
                claiming.addCallbacks(self._name_claimed, self._name_refused)
                return
        self._door.greet()

    def _name_claimed(self, _: object) -> None:
        if self.close_reason is None and self.hub.record_of(self) is self.client:
            self.transport.resumeProducing()
            self._door.greet()

    def _name_refused(self, failure: Failure) -> None:
        if self.close_reason is None and self.hub.record_of(self) is self.client:
            if not failure.check(HubError):
                self._log.failure("claiming a certificate name failed", failure)
            self.refuse(failure.value.text if failure.check(HubError)  # type: ignore[union-attr]
                        else "the server failed and logged why")

    def handshake_completed(self) -> None:
        """The door's handshakeCompleted: join the hub, named by the certificate
        if the listener says so."""
        if self._handshake is not None and self._handshake.active():
            self._handshake.cancel()
        self._handshake = None
        if self.close_reason is not None:
            return
        name = None
        source = self.settings.tls_name_from
        if source != "none":
            from txpubsub.doors.identity import certificate_name

            cert = self.transport.getPeerCertificate()
            name = certificate_name(cert, source) if cert is not None else None
            if name is None:
                self.refuse(f"the certificate carries no {source} name")
                return
        self._attach(name)

    def refuse(self, why: str) -> None:
        """Close as ``auth-failed``: the certificate's identity cannot be used."""
        self._log.warn("{address}: certificate name refused: {why}", address=self.address,
                       why=why)
        self.close(CloseReason.AUTH_FAILED, why)

    def _handshake_too_slow(self) -> None:
        self._handshake = None
        self._release()
        self._log.warn("{address}: no TLS handshake within {seconds} s", address=self.address,
                       seconds=self.settings.handshake_timeout)
        self.close_reason = CloseReason.ERROR
        self.transport.abortConnection()

    def connection_lost(self, reason: object = None) -> None:
        """The door's connectionLost: stop every timer and leave the hub."""
        self._queued += len(self._out or ())
        self._out = None
        if self._handshake is not None:
            # A TLS connection that never got through its handshake: a plain-text
            # client on a TLS port, an untrusted or missing client certificate.
            self._log.warn("{address}: TLS handshake failed: {why}", address=self.address,
                           why=getattr(reason, "value", reason))
            self.close_reason = self.close_reason or CloseReason.ERROR
        for call in (self._timer, self._stalled, self._handshake):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._stalled = self._handshake = None
        self._release()
        if self.client is not None:
            self.hub.release_codec(self._codec)
            self.hub.detach(self.client, self.close_reason or CloseReason.PEER_CLOSED)

    def close(self, reason: CloseReason, text: str = "") -> None:
        """Send the door's goodbye as the last thing and let the socket go.

        The peer gets CLOSE_GRACE seconds to read it; then the connection is
        aborted, so one that never reads cannot keep its socket and buffer.
        """
        if self.close_reason is not None:
            return
        if (reason is not CloseReason.SLOW_CONSUMER and self._out is not None
                and self._backed_up and self._over_limit(self._out_len)):
            reason, text = CloseReason.SLOW_CONSUMER, f"over {self.max_buffer} bytes unsent"
        self.close_reason = reason
        if reason is CloseReason.SLOW_CONSUMER:
            self._queued += len(self._out or ())
            self._out = None  # what did not fit is not sent
            self.hub.counters.slow_consumers += 1
            self._log.warn("{client!r} is a slow consumer", client=self.client)
        else:
            self.flush()
        goodbye = self._door.goodbye(reason, text)
        if goodbye:
            self._counters.bytes_out += len(goodbye)
            self.transport.write(goodbye)
        self.end()

    def finish(self, reason: CloseReason) -> None:
        """Close once what was written is sent, with no goodbye (QUIT, the peer's
        half-close); nothing more is sent after it."""
        if self.close_reason is None:
            self.close_reason = reason
            self.end()

    def end(self) -> None:
        """Close after what is written, aborting if that takes over CLOSE_GRACE."""
        self.flush()
        if self._producing:
            # Twisted does not close a transport whose producer is paused.
            self._producing = False
            self.transport.unregisterProducer()
        self.transport.loseConnection()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.hub.clock.callLater(CLOSE_GRACE, self.transport.abortConnection)

    # -- heartbeats ----------------------------------------------------------

    def after_read(self) -> None:
        """End of one read: if anything whole arrived (``heard``), the peer is alive.

        Once per read, not per line: the clock is read once for a whole batch.
        """
        if self.heard:
            self.heard = False
            self._last_heard = self.hub.clock.seconds()
            self.pinged = False

    def _check_alive(self) -> None:
        interval = self.settings.ping_interval
        now = self.hub.clock.seconds()
        quiet_for = now - self._last_heard
        if quiet_for < interval:
            self._timer = self.hub.clock.callLater(interval - quiet_for, self._check_alive)
        elif not self.pinged:
            self.pinged = True
            probe = self._door.heartbeat_probe()
            if probe:
                self.send(probe)
            self._timer = self.hub.clock.callLater(interval, self._check_alive)
        else:
            self._timer = None
            self.close(CloseReason.STALE, f"nothing heard for {int(quiet_for)} seconds")

    # -- output --------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue a reply or server line for this turn's write, after earlier output."""
        out = self._out
        if out is None:
            if self.close_reason is not None:
                return  # the goodbye was the last thing
            self._replies += 1
            self._out = [data]
            self._out_len = len(data)
            self._batcher.add(self)
        else:
            self._replies += 1
            out.append(data)
            self._out_len += len(data)
            if self._out_len > self._early:
                self.flush()

    @property
    def msgs_out(self) -> int:
        """Messages delivered to this connection (replies not counted)."""
        return self._queued + len(self._out or ()) - self._replies

    def deliver(self, msg: Message) -> bool:
        """Queue the message's shared bytes; True asks the hub to pace the publisher."""
        # The same steps as send(), written out: this runs once per delivery.
        # The hub has primed an eager codec with this message (LazySession
        # is for the others).
        codec = self._codec
        out = self._out
        if out is None:
            if self.close_reason is not None:
                return False
            self._out = [codec.last_bytes]
            self._out_len = codec.last_size
            self._batcher.add(self)
        else:
            out.append(codec.last_bytes)
            self._out_len += codec.last_size
            if self._out_len > self._early:
                self.flush()
        return self._lagging

    def deliver_encoded(self, data: bytes) -> bool:
        """A delivery the door encoded itself (a RESP ``pmessage``, which names
        its glob): queued and counted as ``deliver`` does; True asks for pacing."""
        out = self._out
        if out is None:
            if self.close_reason is not None:
                return False
            self._out = [data]
            self._out_len = len(data)
            self._batcher.add(self)
        else:
            out.append(data)
            self._out_len += len(data)
            if self._out_len > self._early:
                self.flush()
        return self._lagging

    def use_codec(self, codec: Codec) -> None:
        """Deliver in another encoding from now on (RESP's ``HELLO 3``), as
        eager or not as the one before (the session's class depends on it)."""
        if codec.eager is not self._codec.eager:
            raise ValueError("a session cannot change between an eager codec and another")
        if self.client is not None:
            self.hub.release_codec(self._codec)
            self.hub.use_codec(codec)
        self._codec = codec

    def flush(self) -> None:
        """Write this turn's output in one go, within --max-buffer."""
        out = self._out
        if out is None:
            return
        self._out = None
        self._out_len = 0
        self._queued += len(out)
        data = out[0] if len(out) == 1 else b"".join(out)
        size = len(data)
        # Output of one turn past the early mark (a long reply) is measured
        # even before Twisted says it is backed up: one write must not carry
        # it past the limit either.
        if self._backed_up or size > self._early:
            if self._over_limit(size):
                if self.close_reason is None:
                    self._queued -= len(out)
                    self._out = out  # close() drops it and says why
                    self.close(CloseReason.SLOW_CONSUMER, f"over {self.max_buffer} bytes unsent")
                return
            self._lagging = self._unsent > self.max_buffer // 2 and self._stall_left > 0
        self._counters.bytes_out += size
        send_now(self.transport, self._socket, data)

    def _over_limit(self, adding: int) -> bool:
        """Whether writing ``adding`` more bytes would pass --max-buffer."""
        self._unsent = unsent_bytes(self.transport) + adding
        return self._unsent > self.max_buffer

    def charge_stall(self) -> None:
        """A publisher was held back because of us: spend some of our budget."""
        self._stall_left -= STALL
        if self._stall_left <= 0:
            self._lagging = False

    def room(self) -> int:
        """Bytes that may still be queued before --max-buffer (less some slack
        for the reply line): a replay is never built bigger than this."""
        return self.max_buffer - self.pending_bytes() - 4096

    def channel_dropped(self, channel: str) -> None:
        """The admin dropped a channel this connection was subscribed to."""
        self._door.channel_dropped(channel)

    def pending_bytes(self) -> int:
        """Output waiting to be sent to this connection (O(1): asked once per
        SUB and HISTORY, and one read may pipeline thousands of those)."""
        return unsent_bytes(self.transport) + (self._out_len if self._out is not None else 0)

    # IPushProducer, called by our own transport about our output.
    def pauseProducing(self) -> None:
        self._backed_up = True

    def resumeProducing(self) -> None:
        self._backed_up = self._lagging = False
        self._stall_left = self.settings.max_stall

    def stopProducing(self) -> None:
        """The transport is going away; connection_lost does the cleaning up."""

    # -- pacing this connection as a publisher -----------------------------

    def pace(self) -> bool:
        """Stop reading from this publisher for a moment: a subscriber is behind.

        True if it was held back now (not already, and not closing).
        """
        if self._stalled is not None or self.close_reason is not None:
            return False
        self._door.hold_input()
        self._stalled = self.hub.clock.callLater(STALL, self._unstall)
        return True

    def yield_turn(self) -> None:
        """Read nothing more until the next reactor turn: this read's input
        has cost the hub its matching budget (Hub.reading). The connections
        that are ready meanwhile are served first."""
        if self._stalled is not None or self.close_reason is not None:
            return
        self._door.hold_input()
        self._stalled = self.hub.clock.callLater(0, self._unstall)

    def _unstall(self) -> None:
        self._stalled = None
        self._door.release_input()

    def stalled(self) -> bool:
        """Whether this connection's input is held back by pacing right now."""
        return self._stalled is not None


class LazySession(Session):
    """A session whose codec is not eager (JSON, RESP): the first of its
    format to get a message encodes it for the others."""

    __slots__ = ()

    def deliver(self, msg: Message) -> bool:
        """Queue the message's shared bytes; True asks the hub to pace the publisher."""
        # Session.deliver's steps written out again: delivering through
        # deliver_encoded(codec.encoded(msg)) (two calls more) measured 3.1 against
        # 3.8M WebSocket deliveries/s in bench/ws_fanout.py.
        codec = self._codec
        if msg is not codec.last:  # the first reader of this format: encode it
            codec.prime(msg)
        out = self._out
        if out is None:
            if self.close_reason is not None:
                return False
            self._out = [codec.last_bytes]
            self._out_len = codec.last_size
            self._batcher.add(self)
        else:
            out.append(codec.last_bytes)
            self._out_len += codec.last_size
            if self._out_len > self._early:
                self.flush()
        return self._lagging


def fit(messages: list[Message], codec: Codec, room: int) -> list[bytes]:
    """The newest of ``messages``, encoded, that fit in ``room`` bytes.

    Encoded newest first, and no further than what fits: a replay asked of a
    client that already has --max-buffer waiting costs nothing."""
    encoded: list[bytes] = []
    total = 0
    for msg in reversed(messages):
        data = codec.encode(msg)
        total += len(data)
        if total > room:
            break
        encoded.append(data)
    encoded.reverse()
    return encoded
