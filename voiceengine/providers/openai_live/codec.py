"""Sans-I/O wire codec of OpenAI Live: JSON text <-> typed wire records. Pure and stateless.

Encoding builds the client events of ``openai.types.live.ClientEvent`` (nothing else: no
unknown keys). Decoding is a table from wire ``type`` to a decoder returning one frozen
record; :func:`decode` never raises: a message that is not JSON, or a known type with
missing or mistyped fields, becomes :class:`Malformed`, an unknown type :class:`Unknown`.
What the records *mean* for a conversation (replies, turns, barge-in) is decided by
:mod:`.session`, which keeps the state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

from ..base64_audio import b64decode_strict, b64encode

__all__ = [
    "WireRecord", "SessionStarted", "SessionUpdated", "OutputAudio", "OutputTranscript", "InputTranscript",
    "DelegationCreated", "BackendEvent", "UsageUpdated", "SessionClosed", "ServerError", "Ack", "Info",
    "Unknown", "Malformed", "decode", "DECODERS", "b64encode",
    "encode_session_start", "encode_audio", "encode_context", "encode_user_message", "encode_function_output",
    "encode_response_create", "encode_session_update", "encode_session_close", "encode_mute",
    "session_config", "FATAL_CODES",
]

#: error codes after which the session cannot go on and must not be retried
FATAL_CODES = frozenset({"invalid_api_key", "insufficient_quota", "account_deactivated",
                         "billing_hard_limit_reached"})
#: Live's acknowledgement events: they confirm a command and carry nothing else
ACK_TYPES = frozenset({
    "session.input_audio.muted", "session.input_audio.unmuted", "session.instructions.appended",
    "session.thinking.appended", "session.commentary.appended",
})


# ---------------------------------------------------------------------------- records
@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted:
    session: Mapping[str, Any]
    session_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionUpdated:
    session: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputAudio:
    """Decoded output audio (PCM16 at the session rate)."""

    pcm: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputTranscript:
    delta: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InputTranscript:
    delta: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DelegationCreated:
    delegation_id: str
    target: str
    response_id: str | None
    offset_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendEvent:
    """A nested Responses streaming event of a delegation (``event`` is the nested object)."""

    delegation_id: str | None
    event_type: str
    event: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageUpdated:
    """Cumulative billable seconds of the session (never to be summed)."""

    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionClosed:
    reason: str
    seconds: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerError:
    code: str | None
    message: str
    type: str | None
    param: str | None
    client_event_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    type: str
    client_event_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Info:
    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown:
    type: str
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Malformed:
    """A message we could not read; ``type`` is its wire type when it had one."""

    type: str | None
    reason: str


WireRecord = (SessionStarted | SessionUpdated | OutputAudio | OutputTranscript | InputTranscript
              | DelegationCreated | BackendEvent | UsageUpdated | SessionClosed | ServerError | Ack | Info
              | Unknown | Malformed)


class _Bad(Exception):
    """A field is missing or has the wrong type (becomes :class:`Malformed`)."""


# ---------------------------------------------------------------------------- field readers
def _str(ev: Mapping[str, Any], key: str) -> str:
    value = ev.get(key)
    if not isinstance(value, str):
        raise _Bad(f"'{key}' must be a string")
    return value


def _opt_str(ev: Mapping[str, Any], key: str) -> str | None:
    value = ev.get(key)
    if value is not None and not isinstance(value, str):
        raise _Bad(f"'{key}' must be a string or null")
    return value


def _int(ev: Mapping[str, Any], key: str) -> int:
    value = ev.get(key)
    if type(value) is not int:
        raise _Bad(f"'{key}' must be an integer")
    return value


def _obj(ev: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = ev.get(key)
    if not isinstance(value, dict):
        raise _Bad(f"'{key}' must be an object")
    return MappingProxyType(value)


def _seconds(usage: Mapping[str, Any]) -> float:
    value = usage.get("seconds")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise _Bad("'usage.seconds' must be a number >= 0")
    return float(value)


def _b64decode(text: str) -> bytes:
    try:
        return b64decode_strict(text)
    except ValueError:  # binascii.Error and UnicodeEncodeError are ValueErrors
        raise _Bad("'delta' is not valid base64") from None


# ---------------------------------------------------------------------------- decoders
def _session_started(ev: Mapping[str, Any]) -> WireRecord:
    session = _obj(ev, "session")
    return SessionStarted(session=session, session_id=_opt_str(session, "id"))


def _session_updated(ev: Mapping[str, Any]) -> WireRecord:
    return SessionUpdated(session=_obj(ev, "session"))


def _output_audio(ev: Mapping[str, Any]) -> WireRecord:
    pcm = _b64decode(_str(ev, "delta"))
    if len(pcm) % 2:
        raise _Bad("output audio must hold whole PCM16 samples")
    return OutputAudio(pcm=pcm)


def _output_transcript(ev: Mapping[str, Any]) -> WireRecord:
    return OutputTranscript(delta=_str(ev, "delta"), start_ms=_int(ev, "start_ms"), end_ms=_int(ev, "end_ms"))


def _input_transcript(ev: Mapping[str, Any]) -> WireRecord:
    return InputTranscript(delta=_str(ev, "delta"), start_ms=_int(ev, "start_ms"), end_ms=_int(ev, "end_ms"))


def _delegation_created(ev: Mapping[str, Any]) -> WireRecord:
    delegation = _obj(ev, "delegation")
    return DelegationCreated(delegation_id=_str(delegation, "id"), target=_str(delegation, "target"),
                             response_id=_opt_str(delegation, "response_id"), offset_ms=_int(ev, "offset_ms"))


def _response_event(ev: Mapping[str, Any]) -> WireRecord:
    nested = _obj(ev, "event")
    return BackendEvent(delegation_id=_opt_str(ev, "delegation_id"), event_type=_str(nested, "type"), event=nested)


def _usage_updated(ev: Mapping[str, Any]) -> WireRecord:
    return UsageUpdated(seconds=_seconds(_obj(ev, "usage")))


def _session_closed(ev: Mapping[str, Any]) -> WireRecord:
    usage = ev.get("usage")
    return SessionClosed(reason=_str(ev, "reason"),
                         seconds=_seconds(usage) if isinstance(usage, dict) else None)


def _error(ev: Mapping[str, Any]) -> WireRecord:
    err = _obj(ev, "error")
    client_event_id = _opt_str(err, "client_event_id") or _opt_str(ev, "client_event_id")
    return ServerError(code=_opt_str(err, "code"), message=_opt_str(err, "message") or "",
                       type=_opt_str(err, "type"), param=_opt_str(err, "param"), client_event_id=client_event_id)


def _ack(ev: Mapping[str, Any]) -> WireRecord:
    return Ack(type=_str(ev, "type"), client_event_id=_opt_str(ev, "client_event_id"))


def _info(ev: Mapping[str, Any]) -> WireRecord:
    return Info(code=_str(ev, "code"), message=_str(ev, "message"))


Decoder = Callable[[Mapping[str, Any]], WireRecord]

#: wire type -> decoder (read-only)
DECODERS: Mapping[str, Decoder] = MappingProxyType({
    "session.started": _session_started,
    "session.updated": _session_updated,
    "session.output_audio.delta": _output_audio,
    "session.output_transcript.delta": _output_transcript,
    "session.input_transcript.delta": _input_transcript,
    "session.delegation.created": _delegation_created,
    "response.event": _response_event,
    "session.usage.updated": _usage_updated,
    "session.closed": _session_closed,
    "error": _error,
    "info": _info,
    **{t: _ack for t in ACK_TYPES},
})


def decode(text: str | bytes) -> WireRecord:
    """One server message -> one record. Never raises."""
    try:
        ev = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return Malformed(type=None, reason="not JSON")
    if not isinstance(ev, dict):
        return Malformed(type=None, reason="not a JSON object")
    etype = ev.get("type")
    if not isinstance(etype, str):
        return Malformed(type=None, reason="no 'type'")
    decoder = DECODERS.get(etype)
    if decoder is None:
        return Unknown(type=etype, raw=MappingProxyType(ev))
    try:
        return decoder(ev)
    except _Bad as exc:
        return Malformed(type=etype, reason=str(exc))


# ---------------------------------------------------------------------------- encoders
def _dumps(ev: Mapping[str, Any]) -> str:
    return json.dumps(ev, separators=(",", ":"), ensure_ascii=False)


def _with_id(ev: dict[str, Any], event_id: str | None) -> str:
    if event_id is not None:
        ev["event_id"] = event_id
    return _dumps(ev)


def session_config(*, model: str, instructions: str | None, voice: str | None, sample_rate: int,
                   tools: Sequence[Mapping[str, Any]], backend_model: str, backend_instructions: str | None,
                   acknowledgement_delay_ms: int | None,
                   history: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """The ``session`` object of ``session.start``.

    ``tools`` (function tools) turn on Responses delegation on ``backend_model``;
    ``history`` is (role, text) pairs, role ``user``/``assistant``/``developer``, sent as the
    session's text-only ``input`` (how a restored session gets its conversation back).
    """
    audio: dict[str, Any] = {"format": {"type": "audio/pcm", "rate": sample_rate}}
    if voice is not None:
        audio["output"] = {"voice": voice}
    session: dict[str, Any] = {"model": model, "audio": audio}
    if instructions:
        session["instructions"] = instructions
    if tools:
        backend: dict[str, Any] = {"model": backend_model, "tools": [_function_tool(t) for t in tools]}
        if backend_instructions:
            backend["instructions"] = backend_instructions
        delegation: dict[str, Any] = {"type": "responses", "responses": backend}
        if acknowledgement_delay_ms is not None:
            delegation["acknowledgement_delay_ms"] = acknowledgement_delay_ms
        session["delegation"] = delegation
    if history:
        session["input"] = [_history_item(role, text) for role, text in history]
    return session


def _function_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "function", "name": tool["name"]}
    for key in ("description", "parameters", "strict"):
        if tool.get(key) is not None:
            out[key] = tool[key]
    return out


def _history_item(role: str, text: str) -> dict[str, Any]:
    if role == "assistant":
        return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    if role in ("user", "developer"):
        return {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}
    raise ValueError(f"history role must be user, assistant or developer, got {role!r}")


def encode_session_start(session: Mapping[str, Any], event_id: str | None = None) -> str:
    return _with_id({"type": "session.start", "session": dict(session)}, event_id)


def encode_session_update(session: Mapping[str, Any], event_id: str | None = None) -> str:
    return _with_id({"type": "session.update", "session": dict(session)}, event_id)


def encode_audio(pcm: bytes | bytearray | memoryview) -> str:
    """``session.input_audio.append`` (no event_id: appends have no acknowledgement)."""
    return '{"type":"session.input_audio.append","audio":"' + b64encode(pcm) + '"}'


def encode_context(kind: str, text: str, event_id: str | None = None) -> str:
    """``session.thinking|instructions|commentary.append`` with ``delegation_id: null``."""
    if kind not in ("thinking", "instructions", "commentary"):
        raise ValueError(f"kind must be thinking, instructions or commentary, got {kind!r}")
    return _with_id({"type": f"session.{kind}.append", "content": text, "delegation_id": None}, event_id)


def encode_user_message(text: str, event_id: str | None = None) -> str:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return _with_id({"type": "response.item.create", "item": item}, event_id)


def encode_function_output(call_id: str, output: str, event_id: str | None = None) -> str:
    item = {"type": "function_call_output", "call_id": call_id, "output": output}
    return _with_id({"type": "response.item.create", "item": item}, event_id)


def encode_response_create(event_id: str | None = None) -> str:
    return _with_id({"type": "response.create"}, event_id)


def encode_session_close(event_id: str | None = None) -> str:
    return _with_id({"type": "session.close"}, event_id)


def encode_mute(muted: bool, event_id: str | None = None) -> str:
    return _with_id({"type": "session.input_audio.mute" if muted else "session.input_audio.unmute"}, event_id)
