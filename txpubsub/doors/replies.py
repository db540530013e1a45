"""Replies kept in command order, even when one of them completes later."""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from txpubsub.core.pending import PendingPublish
from txpubsub.wire.errors import HubError

Reply = Union[bytes, "Deferred[bytes]"]


class ReplyQueue:
    """Writes each command's reply in the order the commands arrived.

    In memory every reply is ready at once and goes straight out. A reply
    that is a Deferred (an id assigned by a remote store or backplane), or a
    publish a durable store is committing (``send_stored``), holds back the
    replies after it until it is ready, so pipelining clients still get
    their replies in order. A reply of ``b""`` (QUIET) writes nothing.
    """

    __slots__ = ("_flush_waiting", "_made", "_waiting", "_write")
    _log = Logger()
    INTERNAL_ERROR = b"-ERR internal-error the server failed this command and logged why\r\n"

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        # Slots: [bytes], [None] until a Deferred fires, or a PendingPublish.
        self._waiting: deque[list[object] | PendingPublish] | None = None  # made when needed
        self._flush_waiting = self._flush  # one bound method: the hub wakes each waiter once
        self._made = self._make  # bound once: one object less per reply waiting

    def send(self, reply: Reply) -> None:
        """Queue one command's reply (bytes, or a Deferred of bytes)."""
        if not self._waiting and type(reply) is bytes:
            if reply:
                self._write(reply)
            return
        slot: list[object] = [reply]
        if self._waiting is None:
            self._waiting = deque()
        self._waiting.append(slot)
        if isinstance(reply, Deferred):
            slot[0] = None
            reply.addBoth(self._ready, slot)

    def send_stored(self, pending: PendingPublish, ok: bytes,
                    refused: Callable[[HubError], bytes]) -> None:
        """Queue the reply to a publish being committed: ``ok`` once it is
        stored, ``refused(error)`` if it is not; no Deferred, no callback."""
        pending.ok = ok
        pending.refused = refused
        pending.waiter = self._flush_waiting
        if self._waiting is None:
            self._waiting = deque()
        self._waiting.append(pending)
        if pending.settled:
            self._flush()

    def send_later(self, result: Deferred[Any], make: Callable[[Any], bytes]) -> None:
        """Queue the reply ``make`` turns ``result`` into once it fires (its
        value or its Failure): ``send(result.addBoth(make))`` with one
        callback on ``result`` instead of two (a PUB through a shared
        backplane; fewer objects per publish waiting, less for the GC)."""
        slot: list[object] = [None]
        if self._waiting is None:
            self._waiting = deque()
        self._waiting.append(slot)
        result.addBoth(self._made, slot, make)

    def _make(self, result: Any, slot: list[object], make: Callable[[Any], bytes]) -> None:
        try:
            slot[0] = make(result)
        except Exception:
            self._log.failure("a reply could not be made")
            slot[0] = self.INTERNAL_ERROR
        self._flush()

    def _ready(self, result: object, slot: list[object]) -> None:
        if isinstance(result, Failure):
            # The door turns refusals into -ERR bytes before queueing; this is a bug.
            self._log.failure("a deferred reply failed", result)
            result = self.INTERNAL_ERROR
        slot[0] = result
        self._flush()

    def _flush(self) -> None:
        waiting = self._waiting
        assert waiting is not None
        while waiting:
            first = waiting[0]
            if type(first) is list:
                data = first[0]
                if data is None:
                    return
            elif first.settled:  # type: ignore[union-attr]
                error = first.error  # type: ignore[union-attr]
                data = first.ok if error is None else first.refused(error)  # type: ignore
            else:
                return
            waiting.popleft()
            if data:
                self._write(data)  # type: ignore[arg-type]
