"""Server event decoders of the OpenAI Realtime codecs: one function per wire ``type``.

A decoder takes the parsed JSON object and a :class:`DecodeContext` and returns one
normalized :class:`ProviderEvent`. It checks the members it uses and raises
:class:`MalformedEvent` when one is missing or ill-typed; the codec turns that into an
ERROR event (remote protocol error), so nothing here ever escapes ``receive()``.
Members a decoder does not use are not checked (the service adds fields over time).

Wire types the SDK defines but :class:`EventType` has no kind for (MCP progress,
WebRTC-only ``output_audio_buffer.*``, diarized transcription segments, DTMF,
``conversation.created``) are *known passthrough*: UNKNOWN with ``data`` = the wire type
and ``raw`` = the message, listed in :data:`PASSTHROUGH_TYPES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..base64_audio import b64decode_strict
from ..types import ErrorInfo, EventType, FunctionCall, ProviderEvent, ResponseInfo
from .errors import error_info

__all__ = [
    "MalformedEvent",
    "DecodeContext",
    "Decoder",
    "GA_DECODERS",
    "BETA_DECODERS",
    "PASSTHROUGH_TYPES",
    "b64decode_strict",
]


class MalformedEvent(Exception):
    """A server message lacks a member we need or has it ill-typed (internal)."""


@dataclass(slots=True)
class DecodeContext:
    """Per-connection facts a decoder stamps on events (mutable, owned by the session).

    ``resolve_request(event_id)`` returns the wire type of the client event with that id
    (and forgets it), so an ERROR names the request it answers. ``sample_width`` is the
    bytes per sample of the output audio (2 for PCM16, 1 for G.711): an audio delta that
    is not a whole number of samples is malformed.
    """

    provider: str = "openai"
    session_id: str | None = None
    resolve_request: Callable[[str], str | None] | None = None
    sample_width: int = 2


Decoder = Callable[[dict[str, Any], DecodeContext], ProviderEvent]


# ----------------------------------------------------------------- field access
def _str(msg: Mapping[str, Any], key: str) -> str:
    value = msg.get(key)
    if type(value) is not str:
        raise MalformedEvent(f"{key!r} must be a string")
    return value


def _opt_str(msg: Mapping[str, Any], key: str) -> str | None:
    value = msg.get(key)
    if value is not None and type(value) is not str:
        raise MalformedEvent(f"{key!r} must be a string or null")
    return value


def _int(msg: Mapping[str, Any], key: str) -> int:
    value = msg.get(key)
    if type(value) is not int:  # bool is not an int here
        raise MalformedEvent(f"{key!r} must be an integer")
    return value


def _opt_int(msg: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = msg.get(key, default)
    if type(value) is not int:
        raise MalformedEvent(f"{key!r} must be an integer")
    return value


def _dict(msg: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = msg.get(key)
    if type(value) is not dict:
        raise MalformedEvent(f"{key!r} must be an object")
    return value


def _list(msg: Mapping[str, Any], key: str) -> list[Any]:
    value = msg.get(key)
    if type(value) is not list:
        raise MalformedEvent(f"{key!r} must be an array")
    return value


def _ev(
    kind: EventType,
    ctx: DecodeContext,
    msg: dict[str, Any] | None,
    data: Any = None,
    *,
    item_id: str | None = None,
    response_id: str | None = None,
    error: ErrorInfo | None = None,
) -> ProviderEvent:
    return ProviderEvent(
        type=kind, data=data, provider=ctx.provider, session_id=ctx.session_id, error=error,
        item_id=item_id, response_id=response_id, raw=msg,
    )


# ----------------------------------------------------------------- decoders
def _error(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    payload = _dict(msg, "error")
    if type(payload.get("message")) is not str:
        raise MalformedEvent("'error.message' must be a string")
    event_id = _opt_str(payload, "event_id")
    request_type = None
    if event_id is not None and ctx.resolve_request is not None:
        request_type = ctx.resolve_request(event_id)
    return _ev(EventType.ERROR, ctx, msg, error=error_info(payload, event_id=event_id, request_type=request_type))


def _session_created(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    session = _dict(msg, "session")
    session_id = _opt_str(session, "id")
    return ProviderEvent(
        type=EventType.SESSION_CREATED, data=session, provider=ctx.provider,
        session_id=session_id or ctx.session_id, raw=msg,
    )


def _session_updated(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    return _ev(EventType.SESSION_UPDATED, ctx, msg, _dict(msg, "session"))


def _item_event(kind: EventType) -> Decoder:
    def decode(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
        item = dict(_dict(msg, "item"))  # a copy: we add previous_item_id for ConversationState
        if "previous_item_id" in msg or kind is not EventType.ITEM_RETRIEVED:
            item["previous_item_id"] = _opt_str(msg, "previous_item_id")
        return _ev(kind, ctx, msg, item, item_id=_opt_str(item, "id"))

    return decode


def _item_truncated(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    data = {"content_index": _opt_int(msg, "content_index"), "audio_end_ms": _int(msg, "audio_end_ms")}
    return _ev(EventType.ITEM_TRUNCATED, ctx, msg, data, item_id=_str(msg, "item_id"))


def _item_deleted(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    return _ev(EventType.ITEM_DELETED, ctx, msg, item_id=_str(msg, "item_id"))


def _input_transcript_delta(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    delta = _opt_str(msg, "delta") or ""
    return _ev(EventType.INPUT_TRANSCRIPT_DELTA, ctx, msg, delta, item_id=_str(msg, "item_id"))


def _input_transcript(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    return _ev(EventType.INPUT_TRANSCRIPT, ctx, msg, _str(msg, "transcript"), item_id=_str(msg, "item_id"))


def _input_transcript_failed(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    payload = msg.get("error")
    info = error_info(payload if type(payload) is dict else {}, event_id=None)
    return _ev(EventType.INPUT_TRANSCRIPT_FAILED, ctx, msg, item_id=_str(msg, "item_id"), error=info)


def _committed(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    data = {"previous_item_id": _opt_str(msg, "previous_item_id")}
    return _ev(EventType.INPUT_COMMITTED, ctx, msg, data, item_id=_str(msg, "item_id"))


def _cleared(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    return _ev(EventType.INPUT_CLEARED, ctx, msg)


def _speech_started(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    data = {"audio_start_ms": _int(msg, "audio_start_ms")}
    return _ev(EventType.SPEECH_STARTED, ctx, msg, data, item_id=_opt_str(msg, "item_id"))


def _speech_stopped(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    data = {"audio_end_ms": _int(msg, "audio_end_ms")}
    return _ev(EventType.SPEECH_STOPPED, ctx, msg, data, item_id=_opt_str(msg, "item_id"))


def _timeout(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    data = {"audio_start_ms": _opt_int(msg, "audio_start_ms"), "audio_end_ms": _opt_int(msg, "audio_end_ms")}
    return _ev(EventType.INPUT_TIMEOUT, ctx, msg, data, item_id=_opt_str(msg, "item_id"))


def response_info(response: Mapping[str, Any]) -> ResponseInfo:
    """A :class:`ResponseInfo` from a wire ``response`` object (lenient on optional members)."""
    details = response.get("status_details")
    reason = None
    if type(details) is dict:
        reason = details.get("reason") if type(details.get("reason")) is str else None
        error = details.get("error")
        if reason is None and type(error) is dict and type(error.get("code")) is str:
            reason = error["code"]
    output = response.get("output")
    ids = tuple(
        item["id"] for item in (output if type(output) is list else ())
        if type(item) is dict and type(item.get("id")) is str
    )
    usage, metadata = response.get("usage"), response.get("metadata")
    conversation = response.get("conversation_id", response.get("conversation"))
    status = response.get("status")
    return ResponseInfo(
        response_id=_opt_str(response, "id"),
        status=status if type(status) is str else "in_progress",
        reason=reason,
        usage=usage if type(usage) is dict else None,
        output_item_ids=ids,
        conversation=conversation if type(conversation) is str else None,
        metadata=metadata if type(metadata) is dict else None,
    )


def _response_event(kind: EventType) -> Decoder:
    def decode(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
        info = response_info(_dict(msg, "response"))
        return _ev(kind, ctx, msg, info, response_id=info.response_id)

    return decode


def _output_item(kind: EventType) -> Decoder:
    def decode(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
        item = _dict(msg, "item")
        return _ev(kind, ctx, msg, item, item_id=_opt_str(item, "id"), response_id=_str(msg, "response_id"))

    return decode


def _content_part(kind: EventType) -> Decoder:
    def decode(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
        return _ev(kind, ctx, msg, _dict(msg, "part"), item_id=_str(msg, "item_id"),
                   response_id=_str(msg, "response_id"))

    return decode


def _field_event(kind: EventType, key: str | None) -> Decoder:
    """Decoder of a per-item output event whose data is the string member ``key``."""

    def decode(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
        data = _str(msg, key) if key is not None else None
        return _ev(kind, ctx, msg, data, item_id=_str(msg, "item_id"), response_id=_str(msg, "response_id"))

    return decode


def _audio_delta(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    delta = _str(msg, "delta")
    item_id, response_id = _str(msg, "item_id"), _str(msg, "response_id")
    _opt_int(msg, "content_index")  # the session reads it; check it here
    try:
        pcm = b64decode_strict(delta)
    except (ValueError, TypeError):
        raise MalformedEvent("'delta' is not valid base64") from None
    if len(pcm) % ctx.sample_width:
        raise MalformedEvent(f"audio delta of {len(pcm)} bytes is not whole samples")
    # raw=None: audio payloads are never kept on events
    return ProviderEvent(
        type=EventType.AUDIO_DELTA, data=pcm, provider=ctx.provider, session_id=ctx.session_id,
        item_id=item_id, response_id=response_id, raw=None,
    )


def _function_call_done(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    # beta events lack "name": the session fills it in from response.output_item.added
    call = FunctionCall(
        name=_opt_str(msg, "name") or "", call_id=_str(msg, "call_id"), arguments=_str(msg, "arguments"),
        item_id=_str(msg, "item_id"), response_id=_str(msg, "response_id"),
    )
    return _ev(EventType.FUNCTION_CALL, ctx, msg, call, item_id=call.item_id, response_id=call.response_id)


def _rate_limits(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    limits = _list(msg, "rate_limits")
    if any(type(limit) is not dict for limit in limits):
        raise MalformedEvent("'rate_limits' must hold objects")
    return _ev(EventType.RATE_LIMITS, ctx, msg, limits)


def _passthrough(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    return _ev(EventType.UNKNOWN, ctx, msg, msg["type"], item_id=_opt_str(msg, "item_id"),
               response_id=_opt_str(msg, "response_id"))


def unknown(msg: dict[str, Any], ctx: DecodeContext) -> ProviderEvent:
    """Decoder of a wire type not in the table: UNKNOWN, raw passthrough, never dropped."""
    item_id, response_id = msg.get("item_id"), msg.get("response_id")
    return _ev(EventType.UNKNOWN, ctx, msg, msg["type"],
               item_id=item_id if type(item_id) is str else None,
               response_id=response_id if type(response_id) is str else None)


PASSTHROUGH_TYPES = frozenset(
    {
        "conversation.created",
        "conversation.item.input_audio_transcription.segment",
        "input_audio_buffer.dtmf_event_received",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "output_audio_buffer.cleared",
        "mcp_list_tools.in_progress",
        "mcp_list_tools.completed",
        "mcp_list_tools.failed",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.mcp_call.failed",
    }
)

#: GA wire type -> decoder (every member of openai.types.realtime.RealtimeServerEvent)
GA_DECODERS: dict[str, Decoder] = {
    "error": _error,
    "session.created": _session_created,
    "session.updated": _session_updated,
    "conversation.item.added": _item_event(EventType.ITEM_ADDED),
    "conversation.item.created": _item_event(EventType.ITEM_ADDED),
    "conversation.item.done": _item_event(EventType.ITEM_DONE),
    "conversation.item.retrieved": _item_event(EventType.ITEM_RETRIEVED),
    "conversation.item.truncated": _item_truncated,
    "conversation.item.deleted": _item_deleted,
    "conversation.item.input_audio_transcription.delta": _input_transcript_delta,
    "conversation.item.input_audio_transcription.completed": _input_transcript,
    "conversation.item.input_audio_transcription.failed": _input_transcript_failed,
    "input_audio_buffer.committed": _committed,
    "input_audio_buffer.cleared": _cleared,
    "input_audio_buffer.speech_started": _speech_started,
    "input_audio_buffer.speech_stopped": _speech_stopped,
    "input_audio_buffer.timeout_triggered": _timeout,
    "response.created": _response_event(EventType.RESPONSE_STARTED),
    "response.done": _response_event(EventType.RESPONSE_DONE),
    "response.output_item.added": _output_item(EventType.OUTPUT_ITEM_ADDED),
    "response.output_item.done": _output_item(EventType.OUTPUT_ITEM_DONE),
    "response.content_part.added": _content_part(EventType.CONTENT_PART_ADDED),
    "response.content_part.done": _content_part(EventType.CONTENT_PART_DONE),
    "response.output_text.delta": _field_event(EventType.TEXT_DELTA, "delta"),
    "response.output_text.done": _field_event(EventType.TEXT_DONE, "text"),
    "response.output_audio.delta": _audio_delta,
    "response.output_audio.done": _field_event(EventType.AUDIO_DONE, None),
    "response.output_audio_transcript.delta": _field_event(EventType.TRANSCRIPT_DELTA, "delta"),
    "response.output_audio_transcript.done": _field_event(EventType.TRANSCRIPT_DONE, "transcript"),
    "response.function_call_arguments.delta": _field_event(EventType.FUNCTION_CALL_ARGUMENTS_DELTA, "delta"),
    "response.function_call_arguments.done": _function_call_done,
    "rate_limits.updated": _rate_limits,
    **{wire: _passthrough for wire in PASSTHROUGH_TYPES},
}

#: beta wire names (``OpenAI-Beta: realtime=v1``) on top of the GA table: legacy Azure
#: deployments speak beta, and accepting GA names too costs nothing
BETA_DECODERS: dict[str, Decoder] = {
    **GA_DECODERS,
    "response.audio.delta": _audio_delta,
    "response.audio.done": GA_DECODERS["response.output_audio.done"],
    "response.audio_transcript.delta": GA_DECODERS["response.output_audio_transcript.delta"],
    "response.audio_transcript.done": GA_DECODERS["response.output_audio_transcript.done"],
    "response.text.delta": GA_DECODERS["response.output_text.delta"],
    "response.text.done": GA_DECODERS["response.output_text.done"],
    "transcription_session.updated": _passthrough,
}
