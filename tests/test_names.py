"""Names, channels, patterns and numbers are checked as PROTOCOL.md says."""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txpubsub.wire.errors import HubError
from txpubsub.wire.names import (
    INBOX,
    PLAIN,
    SYSTEM,
    channel_kind,
    check_name,
    parse_number,
    pattern_kind,
    pattern_matches,
)


class NamesTests(SynchronousTestCase):
    def assertCode(self, code: str, f, *args) -> None:
        e = self.assertRaises(HubError, f, *args)
        self.assertEqual(e.code, code)

    def test_client_names(self) -> None:
        """Names are 1-32 of A-Z a-z 0-9 _ -, start with a letter, and are not ids."""
        for ok in ("alice", "A", "bob_2", "x-y", "a" * 32, "c", "cat", "c1a"):
            self.assertEqual(check_name(ok), ok)
        for bad in ("", "1abc", "_a", "a" * 33, "c17", "c0", "al ice", "al.ice", "é", "a@b"):
            self.assertCode("bad-args", check_name, bad)

    def test_channels(self) -> None:
        """Tokens of A-Z a-z 0-9 _ - : /, joined by dots; up to 128 characters."""
        for ok in ("news", "news.uk", "a:b/c-d_e.F9", "x" * 128):
            self.assertEqual(channel_kind(ok), PLAIN)
        self.assertEqual(channel_kind("$sys.time"), SYSTEM)
        self.assertEqual(channel_kind("@alice"), INBOX)
        self.assertEqual(channel_kind("@c12"), INBOX)
        for bad in ("", "x" * 129, "news.", ".news", "a..b", "news.*", "news.>", ">",
                    "$sys", "$sys.", "$other.x", "@", "@1x", "@alice.x", "new s", "ñ",
                    "a\tb"):
            self.assertCode("bad-channel", channel_kind, bad)

    def test_patterns(self) -> None:
        """`*` stands for one token anywhere, `>` only as the last token."""
        for ok in ("news.*", "news.>", ">", "*", "*.uk", "a.*.c.>", "news.uk"):
            self.assertEqual(pattern_kind(ok), PLAIN)
        for ok in ("$sys.>", "$sys.*", "$sys.time"):
            self.assertEqual(pattern_kind(ok), SYSTEM)
        for bad in ("news.>.uk", ">.x", "news*", "news.**", "news.>>", "$sys", "$sys.>.x",
                    "@alice.>", "@*", "a.", "x" * 126 + ".>.y"):
            self.assertCode("bad-channel", pattern_kind, bad)

    def test_pattern_matching_examples(self) -> None:
        """The examples of PROTOCOL.md, and the leading-wildcard rule."""
        self.assertTrue(pattern_matches("news.*", "news.uk"))
        self.assertFalse(pattern_matches("news.*", "news"))
        self.assertFalse(pattern_matches("news.*", "news.uk.sport"))
        self.assertTrue(pattern_matches("news.>", "news.uk"))
        self.assertTrue(pattern_matches("news.>", "news.uk.sport"))
        self.assertFalse(pattern_matches("news.>", "news"))
        self.assertFalse(pattern_matches(">", "$sys.time"))
        self.assertFalse(pattern_matches("*", "@alice"))
        self.assertFalse(pattern_matches("*.time", "$sys.time"))
        self.assertTrue(pattern_matches("$sys.>", "$sys.time"))

    def test_numbers(self) -> None:
        """ASCII digits only: no sign, no underscore, no other scripts' digits."""
        self.assertEqual(parse_number("0", "n"), 0)
        self.assertEqual(parse_number("0042", "n"), 42)
        # More digits than int() reads (4300): leading zeros are no trouble,
        # a number that long is out of range, not a ValueError.
        self.assertEqual(parse_number("0" * 5000 + "42", "n"), 42)
        self.assertEqual(parse_number("9" * 640, "n"), 10**640 - 1)
        self.assertCode("bad-args", parse_number, "9" * 5000, "n")
        for bad in ("", "-1", "+1", "1_000", "1.5", "١٢", "²", " 1", "0x10"):
            self.assertCode("bad-args", parse_number, bad, "n")
