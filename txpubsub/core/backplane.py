"""The Backplane seam: who numbers a message and carries it to every server.

The hub checks a publish (limits, names, permissions), then hands it to its
backplane, which assigns the id and brings the message back to the hub's
``fan_out`` (the in-process backplane does so at once; a shared one such as
Redis later, when the message returns from it, through ``Hub.arrived``). The
result is the id, or a Deferred of it when numbering happens elsewhere;
doors keep their replies in command order either way (ReplyQueue).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Union

from twisted.internet.defer import Deferred

from txpubsub.core.message import Message

if TYPE_CHECKING:
    from txpubsub.core.channel import Channel
    from txpubsub.core.hub import Hub
    from txpubsub.core.registry import ClientRecord
    from txpubsub.core.session import Session

MessageId = Union[int, "Deferred[int]"]


class Backplane(Protocol):
    """Numbers messages and delivers them, here and on other servers."""

    def publish(
        self, channel: Channel[Session], sender: str, payload: bytes,
        publisher: ClientRecord | None,
    ) -> MessageId:
        """Number a message on ``channel`` and deliver it everywhere."""

    def direct(
        self, recipient: ClientRecord, sender: str, payload: bytes,
        publisher: ClientRecord | None,
    ) -> MessageId:
        """Number a direct message in ``recipient``'s inbox and deliver it."""


class LocalBackplane:
    """One server alone: ids come from the channel, delivery is a call."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def publish(
        self, channel: Channel[Session], sender: str, payload: bytes,
        publisher: ClientRecord | None,
    ) -> int:
        hub = self._hub
        msg = Message(channel.name, channel.last_id + 1, sender, payload, hub.message_time())
        hub.fan_out(channel, msg, publisher)
        return msg.msg_id

    def direct(
        self, recipient: ClientRecord, sender: str, payload: bytes,
        publisher: ClientRecord | None,
    ) -> int:
        recipient.inbox_last_id += 1
        hub = self._hub
        msg = Message("@" + recipient.sender, recipient.inbox_last_id, sender, payload,
                      hub.message_time())
        hub.deliver_direct(recipient, msg, publisher)
        return msg.msg_id
