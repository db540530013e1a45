"""The sans-I/O RESP parser: the same commands whether bytes come all at
once, byte by byte or in any chunks; bounds checked before anything is
waited for; inline commands split as Redis's sdssplitargs splits them."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.wire.resp import Event, RespError, RespParser, split_inline

args_st = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


def encode(args: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def inline_safe(args: list[bytes]) -> bool:
    """Arguments that an inline command can carry as they are: no separators
    or quotes, and a first argument not starting with ``*`` (a line that
    does is a multibulk header, in Redis as here)."""
    return (not args or not args[0].startswith(b"*")) and all(
        a and not any(c in a for c in b" \t\r\n\v\f\"'\0") for a in args)


def feed_chunks(data: bytes, cuts: list[int], **limits: int) -> list[Event]:
    parser = RespParser(**limits)
    events: list[Event] = []
    last = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        events += parser.feed(data[last:cut])
        last = cut
    events += parser.feed(data[last:])
    return events


class ParserTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(args_st, max_size=8), st.lists(st.integers(min_value=0), max_size=20))
    def test_any_chunking(self, commands: list[list[bytes]], cuts: list[int]) -> None:
        """Whole, byte by byte, and in random chunks: the same commands."""
        data = b"".join(map(encode, commands))
        self.assertEqual(RespParser().feed(data), commands)
        self.assertEqual(feed_chunks(data, cuts), commands)
        parser = RespParser()
        events: list[Event] = []
        for i in range(len(data)):
            events += parser.feed(data[i:i + 1])
        self.assertEqual(events, commands)
        self.assertEqual(parser.buffered(), 0)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(args_st.filter(inline_safe), max_size=5),
           st.lists(st.integers(min_value=0), max_size=10), st.booleans())
    def test_inline_mixed_with_multibulk(self, commands: list[list[bytes]], cuts: list[int],
                                         crlf: bool) -> None:
        eol = b"\r\n" if crlf else b"\n"
        data = b"".join(b" ".join(c) + eol if i % 2 else encode(c)
                        for i, c in enumerate(commands))
        self.assertEqual(feed_chunks(data, cuts), commands)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=200), st.lists(st.integers(min_value=0), max_size=10))
    def test_garbage_never_raises_and_chunking_agrees(self, data: bytes, cuts: list[int]) -> None:
        """Whatever arrives: events or one error, the same however it is cut."""
        whole = RespParser(max_bulk=50, max_args=5, max_inline=60).feed(data)
        chunked = feed_chunks(data, cuts, max_bulk=50, max_args=5, max_inline=60)
        if not any(isinstance(e, RespError) for e in whole):
            # Without an error the chunked parse may still wait for more.
            self.assertEqual(chunked, whole)
        errors = [e for e in whole if isinstance(e, RespError)]
        self.assertLessEqual(len(errors), 1)
        if errors:
            self.assertIsInstance(whole[-1], RespError)

    @given(st.integers(min_value=101, max_value=10**12))
    def test_bulk_bound_from_the_header(self, size: int) -> None:
        """A bulk over max_bulk is refused before its bytes are waited for."""
        parser = RespParser(max_bulk=100)
        self.assertEqual(parser.feed(b"*2\r\n$4\r\nECHO\r\n$%d\r\n" % size),
                         [RespError("Protocol error: invalid bulk length")])
        self.assertEqual(parser.feed(b"*1\r\n$4\r\nPING\r\n"), [])  # nothing after an error

    def test_argument_count_bound(self) -> None:
        self.assertEqual(RespParser(max_args=3).feed(b"*4\r\n"),
                         [RespError("Protocol error: invalid multibulk length")])
        self.assertEqual(RespParser(max_args=3).feed(b"*3\r\n"), [])
        self.assertEqual(RespParser().feed(b"*99999999999999999999\r\n"),
                         [RespError("Protocol error: invalid multibulk length")])
        parser = RespParser(max_args=3)
        parser.unauthenticated = True
        self.assertEqual(parser.feed(b"*4\r\n"),
                         [RespError("Protocol error: unauthenticated multibulk length")])

    def test_header_and_inline_bounds(self) -> None:
        self.assertEqual(RespParser(max_inline=10).feed(b"PING " + b"x" * 10),
                         [RespError("Protocol error: too big inline request")])
        self.assertEqual(RespParser(max_inline=10).feed(b"*" + b"1" * 11),
                         [RespError("Protocol error: too big mbulk count string")])
        self.assertEqual(RespParser(max_inline=10).feed(b"*1\r\n$" + b"1" * 11),
                         [RespError("Protocol error: too big bulk count string")])
        self.assertEqual(RespParser(max_inline=10).feed(b"PING " + b"x" * 3), [])

    def test_numbers_as_redis_reads_them(self) -> None:
        """string2ll: no sign, spaces or leading zeros; zero or less is an empty command."""
        for bad in (b"+1", b"01", b" 1", b"1 ", b"", b"-0", b"x"):
            self.assertEqual(RespParser().feed(b"*%s\r\n" % bad),
                             [RespError("Protocol error: invalid multibulk length")], bad)
        self.assertEqual(RespParser().feed(b"*0\r\n*-1\r\n*1\r\n$0\r\n\r\n"), [[b""]])
        self.assertEqual(RespParser().feed(b"*1\r\n$-1\r\n"),
                         [RespError("Protocol error: invalid bulk length")])

    def test_empty_inline_lines_are_skipped(self) -> None:
        self.assertEqual(RespParser().feed(b"\r\n\n  \r\nPING\r\n"), [[b"PING"]])


class SplitInlineTests(SynchronousTestCase):
    def test_quotes_and_escapes(self) -> None:
        """sdssplitargs: double quotes take \\n \\r \\t \\b \\a \\xHH escapes,
        single quotes only \\'."""
        self.assertEqual(split_inline(b'set "a b" \'c d\''), [b"set", b"a b", b"c d"])
        self.assertEqual(split_inline(b'"\\x41\\n\\q"'), [b"A\nq"])
        self.assertEqual(split_inline(b"'it\\'s' '\\n'"), [b"it's", b"\\n"])
        self.assertEqual(split_inline(b'a"b c"d'), None)  # closing quote must end the arg
        self.assertEqual(split_inline(b'a"b c" d'), [b"ab c", b"d"])
        self.assertEqual(split_inline(b'"abc'), None)
        self.assertEqual(split_inline(b"'abc"), None)
        self.assertEqual(split_inline(b'""'), [b""])
        self.assertEqual(split_inline(b"a\0b c"), [b"a"])  # C strings end at NUL
        self.assertEqual(split_inline(b" \t a \x0b b \x0c"), [b"a", b"b"])

    @given(st.lists(st.binary(min_size=0, max_size=20), max_size=6))
    def test_quoted_round_trip(self, args: list[bytes]) -> None:
        """Any bytes survive double quoting with \\xHH escapes."""
        line = b" ".join(b'"%s"' % b"".join(b"\\x%02x" % c for c in a) for a in args)
        self.assertEqual(split_inline(line), args)
