"""The audio-delta fast path of :meth:`RealtimeCodec.decode` (both dialects).

Audio deltas carry nearly all inbound bytes. :func:`decode_audio_delta` decodes a
well-formed one in a single strict pass (:func:`voiceengine._audio.delta.scan_audio_delta`:
flat-object scan + pybase64 strict decode, no general JSON parse) into the same event
and message the table decoder ``_audio_delta`` makes from ``json.loads``. It returns
``None`` for anything else, malformed deltas included, which the general path then
decodes and reports exactly as before. Public entry point for custom codecs::

    fast = decode_audio_delta(text, codec.audio_delta_type, ctx)
    event, message = fast if fast is not None else <general decode>
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from ..._audio.delta import fill_slots, scan_audio_delta
from ..types import EventType, ProviderEvent
from .decoders import DecodeContext

__all__ = ["decode_audio_delta"]

_AUDIO_DELTA = EventType.AUDIO_DELTA
# The event is built slot by slot (fill_slots) when ProviderEvent has exactly these
# fields and no __post_init__; otherwise (the class changed) through its constructor.
_EVENT_FIELDS = ("type", "data", "timestamp", "provider", "session_id", "error", "item_id", "response_id", "raw")
_FILL = (
    tuple(f.name for f in dataclasses.fields(ProviderEvent)) == _EVENT_FIELDS
    and not hasattr(ProviderEvent, "__post_init__")
    and "__slots__" in ProviderEvent.__dict__
)


def decode_audio_delta(text: object, wire_type: str, ctx: DecodeContext) -> tuple[ProviderEvent, dict[str, Any]] | None:
    """``(AUDIO_DELTA event, parsed message)`` for a well-formed ``wire_type`` frame, else ``None``."""
    scanned = scan_audio_delta(text, wire_type, ctx.sample_width)
    if scanned is None:
        return None
    msg, pcm = scanned
    # raw=None: audio payloads are never kept on events (as in decoders._audio_delta)
    if _FILL:
        event: ProviderEvent = fill_slots(ProviderEvent, _EVENT_FIELDS, (
            _AUDIO_DELTA, pcm, time.time(), ctx.provider, ctx.session_id, None, msg["item_id"], msg["response_id"], None))
    else:
        event = ProviderEvent(type=_AUDIO_DELTA, data=pcm, provider=ctx.provider, session_id=ctx.session_id,
                              item_id=msg["item_id"], response_id=msg["response_id"], raw=None)
    return event, msg
