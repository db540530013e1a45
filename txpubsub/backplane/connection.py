"""The two Redis connections' protocols: txredisapi's, with a faster reply reader
and command writer, keeping bytes as bytes (ECOSYSTEM.md section 1).

txredisapi imports the reactor: this module is imported only with --redis.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable

import txredisapi
from twisted.internet import protocol, tcp, unix
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from txpubsub.backplane.address import REPLY_TIMEOUT, RedisAddress

_INCOMPLETE = object()


def _parse(buf: bytes, pos: int) -> tuple[Any, int]:
    """One RESP2 reply at ``pos``: (value, next position), or (_INCOMPLETE, pos).

    Values as txredisapi gives them with charset=None, convertNumbers=False:
    bulk strings as bytes, status replies as str, errors as ResponseError.
    """
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return _INCOMPLETE, pos
    kind = buf[pos]
    after = end + 2
    if kind == 36:  # $ bulk string
        size = int(buf[pos + 1:end])
        if size < 0:
            return None, after
        if len(buf) < after + size + 2:
            return _INCOMPLETE, pos
        return buf[after:after + size], after + size + 2
    if kind == 42:  # * array
        count = int(buf[pos + 1:end])
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = _parse(buf, after)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            items.append(item)
        return items, after
    if kind == 58:  # : integer
        return int(buf[pos + 1:end]), after
    text = buf[pos + 1:end].decode(errors="replace")
    if kind == 45:  # - error
        return txredisapi.ResponseError(text[4:] if text[:4] == "ERR " else text), after
    return text, after  # + status


def arguments(*args: Any) -> bytes:
    """A command's arguments in RESP (bulk strings), without its header."""
    parts: list[bytes] = []
    append = parts.append
    for arg in args:
        kind = type(arg)
        if kind is str:
            arg = arg.encode()
        elif kind is int:
            arg = b"%d" % arg
        elif kind is not bytes:
            arg = format(arg, "f").encode() if isinstance(arg, float) else bytes(arg)
        append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def _command(*args: Any, **options: Any) -> bytes:
    """A command in RESP, in one join (txredisapi's builder makes two calls per
    argument: a third of a publish's CPU)."""
    return b"*%d\r\n%s" % (len(args), arguments(*args))


class _FastReplies:
    """Reads replies in one pass per read, and writes commands in one join.

    txredisapi's own reader gives every bulk string a reactor turn of its own
    (pausing and resuming the socket) and copies its buffer at every line:
    measured, about 2,300 messages/s through pub/sub. This hands the same
    values to its ``replyReceived``.
    """

    _unread = b""
    _build_command = staticmethod(_command)

    def dataReceived(self, data: bytes) -> None:
        buf = self._unread + data if self._unread else data
        pos = 0
        size = len(buf)
        while pos < size:
            reply, end = _parse(buf, pos)
            if reply is _INCOMPLETE:
                break
            pos = end
            self.replyReceived(reply)  # type: ignore[attr-defined]
        self._unread = buf[pos:]


class Commands(_FastReplies, txredisapi.RedisProtocol):
    """The command connection: a command is one Deferred, fired by its reply
    (txredisapi's takes three Deferreds and a timer each), and the commands
    of one reactor turn go out in one write (Redis answers in command order).
    A reply that does not come is the backplane's watchdog's business
    (``replies`` counts those that did).

    A command sent with an ``answer`` function has its reply (or the
    ConnectionError of a lost connection) turned into its Deferred's result
    by ``answer(reply, arg)``, which may raise: the publishes' replies are
    handled so, with no callback chain of their own."""

    replies = 0

    def dataReceived(self, data: bytes) -> None:
        # One clock read per read, for every publish answered in it.
        self.factory.backplane.replies_arrived()
        buf = self._unread + data if self._unread else data
        pos = 0
        size = len(buf)
        while pos < size:
            if buf.startswith(b"*2\r\n:", pos):
                # [integer, bulk string]: a publish's [id, epoch], nearly
                # everything this connection reads, read without _parse.
                end = buf.find(b"\r\n", pos + 5)
                if end < 0:
                    break
                if buf[end + 2:end + 3] == b"$":
                    header = buf.find(b"\r\n", end + 3)
                    if header < 0:
                        break
                    length = int(buf[end + 3:header])
                    at = header + 2
                    if length >= 0:
                        if size < at + length + 2:
                            break
                        reply: Any = [int(buf[pos + 5:end]), buf[at:at + length]]
                        pos = at + length + 2
                        self.replyReceived(reply)
                        continue
            reply, end = _parse(buf, pos)
            if reply is _INCOMPLETE:
                break
            pos = end
            self.replyReceived(reply)
        self._unread = buf[pos:]

    def connectionMade(self) -> Any:
        # Each command waiting: its Deferred, answer and arg, flat (no tuple
        # per publish waiting: less for the GC to go through).
        self._pending: deque[Any] = deque()
        self._unsent: list[bytes] = []
        self._write_call: Any = None
        return super().connectionMade()

    def execute_command(self, *args: Any, **options: Any) -> Deferred[Any]:
        return self.send(_command(*args))

    def send(self, command: bytes, answer: Callable[[Any, Any], Any] | None = None,
             arg: Any = None) -> Deferred[Any]:
        """A command already in RESP: its reply (or what ``answer`` makes of it)."""
        if not self.connected:
            raise txredisapi.ConnectionError("Not connected")
        unsent = self._unsent
        if not unsent:
            self._write_call = self.factory.clock.callLater(0, self.write_now)
        unsent.append(command)
        d: Deferred[Any] = Deferred()
        pending = self._pending
        pending.append(d)
        pending.append(answer)
        pending.append(arg)
        return d

    def write_now(self) -> None:
        """Write the commands sent this turn (at the turn's end)."""
        call, self._write_call = self._write_call, None
        if call is not None and call.active():
            call.cancel()
        unsent = self._unsent
        if unsent and self.connected:
            self.transport.write(b"".join(unsent) if len(unsent) > 1 else unsent[0])
        del unsent[:]

    def replyReceived(self, reply: Any) -> None:
        self.replies += 1
        pending = self._pending
        if pending:
            d = pending.popleft()
            answer = pending.popleft()
            arg = pending.popleft()
            if answer is not None:
                try:
                    reply = answer(reply, arg)
                except Exception:
                    d.errback()
                    return
                d.callback(reply)
            elif isinstance(reply, Exception):
                d.errback(reply)
            else:
                d.callback(reply)

    @property
    def waiting(self) -> int:
        """Commands sent and not answered yet."""
        return len(self._pending) // 3

    def connectionLost(self, why: Any) -> None:
        super().connectionLost(why)
        del self._unsent[:]
        if self._write_call is not None and self._write_call.active():
            self._write_call.cancel()
        self._write_call = None
        pending, self._pending = self._pending, deque()
        while pending:
            d = pending.popleft()
            answer = pending.popleft()
            arg = pending.popleft()
            error = txredisapi.ConnectionError("Lost connection")
            if answer is None:
                d.errback(error)
                continue
            try:
                d.callback(answer(error, arg))
            except Exception:
                d.errback()


_MESSAGE = b"*3\r\n$7\r\nmessage\r\n$"


# Bytes the pub/sub connection reads in one reactor turn, at most.
LISTENER_TURN = 1 << 18


class Listener(_FastReplies, txredisapi.SubscriberProtocol):
    """The pub/sub connection: every message goes to the backplane.

    Redis sends messages as it runs the scripts, a few dozen at a time
    (it reads 16 KiB of commands per loop). What came while a read was
    being delivered is read in the same reactor turn (on a plain TCP or
    Unix socket, up to LISTENER_TURN bytes): the subscribers' connections
    are written once per turn, so more messages per turn is fewer writes
    per message. Nothing waits for it: what is not there yet is not
    waited for."""

    _socket: Any = None

    def connectionMade(self) -> Any:
        if type(self.transport) in (tcp.Client, unix.Client):
            self._socket = self.transport.socket
        return super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        self._read(data)
        sock = self._socket
        if sock is None:
            return
        total = len(data)
        while total < LISTENER_TURN and self.connected and not self.transport.disconnecting:
            try:
                more = sock.recv(min(65536, LISTENER_TURN - total))
            except OSError:
                return  # nothing more now (EAGAIN), or an error Twisted's next read finds
            if not more:
                return  # the end: Twisted's next read finds it too
            total += len(more)
            self._read(more)

    def _read(self, data: bytes) -> None:
        # A channel's message, nearly everything this connection reads, is
        # cut out where it lies and handed on; anything else is parsed.
        buf = self._unread + data if self._unread else data
        received = self.factory.backplane.received
        pos = 0
        size = len(buf)
        while pos < size:
            if buf.startswith(_MESSAGE, pos):
                header = pos + len(_MESSAGE)
                end = buf.find(b"\r\n", header)
                if end < 0:
                    break
                channel_at = end + 2
                channel_end = channel_at + int(buf[header:end])
                end = buf.find(b"\r\n", channel_end + 3)
                if end < 0:
                    break
                data_at = end + 2
                data_end = data_at + int(buf[channel_end + 3:end])
                if size < data_end + 2:
                    break
                pos = data_end + 2
                received(buf[channel_at:channel_end], buf[data_at:data_end])
                continue
            reply, end = _parse(buf, pos)
            if reply is _INCOMPLETE:
                break
            pos = end
            self.replyReceived(reply)
        self._unread = buf[pos:]

    def messageReceived(self, pattern: bytes | None, channel: bytes, message: bytes) -> None:
        self.factory.backplane.received(channel, message)


class Factory(protocol.Factory):
    """txredisapi protocols that keep bytes as bytes (ECOSYSTEM.md section 1)."""

    isLazy = False
    noisy = False
    _log = Logger()

    def __init__(self, protocol: type, address: RedisAddress, backplane: Any,
                 clock: IReactorTime | None = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.protocol_class = protocol
        self.address = address
        self.backplane = backplane

    def buildProtocol(self, addr: Any) -> Any:
        p = self.protocol_class(None, replyTimeout=REPLY_TIMEOUT, password=self.address.password,
                          dbid=self.address.db or None, convertNumbers=False,
                          username=self.address.username)
        p.factory = self
        return p

    # What txredisapi's protocol calls when AUTH or SELECT fail.
    def stopTrying(self) -> None:
        pass

    def connectionError(self, why: str) -> None:
        self._log.error("redis: {why}", why=why)
