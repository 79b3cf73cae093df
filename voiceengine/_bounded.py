"""Bounded, insertion-ordered containers that forget their oldest entries.

Used wherever a peer (the server) or a long session decides how many distinct keys
arrive: response ids, item ids, event ids. Memory stays bounded; the newest entries,
the ones that matter for the conversation in progress, are kept.
"""

from __future__ import annotations

import collections
from typing import Hashable, TypeVar

__all__ = ["BoundedDict", "BoundedSet"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedDict(collections.OrderedDict[K, V]):
    """Insertion-ordered dict that forgets its oldest entries past ``maxlen``.

    Only :meth:`put` (and :meth:`add` for set use) enforce the bound; plain item
    assignment is for updating a key already present (it keeps its position). Built on
    ``OrderedDict`` because ``popitem(last=False)`` is O(1), where ``next(iter(dict))``
    rescans the holes deletions leave at the front of a plain dict.
    """

    __slots__ = ("maxlen", "evicted")

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        super().__init__()
        self.maxlen = maxlen
        #: entries forgotten because the bound was reached (diagnostics, tests)
        self.evicted = 0

    def put(self, key: K, value: V) -> None:
        """Insert or replace ``key`` (a replaced key keeps its age), then enforce the bound."""
        self[key] = value
        if len(self) > self.maxlen:
            self.popitem(last=False)
            self.evicted += 1


class BoundedSet(BoundedDict[K, None]):
    """Insertion-ordered set that forgets its oldest members past ``maxlen``."""

    __slots__ = ()

    def add(self, key: K) -> None:
        # put() inlined: this runs once per audio delta
        self[key] = None
        if len(self) > self.maxlen:
            self.popitem(last=False)
            self.evicted += 1

    def discard(self, key: K) -> None:
        self.pop(key, None)

    def seen(self, key: K) -> bool:
        """Whether ``key`` is a member; adds it either way (duplicate detection)."""
        if key in self:
            return True
        self.add(key)
        return False
