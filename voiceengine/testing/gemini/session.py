"""One fake Gemini Live session: the protocol rules, sans-I/O.

Feed client frames with :meth:`FakeGeminiSession.parse` then :meth:`~FakeGeminiSession.handle`;
drain server frames from :attr:`~FakeGeminiSession.outbox`; step the reply in progress with
:meth:`~FakeGeminiSession.advance` (new replies are listed by
:meth:`~FakeGeminiSession.take_new_generations`). A frame the server cannot accept raises
:class:`~voiceengine.testing.gemini.wire.FrameError`, whose ``close_code`` the shell closes
with, as the real service does. No asyncio, no sockets: ``server.py`` moves the bytes.
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..._bounded import BoundedDict
from ..audio import synthesize
from ..vad import EnergyVad, VadEventKind
from .config import FakeGeminiConfig, GeminiReplyContext, ToolCallScript, default_input_transcript, default_reply
from .wire import FrameError, b64decode, b64encode, camel, camel_keys, duration_text, pcm_rate

__all__ = ["FakeGeminiSession", "HandleStore", "ResumableState", "frame_kind", "CLIENT_KINDS", "INVALID_KEY"]

#: the client message fields (one per frame)
CLIENT_KINDS = frozenset({"setup", "clientContent", "realtimeInput", "toolResponse", "contextUpdate"})
_SERVER_CONTENT_PARTS = ("modelTurn", "outputTranscription", "inputTranscription", "generationComplete",
                         "turnComplete", "interrupted")
_TOKENS_PER_AUDIO_S = 32  # Gemini counts 32 tokens per second of audio
INVALID_KEY = "API key not valid. Please pass a valid API key."


def frame_kind(frame: Mapping[str, Any]) -> str:
    """What a server frame is, for fault triggers: its top-level field, or for
    ``serverContent`` the first part it carries (``modelTurn``, ``turnComplete``, ...)."""
    for key, value in frame.items():
        if key == "serverContent" and isinstance(value, Mapping):
            for part in _SERVER_CONTENT_PARTS:
                if part in value:
                    return part
        return key
    return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumableState:
    """What a resumption handle restores."""

    history: tuple[tuple[str, str], ...]
    turns: int
    replies: int
    prompt_audio_tokens: int
    prompt_text_tokens: int
    response_tokens: int
    owner: int  # the session (connection index) that granted the handle
    input_audio_bytes: int = 0  # input audio in the state (this session and those it resumed)


class HandleStore:
    """Server-wide resumption handles (bounded: the oldest are forgotten), and refusals."""

    def __init__(self, max_handles: int, *, refuse_all: bool = False, refuse_while_open: bool = True) -> None:
        self._states: BoundedDict[str, ResumableState] = BoundedDict(max_handles)
        self.refuse_all = refuse_all
        #: refuse a handle while the connection that granted it is still open (the live
        #: service was reported to: github.com/aicc2025/sip-to-ai pull 14)
        self.refuse_while_open = refuse_while_open
        #: connection indexes still open (the server keeps this up to date)
        self.open_sessions: set[int] = set()
        #: how many of the next resumption attempts are refused whatever the handle
        self.refusals = 0
        #: handles that were presented, honoured or not (newest last, bounded)
        self.presented: deque[str] = deque(maxlen=max_handles)
        self.honoured = 0
        self.refused = 0

    def grant(self, state: ResumableState) -> str:
        handle = "fake-resumption-" + secrets.token_urlsafe(12)
        self._states.put(handle, state)
        return handle

    def redeem(self, handle: str) -> ResumableState | None:
        """The state ``handle`` restores, or None when it is unknown or refused."""
        self.presented.append(handle)
        state = self._states.get(handle)
        still_open = state is not None and self.refuse_while_open and state.owner in self.open_sessions
        if state is None or self.refuse_all or self.refusals > 0 or still_open:
            self.refusals = max(0, self.refusals - 1)
            self.refused += 1
            return None
        self.honoured += 1
        return state


class _Finish:
    """The end marker of a reply's steps: the closing frames are built when it is reached."""


_FINISH = _Finish()


class _Generation:
    __slots__ = ("id", "steps", "words_spoken", "text")

    def __init__(self, gen_id: int, text: str) -> None:
        self.id = gen_id
        self.text = text
        self.steps: deque[tuple[dict[str, Any], int, int] | _Finish] = deque()  # (frame, ms, words)
        self.words_spoken = 0


class FakeGeminiSession:
    """Per-connection protocol state. Attributes tests use: ``received``, ``sent``,
    ``faulty_sent``, ``ignored``, ``setup``, ``history``, ``function_responses``,
    ``input_audio_bytes``, ``interrupts``, ``resumed``, ``closed_code``, ``request_headers``."""

    def __init__(self, config: FakeGeminiConfig, *, index: int, handles: HandleStore,
                 tool_scripts: deque[ToolCallScript], auth_error: str | None = None,
                 path_version: str = "v1beta") -> None:
        self.config = config
        self.index = index
        self.handles = handles
        self.tool_scripts = tool_scripts
        self.auth_error = auth_error
        self.path_version = path_version
        self.session_id = f"fake-gemini-session-{index}"
        cap = config.max_recorded_frames
        self.received: deque[dict[str, Any]] = deque(maxlen=cap)
        self.sent: deque[dict[str, Any]] = deque(maxlen=cap)
        self.faulty_sent: deque[str] = deque(maxlen=cap)
        self.ignored: deque[str] = deque(maxlen=cap)
        self.function_responses: deque[dict[str, Any]] = deque(maxlen=cap)
        self.request_headers: dict[str, str] = {}
        self.closed_code: int | None = None
        self.outbox: deque[dict[str, Any]] = deque()
        self.setup: dict[str, Any] | None = None
        self.history: deque[tuple[str, str]] = deque(maxlen=config.max_history_turns)
        self.instructions = ""
        self.resumed = False
        self.resumption = False
        self.transparent = False
        self.input_audio_bytes = 0
        #: input audio in the session's state: what it resumed plus what it handled since
        self.lineage_input_audio_bytes = 0
        self._granted_at = -1  # client message index of the last handle granted
        self.interrupts = 0
        self.go_away_sent = False
        self._consumed = -1
        self._gen_ids = itertools.count(1)
        self._call_ids = itertools.count(1)
        self._generation: _Generation | None = None
        self._new_generations: list[int] = []
        self._pending_calls: dict[str, str] = {}  # id -> name
        self._tool_outputs: list[dict[str, Any]] = []
        self._text_mode = False
        self._input_transcription = False
        self._output_transcription = False
        self._manual_activity = False
        self._barge_in = True
        self._awaiting_history = False
        self._activity = False
        self._vad: EnergyVad | None = None
        self._vad_silence_ms = config.vad_silence_ms
        self._vad_prefix_ms = config.vad_prefix_padding_ms
        self._turn_bytes = 0
        self._turn_rate = 16000
        self._turns = 0
        self._replies = 0
        self._prompt_audio_tokens = 0
        self._prompt_text_tokens = 0
        self._response_tokens = 0
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "setup": self._on_setup,
            "clientContent": self._on_client_content,
            "realtimeInput": self._on_realtime_input,
            "toolResponse": self._on_tool_response,
            "contextUpdate": self._on_context_update,
        }

    # ------------------------------------------------------------ output
    def emit(self, frame: dict[str, Any]) -> dict[str, Any]:
        self.outbox.append(frame)
        return frame

    def record_sent(self, frame: Mapping[str, Any]) -> None:
        if not self.config.record_audio_payloads and frame_kind(frame) == "modelTurn":
            frame = {"serverContent": {"modelTurn": "<audio elided>"}}
        self.sent.append(dict(frame))

    @property
    def generating(self) -> bool:
        """True while a reply is being sent (from its first frame until ``turnComplete``)."""
        return self._generation is not None

    @property
    def pending_tool_calls(self) -> tuple[str, ...]:
        return tuple(self._pending_calls)

    @property
    def text_mode(self) -> bool:
        return self._text_mode

    def take_new_generations(self) -> list[int]:
        out, self._new_generations = self._new_generations, []
        return out

    # ------------------------------------------------------------ input
    def parse(self, data: str | bytes) -> tuple[str, dict[str, Any]]:
        """One client frame -> (its kind, its body with camelCase keys). Raises FrameError."""
        if self.auth_error is not None:
            # the real service upgrades, then closes on the first frame: 1007 for a wrong key,
            # 1008 when no identity was given at all
            raise FrameError(self.auth_error, 1007 if self.auth_error == INVALID_KEY else 1008)
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            message = json.loads(text)
        except (UnicodeDecodeError, ValueError):
            raise FrameError("Invalid JSON payload received.") from None
        if not isinstance(message, dict) or len(message) != 1:
            raise FrameError("Invalid JSON payload received. A client message holds exactly one field.")
        ((key, body),) = message.items()
        kind = camel(str(key))
        if kind not in CLIENT_KINDS:
            raise FrameError(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
        if not isinstance(body, dict):
            raise FrameError(f"Invalid JSON payload received. {kind} must be an object.")
        return kind, camel_keys(body)

    def handle(self, kind: str, body: dict[str, Any]) -> None:
        """Apply one parsed client frame; the answers land in :attr:`outbox`."""
        if self.setup is None and kind != "setup":
            raise FrameError("The first message must be setup.")
        if self.setup is not None and kind == "setup":
            raise FrameError("setup may be sent only once per connection.")
        self._consumed += 1
        self._handlers[kind](body)
        self._record_received(kind, body)
        every = self.config.resumption_update_every
        if kind != "setup" and every and self._generation is None and not self._pending_calls \
                and self._consumed - self._granted_at >= every:
            self._grant_handle()  # the service sends fresh handles as the session goes on

    def record_ignored(self, data: str | bytes) -> None:
        self.ignored.append(data if isinstance(data, str) else data.decode("utf-8", "replace"))

    def _record_received(self, kind: str, body: dict[str, Any]) -> None:
        audio = body.get("audio") if kind == "realtimeInput" else None
        if audio is not None and not self.config.record_audio_payloads and isinstance(audio, dict):
            body = {**body, "audio": {**audio, "data": "<audio elided>"}}
        self.received.append({kind: body})

    # ------------------------------------------------------------ setup
    def _on_setup(self, body: dict[str, Any]) -> None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise FrameError("setup.model is required.")
        generation = body.get("generationConfig") or {}
        modalities = [str(m).upper() for m in generation.get("responseModalities") or ["AUDIO"]]
        self._text_mode = modalities == ["TEXT"]
        self.instructions = _content_text(body.get("systemInstruction"))
        self._input_transcription = "inputAudioTranscription" in body
        self._output_transcription = "outputAudioTranscription" in body
        realtime = body.get("realtimeInputConfig") or {}
        detection = realtime.get("automaticActivityDetection") or {}
        self._manual_activity = bool(detection.get("disabled"))
        self._vad_silence_ms = int(detection.get("silenceDurationMs", self.config.vad_silence_ms))
        self._vad_prefix_ms = int(detection.get("prefixPaddingMs", self.config.vad_prefix_padding_ms))
        self._barge_in = realtime.get("activityHandling") != "NO_INTERRUPTION"
        self._awaiting_history = bool((body.get("historyConfig") or {}).get("initialHistoryInClientContent"))
        resumption = body.get("sessionResumption")
        if resumption is not None:
            self.resumption = self.config.grant_handles
            self.transparent = isinstance(resumption, dict) and resumption.get("transparent") is True
            handle = resumption.get("handle") if isinstance(resumption, dict) else None
            if handle:
                state = self.handles.redeem(str(handle))
                if state is None:
                    # a server error, not the client's: the client may retry, or start afresh
                    raise FrameError("Session resumption handle is invalid, expired or still in use.", 1011)
                self._restore(state)
        self.setup = body

    def announce(self) -> None:
        """``setupComplete`` (and the first resumption handle): sent once ``setup`` was handled."""
        self.emit({"setupComplete": {"sessionId": self.session_id}})
        self._grant_handle()

    def _restore(self, state: ResumableState) -> None:
        self.resumed = True
        self.history.extend(state.history)
        self._turns, self._replies = state.turns, state.replies
        self._prompt_audio_tokens = state.prompt_audio_tokens
        self._prompt_text_tokens = state.prompt_text_tokens
        self._response_tokens = state.response_tokens
        self.lineage_input_audio_bytes = state.input_audio_bytes

    def _grant_handle(self) -> None:
        if not self.resumption:
            return
        handle = self.handles.grant(ResumableState(
            history=tuple(self.history), turns=self._turns, replies=self._replies,
            prompt_audio_tokens=self._prompt_audio_tokens, prompt_text_tokens=self._prompt_text_tokens,
            response_tokens=self._response_tokens, owner=self.index,
            input_audio_bytes=self.lineage_input_audio_bytes))
        self._granted_at = self._consumed
        update: dict[str, Any] = {"newHandle": handle, "resumable": True}
        if self.transparent and self._consumed >= 0:
            # only with sessionResumption.transparent, as the service does (Vertex only)
            update["lastConsumedClientMessageIndex"] = str(self._consumed)  # int64 is a JSON string
        self.emit({"sessionResumptionUpdate": update})

    def go_away(self, time_left_s: float) -> None:
        """Announce that the connection ends in ``time_left_s`` seconds."""
        self.go_away_sent = True
        self.emit({"goAway": {"timeLeft": duration_text(time_left_s)}})

    # ------------------------------------------------------------ realtime input
    def _on_realtime_input(self, body: dict[str, Any]) -> None:
        if not body:
            raise FrameError("realtimeInput needs one of audio, audioStreamEnd, text, activityStart, activityEnd.")
        if "activityStart" in body:
            self._on_activity_start()
        audio = body.get("audio")
        if audio is not None:
            self._on_audio(audio)
        for chunk in body.get("mediaChunks") or ():
            if str((chunk or {}).get("mimeType", "")).startswith("audio/"):
                self._on_audio(chunk)
        if body.get("audioStreamEnd"):
            self._on_audio_stream_end()
        text = body.get("text")
        if text is not None:
            if not isinstance(text, str):
                raise FrameError("realtimeInput.text must be a string.")
            self._user_turn(text, prompt_tokens=len(text.split()), spoken=False)
        if "activityEnd" in body:
            self._on_activity_end()

    def _on_audio(self, blob: Any) -> None:
        if not isinstance(blob, dict):
            raise FrameError("audio must be a Blob object.")
        rate = pcm_rate(str(blob.get("mimeType", "audio/pcm;rate=16000")))
        pcm = b64decode(blob.get("data", ""))
        if len(pcm) % 2:
            raise FrameError("PCM16 audio must hold whole samples (an even number of bytes).")
        self.input_audio_bytes += len(pcm)
        self.lineage_input_audio_bytes += len(pcm)
        if self._manual_activity:
            if self._activity:
                self._add_turn_audio(pcm, rate)
            return
        if self._vad is None or self._vad.sample_rate != rate:
            self._vad = EnergyVad(sample_rate=rate, threshold_dbfs=self.config.vad_threshold_dbfs,
                                  silence_duration_ms=self._vad_silence_ms, prefix_padding_ms=self._vad_prefix_ms,
                                  min_speech_ms=self.config.vad_min_speech_ms)
        speaking_before = self._vad.speaking
        events = self._vad.process(pcm)
        if speaking_before or self._vad.speaking or events:
            self._add_turn_audio(pcm, rate)
        for event in events:
            if event.kind is VadEventKind.SPEECH_STARTED:
                self._user_started()
            else:
                self._end_spoken_turn()

    def _add_turn_audio(self, pcm: bytes, rate: int) -> None:
        self._turn_rate = rate
        self._turn_bytes += len(pcm)
        if self._turn_bytes * 1000 // (2 * rate) >= self.config.max_turn_audio_ms:
            # a turn that never ends would grow without bound: the service cuts it
            self._end_spoken_turn()

    def _on_audio_stream_end(self) -> None:
        if self._vad is not None:
            self._vad.reset_state()
        if self._turn_bytes and not self._manual_activity:
            self._end_spoken_turn()

    def _on_activity_start(self) -> None:
        if not self._manual_activity:
            raise FrameError("activityStart is only valid when automatic activity detection is disabled.")
        self._activity = True
        self._turn_bytes = 0
        self._user_started()

    def _on_activity_end(self) -> None:
        if not self._manual_activity:
            raise FrameError("activityEnd is only valid when automatic activity detection is disabled.")
        self._activity = False
        self._end_spoken_turn()

    def _user_started(self) -> None:
        """The user speaks: a reply in progress is cut (barge-in), pending tool calls are cancelled."""
        if not self._barge_in:
            return
        if self._generation is not None:
            self.interrupt()
        if self._pending_calls:
            ids = list(self._pending_calls)
            self._pending_calls.clear()
            self._tool_outputs.clear()
            self.emit({"toolCallCancellation": {"ids": ids}})

    def _end_spoken_turn(self) -> None:
        audio_ms = self._turn_bytes * 1000 // (2 * self._turn_rate)
        self._turn_bytes = 0
        transcript = self._transcript(self._turns, audio_ms)
        if self._input_transcription:
            # the whole turn at once, so also its end (Transcription.finished)
            self.emit({"serverContent": {"inputTranscription": {"text": transcript, "finished": True}}})
        self._prompt_audio_tokens += audio_ms * _TOKENS_PER_AUDIO_S // 1000
        self._user_turn(transcript, prompt_tokens=0, spoken=True)

    def _transcript(self, turn: int, audio_ms: int) -> str:
        script = self.config.input_transcripts
        if script is None:
            return default_input_transcript(turn, audio_ms)
        if callable(script):
            return str(script(turn, audio_ms))
        return str(script[turn % len(script)]) if script else default_input_transcript(turn, audio_ms)

    def _user_turn(self, text: str, *, prompt_tokens: int, spoken: bool) -> None:
        if not spoken:
            self._user_started()
        elif self._generation is not None and self._barge_in:
            self.interrupt()
        self._prompt_text_tokens += prompt_tokens
        self.history.append(("user", text))
        self._turns += 1
        self._reply(last_user_text=text, tool_output=None)

    # ------------------------------------------------------------ client content
    def _on_client_content(self, body: dict[str, Any]) -> None:
        turns = body.get("turns") or []
        if not isinstance(turns, list):
            raise FrameError("clientContent.turns must be a list.")
        last_user: str | None = None
        for turn in turns:
            if not isinstance(turn, dict):
                raise FrameError("each turn must be a Content object.")
            role = str(turn.get("role") or "user")
            if role not in ("user", "model"):
                raise FrameError(f"turn role must be user or model, got {role!r}.")
            text = _content_text(turn)
            self.history.append((role, text))
            self._prompt_text_tokens += len(text.split())
            if role == "user":
                last_user = text
        if not body.get("turnComplete"):
            return
        if self._awaiting_history:
            self._awaiting_history = False  # the initial history ends here: no model call
            return
        if self._generation is not None and self._barge_in:
            self.interrupt()
        self._turns += 1
        self._reply(last_user_text=last_user if last_user is not None else self._last_user_text(),
                    tool_output=None)

    def _last_user_text(self) -> str | None:
        for role, text in reversed(self.history):
            if role == "user":
                return text
        return None

    def _on_context_update(self, body: dict[str, Any]) -> None:
        if "systemInstruction" in body:
            self.instructions = _content_text(body.get("systemInstruction"))

    # ------------------------------------------------------------ tools
    def _on_tool_response(self, body: dict[str, Any]) -> None:
        responses = body.get("functionResponses")
        if not isinstance(responses, list) or not responses:
            raise FrameError("toolResponse.functionResponses must be a non-empty list.")
        answer = False
        for response in responses:
            if not isinstance(response, dict) or not response.get("id"):
                raise FrameError("each function response needs an id.")
            call_id = str(response["id"])
            self.function_responses.append(response)
            if self._pending_calls.pop(call_id, None) is None:
                continue  # cancelled or unknown: the real service ignores it too
            self._tool_outputs.append({"name": response.get("name"), "response": response.get("response")})
            answer = answer or response.get("scheduling") != "SILENT"
        if self._pending_calls or not self._tool_outputs:
            return
        outputs, self._tool_outputs = self._tool_outputs, []
        text = json.dumps(outputs[0]["response"] if len(outputs) == 1 else [o["response"] for o in outputs],
                          separators=(",", ":"), sort_keys=True)
        self.history.append(("user", f"function result {text}"))
        if answer:
            if self._generation is not None:
                self.interrupt()
            self._reply(last_user_text=self._last_user_text(), tool_output=text)

    def _send_tool_call(self, script: ToolCallScript) -> None:
        call_id = script.call_id or f"fake-call-{self.index}-{next(self._call_ids)}"
        self._pending_calls[call_id] = script.name
        self.history.append(("model", f"function call {script.name}"))
        self.emit({"toolCall": {"functionCalls": [{"id": call_id, "name": script.name, "args": dict(script.args)}]}})

    # ------------------------------------------------------------ replies
    def _reply(self, *, last_user_text: str | None, tool_output: str | None) -> None:
        if tool_output is None and self.tool_scripts:
            self._send_tool_call(self.tool_scripts.popleft())
            return
        ctx = GeminiReplyContext(index=self._replies, session_index=self.index, instructions=self.instructions,
                                 last_user_text=last_user_text, tool_output=tool_output,
                                 history=tuple(self.history))
        script = self.config.responses
        if script is None:
            text = default_reply(ctx)
        elif callable(script):
            text = str(script(ctx))
        else:
            text = str(script[self._replies % len(script)]) if script else default_reply(ctx)
        self._replies += 1
        gen = _Generation(next(self._gen_ids), text)
        self._plan(gen)
        self._generation = gen
        self._new_generations.append(gen.id)

    def _plan(self, gen: _Generation) -> None:
        rate = self.config.output_sample_rate
        synth = synthesize(gen.text, rate, self.config.synth)
        if self._text_mode:
            for i, word in enumerate(synth.words):
                end = synth.word_offsets[i + 1] if i + 1 < len(synth.words) else len(synth.pcm)
                ms = (end - synth.word_offsets[i]) * 1000 // (2 * rate)
                spoken = word if i == 0 else " " + word
                gen.steps.append(({"serverContent": {"modelTurn": {"role": "model", "parts": [{"text": spoken}]}}},
                                  ms, 1))
            gen.steps.append(_FINISH)
            return
        chunk = 2 * rate * self.config.chunk_ms // 1000
        mime = f"audio/pcm;rate={rate}"
        next_word = 0
        for off in range(0, len(synth.pcm), chunk):
            piece = synth.pcm[off:off + chunk]
            words: list[str] = []
            while next_word < len(synth.words) and synth.word_offsets[next_word] < off + len(piece):
                words.append(synth.words[next_word])
                next_word += 1
            if words and self._output_transcription:
                text = " ".join(words) if off == 0 else " " + " ".join(words)
                gen.steps.append(({"serverContent": {"outputTranscription": {"text": text}}}, 0, 0))
            frame = {"serverContent": {"modelTurn": {"role": "model",
                                                     "parts": [{"inlineData": {"mimeType": mime,
                                                                               "data": b64encode(piece)}}]}}}
            gen.steps.append((frame, len(piece) * 1000 // (2 * rate), len(words)))
        gen.steps.append(_FINISH)

    def advance(self, gen_id: int) -> int | None:
        """Queue the next frame of reply ``gen_id``; the milliseconds of audio it carries, or
        None when that reply is over (finished or cut)."""
        gen = self._generation
        if gen is None or gen.id != gen_id or not gen.steps:
            return None
        step = gen.steps.popleft()
        if isinstance(step, _Finish):
            self._finish(gen)
            return None
        frame, ms, words = step
        gen.words_spoken += words
        self._response_tokens += ms * _TOKENS_PER_AUDIO_S // 1000
        self.emit(frame)
        return ms

    def _finish(self, gen: _Generation) -> None:
        self._generation = None
        self.history.append(("model", gen.text))
        self.emit({"serverContent": {"generationComplete": True}})
        self.emit({"usageMetadata": self._usage()})
        self.emit({"serverContent": {"turnComplete": True}})
        self._grant_handle()

    def interrupt(self) -> None:
        """Cut the reply in progress: ``interrupted``; what was said so far stays in the history."""
        gen = self._generation
        if gen is None:
            return
        self._generation = None
        self.interrupts += 1
        spoken = " ".join(gen.text.split()[:gen.words_spoken])
        if spoken:
            self.history.append(("model", spoken))
        self.emit({"serverContent": {"interrupted": True}})

    def _usage(self) -> dict[str, Any]:
        prompt = self._prompt_audio_tokens + self._prompt_text_tokens
        details = [{"modality": "TEXT", "tokenCount": self._prompt_text_tokens}]
        if self._prompt_audio_tokens:
            details.append({"modality": "AUDIO", "tokenCount": self._prompt_audio_tokens})
        out_modality = "TEXT" if self._text_mode else "AUDIO"
        return {"promptTokenCount": prompt, "responseTokenCount": self._response_tokens,
                "totalTokenCount": prompt + self._response_tokens, "promptTokensDetails": details,
                "responseTokensDetails": [{"modality": out_modality, "tokenCount": self._response_tokens}]}


def _content_text(content: Any) -> str:
    """The text of a ``Content`` (``{parts: [{text}]}``), a bare string, or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = content.get("parts") if isinstance(content, dict) else content
    if isinstance(content, dict) and "text" in content and parts is None:
        return str(content["text"])
    if not isinstance(parts, list):
        raise FrameError("content must be {parts: [{text}]}.")
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            texts.append(part["text"])
    return " ".join(texts)
