"""Configuration and reply scripting for the fake Gemini Live server."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, Union

from ..audio import SynthParams
from ..configcheck import check_at_least_one, check_pacing, pace_s_per_ms, secret_api_keys
from ..faults import Fault, FaultKind, Trigger

__all__ = [
    "FakeGeminiConfig",
    "GeminiReplyContext",
    "ToolCallScript",
    "SUPPORTED_FAULT_KINDS",
    "VERSIONS",
    "default_reply",
    "default_input_transcript",
    "gemini_fault",
]

#: API versions whose paths the server accepts
VERSIONS = ("v1", "v1beta", "v1alpha")

#: fault kinds the Gemini fake carries out. ``SESSION_EXPIRED`` is Gemini's way of ending a
#: connection: ``goAway{timeLeft}`` (``duration_s``, default ``go_away_time_left_s``), then
#: a close 1011 once the time is up.
SUPPORTED_FAULT_KINDS = frozenset({
    FaultKind.CLOSE, FaultKind.TCP_RESET, FaultKind.MALFORMED_JSON, FaultKind.UNKNOWN_EVENT,
    FaultKind.MALFORMED_EVENT, FaultKind.BAD_BASE64_AUDIO, FaultKind.DUPLICATE_EVENT, FaultKind.STALL,
    FaultKind.HALF_OPEN, FaultKind.DELAY, FaultKind.REJECT_HANDSHAKE, FaultKind.HANDSHAKE_TIMEOUT,
    FaultKind.SESSION_EXPIRED,
})


def gemini_fault(fault: Fault) -> Fault:
    """Check that the Gemini fake can carry out ``fault`` and say it in Gemini's terms.

    Event types name Gemini frames: a server frame's type is its top-level field
    (``setupComplete``, ``toolCall``, ``goAway``, ...), or for ``serverContent`` the part it
    carries (``modelTurn``, ``outputTranscription``, ``inputTranscription``,
    ``generationComplete``, ``turnComplete``, ``interrupted``); a client frame's type is its
    top-level field in camelCase (``setup``, ``realtimeInput``, ``clientContent``,
    ``toolResponse``). ``MID_RESPONSE`` counts ``modelTurn`` frames (the audio chunks).
    """
    if not isinstance(fault, Fault):
        raise TypeError("faults must be Fault objects")
    if fault.kind not in SUPPORTED_FAULT_KINDS:
        raise ValueError(f"the fake Gemini Live server does not implement fault kind {fault.kind.value!r}")
    follow_ups = tuple(gemini_fault(f) for f in fault.then)
    if fault.trigger is Trigger.MID_RESPONSE:
        return Fault(**{**_fields(fault), "trigger": Trigger.AFTER_SERVER_EVENTS, "event_type": "modelTurn",
                        "then": follow_ups})
    return Fault(**{**_fields(fault), "then": follow_ups}) if follow_ups != fault.then else fault


def _fields(fault: Fault) -> dict[str, Any]:
    return {name: getattr(fault, name) for name in Fault.__dataclass_fields__}


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallScript:
    """A function call the server makes instead of the next spoken reply."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    call_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a tool call needs a non-empty name")
        if not isinstance(self.args, Mapping):
            raise TypeError("args must be a mapping (Gemini sends args as a JSON object)")
        json.dumps(dict(self.args))  # fails now, not mid-session, when args are not JSON
        object.__setattr__(self, "args", dict(self.args))


@dataclass(frozen=True, slots=True, kw_only=True)
class GeminiReplyContext:
    """What a reply-script callable sees."""

    index: int                  # 0-based count of replies in this session
    session_index: int
    instructions: str
    last_user_text: str | None  # text or transcript of the newest user turn
    tool_output: str | None     # JSON of the function responses this reply answers, if any
    history: tuple[tuple[str, str], ...]  # (role, text) of the conversation so far


ReplyScript = Union[Sequence[str], Callable[[GeminiReplyContext], str]]
TranscriptScript = Union[Sequence[str], Callable[[int, int], str]]  # (turn index, audio_ms) -> text


def default_reply(ctx: GeminiReplyContext) -> str:
    """Deterministic default reply: echoes the user's text or the tool output."""
    if ctx.tool_output is not None:
        return f"The tool returned {ctx.tool_output}"
    if ctx.last_user_text:
        return f"You said {ctx.last_user_text}"
    return f"Reply number {ctx.index + 1}."


def default_input_transcript(turn: int, audio_ms: int) -> str:
    """Deterministic default transcription of a spoken user turn."""
    return f"user turn {turn + 1} lasting {audio_ms} milliseconds"


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeGeminiConfig:
    """Everything the fake Gemini Live server can be told. Durations carry their unit."""

    host: str = "127.0.0.1"
    port: int = 0
    tls: bool = False
    # Auth: None accepts any non-empty key (x-goog-api-key header or ?key=) or ephemeral
    # token (Authorization: Token auth_tokens/...); a tuple accepts only those.
    api_keys: tuple[str, ...] | None = None
    # Replies.
    responses: ReplyScript | None = None
    input_transcripts: TranscriptScript | None = None
    synth: SynthParams = field(default_factory=SynthParams)
    speed: float = 10.0            # reply audio paced this many times faster than real time; inf = no pacing
    chunk_ms: int = 100            # reply audio per modelTurn frame
    output_sample_rate: int = 24000
    # Energy VAD (automatic activity detection).
    vad_threshold_dbfs: float = -40.0
    vad_silence_ms: int = 500
    vad_prefix_padding_ms: int = 300
    vad_min_speech_ms: int = 20
    # Connection limits (Gemini: about 10 minutes per connection, then goAway).
    go_away_after_s: float | None = None
    go_away_time_left_s: float = 5.0
    go_away_close_code: int = 1011
    go_away_close_reason: str = "Deadline expired"
    # Resumption.
    grant_handles: bool = True     # send sessionResumptionUpdate when the setup asks for resumption
    resumption_update_every: int = 25  # also a fresh handle after this many client messages (0: only per turn)
    refuse_all_handles: bool = False
    refuse_handles_while_open: bool = True  # as the live service was reported to (close 1011)
    max_handles: int = 1000
    # Limits and bookkeeping.
    max_message_bytes: int = 16 * 2**20
    max_turn_audio_ms: int = 15 * 60 * 1000
    max_history_turns: int = 1000
    max_recorded_frames: int = 10_000
    max_recorded_sessions: int = 1000
    record_audio_payloads: bool = True
    open_timeout_s: float | None = 10.0
    close_timeout_s: float = 2.0
    faults: tuple[Fault, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", tuple(gemini_fault(f) for f in self.faults))
        object.__setattr__(self, "api_keys", secret_api_keys(self.api_keys))
        check_pacing(self.speed, self.chunk_ms)
        if self.output_sample_rate not in (16000, 24000, 48000):
            raise ValueError("output_sample_rate must be 16000, 24000 or 48000")
        if self.go_away_after_s is not None and self.go_away_after_s <= 0:
            raise ValueError("go_away_after_s must be > 0 or None")
        if self.go_away_time_left_s < 0:
            raise ValueError("go_away_time_left_s must be >= 0")
        check_at_least_one({
            "max_handles": self.max_handles, "max_message_bytes": self.max_message_bytes,
            "max_turn_audio_ms": self.max_turn_audio_ms, "max_history_turns": self.max_history_turns,
            "max_recorded_frames": self.max_recorded_frames, "max_recorded_sessions": self.max_recorded_sessions})
        if self.resumption_update_every < 0:
            raise ValueError("resumption_update_every must be >= 0")
        if self.vad_silence_ms < 10 or self.vad_prefix_padding_ms < 0 or self.vad_min_speech_ms < 0:
            raise ValueError("vad_silence_ms >= 10, vad_prefix_padding_ms >= 0 and vad_min_speech_ms >= 0")

    @property
    def pace_s_per_ms(self) -> float:
        """Seconds to wait per millisecond of reply audio sent (0 when unpaced)."""
        return pace_s_per_ms(self.speed)
