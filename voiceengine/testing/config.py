"""Configuration and reply scripting for the fake Realtime server."""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, Union

from .audio import SynthParams
from .configcheck import check_at_least_one, check_pacing, pace_s_per_ms, secret_api_keys
from .faults import Fault

__all__ = [
    "AuthFailureMode",
    "FunctionCallScript",
    "ScriptedResponse",
    "ResponseContext",
    "FakeServerConfig",
    "ResponseScript",
    "TranscriptScript",
]


class AuthFailureMode(enum.Enum):
    """How a missing or wrong API key is refused.

    ``ERROR_EVENT`` mirrors what users report from the real endpoint for an unknown key:
    the upgrade succeeds, an ``error`` event with code ``invalid_api_key`` follows, then the
    socket is closed (``auth_close_code``). ``HTTP_401`` refuses the upgrade instead.
    """

    ERROR_EVENT = "error_event"
    HTTP_401 = "http_401"


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionCallScript:
    """A function call the scripted reply makes. ``arguments`` may be a JSON string or a mapping."""

    name: str
    arguments: str | Mapping[str, Any] = "{}"
    call_id: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("function name must not be empty")
        if not isinstance(self.arguments, str):
            object.__setattr__(self, "arguments", json.dumps(dict(self.arguments), separators=(",", ":")))

    @property
    def arguments_json(self) -> str:
        """The arguments as the JSON string the wire carries."""
        # __post_init__ serialized a mapping; str() only narrows the type
        return str(self.arguments)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptedResponse:
    """What one response says: a message (``text``, spoken or written per the modalities),
    then zero or more function calls. An empty ``text`` with function calls yields only the calls.
    """

    text: str = ""
    function_calls: tuple[FunctionCallScript, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "function_calls", tuple(self.function_calls))
        if not self.text and not self.function_calls:
            # A response with no output is legal on the wire but useless for a script.
            object.__setattr__(self, "text", "OK.")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseContext:
    """What a response-script callable sees."""

    index: int                      # 0-based count of responses in this session
    session_index: int
    response_id: str
    instructions: str
    output_modalities: tuple[str, ...]
    out_of_band: bool
    metadata: Mapping[str, Any] | None
    last_user_text: str | None      # text or transcript of the newest user message in context
    last_function_output: str | None  # output of a function_call_output newer than the last user msg
    items: tuple[Mapping[str, Any], ...]


ResponseScript = Union[Sequence[Union[ScriptedResponse, str]], Callable[[ResponseContext], Union[ScriptedResponse, str]]]
TranscriptScript = Union[Sequence[str], Callable[[int, int], str]]  # (turn index, audio_ms) -> text


def default_response(ctx: ResponseContext) -> ScriptedResponse:
    """Deterministic default reply: echoes the user's text or the function output."""
    if ctx.last_function_output is not None:
        return ScriptedResponse(text=f"The tool returned {ctx.last_function_output}")
    if ctx.last_user_text:
        return ScriptedResponse(text=f"You said {ctx.last_user_text}")
    return ScriptedResponse(text=f"Reply number {ctx.index + 1}.")


def default_transcript(turn: int, audio_ms: int) -> str:
    """Deterministic default user transcription."""
    return f"user turn {turn + 1} lasting {audio_ms} milliseconds"


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeServerConfig:
    """Everything the fake server can be told. All durations carry their unit in the name."""

    host: str = "127.0.0.1"
    port: int = 0
    path: str = "/v1/realtime"
    model: str = "gpt-realtime"
    # Auth: None accepts any non-empty bearer token; a tuple accepts only those keys
    # (kept as a SecretKeys: the repr shows how many, never which; pickling refuses).
    api_keys: tuple[str, ...] | None = None
    auth_failure: AuthFailureMode = AuthFailureMode.ERROR_EVENT
    auth_close_code: int = 1008
    # Replies.
    responses: ResponseScript | None = None
    cycle_responses: bool = True     # a list is cycled; when False the default echo follows the end
    input_transcripts: TranscriptScript | None = None
    synth: SynthParams = field(default_factory=SynthParams)
    speed: float = 10.0              # audio deltas paced this many times faster than real time; inf = no pacing
    chunk_ms: int = 100              # audio per response.output_audio.delta
    # Session defaults (what session.created reports) and VAD.
    voice: str = "marin"
    instructions: str = ""
    turn_detection: Mapping[str, Any] | None = field(default_factory=lambda: {"type": "server_vad"})
    vad_threshold_dbfs: float | None = None   # None: from turn_detection.threshold, see vad.threshold_to_dbfs
    vad_min_speech_ms: int = 20
    min_commit_ms: int = 100
    # On cancel, close the open item (output_audio.done ... output_item.done status incomplete)
    # before response.done; False sends response.done alone. Clients must cope with both.
    cancel_closes_items: bool = True
    # Limits and bookkeeping.
    max_session_s: float | None = 3600.0
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time   # for session.expires_at
    expiry_poll_s: float = 0.05
    max_message_bytes: int = 16 * 2**20
    max_input_buffer_ms: int = 15 * 60 * 1000
    max_history_items: int = 1000
    max_recorded_events: int = 10_000
    max_recorded_sessions: int = 1000
    # Closed sessions ``FakeRealtimeServer.sessions`` keeps with their records (the oldest
    # closed one goes first). None keeps them up to max_recorded_sessions, for tests that
    # read a finished connection; a long-running server (``voiceengine fake-server``) uses
    # 0, and then a closed session leaves nothing but the server's counters.
    keep_closed_sessions: int | None = None
    record_audio_payloads: bool = True
    # Item audio kept for conversation.item.retrieve (and audio_sent_by_item). False keeps
    # only lengths: a long many-session run (the soak) then holds no audio per item.
    retain_item_audio: bool = True
    # Transport.
    open_timeout_s: float | None = 10.0
    close_timeout_s: float = 2.0
    ping_interval_s: float | None = None
    faults: tuple[Fault, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", tuple(self.faults))
        object.__setattr__(self, "api_keys", secret_api_keys(self.api_keys))
        if not self.path.startswith("/"):
            raise ValueError("path must start with '/'")
        check_pacing(self.speed, self.chunk_ms)
        if self.max_session_s is not None and self.max_session_s <= 0:
            raise ValueError("max_session_s must be > 0 or None")
        check_at_least_one({
            "max_message_bytes": self.max_message_bytes, "max_input_buffer_ms": self.max_input_buffer_ms,
            "max_history_items": self.max_history_items, "max_recorded_events": self.max_recorded_events,
            "max_recorded_sessions": self.max_recorded_sessions})
        if self.keep_closed_sessions is not None and self.keep_closed_sessions < 0:
            raise ValueError("keep_closed_sessions must be None or >= 0")
        if self.expiry_poll_s <= 0 or self.close_timeout_s < 0:
            raise ValueError("expiry_poll_s must be > 0 and close_timeout_s >= 0")
        if self.turn_detection is not None and self.turn_detection.get("type") not in ("server_vad", "semantic_vad"):
            raise ValueError("turn_detection must be None or of type server_vad/semantic_vad")

    @property
    def pace_s_per_ms(self) -> float:
        """Seconds to sleep per millisecond of audio sent (0 when unpaced)."""
        return pace_s_per_ms(self.speed)
