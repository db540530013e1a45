"""RESP, Redis's protocol: a sans-I/O request parser and the reply encodings.

``RespParser.feed(bytes)`` returns the commands that are whole (each a list
of byte strings) and, at a protocol error, a ``RespError`` after which it
parses nothing more (Redis answers it and closes). Both forms Redis reads
are here: multibulk (``*2\\r\\n$4\\r\\nPING\\r\\n...``, what client libraries
send) and inline (``PING hello``, typed in telnet; split as Redis's
``sdssplitargs`` does, quotes and escapes included).

Bounds are checked from the headers, before anything is waited for or
allocated: a bulk longer than ``max_bulk`` (Redis's proto-max-bulk-len), a
multibulk of more than ``max_args`` arguments, an inline line or a header
longer than ``max_inline`` are protocol errors, worded as Redis words them.
"""
from __future__ import annotations

import re
from typing import Union

# Redis's PROTO_INLINE_MAX_SIZE: the longest inline command or header line.
INLINE_MAX = 64 * 1024
_INT = re.compile(rb"-?[1-9][0-9]{0,18}|0")


class RespError:
    """A protocol error: the reply's text (``Protocol error: ...``); the
    connection is closed after it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"RespError({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RespError) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


Event = Union[list[bytes], RespError]


def _number(text: bytes) -> int | None:
    """A RESP header's number as Redis's string2ll reads it (no sign, spaces or
    leading zeros), or None."""
    if _INT.fullmatch(text) is None:
        return None
    return int(text)


class RespParser:
    """Commands from a client's bytes, incrementally and in linear time.

    ``max_bulk`` and ``max_args`` may be changed between feeds (the door
    lowers them until a client has authenticated, as Redis does).
    """

    __slots__ = ("_args", "_args_len", "_buf", "_bulk", "_left", "failed", "max_args",
                 "max_bulk", "max_inline", "unauthenticated")

    def __init__(self, max_bulk: int = 512 * 1024 * 1024, max_args: int = 1024 * 1024,
                 max_inline: int = INLINE_MAX) -> None:
        self.max_bulk = max_bulk
        self.max_args = max_args
        self.max_inline = max_inline
        self._buf = b""
        self._args: list[bytes] | None = None  # the multibulk being read
        self._left = 0  # its arguments still to come
        self._bulk = -1  # the length of the bulk being waited for, or -1
        self._args_len = 0  # bytes in _args
        self.failed = False
        # Limits lowered until the client has authenticated: their errors say so.
        self.unauthenticated = False

    def buffered(self) -> int:
        """Bytes received and not yet part of a whole command."""
        return len(self._buf) + self._args_len

    def feed(self, data: bytes) -> list[Event]:
        """The commands completed by ``data`` (and what came before), in order."""
        if self.failed:
            return []
        buf = self._buf + data if self._buf else data
        pos = 0
        end = len(buf)
        events: list[Event] = []
        while pos < end:
            args = self._args
            if args is None:
                if buf[pos] == 42:  # b"*": a multibulk header
                    cr = buf.find(b"\r", pos, pos + self.max_inline + 1)
                    if cr < 0:
                        if end - pos > self.max_inline:
                            return self._fail(events, "too big mbulk count string")
                        break
                    if cr + 1 >= end:
                        break  # the LF after the CR is not here yet
                    count = _number(buf[pos + 1:cr])
                    if count is None or count > self.max_args:
                        return self._fail(events, self._word("multibulk", count))
                    pos = cr + 2
                    if count <= 0:
                        continue  # an empty command, as Redis skips it
                    self._args = []
                    self._args_len = 0
                    self._left = count
                    self._bulk = -1
                    continue
                nl = buf.find(b"\n", pos, pos + self.max_inline + 1)
                if nl < 0:
                    if end - pos > self.max_inline:
                        return self._fail(events, "too big inline request")
                    break
                line = buf[pos:nl]
                pos = nl + 1
                if line.endswith(b"\r"):
                    line = line[:-1]
                words = split_inline(line)
                if words is None:
                    return self._fail(events, "unbalanced quotes in request")
                if words:
                    events.append(words)
                continue
            bulk = self._bulk
            if bulk < 0:
                if buf[pos] != 36:  # b"$"
                    return self._fail(events, f"expected '$', got '{chr(buf[pos])}'")
                cr = buf.find(b"\r", pos, pos + self.max_inline + 1)
                if cr < 0:
                    if end - pos > self.max_inline:
                        return self._fail(events, "too big bulk count string")
                    break
                if cr + 1 >= end:
                    break
                size = _number(buf[pos + 1:cr])
                if size is None or size < 0 or size > self.max_bulk:
                    return self._fail(events, self._word("bulk", size))
                pos = cr + 2
                self._bulk = bulk = size
            if end - pos < bulk + 2:
                break  # not whole yet; nothing is allocated for it meanwhile
            args.append(buf[pos:pos + bulk])
            self._args_len += bulk
            pos += bulk + 2  # Redis skips the CRLF after a bulk without looking at it
            self._bulk = -1
            self._left -= 1
            if not self._left:
                events.append(args)
                self._args = None
                self._args_len = 0
        self._buf = buf[pos:] if pos < end else b""
        return events

    def _word(self, what: str, n: int | None) -> str:
        if self.unauthenticated and n is not None and n >= 0:
            return f"unauthenticated {what} length"
        return f"invalid {what} length"

    def _fail(self, events: list[Event], text: str) -> list[Event]:
        self.failed = True
        self._buf = b""
        self._args = None
        events.append(RespError("Protocol error: " + text))
        return events


_SPACE = b" \n\r\t\v\f"
_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b",
            ord("a"): b"\a"}
_HEX = b"0123456789abcdefABCDEF"


def split_inline(line: bytes) -> list[bytes] | None:
    """An inline command's arguments, as Redis's ``sdssplitargs`` splits them;
    None for unbalanced quotes (or a closing quote not followed by a space).

    Like that C function, it stops at a NUL byte.
    """
    nul = line.find(b"\0")
    if nul >= 0:
        line = line[:nul]
    if b'"' not in line and b"'" not in line:
        return line.split()  # the common case, and the same answer
    args: list[bytes] = []
    n = len(line)
    i = 0
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            return args
        current = bytearray()
        in_dq = in_sq = False
        while True:
            c = line[i] if i < n else 0
            if in_dq:
                if (c == 92 and i + 3 < n and line[i + 1] == 120
                        and line[i + 2] in _HEX and line[i + 3] in _HEX):
                    current.append(int(line[i + 2:i + 4], 16))
                    i += 3
                elif c == 92 and i + 1 < n:
                    i += 1
                    e = line[i]
                    current += _ESCAPES.get(e, bytes((e,)))
                elif c == 34:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        return None
                    i += 1
                    break
                elif i >= n:
                    return None
                else:
                    current.append(c)
            elif in_sq:
                if c == 92 and i + 1 < n and line[i + 1] == 39:
                    i += 1
                    current.append(39)
                elif c == 39:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        return None
                    i += 1
                    break
                elif i >= n:
                    return None
                else:
                    current.append(c)
            else:
                if i >= n or c in _SPACE:
                    break
                if c == 34:
                    in_dq = True
                elif c == 39:
                    in_sq = True
                else:
                    current.append(c)
            i += 1
        args.append(bytes(current))


# -- replies --------------------------------------------------------------

OK = b"+OK\r\n"


def simple(text: str) -> bytes:
    """A simple string: ``+text``."""
    return b"+%s\r\n" % text.encode()


def error(text: str) -> bytes:
    """An error reply; ``text`` starts with its code (``ERR ...``, ``NOAUTH ...``).

    CR and LF become spaces, as Redis sanitizes its error texts."""
    return b"-%s\r\n" % text.replace("\r", " ").replace("\n", " ").encode()


def integer(n: int) -> bytes:
    """``:n``."""
    return b":%d\r\n" % n


def bulk(data: bytes | str) -> bytes:
    """A bulk string."""
    if isinstance(data, str):
        data = data.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def null(proto: int) -> bytes:
    """Nothing: ``$-1`` in RESP2, ``_`` in RESP3."""
    return b"_\r\n" if proto == 3 else b"$-1\r\n"


def array(items: list[bytes], kind: bytes = b"*") -> bytes:
    """An aggregate of encoded items: ``*`` array, ``>`` push, ``%`` map (pairs)."""
    count = len(items) // 2 if kind == b"%" else len(items)
    return b"%s%d\r\n%s" % (kind, count, b"".join(items))


def push_header(proto: int, count: int) -> bytes:
    """The header of an out-of-band message: ``*`` in RESP2, ``>`` (push) in RESP3."""
    return b"%s%d\r\n" % (b">" if proto == 3 else b"*", count)
