"""Conversation state: an ordered mirror of the provider's conversation, folded from
normalized :class:`~voiceengine.providers.types.ProviderEvent`\\ s.

Ordering follows ``previous_item_id`` the way the Realtime API defines it: an item is
inserted right after the item it names; ``previous_item_id = None`` (explicitly present)
means "at the beginning"; an item whose predecessor is absent from the event or unknown is
appended at the end. Because the order is derived from the declared links (recomputed only
when the structure changes), items may arrive in any order and the final order is the same:
an orphan moves behind its predecessor as soon as that arrives. Deleting an item keeps
the visible order of the others (its followers take its place).

Idempotence: events for a known item id update it in place. A duplicated or reordered
``added``/``done`` never creates a second item, never reopens a finished one and never
wipes content; deltas after the item's ``*_done`` are ignored (the done text is final);
deltas ahead of their item are parked (bounded) until it arrives; a server event seen
twice (same ``raw["event_id"]``) is folded once. An item replayed into a restored session
(our own :meth:`ConversationState.snapshot`, where audio became text) keeps its
transcript, ``audio_ms`` and truncation.

Truncation: the server cuts the audio and drops its own transcript, but it never says
which words were heard. :class:`ConversationItem` keeps the whole transcript plus
``truncated_at_ms``; :attr:`ConversationItem.heard_transcript` estimates the heard part
in proportion to ``truncated_at_ms / audio_ms`` (cut at a word boundary), and
:meth:`ConversationState.snapshot` uses that estimate.

Timing uses an injectable monotonic ``clock`` read when an event is *applied* (not the
wall-clock ``event.timestamp``), so per-turn latencies are measured on one clock.
Assistant "speaking" here means audio is being generated; what was played is the
engine's business (its playback buffer).
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ._bounded import BoundedDict, BoundedSet
from ._conversation_items import _ItemEvents
from ._conversation_order import _Rec
from ._snapshot import replay_items
from .providers.types import AudioFormat, EventType, ProviderEvent, ResponseInfo

__all__ = ["ConversationState", "ConversationItem", "Turn", "ConversationSnapshot"]

log = logging.getLogger("voiceengine.state")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItem:
    """A read-only view of one conversation item.

    ``text`` is the text content (``None`` if the item has none), ``transcript`` the audio
    transcript (assistant speech, or the user's transcription), ``audio_ms`` the audio
    received (assistant) or spoken (user, from VAD), ``truncated_at_ms`` where it was cut.
    """

    id: str
    type: str
    role: str | None = None
    text: str | None = None
    transcript: str | None = None
    status: str | None = None
    audio_ms: float = 0.0
    truncated_at_ms: int | None = None
    name: str | None = None
    call_id: str | None = None
    arguments: str | None = None
    output: str | None = None
    has_audio: bool = False
    previous_item_id: str | None = None
    response_id: str | None = None

    @property
    def truncated(self) -> bool:
        return self.truncated_at_ms is not None

    @property
    def heard_ms(self) -> float:
        """Audio the user heard: ``audio_ms`` clamped to the truncation point."""
        if self.truncated_at_ms is None:
            return self.audio_ms
        return min(self.audio_ms, float(self.truncated_at_ms)) if self.audio_ms else float(self.truncated_at_ms)

    @property
    def heard_transcript(self) -> str | None:
        """The transcript cut proportionally to what was heard (an estimate, see module doc)."""
        transcript = self.transcript
        if transcript is None or self.truncated_at_ms is None or self.audio_ms <= 0:
            return transcript
        fraction = max(0.0, min(1.0, self.truncated_at_ms / self.audio_ms))
        cut = int(len(transcript) * fraction)
        if cut >= len(transcript):
            return transcript
        head = transcript[:cut]
        if not transcript[cut].isspace():  # do not keep half a word
            space = head.rfind(" ")
            head = head[:space] if space >= 0 else ""
        return head.rstrip()


@dataclass(frozen=True, slots=True, kw_only=True)
class Turn:
    """One exchange: user input (speech, a commit or a text item) and the response to it.

    ``status``: listening, waiting, responding, then the response's final status
    (completed, cancelled, incomplete, failed), or superseded (new speech before any
    response). Times are on the state's clock (seconds).
    """

    index: int
    trigger: str
    status: str
    user_item_id: str | None = None
    response_id: str | None = None
    assistant_item_ids: tuple[str, ...] = ()
    speech_started_at: float | None = None
    speech_stopped_at: float | None = None
    committed_at: float | None = None
    response_started_at: float | None = None
    first_audio_at: float | None = None
    first_text_at: float | None = None
    done_at: float | None = None
    audio_start_ms: int | None = None
    audio_end_ms: int | None = None
    reason: str | None = None

    @property
    def response_latency_s(self) -> float | None:
        """End of user speech (or commit) to response start."""
        start = self.speech_stopped_at if self.speech_stopped_at is not None else self.committed_at
        if start is None or self.response_started_at is None:
            return None
        return self.response_started_at - start

    @property
    def first_audio_latency_s(self) -> float | None:
        """End of user speech (or commit) to the first audio delta received."""
        start = self.speech_stopped_at if self.speech_stopped_at is not None else self.committed_at
        if start is None or self.first_audio_at is None:
            return None
        return self.first_audio_at - start


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationSnapshot:
    """The conversation as wire items for ``conversation.item.create`` (replay in order).

    ``skipped_ids``: items that carry nothing replayable (user audio without a
    transcription, assistant audio with nothing heard, in-progress function calls).
    """

    items: tuple[dict[str, Any], ...]
    item_ids: tuple[str, ...]
    skipped_ids: tuple[str, ...] = ()
    dropped_items: int = 0
    taken_at: float = 0.0


_TURN_FIELDS = tuple(Turn.__dataclass_fields__)
#: deleted item ids remembered so a late event never resurrects one
_MAX_GONE = 4096
#: items whose deltas arrived before the item itself (reordered events; oldest dropped)
_MAX_ORPHANS = 64


class _TurnRec:
    """Mutable per-turn record behind the frozen :class:`Turn` view."""

    __slots__ = (
        "index", "trigger", "status", "user_item_id", "response_id", "assistant_item_ids",
        "speech_started_at", "speech_stopped_at", "committed_at", "response_started_at",
        "first_audio_at", "first_text_at", "done_at", "audio_start_ms", "audio_end_ms", "reason", "view",
    )

    def __init__(self, index: int, trigger: str, status: str) -> None:
        self.index, self.trigger, self.status = index, trigger, status
        self.user_item_id: str | None = None
        self.response_id: str | None = None
        self.assistant_item_ids: tuple[str, ...] = ()
        self.speech_started_at: float | None = None
        self.speech_stopped_at: float | None = None
        self.committed_at: float | None = None
        self.response_started_at: float | None = None
        self.first_audio_at: float | None = None
        self.first_text_at: float | None = None
        self.done_at: float | None = None
        self.audio_start_ms: int | None = None
        self.audio_end_ms: int | None = None
        self.reason: str | None = None
        self.view: Turn | None = None


class ConversationState(_ItemEvents):
    """Folds normalized events into conversation items and turns (see the module docstring).

    ``max_items`` bounds the mirror (the first items in order are dropped and counted in
    :attr:`dropped_items`); ``max_turns`` bounds the turn history. ``output_format`` is the
    provider's output audio format, used to convert audio deltas into milliseconds.
    """

    def __init__(
        self, *, max_items: int = 1000, max_turns: int = 256,
        clock: Callable[[], float] = time.monotonic, output_format: AudioFormat | None = None,
    ) -> None:
        if max_items < 1 or max_turns < 1:
            raise ValueError("max_items and max_turns must be >= 1")
        self.max_items = max_items
        self._clock = clock
        self._output_format = output_format or AudioFormat()
        self._bytes_per_ms = self._output_format.bytes_per_second / 1000.0
        self._recs: dict[str, _Rec] = {}
        self._order: tuple[_Rec, ...] | None = ()
        self._items_view: tuple[ConversationItem, ...] | None = ()
        self._gone: BoundedSet[str] = BoundedSet(_MAX_GONE)  # deleted ids, never resurrected
        self._orphans: BoundedDict[str, _Rec] = BoundedDict(_MAX_ORPHANS)
        self._seen_events: BoundedSet[str] = BoundedSet(1024)
        self.duplicate_events = 0
        self._pending_input_transcripts: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._seq = 0
        self._turns: collections.deque[_TurnRec] = collections.deque(maxlen=max_turns)
        self._turn_index = 0
        self._speaking: str | None = None
        self._current_response: ResponseInfo | None = None
        self.last_response: ResponseInfo | None = None
        self.dropped_items = 0
        self._dispatch: dict[EventType, Callable[[ProviderEvent], None]] = {
            EventType.ITEM_ADDED: self._on_item_added,
            EventType.ITEM_DONE: self._on_item_done,
            EventType.ITEM_RETRIEVED: self._on_item_done,
            EventType.OUTPUT_ITEM_DONE: self._on_output_item_done,
            EventType.TRANSCRIPT_DELTA: self._on_transcript_delta,
            EventType.TRANSCRIPT_DONE: self._on_transcript_done,
            EventType.TEXT_DELTA: self._on_text_delta,
            EventType.TEXT_DONE: self._on_text_done,
            EventType.AUDIO_DELTA: self._on_audio_delta,
            EventType.AUDIO_DONE: self._on_audio_done,
            EventType.INPUT_TRANSCRIPT_DELTA: self._on_input_transcript_delta,
            EventType.INPUT_TRANSCRIPT: self._on_input_transcript,
            EventType.ITEM_TRUNCATED: self._on_truncated,
            EventType.ITEM_DELETED: self._on_deleted,
            EventType.RESPONSE_STARTED: self._on_response_started,
            EventType.RESPONSE_DONE: self._on_response_done,
            EventType.SPEECH_STARTED: self._on_speech_started,
            EventType.SPEECH_STOPPED: self._on_speech_stopped,
            EventType.INPUT_COMMITTED: self._on_committed,
            EventType.FUNCTION_CALL: self._on_function_call,
        }

    # ----------------------------------------------------------------- views
    @property
    def output_format(self) -> AudioFormat:
        """The format of the AUDIO_DELTA payloads folded in (sets how bytes become ms)."""
        return self._output_format

    @output_format.setter
    def output_format(self, fmt: AudioFormat) -> None:
        if not isinstance(fmt, AudioFormat):
            raise TypeError("output_format must be an AudioFormat")
        self._output_format = fmt
        self._bytes_per_ms = fmt.bytes_per_second / 1000.0
        for rec in self._recs.values():
            rec.view = None
        self._items_view = None

    @property
    def items(self) -> tuple[ConversationItem, ...]:
        """The items in conversation order (read-only views)."""
        if self._items_view is None:
            self._items_view = tuple(self._view(rec) for rec in self._ordered())
        return self._items_view

    def get(self, item_id: str) -> ConversationItem | None:
        rec = self._recs.get(item_id)
        return self._view(rec) if rec is not None else None

    def __len__(self) -> int:
        return len(self._recs)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._recs

    @property
    def speaking(self) -> str | None:
        """``"user"`` (VAD speech), ``"assistant"`` (audio being generated) or ``None``."""
        return self._speaking

    @property
    def current_response(self) -> ResponseInfo | None:
        return self._current_response

    @property
    def turns(self) -> tuple[Turn, ...]:
        return tuple(self._turn_view(t) for t in self._turns)

    @property
    def current_turn(self) -> Turn | None:
        return self._turn_view(self._turns[-1]) if self._turns else None

    def clear(self) -> None:
        """Forget every item and turn (counters are kept)."""
        self._recs.clear()
        self._gone.clear()
        self._orphans.clear()
        self._seen_events.clear()
        self._pending_input_transcripts.clear()
        self._turns.clear()
        self._speaking = None
        self._current_response = None
        self._changed(structure=True)

    # ----------------------------------------------------------------- apply
    def apply(self, event: ProviderEvent) -> None:
        """Fold one event unless it is a duplicate (:meth:`is_duplicate`). Events of other
        types, and malformed payloads, are ignored."""
        if not self.is_duplicate(event):
            self.fold(event)

    def is_duplicate(self, event: ProviderEvent) -> bool:
        """Whether this server event was seen already (same type and wire ``event_id``:
        one wire message may yield several events); remembers it either way. Folding a
        duplicated frame again would double deltas, turns or audio."""
        raw = event.raw
        event_id = raw.get("event_id") if raw is not None else None
        if isinstance(event_id, str) and self._seen_events.seen(f"{event.type.value}:{event_id}"):
            self.duplicate_events += 1
            return True
        return False

    def fold(self, event: ProviderEvent) -> None:
        """Fold one event without the duplicate check (for a caller that made it)."""
        handler = self._dispatch.get(event.type)
        if handler is None:
            return
        try:
            handler(event)
        except (TypeError, ValueError, KeyError, AttributeError):
            # a malformed payload must not kill the pipeline; the provider reported it already
            log.warning("ignored malformed %s event for item %s", event.type.name, event.item_id)

    __call__ = apply  # usable directly as a bus handler

    # --------------------------------------------------------- turns / speech
    def _new_turn(self, trigger: str, status: str) -> _TurnRec:
        current = self._turns[-1] if self._turns else None
        if current is not None and current.response_id is None and current.status in ("listening", "waiting"):
            current.status = "superseded"
            current.view = None
        turn = _TurnRec(self._turn_index, trigger, status)
        self._turn_index += 1
        self._turns.append(turn)
        return turn

    def _turn_for_response(self, response_id: str | None) -> _TurnRec | None:
        for turn in reversed(self._turns):
            if turn.response_id == response_id:
                return turn
        return None

    def _on_speech_started(self, event: ProviderEvent) -> None:
        last = self._turns[-1] if self._turns else None
        if (last is not None and last.trigger == "speech" and last.speech_started_at is None
                and event.item_id and last.user_item_id == event.item_id):
            turn = last  # the stop of this very speech raced ahead of its start (reordered events)
        else:
            self._speaking = "user"
            turn = self._new_turn("speech", "listening")
        turn.speech_started_at = self._clock()
        turn.user_item_id = event.item_id
        if isinstance(event.data, Mapping) and event.data.get("audio_start_ms") is not None:
            turn.audio_start_ms = int(event.data["audio_start_ms"])
        turn.view = None
        self._spoken_ms(turn)

    def _on_speech_stopped(self, event: ProviderEvent) -> None:
        if self._speaking == "user":
            self._speaking = None
        turn = self._turns[-1] if self._turns else None
        if turn is None or turn.speech_stopped_at is not None or turn.trigger != "speech":
            turn = self._new_turn("speech", "waiting")
        turn.speech_stopped_at = self._clock()
        turn.status = "waiting" if turn.status == "listening" else turn.status
        turn.user_item_id = turn.user_item_id or event.item_id
        if isinstance(event.data, Mapping) and event.data.get("audio_end_ms") is not None:
            turn.audio_end_ms = int(event.data["audio_end_ms"])
        turn.view = None
        self._spoken_ms(turn)

    def _on_committed(self, event: ProviderEvent) -> None:
        turn = self._turns[-1] if self._turns else None
        if turn is None or turn.response_id is not None or (
            turn.user_item_id is not None and event.item_id and turn.user_item_id != event.item_id
        ):
            turn = self._new_turn("commit", "waiting")
        turn.committed_at = self._clock()
        turn.user_item_id = event.item_id or turn.user_item_id
        if turn.status == "listening":
            turn.status = "waiting"
        turn.view = None
        self._spoken_ms(turn)

    def _text_turn(self, item_id: str) -> None:
        turn = self._turns[-1] if self._turns else None
        if turn is not None and turn.user_item_id == item_id:
            return
        if turn is None or turn.response_id is not None or turn.user_item_id is not None:
            turn = self._new_turn("text", "waiting")
        turn.user_item_id = item_id
        turn.committed_at = self._clock()
        turn.view = None

    def _spoken_ms(self, turn: _TurnRec) -> None:
        if turn.audio_start_ms is None or turn.audio_end_ms is None or not turn.user_item_id:
            return
        rec = self._recs.get(turn.user_item_id)
        if rec is not None:
            rec.spoken_ms = float(max(0, turn.audio_end_ms - turn.audio_start_ms))
            self._touch(rec)

    def _on_response_started(self, event: ProviderEvent) -> None:
        info = event.data if isinstance(event.data, ResponseInfo) else ResponseInfo(response_id=event.response_id)
        self._current_response = info
        turn = self._turns[-1] if self._turns else None
        if turn is None or turn.response_id is not None or turn.status not in ("listening", "waiting"):
            turn = self._new_turn("response", "responding")
        turn.response_id = info.response_id or event.response_id
        turn.response_started_at = self._clock()
        turn.status = "responding"
        turn.view = None

    def _first_output(self, event: ProviderEvent, field_name: str) -> None:
        turn = self._turns[-1] if self._turns else None
        if turn is not None and turn.response_id is not None and event.response_id not in (None, turn.response_id):
            turn = self._turn_for_response(event.response_id)
        if turn is None or turn.response_id is None or getattr(turn, field_name) is not None:
            return
        setattr(turn, field_name, self._clock())
        if event.item_id and event.item_id not in turn.assistant_item_ids:
            turn.assistant_item_ids += (event.item_id,)
        turn.view = None

    def _on_response_done(self, event: ProviderEvent) -> None:
        info = event.data if isinstance(event.data, ResponseInfo) else ResponseInfo(
            response_id=event.response_id, status="completed")
        response_id = info.response_id or event.response_id
        self.last_response = info
        if self._current_response is None or self._current_response.response_id in (None, response_id):
            self._current_response = None
        if self._speaking == "assistant":
            self._speaking = None
        turn = self._turn_for_response(response_id)
        if turn is not None:
            turn.done_at = self._clock()
            turn.status = info.status
            turn.reason = info.reason
            ids = tuple(i for i in info.output_item_ids if i not in turn.assistant_item_ids)
            turn.assistant_item_ids += ids
            turn.view = None

    # ------------------------------------------------------------------ views
    def _view(self, rec: _Rec) -> ConversationItem:
        if rec.view is None:
            if rec.spoken_ms is not None:
                audio_ms = rec.spoken_ms
            else:
                audio_ms = rec.audio_bytes / self._bytes_per_ms
            rec.view = ConversationItem(
                id=rec.id, type=rec.type, role=rec.role,
                text="".join(rec.text) if rec.text is not None else None,
                transcript="".join(rec.transcript) if rec.transcript is not None else None,
                status=rec.status, audio_ms=audio_ms, truncated_at_ms=rec.truncated_at_ms,
                name=rec.name, call_id=rec.call_id, arguments=rec.arguments, output=rec.output,
                has_audio=rec.has_audio,
                previous_item_id=rec.prev if isinstance(rec.prev, str) else None,
                response_id=rec.response_id,
            )
        return rec.view

    def _turn_view(self, turn: _TurnRec) -> Turn:
        if turn.view is None:
            turn.view = Turn(**{name: getattr(turn, name) for name in _TURN_FIELDS})
        return turn.view

    # --------------------------------------------------------------- snapshot
    def snapshot(self, *, include_ids: bool = True) -> ConversationSnapshot:
        """Wire items (``conversation.item.create`` shape) replaying the conversation.

        User audio -> a user message with ``input_text`` = its transcription; assistant
        audio -> an assistant message with ``output_text`` = what was heard; text, system
        messages, function calls and outputs as they are. Roles are preserved.
        """
        wire, ids, skipped = replay_items(self.items, include_ids=include_ids)
        return ConversationSnapshot(items=wire, item_ids=ids, skipped_ids=skipped,
                                    dropped_items=self.dropped_items, taken_at=self._clock())

    def __repr__(self) -> str:
        return f"<ConversationState items={len(self._recs)} turns={len(self._turns)} speaking={self._speaking}>"
