"""The wildcard trie finds exactly what a naive matcher finds."""
from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.core.index import PatternIndex


def naive_match(pattern: str, channel: str) -> bool:
    """An independent reference: the pattern as a regular expression."""
    ptoks = pattern.split(".")
    if ptoks[0] in ("*", ">") and channel[0] in "$@":
        return False
    parts = []
    for tok in ptoks:
        parts.append({"*": r"[^.]+", ">": r".+"}.get(tok, re.escape(tok)))
    return re.fullmatch(r"\.".join(parts), channel) is not None


TOKENS = st.sampled_from(["a", "b", "c", "news"])
channels = st.builds(
    lambda first, rest: ".".join([first, *rest]),
    st.sampled_from(["a", "b", "news", "$sys", "@alice"]),
    st.lists(TOKENS, max_size=3),
).filter(lambda c: not (c.startswith("$sys") and "." not in c) and not
         (c.startswith("@") and "." in c))
patterns = st.builds(
    lambda toks, tail: ".".join(toks + ([">"] if tail else [])),
    st.lists(st.sampled_from(["a", "b", "news", "*", "$sys"]), min_size=1, max_size=4),
    st.booleans(),
) | st.just(">")


class PatternIndexTests(SynchronousTestCase):
    def matched(self, index: PatternIndex, channel: str) -> set:
        found: set = set()
        for s in index.match(channel):
            found |= s
        return found

    def test_examples(self) -> None:
        """news.* is one token, news.> one or more, > alone skips $sys and inboxes."""
        index: PatternIndex[str] = PatternIndex()
        for who, pattern in [("star", "news.*"), ("rest", "news.>"), ("all", ">"),
                             ("sys", "$sys.>"), ("exact", "news.uk")]:
            index.add(pattern, who)
        self.assertEqual(self.matched(index, "news.uk"), {"star", "rest", "all", "exact"})
        self.assertEqual(self.matched(index, "news.uk.sport"), {"rest", "all"})
        self.assertEqual(self.matched(index, "news"), {"all"})
        self.assertEqual(self.matched(index, "$sys.time"), {"sys"})
        self.assertEqual(self.matched(index, "@alice"), set())

    def test_remove_prunes(self) -> None:
        """Removing every pattern leaves an empty index with no nodes behind."""
        index: PatternIndex[str] = PatternIndex()
        for pattern in ("a.b.c", "a.*.>", ">", "a.b.>"):
            index.add(pattern, "x")
            index.add(pattern, "x")
        self.assertEqual(len(index), 4)
        for pattern in ("a.b.c", "a.*.>", ">", "a.b.>", "never.added"):
            index.remove(pattern, "x")
        self.assertEqual(len(index), 0)
        self.assertTrue(index._root.is_empty())

    def test_deep_pattern_makes_no_empty_parts(self) -> None:
        """A deep pattern's nodes hold one child each and no dict or set until
        they need one (memory per subscription: docs/operations.md); a second
        child makes a dict, and removing it goes back to one."""
        index: PatternIndex[str] = PatternIndex()
        pattern = ".".join(["a", "*"] * 32)
        index.add(pattern, "x")
        node, nodes = index._root, 0
        while node.only is not None:
            self.assertEqual((node.children, node.exact, node.rest), (None, None, None))
            node, nodes = node.only, nodes + 1
        self.assertEqual((nodes, node.exact), (64, {"x"}))
        index.add("a.b", "y")
        first = index._root.only
        assert first is not None
        self.assertEqual(sorted(first.children or {}), ["*", "b"])
        self.assertEqual(self.matched(index, "a.b"), {"y"})
        index.remove("a.b", "y")
        self.assertEqual((first.children, first.only_token), (None, "*"))
        self.assertEqual(self.matched(index, ".".join(["a", "z"] * 32)), {"x"})

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(st.tuples(st.integers(0, 5), patterns), max_size=25),
        st.lists(st.tuples(st.integers(0, 5), patterns), max_size=10),
        st.lists(channels, min_size=1, max_size=10),
    )
    def test_same_as_naive(self, added, removed, probes) -> None:
        """After random adds and removes, match agrees with a brute-force scan."""
        index: PatternIndex[int] = PatternIndex()
        live = set()
        for who, pattern in added:
            index.add(pattern, who)
            live.add((who, pattern))
        for who, pattern in removed:
            index.remove(pattern, who)
            live.discard((who, pattern))
        self.assertEqual(len(index), len(live))
        for channel in probes:
            expected = {who for who, pattern in live if naive_match(pattern, channel)}
            self.assertEqual(self.matched(index, channel), expected, channel)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(st.booleans(), st.integers(0, 5), patterns, channels), max_size=40))
    def test_cached_readers_same_as_naive(self, steps) -> None:
        """Publishes interleaved with subscription changes: the cached readers of
        a channel are always exactly what a brute-force scan finds now."""
        index: PatternIndex[int] = PatternIndex()
        live = set()
        for add, who, pattern, channel in steps:
            if add:
                index.add(pattern, who)
                live.add((who, pattern))
            else:
                index.remove(pattern, who)
                live.discard((who, pattern))
            for probe in (channel, channel, "news.a"):  # the second is from the cache
                expected = {w for w, p in live if naive_match(p, probe)}
                self.assertEqual(index.readers(probe), expected, probe)


class PatternMatchesTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(patterns, channels)
    def test_single_pattern_same_as_naive(self, pattern, channel) -> None:
        """The one-pattern matcher used by LIST agrees with the brute force too."""
        from txpubsub.wire.names import pattern_matches

        self.assertEqual(pattern_matches(pattern, channel), naive_match(pattern, channel))

    @settings(max_examples=300, deadline=None)
    @given(patterns, channels)
    def test_pattern_regex_same_as_naive(self, pattern, channel) -> None:
        """The compiled form LIST filters names with agrees with the brute force."""
        from txpubsub.wire.names import pattern_regex

        found = pattern_regex(pattern).fullmatch(channel) is not None
        self.assertEqual(found, naive_match(pattern, channel))
