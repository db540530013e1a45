"""Redis's glob matching: txpubsub.wire.glob against a line-by-line port of
stringmatchlen (redis/src/util.c, case-sensitive), with hypothesis."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.wire.glob import compile_glob


def stringmatch(pattern: bytes, string: bytes) -> bool:
    """util.c's stringmatchlen(pattern, string, nocase=0), written as the C
    reads: past the end of the pattern is a NUL (sds strings end with one)."""

    def at(i: int) -> int:
        return pattern[i] if 0 <= i < len(pattern) else 0

    def impl(p: int, plen: int, s: int, slen: int) -> bool:
        while plen and slen:
            c = at(p)
            if c == ord("*"):
                while plen and at(p + 1) == ord("*"):
                    p += 1
                    plen -= 1
                if plen == 1:
                    return True
                while slen:
                    if impl(p + 1, plen - 1, s, slen):
                        return True
                    s += 1
                    slen -= 1
                return False
            elif c == ord("?"):
                s += 1
                slen -= 1
            elif c == ord("["):
                p += 1
                plen -= 1
                negate = at(p) == ord("^")
                if negate:
                    p += 1
                    plen -= 1
                match = False
                while True:
                    if at(p) == ord("\\") and plen >= 2:
                        p += 1
                        plen -= 1
                        if at(p) == string[s]:
                            match = True
                    elif at(p) == ord("]"):
                        break
                    elif plen == 0:
                        p -= 1
                        plen += 1
                        break
                    elif plen >= 3 and at(p + 1) == ord("-"):
                        start, end = at(p), at(p + 2)
                        if start > end:
                            start, end = end, start
                        p += 2
                        plen -= 2
                        if start <= string[s] <= end:
                            match = True
                    elif at(p) == string[s]:
                        match = True
                    p += 1
                    plen -= 1
                if negate:
                    match = not match
                if not match:
                    return False
                s += 1
                slen -= 1
            else:
                if c == ord("\\") and plen >= 2:
                    p += 1
                    plen -= 1
                if at(p) != string[s]:
                    return False
                s += 1
                slen -= 1
            p += 1
            plen -= 1
            if slen == 0:
                while at(p) == ord("*"):
                    p += 1
                    plen -= 1
                break
        return plen == 0 and slen == 0

    return impl(0, len(pattern), 0, len(string))


# Small alphabets, so that matches happen: the glob's specials and a few bytes.
glob_st = st.lists(st.sampled_from([b"*", b"?", b"[", b"]", b"^", b"-", b"\\", b"a", b"b",
                                    b"c", b".", b"z"]), max_size=12).map(b"".join)
name_st = st.lists(st.sampled_from([b"a", b"b", b"c", b".", b"-", b"]", b"\\", b"^", b"z",
                                    b"*", b"["]), min_size=1, max_size=12).map(b"".join)


class GlobTests(SynchronousTestCase):
    @settings(max_examples=1000, deadline=None)
    @given(glob_st, name_st)
    def test_as_redis(self, pattern: bytes, name: bytes) -> None:
        self.assertEqual(bool(compile_glob(pattern)(name)), stringmatch(pattern, name),
                         (pattern, name))

    @settings(max_examples=500, deadline=None)
    @given(glob_st, glob_st)
    def test_as_redis_on_its_own_patterns(self, pattern: bytes, name: bytes) -> None:
        if name:
            self.assertEqual(bool(compile_glob(pattern)(name)), stringmatch(pattern, name),
                             (pattern, name))

    def test_examples(self) -> None:
        """Redis's globs, not txpubsub's tokens: ``*`` crosses dots."""
        cases = [
            (b"news.*", b"news.uk.london", True),
            (b"news.*", b"news", False),
            (b"*", b"$sys.time", True),
            (b"h?llo", b"hello", True),
            (b"h[ae]llo", b"hillo", False),
            (b"h[^e]llo", b"hallo", True),
            (b"h[a-b]llo", b"hbllo", True),
            (b"h[b-a]llo", b"hbllo", True),  # a reversed range still works
            (b"h\\*llo", b"h*llo", True),
            (b"h\\*llo", b"hello", False),
            (b"a[", b"ab", False),  # an unclosed set takes the rest of the glob
            (b"a[bc", b"ac", True),
            (b"a[^", b"ax", True),
            (b"[a-]x", b"]", True),  # "a-]" is a range, and the set goes on
            (b"a\\", b"a\\", True),  # a trailing backslash is itself
            (b"*a*a*a*a*a*a*b", b"a" * 100, False),  # no exponential backtracking
        ]
        for pattern, name, expected in cases:
            self.assertEqual(bool(compile_glob(pattern)(name)), expected, (pattern, name))
            if len(name) < 20:  # the C function (without Redis 7's cut-off) is exponential
                self.assertEqual(stringmatch(pattern, name), expected, (pattern, name))
