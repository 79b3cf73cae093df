"""The provider-agnostic vocabulary: enums, audio formats, events and their payloads.

Everything here is a frozen, slotted, keyword-only dataclass or an enum, so events can
be shared between tasks and threads without copying or locking.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

__all__ = [
    "AudioEncoding",
    "AudioFormat",
    "ConnectionState",
    "EventType",
    "MessageType",
    "ErrorInfo",
    "FunctionCall",
    "ResponseInfo",
    "ConnectionChange",
    "AudioAccounting",
    "ReplaySource",
    "ProviderEvent",
    "ProviderCapabilities",
    "InterruptResult",
]


class AudioEncoding(str, enum.Enum):
    PCM16 = "pcm16"  # signed 16-bit little-endian, interleaved
    PCMU = "pcmu"  # G.711 mu-law
    PCMA = "pcma"  # G.711 A-law


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioFormat:
    """An audio stream format: encoding, sample rate (Hz) and channel count."""

    sample_rate: int = 24000
    channels: int = 1
    encoding: AudioEncoding = AudioEncoding.PCM16

    def __post_init__(self) -> None:
        if not isinstance(self.sample_rate, int) or not 1 <= self.sample_rate <= 384000:
            raise ValueError(f"sample_rate must be an int in 1..384000, got {self.sample_rate!r}")
        if self.channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {self.channels!r}")

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding is AudioEncoding.PCM16 else 1

    @property
    def bytes_per_frame(self) -> int:
        """Bytes per sample frame (one sample for every channel)."""
        return self.bytes_per_sample * self.channels

    @property
    def bytes_per_second(self) -> int:
        return self.bytes_per_frame * self.sample_rate

    def frame_bytes(self, frame_ms: float) -> int:
        """Bytes in ``frame_ms`` milliseconds of audio (whole sample frames)."""
        return int(self.sample_rate * frame_ms / 1000) * self.bytes_per_frame

    def duration_ms(self, n_bytes: int) -> float:
        """Milliseconds of audio in ``n_bytes`` bytes."""
        return n_bytes / self.bytes_per_second * 1000.0


class ConnectionState(str, enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    ERROR = "error"
    CLOSED = "closed"


class EventType(str, enum.Enum):
    """Normalized event kinds, the same for every provider and for the engine."""

    # session
    SESSION_CREATED = "session.created"
    SESSION_UPDATED = "session.updated"
    # assistant output
    AUDIO_DELTA = "audio.delta"  # data: bytes, PCM16 at the provider's output rate
    AUDIO_DONE = "audio.done"
    TEXT_DELTA = "text.delta"  # data: str
    TEXT_DONE = "text.done"  # data: str (whole text)
    TRANSCRIPT_DELTA = "transcript.delta"  # assistant speech transcript, data: str
    TRANSCRIPT_DONE = "transcript.done"  # data: str (whole transcript)
    FUNCTION_CALL_ARGUMENTS_DELTA = "function_call.arguments.delta"  # data: str
    FUNCTION_CALL = "function_call"  # data: FunctionCall
    OUTPUT_ITEM_ADDED = "output_item.added"  # data: item dict
    OUTPUT_ITEM_DONE = "output_item.done"  # data: item dict
    CONTENT_PART_ADDED = "content_part.added"  # data: part dict
    CONTENT_PART_DONE = "content_part.done"  # data: part dict
    # user input
    INPUT_TRANSCRIPT_DELTA = "input_transcript.delta"  # data: str
    INPUT_TRANSCRIPT = "input_transcript"  # user transcription completed, data: str
    INPUT_TRANSCRIPT_FAILED = "input_transcript.failed"  # error: ErrorInfo
    SPEECH_STARTED = "speech.started"  # data: {"audio_start_ms": int}
    SPEECH_STOPPED = "speech.stopped"  # data: {"audio_end_ms": int}
    INPUT_COMMITTED = "input.committed"  # data: {"previous_item_id": str | None}
    INPUT_CLEARED = "input.cleared"
    INPUT_TIMEOUT = "input.timeout"  # idle timeout triggered
    # responses and items
    RESPONSE_STARTED = "response.started"  # data: ResponseInfo
    RESPONSE_DONE = "response.done"  # data: ResponseInfo (status, reason, usage)
    ITEM_ADDED = "item.added"  # data: item dict; previous_item_id inside
    ITEM_DONE = "item.done"  # data: item dict
    ITEM_RETRIEVED = "item.retrieved"  # data: item dict
    ITEM_TRUNCATED = "item.truncated"  # data: {"content_index": int, "audio_end_ms": int}
    ITEM_DELETED = "item.deleted"
    # service
    RATE_LIMITS = "rate_limits"  # data: list of dicts
    ERROR = "error"  # error: ErrorInfo
    CONNECTION_STATE = "connection.state"  # data: ConnectionChange
    UNKNOWN = "unknown"  # raw passthrough of an event type we do not know
    # engine-level events (emitted by VoiceEngine, never by a provider)
    LISTENING_STARTED = "engine.listening.started"
    LISTENING_STOPPED = "engine.listening.stopped"
    TURN_STARTED = "engine.turn.started"  # data: {"speaker": "user" | "assistant"}
    TURN_ENDED = "engine.turn.ended"
    PLAYBACK_STARTED = "engine.playback.started"
    PLAYBACK_STOPPED = "engine.playback.stopped"
    INTERRUPTED = "engine.interrupted"  # data: InterruptResult
    CONTEXT_INJECTED = "engine.context.injected"
    CONTEXT_EXPIRED = "engine.context.expired"
    PROVIDER_SWITCHED = "engine.provider.switched"
    METRICS = "engine.metrics"


class MessageType(str, enum.Enum):
    """Client message kinds for raw wire access through ``send_message``.

    The values are the OpenAI Realtime (GA) wire names; other providers map the kinds
    they support and raise :class:`~voiceengine.exceptions.InvalidState` for the rest.
    """

    SESSION_UPDATE = "session.update"
    INPUT_AUDIO_BUFFER_APPEND = "input_audio_buffer.append"
    INPUT_AUDIO_BUFFER_COMMIT = "input_audio_buffer.commit"
    INPUT_AUDIO_BUFFER_CLEAR = "input_audio_buffer.clear"
    CONVERSATION_ITEM_CREATE = "conversation.item.create"
    CONVERSATION_ITEM_RETRIEVE = "conversation.item.retrieve"
    CONVERSATION_ITEM_TRUNCATE = "conversation.item.truncate"
    CONVERSATION_ITEM_DELETE = "conversation.item.delete"
    RESPONSE_CREATE = "response.create"
    RESPONSE_CANCEL = "response.cancel"
    OUTPUT_AUDIO_BUFFER_CLEAR = "output_audio_buffer.clear"


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo:
    """An error reported by (or about) the provider.

    ``event_id`` is the client event the error answers and ``request_type`` its wire
    type when the provider could match it. ``fatal``: the session cannot go on and must
    not be retried; ``benign``: an expected race, safe to ignore; ``retryable``:
    retrying may succeed. ``remote`` says whose fault it was (server vs. us).
    """

    message: str
    code: str | None = None
    type: str | None = None
    param: str | None = None
    event_id: str | None = None
    request_type: str | None = None
    retryable: bool = False
    fatal: bool = False
    benign: bool = False
    remote: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionCall:
    name: str
    call_id: str
    arguments: str = ""
    item_id: str | None = None
    response_id: str | None = None

    def parsed_arguments(self) -> Any:
        """The arguments decoded from JSON (``{}`` when empty)."""
        import json

        return json.loads(self.arguments) if self.arguments else {}


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseInfo:
    """A response's lifecycle data: ``status`` is in_progress, completed, cancelled,
    incomplete or failed; ``reason`` explains cancelled/incomplete (e.g. turn_detected,
    client_cancelled, max_output_tokens)."""

    response_id: str | None
    status: str = "in_progress"
    reason: str | None = None
    usage: Mapping[str, Any] | None = None
    output_item_ids: tuple[str, ...] = ()
    conversation: str | None = None
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionChange:
    """A connection state change.

    ``phase`` is one of connecting, connected, reconnecting, restored, gave_up, closed,
    failed; ``reason`` is free text saying why (never a secret). ``planned`` marks a
    proactive session recycle (before the provider's session limit) as opposed to a lost
    connection. On ``restored``: ``replayed_items`` conversation items and
    ``replayed_audio_bytes`` of buffered input audio were re-sent, ``dropped_audio_bytes``
    could not be kept during the outage, and ``downtime_ms`` is how long the provider was
    not usable (on the provider's clock).
    """

    state: ConnectionState
    previous: ConnectionState
    phase: str = ""
    reason: str = ""
    attempt: int = 0
    close_code: int | None = None
    planned: bool = False
    replayed_items: int = 0
    replayed_audio_bytes: int = 0
    dropped_audio_bytes: int = 0
    downtime_ms: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioAccounting:
    """Where every byte of input audio handed to ``send_audio`` went (provider-rate bytes).

    ``captured`` = ``sent`` (written to the connection it was sent on) + ``replayed``
    (buffered during an outage, written after the session was restored) + ``dropped``
    (could not be kept: buffer full, gave up, disconnected) + ``pending`` (still queued or
    buffered). Nothing is uncounted: :attr:`balanced` is always true.
    """

    captured_bytes: int = 0
    sent_bytes: int = 0
    replayed_bytes: int = 0
    dropped_bytes: int = 0
    pending_bytes: int = 0

    @property
    def balanced(self) -> bool:
        return self.captured_bytes == (self.sent_bytes + self.replayed_bytes + self.dropped_bytes
                                       + self.pending_bytes)


#: Returns the conversation items (wire shape, for ``conversation.item.create``, with
#: their original ``id`` and role) to replay into a fresh session after a reconnect.
ReplaySource = Callable[[], Sequence[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class InterruptResult:
    """What an interrupt did on the wire.

    ``action`` is ``"truncated"``, ``"deleted"`` or ``"none"``; ``audio_end_ms`` is the
    truncation point actually sent (played ms clamped to the audio received).
    """

    item_id: str | None = None
    played_ms: int | None = None
    audio_end_ms: int | None = None
    action: str = "none"
    cancelled_response: bool = False
    response_id: str | None = None


def _describe(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value) if not isinstance(value, memoryview) else value.nbytes} bytes>"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderEvent:
    """One normalized event.

    ``data`` depends on ``type`` (see :class:`EventType`); ``raw`` is the decoded wire
    message for non-audio events (audio payloads are never kept in ``raw``).
    """

    type: EventType
    data: Any = None
    timestamp: float = field(default_factory=time.time)
    provider: str = ""
    session_id: str | None = None
    error: ErrorInfo | None = None
    item_id: str | None = None
    response_id: str | None = None
    raw: Mapping[str, Any] | None = None

    def __repr__(self) -> str:
        parts = [f"type={self.type.name}"]
        if self.data is not None:
            parts.append(f"data={_describe(self.data)}")
        for name in ("item_id", "response_id", "error"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        if self.provider:
            parts.append(f"provider={self.provider!r}")
        return f"ProviderEvent({', '.join(parts)})"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderCapabilities:
    """What a provider can do, so the engine and apps can adapt without isinstance checks."""

    name: str
    input_format: AudioFormat
    output_format: AudioFormat
    server_vad: bool = False
    semantic_vad: bool = False
    manual_turns: bool = True
    input_transcription: bool = False
    text_output: bool = True
    audio_output: bool = True
    function_calling: bool = False
    truncation: bool = False  # can cut an assistant item at the played position
    item_deletion: bool = False
    out_of_band_responses: bool = False
    per_response_instructions: bool = False
    session_update: bool = False
    server_interruption: bool = False  # the server cancels responses on barge-in itself
    voices: tuple[str, ...] = ()
    max_session_s: float | None = None
