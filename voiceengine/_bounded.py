"""Bounded, insertion-ordered containers that forget their oldest entries.

Used wherever a peer (the server) or a long session decides how many distinct keys
arrive: response ids, item ids, event ids. Memory stays bounded; the newest entries,
the ones that matter for the conversation in progress, are kept.
"""

from __future__ import annotations

import collections
from typing import Generic, Hashable, TypeVar

__all__ = ["BoundedDict", "BoundedSet", "RecentSet"]

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


_EMPTY: object = object()


class RecentSet(Generic[K]):
    """The last ``maxlen`` distinct keys offered to :meth:`seen`, for duplicate detection on
    a hot path (one call per audio delta).

    A plain set and a ring of the same keys in arrival order: adding one forgets the key
    ``maxlen`` places back, with no linked-list node to allocate per key and no ordered-dict
    bookkeeping (:class:`BoundedSet`'s insert + ``popitem`` cost more than the check itself).
    """

    __slots__ = ("maxlen", "_members", "_ring", "_next")

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        self.maxlen = maxlen
        self._members: set[K] = set()
        self._ring: list[object] = [_EMPTY] * maxlen
        self._next = 0

    def seen(self, key: K) -> bool:
        """Whether ``key`` is among the last ``maxlen`` distinct keys; adds it if not."""
        members = self._members
        if key in members:
            return True
        ring, slot = self._ring, self._next
        oldest = ring[slot]
        if oldest is not _EMPTY:
            members.discard(oldest)
        ring[slot] = key
        members.add(key)
        self._next = slot + 1 if slot + 1 < self.maxlen else 0
        return False

    def __contains__(self, key: object) -> bool:
        return key in self._members

    def __len__(self) -> int:
        return len(self._members)
