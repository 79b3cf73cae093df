"""The sans-I/O Gemini Live session: one connection's protocol state.

Frames in (:meth:`GeminiSession.receive`) -> normalized events out; requests
(``send_text``, ``send_function_result``, ``end_audio_stream``, ...) and audio
(:meth:`GeminiSession.encode_audio`) -> frames (:meth:`GeminiSession.data_to_send`). No
sockets, no asyncio, no clock.

Gemini has no item ids, no response objects and no truncate: the session synthesizes a
stable response id and item id per generation (unique per connection, so a reconnect never
reuses one) and maps the lifecycle flags onto the normalized events:

====================================  ==================================================
``setupComplete``                      SESSION_CREATED; the session is :attr:`ready`
first model output of a generation     INPUT_TRANSCRIPT (the user's turn, stitched), then
                                       RESPONSE_STARTED and ITEM_ADDED (assistant message)
``modelTurn`` audio / text             AUDIO_DELTA (PCM16 24 kHz) / TEXT_DELTA
``outputTranscription``                TRANSCRIPT_DELTA (fragments as sent)
``inputTranscription``                 INPUT_TRANSCRIPT_DELTA
the end of the user's turn             SPEECH_STOPPED, INPUT_COMMITTED (once per turn): at
                                       ``voiceActivity`` ACTIVITY_END (or the VAD signal's
                                       EOS), at ``inputTranscription.finished`` (then also
                                       INPUT_TRANSCRIPT, whole), or, when the service said
                                       the user started and never said the end, just
                                       before the reply starts
``generationComplete``                 AUDIO_DONE, GENERATION_DONE
``turnComplete``                       TRANSCRIPT_DONE / TEXT_DONE (whole), ITEM_DONE,
                                       RESPONSE_DONE ``completed``
``interrupted``                        SERVER_INTERRUPTED, then the reply ends as above
                                       with RESPONSE_DONE ``cancelled`` / ``turn_detected``
``toolCall``                           FUNCTION_CALL per call (``arguments``: JSON text)
``toolCallCancellation``               TOOL_CALL_CANCELLED
``usageMetadata`` (running totals)     USAGE (the increment since the last report)
``goAway``                             SESSION_EXPIRING; :attr:`expiring` is set
``sessionResumptionUpdate``            the newest resumable handle (:attr:`resumption_handle`)
``voiceActivity`` / VAD signals        SPEECH_STARTED / the end of the user's turn
unknown field / malformed frame        UNKNOWN / ERROR (``remote=True``): never raises
====================================  ==================================================

Until ``setupComplete`` only the ``setup`` frame is sent; everything queued meanwhile goes
out after it, in order. A session restored without a handle sends its history first, as
one ``clientContent`` with ``turnComplete: true`` (``historyConfig.initialHistoryInClientContent``:
the service takes it as history and does not reply to it).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
from typing import Any, Mapping, Sequence

from ..._bounded import BoundedDict, BoundedSet
from ...exceptions import AudioFormatError, InvalidState
from ..conversation import ConversationEntry, EntryKind
from ..types import (
    ErrorInfo,
    EventType,
    FunctionCall,
    GenerationDone,
    ProviderEvent,
    ResponseInfo,
    ServerInterrupted,
    SessionExpiring,
    ToolCallCancelled,
    Usage,
)
from .codec import (
    GoAway,
    HistoryTurn,
    Malformed,
    ResumptionUpdate,
    ServerContent,
    ServerMessage,
    SetupComplete,
    ToolCall,
    ToolCallCancellation,
    ToolResult,
    Unknown,
    UsageReport,
    VoiceActivity,
    decode,
    encode_activity_end,
    encode_activity_start,
    encode_audio,
    encode_audio_stream_end,
    encode_client_content,
    encode_context_update,
    encode_raw,
    encode_setup,
    encode_tool_response,
)
from .config import INPUT_SAMPLE_RATE, GeminiConfig

__all__ = ["GeminiSession", "function_response_body", "encode_history"]

log = logging.getLogger("voiceengine.providers.gemini.session")

_MAX_CALLS = 256  # function call id -> name, for the tool response (bounded: the server picks the ids)


def function_response_body(output: Any) -> dict[str, Any]:
    """What ``functionResponses[].response`` carries for ``output``: a mapping, or JSON text
    of an object, is sent as that object; anything else as ``{"output": <text>}``."""
    if isinstance(output, Mapping):
        return dict(output)
    text = output if isinstance(output, str) else json.dumps(output)
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"output": text}
    return parsed if isinstance(parsed, dict) else {"output": text}


class _Reply:
    """One generation: its synthesized ids and what it said so far."""

    __slots__ = ("response_id", "item_id", "transcript", "text", "audio_bytes", "generated")

    def __init__(self, response_id: str, item_id: str) -> None:
        self.response_id = response_id
        self.item_id = item_id
        self.transcript: list[str] = []
        self.text: list[str] = []
        self.audio_bytes = 0
        self.generated = False  # generationComplete seen


class GeminiSession:
    """Sans-I/O state of one Gemini Live connection (see the module docstring).

    ``resumption_handle``: resume that session (the setup carries the handle; once
    ``setupComplete`` arrives :attr:`resumed` is true: a refused handle closes the
    connection instead). ``replay_history``: this fresh session gets the conversation
    replayed (:meth:`replay_entry`) as initial ``clientContent`` history.
    """

    def __init__(self, config: GeminiConfig, *, resumption_handle: str | None = None,
                 replay_history: bool = False, resend_audio: Sequence[bytes] = (),
                 provider_name: str = "gemini") -> None:
        if resumption_handle is not None and not config.session_resumption:
            raise ValueError("a resumption handle needs session_resumption=True")
        self.config = config
        self.provider_name = provider_name
        self._given_handle = resumption_handle
        self._handle = resumption_handle
        self._replay_history = replay_history and resumption_handle is None
        self._prefix = f"gm{os.urandom(3).hex()}_"
        self._ids = 0
        self._setup_sent = False
        self._ready = False
        self._session_id: str | None = None
        self._expiring = False
        self._time_left_ms: int | None = None
        self._handle_behind = False  # the conversation moved on since the newest handle
        self._held: list[str] = []  # frames queued before setupComplete
        self._out: list[str] = []
        self._history: list[HistoryTurn] = []
        self._history_sent = False
        self._reply: _Reply | None = None
        self._awaiting_reply = False  # a user turn ended and no output answered it yet
        self._input_transcript: list[str] = []
        # the user's turn as the service reported it: None (no turn reported), "speaking"
        # (it said the user started) or "ended" (its end reported; the reply is next)
        self._user_turn: str | None = None
        self._calls: BoundedDict[str, str] = BoundedDict(_MAX_CALLS)
        self._replayed_calls: BoundedDict[str, str] = BoundedDict(_MAX_CALLS)
        self._seen_calls: BoundedSet[str] = BoundedSet(_MAX_CALLS)
        self._cancelled_calls: BoundedSet[str] = BoundedSet(_MAX_CALLS)  # function names for a replay
        self._usage_total = Usage()
        self._activity = False
        self._text_pending = False  # text sent without a reply is the newest user input
        # Transparent resumption: every frame leaving gets the next client message index
        # (setup is 0); input audio frames are kept, with the running byte count of the audio
        # encoded so far, until the state of a handle includes them.
        self._wire_index = -1
        self._audio_encoded = 0
        self._unconsumed: collections.deque[tuple[int, int, bytes]] = collections.deque()
        self._unconsumed_bytes = 0
        self._max_unconsumed = config.reconnect_audio_buffer_ms * INPUT_SAMPLE_RATE * 2 // 1000
        self._resend = [bytes(pcm) for pcm in resend_audio] if resumption_handle is not None else []
        self._pending_audio: list[tuple[int, bytes, bool]] = []
        # input audio went out (or is re-sent first) on this connection since the audio
        # stream last ended: only then does ``audioStreamEnd`` end a turn the service
        # answers (audio written on a connection that was lost never reached this one)
        self._stream_audio = bool(self._resend)

    # ------------------------------------------------------------ state
    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def session_id(self) -> str | None:
        return self._session_id

    @property
    def expiring(self) -> bool:
        """``goAway`` arrived: the service closes this connection soon (:attr:`time_left_ms`)."""
        return self._expiring

    @property
    def time_left_ms(self) -> int | None:
        return self._time_left_ms

    @property
    def resumption_handle(self) -> str | None:
        """The newest handle the service marked resumable (or the one this session resumed).

        ``None`` when this session was given a handle and never got set up: the service
        refused it (invalid, expired, or the old connection still open), so the next
        connection starts afresh and replays instead of presenting it again."""
        if not self._ready and self._given_handle is not None:
            return None
        return self._handle

    @property
    def resumed(self) -> bool:
        return self._ready and self._given_handle is not None

    @property
    def generating(self) -> bool:
        """A reply is in progress (from its first output until ``turnComplete``)."""
        return self._reply is not None

    @property
    def idle(self) -> bool:
        """No reply requested or in progress and no tool call waiting: a recycle cuts nothing."""
        return self._reply is None and not self._awaiting_reply and not self._calls

    @property
    def handover_ready(self) -> bool:
        """After ``goAway``, the old connection may close: no reply is in flight or awaited
        and the newest handle was given after the last reply ended (resuming from it keeps
        that reply); or a tool call waits for its result: nothing more comes before it, and
        the result goes to the next connection together with the call."""
        if self._calls:
            return True
        return self._reply is None and not self._awaiting_reply and not self._handle_behind

    @property
    def current_response_id(self) -> str | None:
        return self._reply.response_id if self._reply is not None else None

    @property
    def current_item_id(self) -> str | None:
        return self._reply.item_id if self._reply is not None else None

    def saw_call(self, call_id: str) -> bool:
        """The function call ``call_id`` came on this connection (answered or not)."""
        return call_id in self._calls or call_id in self._seen_calls

    @property
    def pending_calls(self) -> dict[str, str]:
        """Function calls received and not answered: id -> name."""
        return dict(self._calls)

    def lost_responses(self) -> list[str | None]:
        if self._reply is not None:
            return [self._reply.response_id]
        return [None] if self._awaiting_reply else []

    # ------------------------------------------------------------ outbound
    def start(self) -> None:
        """Queue the ``setup`` frame (once)."""
        if self._setup_sent:
            return
        self._setup_sent = True
        self._out.append(encode_setup(self.config, handle=self._given_handle, initial_history=self._replay_history))

    def data_to_send(self) -> list[str]:
        """The frames to write now, in order (nothing but ``setup`` before ``setupComplete``)."""
        if self._ready and self._resend:
            resend, self._resend = self._resend, []
            for pcm in resend:  # audio the resumed state lacks: first, before anything newer
                self._out.append(encode_audio(pcm))
                self._track_audio(len(self._out) - 1, pcm, counted=False)
        if self._ready and self._replay_history and not self._history_sent:
            self._history_sent = True
            self._out.append(encode_client_content(self._history, turn_complete=True))
            self._history.clear()
        if self._ready and self._held:
            self._out.extend(self._held)
            self._held.clear()
        out, self._out = self._out, []
        base = self._wire_index + 1
        self._wire_index += len(out)
        if self._pending_audio:
            for offset, pcm, counted in self._pending_audio:
                self._keep_unconsumed(base + offset, pcm, counted=counted)
            self._pending_audio.clear()
        return out

    def _track_audio(self, offset: int, pcm: bytes, *, counted: bool) -> None:
        """Note an audio frame at ``offset`` in the next :meth:`data_to_send` batch."""
        if self.config.transparent_resumption:
            self._pending_audio.append((offset, pcm, counted))

    def _keep_unconsumed(self, index: int, pcm: bytes, *, counted: bool) -> None:
        if counted:
            self._audio_encoded += len(pcm)
        self._unconsumed.append((index, self._audio_encoded, pcm))
        self._unconsumed_bytes += len(pcm)
        while self._unconsumed_bytes > self._max_unconsumed and self._unconsumed:
            self._unconsumed_bytes -= len(self._unconsumed.popleft()[2])  # bounded: the oldest go

    def unconsumed_audio(self, written_bytes: int) -> list[bytes]:
        """Input audio frames written on this connection (the first ``written_bytes`` of audio
        the runtime wrote) that the newest handle's state does not include; empty unless
        ``transparent_resumption``."""
        return [pcm for _, end, pcm in self._unconsumed if end <= written_bytes]

    def _queue(self, frame: str) -> None:
        (self._out if self._ready else self._held).append(frame)

    def encode_audio(self, pcm: bytes | bytearray | memoryview) -> str | None:
        """The ``realtimeInput.audio`` frame for PCM16 mono 16 kHz ``pcm`` (None when empty)."""
        n = pcm.nbytes if isinstance(pcm, memoryview) else len(pcm)
        if n % 2:
            raise AudioFormatError(f"PCM16 audio needs whole samples: got {n} bytes (odd)")
        if not n:
            return None
        frame = encode_audio(pcm)
        self._text_pending = False  # the newest input is speech: a reply request ends that turn
        self._stream_audio = True
        self._wire_index += 1  # the runtime writes it in call order with the other frames
        if self.config.transparent_resumption:
            self._keep_unconsumed(self._wire_index, bytes(pcm), counted=True)
        return frame

    def end_audio_stream(self) -> None:
        """The microphone stopped (automatic activity detection): the service ends the turn.

        A reply is awaited only when this connection carried input audio since the stream
        last ended: the service answers the audio it holds, and it holds none of audio
        written on an earlier connection that was lost (without transparent resumption
        nothing re-sends it), so ``audioStreamEnd`` alone gets no reply and waiting for one
        would keep the session from ever being idle."""
        if self.config.turn_detection_settings.manual:
            raise InvalidState("with manual turn detection, end the turn with activity_end()")
        if self._stream_audio:
            self._stream_audio = False
            self._awaiting_reply = True
        self._queue(encode_audio_stream_end())

    def activity_start(self) -> None:
        """Manual turn detection: the user starts speaking (a reply in progress is cut)."""
        if not self.config.turn_detection_settings.manual:
            raise InvalidState("activity_start() needs manual turn detection (turn_detection=None)")
        self._activity = True
        self._queue(encode_activity_start())

    def activity_end(self) -> None:
        """Manual turn detection: the user's turn ends; the service replies."""
        if not self.config.turn_detection_settings.manual:
            raise InvalidState("activity_end() needs manual turn detection (turn_detection=None)")
        if not self._activity:
            self._queue(encode_activity_start())  # an empty activity still has to be opened
        self._activity = False
        self._awaiting_reply = True
        self._queue(encode_activity_end())

    def request_reply(self) -> None:
        """Ask for a reply to what the user said: Gemini has no explicit request, so this
        ends the user's turn: ``clientContent{turnComplete: true}`` after text sent without a
        reply, else ``activityEnd`` (manual turns) or ``audioStreamEnd``."""
        if self._text_pending:
            self._text_pending = False
            self._awaiting_reply = True
            self._queue(encode_client_content([], turn_complete=True))
        elif self.config.turn_detection_settings.manual:
            self.activity_end()
        else:
            self.end_audio_stream()

    def send_text(self, text: str, *, respond: bool = True) -> None:
        """A user text turn (``clientContent``); ``respond=False`` adds it as context only."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if respond:
            self._awaiting_reply = True
        self._text_pending = not respond  # request_reply() then completes this turn
        self._queue(encode_client_content([HistoryTurn.text("user", text)], turn_complete=respond))

    def add_turn(self, role: str, text: str, *, turn_complete: bool = False) -> None:
        """A ``clientContent`` turn of ``role`` (``user`` or ``model``) as context; with
        ``turn_complete`` the service answers it."""
        if turn_complete:
            self._awaiting_reply = True
        self._text_pending = not turn_complete
        self._queue(encode_client_content([HistoryTurn.text(role, text)], turn_complete=turn_complete))

    def add_entry(self, entry: ConversationEntry) -> None:
        """A neutral conversation entry as context (``clientContent``, no reply)."""
        turn = _history_turn(entry)
        if turn is None:
            raise ValueError(f"entry {entry.id!r} has nothing Gemini can carry")
        self._queue(encode_client_content([turn], turn_complete=False))

    def update_context(self, *, instructions: str | None = None,
                       tools: Sequence[Mapping[str, Any]] | None = None) -> None:
        """``contextUpdate``: new system instructions and/or tools for this session, applied
        in order with the rest of the input (``tools=[]`` clears them)."""
        if instructions is None and tools is None:
            raise ValueError("update_context needs instructions or tools")
        self._queue(encode_context_update(instructions=instructions, tools=tools))

    def send_raw(self, kind: str, body: Mapping[str, Any]) -> None:
        """One client frame ``{kind: body}`` as given (``clientContent``, ``realtimeInput``,
        ``toolResponse``, ``contextUpdate``); raw access, so the caller answers for it."""
        self._queue(encode_raw(kind, body))

    def send_function_result(self, call_id: str, output: Any, *, name: str | None = None,
                             respond: bool = True) -> None:
        """Answer function call ``call_id``; ``respond=False`` sends scheduling ``SILENT``."""
        if not isinstance(call_id, str) or not call_id:
            raise ValueError("call_id must be a non-empty str")
        if call_id in self._cancelled_calls:
            raise InvalidState(f"function call {call_id!r} was withdrawn by the service (TOOL_CALL_CANCELLED): "
                               "it takes no result")
        known = self._calls.pop(call_id, None)
        name = name or known
        if name is None:
            raise InvalidState(f"no function call {call_id!r} is waiting for a result (and no name was given)")
        result = ToolResult(call_id=call_id, name=name, response=function_response_body(output),
                            scheduling=None if respond else "SILENT")
        if respond:
            self._awaiting_reply = True
        self._queue(encode_tool_response([result]))

    def send_function_exchange(self, call: ConversationEntry, output: Any, *, respond: bool = True) -> None:
        """A function call this connection never saw (it came on an earlier one, whose state
        the resumed session lacks) answered as ``clientContent``: the model's ``functionCall``
        then the user's ``functionResponse``, so the service knows both; ``respond`` asks
        for the reply a ``toolResponse`` would have brought."""
        turn = _history_turn(call) if call.kind is EntryKind.FUNCTION_CALL else None
        if turn is None or not call.name or call.call_id is None:
            raise ValueError("send_function_exchange needs a function call entry with a name and an id")
        response = {"id": call.call_id, "name": call.name, "response": function_response_body(output)}
        answer = HistoryTurn(role="user", parts=({"functionResponse": response},))
        if respond:
            self._awaiting_reply = True
        self._queue(encode_client_content([turn, answer], turn_complete=respond))

    def replay_entry(self, entry: ConversationEntry) -> None:
        """Queue ``entry`` as history for this fresh session (Gemini ``Content`` turns)."""
        if not isinstance(entry, ConversationEntry):
            raise TypeError(f"replay_entry takes a ConversationEntry, got {type(entry).__name__}")
        if entry.kind is EntryKind.FUNCTION_CALL and entry.call_id and entry.name:
            self._replayed_calls.put(entry.call_id, entry.name)
        if entry.kind is EntryKind.FUNCTION_CALL_OUTPUT and entry.name is None and entry.call_id:
            name = self._replayed_calls.get(entry.call_id)
            entry = dataclasses.replace(entry, name=name) if name else entry
        turn = _history_turn(entry)
        if turn is None:
            raise ValueError(f"entry {entry.id!r} has nothing a Gemini history can carry")
        if self._replay_history and not self._history_sent:
            self._history.append(turn)
        else:  # history after the initial history: context that asks for no reply
            self._queue(encode_client_content([turn], turn_complete=False))

    # ------------------------------------------------------------ inbound
    def receive(self, frame: str | bytes) -> list[ProviderEvent]:
        """Decode one frame, update the state, return the events. Never raises."""
        events: list[ProviderEvent] = []
        for message in decode(frame):
            self._apply(message, events)
        return events

    def _ev(self, kind: EventType, data: Any = None, *, item_id: str | None = None,
            response_id: str | None = None, raw: Mapping[str, Any] | None = None,
            error: ErrorInfo | None = None) -> ProviderEvent:
        return ProviderEvent(type=kind, data=data, provider=self.provider_name, session_id=self._session_id,
                             item_id=item_id, response_id=response_id, raw=raw, error=error)

    def _next_id(self, kind: str) -> str:
        self._ids += 1
        return f"{self._prefix}{kind}_{self._ids}"

    def _apply(self, message: ServerMessage, events: list[ProviderEvent]) -> None:
        if isinstance(message, ServerContent):
            self._on_content(message, events)
        elif isinstance(message, SetupComplete):
            self._session_id = message.session_id or self._session_id or self._next_id("session")
            self._ready = True
            events.append(self._ev(EventType.SESSION_CREATED, {"session_id": self._session_id,
                                                               "resumed": self._given_handle is not None}))
        elif isinstance(message, ToolCall):
            self._on_tool_call(message, events)
        elif isinstance(message, ToolCallCancellation):
            for call_id in message.ids:
                self._calls.pop(call_id, None)
                self._cancelled_calls.add(call_id)
            events.append(self._ev(EventType.TOOL_CALL_CANCELLED, ToolCallCancelled(call_ids=message.ids)))
        elif isinstance(message, UsageReport):
            self._on_usage(message, events)
        elif isinstance(message, GoAway):
            self._expiring = True
            self._time_left_ms = message.time_left_ms
            events.append(self._ev(EventType.SESSION_EXPIRING,
                                   SessionExpiring(time_left_ms=message.time_left_ms, reason="go_away")))
        elif isinstance(message, ResumptionUpdate):
            if message.resumable and message.new_handle:
                self._handle = message.new_handle
                self._handle_behind = False
                consumed = message.last_consumed_index
                if consumed is not None:  # the handle's state holds every message up to it
                    while self._unconsumed and self._unconsumed[0][0] <= consumed:
                        self._unconsumed_bytes -= len(self._unconsumed.popleft()[2])
        elif isinstance(message, VoiceActivity):
            if message.started:
                self._user_turn = "speaking"
                events.append(self._ev(EventType.SPEECH_STARTED, {}))
            else:
                self._end_user_turn(events)
        elif isinstance(message, Unknown):
            events.append(self._ev(EventType.UNKNOWN, {"field": message.name}, raw=message.raw))
        elif isinstance(message, Malformed):
            where = f" in {message.field}" if message.field else ""
            events.append(self._ev(EventType.ERROR, raw=message.raw, error=ErrorInfo(
                message=f"malformed Gemini frame{where}: {message.reason}", code="malformed_frame",
                type="protocol_error", remote=True)))

    def _on_content(self, content: ServerContent, events: list[ProviderEvent]) -> None:
        if content.input_transcription:
            self._input_transcript.append(content.input_transcription)
            events.append(self._ev(EventType.INPUT_TRANSCRIPT_DELTA, content.input_transcription))
        if content.input_transcription_finished:
            self._end_user_turn(events)
            self._flush_input_transcript(events)
        if content.has_output:
            reply = self._reply or self._open_reply(events)
            for pcm in content.audio:
                if len(pcm) > self.config.max_audio_delta_bytes or len(pcm) % 2:
                    events.append(self._ev(EventType.ERROR, response_id=reply.response_id, error=ErrorInfo(
                        message=f"audio part of {len(pcm)} bytes refused (odd or above max_audio_delta_bytes)",
                        code="audio_refused", type="limit", remote=True)))
                    continue
                reply.audio_bytes += len(pcm)
                events.append(self._ev(EventType.AUDIO_DELTA, pcm, item_id=reply.item_id,
                                       response_id=reply.response_id))
            for text in content.text:
                reply.text.append(text)
                events.append(self._ev(EventType.TEXT_DELTA, text, item_id=reply.item_id,
                                       response_id=reply.response_id))
            if content.output_transcription:
                reply.transcript.append(content.output_transcription)
                events.append(self._ev(EventType.TRANSCRIPT_DELTA, content.output_transcription,
                                       item_id=reply.item_id, response_id=reply.response_id))
        if content.interrupted:
            # the service stopped this generation because the user spoke: it sends no more
            # of it, and the next output (if any) is the answer to the new turn
            self._awaiting_reply = False
            cut = self._reply
            if cut is not None:
                events.append(self._ev(EventType.SERVER_INTERRUPTED, ServerInterrupted(response_id=cut.response_id),
                                       response_id=cut.response_id))
                self._close_reply(cut, events, status="cancelled", reason="turn_detected")
        current = self._reply
        if content.generation_complete and current is not None and not current.generated:
            current.generated = True
            if current.audio_bytes:
                events.append(self._ev(EventType.AUDIO_DONE, item_id=current.item_id,
                                       response_id=current.response_id))
            events.append(self._ev(EventType.GENERATION_DONE, GenerationDone(response_id=current.response_id),
                                   response_id=current.response_id))
        if content.turn_complete or content.interrupted:
            self._handle_behind = self._handle is not None  # the newest handle lacks this turn
        if content.turn_complete:
            self._awaiting_reply = False
            self._user_turn = None
            if self._reply is not None:
                self._close_reply(self._reply, events, status="completed", reason=content.turn_complete_reason)
            self._flush_input_transcript(events)

    def _end_user_turn(self, events: list[ProviderEvent]) -> None:
        """The service ended the user's turn: SPEECH_STOPPED then INPUT_COMMITTED (it takes
        the turn by itself), once per turn. The engine's latency clock starts here, and the
        runtime knows the user is no longer speaking."""
        if self._user_turn == "ended":
            return
        self._user_turn = "ended"
        events.append(self._ev(EventType.SPEECH_STOPPED, {}))
        events.append(self._ev(EventType.INPUT_COMMITTED, {"previous_item_id": None}))

    def _open_reply(self, events: list[ProviderEvent]) -> _Reply:
        if self._user_turn == "speaking":  # the start was reported, the end was not: it is over now
            self._end_user_turn(events)
        self._user_turn = None
        self._flush_input_transcript(events)
        reply = _Reply(self._next_id("resp"), self._next_id("item"))
        self._reply = reply
        self._awaiting_reply = False
        self._text_pending = False
        events.append(self._ev(EventType.RESPONSE_STARTED, ResponseInfo(response_id=reply.response_id),
                               response_id=reply.response_id))
        events.append(self._ev(EventType.ITEM_ADDED, {"id": reply.item_id, "type": "message", "role": "assistant",
                                                      "status": "in_progress", "content": []},
                               item_id=reply.item_id, response_id=reply.response_id))
        return reply

    def _flush_input_transcript(self, events: list[ProviderEvent]) -> None:
        if self._input_transcript:
            text, self._input_transcript = "".join(self._input_transcript), []
            events.append(self._ev(EventType.INPUT_TRANSCRIPT, text))

    def _close_reply(self, reply: _Reply, events: list[ProviderEvent], *, status: str, reason: str | None) -> None:
        """The end of a reply: whole transcript/text, the item, then RESPONSE_DONE. Once."""
        if self._reply is reply:
            self._reply = None
        rid, iid = reply.response_id, reply.item_id
        content: list[dict[str, Any]] = []
        if reply.transcript or reply.audio_bytes:
            transcript = "".join(reply.transcript)
            events.append(self._ev(EventType.TRANSCRIPT_DONE, transcript, item_id=iid, response_id=rid))
            content.append({"type": "output_audio", "transcript": transcript})
        if reply.text:
            text = "".join(reply.text)
            events.append(self._ev(EventType.TEXT_DONE, text, item_id=iid, response_id=rid))
            content.append({"type": "output_text", "text": text})
        item_status = "completed" if status == "completed" else "incomplete"
        events.append(self._ev(EventType.ITEM_DONE, {"id": iid, "type": "message", "role": "assistant",
                                                     "status": item_status, "content": content},
                               item_id=iid, response_id=rid))
        events.append(self._ev(EventType.RESPONSE_DONE, ResponseInfo(response_id=rid, status=status, reason=reason,
                                                                     output_item_ids=(iid,)), response_id=rid))

    def _on_tool_call(self, message: ToolCall, events: list[ProviderEvent]) -> None:
        self._awaiting_reply = False
        self._user_turn = None  # the call answers the turn
        self._handle_behind = self._handle is not None  # the newest handle lacks this call
        reply = self._reply
        for call in message.calls:
            self._calls.put(call.call_id, call.name)
            self._seen_calls.add(call.call_id)
            events.append(self._ev(EventType.FUNCTION_CALL, FunctionCall(
                name=call.name, call_id=call.call_id, arguments=call.arguments,
                response_id=reply.response_id if reply is not None else None)))

    def _on_usage(self, report: UsageReport, events: list[ProviderEvent]) -> None:
        prompt = report.prompt_by_modality or {"TEXT": report.prompt_tokens}
        response = report.response_by_modality or {"TEXT": report.response_tokens}
        total = Usage(
            input_audio_tokens=prompt.get("AUDIO", 0),
            input_text_tokens=sum(v for k, v in prompt.items() if k != "AUDIO"),
            input_cached_tokens=report.cached_tokens,
            output_audio_tokens=response.get("AUDIO", 0),
            output_text_tokens=sum(v for k, v in response.items() if k != "AUDIO"),
        )
        increment = total.since(self._usage_total)
        self._usage_total = total
        reply = self._reply
        events.append(self._ev(EventType.USAGE, increment if reply is None else Usage(
            **{**_usage_fields(increment), "response_id": reply.response_id}),
            response_id=reply.response_id if reply is not None else None))


def _usage_fields(usage: Usage) -> dict[str, Any]:
    return {name: getattr(usage, name) for name in ("input_text_tokens", "input_audio_tokens", "input_cached_tokens",
                                                    "output_text_tokens", "output_audio_tokens")}


def _history_turn(entry: ConversationEntry) -> HistoryTurn | None:
    """A conversation entry as a Gemini ``Content`` turn (None: nothing to carry)."""
    if entry.kind is EntryKind.FUNCTION_CALL:
        if not entry.name or entry.call_id is None:
            return None
        try:
            args = json.loads(entry.arguments) if entry.arguments else {}
        except ValueError:
            args = {"arguments": entry.arguments}
        if not isinstance(args, dict):
            args = {"arguments": args}
        return HistoryTurn(role="model", parts=({"functionCall": {"id": entry.call_id, "name": entry.name,
                                                                  "args": args}},))
    if entry.kind is EntryKind.FUNCTION_CALL_OUTPUT:
        if entry.call_id is None or entry.output is None:
            return None
        response = {"id": entry.call_id, "name": entry.name or "function", "response":
                    function_response_body(entry.output)}
        return HistoryTurn(role="user", parts=({"functionResponse": response},))
    text = entry.content_text
    if not text:
        return None
    if entry.role == "system":
        # Gemini turns are user or model only: a system note rides as user context
        return HistoryTurn.text("user", f"[system] {text}")
    return HistoryTurn.text("model" if entry.role == "assistant" else "user", text)


def encode_history(entries: Sequence[ConversationEntry]) -> list[HistoryTurn]:
    """The turns a replay of ``entries`` sends (entries with nothing to carry are skipped)."""
    return [turn for turn in (_history_turn(e) for e in entries) if turn is not None]
