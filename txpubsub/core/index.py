"""The wildcard index: a token trie of subscription patterns.

Publishing walks one path per matching branch, so its cost depends on the
channel's depth and the patterns that actually match, never on how many
subscriptions exist elsewhere (nats-server's sublist has the same shape).
"""
from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

# The match cache (readers()) holds at most this many channels, and at most
# this many subscriber references in all: a few MB at most.
CACHE_CHANNELS = 4096
CACHE_REFERENCES = 1 << 18


class _Node(Generic[T]):
    __slots__ = ("children", "exact", "rest")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}  # token or "*" -> node
        self.exact: set[T] = set()  # patterns that end here
        self.rest: set[T] = set()  # patterns that end here with ".>"

    def is_empty(self) -> bool:
        return not (self.children or self.exact or self.rest)


class PatternIndex(Generic[T]):
    """Subscribers by pattern; ``match`` finds every set that a channel reaches."""

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self._count = 0
        # channel -> the subscribers its wildcard matches reach, deduplicated;
        # forgotten whenever a subscription changes (as nats-server's sublist
        # cache), oldest first when full.
        self._cache: dict[str, set[T]] = {}
        self._cached_refs = 0
        self.visits = 0  # trie nodes walked by match(), ever: listings budget by it

    def __len__(self) -> int:
        """How many (pattern, subscriber) entries the index holds."""
        return self._count

    def add(self, pattern: str, subscriber: T) -> None:
        """Index a subscriber under a valid pattern (adding twice is harmless)."""
        node = self._root
        tokens = pattern.split(".")
        last = tokens.pop()
        for token in tokens:
            node = node.children.setdefault(token, _Node())
        if last == ">":
            slot = node.rest
        else:
            slot = node.children.setdefault(last, _Node()).exact
        if subscriber not in slot:
            slot.add(subscriber)
            self._count += 1
            self._forget_matches()

    def remove(self, pattern: str, subscriber: T) -> None:
        """Forget a subscriber's pattern and prune the branches left empty."""
        path = [self._root]
        tokens = pattern.split(".")
        rest = tokens[-1] == ">"
        if rest:
            tokens.pop()
        for token in tokens:
            child = path[-1].children.get(token)
            if child is None:
                return
            path.append(child)
        slot = path[-1].rest if rest else path[-1].exact
        if subscriber not in slot:
            return
        slot.discard(subscriber)
        self._count -= 1
        self._forget_matches()
        for depth in range(len(tokens), 0, -1):
            if not path[depth].is_empty():
                break
            del path[depth - 1].children[tokens[depth - 1]]

    def _forget_matches(self) -> None:
        if self._cache:
            self._cache = {}
            self._cached_refs = 0

    def readers(self, channel: str) -> set[T]:
        """Every subscriber a wildcard pattern of which matches ``channel``, once.

        Remembered per channel until a subscription changes, so publishing
        again to a channel costs one dict lookup however many patterns match
        it. The set is shared: callers must not change it.
        """
        found = self._cache.get(channel)
        if found is not None:
            return found
        sets = self.match(channel)
        if not sets:
            found = set()
        elif len(sets) == 1:
            found = sets[0]  # the trie's own set: changing it clears the cache
        else:
            found = set().union(*sets)
        cache = self._cache
        size = len(found) + 1
        if size <= CACHE_REFERENCES:
            while cache and (len(cache) >= CACHE_CHANNELS
                             or self._cached_refs + size > CACHE_REFERENCES):
                oldest = next(iter(cache))
                self._cached_refs -= len(cache.pop(oldest)) + 1
            cache[channel] = found
            self._cached_refs += size
        return found

    def match(self, channel: str) -> list[set[T]]:
        """The subscriber sets whose patterns match a concrete channel.

        A subscriber may be in more than one set; the caller deduplicates.
        A wildcard in the first token never matches a channel that starts
        with ``$`` or ``@`` (system channels and inboxes).
        """
        found: list[set[T]] = []
        tokens = channel.split(".")
        nodes = [self._root]
        guarded = channel[:1] in ("$", "@")
        for depth, token in enumerate(tokens):
            following = []
            for node in nodes:
                children = node.children
                if not (guarded and depth == 0):
                    if node.rest:
                        found.append(node.rest)
                    star = children.get("*")
                    if star is not None:
                        following.append(star)
                child = children.get(token)
                if child is not None:
                    following.append(child)
            if not following:
                return found
            self.visits += len(following)
            nodes = following
        for node in nodes:
            if node.exact:
                found.append(node.exact)
        return found
