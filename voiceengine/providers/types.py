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
    "RestoreMethod",
    "ServerInterrupted",
    "GenerationDone",
    "SessionExpiring",
    "ToolCallCancelled",
    "Usage",
    "TurnDetectionMode",
    "Eagerness",
    "TurnDetection",
    "TurnDetectionSetting",
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
    # contract v2: services without OpenAI's response/item verbs report these
    SERVER_INTERRUPTED = "server.interrupted"  # data: ServerInterrupted (reply cut because the user spoke)
    GENERATION_DONE = "generation.done"  # data: GenerationDone (the model stopped generating; the turn may go on)
    SESSION_EXPIRING = "session.expiring"  # data: SessionExpiring (the service will close the session soon)
    TOOL_CALL_CANCELLED = "tool_call.cancelled"  # data: ToolCallCancelled (calls the app must not answer)
    USAGE = "usage"  # data: Usage (an increment, never a running total)
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


class RestoreMethod(str, enum.Enum):
    """How a session was restored after a reconnect (:attr:`ConnectionChange.restored_by`)."""

    RESUMPTION = "resumption"  # the service resumed the old session from a handle it gave us
    REPLAY = "replay"  # a fresh session; the conversation was replayed into it


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionChange:
    """A connection state change.

    ``phase`` is one of connecting, connected, handover, reconnecting, restored, gave_up,
    closed, failed; ``reason`` is free text saying why (never a secret). ``planned`` marks a
    proactive session recycle (before the provider's session limit) or a handover the
    service asked for (Gemini's ``goAway``) as opposed to a lost connection. ``handover``
    says a planned move to a new connection has begun (``state`` unchanged: the current
    connection still delivers what is in flight; input is held and calls wait until
    ``restored``). On ``restored``: ``replayed_items`` conversation items and
    ``replayed_audio_bytes`` of buffered input audio were re-sent, ``dropped_audio_bytes``
    could not be kept during the outage, and ``downtime_ms`` is how long the provider was
    not usable (on the provider's clock). ``restored_by`` says how a ``restored`` session
    got its conversation back: :attr:`RestoreMethod.RESUMPTION` (a server-side handle) or
    :attr:`RestoreMethod.REPLAY` (the items were re-sent); ``None`` on other phases.
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
    restored_by: RestoreMethod | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerInterrupted:
    """SERVER_INTERRUPTED: the service stopped its reply because the user spoke.

    Services without speech events (Gemini Live) report barge-in only this way; the app
    flushes its playback and sends nothing. ``response_id`` is the reply cut, when known.
    """

    response_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationDone:
    """GENERATION_DONE: the model produced all of a reply; RESPONSE_DONE (the end of the
    turn) may come later, e.g. after playback-paced audio or a tool call."""

    response_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionExpiring:
    """SESSION_EXPIRING: the service will end the session in ``time_left_ms`` (``None``:
    soon, unknown when). Providers that can restore (resumption or replay) do so by
    themselves; the event lets an app avoid starting a long reply just before."""

    time_left_ms: int | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.time_left_ms is not None and (type(self.time_left_ms) is not int or self.time_left_ms < 0):
            raise ValueError(f"time_left_ms must be an int >= 0 or None, got {self.time_left_ms!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallCancelled:
    """TOOL_CALL_CANCELLED: function calls (by ``call_id``) the service withdrew; a result
    sent for one of them is ignored by the service."""

    call_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        ids = tuple(self.call_ids)
        if any(not isinstance(i, str) for i in ids):
            raise TypeError("call_ids must be strings")
        object.__setattr__(self, "call_ids", ids)


_USAGE_COUNTS = ("input_text_tokens", "input_audio_tokens", "input_cached_tokens", "output_text_tokens",
                 "output_audio_tokens", "input_audio_seconds", "output_audio_seconds")


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """USAGE: what the service counted since its previous USAGE report (an increment).

    Tokens by direction and modality, plus seconds for services that bill by time.
    Providers of services that report running totals (Gemini's ``usageMetadata``) turn
    them into increments with :meth:`since`, so a consumer only ever adds them up
    (:meth:`plus`). ``response_id`` is the response the usage belongs to, when known.
    """

    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    input_cached_tokens: int = 0
    output_text_tokens: int = 0
    output_audio_tokens: int = 0
    input_audio_seconds: float = 0.0
    output_audio_seconds: float = 0.0
    response_id: str | None = None

    def __post_init__(self) -> None:
        for name in _USAGE_COUNTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")

    @property
    def input_tokens(self) -> int:
        return self.input_text_tokens + self.input_audio_tokens

    @property
    def output_tokens(self) -> int:
        return self.output_text_tokens + self.output_audio_tokens

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def plus(self, other: "Usage") -> "Usage":
        """The sum of two reports (``response_id`` dropped: a total spans responses)."""
        return Usage(**{name: getattr(self, name) + getattr(other, name) for name in _USAGE_COUNTS})

    def since(self, previous: "Usage") -> "Usage":
        """The increment from running total ``previous`` to running total ``self``.

        A count that went down (the service started a new session and its totals again
        from zero) counts from zero: the increment is the new total.
        """
        fields: dict[str, Any] = {}
        for name in _USAGE_COUNTS:
            now, before = getattr(self, name), getattr(previous, name)
            fields[name] = now - before if now >= before else now
        return Usage(response_id=self.response_id, **fields)


class TurnDetectionMode(str, enum.Enum):
    """Who decides that the user's turn ended."""

    SERVER_VAD = "server_vad"  # the service, on silence
    SEMANTIC_VAD = "semantic_vad"  # the service, on what was said (falls back to server_vad)
    MANUAL = "manual"  # the app: it commits the input (or marks activity) itself


class Eagerness(str, enum.Enum):
    """How soon a semantic VAD ends the user's turn (``auto`` lets the service choose)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    AUTO = "auto"


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnDetection:
    """A provider-neutral turn-detection setting.

    ``silence_ms`` (silence that ends a turn), ``prefix_ms`` (audio kept before detected
    speech), ``threshold`` (0..1, speech probability for an energy/voice VAD), ``eagerness``
    (semantic VAD) and ``sensitivity`` (``"low"``/``"high"``, services that take a coarse
    setting) are ``None`` for the service default. ``interrupt_on_speech``: the service
    cancels its reply when the user starts speaking. ``auto_response``: the service starts
    a reply when the turn ends (``False``: the app calls ``request_reply()``).

    Each provider maps what its service supports and ignores the rest (documented per
    provider). The strings ``"server_vad"``/``"semantic_vad"`` and ``None`` (manual) of
    :class:`~voiceengine.providers.base.ProviderConfig` are aliases: see :meth:`coerce`.
    """

    mode: TurnDetectionMode = TurnDetectionMode.SERVER_VAD
    silence_ms: int | None = None
    prefix_ms: int | None = None
    threshold: float | None = None
    eagerness: Eagerness | None = None
    sensitivity: str | None = None
    interrupt_on_speech: bool = True
    auto_response: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", TurnDetectionMode(self.mode))
        for name in ("silence_ms", "prefix_ms"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or not 0 <= value <= 60_000):
                raise ValueError(f"{name} must be an int in 0..60000 or None, got {value!r}")
        if self.threshold is not None and (isinstance(self.threshold, bool) or not isinstance(
                self.threshold, (int, float)) or not 0.0 <= self.threshold <= 1.0):
            raise ValueError(f"threshold must be in [0, 1] or None, got {self.threshold!r}")
        if self.eagerness is not None:
            object.__setattr__(self, "eagerness", Eagerness(self.eagerness))
        if self.sensitivity not in (None, "low", "high"):
            raise ValueError(f"sensitivity must be 'low', 'high' or None, got {self.sensitivity!r}")
        for name in ("interrupt_on_speech", "auto_response"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool")

    @property
    def manual(self) -> bool:
        return self.mode is TurnDetectionMode.MANUAL

    @classmethod
    def coerce(cls, value: "TurnDetectionSetting") -> "TurnDetection":
        """The neutral setting for any accepted spelling.

        ``None`` and ``"manual"`` -> manual; ``"server_vad"``/``"semantic_vad"`` -> that
        mode with service defaults; a mapping in the OpenAI Realtime shape (``type``,
        ``silence_duration_ms``, ``prefix_padding_ms``, ``threshold``, ``eagerness``,
        ``interrupt_response``, ``create_response``) -> its fields; a
        :class:`TurnDetection` as is. Anything else raises ``ValueError``/``TypeError``.
        """
        if isinstance(value, TurnDetection):
            return value
        if value is None:
            return cls(mode=TurnDetectionMode.MANUAL)
        if isinstance(value, str):
            try:
                return cls(mode=TurnDetectionMode(value))
            except ValueError:
                raise ValueError(f"turn_detection must be one of {[m.value for m in TurnDetectionMode]}, "
                                 f"a mapping, a TurnDetection or None, got {value!r}") from None
        if isinstance(value, Mapping):
            kind = value.get("type", "server_vad")
            if kind not in ("server_vad", "semantic_vad"):
                raise ValueError(f"turn_detection type must be server_vad or semantic_vad, got {kind!r}")
            return cls(
                mode=TurnDetectionMode(kind), silence_ms=value.get("silence_duration_ms"),
                prefix_ms=value.get("prefix_padding_ms"), threshold=value.get("threshold"),
                eagerness=value.get("eagerness"), interrupt_on_speech=bool(value.get("interrupt_response", True)),
                auto_response=bool(value.get("create_response", True)),
            )
        raise TypeError(f"turn_detection must be a str, a mapping, a TurnDetection or None, "
                        f"got {type(value).__name__}")


#: Every spelling of a turn-detection setting a config or ``update_session`` accepts.
TurnDetectionSetting = TurnDetection | str | Mapping[str, Any] | None


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
    # contract v2: what the engine and the context injector read to choose how to act
    client_cancel: bool = False  # the client can cancel a reply in progress
    manual_commit: bool = False  # the client can end the user's input turn itself
    silent_context: bool = False  # context can be added without triggering a reply
    mutable_instructions: bool = False  # instructions can change mid-session (else: on a new connection)
    mutable_tools: bool = False  # tools can change mid-session
    mutable_voice: bool = False  # the voice can change mid-session
    session_resumption: bool = False  # the service resumes a session by a handle after a reconnect
    item_positioning: bool = False  # an item can be inserted after a given item (previous_item_id)
    held_replies: bool = False  # the service can be told not to reply by itself at the end of a turn
