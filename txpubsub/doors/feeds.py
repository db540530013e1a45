"""Raw feeds: listeners bound to one channel, with no commands at all.

``--feed CHANNEL=ENDPOINT``: every connection is subscribed to CHANNEL (a
pattern is fine) and receives each payload alone on a CRLF line.
``--ingest CHANNEL=ENDPOINT``: every line a connection sends is published to
CHANNEL. Both are clients of the hub, under the same limits as any other.
"""
from __future__ import annotations

from twisted.logger import Logger

from txpubsub.core.hub import SYSTEM_CHANNELS
from txpubsub.core.message import Message
from txpubsub.doors.line import DoorFactory
from txpubsub.doors.session import Door
from txpubsub.wire.errors import HubError
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


class FeedProtocol(Door):
    """A reader that only listens: bare payload lines, input ignored."""

    heartbeat = False
    channel = ""

    def greet(self) -> None:
        assert self.client is not None
        self.client.addressable = False
        self.hub.subscribe(self.client, self.channel)

    def deliver(self, msg: Message) -> bool:
        self.msgs_out += 1
        self.send(msg.bare_line())
        return self._lagging

    def dataReceived(self, data: bytes) -> None:
        """Whatever a feed reader types is dropped."""

    def channel_dropped(self, channel: str) -> None:
        """A feed has no DROP line: its reader just stops receiving."""


class IngestProtocol(Door):
    """A writer that only talks: each line it sends is published as it is."""

    heartbeat = False
    channel = ""
    _log = Logger()
    _refused = 0

    def greet(self) -> None:
        assert self.client is not None
        self.client.addressable = False

    def lineReceived(self, line: bytes) -> None:
        if line[-1:] == b"\r":
            line = line[:-1]
        assert self.client is not None
        try:
            self.hub.publish(self.client.sender, self.channel, line, self)
            self.msgs_in += 1
        except HubError as e:
            # The writer may never read, so refusals are counted and logged once.
            self._refused += 1
            if self._refused == 1:
                self._log.warn("ingest {client!r} to {channel}: {code} {text}",
                               client=self.client, channel=self.channel, code=e.code,
                               text=e.text)


class FeedFactory(DoorFactory):
    protocol = FeedProtocol

    def __init__(self, channel: str, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.channel = channel

    def buildProtocol(self, addr: object) -> Door:
        proto = super().buildProtocol(addr)
        proto.channel = self.channel  # type: ignore[attr-defined]
        return proto


class IngestFactory(FeedFactory):
    protocol = IngestProtocol


def ensure_channel(hub: object, channel: str) -> None:
    """Create the ingest channel up front, so --no-auto-create does not refuse it."""
    if not is_wildcard(channel) and hub.channel(channel) is None:  # type: ignore[attr-defined]
        hub.create(channel)  # type: ignore[attr-defined]
