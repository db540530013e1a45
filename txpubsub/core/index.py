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
    """One token of the trie. Each part is made only when first needed, and
    a node with one child holds it without a dict: an empty dict and two
    empty sets were ~500 of a node's ~570 bytes, and most nodes of a deep
    pattern have one child and no subscriber of their own."""

    __slots__ = ("children", "exact", "only", "only_token", "rest")

    def __init__(self) -> None:
        self.only: _Node[T] | None = None  # the child, while there is just one
        self.only_token = ""  # its token
        self.children: dict[str, _Node[T]] | None = None  # token or "*" -> node, 2 or more
        self.exact: set[T] | None = None  # patterns that end here
        self.rest: set[T] | None = None  # patterns that end here with ".>"

    def get(self, token: str) -> _Node[T] | None:
        """The child for ``token``, if any."""
        if self.only is not None:
            return self.only if self.only_token == token else None
        if self.children is not None:
            return self.children.get(token)
        return None

    def child(self, token: str) -> _Node[T]:
        """The child for ``token``, made if it is not there."""
        node = self.get(token)
        if node is not None:
            return node
        node = _Node()
        if self.only is not None:
            self.children = {self.only_token: self.only, token: node}
            self.only, self.only_token = None, ""
        elif self.children is not None:
            self.children[token] = node
        else:
            self.only, self.only_token = node, token
        return node

    def drop(self, token: str) -> None:
        """Forget the child for ``token`` (it is there)."""
        if self.only is not None:
            self.only, self.only_token = None, ""
            return
        assert self.children is not None
        del self.children[token]
        if len(self.children) == 1:
            [(self.only_token, self.only)] = self.children.items()
            self.children = None

    def is_empty(self) -> bool:
        return self.only is None and not (self.children or self.exact or self.rest)


class PatternIndex(Generic[T]):
    """Subscribers by pattern; ``match`` finds every set that a channel reaches."""

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self.count = 0  # (pattern, subscriber) entries; read on every publish
        # channel -> the subscribers its wildcard matches reach, deduplicated;
        # forgotten whenever a subscription changes (as nats-server's sublist
        # cache), oldest first when full.
        self._cache: dict[str, set[T]] = {}
        self._cached_refs = 0
        self.visits = 0  # trie nodes walked by match(), ever: listings budget by it

    def __len__(self) -> int:
        """How many (pattern, subscriber) entries the index holds."""
        return self.count

    def add(self, pattern: str, subscriber: T) -> None:
        """Index a subscriber under a valid pattern (adding twice is harmless)."""
        node = self._root
        tokens = pattern.split(".")
        last = tokens.pop()
        for token in tokens:
            node = node.child(token)
        if last == ">":
            slot = node.rest
            if slot is None:
                slot = node.rest = set()
        else:
            node = node.child(last)
            slot = node.exact
            if slot is None:
                slot = node.exact = set()
        if subscriber not in slot:
            slot.add(subscriber)
            self.count += 1
            self._forget_matches()

    def remove(self, pattern: str, subscriber: T) -> None:
        """Forget a subscriber's pattern and prune the branches left empty."""
        path = [self._root]
        tokens = pattern.split(".")
        rest = tokens[-1] == ">"
        if rest:
            tokens.pop()
        for token in tokens:
            child = path[-1].get(token)
            if child is None:
                return
            path.append(child)
        end = path[-1]
        slot = end.rest if rest else end.exact
        if slot is None or subscriber not in slot:
            return
        slot.discard(subscriber)
        if not slot:
            # Let go of the empty set (the cache, which may share it, is
            # cleared below).
            if rest:
                end.rest = None
            else:
                end.exact = None
        self.count -= 1
        self._forget_matches()
        for depth in range(len(tokens), 0, -1):
            if not path[depth].is_empty():
                break
            path[depth - 1].drop(tokens[depth - 1])

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
            wild = not (guarded and depth == 0)
            for node in nodes:
                if wild and node.rest:
                    found.append(node.rest)
                only = node.only
                if only is not None:
                    only_token = node.only_token
                    if only_token == token or (wild and only_token == "*"):
                        following.append(only)
                    continue
                children = node.children
                if children is None:
                    continue
                if wild:
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
