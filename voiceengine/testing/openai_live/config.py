"""Configuration and scripting of :class:`~voiceengine.testing.FakeOpenAILiveServer`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, Union

from ..audio import SynthParams
from ..configcheck import check_at_least_one, check_pacing, pace_s_per_ms, secret_api_keys
from ..faults import Fault

__all__ = [
    "FakeOpenAILiveConfig",
    "LiveReplyContext",
    "LiveReplyScript",
    "LiveTranscriptScript",
    "default_live_reply",
    "default_live_transcript",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveReplyContext:
    """What a reply-script callable sees.

    ``kind`` is ``"spoken"`` (a turn the VAD found in the audio), ``"typed"`` (a user message
    sent with ``response.item.create`` + ``response.create``), ``"tool_result"`` (the backend
    continuing after ``function_call_output``) or ``"commentary"`` (``session.commentary.append``).
    """

    index: int                        # 0-based count of replies in this session
    session_index: int
    kind: str
    user_text: str | None             # transcript or typed text of the newest user turn
    function_output: str | None       # the output the backend continues from (tool_result)
    thinking: tuple[str, ...]         # silent context appended so far (session.thinking.append)


LiveReplyScript = Union[Sequence[str], Callable[[LiveReplyContext], str]]
#: a list cycled per spoken turn, or ``(turn index) -> text``
LiveTranscriptScript = Union[Sequence[str], Callable[[int], str]]


def default_live_reply(ctx: LiveReplyContext) -> str:
    """Deterministic default reply: echoes the tool output, the commentary or the user."""
    if ctx.kind == "tool_result":
        return f"The tool returned {ctx.function_output}"
    if ctx.kind == "commentary" and ctx.user_text:
        return ctx.user_text
    if ctx.user_text:
        return f"You said {ctx.user_text}"
    return f"Reply number {ctx.index + 1}."


def default_live_transcript(turn: int) -> str:
    """Deterministic default transcript of the user's spoken turn ``turn`` (0-based)."""
    return f"user turn {turn + 1}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeOpenAILiveConfig:
    """Everything the fake Live server can be told. Durations carry their unit in the name.

    * Auth: ``api_keys=None`` accepts any non-empty bearer token, a tuple only those keys;
      anything else is refused with HTTP 401.
    * Turns: energy VAD over the received audio (``vad_*``); a turn ends after
      ``vad_silence_ms`` of quiet, then the reply starts. Talking over a reply stops it.
    * ``replies`` / ``input_transcripts``: scripts (a list cycled, or a callable).
    * ``tool_arguments``: the JSON arguments of the scripted tool call (a mapping or a string).
    * ``delegate_spoken_turns``: when tools are declared, a *spoken* turn also runs the scripted
      delegation (by default only typed turns do).
    * ``input_word_interval_ms``: while the user speaks, one more word of the turn's
      transcript goes out per this much speech (the first at once; what is left at the turn's end).
    * ``idle_output_ms``: like the real service, stream a near-silent output track between
      replies, one ``session.output_audio.delta`` per ``idle_output_ms`` of input heard
      (None: no idle track). ``idle_output_amplitude`` is its peak in PCM16 units.
    * ``max_session_s``: the session ends with ``session.closed`` reason ``expired`` after this
      long on ``clock`` (None: never); ``expires_at`` reports ``session_duration_s``.
    * ``speed``: reply audio is paced this many times faster than real time (``math.inf``: no pacing).
    """

    host: str = "127.0.0.1"
    port: int = 0
    path: str = "/v1/live/sessions"
    model: str = "gpt-live-1"
    api_keys: tuple[str, ...] | None = None
    replies: LiveReplyScript | None = None
    cycle_replies: bool = True
    input_transcripts: LiveTranscriptScript | None = None
    tool_arguments: str | Mapping[str, Any] = "{}"
    delegate_spoken_turns: bool = False
    synth: SynthParams = field(default_factory=SynthParams)
    speed: float = 10.0
    chunk_ms: int = 100
    vad_threshold_dbfs: float = -40.0
    vad_silence_ms: int = 500
    vad_prefix_ms: int = 0
    vad_min_speech_ms: int = 20
    input_word_interval_ms: int = 250
    idle_output_ms: int | None = None
    idle_output_amplitude: int = 3
    session_duration_s: float = 3600.0
    max_session_s: float | None = None
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    expiry_poll_s: float = 0.05
    max_message_bytes: int = 16 * 2**20
    max_recorded_events: int = 10_000
    max_recorded_sessions: int = 1000
    record_audio_payloads: bool = True
    open_timeout_s: float | None = 10.0
    close_timeout_s: float = 2.0
    faults: tuple[Fault, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", tuple(self.faults))
        if not all(isinstance(f, Fault) for f in self.faults):
            raise TypeError("faults must hold Fault objects")
        object.__setattr__(self, "api_keys", secret_api_keys(self.api_keys))
        if not isinstance(self.tool_arguments, str):
            object.__setattr__(self, "tool_arguments",
                               json.dumps(dict(self.tool_arguments), separators=(",", ":")))
        if not self.path.startswith("/"):
            raise ValueError("path must start with '/'")
        check_pacing(self.speed, self.chunk_ms)
        if self.idle_output_ms is not None and (self.idle_output_ms < 10 or self.idle_output_ms % 10):
            raise ValueError("idle_output_ms must be None or a positive multiple of 10")
        if not 0 <= self.idle_output_amplitude <= 32767:
            raise ValueError("idle_output_amplitude must be in 0..32767")
        if self.input_word_interval_ms < 10:
            raise ValueError("input_word_interval_ms must be >= 10")
        if self.vad_silence_ms < 10 or self.vad_prefix_ms < 0 or self.vad_min_speech_ms < 0:
            raise ValueError("vad_silence_ms must be >= 10, vad_prefix_ms and vad_min_speech_ms >= 0")
        if self.max_session_s is not None and not self.max_session_s > 0:
            raise ValueError("max_session_s must be > 0 or None")
        if not self.session_duration_s > 0 or not self.expiry_poll_s > 0 or self.close_timeout_s < 0:
            raise ValueError("session_duration_s and expiry_poll_s must be > 0, close_timeout_s >= 0")
        check_at_least_one({
            "max_message_bytes": self.max_message_bytes, "max_recorded_events": self.max_recorded_events,
            "max_recorded_sessions": self.max_recorded_sessions})

    @property
    def tool_arguments_json(self) -> str:
        """The scripted call's arguments as the JSON string the wire carries."""
        return str(self.tool_arguments)

    @property
    def pace_s_per_ms(self) -> float:
        """Seconds to sleep per millisecond of reply audio sent (0 when unpaced)."""
        return pace_s_per_ms(self.speed)
