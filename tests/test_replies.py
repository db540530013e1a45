"""Replies leave in command order even when one completes later."""
from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.doors.replies import ReplyQueue


class ReplyQueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.written: list[bytes] = []
        self.queue = ReplyQueue(self.written.append)

    def test_ready_replies_go_at_once(self) -> None:
        self.queue.send(b"+OK 1\r\n")
        self.queue.send(b"")
        self.queue.send(b"+OK 2\r\n")
        self.assertEqual(self.written, [b"+OK 1\r\n", b"+OK 2\r\n"])

    def test_late_reply_holds_back_later_ones(self) -> None:
        """A reply still being worked out keeps the ones after it waiting."""
        first: Deferred[bytes] = Deferred()
        second: Deferred[bytes] = Deferred()
        self.queue.send(first)
        self.queue.send(b"PONG\r\n")
        self.queue.send(second)
        self.queue.send(b"")
        self.queue.send(b"+OK 9\r\n")
        self.assertEqual(self.written, [])
        second.callback(b"+OK 2\r\n")
        self.assertEqual(self.written, [])
        first.callback(b"+OK 1\r\n")
        self.assertEqual(self.written, [b"+OK 1\r\n", b"PONG\r\n", b"+OK 2\r\n", b"+OK 9\r\n"])
        self.queue.send(b"+OK 10\r\n")
        self.assertEqual(self.written[-1], b"+OK 10\r\n")

    def test_failed_reply_becomes_internal_error(self) -> None:
        d: Deferred[bytes] = Deferred()
        self.queue.send(d)
        self.queue.send(b"PONG\r\n")
        d.errback(KeyError("bug"))
        self.assertEqual(self.written, [ReplyQueue.INTERNAL_ERROR, b"PONG\r\n"])
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_send_later_keeps_order(self) -> None:
        """A reply made from a Deferred's result (a PUB numbered by a shared
        backplane) keeps its place; a refusal is made into its -ERR line, and
        a failure to make the reply into internal-error."""
        made = []

        def make(result: object) -> bytes:
            made.append(result)
            if result == "bug":
                raise KeyError("bug")
            return result if isinstance(result, bytes) else b"-ERR refused\r\n"

        first: Deferred[object] = Deferred()
        second: Deferred[object] = Deferred()
        third: Deferred[object] = Deferred()
        self.queue.send_later(first, make)
        self.queue.send(b"PONG\r\n")
        self.queue.send_later(second, make)
        self.queue.send_later(third, make)
        second.errback(ValueError("refused"))
        third.callback("bug")
        self.assertEqual(self.written, [])
        first.callback(b"+OK 1\r\n")
        self.assertEqual(self.written, [b"+OK 1\r\n", b"PONG\r\n", b"-ERR refused\r\n",
                                        ReplyQueue.INTERNAL_ERROR])
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        # Each Deferred's result was handled: nothing left unhandled in them.
        self.assertEqual([first.result, second.result, third.result], [None, None, None])
