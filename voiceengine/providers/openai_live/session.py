"""The sans-I/O OpenAI Live session: wire records in, normalized events out; requests in,
frames out. No sockets, no asyncio; time comes in as arguments.

Live has no items, no response objects, no "reply done" and no "speech started/stopped"
events, so this session *infers* them, the way LiveKit and pydantic-ai do (documented in
docs/openai_live.md, tuned by :class:`~.config.OpenAILiveConfig`):

* **The timeline** is the input audio sent, in ms (the service's own clock moves only with
  audio; the client streams all of it, silence included).
* **User speech starts** at the first input-transcript fragment after a gap:
  SPEECH_STARTED, a synthetic user item (ITEM_ADDED) and INPUT_TRANSCRIPT_DELTAs.
  It **ends** when a reply starts or the timeline moves ``user_turn_gap_ms`` past the last
  fragment (or a fragment comes that long after the previous one): SPEECH_STOPPED,
  INPUT_COMMITTED, INPUT_TRANSCRIPT (whole), ITEM_DONE.
* **A reply starts** with the first output transcript or non-idle output audio outside a
  reply: RESPONSE_STARTED and a synthetic assistant item; AUDIO_DELTA / TRANSCRIPT_DELTA
  carry its ids. Quiet output frames outside a reply are the idle track: dropped, counted.
* **A reply ends** when no delegated work is outstanding and the timeline has moved
  ``reply_end_gap_ms`` past its last output (or ``reply_end_quiet_s`` passed on the wall
  clock): AUDIO_DONE, TRANSCRIPT_DONE, ITEM_DONE, GENERATION_DONE, RESPONSE_DONE.
* **Barge-in**: the server stops by itself when it hears the user. A user fragment during a
  reply ends it at once: SERVER_INTERRUPTED, ITEM_DONE (incomplete), RESPONSE_DONE
  (cancelled, ``turn_detected``). Output within ``barge_in_tail_ms`` after it is the cut
  reply's tail and is dropped. The client sends nothing.
* **Tools** run through Responses delegation: a nested ``function_call`` output item becomes
  FUNCTION_CALL; :meth:`LiveSession.send_function_result` sends ``function_call_output``
  and, once every call of the round has its result and the backend response has completed,
  exactly one ``response.create``.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import OrderedDict
from typing import Any, Callable, Mapping, Sequence

from ..._audio.pcm import peak_dbfs
from ...exceptions import InvalidState
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
    FATAL_CODES,
    Ack,
    BackendEvent,
    DelegationCreated,
    Info,
    InputTranscript,
    Malformed,
    OutputAudio,
    OutputTranscript,
    ServerError,
    SessionClosed,
    SessionStarted,
    SessionUpdated,
    Unknown,
    UsageUpdated,
    WireRecord,
    decode,
    encode_audio as audio_append_frame,
    encode_context,
    encode_function_output,
    encode_response_create,
    encode_session_close,
    encode_session_start,
    encode_user_message,
    session_config,
)
from .config import OpenAILiveConfig

__all__ = ["LiveSession", "RESTORABLE_CLOSE_REASONS", "PROVIDER_NAME"]

log = logging.getLogger("voiceengine.providers.openai_live")

PROVIDER_NAME = "openai-live"
#: ``session.closed`` reasons after which a fresh session is started and the conversation replayed
RESTORABLE_CLOSE_REASONS = frozenset({"expired", "connection_lost"})
#: nested Responses events that only move backend state (no normalized event of their own)
_BACKEND_STATE_TYPES = frozenset({
    "response.created", "response.in_progress", "response.queued", "response.output_item.added",
    "response.content_part.added", "response.content_part.done", "response.output_text.delta",
    "response.output_text.done", "response.function_call_arguments.done",
    "response.completed", "response.failed", "response.incomplete", "response.cancelled",
})
_BACKEND_FINAL = frozenset({"response.completed", "response.failed", "response.incomplete", "response.cancelled"})
_MAX_TRACKED_REQUESTS = 256


class _Reply:
    """The reply being spoken (synthetic ids: Live has none)."""

    __slots__ = ("response_id", "item_id", "transcript", "audio_ms", "start_timeline_ms", "end_timeline_ms",
                 "last_output_wall_s", "held", "held_ms", "server_start_ms")

    def __init__(self, response_id: str, item_id: str, timeline_ms: float, now_s: float) -> None:
        self.response_id = response_id
        self.item_id = item_id
        self.transcript: list[str] = []
        self.audio_ms = 0.0
        self.start_timeline_ms: float = timeline_ms
        self.end_timeline_ms: float = timeline_ms  # where its output ends on the timeline (so far)
        self.last_output_wall_s = now_s
        self.held: list[bytes] = []  # quiet output frames not yet known to belong to the reply
        self.held_ms = 0.0
        self.server_start_ms: int | None = None  # its first transcript's start_ms (server timeline)


class _UserTurn:
    __slots__ = ("item_id", "transcript", "start_ms", "end_ms")

    def __init__(self, item_id: str, start_ms: int) -> None:
        self.item_id = item_id
        self.transcript: list[str] = []
        self.start_ms = start_ms
        self.end_ms = start_ms


class LiveSession:
    """One Live session's protocol state (see the module docstring).

    It implements the runtime's :class:`~voiceengine.providers.interfaces.ProtocolSession`.
    Requests (``start``, ``send_audio``, ``send_context``, ``send_user_text``,
    ``send_function_result``, ``close``, ``replay_entry``) queue frames: drain them with
    :meth:`data_to_send`. :meth:`receive` and :meth:`tick` return the normalized events.

    ``history``: the neutral conversation to carry into this session (``session.start``'s
    text ``input``: Live has no resumption handle, so a restored session gets it this way).
    ``clock``: monotonic seconds for the wall-clock inference (tests pass a fake one).
    """

    def __init__(self, config: OpenAILiveConfig, *, history: Sequence[ConversationEntry] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._history = tuple(history)
        self._carried: frozenset[str] = frozenset()
        self.started = False
        self.session_id: str | None = None
        self.closed_reason: str | None = None
        self.timeline_ms = 0.0
        self.dropped_idle_frames = 0
        self.dropped_tail_frames = 0
        self._frames: list[str] = []
        self._ids = itertools.count(1)
        self._reply: _Reply | None = None
        self._user: _UserTurn | None = None
        self._interrupted_at_ms: float | None = None
        self._last_user_item: str | None = None
        self._last_user_end_ms = 0
        self._usage_seconds = 0.0
        self._delegations: set[str] = set()
        self._backend_active: set[str] = set()
        self._round: dict[str, str | None] = {}      # call_id -> output (None: not yet given)
        self._round_backend_done = False
        self._round_continue = False  # the app asked for the round's continuation
        self._requests: OrderedDict[str, str] = OrderedDict()  # client event_id -> wire type

    # ---------------------------------------------------------------- state
    @property
    def reply_active(self) -> bool:
        return self._reply is not None

    @property
    def user_speaking(self) -> bool:
        return self._user is not None

    @property
    def open_calls(self) -> tuple[str, ...]:
        """Call ids of the current round still waiting for their result."""
        return tuple(c for c, out in self._round.items() if out is None)

    @property
    def idle(self) -> bool:
        """Nothing in flight: no reply, no user turn, no delegated work. Safe to recycle."""
        return (self._reply is None and self._user is None and not self._round
                and not self._backend_active and not self._delegations)

    @property
    def restorable(self) -> bool:
        """The service closed the session for a reason a fresh session repairs."""
        return self.closed_reason in RESTORABLE_CLOSE_REASONS

    @property
    def ready(self) -> bool:
        """``session.started`` arrived: audio and requests may flow."""
        return self.started

    @property
    def expiring(self) -> bool:
        """The service ended the session for a reason a fresh one repairs (its close, even a
        normal 1000, is then reconnectable)."""
        return self.restorable

    @property
    def resumption_handle(self) -> str | None:
        """Live offers no server-side resumption: always ``None``."""
        return None

    @property
    def resumed(self) -> bool:
        """Never: a restored Live session gets the conversation as start history."""
        return False

    def data_to_send(self) -> list[str]:
        """Drain the queued client frames, in order."""
        out, self._frames = self._frames, []
        return out

    def lost_responses(self) -> list[str | None]:
        """The reply in flight dies with the connection (the runtime reports it ``failed``)."""
        reply, self._reply = self._reply, None
        self._end_user_turn()
        return [reply.response_id] if reply is not None else []

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids)}"

    def _request_id(self, wire_type: str) -> str:
        event_id = self._new_id("ve_live")
        self._requests[event_id] = wire_type
        while len(self._requests) > _MAX_TRACKED_REQUESTS:
            self._requests.popitem(last=False)
        return event_id

    def _event(self, type_: EventType, data: Any = None, *, item_id: str | None = None,
               response_id: str | None = None, error: ErrorInfo | None = None,
               raw: Mapping[str, Any] | None = None) -> ProviderEvent:
        return ProviderEvent(type=type_, data=data, provider=PROVIDER_NAME, session_id=self.session_id,
                             item_id=item_id, response_id=response_id, error=error, raw=raw)

    # ---------------------------------------------------------------- requests
    def start(self) -> None:
        """Queue ``session.start`` with the configuration and the carried history (the last
        ``max_history_messages`` entries a text history can hold)."""
        cfg = self.config
        pairs = [(entry.id, pair) for entry in self._history for pair in self.history_of((entry,))]
        kept = pairs[-cfg.max_history_messages:] if cfg.max_history_messages else []
        self._carried = frozenset(entry_id for entry_id, _ in kept)
        session = session_config(
            model=cfg.model, instructions=cfg.instructions, voice=cfg.voice, sample_rate=cfg.sample_rate,
            tools=cfg.tools, backend_model=cfg.backend_model, backend_instructions=cfg.backend_instructions,
            acknowledgement_delay_ms=cfg.acknowledgement_delay_ms, history=[pair for _, pair in kept])
        self._frames.append(encode_session_start(session, self._request_id("session.start")))

    def replay_entry(self, entry: ConversationEntry) -> None:
        """Re-create ``entry`` in this session: nothing when ``session.start`` carried it;
        else (an entry the history could not hold) as silent context, ``session.thinking.append``."""
        if entry.id in self._carried:
            return
        pairs = self.history_of((entry,))
        if not pairs:
            raise ValueError(f"conversation entry {entry.id!r} has nothing a Live session can carry")
        role, text = pairs[0]
        self.send_context("thinking", f"Earlier in this conversation, {role}: {text}")

    def _require_started(self) -> None:
        if not self.started:
            raise InvalidState("the Live session has not started yet (wait for SESSION_CREATED)")

    def encode_audio(self, pcm: bytes | bytearray | memoryview) -> str:
        """The ``session.input_audio.append`` frame for ``pcm`` (returned, not queued, so the
        caller can account for the audio it carries); the timeline moves by its duration."""
        self._require_started()
        n = pcm.nbytes if isinstance(pcm, memoryview) else len(pcm)
        frame = audio_append_frame(pcm)
        self.timeline_ms += n / self.config.bytes_per_ms
        return frame

    def send_audio(self, pcm: bytes | bytearray | memoryview) -> None:
        """Queue one ``session.input_audio.append`` (see :meth:`encode_audio`)."""
        self._frames.append(self.encode_audio(pcm))

    def send_context(self, kind: str, text: str) -> str:
        """``thinking`` (silent), ``instructions`` (developer, kept through compaction) or
        ``commentary`` (spoken). Returns the client event id."""
        self._require_started()
        event_id = self._request_id(f"session.{kind}.append")
        self._frames.append(encode_context(kind, text, event_id))
        return event_id

    def send_user_text(self, text: str, *, respond: bool = True) -> str:
        """A typed user turn: ``response.item.create`` (+ ``response.create``). Needs tools
        (Responses delegation) on this session."""
        self._require_started()
        if not self.config.tools:
            raise InvalidState("typed turns on OpenAI Live go through Responses delegation: declare tools, "
                               "or use send_context('commentary'|'thinking', ...)")
        event_id = self._request_id("response.item.create")
        self._frames.append(encode_user_message(text, event_id))
        if respond:
            self._frames.append(encode_response_create(self._request_id("response.create")))
        return event_id

    def send_function_result(self, call_id: str, output: str, *, respond: bool = True) -> bool:
        """Queue the ``function_call_output``. With ``respond`` the round's one
        ``response.create`` goes out once every call of the round has its result and the
        backend response has completed (else a later :meth:`request_backend_reply` asks for
        it). Returns True when this result queued the ``response.create``."""
        self._require_started()
        if call_id not in self._round:
            raise InvalidState(f"no open function call {call_id!r} in this Live session")
        if self._round[call_id] is not None:
            raise InvalidState(f"function call {call_id!r} already has its result")
        self._round[call_id] = output
        self._frames.append(encode_function_output(call_id, output, self._request_id("response.item.create")))
        if respond:
            self._round_continue = True
        return self._maybe_continue()

    def request_backend_reply(self) -> None:
        """Ask the Responses backend to go on (needs tools, i.e. Responses delegation): while a
        tool round is open, its one ``response.create`` is sent as soon as every result is in
        (never twice, never before); otherwise one ``response.create`` now (a typed turn)."""
        self._require_started()
        if not self.config.tools:
            raise InvalidState("response.create needs Responses delegation (declare tools)")
        if self._round:
            self._round_continue = True
            self._maybe_continue()
            return
        self._frames.append(encode_response_create(self._request_id("response.create")))

    @property
    def reply_ids(self) -> tuple[str | None, str | None]:
        """(item id, response id) of the reply being spoken; (None, None) between replies."""
        reply = self._reply
        return (reply.item_id, reply.response_id) if reply is not None else (None, None)

    def _maybe_continue(self) -> bool:
        if not self._round or not self._round_backend_done or self.open_calls or not self._round_continue:
            return False
        self._round.clear()
        self._round_backend_done = self._round_continue = False
        self._frames.append(encode_response_create(self._request_id("response.create")))
        return True

    def close(self) -> None:
        """Queue ``session.close`` (the service answers with ``session.closed``)."""
        if self.started and self.closed_reason is None:
            self._frames.append(encode_session_close(self._request_id("session.close")))

    # ---------------------------------------------------------------- inbound
    def receive(self, frame: str | bytes, now_s: float | None = None) -> list[ProviderEvent]:
        """One server message -> normalized events, then the inference (:meth:`tick`).
        Never raises on what the server sent."""
        now = self.clock() if now_s is None else now_s
        return self._dispatch(decode(frame), now) + self.tick(now)

    def _dispatch(self, record: WireRecord, now_s: float) -> list[ProviderEvent]:
        if isinstance(record, OutputAudio):
            return self._on_output(now_s, pcm=record.pcm)
        if isinstance(record, OutputTranscript):
            return self._on_output(now_s, transcript=record)
        if isinstance(record, InputTranscript):
            return self._on_input(record)
        if isinstance(record, BackendEvent):
            return self._on_backend(record)
        if isinstance(record, DelegationCreated):
            self._delegations.add(record.delegation_id)
            return []
        if isinstance(record, UsageUpdated):
            return self._usage(record.seconds)
        if isinstance(record, SessionStarted):
            self.started = True
            self.session_id = record.session_id
            return [self._event(EventType.SESSION_CREATED, dict(record.session))]
        if isinstance(record, SessionUpdated):
            return [self._event(EventType.SESSION_UPDATED, dict(record.session))]
        if isinstance(record, SessionClosed):
            return self._on_closed(record)
        if isinstance(record, ServerError):
            return [self._error(record)]
        if isinstance(record, Ack):
            return []  # an acknowledgement: the command took effect, nothing to report
        if isinstance(record, Info):
            return [self._event(EventType.UNKNOWN, {"type": "info", "code": record.code, "message": record.message},
                                raw={"type": "info", "code": record.code, "message": record.message})]
        if isinstance(record, Unknown):
            return [self._event(EventType.UNKNOWN, record.type, raw=record.raw)]
        info = ErrorInfo(message=f"malformed server event ({record.type or 'no type'}): {record.reason}",
                         code="malformed_event", type="protocol_error", remote=True)
        return [self._event(EventType.ERROR, info, error=info)]

    def _error(self, record: ServerError) -> ProviderEvent:
        request_type = self._requests.get(record.client_event_id) if record.client_event_id else None
        fatal = record.code in FATAL_CODES
        info = ErrorInfo(message=record.message, code=record.code, type=record.type, param=record.param,
                         event_id=record.client_event_id, request_type=request_type, fatal=fatal,
                         retryable=record.type == "server_error" and not fatal, remote=True)
        return self._event(EventType.ERROR, info, error=info)

    def _usage(self, seconds: float) -> list[ProviderEvent]:
        # Live reports cumulative billable seconds: hand out the increment (a new session
        # counts from zero again, so a drop means "all of it is new")
        increment = seconds - self._usage_seconds if seconds >= self._usage_seconds else seconds
        self._usage_seconds = seconds
        if increment <= 0:
            return []
        return [self._event(EventType.USAGE, Usage(input_audio_seconds=increment))]

    # ---------------------------------------------------------------- user turns
    def _on_input(self, record: InputTranscript) -> list[ProviderEvent]:
        events: list[ProviderEvent] = []
        reply = self._reply
        if reply is not None and self._late_fragment(record, reply):
            # words of the turn the reply answers, transcribed late: not a barge-in
            return [self._event(EventType.INPUT_TRANSCRIPT_DELTA, record.delta, item_id=self._last_user_item)]
        if reply is not None:
            events += self._end_reply(interrupted=True)
        if self._user is not None and record.start_ms - self._user.end_ms >= self.config.user_turn_gap_ms:
            events += self._end_user_turn()  # a gap on the timeline: a new turn
        if self._user is None:
            self._user = _UserTurn(self._new_id("live_user"), record.start_ms)
            item = {"id": self._user.item_id, "type": "message", "role": "user", "status": "in_progress",
                    "content": [{"type": "input_audio", "transcript": None}]}
            events.append(self._event(EventType.ITEM_ADDED, item, item_id=self._user.item_id))
            events.append(self._event(EventType.SPEECH_STARTED, {"audio_start_ms": record.start_ms},
                                      item_id=self._user.item_id))
        user = self._user
        user.transcript.append(record.delta)
        user.end_ms = max(user.end_ms, record.end_ms)
        events.append(self._event(EventType.INPUT_TRANSCRIPT_DELTA, record.delta, item_id=user.item_id))
        return events

    def _late_fragment(self, record: InputTranscript, reply: _Reply) -> bool:
        """A fragment stamped before the reply began (server timeline), or overlapping the
        previous turn, belongs to that turn."""
        if self._last_user_item is None:
            return False
        if reply.server_start_ms is not None and record.end_ms <= reply.server_start_ms:
            return True
        return record.start_ms < self._last_user_end_ms

    def _end_user_turn(self) -> list[ProviderEvent]:
        user, self._user = self._user, None
        if user is None:
            return []
        self._last_user_item, self._last_user_end_ms = user.item_id, user.end_ms
        text = "".join(user.transcript)
        item = {"id": user.item_id, "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_audio", "transcript": text}]}
        return [
            self._event(EventType.SPEECH_STOPPED, {"audio_end_ms": user.end_ms}, item_id=user.item_id),
            # the service took the turn (Live commits by itself): says "the user is done" to
            # consumers that wait for a commit (the runtime's recycler, the engine)
            self._event(EventType.INPUT_COMMITTED, {"previous_item_id": None}, item_id=user.item_id),
            self._event(EventType.INPUT_TRANSCRIPT, text, item_id=user.item_id),
            self._event(EventType.ITEM_DONE, item, item_id=user.item_id),
        ]

    # ---------------------------------------------------------------- replies
    def _on_output(self, now_s: float, *, pcm: bytes | None = None,
                   transcript: OutputTranscript | None = None) -> list[ProviderEvent]:
        cfg = self.config
        quiet = pcm is not None and cfg.drop_idle_output and peak_dbfs(pcm) <= cfg.idle_output_max_dbfs
        reply = self._reply
        if reply is None:
            if self._interrupted_at_ms is not None and self.timeline_ms - self._interrupted_at_ms < cfg.barge_in_tail_ms:
                self.dropped_tail_frames += 1  # the cut reply's last words, already in flight
                return []
            if quiet:
                self.dropped_idle_frames += 1  # the service's near-silent idle track
                return []
        elif quiet and pcm is not None:
            # a pause inside the reply, or the idle track after its end: held until louder
            # output says the reply goes on; dropped when the reply ends
            reply.held.append(pcm)
            reply.held_ms += len(pcm) / cfg.bytes_per_ms
            if reply.held_ms >= cfg.reply_end_gap_ms and not self._backend_active and not self.open_calls:
                return self._end_reply(interrupted=False)  # quiet on the output clock too
            return []
        events: list[ProviderEvent] = []
        if reply is None:
            events += self._end_user_turn()  # the server answers: the user's turn is over
            reply = self._reply = _Reply(self._new_id("live_resp"), self._new_id("live_item"),
                                         self.timeline_ms, now_s)
            self._interrupted_at_ms = None
            events.append(self._event(EventType.RESPONSE_STARTED, ResponseInfo(response_id=reply.response_id),
                                      response_id=reply.response_id))
            item = {"id": reply.item_id, "type": "message", "role": "assistant", "status": "in_progress",
                    "content": [{"type": "output_audio", "transcript": ""}]}
            events.append(self._event(EventType.ITEM_ADDED, item, item_id=reply.item_id,
                                      response_id=reply.response_id))
            events.append(self._event(EventType.OUTPUT_ITEM_ADDED, item, item_id=reply.item_id,
                                      response_id=reply.response_id))
        reply.last_output_wall_s = now_s
        if pcm is not None:
            for chunk in [*reply.held, pcm]:  # a pause the reply went on after: played as received
                events.append(self._audio(reply, chunk))
            reply.held.clear()
            reply.held_ms = 0.0
        if transcript is not None:
            if reply.server_start_ms is None:
                reply.server_start_ms = transcript.start_ms
            reply.transcript.append(transcript.delta)
            reply.end_timeline_ms = max(reply.end_timeline_ms, transcript.end_ms, self.timeline_ms)
            events.append(self._event(EventType.TRANSCRIPT_DELTA, transcript.delta, item_id=reply.item_id,
                                      response_id=reply.response_id))
        return events

    def _audio(self, reply: _Reply, pcm: bytes) -> ProviderEvent:
        reply.audio_ms += len(pcm) / self.config.bytes_per_ms
        reply.end_timeline_ms = max(reply.end_timeline_ms, reply.start_timeline_ms + reply.audio_ms, self.timeline_ms)
        return self._event(EventType.AUDIO_DELTA, pcm, item_id=reply.item_id, response_id=reply.response_id)

    def _end_reply(self, *, interrupted: bool, reason: str = "turn_detected") -> list[ProviderEvent]:
        reply, self._reply = self._reply, None
        if reply is None:
            return []
        self.dropped_idle_frames += len(reply.held)  # the quiet tail was the idle track
        rid, iid = reply.response_id, reply.item_id
        text = "".join(reply.transcript)
        item = {"id": iid, "type": "message", "role": "assistant",
                "status": "incomplete" if interrupted else "completed",
                "content": [{"type": "output_audio", "transcript": text}]}
        events: list[ProviderEvent] = []
        if interrupted:
            self._interrupted_at_ms = self.timeline_ms
            events.append(self._event(EventType.SERVER_INTERRUPTED, ServerInterrupted(response_id=rid),
                                      response_id=rid, item_id=iid))
        events += [
            self._event(EventType.AUDIO_DONE, item_id=iid, response_id=rid),
            self._event(EventType.TRANSCRIPT_DONE, text, item_id=iid, response_id=rid),
            self._event(EventType.OUTPUT_ITEM_DONE, item, item_id=iid, response_id=rid),
            self._event(EventType.ITEM_DONE, item, item_id=iid, response_id=rid),
        ]
        if not interrupted:
            events.append(self._event(EventType.GENERATION_DONE, GenerationDone(response_id=rid), response_id=rid))
        info = ResponseInfo(response_id=rid, status="cancelled" if interrupted else "completed",
                            reason=reason if interrupted else None, output_item_ids=(iid,))
        events.append(self._event(EventType.RESPONSE_DONE, info, response_id=rid))
        return events

    def interrupt(self) -> list[ProviderEvent]:
        """Local barge-in (the app heard the user first): close the reply being spoken.
        Nothing goes on the wire: the service stops by itself when it hears the user."""
        return self._end_reply(interrupted=True, reason="client_cancelled")

    def tick(self, now_s: float | None = None) -> list[ProviderEvent]:
        """Inference on the timeline and the wall clock: ends a user turn or a reply that has
        gone quiet (see the module docstring). Runs after every frame received; call it
        after audio is sent too (the timeline moves only then)."""
        now_s = self.clock() if now_s is None else now_s
        cfg = self.config
        events: list[ProviderEvent] = []
        user = self._user
        if user is not None and self._reply is None and self.timeline_ms - user.end_ms >= cfg.user_turn_gap_ms:
            events += self._end_user_turn()
        reply = self._reply
        if reply is not None and not self._backend_active and not self.open_calls:
            quiet_timeline = self.timeline_ms - reply.end_timeline_ms >= cfg.reply_end_gap_ms
            quiet_wall = cfg.reply_end_quiet_s is not None and now_s - reply.last_output_wall_s >= cfg.reply_end_quiet_s
            if quiet_timeline or quiet_wall:
                events += self._end_reply(interrupted=False)
        return events

    # ---------------------------------------------------------------- delegation
    def _on_backend(self, record: BackendEvent) -> list[ProviderEvent]:
        nested, etype = record.event, record.event_type
        response = nested.get("response")
        response_id = response.get("id") if isinstance(response, Mapping) else None
        if etype == "response.created" and isinstance(response_id, str):
            self._backend_active.add(response_id)
        if etype == "response.function_call_arguments.delta":
            delta, item_id = nested.get("delta"), nested.get("item_id")
            if isinstance(delta, str):
                return [self._event(EventType.FUNCTION_CALL_ARGUMENTS_DELTA, delta,
                                    item_id=item_id if isinstance(item_id, str) else None)]
            return [self._malformed_backend(etype, "'delta' must be a string")]
        if etype == "response.output_item.done":
            item = nested.get("item")
            if not isinstance(item, Mapping):
                return [self._malformed_backend(etype, "'item' must be an object")]
            if item.get("type") != "function_call":
                return []  # the backend's own message: the Live model speaks it
            name, call_id, arguments = item.get("name"), item.get("call_id"), item.get("arguments", "")
            if not (isinstance(name, str) and isinstance(call_id, str) and isinstance(arguments, str)):
                return [self._malformed_backend(etype, "function_call needs string name, call_id, arguments")]
            item_id = item.get("id") if isinstance(item.get("id"), str) else None
            self._round.setdefault(call_id, None)
            self._round_backend_done = False
            call = FunctionCall(name=name, call_id=call_id, arguments=arguments, item_id=item_id,
                                response_id=self._backend_response())
            return [self._event(EventType.FUNCTION_CALL, call, item_id=item_id)]
        if etype in _BACKEND_FINAL:
            if isinstance(response_id, str):
                self._backend_active.discard(response_id)
            if record.delegation_id is not None and not self._backend_active and not self._round:
                self._delegations.discard(record.delegation_id)
            if self._round:
                self._round_backend_done = True
                self._maybe_continue()
            elif record.delegation_id is not None:
                self._delegations.discard(record.delegation_id)
            if etype == "response.failed":
                error = response.get("error") if isinstance(response, Mapping) else None
                message = error.get("message") if isinstance(error, Mapping) else None
                info = ErrorInfo(message=f"delegated response failed: {message or 'no detail'}",
                                 code="delegation_failed", type="server_error", remote=True)
                return [self._event(EventType.ERROR, info, error=info)]
            return []
        if etype in _BACKEND_STATE_TYPES:
            return []
        return [self._event(EventType.UNKNOWN, f"response.event/{etype}", raw=dict(nested))]

    def _backend_response(self) -> str | None:
        return next(iter(self._backend_active), None) if len(self._backend_active) == 1 else None

    def _malformed_backend(self, etype: str, reason: str) -> ProviderEvent:
        info = ErrorInfo(message=f"malformed delegated event ({etype}): {reason}", code="malformed_event",
                         type="protocol_error", remote=True)
        return self._event(EventType.ERROR, info, error=info)

    # ---------------------------------------------------------------- ending
    def _on_closed(self, record: SessionClosed) -> list[ProviderEvent]:
        self.closed_reason = record.reason
        events: list[ProviderEvent] = []
        if record.seconds is not None:
            events += self._usage(record.seconds)
        if record.reason == "expired":
            events.append(self._event(EventType.SESSION_EXPIRING, SessionExpiring(time_left_ms=0, reason="expired")))
        events += self.connection_lost()
        return events

    def connection_lost(self) -> list[ProviderEvent]:
        """The connection is gone: close what was in flight. The reply being spoken ends
        incomplete; calls still waiting for results are withdrawn (a fresh session cannot
        take their outputs): TOOL_CALL_CANCELLED."""
        events: list[ProviderEvent] = []
        if self._reply is not None:
            events += self._end_reply(interrupted=True, reason="connection_lost")
            self._interrupted_at_ms = None
        events += self._end_user_turn()
        if self.open_calls:
            events.append(self._event(EventType.TOOL_CALL_CANCELLED, ToolCallCancelled(call_ids=self.open_calls)))
        self._round.clear()
        self._round_backend_done = self._round_continue = False
        self._backend_active.clear()
        self._delegations.clear()
        return events

    @staticmethod
    def history_of(entries: Sequence[ConversationEntry]) -> list[tuple[str, str]]:
        """(role, text) pairs for ``session.start.input`` from the neutral conversation.

        Live's start history is text only (user, assistant, developer messages): an
        assistant's reply is carried as what was heard of it, function calls and their
        outputs as developer notes, system messages as developer messages.
        """
        out: list[tuple[str, str]] = []
        for entry in entries:
            if entry.kind is EntryKind.FUNCTION_CALL:
                out.append(("developer", f"Earlier tool call: {entry.name}({entry.arguments or ''})"))
            elif entry.kind is EntryKind.FUNCTION_CALL_OUTPUT:
                out.append(("developer", f"Earlier tool result: {entry.output}"))
            else:
                text = entry.content_text
                if text:
                    out.append((entry.role if entry.role in ("user", "assistant") else "developer", text))
        return out

    def __repr__(self) -> str:
        return (f"<LiveSession started={self.started} timeline_ms={self.timeline_ms:.0f} "
                f"reply={self._reply is not None} user={self._user is not None}>")
