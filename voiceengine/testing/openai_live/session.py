"""One fake OpenAI Live session: the protocol rules, sans-I/O.

Feed client texts to :meth:`FakeLiveSession.receive`, drain server events with
:meth:`FakeLiveSession.events_to_send`, and step the reply being spoken with
:meth:`FakeLiveSession.advance` (the shell paces it). No asyncio, no sockets.

What the fake does (the real service's behaviour, reduced to something tests can predict):

* ``session.start`` must come first; anything before ``session.started`` is answered with an
  ``error`` (code ``session_not_started``). Unknown keys in the session object are refused
  (``unknown_parameter``), as the real service does.
* Input audio moves the session timeline. Energy VAD finds turns: the first word of the
  user's transcript goes out as soon as speech starts (the client's barge-in signal), the
  rest when the turn ends; then the reply is spoken: output transcript and audio deltas
  interleaved, and a ``session.usage.updated`` at its end. Speech over a reply stops it.
* With ``delegation.type == "responses"``: ``response.item.create`` (a user message) +
  ``response.create`` runs a scripted Responses delegation: with tools declared the backend
  calls the first tool and waits for ``function_call_output`` + ``response.create``; then it
  answers in text and the Live model speaks the outcome.
* Only ``audio/pcm`` (16 or 24 kHz) is spoken; G.711 formats are refused with an error.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..audio import Synthesis, synthesize
from ..vad import EnergyVad, VadEventKind
from .config import (
    FakeOpenAILiveConfig,
    LiveReplyContext,
    default_live_reply,
    default_live_transcript,
)

__all__ = ["FakeLiveSession", "LiveClientError", "CLOSE_REASONS"]

log = logging.getLogger("voiceengine.testing.openai_live")

CLOSE_REASONS = ("close_requested", "expired", "content", "remote_hangup", "connection_lost")
_SESSION_KEYS = frozenset({"model", "audio", "client", "delegation", "input", "instructions",
                           "safety_identifier", "store", "triggers"})
_UPDATE_KEYS = frozenset({"delegation", "triggers"})
_UNSUPPORTED = frozenset({"decision.create", "decision.item.create", "decision.item.delete",
                          "session.output_audio.fixture.play"})
_RATES = (16000, 24000)


class LiveClientError(Exception):
    """A client event broke a protocol rule; becomes an ``error`` event."""

    def __init__(self, code: str, message: str, param: str | None = None,
                 type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.type = type_


@dataclass(slots=True)
class _Reply:
    """A reply being spoken: the steps still to send, each (events, audio ms)."""

    text: str
    steps: deque[tuple[list[dict[str, Any]], int]]
    audio_sent_ms: int = 0


class FakeLiveSession:
    """Per-connection protocol state.

    Attributes tests use: ``received``, ``sent``, ``errors``, ``started``, ``session`` (the
    session resource sent in ``session.started``), ``transcripts`` (user turns heard),
    ``replies`` (texts spoken, whole), ``interrupted_replies``, ``thinking``,
    ``instructions_appended``, ``commentary``, ``function_calls`` (call_id -> name and
    arguments), ``function_outputs``, ``typed_turns``, ``closed_reason``, ``closed_code``,
    ``request_headers`` (secrets masked), ``input_audio_bytes``.
    """

    def __init__(self, config: FakeOpenAILiveConfig, *, index: int = 0) -> None:
        self.config = config
        self.index = index
        self.clock: Callable[[], float] = config.clock
        self.started_at = self.clock()
        self._ids = itertools.count(1)
        self.id = self._new_id("sess")
        cap = config.max_recorded_events
        self.received: deque[dict[str, Any]] = deque(maxlen=cap)
        self.sent: deque[dict[str, Any]] = deque(maxlen=cap)
        self.errors: deque[dict[str, Any]] = deque(maxlen=cap)
        self.faulty_sent: deque[str] = deque(maxlen=cap)
        self.request_headers: dict[str, str] = {}
        self.started = False
        self.session: dict[str, Any] | None = None
        self.rate = 24000
        self.muted = False
        self.input_audio_bytes = 0
        self.transcripts: deque[str] = deque(maxlen=cap)
        self.replies: deque[str] = deque(maxlen=cap)
        self.interrupted_replies = 0
        self.thinking: deque[str] = deque(maxlen=cap)
        self.instructions_appended: deque[str] = deque(maxlen=cap)
        self.commentary: deque[str] = deque(maxlen=cap)
        self.typed_turns: deque[str] = deque(maxlen=cap)
        self.function_calls: dict[str, dict[str, str]] = {}
        self.function_outputs: dict[str, str] = {}
        self.closed_reason: str | None = None
        self.closed_code: int | None = None
        self._outbox: list[dict[str, Any]] = []
        self._vad: EnergyVad | None = None
        self._turns = 0
        self._reply_count = 0
        self._reply: _Reply | None = None
        self._new_reply = False
        self._turn_words: list[str] = []
        self._words_sent = 0
        self._last_word_ms = 0
        self._idle_pending_ms = 0
        self._idle_phase = 1
        self._pending_user_text: str | None = None
        self._last_user_text: str | None = None
        self._open_calls: dict[str, str] = {}      # call_id -> delegation id, waiting for output
        self._answered: dict[str, str] = {}        # outputs received for the open round
        self._handlers: dict[str, Callable[[dict[str, Any], str | None], None]] = {
            "session.update": self._on_session_update,
            "session.input_audio.append": self._on_append,
            "session.input_audio.mute": self._on_mute,
            "session.input_audio.unmute": self._on_unmute,
            "session.instructions.append": self._on_instructions,
            "session.thinking.append": self._on_thinking,
            "session.commentary.append": self._on_commentary,
            "response.item.create": self._on_item_create,
            "response.create": self._on_response_create,
            "session.close": self._on_close,
        }

    # ---------------------------------------------------------------- plumbing
    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{self.index:04d}{next(self._ids):08d}"

    def emit(self, type_: str, *, client_event_id: str | None = None, **fields: Any) -> dict[str, Any]:
        """Queue a server event (with an ``event_id``; ``client_event_id`` when it answers one)."""
        ev: dict[str, Any] = {"type": type_, "event_id": self._new_id("event"), **fields}
        if client_event_id is not None:
            ev["client_event_id"] = client_event_id
        self._outbox.append(ev)
        return ev

    def error(self, code: str, message: str, *, param: str | None = None,
              client_event_id: str | None = None, type_: str = "invalid_request_error") -> dict[str, Any]:
        """Queue an ``error`` event (answering ``client_event_id`` when known)."""
        return self.emit("error", client_event_id=client_event_id,
                         error={"type": type_, "code": code, "message": message, "param": param,
                                "client_event_id": client_event_id})

    def events_to_send(self) -> list[dict[str, Any]]:
        """Drain queued server events, in order."""
        out, self._outbox = self._outbox, []
        return out

    def record_sent(self, event: Mapping[str, Any]) -> None:
        """The shell calls this for each well-formed event actually written."""
        ev = dict(event)
        if not self.config.record_audio_payloads and ev.get("type") == "session.output_audio.delta":
            ev["delta"] = ""
        self.sent.append(ev)
        if ev.get("type") == "error":
            self.errors.append(ev)

    @property
    def timeline_ms(self) -> int:
        """Milliseconds of input audio received: the session timeline."""
        return self.input_audio_bytes // (2 * self.rate // 1000)

    @property
    def usage_seconds(self) -> float:
        """Cumulative billable seconds (whole seconds of the timeline)."""
        return float(self.timeline_ms // 1000)

    @property
    def speaking(self) -> bool:
        """True while a reply is being spoken."""
        return self._reply is not None

    def expired(self) -> bool:
        """True once ``max_session_s`` has passed on the config's clock."""
        limit = self.config.max_session_s
        return limit is not None and self.clock() - self.started_at >= limit

    # ---------------------------------------------------------------- inbound
    def receive(self, data: str | bytes) -> None:
        """Handle one client message; protocol violations become ``error`` events."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            self.error("invalid_value", "Binary frames are not supported; send JSON text frames.")
            return
        try:
            ev = json.loads(data)
        except json.JSONDecodeError as exc:
            self.error("invalid_json", f"The client event is not valid JSON: {exc.msg}.")
            return
        if not isinstance(ev, dict):
            self.error("invalid_json", "The client event must be a JSON object.")
            return
        self.received.append({**ev, "audio": ""} if not self.config.record_audio_payloads
                             and ev.get("type") == "session.input_audio.append" else ev)
        raw_eid = ev.get("event_id")
        eid = raw_eid if isinstance(raw_eid, str) else None
        etype = ev.get("type")
        try:
            if raw_eid is not None and eid is None:
                raise LiveClientError("invalid_type", "Invalid type for 'event_id': expected a string.", "event_id")
            if not isinstance(etype, str):
                raise LiveClientError("missing_required_parameter", "Missing required parameter: 'type'.", "type")
            if self.closed_reason is not None:
                raise LiveClientError("session_closed", "The session has closed.")
            if etype == "session.start":
                self._on_start(ev, eid)
                return
            if etype in _UNSUPPORTED:
                raise LiveClientError("unsupported_event", f"'{etype}' is not supported by the fake server.", "type")
            handler = self._handlers.get(etype)
            if handler is None:
                raise LiveClientError("invalid_value", f"Invalid value: '{etype}'. Not a Live client event.", "type")
            if not self.started:
                raise LiveClientError("session_not_started",
                                      f"'{etype}' was sent before session.started; send session.start first "
                                      "and wait for session.started.")
            handler(ev, eid)
        except LiveClientError as exc:
            self.error(exc.code, exc.message, param=exc.param, client_event_id=eid, type_=exc.type)

    # ---------------------------------------------------------------- session
    def _on_start(self, ev: dict[str, Any], eid: str | None) -> None:
        if self.started:
            raise LiveClientError("session_already_started", "session.start was already accepted.")
        cfg = ev.get("session")
        if not isinstance(cfg, dict):
            raise LiveClientError("missing_required_parameter", "Missing required parameter: 'session'.", "session")
        unknown = sorted(set(cfg) - _SESSION_KEYS)
        if unknown:
            raise LiveClientError("unknown_parameter", f"Unknown parameter: 'session.{unknown[0]}'.",
                                  f"session.{unknown[0]}")
        model = cfg.get("model")
        if not isinstance(model, str) or not model:
            raise LiveClientError("missing_required_parameter", "Missing required parameter: 'session.model'.",
                                  "session.model")
        audio = cfg.get("audio") or {}
        if not isinstance(audio, dict) or set(audio) - {"format", "output"}:
            raise LiveClientError("invalid_value", "session.audio takes only 'format' and 'output'.", "session.audio")
        fmt = audio.get("format") or {"type": "audio/pcm", "rate": 24000}
        if not isinstance(fmt, dict) or fmt.get("type") != "audio/pcm" or fmt.get("rate") not in _RATES:
            raise LiveClientError("invalid_value", "The fake server speaks audio/pcm at 16000 or 24000 Hz only.",
                                  "session.audio.format")
        output = audio.get("output") or {}
        voice = output.get("voice", "marin") if isinstance(output, dict) else None
        if not (isinstance(voice, str) and voice) and not (isinstance(voice, dict) and isinstance(voice.get("id"), str)):
            raise LiveClientError("invalid_value", "session.audio.output.voice must be a voice name or {id}.",
                                  "session.audio.output.voice")
        delegation = self._checked_delegation(cfg.get("delegation"), "session.delegation")
        history = cfg.get("input")
        if history is not None:
            self._check_history(history)
        instructions = cfg.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise LiveClientError("invalid_type", "session.instructions must be a string.", "session.instructions")
        self.rate = int(fmt["rate"])
        self._vad = EnergyVad(sample_rate=self.rate, threshold_dbfs=self.config.vad_threshold_dbfs,
                              silence_duration_ms=self.config.vad_silence_ms,
                              prefix_padding_ms=self.config.vad_prefix_ms,
                              min_speech_ms=self.config.vad_min_speech_ms)
        self.session = {
            "id": self.id,
            "expires_at": int(self.config.wall_clock() + self.config.session_duration_s),
            "model": model,
            "status": "active",
            "audio": {"format": {"type": "audio/pcm", "rate": self.rate}, "output": {"voice": voice}},
            "delegation": delegation,
            "input": history,
            "instructions": instructions,
        }
        self.started = True
        self.emit("session.started", client_event_id=eid, session=json.loads(json.dumps(self.session)))

    def _checked_delegation(self, value: Any, param: str) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict) or value.get("type") not in ("client", "responses", "decisions"):
            raise LiveClientError("invalid_value", f"{param}.type must be client, responses or decisions.", param)
        if value["type"] == "responses":
            backend = value.get("responses")
            if not isinstance(backend, dict) or not isinstance(backend.get("model"), str):
                raise LiveClientError("missing_required_parameter", f"Missing required parameter: "
                                      f"'{param}.responses.model'.", f"{param}.responses.model")
            self._check_tools(backend.get("tools"), f"{param}.responses.tools")
        copied: dict[str, Any] = json.loads(json.dumps(value))
        return copied

    @staticmethod
    def _check_tools(tools: Any, param: str) -> None:
        if tools is None:
            return
        if not isinstance(tools, list):
            raise LiveClientError("invalid_type", f"{param} must be an array.", param)
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
                raise LiveClientError("invalid_value", f"{param}[{i}] must be a tool object.", f"{param}[{i}]")
            if tool["type"] == "function" and not (isinstance(tool.get("name"), str) and tool["name"]):
                raise LiveClientError("missing_required_parameter", f"Missing required parameter: "
                                      f"'{param}[{i}].name'.", f"{param}[{i}].name")

    @staticmethod
    def _check_history(history: Any) -> None:
        if not isinstance(history, list) or len(history) > 128:
            raise LiveClientError("invalid_value", "session.input must be an array of at most 128 messages.",
                                  "session.input")
        for i, item in enumerate(history):
            content = item.get("content") if isinstance(item, dict) else None
            if (not isinstance(item, dict) or item.get("role") not in ("developer", "user", "assistant")
                    or not isinstance(content, list) or len(content) != 1
                    or not isinstance(content[0], dict) or not isinstance(content[0].get("text"), str)):
                raise LiveClientError("invalid_value", f"session.input[{i}] must be a developer, user or "
                                      "assistant message with one text part.", f"session.input[{i}]")

    @property
    def history(self) -> tuple[tuple[str, str], ...]:
        """The ``session.start`` text history as (role, text) pairs."""
        items = (self.session or {}).get("input") or []
        return tuple((it["role"], it["content"][0]["text"]) for it in items)

    @property
    def tools(self) -> tuple[dict[str, Any], ...]:
        """The function tools declared for the Responses backend."""
        delegation = (self.session or {}).get("delegation") or {}
        if delegation.get("type") != "responses":
            return ()
        return tuple(t for t in delegation["responses"].get("tools") or () if t.get("type") == "function")

    def _started(self) -> tuple[dict[str, Any], EnergyVad]:
        """The session and its VAD, which exist once ``session.start`` was accepted."""
        if self.session is None or self._vad is None:
            raise LiveClientError("session_not_started", "Send session.start first and wait for session.started.")
        return self.session, self._vad

    def _on_session_update(self, ev: dict[str, Any], eid: str | None) -> None:
        session, _ = self._started()
        update = ev.get("session")
        if not isinstance(update, dict):
            raise LiveClientError("missing_required_parameter", "Missing required parameter: 'session'.", "session")
        immutable = sorted(set(update) - _UPDATE_KEYS)
        if immutable:
            raise LiveClientError("immutable_parameter", f"'session.{immutable[0]}' cannot change after startup; "
                                  "session.update changes only delegation and triggers.", f"session.{immutable[0]}")
        if "delegation" in update:
            change = update["delegation"]
            current = session.get("delegation")
            if not isinstance(change, dict) or current is None or change.get("type") != current.get("type"):
                raise LiveClientError("invalid_value", "The delegation type cannot change.", "session.delegation.type")
            merged = dict(current)
            for key, value in change.items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key] = {**merged[key], **value}
                else:
                    merged[key] = value
            session["delegation"] = self._checked_delegation(merged, "session.delegation")
        self.emit("session.updated", client_event_id=eid, session=json.loads(json.dumps(session)))

    # ---------------------------------------------------------------- audio and turns
    def _on_append(self, ev: dict[str, Any], eid: str | None) -> None:
        audio = ev.get("audio")
        if not isinstance(audio, str):
            raise LiveClientError("missing_required_parameter", "Missing required parameter: 'audio'.", "audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise LiveClientError("invalid_value", "'audio' is not valid base64.", "audio") from None
        if len(pcm) % 2:
            raise LiveClientError("invalid_value", "'audio' must hold whole PCM16 samples.", "audio")
        _, vad = self._started()
        self.input_audio_bytes += len(pcm)
        for vad_event in vad.process(bytes(len(pcm)) if self.muted else pcm):
            if vad_event.kind is VadEventKind.SPEECH_STARTED:
                self._on_speech_started(vad_event.ms)
            else:
                self._on_speech_stopped(vad_event.ms)
        if vad.speaking:
            self._transcribe_while_speaking()
        self._idle_output(len(pcm) * 1000 // (2 * self.rate))

    def _on_speech_started(self, ms: int) -> None:
        if self._reply is not None:
            self._reply = None  # the server hears the user over its own speech and stops
            self.interrupted_replies += 1
        script = self.config.input_transcripts
        if script is None:
            text = default_live_transcript(self._turns)
        elif callable(script):
            text = script(self._turns)
        else:
            text = script[self._turns % len(script)] if script else ""
        self._turns += 1
        self._turn_words = text.split()
        self._words_sent = 0
        self._last_word_ms = ms
        if self._turn_words:  # the first word at once: the client's barge-in signal
            self._emit_word(ms, ms)

    def _emit_word(self, start_ms: int, end_ms: int) -> None:
        word = self._turn_words[self._words_sent]
        self.emit("session.input_transcript.delta", delta=word if self._words_sent == 0 else " " + word,
                  start_ms=start_ms, end_ms=end_ms)
        self._words_sent += 1
        self._last_word_ms = end_ms

    def _transcribe_while_speaking(self) -> None:
        """One more word every ``input_word_interval_ms`` of speech (what is left at the end goes then)."""
        interval = self.config.input_word_interval_ms
        while self._words_sent < len(self._turn_words) and self.timeline_ms - self._last_word_ms >= interval:
            self._emit_word(self._last_word_ms, self._last_word_ms + interval)

    def _on_speech_stopped(self, ms: int) -> None:
        words = self._turn_words
        left = len(words) - self._words_sent
        start, end = self._last_word_ms, max(self._last_word_ms, ms - self.config.vad_silence_ms)
        for i in range(left):
            self._emit_word(start + (end - start) * i // left, start + (end - start) * (i + 1) // left)
        text = " ".join(words)
        self.transcripts.append(text)
        self._last_user_text = text
        if self.config.delegate_spoken_turns and self.tools:
            self._delegate(text)
        else:
            self._start_reply("spoken", user_text=text or None)

    def _idle_output(self, heard_ms: int) -> None:
        period = self.config.idle_output_ms
        if period is None or self._reply is not None:
            self._idle_pending_ms = 0
            return
        self._idle_pending_ms += heard_ms
        while self._idle_pending_ms >= period:
            self._idle_pending_ms -= period
            n = self.rate * period // 1000
            amp = self.config.idle_output_amplitude
            frame = bytearray()
            for _ in range(n):  # a quiet square wave: not digital silence, far below speech
                frame += (amp * self._idle_phase).to_bytes(2, "little", signed=True)
                self._idle_phase = -self._idle_phase
            self._outbox.append({"type": "session.output_audio.delta",
                                 "delta": base64.b64encode(bytes(frame)).decode("ascii")})

    def _on_mute(self, ev: dict[str, Any], eid: str | None) -> None:
        self.muted = True
        self.emit("session.input_audio.muted", client_event_id=eid)

    def _on_unmute(self, ev: dict[str, Any], eid: str | None) -> None:
        self.muted = False
        self.emit("session.input_audio.unmuted", client_event_id=eid)

    # ---------------------------------------------------------------- context
    def _context_text(self, ev: dict[str, Any]) -> str:
        content = ev.get("content")
        if not isinstance(content, str) or not content:
            raise LiveClientError("missing_required_parameter", "Missing required parameter: 'content'.", "content")
        if "delegation_id" not in ev:
            raise LiveClientError("missing_required_parameter", "Missing required parameter: 'delegation_id' "
                                  "(null for general session context).", "delegation_id")
        delegation = (self.session or {}).get("delegation") or {}
        if ev["delegation_id"] is not None and delegation.get("type") == "responses":
            raise LiveClientError("invalid_value", "Non-null delegation_id is not accepted with Responses "
                                  "delegation.", "delegation_id")
        return content

    def _on_instructions(self, ev: dict[str, Any], eid: str | None) -> None:
        self.instructions_appended.append(self._context_text(ev))
        self.emit("session.instructions.appended", client_event_id=eid,
                  start_ms=self.timeline_ms, end_ms=self.timeline_ms)

    def _on_thinking(self, ev: dict[str, Any], eid: str | None) -> None:
        self.thinking.append(self._context_text(ev))
        self.emit("session.thinking.appended", client_event_id=eid,
                  start_ms=self.timeline_ms, end_ms=self.timeline_ms)

    def _on_commentary(self, ev: dict[str, Any], eid: str | None) -> None:
        text = self._context_text(ev)
        self.commentary.append(text)
        self.emit("session.commentary.appended", client_event_id=eid,
                  start_ms=self.timeline_ms, end_ms=self.timeline_ms)
        self._start_reply("commentary", user_text=text)

    # ---------------------------------------------------------------- delegation
    def _require_responses(self) -> None:
        delegation = (self.session or {}).get("delegation") or {}
        if delegation.get("type") != "responses":
            raise LiveClientError("invalid_request_error", "This command requires Responses delegation "
                                  "(session.delegation.type = 'responses').")

    def _on_item_create(self, ev: dict[str, Any], eid: str | None) -> None:
        self._require_responses()
        item = ev.get("item")
        if not isinstance(item, dict):
            raise LiveClientError("missing_required_parameter", "Missing required parameter: 'item'.", "item")
        kind = item.get("type", "message")
        if kind == "function_call_output":
            call_id, output = item.get("call_id"), item.get("output")
            if not isinstance(call_id, str) or call_id not in self._open_calls:
                raise LiveClientError("invalid_value", f"No open function call with call_id {call_id!r}.",
                                      "item.call_id")
            if not isinstance(output, str):
                raise LiveClientError("invalid_type", "item.output must be a string.", "item.output")
            self._answered[call_id] = output
            self.function_outputs[call_id] = output
            return
        if kind != "message" or item.get("role") != "user":
            raise LiveClientError("invalid_value", "The fake server accepts user messages and "
                                  "function_call_output items.", "item")
        content = item.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list) and content and all(
                isinstance(p, dict) and p.get("type") == "input_text" and isinstance(p.get("text"), str)
                for p in content):
            text = " ".join(p["text"] for p in content)
        else:
            raise LiveClientError("invalid_value", "item.content must be text or input_text parts.", "item.content")
        self._pending_user_text = text
        self.typed_turns.append(text)

    def _on_response_create(self, ev: dict[str, Any], eid: str | None) -> None:
        self._require_responses()
        if self._open_calls:
            missing = sorted(set(self._open_calls) - set(self._answered))
            if missing:
                raise LiveClientError("invalid_request_error", f"The delegated response is waiting for the "
                                      f"output of call {missing[0]}.")
            delegation_id = next(iter(self._open_calls.values()))
            outputs = [self._answered[c] for c in self._open_calls]
            self._open_calls.clear()
            self._answered.clear()
            self._backend_answer(delegation_id, "tool_result", function_output=", ".join(outputs))
            return
        text, self._pending_user_text = self._pending_user_text, None
        if text is not None:
            self._last_user_text = text
        self._delegate(text if text is not None else self._last_user_text)

    def _delegate(self, user_text: str | None) -> None:
        delegation_id = self._new_id("deleg")
        tools = self.tools
        if tools:
            response_id = self._new_id("resp")
            self.emit("session.delegation.created", offset_ms=self.timeline_ms,
                      delegation={"id": delegation_id, "target": "responses", "type": "delegation",
                                  "response_id": response_id})
            self._backend_call(delegation_id, response_id, tools[0]["name"])
        else:
            self._backend_answer(delegation_id, "typed", user_text=user_text, announce=True)

    def _nested(self, delegation_id: str, seq: itertools.count[int], type_: str, **fields: Any) -> None:
        self.emit("response.event", delegation_id=delegation_id,
                  event={"type": type_, "sequence_number": next(seq), **fields})

    def _response_snapshot(self, response_id: str, status: str) -> dict[str, Any]:
        # lifecycle snapshots omit input and clear instructions, tools and output (as the real one)
        return {"id": response_id, "object": "response", "created_at": int(self.config.wall_clock()),
                "model": self._backend_model(), "output": [], "parallel_tool_calls": True,
                "tool_choice": "auto", "tools": [], "status": status}

    def _backend_model(self) -> str:
        delegation = (self.session or {}).get("delegation") or {}
        return str((delegation.get("responses") or {}).get("model", "gpt-5"))

    def _backend_call(self, delegation_id: str, response_id: str, name: str) -> None:
        seq = itertools.count(0)
        call_id, item_id = self._new_id("call"), self._new_id("fc")
        args = self.config.tool_arguments_json
        self._nested(delegation_id, seq, "response.created", response=self._response_snapshot(response_id, "in_progress"))
        pending = {"type": "function_call", "id": item_id, "call_id": call_id, "name": name,
                   "arguments": "", "status": "in_progress"}
        self._nested(delegation_id, seq, "response.output_item.added", output_index=0, item=pending)
        self._nested(delegation_id, seq, "response.function_call_arguments.delta", item_id=item_id,
                     output_index=0, delta=args)
        self._nested(delegation_id, seq, "response.function_call_arguments.done", item_id=item_id,
                     output_index=0, arguments=args)
        self._nested(delegation_id, seq, "response.output_item.done", output_index=0,
                     item={**pending, "arguments": args, "status": "completed"})
        self._nested(delegation_id, seq, "response.completed", response=self._response_snapshot(response_id, "completed"))
        self._open_calls[call_id] = delegation_id
        self.function_calls[call_id] = {"name": name, "arguments": args}

    def _backend_answer(self, delegation_id: str, kind: str, *, user_text: str | None = None,
                        function_output: str | None = None, announce: bool = False) -> None:
        response_id = self._new_id("resp")
        if announce:
            self.emit("session.delegation.created", offset_ms=self.timeline_ms,
                      delegation={"id": delegation_id, "target": "responses", "type": "delegation",
                                  "response_id": response_id})
        text = self._reply_text(kind, user_text, function_output)
        seq = itertools.count(0)
        item_id = self._new_id("msg")
        self._nested(delegation_id, seq, "response.created", response=self._response_snapshot(response_id, "in_progress"))
        message = {"type": "message", "id": item_id, "role": "assistant", "status": "in_progress", "content": []}
        self._nested(delegation_id, seq, "response.output_item.added", output_index=0, item=message)
        self._nested(delegation_id, seq, "response.output_text.delta", item_id=item_id, output_index=0,
                     content_index=0, delta=text, logprobs=[])
        self._nested(delegation_id, seq, "response.output_text.done", item_id=item_id, output_index=0,
                     content_index=0, text=text, logprobs=[])
        part = {"type": "output_text", "text": text, "annotations": []}
        self._nested(delegation_id, seq, "response.output_item.done", output_index=0,
                     item={**message, "status": "completed", "content": [part]})
        self._nested(delegation_id, seq, "response.completed", response=self._response_snapshot(response_id, "completed"))
        self._speak(text)

    # ---------------------------------------------------------------- replies
    def _reply_text(self, kind: str, user_text: str | None, function_output: str | None) -> str:
        ctx = LiveReplyContext(index=self._reply_count, session_index=self.index, kind=kind, user_text=user_text,
                               function_output=function_output, thinking=tuple(self.thinking))
        script = self.config.replies
        if script is None:
            text = default_live_reply(ctx)
        elif callable(script):
            text = script(ctx)
        elif self._reply_count < len(script) or (self.config.cycle_replies and script):
            text = script[self._reply_count % len(script)]
        else:
            text = default_live_reply(ctx)
        self._reply_count += 1
        return text

    def _start_reply(self, kind: str, *, user_text: str | None) -> None:
        self._speak(self._reply_text(kind, user_text, None))

    def _speak(self, text: str) -> None:
        """Plan ``text`` as interleaved transcript and audio deltas; a reply in progress is replaced."""
        synth: Synthesis = synthesize(text, self.rate, self.config.synth)
        bytes_per_ms = 2 * self.rate // 1000
        chunk = self.config.chunk_ms * bytes_per_ms
        gap = 2 * (self.rate * self.config.synth.gap_ms // 1000)
        ends = [o - gap for o in synth.word_offsets[1:]] + [len(synth.pcm)]
        origin = self.timeline_ms
        words = list(zip(synth.words, synth.word_offsets, ends))
        steps: deque[tuple[list[dict[str, Any]], int]] = deque()
        w = 0
        for start in range(0, len(synth.pcm), chunk):
            piece = synth.pcm[start:start + chunk]
            events: list[dict[str, Any]] = []
            while w < len(words) and words[w][1] < start + len(piece):
                word, a, b = words[w]
                events.append({"type": "session.output_transcript.delta", "delta": word if w == 0 else " " + word,
                               "start_ms": origin + a // bytes_per_ms, "end_ms": origin + b // bytes_per_ms})
                w += 1
            events.append({"type": "session.output_audio.delta",
                           "delta": base64.b64encode(piece).decode("ascii")})
            steps.append((events, len(piece) // bytes_per_ms))
        if self._reply is not None:
            self.interrupted_replies += 1
        self._reply = _Reply(text=text, steps=steps)
        self._new_reply = True

    def take_new_reply(self) -> bool:
        """True once per reply started since the last call (the shell starts pacing it)."""
        new, self._new_reply = self._new_reply, False
        return new

    def advance(self) -> int | None:
        """Queue the next step of the reply; its audio ms, or None when no reply is left."""
        reply = self._reply
        if reply is None:
            return None
        if not reply.steps:
            self._reply = None
            self.replies.append(reply.text)
            self.emit("session.usage.updated", usage={"seconds": self.usage_seconds})
            return None
        events, ms = reply.steps.popleft()
        for ev in events:
            if ev["type"] == "session.output_audio.delta":
                self._outbox.append(ev)  # output audio carries no event_id on the primary socket
            else:
                self.emit(ev.pop("type"), **ev)
        reply.audio_sent_ms += ms
        return ms

    # ---------------------------------------------------------------- ending
    def _on_close(self, ev: dict[str, Any], eid: str | None) -> None:
        self.close("close_requested", client_event_id=eid)

    def close(self, reason: str, *, client_event_id: str | None = None) -> None:
        """Queue the final ``session.closed`` (``reason`` from :data:`CLOSE_REASONS`)."""
        if reason not in CLOSE_REASONS:
            raise ValueError(f"reason must be one of {CLOSE_REASONS}")
        if self.closed_reason is not None:
            return
        self._reply = None
        self.closed_reason = reason
        snapshot = self.session or {"id": self.id, "expires_at": int(self.config.wall_clock()),
                                    "model": self.config.model, "status": "active"}
        self.emit("session.closed", client_event_id=client_event_id, reason=reason,
                  session=json.loads(json.dumps(snapshot)), usage={"seconds": self.usage_seconds})
