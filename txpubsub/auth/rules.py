"""Publish and subscribe rules (PROTOCOL.md, "Authentication").

A rule is a pattern of the Names section (``*`` one token, ``>`` the rest),
or ``@*`` (every inbox) or ``@<name>`` (one inbox). A channel may be
published to when a publish rule matches it and no deny_publish rule does.
A pattern may be subscribed to when it is *covered*: every channel it can
match is matched by some subscribe rule and by no deny_subscribe rule.

Coverage is decided on tokens, position by position, for an unbounded set
of token values: a pattern's ``*`` stands for a token that no rule names,
so only rules with ``*`` or ``>`` there can cover it; a pattern's ``>``
needs every length of the rest covered by ``*``-only rule tails.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from txpubsub.wire.errors import HubError
from txpubsub.wire.names import check_name, pattern_kind, pattern_matches

Tokens = tuple[str, ...]
# Decisions remembered per rule set, per channel: the per-publish check is a
# dict lookup. Cleared when full (a server seeing that many channels of one
# user is rare, and a cleared cache only costs the next checks a match).
CACHE_LIMIT = 10000


def check_rule(rule: str) -> str:
    """A valid rule, or ValueError saying why."""
    if rule.startswith("@"):
        if rule == "@*":
            return rule
        try:
            check_name(rule[1:])
        except HubError as e:
            raise ValueError(f"bad inbox rule {rule!r}: {e.text}") from None
        return rule
    try:
        pattern_kind(rule)
    except HubError as e:
        raise ValueError(e.text) from None
    return rule


def rule_matches(rule: str, channel: str) -> bool:
    """Whether one rule matches one concrete channel."""
    if rule[0] == "@":
        return channel[0] == "@" and (rule == "@*" or rule == channel)
    return pattern_matches(rule, channel)


def _local(token: str) -> bool:
    """A first token that wildcards in the first position never match."""
    return token[:1] in ("$", "@")


def _tokens_match(rule: str, token: str, first: bool) -> bool:
    # Only for concrete tokens of a pattern, against a rule token that is not ">".
    if rule == "*":
        return not (first and _local(token))
    return rule == token


def covers(pattern: Tokens, rules: Sequence[Tokens]) -> bool:
    """Whether the channels ``pattern`` matches all lie in the union of ``rules``."""
    candidates = [r for r in rules if r[0][:1] != "@"]  # inbox rules cover no SUB
    for i, token in enumerate(pattern):
        first = i == 0
        if token == ">":
            return _covers_rest(i, candidates)
        kept = []
        for rule in candidates:
            if len(rule) <= i:
                continue
            rtoken = rule[i]
            if rtoken == ">":
                if token == "*" or not (first and _local(token)):
                    return True  # this rule matches every channel from here on
                continue
            if token == "*":
                if rtoken == "*":
                    kept.append(rule)
            elif _tokens_match(rtoken, token, first):
                kept.append(rule)
        candidates = kept
        if not candidates:
            return False
    return any(len(rule) == len(pattern) for rule in candidates)


def _covers_rest(i: int, rules: Sequence[Tokens]) -> bool:
    """Whether ``rules`` (matching the pattern up to ``i``) cover one or more
    arbitrary tokens from position ``i``: every length must be covered."""
    exact: set[int] = set()
    open_from: int | None = None  # the shortest length a ">" tail covers, and up
    for rule in rules:
        tail = rule[i:]
        if not tail:
            continue
        stars = 0
        for t in tail:
            if t != "*":
                break
            stars += 1
        if stars == len(tail):
            exact.add(stars)
        elif stars == len(tail) - 1 and tail[-1] == ">":
            if open_from is None or stars + 1 < open_from:
                open_from = stars + 1
    if open_from is None:
        return False
    return all(length in exact for length in range(1, open_from))


def overlaps(a: Tokens, b: Tokens) -> bool:
    """Whether some channel matches both patterns."""
    for i in range(max(len(a), len(b))):
        if i >= len(a) or i >= len(b):
            return False
        x, y = a[i], b[i]
        if i == 0 and ((x in ("*", ">") and _local(y)) or (y in ("*", ">") and _local(x))):
            return False
        if x == ">" or y == ">":
            return True
        if x != y and x != "*" and y != "*":
            return False
    return True


class Rules:
    """One user's (or the anonymous clients') permissions; immutable once made."""

    __slots__ = ("_deny_subscribe", "_publish_cache", "_subscribe", "_subscribe_cache",
                 "deny_publish", "deny_subscribe", "publish", "subscribe")

    def __init__(self, publish: Iterable[str] = (), subscribe: Iterable[str] = (),
                 deny_publish: Iterable[str] = (), deny_subscribe: Iterable[str] = ()) -> None:
        self.publish = tuple(check_rule(r) for r in publish)
        self.subscribe = tuple(check_rule(r) for r in subscribe)
        self.deny_publish = tuple(check_rule(r) for r in deny_publish)
        self.deny_subscribe = tuple(check_rule(r) for r in deny_subscribe)
        self._subscribe = [tuple(r.split(".")) for r in self.subscribe]
        self._deny_subscribe = [tuple(r.split(".")) for r in self.deny_subscribe
                                if not r.startswith("@")]
        self._publish_cache: dict[str, bool] = {}
        self._subscribe_cache: dict[str, bool] = {}

    def __repr__(self) -> str:
        return (f"<Rules publish={list(self.publish)} subscribe={list(self.subscribe)} "
                f"deny_publish={list(self.deny_publish)} "
                f"deny_subscribe={list(self.deny_subscribe)}>")

    def may_publish(self, channel: str) -> bool:
        """A publish rule matches ``channel`` and no deny_publish rule does."""
        cache = self._publish_cache
        allowed = cache.get(channel)
        if allowed is None:
            allowed = (any(rule_matches(r, channel) for r in self.publish)
                       and not any(rule_matches(r, channel) for r in self.deny_publish))
            if len(cache) >= CACHE_LIMIT:
                cache.clear()
            cache[channel] = allowed
        return allowed

    def may_subscribe(self, pattern: str) -> bool:
        """Every channel ``pattern`` matches is allowed and none is denied."""
        cache = self._subscribe_cache
        allowed = cache.get(pattern)
        if allowed is None:
            tokens = tuple(pattern.split("."))
            allowed = (covers(tokens, self._subscribe)
                       and not any(overlaps(tokens, d) for d in self._deny_subscribe))
            if len(cache) >= CACHE_LIMIT:
                cache.clear()
            cache[pattern] = allowed
        return allowed

    def may_read(self, channel: str) -> bool:
        """History of a concrete channel: the same as subscribing to it."""
        return self.may_subscribe(channel)


NOTHING = Rules()  # deny by default: a user with no rules, or a client not let in
