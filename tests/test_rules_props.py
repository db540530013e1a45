"""Rule matching and pattern coverage checked against brute force (hypothesis).

The brute force enumerates every channel over a small alphabet: the tokens
the patterns use, one token none of them uses (a ``*`` must be covered for
tokens no rule names), a system and an inbox first token, and lengths up to
one past the longest pattern (beyond that every length behaves the same).
"""
from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.auth.rules import Rules, covers, overlaps
from txpubsub.wire.names import pattern_matches

FIRST = ["a", "b", "$sys"]
REST = ["a", "b"]


@st.composite
def patterns(draw: st.DrawFn) -> tuple[str, ...]:
    first = draw(st.sampled_from([*FIRST, "*", ">"]))
    if first == ">":
        return (first,)
    size = draw(st.integers(0, 2))
    rest = [draw(st.sampled_from([*REST, "*"])) for _ in range(size)]
    if draw(st.booleans()):
        rest.append(">")
    if first == "$sys" and not rest:
        rest.append(">")  # "$sys" alone is not a channel
    return (first, *rest)


def channels(longest: int) -> list[str]:
    firsts = ["a", "b", "z", "$sys", "@x"]
    rest = ["a", "b", "z"]
    found = []
    for length in range(1, longest + 2):
        for first in firsts:
            if first == "@x" and length > 1:
                continue
            for tail in itertools.product(rest, repeat=length - 1):
                found.append(".".join((first, *tail)))
    return found


def matches(pattern: tuple[str, ...], channel: str) -> bool:
    return pattern_matches(".".join(pattern), channel)


class CoverageProperties(SynchronousTestCase):
    @settings(max_examples=400, deadline=None)
    @given(patterns(), st.lists(patterns(), max_size=4))
    def test_covers_is_brute_force(self, pattern: tuple[str, ...],
                                   rules: list[tuple[str, ...]]) -> None:
        """A pattern is covered exactly when every channel it matches is matched by a rule."""
        longest = max(len(p) for p in [pattern, *rules])
        expected = all(any(matches(r, c) for r in rules)
                       for c in channels(longest) if matches(pattern, c))
        self.assertEqual(covers(pattern, rules), expected, (pattern, rules))

    @settings(max_examples=400, deadline=None)
    @given(patterns(), patterns())
    def test_overlaps_is_brute_force(self, a: tuple[str, ...], b: tuple[str, ...]) -> None:
        """Two patterns overlap exactly when some channel matches both."""
        expected = any(matches(a, c) and matches(b, c)
                       for c in channels(max(len(a), len(b))))
        self.assertEqual(overlaps(a, b), expected, (a, b))

    @settings(max_examples=200, deadline=None)
    @given(patterns(), st.lists(patterns(), max_size=3), st.lists(patterns(), max_size=2))
    def test_may_subscribe_is_brute_force(self, pattern: tuple[str, ...],
                                          allow: list[tuple[str, ...]],
                                          deny: list[tuple[str, ...]]) -> None:
        """SUB is allowed exactly when every channel is allowed and none denied."""
        rules = Rules(subscribe=[".".join(p) for p in allow],
                      deny_subscribe=[".".join(p) for p in deny])
        longest = max(len(p) for p in [pattern, *allow, *deny])
        expected = all(any(matches(r, c) for r in allow) and
                       not any(matches(d, c) for d in deny)
                       for c in channels(longest) if matches(pattern, c))
        self.assertEqual(rules.may_subscribe(".".join(pattern)), expected,
                         (pattern, allow, deny))


class RuleExamples(SynchronousTestCase):
    def test_protocol_examples(self) -> None:
        """news.> is not covered by news.uk; chat.> is refused when chat.secret is denied."""
        self.assertFalse(Rules(subscribe=["news.uk"]).may_subscribe("news.>"))
        rules = Rules(subscribe=["chat.>"], deny_subscribe=["chat.secret"])
        self.assertFalse(rules.may_subscribe("chat.>"))
        self.assertFalse(rules.may_subscribe("chat.*"))
        self.assertTrue(rules.may_subscribe("chat.lobby"))
        self.assertTrue(rules.may_subscribe("chat.*.x"))

    def test_union_covers(self) -> None:
        """Rules may cover a pattern together that none covers alone."""
        self.assertTrue(Rules(subscribe=["a.*", "a.*.>"]).may_subscribe("a.>"))
        self.assertFalse(Rules(subscribe=["a.*", "a.*.*.>"]).may_subscribe("a.>"))

    def test_wildcards_skip_system_and_inboxes(self) -> None:
        rules = Rules(publish=[">"], subscribe=[">"])
        self.assertFalse(rules.may_publish("@bob"))
        self.assertFalse(rules.may_subscribe("$sys.time"))
        self.assertTrue(Rules(subscribe=["$sys.>"]).may_subscribe("$sys.time"))

    def test_inbox_rules(self) -> None:
        self.assertTrue(Rules(publish=["@*"]).may_publish("@bob"))
        self.assertFalse(Rules(publish=["@*"]).may_publish("bob"))
        only = Rules(publish=["@bob"])
        self.assertTrue(only.may_publish("@bob"))
        self.assertFalse(only.may_publish("@alice"))
        self.assertFalse(Rules(publish=["@*"], deny_publish=["@alice"]).may_publish("@alice"))
