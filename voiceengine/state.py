"""Conversation state: the conversation's items and turns, from normalized
:class:`~voiceengine.providers.types.ProviderEvent`\\ s.

Two ways to get the items. Attached to a provider's record
(:meth:`ConversationState.attach`, what :class:`~voiceengine.engine.VoiceEngine` does), the
state *reads* the items from ``provider.conversation`` (the provider folds its own events
into it) and folds only the turns, their timing and who is speaking. Standalone, it folds the
items itself, by the rules below.

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
from typing import Any, Callable, Iterable, Mapping

from ._bounded import BoundedDict, BoundedSet
from .providers.conversation import ConversationEntry, ConversationRecord, EntryKind
from .providers.types import AudioFormat, EventType, FunctionCall, ProviderEvent, ResponseInfo

__all__ = ["ConversationState", "ConversationItem", "Turn", "ConversationSnapshot"]

log = logging.getLogger("voiceengine.state")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItem:
    """A read-only view of one conversation item.

    ``text`` is the text content (``None`` if the item has none), ``transcript`` the audio
    transcript (assistant speech, or the user's transcription), ``audio_ms`` the audio
    received (assistant) or spoken (user, from VAD), ``truncated_at_ms`` where it was cut.
    ``previous_item_id`` and ``response_id`` are known only when the state folds the items
    itself (a provider's record does not keep them: ``None``).
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
_START: Any = object()  # previous_item_id explicitly None: at the beginning
_ABSENT: Any = object()  # no previous_item_id given: at the end
_TEXT_PARTS = frozenset(("input_text", "text", "output_text"))
_AUDIO_PARTS = frozenset(("input_audio", "audio", "output_audio"))
_FINAL_STATUS = frozenset(("completed", "incomplete", "cancelled", "failed"))


class _Rec:
    """Mutable per-item record; the frozen view is cached until the record changes."""

    __slots__ = (
        "id", "type", "role", "text", "transcript", "status", "audio_bytes", "spoken_ms",
        "truncated_at_ms", "name", "call_id", "arguments", "output", "has_audio", "prev",
        "seq", "rank", "root_seq", "response_id", "view", "transcript_final", "text_final",
    )

    def __init__(self, item_id: str, seq: int, prev: Any) -> None:
        self.id = item_id
        self.type = "message"
        self.role: str | None = None
        self.text: list[str] | None = None
        self.transcript: list[str] | None = None
        self.status: str | None = None
        self.audio_bytes = 0
        self.spoken_ms: float | None = None
        self.truncated_at_ms: int | None = None
        self.name: str | None = None
        self.call_id: str | None = None
        self.arguments: str | None = None
        self.output: str | None = None
        self.has_audio = False
        self.prev = prev
        self.seq = seq
        # later-inserted siblings come first (the server inserts right after the named item)
        self.rank: tuple[int, ...] = (-seq,)
        self.root_seq: tuple[int, ...] = (seq,)
        self.response_id: str | None = None
        self.view: ConversationItem | None = None
        # set by a *_done event: later deltas of that item (duplicated or reordered server
        # events) must not grow the final text again
        self.transcript_final = False
        self.text_final = False

    def add_transcript(self, piece: str) -> bool:
        """A transcript delta; ignored (False) once the final transcript is in."""
        if self.transcript_final:
            return False
        if self.transcript is None:
            self.transcript = []
        self.transcript.append(piece)
        return True

    def finish_transcript(self, transcript: str) -> None:
        self.transcript = [transcript]
        self.transcript_final = True

    def add_text(self, piece: str) -> bool:
        """A text delta; ignored (False) once the final text is in."""
        if self.text_final:
            return False
        if self.text is None:
            self.text = []
        self.text.append(piece)
        return True

    def finish_text(self, text: str) -> None:
        self.text = [text]
        self.text_final = True

    def adopt(self, orphan: "_Rec") -> None:
        """Take over the content an orphan record gathered before this item was added."""
        if self.transcript is None and orphan.transcript is not None:
            self.transcript, self.transcript_final = orphan.transcript, orphan.transcript_final
        if self.text is None and orphan.text is not None:
            self.text, self.text_final = orphan.text, orphan.text_final
        self.audio_bytes += orphan.audio_bytes
        if self.truncated_at_ms is None:
            self.truncated_at_ms = orphan.truncated_at_ms
        self.has_audio = self.has_audio or orphan.has_audio
        self.response_id = self.response_id or orphan.response_id



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



class ConversationState:
    """Folds normalized events into conversation items and turns (see the module docstring).

    One class, sections in this order: views, apply, turns and speech, item order (where an
    item goes: ``previous_item_id`` links), item events (content, truncation, deletion),
    replay.

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
        self._dropped_items = 0
        # reading a provider's record (see attach()): items come from it, not from _recs
        self._record: ConversationRecord | None = None
        self._record_entries: tuple[ConversationEntry, ...] | None = None
        self._record_items: tuple[ConversationItem, ...] | None = None
        self._record_views: dict[str, tuple[ConversationEntry, float | None, ConversationItem]] = {}
        self._spoken: BoundedDict[str, float] = BoundedDict(_MAX_GONE)  # user items' VAD duration
        self._user_items: BoundedSet[str] = BoundedSet(_MAX_GONE)  # user items seen (one text turn each)
        self._turn_dispatch: dict[EventType, Callable[[ProviderEvent], None]] = {
            EventType.ITEM_ADDED: self._turn_item_added,
            EventType.TEXT_DELTA: self._turn_text_delta,
            EventType.AUDIO_DELTA: self._turn_audio_delta,
            EventType.AUDIO_DONE: self._on_audio_done,
            EventType.ITEM_TRUNCATED: self._turn_truncated,
            EventType.RESPONSE_STARTED: self._on_response_started,
            EventType.RESPONSE_DONE: self._on_response_done,
            EventType.SPEECH_STARTED: self._on_speech_started,
            EventType.SPEECH_STOPPED: self._on_speech_stopped,
            EventType.INPUT_COMMITTED: self._on_committed,
        }
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
    def record(self) -> ConversationRecord | None:
        """The provider's record the items are read from (:meth:`attach`), or ``None``."""
        return self._record

    def attach(self, record: ConversationRecord | None) -> None:
        """Read the items from ``record`` (a provider's
        :class:`~voiceengine.providers.conversation.ConversationRecord`, which that provider
        folds its own events into) instead of folding item events here: one conversation,
        one owner. Turns, timing and who is speaking are still folded here. ``None`` goes
        back to folding the items in this state (standalone use)."""
        if record is not None and not isinstance(record, ConversationRecord):
            raise TypeError("attach() takes a ConversationRecord or None")
        self._record = record
        self._record_entries = self._record_items = None
        self._record_views = {}

    @property
    def dropped_items(self) -> int:
        """Items forgotten because the conversation outgrew its bound."""
        return self._record.dropped if self._record is not None else self._dropped_items

    @property
    def items(self) -> tuple[ConversationItem, ...]:
        """The items in conversation order (read-only views)."""
        if self._record is not None:
            return self._recorded_items(self._record)
        if self._items_view is None:
            self._items_view = tuple(self._view(rec) for rec in self._ordered())
        return self._items_view

    def get(self, item_id: str) -> ConversationItem | None:
        if self._record is not None:
            self._recorded_items(self._record)
            cached = self._record_views.get(item_id)
            return cached[2] if cached is not None else None
        rec = self._recs.get(item_id)
        return self._view(rec) if rec is not None else None

    def __len__(self) -> int:
        return len(self._record) if self._record is not None else len(self._recs)

    def __contains__(self, item_id: object) -> bool:
        return item_id in (self._record if self._record is not None else self._recs)

    def _recorded_items(self, record: ConversationRecord) -> tuple[ConversationItem, ...]:
        entries = record.entries
        if entries is self._record_entries and self._record_items is not None:
            return self._record_items
        views: dict[str, tuple[ConversationEntry, float | None, ConversationItem]] = {}
        for entry in entries:
            spoken = self._spoken.get(entry.id)
            cached = self._record_views.get(entry.id)
            if cached is not None and cached[0] is entry and cached[1] == spoken:
                views[entry.id] = cached
            else:
                views[entry.id] = (entry, spoken, _entry_view(entry, spoken))
        self._record_views = views
        self._record_entries = entries
        self._record_items = tuple(view for _, _, view in views.values())
        return self._record_items

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
        self._spoken.clear()
        self._user_items.clear()
        self._record_entries = self._record_items = None
        self._record_views = {}
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
        dispatch = self._turn_dispatch if self._record is not None else self._dispatch
        handler = dispatch.get(event.type)
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
        if self._record is not None:  # the record knows output audio only: keep the VAD figure here
            self._spoken.put(turn.user_item_id, float(max(0, turn.audio_end_ms - turn.audio_start_ms)))
            self._record_items = None
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
        wire, ids, skipped = _replay_items(self.items, include_ids=include_ids)
        return ConversationSnapshot(items=wire, item_ids=ids, skipped_ids=skipped,
                                    dropped_items=self.dropped_items, taken_at=self._clock())

    # ------------------------------------------------- turns, reading a record
    def _turn_item_added(self, event: ProviderEvent) -> None:
        """ITEM_ADDED's part in the turns (the record holds the item itself)."""
        item = event.data
        if not isinstance(item, Mapping):
            return
        item_id = item.get("id") or event.item_id
        if not isinstance(item_id, str) or not item_id or item.get("role") != "user" \
                or item.get("type", "message") != "message":
            return
        content = item.get("content")
        audio = isinstance(content, (list, tuple)) and any(
            isinstance(part, Mapping) and part.get("type") in _AUDIO_PARTS for part in content)
        if not audio:
            if not self._user_items.seen(item_id):
                self._text_turn(item_id)
        elif self._turns and self._turns[-1].user_item_id == item_id:
            self._spoken_ms(self._turns[-1])  # VAD timing arrived before the item

    def _turn_text_delta(self, event: ProviderEvent) -> None:
        self._first_output(event, "first_text_at")

    def _turn_audio_delta(self, event: ProviderEvent) -> None:
        if self._speaking is None:
            self._speaking = "assistant"
        turn = self._turns[-1] if self._turns else None
        if turn is not None and turn.first_audio_at is not None and turn.response_id == event.response_id:
            return  # a later delta of the turn's reply (once per 20 ms): nothing to record
        self._first_output(event, "first_audio_at")

    def _turn_truncated(self, event: ProviderEvent) -> None:
        if self._speaking == "assistant":
            self._speaking = None

    def __repr__(self) -> str:
        return f"<ConversationState items={len(self._recs)} turns={len(self._turns)} speaking={self._speaking}>"

    # ---------------------------------------------------------------- item order
    def _insert(self, item_id: str, prev: Any) -> _Rec:
        if prev is not _START and prev is not _ABSENT and prev == item_id:
            prev = _ABSENT
        rec = _Rec(item_id, self._seq, prev)
        self._seq += 1
        orphan = self._orphans.pop(item_id, None)
        if orphan is not None:  # content deltas that raced ahead of the item
            rec.adopt(orphan)
        self._recs[item_id] = rec
        self._changed(structure=True)
        while len(self._recs) > self.max_items:
            first = self._ordered()[0]
            self._delete(first.id)
            self._dropped_items += 1
        return rec

    def _delete(self, item_id: str) -> bool:
        order = self._ordered()
        rec = self._recs.get(item_id)
        if rec is None:
            return False
        # followers take the deleted item's place, so the visible order of the rest is kept
        for other in order:
            if other.prev == item_id:
                other.prev = rec.prev
                other.rank = rec.rank + other.rank
                other.root_seq = rec.root_seq + other.root_seq
                other.view = None
        del self._recs[item_id]
        self._gone.add(item_id)
        self._changed(structure=True)
        return True

    def _ordered(self) -> tuple[_Rec, ...]:
        if self._order is not None:
            return self._order
        recs = self._recs
        children: dict[str, list[_Rec]] = {}
        roots: list[tuple[tuple[Any, ...], _Rec]] = []
        for rec in recs.values():
            prev = rec.prev
            if prev is _START:
                roots.append(((0, rec.rank), rec))
            elif prev is not _ABSENT and prev in recs:
                children.setdefault(prev, []).append(rec)
            else:
                roots.append(((1, rec.root_seq, rec.rank), rec))
        roots.sort(key=lambda pair: pair[0])
        for siblings in children.values():
            siblings.sort(key=lambda r: r.rank)
        order: list[_Rec] = []
        visited: set[str] = set()

        def walk(start: _Rec) -> None:
            stack = [start]
            while stack:  # iterative: a long conversation is one deep chain
                rec = stack.pop()
                if rec.id in visited:
                    continue
                visited.add(rec.id)
                order.append(rec)
                stack.extend(reversed(children.get(rec.id, ())))

        for _, rec in roots:
            walk(rec)
        if len(order) < len(recs):  # a previous_item_id cycle: break it at the oldest item
            for rec in sorted(recs.values(), key=lambda r: r.seq):
                if rec.id not in visited:
                    walk(rec)
        self._order = tuple(order)
        return self._order

    def _changed(self, *, structure: bool = False) -> None:
        if structure:
            self._order = None
        self._items_view = None

    def _touch(self, rec: _Rec) -> None:
        rec.view = None
        self._items_view = None

    # ---------------------------------------------------------------- item events
    def _on_item_added(self, event: ProviderEvent) -> None:
        item = event.data
        if not isinstance(item, Mapping):
            return
        item_id = item.get("id") or event.item_id
        if not item_id:
            return
        rec = self._recs.get(item_id)
        # a known id is a duplicated event, a reordered one, or an item replayed into a
        # restored session: update it in place, never a second item, never a new turn
        new = rec is None
        if rec is None:
            rec = self._insert(item_id, self._declared_prev(item, event))
            self._gone.pop(item_id, None)
        self._fill(rec, item, event)
        if rec.role == "user" and rec.type == "message":
            if not rec.has_audio:
                if new:
                    self._text_turn(rec.id)
            elif self._turns and self._turns[-1].user_item_id == rec.id:
                self._spoken_ms(self._turns[-1])  # VAD timing arrived before the item

    def _on_item_done(self, event: ProviderEvent) -> None:
        item = event.data
        if not isinstance(item, Mapping):
            return
        item_id = item.get("id") or event.item_id
        if not item_id or item_id in self._gone:  # never resurrect a deleted item
            return
        rec = self._recs.get(item_id)
        if rec is None:
            rec = self._insert(item_id, self._declared_prev(item, event))
        self._fill(rec, item, event)

    def _on_output_item_done(self, event: ProviderEvent) -> None:
        # out-of-band responses' items are not in the conversation: only update known ones
        item = event.data
        if isinstance(item, Mapping):
            rec = self._recs.get(item.get("id") or event.item_id or "")
            if rec is not None:
                self._fill(rec, item, event)

    @staticmethod
    def _declared_prev(item: Mapping[str, Any], event: ProviderEvent) -> Any:
        for source in (item, event.raw):
            if source is not None and "previous_item_id" in source:
                prev = source["previous_item_id"]
                return _START if prev is None else str(prev)
        return _ABSENT

    def _fill(self, rec: _Rec, item: Mapping[str, Any], event: ProviderEvent) -> None:
        rec.type = str(item.get("type") or rec.type)
        status = item.get("status")
        stale = status == "in_progress" and rec.status in _FINAL_STATUS
        if status is not None and not stale:
            rec.status = str(status)
        # a late/duplicated "added" must not reopen a finished item nor roll back its arguments
        for name in ("role", "name", "call_id") if stale else ("role", "name", "call_id", "arguments", "output"):
            value = item.get(name)
            if value is not None:
                setattr(rec, name, value if isinstance(value, str) else str(value))
        rec.response_id = rec.response_id or event.response_id
        content = item.get("content")
        if isinstance(content, (list, tuple)):
            texts: list[str] = []
            transcripts: list[str] = []
            audio = False
            for part in content:
                if not isinstance(part, Mapping):
                    continue
                kind = part.get("type")
                if kind in _TEXT_PARTS and part.get("text") is not None:
                    texts.append(str(part["text"]))
                elif kind in _AUDIO_PARTS:
                    audio = True
                    if part.get("transcript") is not None:
                        transcripts.append(str(part["transcript"]))
            if rec.has_audio and not audio and texts:
                # our own snapshot replayed into a restored session: audio became text (the
                # transcript, cut where heard). Keep the audio item as it was (transcript,
                # audio_ms, truncation): taking the text would double it on the next replay.
                texts = []
            rec.has_audio = rec.has_audio or audio
            final = status in _FINAL_STATUS
            # an in-progress item carries empty content: never wipe accumulated deltas
            if texts and ("".join(texts) or rec.text is None):
                rec.text = ["".join(texts)]
                rec.text_final = rec.text_final or final
            if transcripts and ("".join(transcripts) or rec.transcript is None):
                rec.transcript = ["".join(transcripts)]
                rec.transcript_final = rec.transcript_final or final
        if rec.role == "user" and not rec.transcript_final:
            pending = self._pending_input_transcripts.pop(rec.id, None)
            if pending is not None:
                rec.finish_transcript(pending)
        self._touch(rec)

    def _rec_for(self, event: ProviderEvent) -> _Rec | None:
        item_id = event.item_id
        if not item_id:
            return None
        rec = self._recs.get(item_id)
        if rec is None and item_id not in self._gone:
            # a delta ahead of its item (reordered events): park it on an orphan record the
            # item adopts when it is added (out-of-band items never are: bounded, evicted)
            rec = self._orphans.get(item_id)
            if rec is None:
                rec = _Rec(item_id, -1, _ABSENT)
                self._orphans.put(item_id, rec)
        return rec

    def _on_transcript_delta(self, event: ProviderEvent) -> None:
        rec = self._rec_for(event)
        if rec is not None and isinstance(event.data, str) and rec.add_transcript(event.data):
            rec.has_audio = True
            self._touch(rec)

    def _on_transcript_done(self, event: ProviderEvent) -> None:
        rec = self._rec_for(event)
        if rec is not None and isinstance(event.data, str):
            rec.finish_transcript(event.data)
            self._touch(rec)

    def _on_text_delta(self, event: ProviderEvent) -> None:
        rec = self._rec_for(event)
        if rec is not None and isinstance(event.data, str) and rec.add_text(event.data):
            self._touch(rec)
        self._turn_text_delta(event)

    def _on_text_done(self, event: ProviderEvent) -> None:
        rec = self._rec_for(event)
        if rec is not None and isinstance(event.data, str):
            rec.finish_text(event.data)
            self._touch(rec)

    def _on_audio_delta(self, event: ProviderEvent) -> None:
        rec = self._rec_for(event)
        if rec is not None and event.data is not None:
            rec.audio_bytes += len(event.data)
            rec.has_audio = True
            rec.view = None
            self._items_view = None
        self._turn_audio_delta(event)

    def _on_audio_done(self, event: ProviderEvent) -> None:
        if self._speaking == "assistant":
            self._speaking = None

    def _on_input_transcript_delta(self, event: ProviderEvent) -> None:
        rec = self._rec_for(event)
        if rec is not None and isinstance(event.data, str) and rec.add_transcript(event.data):
            self._touch(rec)

    def _on_input_transcript(self, event: ProviderEvent) -> None:
        if not event.item_id or not isinstance(event.data, str):
            return
        rec = self._recs.get(event.item_id)
        if rec is None:
            # transcription raced ahead of the item: keep it (bounded) until the item arrives
            self._pending_input_transcripts[event.item_id] = event.data
            while len(self._pending_input_transcripts) > 64:
                self._pending_input_transcripts.popitem(last=False)
            return
        rec.finish_transcript(event.data)
        self._touch(rec)

    def _on_truncated(self, event: ProviderEvent) -> None:
        rec = self._rec_for(event)
        data = event.data if isinstance(event.data, Mapping) else {}
        if rec is not None:
            rec.truncated_at_ms = int(data.get("audio_end_ms", 0))
            self._touch(rec)
        self._turn_truncated(event)

    def _on_deleted(self, event: ProviderEvent) -> None:
        if event.item_id:
            self._delete(event.item_id)

    def _on_function_call(self, event: ProviderEvent) -> None:
        call = event.data
        if not isinstance(call, FunctionCall):
            return
        item_id = call.item_id or event.item_id
        if not item_id or item_id in self._gone:
            return
        rec = self._recs.get(item_id)
        if rec is None:
            rec = self._insert(item_id, _ABSENT)
        rec.type = "function_call"
        rec.name, rec.call_id, rec.arguments = call.name, call.call_id, call.arguments
        rec.status = "completed"
        rec.response_id = rec.response_id or call.response_id or event.response_id
        self._touch(rec)



def _entry_view(entry: ConversationEntry, spoken_ms: float | None) -> ConversationItem:
    """The view of a record entry (``spoken_ms``: a user item's duration from VAD)."""
    message = entry.kind is EntryKind.MESSAGE
    return ConversationItem(
        id=entry.id, type=entry.kind.value, role=entry.role if message else None, text=entry.text,
        transcript=entry.transcript, status=entry.status,
        audio_ms=spoken_ms if spoken_ms is not None else entry.audio_ms, truncated_at_ms=entry.heard_ms,
        name=entry.name, call_id=entry.call_id, arguments=entry.arguments, output=entry.output,
        has_audio=entry.has_audio,
    )


def _replay_items(
    items: Iterable[ConversationItem], *, include_ids: bool,
) -> tuple[tuple[dict[str, Any], ...], tuple[str, ...], tuple[str, ...]]:
    """The wire items, their ids and the ids of the items skipped (nothing replayable)."""
    wire: list[dict[str, Any]] = []
    ids: list[str] = []
    skipped: list[str] = []
    for item in items:
        entry = _wire_item(item)
        if entry is None:
            skipped.append(item.id)
            continue
        if include_ids:
            entry = {"id": item.id, **entry}
        wire.append(entry)
        ids.append(item.id)
    return tuple(wire), tuple(ids), tuple(skipped)



def _wire_item(item: ConversationItem) -> dict[str, Any] | None:
    if item.type == "function_call":
        if item.name is None or item.status == "in_progress" and not item.arguments:
            return None
        entry: dict[str, Any] = {"type": "function_call", "name": item.name, "arguments": item.arguments or ""}
        if item.call_id:
            entry["call_id"] = item.call_id
        return entry
    if item.type == "function_call_output":
        if not item.call_id:
            return None
        return {"type": "function_call_output", "call_id": item.call_id, "output": item.output or ""}
    if item.type != "message":
        return None
    if item.role == "assistant":
        text = item.heard_transcript if item.has_audio and item.transcript is not None else item.text
        if item.text and item.has_audio and not text:
            text = item.text
        if not text:
            return None
        return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    if item.role in ("user", "system"):
        pieces = [p for p in (item.text, item.transcript) if p]
        if item.role == "system":
            pieces = [item.text] if item.text else []
        if not pieces:
            return None
        return {"type": "message", "role": item.role,
                "content": [{"type": "input_text", "text": piece} for piece in pieces]}
    return None

