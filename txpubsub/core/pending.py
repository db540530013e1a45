"""A publish waiting for the durable store's commit, and who waits for it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted.internet.defer import Deferred, fail, succeed

if TYPE_CHECKING:
    from txpubsub.core.channel import Channel
    from txpubsub.core.message import Message
    from txpubsub.core.registry import ClientRecord
    from txpubsub.core.session import Session
    from txpubsub.wire.errors import HubError


class PendingPublish:
    """What ``Hub.publish`` returns when a durable store must commit first.

    The message is numbered (``msg``), but acknowledged and delivered only
    once its commit has finished (issue 15). One object per publish instead
    of a Deferred and its callback chain: a busy server has thousands of
    these waiting per commit, and each Deferred was a dozen objects for the
    garbage collector to walk. The hub settles them in order: ``settled``
    becomes True with ``error`` None (stored) or a HubError (refused, the
    id given out again), then ``waiter`` is called, once per commit however
    many of its publishes that commit held. A door gives it to its
    ReplyQueue (``send_stored``), which becomes the waiter and writes
    ``ok`` or ``refused(error)`` in command order. The hub counts the
    publisher's ``msgs_in`` when it is stored.
    """

    __slots__ = ("channel", "client", "error", "msg", "ok", "refused", "settled", "waiter")

    def __init__(self, channel: Channel[Session], msg: Message,
                 client: ClientRecord | None) -> None:
        self.channel = channel
        self.msg = msg
        self.client = client
        self.settled = False
        self.error: HubError | None = None
        self.waiter: Callable[[], None] | None = None
        self.ok = b""  # the reply once stored
        self.refused: Callable[[HubError], bytes] | None = None  # the reply if not

    @property
    def msg_id(self) -> int:
        return self.msg.msg_id

    def deferred(self) -> Deferred[int]:
        """The id once stored, or the refusal, as a Deferred: for a caller
        with no ReplyQueue (a Deferred per publish is fine off the hot path)."""
        if self.settled:
            return succeed(self.msg.msg_id) if self.error is None else fail(self.error)
        d: Deferred[int] = Deferred()

        def settled() -> None:
            if self.error is None:
                d.callback(self.msg.msg_id)
            else:
                d.errback(self.error)

        self.waiter = settled
        return d

    def __repr__(self) -> str:
        state = "waiting" if not self.settled else "refused" if self.error else "stored"
        return f"<PendingPublish {self.msg.channel} #{self.msg.msg_id} {state}>"
