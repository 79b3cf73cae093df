"""The Gemini Live wire codec: pure functions, JSON text in and out.

Decoding (:func:`decode`) turns one server frame into typed messages, one per top-level
field, in wire order, through a table from field name to decoder. A field the table does
not know becomes :class:`Unknown`; a frame or field that breaks the protocol becomes
:class:`Malformed`. Neither raises. Both JSON spellings are read (proto3 JSON parsers take
``turnComplete`` and ``turn_complete`` alike), at every level, except inside the user data
of ``args``/``response``.

Encoding (``encode_*``) writes camelCase frames that google-genai's ``LiveClientMessage``
accepts with no unknown field. Audio is base64 of PCM16 mono at 16 kHz.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ..base64_audio import b64decode_strict, b64encode
from .config import INPUT_SAMPLE_RATE, GeminiConfig, function_declaration

__all__ = [
    "SetupComplete",
    "ServerContent",
    "ToolCallPart",
    "ToolCall",
    "ToolCallCancellation",
    "UsageReport",
    "GoAway",
    "ResumptionUpdate",
    "VoiceActivity",
    "Unknown",
    "Malformed",
    "ServerMessage",
    "HistoryTurn",
    "ToolResult",
    "decode",
    "parse_duration_ms",
    "encode_setup",
    "encode_audio",
    "encode_audio_stream_end",
    "encode_activity_start",
    "encode_activity_end",
    "encode_realtime_text",
    "encode_client_content",
    "encode_tool_response",
    "encode_context_update",
    "encode_raw",
    "CLIENT_FIELDS",
    "AUDIO_MIME_TYPE",
]

AUDIO_MIME_TYPE = f"audio/pcm;rate={INPUT_SAMPLE_RATE}"
_OPAQUE = frozenset({"args", "response"})
_SNAKE = re.compile(r"_([a-z0-9])")
_DURATION = re.compile(r"^(\d+)(?:\.(\d{1,9}))?s$")
_URLSAFE = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")


# ---------------------------------------------------------------- server messages
@dataclass(frozen=True, slots=True, kw_only=True)
class SetupComplete:
    session_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerContent:
    """One ``serverContent``: model output parts and the turn's lifecycle flags."""

    audio: tuple[bytes, ...] = ()
    text: tuple[str, ...] = ()
    output_transcription: str | None = None
    input_transcription: str | None = None
    #: ``inputTranscription.finished``: the service says the user's turn is transcribed whole
    input_transcription_finished: bool = False
    interrupted: bool = False
    generation_complete: bool = False
    turn_complete: bool = False
    turn_complete_reason: str | None = None
    waiting_for_input: bool = False

    @property
    def has_output(self) -> bool:
        return bool(self.audio or self.text or self.output_transcription)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallPart:
    call_id: str
    name: str
    arguments: str  # the JSON text of ``args``


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    calls: tuple[ToolCallPart, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallCancellation:
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageReport:
    """``usageMetadata``: running totals for the session (Gemini reports them cumulative)."""

    prompt_tokens: int = 0
    response_tokens: int = 0
    cached_tokens: int = 0
    prompt_by_modality: Mapping[str, int] | None = None
    response_by_modality: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GoAway:
    time_left_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumptionUpdate:
    new_handle: str | None = None
    resumable: bool = False
    last_consumed_index: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VoiceActivity:
    """``voiceActivity`` / ``voiceActivityDetectionSignal``: the service heard speech start or stop."""

    started: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown:
    """A top-level field this codec does not know; ``raw`` is the whole frame."""

    name: str
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Malformed:
    """A frame or field that breaks the protocol; ``field`` names it (None: the frame)."""

    reason: str
    field: str | None = None
    raw: Mapping[str, Any] | None = None


ServerMessage = (SetupComplete | ServerContent | ToolCall | ToolCallCancellation | UsageReport | GoAway
                 | ResumptionUpdate | VoiceActivity | Unknown | Malformed)


class _Bad(ValueError):
    """A field breaks the protocol (turned into :class:`Malformed` by :func:`decode`)."""


def _camel(name: str) -> str:
    return _SNAKE.sub(lambda m: m.group(1).upper(), name)


def _camel_keys(value: Any) -> Any:
    if isinstance(value, list):
        return [_camel_keys(v) for v in value]
    if not isinstance(value, dict):
        return value
    return {_camel(str(k)): (v if _camel(str(k)) in _OPAQUE else _camel_keys(v)) for k, v in value.items()}


def _obj(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"{name} must be an object")
    return value


def _opt_str(msg: Mapping[str, Any], key: str) -> str | None:
    value = msg.get(key)
    if value is not None and not isinstance(value, str):
        raise _Bad(f"{key} must be a string")
    return value


def _flag(msg: Mapping[str, Any], key: str) -> bool:
    value = msg.get(key, False)
    if not isinstance(value, bool):
        raise _Bad(f"{key} must be a boolean")
    return value


def _count(msg: Mapping[str, Any], key: str) -> int:
    """A proto int32/int64: a JSON number or (int64) a decimal string."""
    value = msg.get(key, 0)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Bad(f"{key} must be a non-negative integer")
    return value


def _b64decode(text: Any) -> bytes:
    if not isinstance(text, str):
        raise _Bad("inlineData.data must be a base64 string")
    try:
        if _URLSAFE.match(text) and ("-" in text or "_" in text):
            # proto3 JSON also accepts the URL-safe alphabet
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return b64decode_strict(text)
    except ValueError:  # binascii.Error is a ValueError
        raise _Bad("inlineData.data is not valid base64") from None


def parse_duration_ms(text: Any) -> int:
    """A ``google.protobuf.Duration`` in JSON (``"50s"``, ``"1.5s"``) -> whole milliseconds."""
    if not isinstance(text, str):
        raise _Bad("timeLeft must be a duration string such as '50s'")
    match = _DURATION.match(text)
    if match is None:
        raise _Bad(f"timeLeft {text!r} is not a duration")
    frac = (match.group(2) or "").ljust(3, "0")[:3]
    return int(match.group(1)) * 1000 + int(frac)


def _setup_complete(body: Any) -> SetupComplete:
    body = _obj(body, "setupComplete")
    return SetupComplete(session_id=_opt_str(body, "sessionId"))


def _server_content(body: Any) -> ServerContent:
    body = _obj(body, "serverContent")
    audio: list[bytes] = []
    text: list[str] = []
    turn = body.get("modelTurn")
    if turn is not None:
        parts = _obj(turn, "modelTurn").get("parts") or []
        if not isinstance(parts, list):
            raise _Bad("modelTurn.parts must be a list")
        for part in parts:
            part = _obj(part, "part")
            if part.get("thought") is True:
                continue  # the model's thinking is not part of the reply
            inline = part.get("inlineData")
            if inline is not None:
                inline = _obj(inline, "inlineData")
                mime = _opt_str(inline, "mimeType") or ""
                if not mime.startswith("audio/pcm"):
                    raise _Bad(f"unsupported inlineData mime type {mime!r}")
                audio.append(_b64decode(inline.get("data")))
            elif isinstance(part.get("text"), str):
                text.append(part["text"])
    return ServerContent(
        audio=tuple(audio), text=tuple(text),
        output_transcription=_transcription(body, "outputTranscription"),
        input_transcription=_transcription(body, "inputTranscription"),
        input_transcription_finished=_transcription_finished(body, "inputTranscription"),
        interrupted=_flag(body, "interrupted"),
        generation_complete=_flag(body, "generationComplete"),
        turn_complete=_flag(body, "turnComplete"),
        turn_complete_reason=_opt_str(body, "turnCompleteReason"),
        waiting_for_input=_flag(body, "waitingForInput"),
    )


def _transcription(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    return _opt_str(_obj(value, key), "text")


def _transcription_finished(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key)
    return value is not None and _flag(_obj(value, key), "finished")


def _tool_call(body: Any) -> ToolCall:
    calls = _obj(body, "toolCall").get("functionCalls") or []
    if not isinstance(calls, list):
        raise _Bad("toolCall.functionCalls must be a list")
    out: list[ToolCallPart] = []
    for call in calls:
        call = _obj(call, "functionCall")
        call_id, name = call.get("id"), call.get("name")
        if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
            raise _Bad("a function call needs a string id and name")
        args = call.get("args", {})
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise _Bad("functionCall.args must be an object")
        out.append(ToolCallPart(call_id=call_id, name=name, arguments=json.dumps(args, separators=(",", ":"))))
    return ToolCall(calls=tuple(out))


def _tool_call_cancellation(body: Any) -> ToolCallCancellation:
    ids = _obj(body, "toolCallCancellation").get("ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise _Bad("toolCallCancellation.ids must be a list of strings")
    return ToolCallCancellation(ids=tuple(ids))


def _by_modality(body: Mapping[str, Any], key: str) -> dict[str, int] | None:
    details = body.get(key)
    if details is None:
        return None
    if not isinstance(details, list):
        raise _Bad(f"{key} must be a list")
    out: dict[str, int] = {}
    for item in details:
        item = _obj(item, key)
        modality = item.get("modality", "MODALITY_UNSPECIFIED")
        if not isinstance(modality, str):
            raise _Bad(f"{key}.modality must be a string")
        out[modality] = out.get(modality, 0) + _count(item, "tokenCount")
    return out


def _usage(body: Any) -> UsageReport:
    body = _obj(body, "usageMetadata")
    return UsageReport(prompt_tokens=_count(body, "promptTokenCount"),
                       response_tokens=_count(body, "responseTokenCount"),
                       cached_tokens=_count(body, "cachedContentTokenCount"),
                       prompt_by_modality=_by_modality(body, "promptTokensDetails"),
                       response_by_modality=_by_modality(body, "responseTokensDetails"))


def _go_away(body: Any) -> GoAway:
    body = _obj(body, "goAway")
    left = body.get("timeLeft")
    return GoAway(time_left_ms=None if left is None else parse_duration_ms(left))


def _resumption_update(body: Any) -> ResumptionUpdate:
    body = _obj(body, "sessionResumptionUpdate")
    index = body.get("lastConsumedClientMessageIndex")
    return ResumptionUpdate(new_handle=_opt_str(body, "newHandle") or None, resumable=_flag(body, "resumable"),
                            last_consumed_index=None if index is None else _count(body, "lastConsumedClientMessageIndex"))


def _voice_activity(body: Any) -> VoiceActivity:
    kind = _obj(body, "voiceActivity").get("voiceActivityType")
    if kind not in ("ACTIVITY_START", "ACTIVITY_END"):
        raise _Bad(f"unknown voiceActivityType {kind!r}")
    return VoiceActivity(started=kind == "ACTIVITY_START")


def _vad_signal(body: Any) -> VoiceActivity:
    kind = _obj(body, "voiceActivityDetectionSignal").get("vadSignalType")
    if kind not in ("VAD_SIGNAL_TYPE_SOS", "VAD_SIGNAL_TYPE_EOS"):
        raise _Bad(f"unknown vadSignalType {kind!r}")
    return VoiceActivity(started=kind == "VAD_SIGNAL_TYPE_SOS")


_DECODERS: dict[str, Callable[[Any], ServerMessage]] = {
    "setupComplete": _setup_complete,
    "serverContent": _server_content,
    "toolCall": _tool_call,
    "toolCallCancellation": _tool_call_cancellation,
    "usageMetadata": _usage,
    "goAway": _go_away,
    "sessionResumptionUpdate": _resumption_update,
    "voiceActivity": _voice_activity,
    "voiceActivityDetectionSignal": _vad_signal,
}


def decode(frame: str | bytes) -> list[ServerMessage]:
    """One server frame -> its messages, in wire order. Never raises."""
    try:
        message = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        return [Malformed(reason="frame is not valid JSON")]
    if not isinstance(message, dict):
        return [Malformed(reason="frame is not a JSON object")]
    message = _camel_keys(message)
    out: list[ServerMessage] = []
    for name, body in message.items():
        decoder = _DECODERS.get(name)
        if decoder is None:
            out.append(Unknown(name=name, raw=_without_audio(message)))
            continue
        try:
            out.append(decoder(body))
        except _Bad as exc:
            out.append(Malformed(reason=str(exc), field=name, raw=_without_audio(message)))
    if not out:
        out.append(Unknown(name="", raw=message))
    return out


def _without_audio(message: dict[str, Any]) -> dict[str, Any]:
    """The frame for ``raw``, audio payloads elided (audio is never kept in ``raw``)."""
    content = message.get("serverContent")
    if not isinstance(content, dict) or "modelTurn" not in content:
        return message
    return {**message, "serverContent": {**content, "modelTurn": "<model turn elided>"}}


# ---------------------------------------------------------------- client frames
@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryTurn:
    """One turn of ``clientContent``: ``role`` is ``user`` or ``model``; ``parts`` are
    Gemini ``Part`` objects (``{"text"}``, ``{"functionCall"}``, ``{"functionResponse"}``)."""

    role: str
    parts: tuple[Mapping[str, Any], ...]

    def __post_init__(self) -> None:
        if self.role not in ("user", "model"):
            raise ValueError(f"role must be 'user' or 'model', got {self.role!r}")
        object.__setattr__(self, "parts", tuple(dict(p) for p in self.parts))
        if not self.parts:
            raise ValueError("a turn needs at least one part")

    @classmethod
    def text(cls, role: str, text: str) -> "HistoryTurn":
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return cls(role=role, parts=({"text": text},))


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResult:
    """One ``functionResponse``: ``scheduling`` is None (the service default) or one of
    ``SILENT``, ``WHEN_IDLE``, ``INTERRUPT``."""

    call_id: str
    name: str
    response: Mapping[str, Any]
    scheduling: str | None = None

    def __post_init__(self) -> None:
        if not self.call_id or not self.name:
            raise ValueError("a function response needs the call id and the function name")
        if self.scheduling not in (None, "SILENT", "WHEN_IDLE", "INTERRUPT"):
            raise ValueError(f"scheduling must be SILENT, WHEN_IDLE, INTERRUPT or None, got {self.scheduling!r}")


def _dumps(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def _automatic_activity_detection(config: GeminiConfig) -> dict[str, Any]:
    settings = config.turn_detection_settings
    if settings.manual:
        return {"disabled": True}
    detection: dict[str, Any] = {"disabled": False}
    if settings.sensitivity is not None:
        level = settings.sensitivity.upper()
        detection["startOfSpeechSensitivity"] = f"START_SENSITIVITY_{level}"
        detection["endOfSpeechSensitivity"] = f"END_SENSITIVITY_{level}"
    if settings.prefix_ms is not None:
        detection["prefixPaddingMs"] = settings.prefix_ms
    if settings.silence_ms is not None:
        detection["silenceDurationMs"] = settings.silence_ms
    return detection


def encode_setup(config: GeminiConfig, *, handle: str | None = None, initial_history: bool = False) -> str:
    """The ``setup`` frame (the first of every connection). ``handle`` resumes a session;
    ``initial_history`` says that ``clientContent`` history follows before realtime input."""
    generation: dict[str, Any] = {"responseModalities": ["TEXT" if config.output_modalities == ("text",) else "AUDIO"]}
    speech: dict[str, Any] = {}
    if config.voice:
        speech["voiceConfig"] = {"prebuiltVoiceConfig": {"voiceName": config.voice}}
    if config.language_code:
        speech["languageCode"] = config.language_code
    if speech:
        generation["speechConfig"] = speech
    if config.temperature is not None:
        generation["temperature"] = config.temperature
    setup: dict[str, Any] = {"model": config.model_name, "generationConfig": generation}
    if config.instructions:
        setup["systemInstruction"] = {"parts": [{"text": config.instructions}]}
    declarations = config.function_declarations
    if declarations:
        setup["tools"] = [{"functionDeclarations": declarations}]
    realtime: dict[str, Any] = {"automaticActivityDetection": _automatic_activity_detection(config)}
    if not config.turn_detection_settings.interrupt_on_speech:
        realtime["activityHandling"] = "NO_INTERRUPTION"
    setup["realtimeInputConfig"] = realtime
    if config.input_transcription:
        setup["inputAudioTranscription"] = {}
    if config.output_transcription:
        setup["outputAudioTranscription"] = {}
    if config.session_resumption:
        resumption: dict[str, Any] = {"handle": handle} if handle else {}
        if config.transparent_resumption:
            resumption["transparent"] = True
        setup["sessionResumption"] = resumption
    elif handle:
        raise ValueError("a resumption handle needs session_resumption=True")
    if config.context_window_compression:
        compression: dict[str, Any] = {"slidingWindow": {}}
        if config.compression_target_tokens is not None:
            compression["slidingWindow"]["targetTokens"] = config.compression_target_tokens
        if config.compression_trigger_tokens is not None:
            compression["triggerTokens"] = config.compression_trigger_tokens
        setup["contextWindowCompression"] = compression
    if initial_history:
        setup["historyConfig"] = {"initialHistoryInClientContent": True}
    return _dumps({"setup": setup})


def encode_audio(pcm: bytes | bytearray | memoryview) -> str:
    """``realtimeInput.audio`` carrying PCM16 mono 16 kHz (the caller checked the byte count)."""
    return '{"realtimeInput":{"audio":{"mimeType":"%s","data":"%s"}}}' % (AUDIO_MIME_TYPE, b64encode(pcm))


def encode_audio_stream_end() -> str:
    """The microphone stopped: the service ends the turn on the audio it has."""
    return '{"realtimeInput":{"audioStreamEnd":true}}'


def encode_activity_start() -> str:
    return '{"realtimeInput":{"activityStart":{}}}'


def encode_activity_end() -> str:
    return '{"realtimeInput":{"activityEnd":{}}}'


def encode_realtime_text(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return _dumps({"realtimeInput": {"text": text}})


def encode_client_content(turns: Sequence[HistoryTurn], *, turn_complete: bool) -> str:
    """``clientContent``: turns appended in order; ``turn_complete`` asks for a reply
    (during the initial history: ends the history, without a reply)."""
    content: dict[str, Any] = {"turns": [{"role": t.role, "parts": [dict(p) for p in t.parts]} for t in turns]}
    content["turnComplete"] = turn_complete
    return _dumps({"clientContent": content})


#: client message fields, for raw access
CLIENT_FIELDS = frozenset({"clientContent", "realtimeInput", "toolResponse", "contextUpdate"})


def encode_raw(kind: str, body: Mapping[str, Any]) -> str:
    """``{kind: body}`` for raw access; ``kind`` is a client message field (not ``setup``)."""
    if kind not in CLIENT_FIELDS:
        raise ValueError(f"kind must be one of {sorted(CLIENT_FIELDS)}, got {kind!r}")
    if not isinstance(body, Mapping):
        raise TypeError("body must be a mapping")
    return _dumps({kind: dict(body)})


def encode_context_update(*, instructions: str | None = None,
                          tools: Sequence[Mapping[str, Any]] | None = None) -> str:
    """``contextUpdate``: system instructions and/or tools (neutral shape) for the session."""
    update: dict[str, Any] = {}
    if instructions is not None:
        if not isinstance(instructions, str):
            raise TypeError("instructions must be a str")
        update["systemInstruction"] = {"parts": [{"text": instructions}]}
    if tools is not None:
        declarations = [function_declaration(tool) for tool in tools]
        update["tools"] = {"tools": [{"functionDeclarations": declarations}] if declarations else []}
    return _dumps({"contextUpdate": update})


def encode_tool_response(results: Sequence[ToolResult]) -> str:
    if not results:
        raise ValueError("a tool response needs at least one function response")
    responses = []
    for result in results:
        response: dict[str, Any] = {"id": result.call_id, "name": result.name, "response": dict(result.response)}
        if result.scheduling is not None:
            response["scheduling"] = result.scheduling
        responses.append(response)
    return _dumps({"toolResponse": {"functionResponses": responses}})
