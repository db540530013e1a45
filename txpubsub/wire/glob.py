"""Redis's glob patterns (PSUBSCRIBE, PUBSUB CHANNELS), as its util.c
``stringmatchlen`` reads them, compiled to a regular expression.

``*`` is any run of bytes (dots included), ``?`` one byte, ``[...]`` a set
(``^`` negates, ``a-z`` ranges in either order, ``\\`` escapes), ``\\x`` a
literal x. Redis's own corners are kept: an unclosed ``[`` takes the rest of
the pattern as its set, ``[a-]`` is the range from ``a`` to ``]`` (so the
set goes on), a trailing ``\\`` is a literal backslash. Matching is on
bytes, case-sensitive. tests/test_resp_glob.py checks the translation
against a line-by-line port of the C function.
"""
from __future__ import annotations

import re
from typing import Callable


def _byte(b: int) -> bytes:
    return b"\\x%02x" % b


def _tokens(pattern: bytes) -> list[bytes | None]:
    """The glob as one-byte matchers (regular expressions) and ``None`` for
    each run of ``*``."""
    out: list[bytes | None] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == 42:  # *
            while i + 1 < n and pattern[i + 1] == 42:
                i += 1
            out.append(None)
        elif c == 63:  # ?
            out.append(b".")
        elif c == 91:  # [
            i += 1
            negate = i < n and pattern[i] == 94  # ^
            if negate:
                i += 1
            items: list[bytes] = []
            while True:
                if i < n and pattern[i] == 92 and n - i >= 2:  # \x
                    i += 1
                    items.append(_byte(pattern[i]))
                elif i < n and pattern[i] == 93:  # ]
                    break
                elif i >= n:
                    i -= 1  # as the C code: the set ends with the pattern
                    break
                elif n - i >= 3 and pattern[i + 1] == 45:  # a-z
                    lo, hi = sorted((pattern[i], pattern[i + 2]))
                    items.append(_byte(lo) + b"-" + _byte(hi))
                    i += 2
                else:
                    items.append(_byte(pattern[i]))
                i += 1
            if items:
                out.append(b"[%s%s]" % (b"^" if negate else b"", b"".join(items)))
            else:
                out.append(b"." if negate else b"(?!)")
        else:
            if c == 92 and n - i >= 2:  # \x
                i += 1
            out.append(_byte(pattern[i]))
        i += 1
    return out


def glob_regex(pattern: bytes) -> bytes:
    """The regular expression (for ``re.DOTALL`` fullmatch) of a Redis glob."""
    return b"".join(b".*" if t is None else t for t in _tokens(pattern))


def compile_glob(pattern: bytes) -> Callable[[bytes], object]:
    """A function telling (truthy or None) whether a channel name matches the glob.

    Names are never empty (Redis's function differs from a regular
    expression only there: its ``*`` does not match an empty name).
    With two or more ``*``, a regular expression could backtrack for
    polynomial time (``*a*a*a*b``); the glob is then matched as fixed-width
    pieces between the stars, each found leftmost, in O(len(name) x
    len(glob)), as Redis's own matcher bounds it.
    """
    if not any(c in pattern for c in b"?[\\"):
        return _literal_glob(pattern)
    tokens = _tokens(pattern)
    if tokens.count(None) < 2:
        return re.compile(glob_regex(pattern), re.DOTALL).fullmatch
    pieces: list[list[bytes]] = [[]]
    for t in tokens:
        if t is None:
            pieces.append([])
        else:
            pieces[-1].append(t)
    head, middle, tail = pieces[0], pieces[1:-1], pieces[-1]
    head_match = re.compile(b"".join(head), re.DOTALL).match if head else None
    tail_match = re.compile(b"".join(tail), re.DOTALL).fullmatch if tail else None
    searches = [(re.compile(b"".join(p), re.DOTALL).search, len(p)) for p in middle if p]
    shortest = len(head) + len(tail) + sum(width for _, width in searches)
    head_len, tail_len = len(head), len(tail)

    def match(name: bytes) -> object:
        if len(name) < shortest:
            return None
        if head_match is not None and head_match(name) is None:
            return None
        end = len(name) - tail_len
        if tail_match is not None and tail_match(name, end) is None:
            return None
        pos = head_len
        for search, _ in searches:
            found = search(name, pos, end)
            if found is None:
                return None
            pos = found.end()
        return True

    return match


def _literal_glob(pattern: bytes) -> Callable[[bytes], object]:
    """A glob of literal bytes and ``*`` only (``news.*``, the common case):
    bytes methods, no regular expression. PyPy in particular runs a thousand
    distinct regular expressions per publish ten times slower than CPython."""
    pieces = pattern.split(b"*")
    if len(pieces) == 1:
        return lambda name: name == pattern or None
    head, middle, tail = pieces[0], [p for p in pieces[1:-1] if p], pieces[-1]
    shortest = len(head) + len(tail) + sum(map(len, middle))
    if not middle:
        def ends(name: bytes) -> object:
            return ((len(name) >= shortest and name.startswith(head) and name.endswith(tail))
                    or None)
        return ends

    def match(name: bytes) -> object:
        if len(name) < shortest or not name.startswith(head) or not name.endswith(tail):
            return None
        pos = len(head)
        end = len(name) - len(tail)
        for piece in middle:
            found = name.find(piece, pos, end)
            if found < 0:
                return None
            pos = found + len(piece)
        return True

    return match
