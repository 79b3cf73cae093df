"""The sans-I/O conversation state machine of the OpenAI Realtime provider (one cohesive
module: outbound requests and the inbound handlers, a table from event kind to method).

:class:`RealtimeSession` is in the style of websockets' ``protocol.py``: methods queue
JSON texts that the shell drains with :meth:`~RealtimeSession.data_to_send`, and
:meth:`~RealtimeSession.receive` turns one server frame into normalized events. No
sockets, no asyncio. One session per connection; :meth:`reset_for_reconnect` +
:meth:`start` + :meth:`replay_items` restore a conversation on a new connection.

What it keeps correct:

- Response gate: ``response.create`` is sent only when no response is requested or
  active; otherwise it is queued (bounded) and released on ``response.done`` (or on the
  error answering the in-flight request). Never two in flight. A ``response.created``
  that arrives while our request is in flight is taken as the answer to it (a
  server-VAD response that raced ours makes our request fail with the benign
  ``conversation_already_has_active_response``).
- Error matching: every client event carries a unique ``event_id`` recorded in a
  bounded map, so an ERROR names the request it answers (``request_type``).
- Barge-in: :meth:`interrupt` cancels the active response (unless the server already
  does: server VAD with ``interrupt_response``), truncates the current assistant item at
  the played ms clamped to the audio received (deletes it when 0 ms were played), and
  drops late audio/transcript deltas of the cancelled response and of cut items.
- Function calls: FUNCTION_CALL once per ``call_id`` (from
  ``response.function_call_arguments.done`` or, failing that, ``response.output_item.done``).
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
from typing import Any, Mapping, Sequence

from ...exceptions import LimitExceeded
from ..conversation import ConversationEntry, EntryKind
from ..types import (
    ErrorInfo, EventType, FunctionCall, InterruptResult, MessageType, ProviderEvent, ResponseInfo, SessionExpiring,
    TurnDetection, Usage,
)
from .bounded import (
    MAX_ACTIVE_RESPONSES,
    MAX_CANCELLED_RESPONSES,
    MAX_CONTENT_PARTS,
    MAX_SEEN_AUDIO_EVENTS,
    MAX_TRACKED_RESPONSES,
    BoundedDict,
    BoundedSet,
    RecentSet,
)
from .codecs import make_codec
from .config import OpenAIConfig
from .decoders import DecodeContext
from .errors import SESSION_EXPIRED
from .fastdecode import decode_audio_delta
from .protocol import (
    MAX_ID_LENGTH,
    turn_detection_payload,
    new_item_id,
    g711_bytes,
    pcm_bytes,
    settings_from_config,
    validate_session_options,
)

__all__ = ["RealtimeSession", "replay_item"]

log = logging.getLogger("voiceengine.providers.openai.session")

_DROPPABLE = (EventType.AUDIO_DELTA, EventType.TRANSCRIPT_DELTA)
#: output audio bytes per second by format (PCM16 24 kHz; G.711 8 kHz)
BYTES_PER_SECOND = {"audio/pcm": 48000, "audio/pcmu": 8000, "audio/pcma": 8000}


def _count(details: Any, name: str) -> int:
    value = details.get(name) if isinstance(details, Mapping) else None
    return value if type(value) is int and value >= 0 else 0


def usage_from_response(usage: Mapping[str, Any] | None, response_id: str | None) -> Usage | None:
    """The neutral :class:`Usage` of a ``response.done`` ``usage`` object (per response, so
    already an increment); ``None`` when absent or empty. Ill-typed members count as 0."""
    if not isinstance(usage, Mapping):
        return None
    inp, out = usage.get("input_token_details"), usage.get("output_token_details")
    text_in, audio_in = _count(inp, "text_tokens"), _count(inp, "audio_tokens")
    text_out, audio_out = _count(out, "text_tokens"), _count(out, "audio_tokens")
    if not (text_in or audio_in or text_out or audio_out):  # no details: the totals count as text
        text_in, text_out = _count(usage, "input_tokens"), _count(usage, "output_tokens")
    result = Usage(input_text_tokens=text_in, input_audio_tokens=audio_in, input_cached_tokens=_count(inp, "cached_tokens"),
                   output_text_tokens=text_out, output_audio_tokens=audio_out, response_id=response_id)
    return result if result.total_tokens or result.input_cached_tokens else None


def replay_item(entry: ConversationEntry) -> dict[str, Any]:
    """The Realtime wire item re-creating ``entry`` (``ValueError`` when it has nothing to carry)."""
    item: dict[str, Any]
    if entry.kind is EntryKind.FUNCTION_CALL:
        if not entry.name or entry.call_id is None:
            raise ValueError(f"function call {entry.id} has no name or call_id to replay")
        item = {"type": "function_call", "call_id": entry.call_id, "name": entry.name,
                "arguments": entry.arguments or ""}
    elif entry.kind is EntryKind.FUNCTION_CALL_OUTPUT:
        if entry.call_id is None:
            raise ValueError(f"function call output {entry.id} has no call_id to replay")
        item = {"type": "function_call_output", "call_id": entry.call_id, "output": entry.output or ""}
    else:
        if entry.role == "assistant":
            text = entry.content_text
            parts = [{"type": "output_text", "text": text}] if text else []
        elif entry.role == "system":
            parts = [{"type": "input_text", "text": entry.text}] if entry.text else []
        else:
            parts = [{"type": "input_text", "text": piece} for piece in (entry.text, entry.transcript) if piece]
        if not parts:
            raise ValueError(f"message {entry.id} has no text to replay")
        item = {"type": "message", "role": entry.role, "content": parts}
    if not entry.synthetic_id:
        item = {"id": entry.id, **item}
    return item


class RealtimeSession:
    """Sans-I/O OpenAI Realtime session (see the module docstring).

    ``max_pending`` bounds the event_id -> request map, ``max_queued_responses`` the
    gated ``response.create`` queue (beyond it :class:`LimitExceeded`), ``max_items``
    the per-item bookkeeping (audio received, confirmations, function call names); the
    other server-driven structures are bounded by the constants of :mod:`.bounded`.

    ``drop_duplicate_audio`` (the provider sets it) drops an audio delta whose
    ``event_id`` was already received on this connection (the last
    :data:`~.bounded.MAX_SEEN_AUDIO_EVENTS`), before any accounting: a delta the server
    (or a proxy) delivers twice is neither played twice nor counted twice in
    :meth:`received_ms` or ``max_response_audio_s``. Off by default for the bare session
    so scripted inputs may reuse event ids; audio deltas carry ``raw=None``, so this is
    the only place their duplicates can be recognized.
    """

    def __init__(
        self,
        config: OpenAIConfig,
        *,
        provider_name: str = "openai",
        max_pending: int = 1024,
        max_queued_responses: int = 16,
        max_items: int = 512,
        drop_duplicate_audio: bool = False,
        replay_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self._replay_options = dict(replay_options or {})
        self.provider_name = provider_name
        self.codec = make_codec(config.codec, output_audio_format=config.output_audio_format)
        self._audio_delta_type = self.codec.audio_delta_type
        self._input_bytes = pcm_bytes if config.input_audio_format == "audio/pcm" else g711_bytes
        self._max_pending = max_pending
        self._max_queued = max_queued_responses
        self._max_items = max_items
        self._drop_duplicate_audio = drop_duplicate_audio
        self._prefix = f"ve{os.urandom(3).hex()}_"
        self._ids = itertools.count(1)
        # input_audio_buffer.append ids: their own prefix and count, so an id of that form
        # names an append by itself and nothing is recorded per frame (see _resolve_append)
        self._append_prefix = f"{self._prefix}a"
        self._appends = 0  # appends numbered so far, on every connection (the last one's number)
        self._overrides: dict[str, Any] = {}
        self._out: list[str] = []
        #: late AUDIO_DELTA/TRANSCRIPT_DELTA events dropped after a cancel/truncate (all connections)
        self.dropped_deltas = 0
        #: duplicate events suppressed (ITEM_ADDED seen twice, FUNCTION_CALL per call_id)
        self.duplicates = 0
        #: audio deltas refused by max_audio_delta_bytes / max_response_audio_s
        self.limit_drops = 0
        self._reset_connection_state()

    def _reset_connection_state(self) -> None:
        self._ctx = DecodeContext(provider=self.provider_name, session_id=None,
                                  resolve_request=self._resolve_request, sample_width=self.codec.sample_width)
        # Everything keyed by server-chosen values is bounded (see .bounded): a peer that
        # never sends the closing event must not make these grow.
        self._pending: BoundedDict[str, str] = BoundedDict(self._max_pending)  # our event_id -> wire type
        # the appends an error on this connection can still name: numbers in
        # (max(_append_floor, _appends - max_pending), _appends], each resolved once
        self._append_floor = self._appends
        self._resolved_appends: BoundedSet[int] = BoundedSet(self._max_pending)
        self._queue: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self._inflight: str | None = None  # event_id of the response.create awaiting response.created
        self._active: BoundedSet[str] = BoundedSet(MAX_ACTIVE_RESPONSES)  # response ids created, not done
        self._cancel_sent = False  # response.cancel sent for the current response
        self._cancel_on_create = False  # cancel sent while our create was in flight
        self._server_cancelling = False  # server VAD barge-in cancels it by itself
        self._cancelled: BoundedSet[str] = BoundedSet(MAX_CANCELLED_RESPONSES)
        self._cut_items: BoundedSet[str] = BoundedSet(self._max_items)  # truncated/deleted by us: drop late audio
        self._confirmed: BoundedSet[str] = BoundedSet(self._max_items)  # item ids the server told us about
        self._added: BoundedSet[str] = BoundedSet(self._max_items)  # ITEM_ADDED seen (dedupe item.created/added)
        # item id -> content_index -> audio bytes received
        self._audio: BoundedDict[str, BoundedDict[int, int]] = BoundedDict(self._max_items)
        self._current: tuple[str, int] | None = None  # (item_id, content_index) of the last audio
        # function_call item id -> name (beta lacks it in the arguments event)
        self._call_names: BoundedDict[str, str] = BoundedDict(self._max_items)
        # item id -> call waiting for its name (from output_item.done)
        self._deferred_calls: BoundedDict[str, FunctionCall] = BoundedDict(self._max_items)
        self._calls_done: BoundedSet[str] = BoundedSet(self._max_items)
        # response id -> audio bytes received (max_response_audio_s)
        self._response_audio: BoundedDict[str, int] = BoundedDict(MAX_TRACKED_RESPONSES)
        # event_ids of the audio deltas received: a delta delivered twice is dropped here,
        # so no consumer plays it twice and received_ms / the response audio limit stay exact
        self._seen_audio: RecentSet[str] | None = (
            RecentSet(MAX_SEEN_AUDIO_EVENTS) if self._drop_duplicate_audio else None)
        self.session_id: str | None = None
        self._created = False  # session.created received: the session is usable
        self.session_ready = False
        #: the server said session_expired: the connection is about to close (1001)
        self.expiring = False

    # ------------------------------------------------------------- plumbing
    def _next_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"

    def _record(self, event_id: str, wire_type: str) -> None:
        self._pending.put(event_id, wire_type)

    def _resolve_request(self, event_id: str) -> str | None:
        wire_type = self._pending.pop(event_id, None)
        if wire_type is not None or not event_id.startswith(self._append_prefix):
            return wire_type
        return self._resolve_append(event_id[len(self._append_prefix):])

    def _resolve_append(self, digits: str) -> str | None:
        """An error's ``event_id`` of the appends' form: one of the last ``max_pending``
        appends of this connection, not resolved before (as a bounded map's pop would
        answer), is ``input_audio_buffer.append``; anything else is no request of ours."""
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
            return None
        number = int(digits)
        if not self._append_window_start() < number <= self._appends or number in self._resolved_appends:
            return None
        self._resolved_appends.add(number)
        return "input_audio_buffer.append"

    def _append_window_start(self) -> int:
        return max(self._append_floor, self._appends - self._max_pending)

    def _send(self, event_id: str, wire_type: str, text: str) -> str:
        self._record(event_id, wire_type)
        self._out.append(text)
        return event_id

    def data_to_send(self) -> list[str]:
        """The JSON texts queued since the last call (send them in order, as text frames)."""
        out, self._out = self._out, []
        return out

    @property
    def response_active(self) -> bool:
        """A response is requested (``response.create`` sent) or in progress."""
        return self._inflight is not None or bool(self._active)

    @property
    def queued_responses(self) -> int:
        return len(self._queue)

    @property
    def pending_requests(self) -> int:
        start = self._append_window_start()
        resolved = sum(1 for number in self._resolved_appends if number > start)
        return len(self._pending) + self._appends - start - resolved

    # ------------------------------------------------------------- session
    def settings(self) -> dict[str, Any]:
        """The effective normalized session settings (config + update_session overrides)."""
        settings = settings_from_config(self.config)
        settings.update(self._overrides)
        return settings

    def start(self) -> None:
        """Queue the ``session.update`` for the config, then one with the
        ``replay_options`` (every ``update_session`` of the provider's earlier sessions)."""
        eid = self._next_id()
        self._send(eid, "session.update", self.codec.session_update(self.settings(), eid))
        if self._replay_options:
            self.update_session(**self._replay_options)

    # ------------------------------------------------------------- runtime interface
    @property
    def ready(self) -> bool:
        """``session.created`` arrived: audio and requests may flow."""
        return self._created

    @property
    def resumption_handle(self) -> str | None:
        """Realtime sessions cannot be resumed: a restore replays the conversation."""
        return None

    @property
    def resumed(self) -> bool:
        return False

    def replay_entry(self, entry: ConversationEntry) -> None:
        """Queue ``conversation.item.create`` re-creating a neutral entry (its id kept unless
        synthetic): a message as text (an assistant's as ``output_text``: what was heard of
        its audio), a function call, a function call output."""
        self.add_item(replay_item(entry))

    def update_session(self, **options: Any) -> None:
        """Queue a ``session.update`` with just these options; kept for reconnects."""
        validate_session_options(options)
        eid = self._next_id()
        text = self.codec.session_update(options, eid)  # encode first: a bad value changes nothing
        self._overrides.update(options)
        self._send(eid, "session.update", text)

    # ------------------------------------------------------------- input audio
    def append_audio(self, pcm: Any) -> None:
        """Queue ``input_audio_buffer.append`` for any buffer in the input format (PCM16:
        an even byte count; G.711: any)."""
        text = self.encode_audio(pcm)
        if text is not None:
            self._out.append(text)

    def encode_audio(self, pcm: Any) -> str | None:
        """The ``input_audio_buffer.append`` text for ``pcm`` (validated), returned instead of
        queued, so the shell can track the audio it carries; ``None`` for an empty buffer."""
        view = self._input_bytes(pcm)  # validate first
        if not len(view):  # an empty buffer is valid but not worth a frame
            return None
        number = self._appends + 1
        self._appends = number  # (the whole record of this frame's id: see _resolve_append)
        return self.codec.append_pcm(view, f"{self._append_prefix}{number}")

    def commit_audio(self) -> None:
        eid = self._next_id()
        self._send(eid, "input_audio_buffer.commit", self.codec.encode("input_audio_buffer.commit", eid))

    def clear_audio(self) -> None:
        eid = self._next_id()
        self._send(eid, "input_audio_buffer.clear", self.codec.encode("input_audio_buffer.clear", eid))

    # ------------------------------------------------------------- items
    def add_item(self, item: Mapping[str, Any], *, previous_item_id: str | None = None) -> str:
        """Queue ``conversation.item.create``; returns the item id (generated when absent)."""
        if not isinstance(item, Mapping):
            raise TypeError(f"item must be a mapping, got {type(item).__name__}")
        item = dict(item)
        item.pop("previous_item_id", None)  # ConversationState keeps it inside; not an item field
        item_id = item.get("id") or new_item_id()
        if not isinstance(item_id, str) or len(item_id) > MAX_ID_LENGTH:
            raise ValueError(f"item id must be a str of at most {MAX_ID_LENGTH} chars")
        if not isinstance(item.get("type"), str):
            raise ValueError("item needs a string 'type' (message, function_call, function_call_output)")
        item["id"] = item_id
        eid = self._next_id()
        self._send(eid, "conversation.item.create",
                   self.codec.conversation_item_create(item, eid, previous_item_id=previous_item_id))
        return item_id

    def send_text(self, text: str, *, role: str = "user", respond: bool = True) -> str:
        """Add a text message (and request a response when ``respond``); returns its item id."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if role not in ("user", "assistant", "system"):
            raise ValueError(f"role must be user, assistant or system, got {role!r}")
        part = "output_text" if role == "assistant" else "input_text"
        if respond:
            self._check_gate_room()  # refuse before the item goes out, not after
        item_id = self.add_item({"type": "message", "role": role, "content": [{"type": part, "text": text}]})
        if respond:
            self.create_response()
        return item_id

    def send_function_result(self, call_id: str, output: Any, *, respond: bool = True) -> str:
        """``function_call_output`` item (non-str output as JSON) + gated ``response.create``."""
        if not isinstance(call_id, str) or not call_id:
            raise ValueError("call_id must be a non-empty str")
        text = output if isinstance(output, str) else json.dumps(output, separators=(",", ":"))
        if respond:
            self._check_gate_room()
        item_id = self.add_item({"type": "function_call_output", "call_id": call_id, "output": text})
        if respond:
            self.create_response()
        return item_id

    def replay_items(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Queue ``conversation.item.create`` for each item, in order (reconnect restore)."""
        for item in items:
            self.add_item(item)

    def truncate(self, item_id: str, audio_end_ms: int, *, content_index: int = 0) -> None:
        """Queue ``conversation.item.truncate``; ``audio_end_ms`` is clamped to the audio
        received for the item when known. Late audio of the item is dropped from now on."""
        if not isinstance(item_id, str):
            raise TypeError("item_id must be a str")
        if type(audio_end_ms) is not int or type(content_index) is not int:
            raise TypeError("audio_end_ms and content_index must be ints")
        if item_id in self._audio:
            audio_end_ms = min(audio_end_ms, self.received_ms(item_id, content_index))
        if audio_end_ms <= 0:
            raise ValueError("audio_end_ms must be > 0 (truncating at 0 is refused by the service; "
                             "delete the item instead)")
        self._cut_items.add(item_id)
        eid = self._next_id()
        self._send(eid, "conversation.item.truncate", self.codec.conversation_item_truncate(
            item_id, audio_end_ms, eid, content_index=content_index))

    def delete_item(self, item_id: str) -> None:
        """Queue ``conversation.item.delete`` (late audio of the item is dropped)."""
        self._cut_items.add(item_id)
        eid = self._next_id()
        self._send(eid, "conversation.item.delete", self.codec.conversation_item_delete(item_id, eid))

    # ------------------------------------------------------------- responses
    def create_response(self, **options: Any) -> bool:
        """Request a response; True when sent now, False when queued behind the active one."""
        payload = self.codec.response_payload(options)  # validate now, not when released
        return self._gate(self._next_id(), {"response": payload} if payload else {})

    def _check_gate_room(self) -> None:
        if (self.response_active or self._queue) and len(self._queue) >= self._max_queued:
            raise LimitExceeded("too many queued response requests", limit=self._max_queued)

    def _gate(self, event_id: str, fields: dict[str, Any]) -> bool:
        if not self.response_active and not self._queue:
            self._send_create(event_id, fields)
            return True
        if len(self._queue) >= self._max_queued:
            raise LimitExceeded("too many queued response requests", limit=self._max_queued)
        self._queue.append((event_id, fields))
        return False

    def _send_create(self, event_id: str, fields: dict[str, Any]) -> None:
        self._inflight = event_id
        self._cancel_sent = self._cancel_on_create = self._server_cancelling = False
        self._send(event_id, "response.create", self.codec.encode("response.create", event_id, fields))

    def _release(self) -> None:
        if self._queue and not self.response_active:
            self._send_create(*self._queue.popleft())

    def cancel_response(self) -> bool:
        """Queue ``response.cancel`` if a response is requested/active and not yet cancelled
        (by us or by the server); returns whether one was sent."""
        if not self.response_active or self._cancel_sent or self._server_cancelling:
            return False
        self._mark_cancelled()
        eid = self._next_id()
        self._send(eid, "response.cancel", self.codec.encode("response.cancel", eid))
        return True

    def _mark_cancelled(self) -> None:
        self._cancel_sent = True
        for response_id in self._active:
            self._cancelled.add(response_id)
        if self._inflight is not None:
            self._cancel_on_create = True

    def received_ms(self, item_id: str, content_index: int = 0) -> int:
        """Milliseconds of audio received for an item's content part (floor)."""
        parts = self._audio.get(item_id)
        n_bytes = parts.get(content_index, 0) if parts is not None else 0
        return n_bytes * 1000 // BYTES_PER_SECOND[self.config.output_audio_format]

    @property
    def current_item(self) -> tuple[str, int] | None:
        """``(item_id, content_index)`` of the assistant audio received last, if any."""
        return self._current

    def interrupt(self, *, played_ms: int | None = None, item_id: str | None = None,
                  content_index: int | None = None) -> InterruptResult:
        """Barge-in (see the module docstring). ``played_ms`` of the current item (or of
        ``item_id``) as heard by the user; ``None`` = all audio received.

        The item is cut only when the server told us about it (audio or item events): an
        item id we never heard of gets nothing (``action="none"``), as does an item already
        cut. Returns what was put on the wire.
        """
        if played_ms is not None and (type(played_ms) is not int or played_ms < 0):
            raise ValueError(f"played_ms must be an int >= 0 or None, got {played_ms!r}")
        response_id = next(reversed(self._active), None) if self._active else None
        cancelled = self.cancel_response()
        if not cancelled and self._server_cancelling:
            self._mark_cancelled()  # the server cancels; still drop its in-flight deltas
        if item_id is None and self._current is not None:
            item_id, index = self._current
        else:
            index = 0
        if content_index is not None:
            index = content_index
        if item_id is None or item_id in self._cut_items or item_id not in self._confirmed:
            return InterruptResult(item_id=item_id, played_ms=played_ms, action="none",
                                   cancelled_response=cancelled, response_id=response_id)
        received = self.received_ms(item_id, index)
        end_ms = received if played_ms is None else min(played_ms, received)
        if end_ms > 0:
            self.truncate(item_id, end_ms, content_index=index)
            action = "truncated"
        else:
            self.delete_item(item_id)
            action = "deleted"
        return InterruptResult(item_id=item_id, played_ms=played_ms, audio_end_ms=end_ms if end_ms > 0 else None,
                               action=action, cancelled_response=cancelled, response_id=response_id)

    # ------------------------------------------------------------- raw access
    def send_raw(self, message_type: MessageType | str, data: Mapping[str, Any] | None) -> str:
        """Queue any client event; returns its event_id (an ``event_id`` in ``data`` is
        replaced). ``response.create`` still goes through the gate, ``response.cancel``
        updates the cancel state."""
        wire_type = message_type.value if isinstance(message_type, MessageType) else message_type
        if not isinstance(wire_type, str) or not wire_type:
            raise TypeError("message_type must be a MessageType or a non-empty str")
        if data is not None and not isinstance(data, Mapping):
            raise TypeError("data must be a mapping or None")
        fields = {k: v for k, v in (data or {}).items() if k not in ("type", "event_id")}
        eid = self._next_id()
        if wire_type == "response.create":
            self._gate(eid, fields)
            return eid
        if wire_type == "response.cancel" and self.response_active:
            self._mark_cancelled()
        return self._send(eid, wire_type, self.codec.encode(wire_type, eid, fields))

    # ------------------------------------------------------------- inbound
    def receive(self, text: str | bytes) -> list[ProviderEvent]:
        """Decode one server frame and update the state; never raises."""
        try:
            # the codec's decode, unrolled: its fast path for the bulk of frames first (one
            # hop and one tuple less per 20 ms audio delta)
            fast = decode_audio_delta(text, self._audio_delta_type, self._ctx)
            if fast is not None:
                return self._admit_audio(fast[0], fast[1])
            wire_type, event, msg = self.codec.decode_general(text, self._ctx)
            return self._apply(event, msg)
        except Exception as exc:  # our bug: report it as an event, keep the loop alive
            log.exception("RealtimeSession.receive failed")
            info = ErrorInfo(message=f"internal error handling a server event: {type(exc).__name__}",
                             code="internal_client_error", remote=False)
            return [ProviderEvent(type=EventType.ERROR, provider=self.provider_name, session_id=self.session_id,
                                  error=info)]

    def _apply(self, event: ProviderEvent, msg: dict[str, Any] | None) -> list[ProviderEvent]:
        kind = event.type
        if kind is EventType.AUDIO_DELTA and msg is not None:
            return self._admit_audio(event, msg)
        if kind in _DROPPABLE:
            if event.response_id in self._cancelled or event.item_id in self._cut_items:
                self.dropped_deltas += 1
                return []
            return [event]
        handler = _HANDLERS.get(kind)
        return handler(self, event, msg) if handler is not None else [event]

    def _admit_audio(self, event: ProviderEvent, msg: dict[str, Any]) -> list[ProviderEvent]:
        """Every rule for one audio delta (the bulk of what arrives, one per 20-100 ms), in
        one step: dropped when its response was cancelled or its item cut, or when the same
        delta arrives twice; refused past ``max_audio_delta_bytes`` or
        ``max_response_audio_s``; else counted for its response
        (the limit) and its item's content part (:meth:`received_ms`, a truncation)."""
        response_id, item_id = event.response_id, event.item_id
        if response_id in self._cancelled or item_id in self._cut_items:
            self.dropped_deltas += 1
            return []
        seen = self._seen_audio
        if seen is not None:
            event_id = msg.get("event_id")
            # (an unhashable id from a hostile peer: not matched); the same delta delivered
            # twice: never play it twice
            if type(event_id) is str and seen.seen(event_id):
                self.duplicates += 1
                return []
        n_bytes = len(event.data)
        config = self.config
        if n_bytes > config.max_audio_delta_bytes:
            return self._refuse_oversized(event, n_bytes)
        if response_id is not None:
            tracked = self._response_audio
            received = tracked.get(response_id)
            total = n_bytes if received is None else received + n_bytes
            if total > config.max_response_audio_s * BYTES_PER_SECOND[config.output_audio_format]:
                return self._refuse_over_budget(event, response_id)
            if received is None:
                tracked.put(response_id, total)  # a new response: enforce the bound
            else:
                tracked[response_id] = total
        if item_id is None:
            return [event]
        content_index = msg.get("content_index", 0)
        parts = self._audio.get(item_id)
        if parts is None:
            parts = BoundedDict(MAX_CONTENT_PARTS)
            self._audio.put(item_id, parts)
        received = parts.get(content_index)
        if received is None:  # a new part: the server chooses content_index, so bound it
            parts.put(content_index, n_bytes)
        else:
            parts[content_index] = received + n_bytes
        if item_id not in self._confirmed:  # (re-adding a member changes nothing: skip the call per delta)
            self._confirmed.add(item_id)
        current = self._current
        if current is None or current[0] != item_id or current[1] != content_index:
            self._current = (item_id, content_index)
        return [event]

    def lost_responses(self) -> list[str | None]:
        """Responses that die with this connection: the active ones (by id), the one
        requested and not yet started (``None``), then each queued request (``None``)."""
        lost: list[str | None] = list(self._active)
        if self._inflight is not None:
            lost.append(None)
        lost.extend(None for _ in self._queue)
        return lost

    @property
    def idle(self) -> bool:
        """No response requested, active or queued."""
        return not self.response_active and not self._queue

    # ------------------------------------------------------------- inbound handlers
    # Each takes the decoded event and the parsed wire message, updates the bookkeeping and
    # returns the events for the app (none: a duplicate, a deferred call; more: a
    # synthesized FUNCTION_CALL).
    def _on_session_created(self, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
        self.session_id = self._ctx.session_id = event.session_id
        self._created = True
        return [event]


    def _on_session_updated(self, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
        self.session_ready = True
        return [event]


    def _on_error(self, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
        info = event.error
        if info is None:
            return [event]
        if info.code == SESSION_EXPIRED and not self.expiring:
            self.expiring = True  # the close (1001) follows: the runtime restores the session
            notice = SessionExpiring(time_left_ms=0, reason="session_expired")
            expiring = ProviderEvent(type=EventType.SESSION_EXPIRING, data=notice, provider=event.provider,
                                     session_id=event.session_id)
            return [event, expiring]
        if info.request_type == "response.create" and info.event_id == self._inflight:
            self._inflight = None  # our request failed: free the gate
            self._release()
        if info.fatal:
            log.warning("fatal provider error %s (request %s)", info.code, info.request_type)
        return [event]


    def _on_response_started(self, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
        response_id = event.response_id
        if response_id is not None:
            self._active.add(response_id)
            if self._cancel_on_create:
                self._cancelled.add(response_id)
        if self._inflight is not None:
            self._inflight = None
            self._cancel_on_create = False
        return [event]


    def _on_response_done(self, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
        self._active.discard(event.response_id)  # type: ignore[arg-type]
        self._response_audio.pop(event.response_id, None)  # type: ignore[arg-type]
        if not self._active:
            self._cancel_sent = self._server_cancelling = False
        self._release()
        usage = usage_from_response(event.data.usage if isinstance(event.data, ResponseInfo) else None,
                                    event.response_id)
        if usage is None:
            return [event]
        return [event, ProviderEvent(type=EventType.USAGE, data=usage, provider=event.provider,
                                     session_id=event.session_id, response_id=event.response_id)]


    def _on_speech_started(self, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
        td = self.settings().get("turn_detection")
        if isinstance(td, TurnDetection):
            td = turn_detection_payload(td)
        interrupts = isinstance(td, str) or (isinstance(td, Mapping) and td.get("interrupt_response", True)
                                             and td.get("type") in ("server_vad", "semantic_vad"))
        if interrupts and self._active:
            self._server_cancelling = True
        return [event]


    def _on_item_added(self, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
        item_id = event.item_id
        if item_id is not None:
            if item_id in self._added:
                self.duplicates += 1  # conversation.item.created after .added for the same item
                return []
            self._added.add(item_id)
            self._confirmed.add(item_id)
        return [event]


    def _on_item_deleted(self, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
        item_id = event.item_id
        if item_id is not None:
            self._confirmed.discard(item_id)
            self._added.discard(item_id)
            self._audio.pop(item_id, None)
            if self._current is not None and self._current[0] == item_id:
                self._current = None
        return [event]


    def _on_output_item_added(self, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
        item = event.data
        if event.item_id is not None:
            self._confirmed.add(event.item_id)
            if item.get("type") == "function_call" and isinstance(item.get("name"), str):
                self._call_names.put(event.item_id, item["name"])
        return [event]


    def _on_function_call(self, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
        call: FunctionCall = event.data
        if call.call_id in self._calls_done:
            self.duplicates += 1
            return []
        if not call.name:
            name = self._call_names.get(call.item_id or "")
            if name is None:  # beta without output_item.added: wait for output_item.done
                self._deferred_calls.put(call.item_id or "", call)
                return []
            event = self._with_call(event, call, name)
        self._calls_done.add(call.call_id)
        self._call_names.pop(call.item_id or "", None)
        return [event]


    def _on_output_item_done(self, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
        item = event.data
        if item.get("type") != "function_call" or item.get("status") == "incomplete":
            return [event]
        call_id, name = item.get("call_id"), item.get("name")
        deferred = self._deferred_calls.pop(event.item_id or "", None)
        if not isinstance(call_id, str) or call_id in self._calls_done or not isinstance(name, str):
            return [event]
        arguments = item.get("arguments")
        call = FunctionCall(name=name, call_id=call_id,
                            arguments=arguments if isinstance(arguments, str) else (deferred.arguments if deferred else ""),
                            item_id=event.item_id, response_id=event.response_id)
        self._calls_done.add(call_id)
        self._call_names.pop(event.item_id or "", None)
        synthesized = ProviderEvent(type=EventType.FUNCTION_CALL, data=call, provider=event.provider,
                                    session_id=event.session_id, item_id=event.item_id,
                                    response_id=event.response_id, raw=event.raw)
        return [synthesized, event]


    @staticmethod
    def _with_call(event: ProviderEvent, call: FunctionCall, name: str) -> ProviderEvent:
        named = FunctionCall(name=name, call_id=call.call_id, arguments=call.arguments, item_id=call.item_id,
                             response_id=call.response_id)
        return ProviderEvent(type=event.type, data=named, timestamp=event.timestamp, provider=event.provider,
                             session_id=event.session_id, item_id=event.item_id, response_id=event.response_id,
                             raw=event.raw)


    def _limit_error(self, message: str, code: str, event: ProviderEvent) -> ProviderEvent:
        # The peer's data broke the limit: a client-side verdict on a remote cause.
        info = ErrorInfo(message=message, code=code, type="client_error", remote=True)
        return ProviderEvent(type=EventType.ERROR, provider=self.provider_name, session_id=self.session_id,
                             error=info, item_id=event.item_id, response_id=event.response_id)

    def _refuse_oversized(self, event: ProviderEvent, n_bytes: int) -> list[ProviderEvent]:
        """A delta larger than ``max_audio_delta_bytes``: dropped; the error to return."""
        self.limit_drops += 1
        return [self._limit_error(
            f"audio delta of {n_bytes} bytes exceeds max_audio_delta_bytes "
            f"({self.config.max_audio_delta_bytes}); dropped", "audio_delta_too_large", event)]

    def _refuse_over_budget(self, event: ProviderEvent, response_id: str) -> list[ProviderEvent]:
        """A delta past its response's ``max_response_audio_s``: the response is cancelled,
        this and every later delta of it dropped; the error to return."""
        self.limit_drops += 1
        if not self.cancel_response():
            self._mark_cancelled()
        self._cancelled.add(response_id)
        return [self._limit_error(
            f"response {response_id} exceeded max_response_audio_s ({self.config.max_response_audio_s:g} s); "
            "cancelled", "response_audio_limit", event)]

    # ------------------------------------------------------------- reconnect
    def reset_for_reconnect(self) -> None:
        """Forget everything about the old connection (unsent data, pending requests,
        queued responses, item bookkeeping); keep config and update_session overrides."""
        dropped = len(self._queue)
        self._out = []
        self._reset_connection_state()
        if dropped:
            log.info("reset_for_reconnect dropped %d queued response request(s)", dropped)


_HANDLERS: dict[EventType, Any] = {
    EventType.SESSION_CREATED: RealtimeSession._on_session_created,
    EventType.SESSION_UPDATED: RealtimeSession._on_session_updated,
    EventType.ERROR: RealtimeSession._on_error,
    EventType.RESPONSE_STARTED: RealtimeSession._on_response_started,
    EventType.RESPONSE_DONE: RealtimeSession._on_response_done,
    EventType.SPEECH_STARTED: RealtimeSession._on_speech_started,
    EventType.ITEM_ADDED: RealtimeSession._on_item_added,
    EventType.ITEM_DELETED: RealtimeSession._on_item_deleted,
    EventType.OUTPUT_ITEM_ADDED: RealtimeSession._on_output_item_added,
    EventType.OUTPUT_ITEM_DONE: RealtimeSession._on_output_item_done,
    EventType.FUNCTION_CALL: RealtimeSession._on_function_call,
}
