"""MockProvider: a deterministic, offline provider that behaves like the Realtime API (GA).

No network. Under a given ``seed`` the sequence of events, ids and audio bytes is the same
on every run (event ``timestamp``\\ s excepted). It emits the normalized events in the real GA
order; for a spoken reply::

    RESPONSE_STARTED -> OUTPUT_ITEM_ADDED -> ITEM_ADDED -> CONTENT_PART_ADDED
    -> (TRANSCRIPT_DELTA, AUDIO_DELTA) x words -> AUDIO_DONE -> TRANSCRIPT_DONE
    -> CONTENT_PART_DONE -> OUTPUT_ITEM_DONE -> ITEM_DONE -> RESPONSE_DONE

with real PCM16 at 24 kHz (a speech-like harmonic tone per word). Input audio goes through
an energy VAD (``turn_detection`` server/semantic VAD) that emits SPEECH_STARTED/STOPPED,
commits the turn (INPUT_COMMITTED, user ITEM_ADDED/ITEM_DONE, scripted INPUT_TRANSCRIPT)
and asks for a response; speech during a response cancels it (reason ``turn_detected``),
as the server does. With ``turn_detection=None`` the app commits and asks for responses.

Timing: ``latency_ms`` is slept before every event of a response (0 = just yield to the
loop). Control acknowledgements (VAD events, item added, truncated, deleted, errors) are
emitted synchronously inside the call that causes them.

Outages: ``inject_disconnect(reconnect=True)`` follows the continuity contract of the OpenAI
provider (docs/reliability.md): the response cut by the loss ends as RESPONSE_DONE
``failed``/``connection_lost``, phases ``reconnecting`` then ``restored`` (or ``gave_up``),
the items of the replay source re-created with their ids, input audio sent meanwhile kept in
a bounded backlog and replayed, every byte counted in ``audio_ledger``.

Client-side rules mirror the OpenAI provider: never two responses at once (requests are
queued), ``interrupt(played_ms)`` truncates the current audio item at the played position
clamped to the audio sent (> 0), deletes it at 0, cancels only an active response and
nothing of the cancelled response is emitted afterwards.

One cohesive module: speech synthesis, the energy VAD and input audio, simulated outages,
and the scripted responses are all parts of the one :class:`MockProvider` state.
"""

from __future__ import annotations

import array
import asyncio
import base64
import binascii
import collections
import functools
import json
import logging
import math
import random
import sys
import zlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..exceptions import AudioFormatError, ConfigurationError, InvalidState, LimitExceeded, LocalProtocolError
from .base import BaseProvider, ProviderConfig
from .types import (
    AudioFormat, ConnectionState, ErrorInfo, EventType, FunctionCall, InterruptResult, MessageType,
    ProviderCapabilities, ProviderEvent, ResponseInfo, TurnDetection,
)

__all__ = ["MockConfig", "MockProvider", "MockRecord", "synthesize_speech"]

log = logging.getLogger("voiceengine.providers.mock")

SAMPLE_RATE = 24000
_BYTES_PER_MS = SAMPLE_RATE * 2 // 1000  # 48: 24 kHz mono PCM16
_VAD_FRAME_BYTES = 20 * _BYTES_PER_MS
_MIN_COMMIT_BYTES = 100 * _BYTES_PER_MS  # the service refuses commits under 100 ms


@functools.lru_cache(maxsize=1024)
def _word_audio(word: str, seed: int, ms_per_char: float, gap_ms: float) -> bytes:
    n = int(SAMPLE_RATE * max(80.0, len(word) * ms_per_char) / 1000)
    gap = int(SAMPLE_RATE * gap_ms / 1000)
    # crc32, not hash(): str hashes change between processes (PYTHONHASHSEED)
    h = zlib.crc32(f"{seed}:{word.lower()}".encode())
    f0 = 100.0 + h % 140  # a voice-like fundamental, per word
    w = 2.0 * math.pi * f0 / SAMPLE_RATE
    glide = ((h >> 8) % 21 - 10) / 100.0 / max(n, 1)  # a little intonation
    amp = 0.3 * 32767 / 1.75
    samples = array.array("h", bytes(2 * (n + gap)))
    sin = math.sin
    for i in range(n):
        phase = w * i * (1.0 + glide * i)
        env = sin(math.pi * i / n)
        samples[i] = int(amp * env * (sin(phase) + 0.5 * sin(2 * phase) + 0.25 * sin(3 * phase)))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def synthesize_speech(text: str, *, seed: int = 0, ms_per_char: float = 60.0, gap_ms: float = 40.0) -> bytes:
    """Deterministic speech-like PCM16 (24 kHz mono) for ``text``: one tone burst per word."""
    return b"".join(_word_audio(w, seed, ms_per_char, gap_ms) for w in text.split())


def _pcm_view(audio: Any) -> memoryview:
    if isinstance(audio, str):
        raise TypeError("audio must be a bytes-like PCM16 buffer, not str")
    try:
        view = memoryview(audio)
    except TypeError:
        raise TypeError(f"audio must be a bytes-like PCM16 buffer, got {type(audio).__name__}") from None
    if view.format not in ("B", "b", "c", "h", "<h") or not view.c_contiguous:
        raise TypeError(f"audio must be C-contiguous int16/bytes data, got format {view.format!r}")
    view = view.cast("B")
    if len(view) % 2:
        raise AudioFormatError(f"PCM16 audio needs an even number of bytes, got {len(view)}")
    return view


_RESPONSE_KEYS = frozenset(("instructions", "output_modalities", "conversation", "input", "tools", "tool_choice",
                            "metadata", "voice", "temperature", "max_output_tokens", "audio", "prompt"))


class _Out:
    __slots__ = ("id", "kind", "audio_bytes", "done", "deleted", "in_conv", "prev", "item")

    def __init__(self, item_id: str, kind: str, in_conv: bool, prev: str | None, item: dict[str, Any]) -> None:
        self.id, self.kind, self.in_conv, self.prev, self.item = item_id, kind, in_conv, prev, item
        self.audio_bytes = 0
        self.done = False
        self.deleted = False


class _Resp:
    __slots__ = ("id", "options", "items", "task", "audio", "in_conv")

    def __init__(self, response_id: str, options: Mapping[str, Any], audio: bool) -> None:
        self.id = response_id
        self.options = options
        self.items: list[_Out] = []
        self.task: asyncio.Task[None] | None = None
        self.audio = audio
        self.in_conv = options.get("conversation", "auto") != "none"


_FATAL = frozenset(("invalid_api_key", "insufficient_quota", "account_deactivated", "billing_hard_limit_reached"))
_BENIGN = frozenset(("response_cancel_not_active", "conversation_already_has_active_response",
                     "input_audio_buffer_commit_empty"))
_RETRYABLE = frozenset(("server_error", "rate_limit_exceeded", "session_expired"))
_SESSION_KEYS = frozenset(("instructions", "voice", "turn_detection", "tools", "tool_choice", "output_modalities",
                           "temperature", "transcription_model", "max_output_tokens"))


@dataclass(frozen=True, slots=True, kw_only=True)
class MockConfig(ProviderConfig):
    """Mock settings on top of :class:`ProviderConfig`.

    ``responses`` are used in turn (cycling): a ``str`` is spoken; a mapping may hold
    ``"text"`` and/or ``"function_call": {"name": ..., "arguments": str | mapping}``.
    ``input_transcripts`` are the scripted user transcriptions (cycling; empty: none).
    ``reconnect_audio_buffer_ms``: input audio kept during a simulated outage (0: none).
    """

    latency_ms: float = 0.0
    error_rate: float = 0.0
    seed: int = 0
    responses: Sequence[str | Mapping[str, Any]] = ("Hello! I am a mock voice assistant.",)
    input_transcripts: Sequence[str] = ("Hello there.",)
    audio_ms_per_char: float = 60.0
    word_gap_ms: float = 40.0
    vad_threshold_dbfs: float = -45.0
    vad_silence_ms: int = 500
    vad_prefix_ms: int = 300
    max_queued_responses: int = 8
    history_size: int = 100_000
    reconnect_audio_buffer_ms: int = 3000

    def __post_init__(self) -> None:
        ProviderConfig.__post_init__(self)  # zero-arg super() breaks in slotted dataclasses
        if not self.latency_ms >= 0 or not 0.0 <= self.error_rate <= 1.0:
            raise ConfigurationError("latency_ms must be >= 0 and error_rate in [0, 1]")
        if not self.audio_ms_per_char > 0 or self.word_gap_ms < 0 or self.vad_silence_ms < 0:
            raise ConfigurationError("audio_ms_per_char must be > 0, word_gap_ms and vad_silence_ms >= 0")
        if self.max_queued_responses < 0 or self.history_size < 1:
            raise ConfigurationError("max_queued_responses must be >= 0 and history_size >= 1")
        if self.reconnect_audio_buffer_ms < 0:
            raise ConfigurationError("reconnect_audio_buffer_ms must be >= 0")
        entries = (self.responses,) if isinstance(self.responses, (str, Mapping)) else tuple(self.responses)
        if not entries:
            raise ConfigurationError("responses must not be empty")
        object.__setattr__(self, "responses", tuple(_normalize_entry(e) for e in entries))
        object.__setattr__(self, "input_transcripts", tuple(str(t) for t in self.input_transcripts))


def _normalize_entry(entry: Any) -> Mapping[str, Any]:
    if isinstance(entry, str):
        return {"text": entry}
    if not isinstance(entry, Mapping) or not ({"text", "function_call"} & set(entry)):
        raise ConfigurationError(f"a response must be a str or a mapping with 'text'/'function_call', got {entry!r}")
    result: dict[str, Any] = {}
    if entry.get("text") is not None:
        result["text"] = str(entry["text"])
    call = entry.get("function_call")
    if call is not None:
        if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
            raise ConfigurationError("function_call needs a 'name' (str) and optional 'arguments'")
        args = call.get("arguments", "")
        result["function_call"] = {"name": call["name"],
                                   "arguments": args if isinstance(args, str) else json.dumps(args)}
    return result


@dataclass(frozen=True, slots=True, kw_only=True)
class MockRecord:
    """One history entry: a call (``kind="call"``, ``args`` without audio payloads) or an
    emitted event (``kind="event"``)."""

    kind: str
    name: str
    args: Mapping[str, Any] | None = None
    event: ProviderEvent | None = None


class MockProvider(BaseProvider):
    """An offline provider for tests and demos (see the module docstring)."""

    name = "mock"
    config_class = MockConfig

    def __init__(self, config: MockConfig | None = None) -> None:
        config = MockConfig() if config is None else config
        if not isinstance(config, MockConfig):
            raise ConfigurationError(f"MockProvider needs a MockConfig, got {type(config).__name__}")
        super().__init__(config)
        self.config: MockConfig = config
        self.history: list[MockRecord] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connections = 0
        self._backlog: collections.deque[bytes] = collections.deque()
        self._backlog_bytes = 0
        self._outage_dropped = 0
        self._session_options: dict[str, Any] = {}  # update_session() so far: re-applied on restore
        self._reset_session()

    # ----------------------------------------------------------- bookkeeping
    def _reset_session(self) -> None:
        cfg = self.config
        # a seeded simulation (reproducible replies), not security: the stdlib PRNG is right here
        self._rng = random.Random(cfg.seed)  # nosec B311
        self._counter = 0
        self._session: dict[str, Any] = {
            "instructions": cfg.instructions, "voice": cfg.voice, "turn_detection": cfg.turn_detection,
            "tools": list(cfg.tools), "output_modalities": list(cfg.output_modalities),
            "transcription_model": cfg.transcription_model, "temperature": cfg.temperature,
            **self._session_options,
        }
        self._conv: list[str] = []  # the server-side conversation, in order
        self._conv_audio_ms: dict[str, int] = {}
        self._active: _Resp | None = None
        self._queue: collections.deque[Mapping[str, Any]] = collections.deque()
        self._playing: _Out | None = None
        self._responses_made = 0
        self._user_turns = 0
        self._timeline_bytes = 0  # all input audio this session (VAD ms are relative to it)
        self._buffer_bytes = 0  # uncommitted input audio
        self._vad_carry = b""
        self._vad_speaking = False
        self._vad_item: str | None = None
        self._vad_last_voice_ms = 0

    def _new_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_mock{self._connections:02d}{self._counter:06d}"

    def _record(self, kind: str, name: str, args: Mapping[str, Any] | None = None,
                event: ProviderEvent | None = None) -> None:
        history = self.history
        history.append(MockRecord(kind=kind, name=name, args=args, event=event))
        limit = self.config.history_size
        if len(history) > limit + limit // 10 + 1:  # trim in batches to stay O(1) amortized
            del history[: len(history) - limit]

    def calls(self, name: str | None = None) -> list[MockRecord]:
        """Recorded calls (optionally of one method)."""
        return [r for r in self.history if r.kind == "call" and (name is None or r.name == name)]

    def emitted(self, *types: EventType) -> list[ProviderEvent]:
        """Recorded events (optionally of the given types), in emission order."""
        return [r.event for r in self.history
                if r.kind == "event" and r.event is not None and (not types or r.event.type in types)]

    def _emit(self, event: ProviderEvent) -> None:
        self._record("event", event.type.value, event=event)
        super()._emit(event)

    def _ev(self, event_type: EventType, data: Any = None, *, item_id: str | None = None,
            response_id: str | None = None, error: ErrorInfo | None = None) -> None:
        self._emit(ProviderEvent(type=event_type, data=data, provider=self.name, session_id=self.session_id,
                                 item_id=item_id, response_id=response_id, error=error))

    def _error(self, code: str, message: str, *, request_type: str | None = None, param: str | None = None,
               fatal: bool = False) -> ProviderEvent:
        info = ErrorInfo(message=message, code=code, type="invalid_request_error", param=param,
                         request_type=request_type, fatal=fatal or code in _FATAL, benign=code in _BENIGN,
                         retryable=code in _RETRYABLE and not fatal)
        event = ProviderEvent(type=EventType.ERROR, provider=self.name, session_id=self.session_id, error=info)
        self._emit(event)
        return event

    async def _tick(self) -> None:
        # 0 still yields, so consumers interleave with a response as they would on a socket
        await asyncio.sleep(self.config.latency_ms / 1000.0 if self.config.latency_ms else 0)

    def _require_connected(self) -> None:
        if self._state is not ConnectionState.CONNECTED:
            raise InvalidState(f"mock provider is {self._state.value}, not connected")

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------- lifecycle
    async def connect(self) -> None:
        """Open a mock session: SESSION_CREATED, SESSION_UPDATED, then CONNECTED."""
        self._record("call", "connect")
        if self._state is ConnectionState.CONNECTED:
            return
        self._set_state(ConnectionState.CONNECTING)
        self._connections += 1
        self._session_options = {}  # a new connection by the app starts from the config
        self._reset_session()
        self.session_id = f"sess_mock{self.config.seed}_{self._connections}"
        await self._tick()
        self._ev(EventType.SESSION_CREATED, {"session": self._session_dict()})
        self._ev(EventType.SESSION_UPDATED, {"session": self._session_dict()})
        self._set_state(ConnectionState.CONNECTED, phase="connected")

    async def disconnect(self) -> None:
        """Cancel everything the mock started and close; idempotent."""
        self._record("call", "disconnect")
        self._stop_active()
        self._queue.clear()
        self._backlog_drop()  # audio kept for a restore that will not happen: dropped, counted
        await self._cancel_tasks()
        if self._state is not ConnectionState.CLOSED:
            self._set_state(ConnectionState.CLOSED, phase="closed", reason="client disconnect")
        await self._cancel_handler_tasks()
        self._close_event_streams()

    async def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _session_dict(self) -> dict[str, Any]:
        return {"id": self.session_id, "type": "realtime", "object": "realtime.session", **self._session}

    async def wait_idle(self) -> None:
        """Wait until no response is active or queued (a test helper)."""
        while self._active is not None and self._active.task is not None:
            await asyncio.wait({self._active.task})

    # -------------------------------------------------------------- failures
    def inject_error(self, code: str, message: str, *, fatal: bool = False) -> ProviderEvent:
        """Emit an ERROR now. ``fatal`` (or a fatal code) ends the session like the server:
        the active response is dropped and the state becomes ERROR."""
        self._record("call", "inject_error", {"code": code, "message": message, "fatal": fatal})
        event = self._error(code, message, fatal=fatal)
        if event.error is not None and event.error.fatal:
            self._stop_active()
            self._queue.clear()
            for task in self._tasks:
                task.cancel()  # awaited by disconnect()
            self._set_state(ConnectionState.ERROR, phase="failed", reason=code)
        return event

    # ------------------------------------------------------------------ items
    async def send_text(self, text: str, *, role: str = "user", respond: bool = True) -> str:
        if not isinstance(text, str):
            raise TypeError("text must be a str")
        if role not in ("user", "system", "assistant"):
            raise ValueError(f"role must be user, system or assistant, got {role!r}")
        self._record("call", "send_text", {"text": text, "role": role, "respond": respond})
        kind = "output_text" if role == "assistant" else "input_text"
        item_id = self._add({"type": "message", "role": role, "content": [{"type": kind, "text": text}]}, None)
        if respond and item_id is not None:
            self._request_response({})
        return item_id or ""

    async def add_item(self, item: Mapping[str, Any], *, previous_item_id: str | None = None) -> str:
        if not isinstance(item, Mapping) or not isinstance(item.get("type"), str):
            raise ValueError("item must be a mapping with a 'type'")
        self._record("call", "add_item", {"item": dict(item), "previous_item_id": previous_item_id})
        return self._add(item, previous_item_id) or ""

    def _add(self, item: Mapping[str, Any], previous_item_id: str | None, *, check: bool = True) -> str | None:
        if check:
            self._require_connected()
        item_id = str(item.get("id") or self._new_id("item"))
        if item_id in self._conv:
            self._error("invalid_value", f"item {item_id} already exists", param="item.id",
                        request_type="conversation.item.create")
            return None
        if previous_item_id is not None and previous_item_id not in self._conv:
            self._error("invalid_value", f"previous_item_id {previous_item_id} not found",
                        param="previous_item_id", request_type="conversation.item.create")
            return None
        index = self._conv.index(previous_item_id) + 1 if previous_item_id is not None else len(self._conv)
        prev = self._conv[index - 1] if index else None
        self._conv.insert(index, item_id)
        wire = {**dict(item), "id": item_id, "object": "realtime.item", "status": "completed"}
        self._ev(EventType.ITEM_ADDED, {**wire, "previous_item_id": prev}, item_id=item_id)
        self._ev(EventType.ITEM_DONE, {**wire, "previous_item_id": prev}, item_id=item_id)
        return item_id

    async def delete_item(self, item_id: str) -> None:
        """``conversation.item.delete``: ITEM_DELETED, or an ERROR for an unknown item."""
        self._require_connected()
        self._record("call", "delete_item", {"item_id": item_id})
        self._delete(item_id)

    def _delete(self, item_id: str) -> None:
        if item_id not in self._conv:
            self._error("invalid_value", f"item {item_id} not found", param="item_id",
                        request_type="conversation.item.delete")
            return
        self._conv.remove(item_id)
        if self._playing is not None and self._playing.id == item_id:
            self._playing.deleted = True
            self._playing = None
        self._ev(EventType.ITEM_DELETED, item_id=item_id)

    async def send_message(self, message_type: MessageType | str, data: Mapping[str, Any] | None = None) -> str:
        """Raw client messages, mapped onto the mock's methods. Returns the event id."""
        try:
            kind = MessageType(message_type)
        except ValueError:
            raise LocalProtocolError(f"unknown client message type {message_type!r}") from None
        data = dict(data or {})
        event_id = str(data.get("event_id") or self._new_id("event"))
        self._record("call", "send_message", {"type": kind.value, "event_id": event_id})
        if kind is MessageType.SESSION_UPDATE:
            await self.update_session(**dict(data.get("session") or {}))
        elif kind is MessageType.INPUT_AUDIO_BUFFER_APPEND:
            try:
                pcm = base64.b64decode(data.get("audio", ""), validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise AudioFormatError("input_audio_buffer.append needs base64 audio") from None
            await self.send_audio(pcm)
        elif kind is MessageType.INPUT_AUDIO_BUFFER_COMMIT:
            await self.commit_audio()
        elif kind is MessageType.INPUT_AUDIO_BUFFER_CLEAR:
            await self.clear_audio()
        elif kind is MessageType.CONVERSATION_ITEM_CREATE:
            await self.add_item(data.get("item") or {}, previous_item_id=data.get("previous_item_id"))
        elif kind is MessageType.CONVERSATION_ITEM_RETRIEVE:
            self._require_connected()
            item_id = data.get("item_id")
            if item_id in self._conv:
                self._ev(EventType.ITEM_RETRIEVED, {"id": item_id}, item_id=item_id)
            else:
                self._error("invalid_value", f"item {item_id} not found", request_type=kind.value)
        elif kind is MessageType.CONVERSATION_ITEM_TRUNCATE:
            await self.truncate(data.get("item_id", ""), data.get("audio_end_ms", 0),
                                content_index=data.get("content_index", 0))
        elif kind is MessageType.CONVERSATION_ITEM_DELETE:
            await self.delete_item(data.get("item_id", ""))
        elif kind is MessageType.RESPONSE_CREATE:
            await self.create_response(**dict(data.get("response") or {}))
        elif kind is MessageType.RESPONSE_CANCEL:
            await self.cancel_response()
        else:
            raise InvalidState(f"{kind.value} is not supported by the mock provider (WebRTC only)")
        return event_id

    async def send_function_result(self, call_id: str, output: Any, *, respond: bool = True) -> str:
        if not isinstance(call_id, str) or not call_id:
            raise ValueError("call_id must be a non-empty str")
        text = output if isinstance(output, str) else json.dumps(output)
        self._record("call", "send_function_result", {"call_id": call_id, "output": text, "respond": respond})
        item_id = self._add({"type": "function_call_output", "call_id": call_id, "output": text}, None)
        if respond and item_id is not None:
            self._request_response({})
        return item_id or ""

    async def update_session(self, **options: Any) -> None:
        unknown = set(options) - _SESSION_KEYS
        if unknown:
            raise ConfigurationError(f"unknown session option(s): {', '.join(sorted(unknown))}")
        td = options.get("turn_detection", self._session["turn_detection"])
        if not (td is None or td in ("server_vad", "semantic_vad") or isinstance(td, (Mapping, TurnDetection))):
            raise ConfigurationError(f"turn_detection must be server_vad, semantic_vad, a mapping, a TurnDetection "
                                     f"or None: {td!r}")
        if isinstance(td, TurnDetection) and td.manual:
            options = {**options, "turn_detection": None}
        self._require_connected()
        self._record("call", "update_session", dict(options))
        self._session.update(options)
        self._session_options.update(options)
        self._ev(EventType.SESSION_UPDATED, {"session": self._session_dict()})

    # ------------------------------------------------------------------ info
    def get_audio_format(self) -> tuple[AudioFormat, AudioFormat]:
        fmt = AudioFormat(sample_rate=SAMPLE_RATE, channels=1)
        return fmt, fmt

    def get_capabilities(self) -> ProviderCapabilities:
        fmt = AudioFormat(sample_rate=SAMPLE_RATE, channels=1)
        return ProviderCapabilities(
            name=self.name, input_format=fmt, output_format=fmt,
            server_vad=True, semantic_vad=False,  # semantic_vad is accepted but runs the energy VAD
            manual_turns=True, input_transcription=bool(self.config.input_transcripts),
            text_output=True, audio_output=True, function_calling=True, truncation=True, item_deletion=True,
            out_of_band_responses=True, per_response_instructions=True, session_update=True,
            server_interruption=True, voices=(), max_session_s=None,
            client_cancel=True, manual_commit=True, silent_context=True, mutable_instructions=True,
            mutable_tools=True, mutable_voice=True, session_resumption=False, item_positioning=True,
            held_replies=True,
        )

    # ------------------------------------------------------------ responses
    @property
    def response_active(self) -> bool:
        return self._active is not None or bool(self._queue)

    async def create_response(self, **options: Any) -> None:
        """Start a response now, or queue it behind the active one (never two at once)."""
        unknown = set(options) - _RESPONSE_KEYS
        if unknown:
            raise ConfigurationError(f"unknown response option(s): {', '.join(sorted(unknown))}")
        self._require_connected()
        self._record("call", "create_response", dict(options))
        self._request_response(options)

    def _request_response(self, options: Mapping[str, Any]) -> None:
        if self._active is None:
            self._start_response(options)
            return
        if len(self._queue) >= self.config.max_queued_responses:
            raise LimitExceeded("too many queued responses", limit=self.config.max_queued_responses,
                                size=len(self._queue) + 1)
        self._queue.append(options)

    def _start_response(self, options: Mapping[str, Any]) -> None:
        modalities = options.get("output_modalities") or self._session["output_modalities"]
        resp = _Resp(self._new_id("resp"), options, audio="audio" in modalities)
        self._active = resp
        resp.task = self._spawn(self._run_response(resp))

    def _start_next(self) -> None:
        if self._active is None and self._queue and self._state is ConnectionState.CONNECTED:
            self._start_response(self._queue.popleft())

    def _stop_active(self) -> _Resp | None:
        """Stop the active response at once (nothing more of it is emitted); no events."""
        resp, self._active = self._active, None
        if resp is not None and resp.task is not None:
            resp.task.cancel()
        return resp

    def _emit_cancelled(self, resp: _Resp, reason: str) -> None:
        for out in resp.items:
            if out.done or out.deleted:
                continue
            if out.in_conv and out.kind == "message" and out.id not in self._conv_audio_ms:
                self._conv_audio_ms[out.id] = out.audio_bytes // _BYTES_PER_MS
            item = {**out.item, "status": "incomplete"}
            self._ev(EventType.OUTPUT_ITEM_DONE, item, item_id=out.id, response_id=resp.id)
            if out.in_conv and out.id in self._conv:
                self._ev(EventType.ITEM_DONE, {**item, "previous_item_id": out.prev}, item_id=out.id,
                         response_id=resp.id)
        self._ev(EventType.RESPONSE_DONE, self._info(resp, "cancelled", reason), response_id=resp.id)
        self._start_next()

    def _info(self, resp: _Resp, status: str, reason: str | None = None) -> ResponseInfo:
        out_tokens = sum(len(str(o.item.get("arguments", ""))) // 4 + o.audio_bytes // 2400 for o in resp.items)
        return ResponseInfo(
            response_id=resp.id, status=status, reason=reason,
            usage=None if status == "in_progress" else {"input_tokens": 0, "output_tokens": out_tokens,
                                                        "total_tokens": out_tokens},
            output_item_ids=tuple(o.id for o in resp.items),
            conversation="none" if not resp.in_conv else "auto",
            metadata=resp.options.get("metadata"),
        )

    async def _run_response(self, resp: _Resp) -> None:
        # MockConfig normalized its entries to mappings; normalizing again is idempotent and typed
        entry = _normalize_entry(self.config.responses[self._responses_made % len(self.config.responses)])
        self._responses_made += 1
        fail = self._rng.random() < self.config.error_rate  # drawn every time: same sequence per seed
        await self._tick()
        self._ev(EventType.RESPONSE_STARTED, self._info(resp, "in_progress"), response_id=resp.id)
        if fail:
            await self._tick()
            self._error("server_error", "The mock server had an error while processing your request (injected)")
            self._finish(resp, "failed")
            return
        if "text" in entry:
            await self._run_message(resp, entry["text"])
        if "function_call" in entry:
            await self._run_function_call(resp, entry["function_call"])
        await self._tick()
        self._finish(resp, "completed")

    def _finish(self, resp: _Resp, status: str) -> None:
        if self._active is not resp:  # cancelled meanwhile: its end was already reported
            return
        self._active = None
        self._ev(EventType.RESPONSE_DONE, self._info(resp, status), response_id=resp.id)
        self._start_next()

    async def _open_item(self, resp: _Resp, item: dict[str, Any], kind: str) -> _Out:
        prev = self._conv[-1] if self._conv else None
        out = _Out(item["id"], kind, resp.in_conv, prev, item)
        resp.items.append(out)
        await self._tick()
        self._ev(EventType.OUTPUT_ITEM_ADDED, dict(item), item_id=out.id, response_id=resp.id)
        if resp.in_conv:
            self._conv.append(out.id)
            await self._tick()
            self._ev(EventType.ITEM_ADDED, {**item, "previous_item_id": prev}, item_id=out.id, response_id=resp.id)
        return out

    async def _close_item(self, resp: _Resp, out: _Out, item: dict[str, Any]) -> None:
        out.item = item
        await self._tick()
        self._ev(EventType.OUTPUT_ITEM_DONE, dict(item), item_id=out.id, response_id=resp.id)
        if resp.in_conv and out.id in self._conv:
            await self._tick()
            self._ev(EventType.ITEM_DONE, {**item, "previous_item_id": out.prev}, item_id=out.id, response_id=resp.id)
        out.done = True

    async def _run_message(self, resp: _Resp, text: str) -> None:
        base = {"id": self._new_id("item"), "object": "realtime.item", "type": "message", "role": "assistant"}
        out = await self._open_item(resp, {**base, "status": "in_progress", "content": []}, "message")
        if resp.audio and resp.in_conv:
            self._playing = out
        words = text.split()
        full = " ".join(words)
        cfg = self.config
        ids: dict[str, Any] = {"item_id": out.id, "response_id": resp.id}
        part_kind = "audio" if resp.audio else "text"
        await self._tick()
        self._ev(EventType.CONTENT_PART_ADDED, {"type": part_kind, "transcript" if resp.audio else "text": ""}, **ids)
        for index, word in enumerate(words):
            delta = word if index == 0 else " " + word
            await self._tick()
            if not resp.audio:
                self._ev(EventType.TEXT_DELTA, delta, **ids)
                continue
            self._ev(EventType.TRANSCRIPT_DELTA, delta, **ids)
            pcm = _word_audio(word, cfg.seed, cfg.audio_ms_per_char, cfg.word_gap_ms)
            await self._tick()
            out.audio_bytes += len(pcm)
            self._ev(EventType.AUDIO_DELTA, pcm, **ids)
        await self._tick()
        if resp.audio:
            self._ev(EventType.AUDIO_DONE, None, **ids)
            await self._tick()
            self._ev(EventType.TRANSCRIPT_DONE, full, **ids)
            content = {"type": "output_audio", "transcript": full}
            part = {"type": "audio", "transcript": full}
        else:
            self._ev(EventType.TEXT_DONE, full, **ids)
            content = {"type": "output_text", "text": full}
            part = {"type": "text", "text": full}
        await self._tick()
        self._ev(EventType.CONTENT_PART_DONE, part, **ids)
        if resp.in_conv:
            self._conv_audio_ms[out.id] = out.audio_bytes // _BYTES_PER_MS
        await self._close_item(resp, out, {**base, "status": "completed", "content": [content]})

    async def _run_function_call(self, resp: _Resp, call: Mapping[str, str]) -> None:
        call_id = self._new_id("call")
        base = {"id": self._new_id("item"), "object": "realtime.item", "type": "function_call",
                "name": call["name"], "call_id": call_id}
        out = await self._open_item(resp, {**base, "status": "in_progress", "arguments": ""}, "function_call")
        ids: dict[str, Any] = {"item_id": out.id, "response_id": resp.id}
        await self._tick()
        self._ev(EventType.FUNCTION_CALL_ARGUMENTS_DELTA, call["arguments"], **ids)
        await self._tick()
        self._ev(EventType.FUNCTION_CALL, FunctionCall(name=call["name"], call_id=call_id, arguments=call["arguments"],
                                                       item_id=out.id, response_id=resp.id), **ids)
        await self._close_item(resp, out, {**base, "status": "completed", "arguments": call["arguments"]})

    async def cancel_response(self) -> bool:
        """Cancel the active response (and drop queued requests); whether there was any."""
        self._require_connected()
        self._record("call", "cancel_response")
        had_queue = bool(self._queue)
        self._queue.clear()
        resp = self._stop_active()
        if resp is not None:
            self._emit_cancelled(resp, "client_cancelled")
        return resp is not None or had_queue

    # ------------------------------------------------------------ truncation
    def _audio_ms_sent(self, item_id: str) -> int | None:
        if self._playing is not None and self._playing.id == item_id:
            return self._playing.audio_bytes // _BYTES_PER_MS
        return self._conv_audio_ms.get(item_id)

    async def truncate(self, item_id: str, audio_end_ms: int, *, content_index: int = 0) -> None:
        """``conversation.item.truncate``; the server's errors (unknown item, 0 ms, beyond the
        audio sent) come back as ERROR events, as on the wire."""
        if isinstance(audio_end_ms, bool) or not isinstance(audio_end_ms, int) or audio_end_ms < 0:
            raise ValueError(f"audio_end_ms must be an int >= 0, got {audio_end_ms!r}")
        self._require_connected()
        self._record("call", "truncate", {"item_id": item_id, "audio_end_ms": audio_end_ms,
                                          "content_index": content_index})
        sent = self._audio_ms_sent(item_id) if item_id in self._conv else None
        if sent is None:
            self._error("invalid_value", f"item {item_id} is not an assistant audio item in the conversation",
                        param="item_id", request_type="conversation.item.truncate")
        elif audio_end_ms == 0 or audio_end_ms > sent:
            self._error("invalid_value", f"audio_end_ms {audio_end_ms} is outside (0, {sent}] ms of audio",
                        param="audio_end_ms", request_type="conversation.item.truncate")
        else:
            self._truncated(item_id, audio_end_ms, content_index)

    def _truncated(self, item_id: str, audio_end_ms: int, content_index: int = 0) -> None:
        self._conv_audio_ms[item_id] = audio_end_ms
        if self._playing is not None and self._playing.id == item_id:
            self._playing = None
        self._ev(EventType.ITEM_TRUNCATED, {"content_index": content_index, "audio_end_ms": audio_end_ms},
                 item_id=item_id)

    async def interrupt(self, *, item_id: str | None = None, played_ms: int | None = None) -> InterruptResult:
        """Barge-in, with the OpenAI provider's rules (see the module docstring); ``item_id``
        names the item being heard (default: the one whose audio was sent last)."""
        if played_ms is not None and (isinstance(played_ms, bool) or not isinstance(played_ms, int) or played_ms < 0):
            raise ValueError(f"played_ms must be an int >= 0 or None, got {played_ms!r}")
        if item_id is not None and not isinstance(item_id, str):
            raise TypeError("item_id must be a str or None")
        self._require_connected()
        self._record("call", "interrupt", {"played_ms": played_ms} if item_id is None
                     else {"played_ms": played_ms, "item_id": item_id})
        playing = self._playing
        cut_id = item_id if item_id is not None else (playing.id if playing is not None else None)
        received = self._audio_ms_sent(cut_id) if cut_id is not None and cut_id in self._conv else None
        resp = self._stop_active()  # first: no delta of the cancelled response gets out after this
        action, end_ms = "none", None
        if cut_id is not None and received is not None:
            end_ms = received if played_ms is None else min(played_ms, received)
            if end_ms > 0:
                self._truncated(cut_id, end_ms)
                action = "truncated"
            else:
                self._delete(cut_id)
                action = "deleted"
        if resp is not None:
            self._emit_cancelled(resp, "client_cancelled")
        return InterruptResult(item_id=cut_id, played_ms=played_ms,
                               audio_end_ms=end_ms, action=action, cancelled_response=resp is not None,
                               response_id=resp.id if resp is not None else None)

    # ------------------------------------------------------------ input audio, VAD, outages
    async def send_audio(self, audio: Any) -> None:
        """Append PCM16 24 kHz mono; runs the energy VAD when turn detection is on.

        While reconnecting (:meth:`MockProvider.inject_disconnect`) the audio goes to a
        bounded backlog instead (``reconnect_audio_buffer_ms``, oldest dropped), replayed
        into the restored session. Every byte is accounted in :attr:`audio_ledger`.
        """
        view = _pcm_view(audio)
        if self._state is ConnectionState.RECONNECTING:
            self._record("call", "send_audio", {"bytes": len(view), "backlog": True})
            self.audio_ledger.captured(len(view))
            self._backlog_add(bytes(view))
            return
        self._require_connected()
        self._record("call", "send_audio", {"bytes": len(view)})
        self.audio_ledger.captured(len(view))
        self.audio_ledger.sent(len(view))
        self._feed(view)

    # -------------------------------------------------------- outage backlog
    def _backlog_add(self, pcm: bytes) -> None:
        backlog = self._backlog
        backlog.append(pcm)
        self._backlog_bytes += len(pcm)
        limit = self.config.reconnect_audio_buffer_ms * _BYTES_PER_MS
        excess = self._backlog_bytes - limit
        while excess > 0:
            # the newest speech matters most: drop the OLDEST audio, counted as dropped
            head = backlog[0]
            cut = min(len(head), excess)
            if cut == len(head):
                backlog.popleft()
            else:
                backlog[0] = head[cut:]
            self._backlog_bytes -= cut
            self._outage_dropped += cut
            self.audio_ledger.dropped(cut)
            excess -= cut

    def _backlog_take(self) -> list[bytes]:
        chunks = list(self._backlog)
        self._backlog.clear()
        self._backlog_bytes = 0
        return chunks

    def _backlog_drop(self) -> int:
        """Drop the whole backlog (gave up, failed, disconnected); returns the bytes dropped."""
        n = sum(len(c) for c in self._backlog_take())
        if n:
            self.audio_ledger.dropped(n)
            self._outage_dropped += n
        return n

    def _audio_pending_bytes(self) -> int:
        return self._backlog_bytes

    def _feed(self, view: Any) -> None:
        """Input audio reaching the (mock) server: the buffer and the VAD."""
        self._buffer_bytes += len(view)
        if self._session["turn_detection"] is None:
            self._timeline_bytes += len(view)
            return
        data = self._vad_carry + bytes(view) if self._vad_carry else view
        usable = len(data) - len(data) % _VAD_FRAME_BYTES
        threshold = self.config.vad_threshold_dbfs
        for start in range(0, usable, _VAD_FRAME_BYTES):
            frame = array.array("h", bytes(data[start:start + _VAD_FRAME_BYTES]))
            if sys.byteorder == "big":
                frame.byteswap()
            energy = sum(x * x for x in frame) / len(frame)
            voiced = energy > 0 and 10 * math.log10(energy / (32768.0 * 32768.0)) > threshold
            self._timeline_bytes += _VAD_FRAME_BYTES
            self._vad_frame(voiced, self._timeline_bytes // _BYTES_PER_MS)
        self._vad_carry = bytes(data[usable:])  # counted on the timeline once its frame completes

    # ------------------------------------------------------------ continuity
    async def inject_disconnect(
        self, reason: str = "injected disconnect", *, close_code: int = 1006, reconnect: bool = False,
        downtime_ms: float = 0.0, resume: asyncio.Event | None = None, failed_attempts: int = 0,
    ) -> None:
        """Simulate a lost connection, with the OpenAI provider's continuity contract.

        The active response is lost: reported once as RESPONSE_DONE ``failed`` /
        ``connection_lost`` (never re-requested; queued requests are dropped). Without
        ``reconnect`` the state becomes ERROR (``failed``). With it: the replay source
        (:meth:`set_replay_source`) is called once, CONNECTION_STATE ``reconnecting`` (attempt
        1..n), then the outage lasts ``downtime_ms`` and until ``resume`` is set (audio sent
        meanwhile goes to the bounded backlog); ``failed_attempts`` attempts fail first and
        after ``max_reconnect_attempts`` failures the mock gives up (``gave_up``, backlog
        dropped). On success a fresh session: SESSION_CREATED, SESSION_UPDATED (config plus
        every ``update_session`` so far), each replayed item re-created with its id
        (ITEM_ADDED/ITEM_DONE), the backlog audio, then ``restored`` with the
        :class:`ConnectionChange` details.
        """
        self._record("call", "inject_disconnect", {"reason": reason, "close_code": close_code,
                                                    "reconnect": reconnect, "downtime_ms": downtime_ms,
                                                    "failed_attempts": failed_attempts})
        self._require_connected()
        if downtime_ms < 0 or failed_attempts < 0:
            raise ValueError("downtime_ms and failed_attempts must be >= 0")
        lost = self._stop_active()
        self._queue.clear()
        self._playing = None
        await self._cancel_tasks()
        if lost is not None:
            # a response cut by the loss ends here; asking again is the app's call (a
            # duplicate reply is worse than none)
            self._ev(EventType.RESPONSE_DONE, self._info(lost, "failed", "connection_lost"), response_id=lost.id)
        if not reconnect:
            self._set_state(ConnectionState.ERROR, phase="failed", reason=reason, close_code=close_code)
            return
        items = self._replay_snapshot()
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._outage_dropped = 0
        limit = self.config.max_reconnect_attempts
        attempt = 0
        while True:
            if attempt >= limit:
                self._backlog_drop()
                self._set_state(ConnectionState.ERROR, phase="gave_up", attempt=attempt,
                                reason=f"{reason}: {attempt} reconnect attempt(s) failed" if attempt else reason,
                                dropped_audio_bytes=self._outage_dropped,
                                downtime_ms=(loop.time() - started) * 1000.0)
                return
            attempt += 1
            self._set_state(ConnectionState.RECONNECTING, phase="reconnecting", attempt=attempt,
                            reason=reason if attempt == 1 else f"attempt {attempt - 1} failed",
                            close_code=close_code if attempt == 1 else None)
            if attempt == 1:
                if downtime_ms:
                    await asyncio.sleep(downtime_ms / 1000.0)
                if resume is not None:
                    await resume.wait()
            await self._tick()
            if self._state is not ConnectionState.RECONNECTING:
                return  # disconnect() (or another fault) ended the outage meanwhile
            if attempt > failed_attempts:
                break
        self._restore(items, reason, attempt, (loop.time() - started) * 1000.0)

    def _replay_snapshot(self) -> list[Mapping[str, Any]]:
        """The replay source's items, taken once per outage (when the connection is lost)."""
        source = self._replay_source
        if source is None:
            return []
        try:
            return [dict(item) for item in source()]
        except Exception:
            log.exception("mock: the replay source raised; restoring an empty conversation")
            return []

    def _restore(self, items: list[Mapping[str, Any]], reason: str, attempt: int, downtime_ms: float) -> None:
        # synchronous from here to "restored": no app call can interleave with the replay
        self._connections += 1
        self._reset_session()
        self.session_id = f"sess_mock{self.config.seed}_{self._connections}"
        self._ev(EventType.SESSION_CREATED, {"session": self._session_dict()})
        self._ev(EventType.SESSION_UPDATED, {"session": self._session_dict()})
        replayed = 0
        for item in items:
            if not isinstance(item.get("type"), str):
                self._error("invalid_value", "a replayed item has no 'type'", param="item.type",
                            request_type="conversation.item.create")
                continue
            if self._add(item, None, check=False) is not None:
                replayed += 1
        audio = 0
        for chunk in self._backlog_take():
            self._feed(memoryview(chunk))
            self.audio_ledger.replayed(len(chunk))
            audio += len(chunk)
        self._set_state(ConnectionState.CONNECTED, phase="restored", reason=reason, attempt=attempt,
                        replayed_items=replayed, replayed_audio_bytes=audio,
                        dropped_audio_bytes=self._outage_dropped, downtime_ms=downtime_ms)
        self._start_next()

    def _vad_option(self, name: str, default: Any) -> Any:
        td = self._session["turn_detection"]
        if isinstance(td, TurnDetection):  # the neutral setting, read under its OpenAI names
            value = {"silence_duration_ms": td.silence_ms, "prefix_padding_ms": td.prefix_ms,
                     "threshold": td.threshold, "interrupt_response": td.interrupt_on_speech,
                     "create_response": td.auto_response}.get(name)
            return default if value is None else value
        return td.get(name, default) if isinstance(td, Mapping) else default

    def _vad_frame(self, voiced: bool, end_ms: int) -> None:
        if voiced:
            if not self._vad_speaking:
                self._vad_speaking = True
                self._vad_item = self._new_id("item")
                buffer_start = end_ms - self._buffer_bytes // _BYTES_PER_MS
                start_ms = max(buffer_start, end_ms - 20 - int(self._vad_option("prefix_padding_ms",
                                                                                self.config.vad_prefix_ms)))
                self._ev(EventType.SPEECH_STARTED, {"audio_start_ms": max(0, start_ms)}, item_id=self._vad_item)
                if self._active is not None and self._vad_option("interrupt_response", True):
                    resp = self._stop_active()
                    if resp is not None:
                        self._emit_cancelled(resp, "turn_detected")
            self._vad_last_voice_ms = end_ms
        elif self._vad_speaking and end_ms - self._vad_last_voice_ms >= int(
                self._vad_option("silence_duration_ms", self.config.vad_silence_ms)):
            self._vad_speaking = False
            item_id, self._vad_item = self._vad_item, None
            self._ev(EventType.SPEECH_STOPPED, {"audio_end_ms": self._vad_last_voice_ms}, item_id=item_id)
            self._commit(item_id)
            if self._vad_option("create_response", True):
                self._request_response({})

    def _commit(self, item_id: str | None = None) -> str:
        item_id = item_id or self._new_id("item")
        prev = self._conv[-1] if self._conv else None
        self._buffer_bytes = 0
        self._ev(EventType.INPUT_COMMITTED, {"previous_item_id": prev}, item_id=item_id)
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed", "content": [{"type": "input_audio", "transcript": None}]}
        self._conv.append(item_id)
        self._ev(EventType.ITEM_ADDED, {**item, "previous_item_id": prev}, item_id=item_id)
        self._ev(EventType.ITEM_DONE, {**item, "previous_item_id": prev}, item_id=item_id)
        scripts = self.config.input_transcripts
        if scripts:
            self._ev(EventType.INPUT_TRANSCRIPT, scripts[self._user_turns % len(scripts)], item_id=item_id)
        self._user_turns += 1
        return item_id

    async def commit_audio(self) -> None:
        self._require_connected()
        self._record("call", "commit_audio")
        if self._buffer_bytes < _MIN_COMMIT_BYTES:
            self._error("input_audio_buffer_commit_empty",
                        f"buffer too small: {self._buffer_bytes // _BYTES_PER_MS} ms, need at least 100 ms",
                        request_type="input_audio_buffer.commit")
            return
        item_id, self._vad_item, self._vad_speaking = self._vad_item, None, False
        self._commit(item_id)

    async def clear_audio(self) -> None:
        self._require_connected()
        self._record("call", "clear_audio")
        self._buffer_bytes = 0
        self._vad_carry = b""
        self._vad_speaking, self._vad_item = False, None
        self._ev(EventType.INPUT_CLEARED)
