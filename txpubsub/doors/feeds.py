"""Raw feeds: listeners bound to one channel, with no commands at all.

``--feed CHANNEL=ENDPOINT``: every connection is subscribed to CHANNEL (a
pattern is fine) and receives each payload alone on a CRLF line.
``--ingest CHANNEL=ENDPOINT``: every line a connection sends is published to
CHANNEL. Both are clients of the hub, under the same limits as any other.
"""
from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener
from twisted.logger import Logger
from zope.interface import implementer

from txpubsub.core.hub import SYSTEM_CHANNELS, Hub
from txpubsub.core.pending import PendingPublish
from txpubsub.doors.codecs import bare_codec
from txpubsub.doors.factory import DoorFactory
from txpubsub.doors.framing import LineFramer
from txpubsub.wire.errors import CloseReason, HubError
from txpubsub.wire.names import INBOX, PLAIN, SYSTEM, channel_kind, is_wildcard, pattern_kind


def parse_binding(text: str, *, pattern: bool) -> tuple[str, str]:
    """``CHANNEL=ENDPOINT`` split at the first ``=`` (channels cannot hold one)."""
    channel, sep, endpoint = text.partition("=")
    if not sep or not endpoint:
        raise ValueError(f"expected CHANNEL=ENDPOINT, got {text!r}")
    try:
        kind = pattern_kind(channel) if pattern else channel_kind(channel)
    except HubError as e:
        raise ValueError(e.text) from None
    if kind == INBOX or (not pattern and kind != PLAIN):
        raise ValueError(f"{channel} cannot be bound to a raw listener")
    if kind == SYSTEM and not is_wildcard(channel) and channel not in SYSTEM_CHANNELS:
        raise ValueError(f"there is no system channel {channel}")
    return channel, endpoint


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class RawDoor(LineFramer):
    """What feed and ingest connections share: a session, one channel, no words
    of the line protocol (no greeting, no PING, no BYE, no DROP)."""

    __slots__ = ("channel", "hub", "session")

    def __init__(self, factory: RawDoorFactory) -> None:
        super().__init__()
        self.MAX_LENGTH = factory.settings.max_line
        self.hub = factory.hub
        self.channel = factory.channel
        self.session = factory.new_session(self)

    def greet(self) -> None:
        assert self.session.client is not None
        self.session.client.addressable = False

    def goodbye(self, reason: CloseReason, text: str) -> bytes:
        return b""  # a raw reader would take any words for one more payload

    def heartbeat_probe(self) -> bytes | None:
        return None

    def channel_dropped(self, channel: str) -> None:
        """A raw connection has no DROP line: its reader just stops receiving."""

    def connectionMade(self) -> None:
        self.session.connection_made(self.transport)

    def handshakeCompleted(self) -> None:
        self.session.handshake_completed()

    def connectionLost(self, reason: object = None) -> None:
        self.session.connection_lost(reason)

    def readConnectionLost(self) -> None:
        self.session.finish(CloseReason.PEER_CLOSED)

    def writeConnectionLost(self) -> None:
        """The peer stopped reading; the connection ends when it closes."""

    def lineLengthExceeded(self, line: bytes) -> None:
        self.session.close(CloseReason.LINE_TOO_LONG)


class FeedDoor(RawDoor):
    """A reader that only listens: bare payload lines, input ignored."""

    _log = Logger()

    def greet(self) -> None:
        super().greet()
        assert self.session.client is not None  # greeted once attached
        try:
            self.hub.subscribe(self.session.client, self.channel)
        except HubError as e:
            # Under --users a feed reader is anonymous; a reload may have taken
            # the channel away from the anonymous rules.
            self._log.warn("feed {client!r} on {channel}: {code} {text}",
                           client=self.session.client, channel=self.channel, code=e.code,
                           text=e.text)
            self.session.close(CloseReason.ERROR)

    def dataReceived(self, data: bytes) -> None:
        """Whatever a feed reader types is dropped."""


class IngestDoor(RawDoor):
    """A writer that only talks: each line it sends is published as it is."""

    _log = Logger()
    _refused = 0

    def __init__(self, factory: RawDoorFactory) -> None:
        super().__init__(factory)
        self._pending: deque[PendingPublish] = deque()  # publishes being committed

    def lines_spent(self) -> None:
        # A thousand lines of one read published: the others get their turn.
        self.session.yield_turn()

    def lineReceived(self, line: bytes) -> None:
        if line[-1:] == b"\r":
            line = line[:-1]
        client = self.session.client
        assert client is not None
        try:
            result = self.hub.publish(client.sender, self.channel, line, client)
        except HubError as e:
            self._refusal(e)
            return
        if type(result) is PendingPublish:
            # Being committed by a durable store; the hub counts it once stored.
            result.waiter = self._settled
            self._pending.append(result)
        else:
            self.session.msgs_in += 1

    def _refusal(self, e: HubError) -> None:
        # The writer may never read, so refusals are counted and logged once.
        self._refused += 1
        if self._refused == 1:
            self._log.warn("ingest {client!r} to {channel}: {code} {text}",
                           client=self.session.client, channel=self.channel, code=e.code,
                           text=e.text)

    def _settled(self) -> None:
        pending = self._pending
        while pending and pending[0].settled:
            done = pending.popleft()
            if done.error is not None:
                self._refusal(done.error)


class RawDoorFactory(DoorFactory):
    """A raw listener bound to one channel."""

    def __init__(self, channel: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.channel = channel


class FeedFactory(RawDoorFactory):
    kind = "feed"
    protocol = FeedDoor
    make_codec = staticmethod(bare_codec)


class IngestFactory(RawDoorFactory):
    kind = "ingest"
    protocol = IngestDoor
    make_codec = staticmethod(bare_codec)  # it receives nothing; any codec will do


def ensure_channel(hub: Hub, channel: str) -> None:
    """Create the ingest channel up front, so --no-auto-create does not refuse it."""
    if not is_wildcard(channel) and hub.channel(channel) is None:
        hub.create(channel)
