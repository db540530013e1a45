"""The wildcard index: subscription patterns grouped by their shape.

A pattern's shape is how many tokens it has, whether it ends in ``>``, and
which of its tokens are ``*``: ``news.*.uk`` and ``sport.*.fr`` have one
shape (three tokens, the second a wildcard). Each shape is a dict from a
pattern's literal tokens to its subscribers, so a channel's matches cost one
dict lookup per shape a channel of its length can meet, whatever the number
of patterns and however they overlap: the token trie this replaced walked
every prefix of every overlapping pattern (10,000 deep ones on one
connection cost 100-380 ms per publish; docs/benchmarks.md). A channel of
n tokens meets at most 2^(n+1) shapes, and one connection can make at most
--max-subscriptions of them.

Matches are remembered per channel (``readers``); a subscription change
forgets only the channels its pattern's first token could match.
"""
from __future__ import annotations

from operator import itemgetter
from sys import intern
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")

# The match cache (readers()) holds at most this many channels, and at most
# this many subscriber references in all: a few MB at most.
CACHE_CHANNELS = 4096
CACHE_REFERENCES = 1 << 18

NO_LIMIT = 1 << 62


def _no_literals(tokens: list[str]) -> tuple[()]:
    return ()


# A shape's name: a byte per token, 0 for a literal, 1 for "*", 2 for ">"
# (news.*.> -> b"\0\1\2"), made in C: a disconnect lets go of thousands.
ShapeKey = bytes
_WILDCARD = {"*": 1, ">": 2}.get
_LITERAL = (0,) * 128  # more than any pattern has tokens


def _shape(tokens: list[str]) -> ShapeKey:
    return bytes(map(_WILDCARD, tokens, _LITERAL))

# A shape as matching uses it: the literal tokens of a channel (or pattern) at
# the shape's positions, and those of each pattern of this shape -> its subscribers.
Shape = tuple[Callable[[list[str]], Any], dict[Any, set[T]]]


def _literals(tokens: list[str]) -> Callable[[list[str]], Any]:
    """The function that takes a pattern's literal tokens, from the pattern
    itself or from a channel it can match."""
    positions = [i for i, token in enumerate(tokens) if token not in ("*", ">")]
    return itemgetter(*positions) if positions else _no_literals


class PatternIndex(Generic[T]):
    """Subscribers by pattern; ``match`` finds every set that a channel reaches."""

    __slots__ = ("_cache", "_cached_refs", "_cached_under", "_exact", "_exact_wild", "_rest",
                 "_rest_wild", "_shapes", "budget", "charged", "count", "over_budget", "work")

    def __init__(self) -> None:
        self.count = 0  # (pattern, subscriber) entries; read on every publish
        self._shapes: dict[ShapeKey, Shape[T]] = {}
        # Shapes by the channels they can match: without ">" by token count,
        # with ">" by the tokens before it (channels longer than that). A
        # shape whose first token is a wildcard is kept apart: it never
        # matches a channel starting with $ or @.
        self._exact: dict[int, dict[ShapeKey, Shape[T]]] = {}
        self._exact_wild: dict[int, dict[ShapeKey, Shape[T]]] = {}
        self._rest: dict[int, dict[ShapeKey, Shape[T]]] = {}
        self._rest_wild: dict[int, dict[ShapeKey, Shape[T]]] = {}
        # channel -> the subscribers its wildcard matches reach, deduplicated,
        # oldest first; a pattern's change forgets the channels under its
        # first token (all of them if that is a wildcard).
        self._cache: dict[str, set[T]] = {}
        self._cached_under: dict[str, set[str]] = {}  # first token -> cached channels
        self._cached_refs = 0
        # Shapes looked at by match(), ever, and other work the hub counts
        # with spend() (names a listing scans): what matching and listing cost.
        self.work = 0
        # Past ``budget``, spend() calls ``over_budget(charged)`` once, if
        # there is someone to charge: the hub charges the connection whose
        # input it is reading (Hub.reading).
        self.budget = NO_LIMIT
        self.charged: T | None = None
        self.over_budget: Callable[[T], None] | None = None

    def __len__(self) -> int:
        """How many (pattern, subscriber) entries the index holds."""
        return self.count

    def shapes(self) -> int:
        """How many shapes the patterns make (what an uncached match may cost)."""
        return len(self._shapes)

    def add(self, pattern: str, subscriber: T) -> None:
        """Index a subscriber under a valid pattern (adding twice is harmless)."""
        tokens = pattern.split(".")
        key = _shape(tokens)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = (_literals(tokens), {})
            self._group(tokens).setdefault(self._reach(tokens), {})[key] = shape
        literals, patterns = shape
        found = literals(tokens)
        subscribers = patterns.get(found)
        if subscribers is None:
            # Interned: one copy of each token for the whole index (a deep
            # pattern's tokens are most of its size), and match() interns a
            # channel's, so a lookup compares tokens by identity.
            found = tuple(map(intern, found)) if type(found) is tuple else intern(found)
            subscribers = patterns[found] = set()
        if subscriber not in subscribers:
            subscribers.add(subscriber)
            self.count += 1
            self._forget_matches(tokens[0])

    def remove(self, pattern: str, subscriber: T) -> None:
        """Forget a subscriber's pattern (absent: nothing happens)."""
        tokens = pattern.split(".")
        key = _shape(tokens)
        shape = self._shapes.get(key)
        if shape is None:
            return
        literals, patterns = shape
        found = literals(tokens)
        subscribers = patterns.get(found)
        if subscribers is None or subscriber not in subscribers:
            return
        subscribers.discard(subscriber)
        self.count -= 1
        # Before the empty set is let go of: a cached match may hold it.
        self._forget_matches(tokens[0])
        if subscribers:
            return
        del patterns[found]
        if not patterns:
            del self._shapes[key]
            group = self._group(tokens)
            reach = self._reach(tokens)
            same = group[reach]
            del same[key]
            if not same:
                del group[reach]

    def _group(self, tokens: list[str]) -> dict[int, dict[ShapeKey, Shape[T]]]:
        wild_first = tokens[0] in ("*", ">")
        if tokens[-1] == ">":
            return self._rest_wild if wild_first else self._rest
        return self._exact_wild if wild_first else self._exact

    @staticmethod
    def _reach(tokens: list[str]) -> int:
        """The channels a pattern can match: its token count, or with ">" the
        tokens before it (then channels longer than that)."""
        return len(tokens) - (tokens[-1] == ">")

    def _forget_matches(self, first: str) -> None:
        """A pattern starting with ``first`` changed: forget the cached matches
        it could change. Each entry is dropped at most once after the match
        that made it, so this costs no more than the matching did."""
        if not self._cache:
            return
        if first in ("*", ">"):
            self._cache = {}
            self._cached_under = {}
            self._cached_refs = 0
            return
        names = self._cached_under.pop(first, None)
        if names:
            cache = self._cache
            refs = 0
            for name in names:
                refs += len(cache.pop(name)) + 1
            self._cached_refs -= refs

    def readers(self, channel: str) -> set[T]:
        """Every subscriber a wildcard pattern of which matches ``channel``, once.

        Remembered per channel until a pattern that could match it changes,
        so publishing again to a channel costs one dict lookup however many
        patterns match it. The set is shared: callers must not change it.
        """
        found = self._cache.get(channel)
        if found is not None:
            return found
        sets = self.match(channel)
        if not sets:
            found = set()
        elif len(sets) == 1:
            found = sets[0]  # the index's own set: changing it forgets this entry
        else:
            found = set().union(*sets)
        size = len(found) + 1
        if size <= CACHE_REFERENCES:
            cache = self._cache
            under = self._cached_under
            while cache and (len(cache) >= CACHE_CHANNELS
                             or self._cached_refs + size > CACHE_REFERENCES):
                oldest = next(iter(cache))
                self._cached_refs -= len(cache.pop(oldest)) + 1
                head = oldest.partition(".")[0]
                names = under[head]
                names.discard(oldest)
                if not names:
                    del under[head]
            cache[channel] = found
            self._cached_refs += size
            head = channel.partition(".")[0]
            cached = under.get(head)
            if cached is None:
                cached = under[head] = set()
            cached.add(channel)
        return found

    def match(self, channel: str) -> list[set[T]]:
        """The subscriber sets whose patterns match a concrete channel.

        A subscriber may be in more than one set; the caller deduplicates.
        A wildcard in the first token never matches a channel that starts
        with ``$`` or ``@`` (system channels and inboxes). Costs one lookup
        per shape of a length the channel can match.
        """
        found: list[set[T]] = []
        tokens = list(map(intern, channel.split(".")))  # the index's copies (see add)
        length = len(tokens)
        tried = 0
        groups: list[dict[ShapeKey, Shape[T]] | None] = [self._exact.get(length)]
        rests = [self._rest]
        if channel[:1] not in ("$", "@"):
            groups.append(self._exact_wild.get(length))
            rests.append(self._rest_wild)
        for rest in rests:
            for before, of_rest in rest.items():
                if before < length:
                    groups.append(of_rest)
        for shapes in groups:
            if not shapes:
                continue
            tried += len(shapes)
            for literals, patterns in shapes.values():
                subscribers = patterns.get(literals(tokens))
                if subscribers is not None:
                    found.append(subscribers)
        self.spend(tried)
        return found

    def spend(self, work: int) -> None:
        """Count ``work``; past the budget, charge it (once) to whom it is for."""
        self.work += work
        if self.work > self.budget:
            self.budget = NO_LIMIT
            charged, self.charged = self.charged, None
            if charged is not None and self.over_budget is not None:
                self.over_budget(charged)
