"""Bounded bookkeeping for state the *server* drives (ids, call names, content parts).

Every map or set :class:`~.session.RealtimeSession` fills from inbound events is keyed by
values the peer chooses (response ids, item ids, ``content_index``, ``event_id``). A
buggy or hostile server can send any number of distinct keys without ever sending the
event that would remove them (``response.created`` without ``response.done``, a
``function_call`` ``output_item.added`` without its arguments, ...), so each structure
has a size limit and forgets its oldest entry beyond it: memory stays bounded, the
latest state (the one that matters for the conversation in progress) is kept.

The limits are far above anything a well-behaved session reaches (one or two responses
in flight, one audio content part per item); they only bite under a flood.
"""

from __future__ import annotations

import collections
from typing import Hashable, TypeVar

__all__ = [
    "BoundedDict",
    "BoundedSet",
    "MAX_ACTIVE_RESPONSES",
    "MAX_CANCELLED_RESPONSES",
    "MAX_TRACKED_RESPONSES",
    "MAX_CONTENT_PARTS",
    "MAX_SEEN_AUDIO_EVENTS",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: responses created and not done that are tracked (the service runs one per conversation,
#: plus out-of-band ones; a flood of ``response.created`` never followed by ``response.done``
#: keeps only the newest)
MAX_ACTIVE_RESPONSES = 32
#: responses whose late deltas are dropped after a cancel
MAX_CANCELLED_RESPONSES = 64
#: responses whose total audio is counted for ``max_response_audio_s``
MAX_TRACKED_RESPONSES = 64
#: audio content parts counted per item (the service uses content_index 0)
MAX_CONTENT_PARTS = 8
#: audio delta ``event_id``s remembered to drop a delta delivered twice (about 100 s of
#: 100 ms deltas; a duplicate arrives right after the original)
MAX_SEEN_AUDIO_EVENTS = 1024


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
