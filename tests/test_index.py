"""The wildcard index finds exactly what a naive matcher finds."""
from __future__ import annotations

import random
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

    def test_remove_lets_go_of_everything(self) -> None:
        """Removing every pattern leaves an empty index: no shape, no group."""
        index: PatternIndex[str] = PatternIndex()
        for pattern in ("a.b.c", "a.*.>", ">", "a.b.>", "*.b", "$sys.>"):
            index.add(pattern, "x")
            index.add(pattern, "x")
        self.assertEqual((len(index), index.shapes()), (6, 6))
        for pattern in ("a.b.c", "a.*.>", ">", "a.b.>", "*.b", "$sys.>", "never.added", "n.*"):
            index.remove(pattern, "x")
        self.assertEqual((len(index), index.shapes()), (0, 0))
        self.assertEqual((index._exact, index._exact_wild, index._rest, index._rest_wild),
                         ({}, {}, {}, {}))

    def test_patterns_of_one_shape_share_it(self) -> None:
        """news.*.uk and sport.*.fr are one shape: matching a channel looks at
        each shape of its length once, however many patterns have it."""
        index: PatternIndex[str] = PatternIndex()
        for n in range(1000):
            index.add(f"topic{n}.*.uk", f"s{n}")
            index.add(f"topic{n}.>", f"r{n}")
        self.assertEqual(index.shapes(), 2)
        before = index.work
        self.assertEqual(self.matched(index, "topic7.x.uk"), {"s7", "r7"})
        self.assertEqual(index.work - before, 2)

    def test_deep_overlapping_patterns_cost_one_lookup_each(self) -> None:
        """The issue's attack: distinct deep patterns that all match one
        channel cost one lookup per pattern, not one per token of each; a
        channel of another length does not look at them at all."""
        index: PatternIndex[str] = PatternIndex()
        rng = random.Random(21)
        deep = {".".join(rng.choice("a*") for _ in range(64)) for _ in range(300)}
        for pattern in deep:
            index.add(pattern, "attacker")
        index.add("a.*", "other")
        before = index.work
        self.assertEqual(len(index.match(".".join(["a"] * 64))), len(deep))
        self.assertEqual(index.work - before, len(deep))
        before = index.work
        self.assertEqual(self.matched(index, "a.b"), {"other"})
        self.assertEqual(index.work - before, 1)

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
            # The second is from the cache; the last two stay cached across steps.
            for probe in (channel, channel, "news.a", "a.b.c"):
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
