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
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import json
import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..exceptions import AudioFormatError, ConfigurationError, InvalidState, LocalProtocolError
from ._mock_audio import SAMPLE_RATE, synthesize_speech
from ._mock_responses import _MockResponses, _Out, _Resp
from .base import BaseProvider, ProviderConfig
from .types import (
    AudioFormat, ConnectionState, ErrorInfo, EventType, MessageType, ProviderCapabilities, ProviderEvent,
    TurnDetection,
)

__all__ = ["MockConfig", "MockProvider", "MockRecord", "synthesize_speech"]

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


class MockProvider(_MockResponses, BaseProvider):
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
        )
