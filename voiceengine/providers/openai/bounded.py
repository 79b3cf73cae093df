"""Limits of the bounded bookkeeping for state the *server* drives (ids, call names, content parts).

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

from ..._bounded import BoundedDict, BoundedSet, RecentSet

__all__ = [
    "BoundedDict",
    "BoundedSet",
    "RecentSet",
    "MAX_ACTIVE_RESPONSES",
    "MAX_CANCELLED_RESPONSES",
    "MAX_TRACKED_RESPONSES",
    "MAX_CONTENT_PARTS",
    "MAX_SEEN_AUDIO_EVENTS",
]

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
#: audio delta ``event_id``s remembered to drop a delta delivered twice (about 13 s of
#: 100 ms deltas; a duplicate arrives right after the original). Kept small: every delta
#: adds an entry, so a long session sat at the bound (1024 ids, about 100 KiB, before)
MAX_SEEN_AUDIO_EVENTS = 128
