"""The provider-neutral record of a conversation, kept by every provider.

A provider folds into its :class:`ConversationRecord` (``provider.conversation``) every
normalized event it emits and every item it sends itself, so it knows the conversation
without an engine: it replays it into a fresh session after a reconnect (when the
service cannot resume one), and ``switch_provider`` hands it to another service, which
encodes the entries its own way.

An entry is a message (user, assistant or system: typed text and/or a speech
transcript with its audio duration), a function call, or a function call output. Ids
are the service's item ids where it has them, else synthetic (``synthetic_id=True``):
services without item ids (Gemini Live) get one entry per user turn and per reply.

What is folded (and what is not):

* ITEM_ADDED / ITEM_DONE / OUTPUT_ITEM_DONE create or complete an entry (content parts
  in the OpenAI Realtime wire shape, the normalized shape of items); the item's
  ``previous_item_id`` places it after that entry when known.
* TEXT/TRANSCRIPT/INPUT_TRANSCRIPT deltas and dones fill the entry named by ``item_id``;
  with no ``item_id`` they fill the open user (input) or assistant (output) entry of a
  service without ids, opened on first use and closed by RESPONSE_DONE, GENERATION_DONE
  or SERVER_INTERRUPTED. A delta naming an item the record does not hold (an out-of-band
  response's output, which is not part of the conversation) is ignored.
* AUDIO_DELTA adds audio duration (``output_bytes_per_ms``); ITEM_TRUNCATED sets what was
  heard; ITEM_DELETED removes an entry; FUNCTION_CALL records a call;
  TOOL_CALL_CANCELLED removes the withdrawn calls.
* An item the record already holds with audio is not overwritten by the text-only copy
  a replay re-creates (the transcript cut where it was heard), so replaying twice never
  doubles it.

Bounded: beyond ``max_entries`` the oldest entries are forgotten (``dropped`` counts
them). No asyncio, no I/O.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, replace
from typing import Any, Iterable, Iterator, Mapping

from .._bounded import BoundedDict
from .types import EventType, FunctionCall, ProviderEvent, ToolCallCancelled

__all__ = ["EntryKind", "ConversationEntry", "ConversationRecord", "entries_from_items"]

_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
_AUDIO_PARTS = frozenset({"input_audio", "output_audio", "audio"})
_ROLES = frozenset({"user", "assistant", "system"})


class EntryKind(str, enum.Enum):
    MESSAGE = "message"
    FUNCTION_CALL = "function_call"
    FUNCTION_CALL_OUTPUT = "function_call_output"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationEntry:
    """One entry of the conversation (see the module docstring).

    ``text`` is typed text, ``transcript`` the transcript of its audio (``None``: none
    yet); ``audio_ms`` the audio received for it and ``heard_ms`` where it was cut
    (``None``: not cut). ``status`` is ``in_progress``, ``completed``, ``incomplete`` or
    ``cancelled``.
    """

    id: str
    kind: EntryKind
    role: str = "user"
    text: str | None = None
    transcript: str | None = None
    has_audio: bool = False
    audio_ms: float = 0.0
    heard_ms: int | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None
    status: str = "completed"
    synthetic_id: bool = False

    @property
    def heard_transcript(self) -> str | None:
        """The transcript cut in proportion to ``heard_ms / audio_ms`` at a word boundary
        (an estimate: services do not say which words were heard)."""
        transcript = self.transcript
        if transcript is None or self.heard_ms is None or self.audio_ms <= 0:
            return transcript
        fraction = max(0.0, min(1.0, self.heard_ms / self.audio_ms))
        cut = int(len(transcript) * fraction)
        if cut >= len(transcript):
            return transcript
        head = transcript[:cut]
        if not transcript[cut].isspace():  # never keep half a word
            space = head.rfind(" ")
            head = head[:space] if space >= 0 else ""
        return head.rstrip()

    @property
    def content_text(self) -> str | None:
        """What this entry said, as text for a replay: an assistant's heard transcript (or
        its text), a user's text and transcript; ``None`` when there is nothing."""
        if self.kind is not EntryKind.MESSAGE:
            return None
        if self.role == "assistant":
            heard = self.heard_transcript if self.has_audio and self.transcript is not None else None
            return heard or self.text or None
        if self.role == "system":
            return self.text or None
        pieces = [p for p in (self.text, self.transcript) if p]
        return " ".join(pieces) or None

    @property
    def replayable(self) -> bool:
        """Whether a replay into a fresh session can carry this entry."""
        if self.kind is EntryKind.FUNCTION_CALL:
            return bool(self.name) and self.call_id is not None and not (
                self.status == "in_progress" and not self.arguments)
        if self.kind is EntryKind.FUNCTION_CALL_OUTPUT:
            return self.call_id is not None
        return self.content_text is not None


class ConversationRecord:
    """The conversation as the provider knows it (see the module docstring).

    ``output_bytes_per_ms``: bytes of one millisecond of the provider's output audio
    (PCM16 24 kHz mono: 48), to turn AUDIO_DELTA sizes into ``audio_ms``.
    """

    __slots__ = ("max_entries", "output_bytes_per_ms", "dropped", "version", "_entries", "_view",
                 "_open_input", "_open_output", "_ids", "_audio_ms")

    def __init__(self, *, max_entries: int = 512, output_bytes_per_ms: float = 48.0) -> None:
        if type(max_entries) is not int or max_entries < 1:
            raise ValueError("max_entries must be an int >= 1")
        if not output_bytes_per_ms > 0:
            raise ValueError("output_bytes_per_ms must be > 0")
        self.max_entries = max_entries
        self.output_bytes_per_ms = float(output_bytes_per_ms)
        #: entries forgotten because the record was full
        self.dropped = 0
        #: bumped on every change (cheap change detection for readers)
        self.version = 0
        self._entries: BoundedDict[str, ConversationEntry] = BoundedDict(max_entries)
        self._view: tuple[ConversationEntry, ...] | None = None
        self._open_input: str | None = None
        self._open_output: str | None = None
        self._ids = itertools.count(1)
        # entry id -> its ``audio_ms`` with the audio deltas received since it was last
        # written: a delta adds to a float here instead of rebuilding the frozen entry (a
        # dataclass replace per 20 ms delta was most of the record's cost); folded into the
        # entries before anything reads or changes them (_settle_audio)
        self._audio_ms: dict[str, float] = {}

    # ---------------------------------------------------------------- reading
    @property
    def entries(self) -> tuple[ConversationEntry, ...]:
        """The entries in conversation order."""
        self._settle_audio()
        if self._view is None:
            self._view = tuple(self._entries.values())
        return self._view

    def replayable(self) -> tuple[ConversationEntry, ...]:
        """The entries a replay can carry, in order (see :attr:`ConversationEntry.replayable`)."""
        return tuple(e for e in self.entries if e.replayable)

    def get(self, entry_id: str) -> ConversationEntry | None:
        self._settle_audio()
        return self._entries.get(entry_id)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[ConversationEntry]:
        return iter(self.entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._entries

    def __repr__(self) -> str:
        return f"<ConversationRecord entries={len(self._entries)} dropped={self.dropped}>"

    # ---------------------------------------------------------------- writing
    def clear(self) -> None:
        self._audio_ms.clear()
        self._entries.clear()
        self._open_input = self._open_output = None
        self._changed()

    def add_message(self, role: str, text: str, *, entry_id: str | None = None) -> str:
        """Record a text message the provider sent; returns its id (synthetic when ``None``)."""
        if role not in _ROLES:
            raise ValueError(f"role must be user, assistant or system, got {role!r}")
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        entry_id, synthetic = self._id(entry_id)
        self._put(ConversationEntry(id=entry_id, kind=EntryKind.MESSAGE, role=role, text=text,
                                    synthetic_id=synthetic))
        return entry_id

    def add_function_output(self, call_id: str, output: str, *, entry_id: str | None = None) -> str:
        """Record a function result the provider sent; returns its id."""
        entry_id, synthetic = self._id(entry_id)
        self._put(ConversationEntry(id=entry_id, kind=EntryKind.FUNCTION_CALL_OUTPUT, role="user",
                                    call_id=call_id, output=output, synthetic_id=synthetic))
        return entry_id

    def add_item(self, item: Mapping[str, Any], *, previous_id: str | None = None) -> str | None:
        """Record an item in the OpenAI Realtime wire shape (``type``, ``role``,
        ``content`` parts, ``call_id``/``name``/``arguments``/``output``); returns its id,
        ``None`` for a type the record does not keep."""
        kind = item.get("type")
        if kind not in EntryKind._value2member_map_:
            return None
        raw_id = item.get("id")
        entry_id, synthetic = self._id(raw_id if isinstance(raw_id, str) and raw_id else None)
        current = self._entries.get(entry_id)
        entry = current or ConversationEntry(id=entry_id, kind=EntryKind(kind), synthetic_id=synthetic,
                                             status="in_progress")
        self._put(_fill(entry, item), previous_id=previous_id if current is None else None)
        return entry_id

    def _id(self, entry_id: str | None) -> tuple[str, bool]:
        if entry_id is not None:
            return entry_id, False
        return f"conv_{next(self._ids)}", True

    def _put(self, entry: ConversationEntry, *, previous_id: str | None = None) -> None:
        self._settle_audio()
        entries = self._entries
        evicted = entries.evicted
        if entry.id in entries or previous_id is None or previous_id not in entries \
                or next(reversed(entries)) == previous_id:
            entries.put(entry.id, entry)
        else:  # insert right after previous_id (bounded: a rebuild of at most max_entries)
            items = list(entries.items())
            at = next(i for i, (key, _) in enumerate(items) if key == previous_id) + 1
            items.insert(at, (entry.id, entry))
            entries.clear()
            for key, value in items:
                entries.put(key, value)
        self.dropped += entries.evicted - evicted
        self._changed()

    def _update(self, entry_id: str, **changes: Any) -> None:
        self._settle_audio()
        entry = self._entries.get(entry_id)
        if entry is not None:
            self._entries[entry_id] = replace(entry, **changes)
            self._changed()

    def _remove(self, entry_id: str) -> None:
        self._settle_audio()
        if self._entries.pop(entry_id, None) is not None:
            if self._open_input == entry_id:
                self._open_input = None
            if self._open_output == entry_id:
                self._open_output = None
            self._changed()

    def _changed(self) -> None:
        self._view = None
        self.version += 1

    def _settle_audio(self) -> None:
        """Fold the audio received since the entries were last written into them."""
        if not self._audio_ms:
            return
        entries = self._entries
        for entry_id, audio_ms in self._audio_ms.items():
            entry = entries.get(entry_id)
            if entry is not None:
                entries[entry_id] = replace(entry, has_audio=True, audio_ms=audio_ms)
        self._audio_ms.clear()
        self._view = None  # audio duration only: no version bump (readers poll text changes)

    # ---------------------------------------------------------------- events
    def apply(self, event: ProviderEvent) -> None:
        """Fold one normalized event (events that say nothing about the conversation are
        ignored). Never raises on odd payloads: they are skipped."""
        handler = _HANDLERS.get(event.type)
        if handler is not None:
            handler(self, event)

    def _target(self, event: ProviderEvent, *, output: bool) -> str | None:
        """The entry a delta belongs to: by item id, else the open entry of a service
        without ids (opened now)."""
        if event.item_id is not None:
            return event.item_id if event.item_id in self._entries else None
        open_id = self._open_output if output else self._open_input
        if open_id is not None and open_id in self._entries:
            return open_id
        entry_id, _ = self._id(None)
        self._put(ConversationEntry(id=entry_id, kind=EntryKind.MESSAGE, role="assistant" if output else "user",
                                    status="in_progress", synthetic_id=True))
        if output:
            self._open_output = entry_id
        else:
            self._open_input = entry_id
        return entry_id

    def _on_item(self, event: ProviderEvent) -> None:
        item = event.data
        if not isinstance(item, Mapping):
            return
        if event.item_id is not None and not isinstance(item.get("id"), str):
            item = {**item, "id": event.item_id}
        prev = item.get("previous_item_id")
        if prev is None and event.raw is not None:
            prev = event.raw.get("previous_item_id")
        self.add_item(item, previous_id=prev if isinstance(prev, str) else None)

    def _on_output_item_done(self, event: ProviderEvent) -> None:
        # Only completes items the conversation holds (out-of-band output is not in it).
        if event.item_id is not None and event.item_id in self._entries:
            self._on_item(event)

    def _on_text(self, event: ProviderEvent, field: str, *, output: bool, done: bool) -> None:
        if not isinstance(event.data, str):
            return
        entry_id = self._target(event, output=output)
        if entry_id is None:
            return
        entry = self._entries[entry_id]
        current = getattr(entry, field)
        value = event.data if done or current is None else current + event.data
        changes: dict[str, Any] = {field: value}
        if field == "transcript" and output:
            changes["has_audio"] = True
        if not output and done and entry.synthetic_id and self._open_input == entry_id:
            self._open_input = None  # a user turn of a service without ids ends with its transcript
            changes["status"] = "completed"
        self._update(entry_id, **changes)

    def _on_audio(self, event: ProviderEvent) -> None:
        data = event.data
        if data is None:
            return
        entry_id = event.item_id
        pending = self._audio_ms
        audio_ms = pending.get(entry_id) if entry_id is not None else None
        if entry_id is None or audio_ms is None:
            entry_id = self._target(event, output=True)
            if entry_id is None:
                return
            audio_ms = pending.get(entry_id)
            if audio_ms is None:
                audio_ms = self._entries[entry_id].audio_ms
        n = data.nbytes if isinstance(data, memoryview) else len(data)
        pending[entry_id] = audio_ms + n / self.output_bytes_per_ms

    def _on_truncated(self, event: ProviderEvent) -> None:
        data = event.data if isinstance(event.data, Mapping) else {}
        end = data.get("audio_end_ms")
        if event.item_id is not None and type(end) is int:
            self._update(event.item_id, heard_ms=end)

    def _on_deleted(self, event: ProviderEvent) -> None:
        if event.item_id is not None:
            self._remove(event.item_id)

    def _on_function_call(self, event: ProviderEvent) -> None:
        call = event.data
        if not isinstance(call, FunctionCall):
            return
        entry_id, synthetic = self._id(call.item_id or event.item_id)
        current = self._entries.get(entry_id)
        entry = current or ConversationEntry(id=entry_id, kind=EntryKind.FUNCTION_CALL, role="assistant",
                                             synthetic_id=synthetic)
        self._put(replace(entry, kind=EntryKind.FUNCTION_CALL, call_id=call.call_id, name=call.name,
                          arguments=call.arguments, status="completed"))

    def _on_calls_cancelled(self, event: ProviderEvent) -> None:
        data = event.data
        if not isinstance(data, ToolCallCancelled):
            return
        cancelled = set(data.call_ids)
        for entry in self.entries:
            if entry.kind is EntryKind.FUNCTION_CALL and entry.call_id in cancelled:
                self._remove(entry.id)

    def _on_reply_end(self, event: ProviderEvent) -> None:
        open_id, self._open_output = self._open_output, None
        if open_id is not None and open_id in self._entries:
            status = "completed"
            if event.type is EventType.SERVER_INTERRUPTED:
                status = "incomplete"
            self._update(open_id, status=status)


def _fill(entry: ConversationEntry, item: Mapping[str, Any]) -> ConversationEntry:
    """``entry`` updated from a wire item (members present and well-typed only)."""
    changes: dict[str, Any] = {}
    for name in ("role", "call_id", "name", "arguments", "output", "status"):
        value = item.get(name)
        if isinstance(value, str):
            changes[name] = value
    if changes.get("role") not in (None, *_ROLES):
        del changes["role"]
    if entry.status in ("completed", "incomplete") and changes.get("status") == "in_progress":
        del changes["status"]  # a late "added" never reopens a finished item
    content = item.get("content")
    if isinstance(content, (list, tuple)):
        texts: list[str] = []
        transcripts: list[str] = []
        audio = False
        for part in content:
            if not isinstance(part, Mapping):
                continue
            kind = part.get("type")
            if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind in _AUDIO_PARTS:
                audio = True
                if isinstance(part.get("transcript"), str):
                    transcripts.append(part["transcript"])
        if entry.has_audio and not audio and texts:
            texts = []  # our replay of an audio item came back as text: keep the audio entry
        if audio:
            changes["has_audio"] = True
        if texts and ("".join(texts) or entry.text is None):
            changes["text"] = "".join(texts)
        if transcripts and ("".join(transcripts) or entry.transcript is None):
            changes["transcript"] = "".join(transcripts)
    return replace(entry, **changes) if changes else entry


def entries_from_items(items: Iterable[Mapping[str, Any]]) -> list[ConversationEntry]:
    """Neutral entries for wire-shaped items (a replay source's, e.g. the engine's
    ``ConversationState.snapshot().items``), in order, ids kept; items of a type the
    record does not keep are left out. Raises ``TypeError`` for a non-mapping item."""
    items = list(items)
    record = ConversationRecord(max_entries=max(1, len(items)))
    for item in items:
        if not isinstance(item, Mapping):
            raise TypeError(f"a replay item must be a mapping, got {type(item).__name__}")
        record.add_item({**item, "status": "completed"} if "status" not in item else item)
    return list(record.entries)


_HANDLERS: dict[EventType, Any] = {
    EventType.ITEM_ADDED: ConversationRecord._on_item,
    EventType.ITEM_DONE: ConversationRecord._on_item,
    EventType.ITEM_RETRIEVED: ConversationRecord._on_output_item_done,
    EventType.OUTPUT_ITEM_DONE: ConversationRecord._on_output_item_done,
    EventType.TEXT_DELTA: lambda r, e: r._on_text(e, "text", output=True, done=False),
    EventType.TEXT_DONE: lambda r, e: r._on_text(e, "text", output=True, done=True),
    EventType.TRANSCRIPT_DELTA: lambda r, e: r._on_text(e, "transcript", output=True, done=False),
    EventType.TRANSCRIPT_DONE: lambda r, e: r._on_text(e, "transcript", output=True, done=True),
    EventType.INPUT_TRANSCRIPT_DELTA: lambda r, e: r._on_text(e, "transcript", output=False, done=False),
    EventType.INPUT_TRANSCRIPT: lambda r, e: r._on_text(e, "transcript", output=False, done=True),
    EventType.AUDIO_DELTA: ConversationRecord._on_audio,
    EventType.ITEM_TRUNCATED: ConversationRecord._on_truncated,
    EventType.ITEM_DELETED: ConversationRecord._on_deleted,
    EventType.FUNCTION_CALL: ConversationRecord._on_function_call,
    EventType.TOOL_CALL_CANCELLED: ConversationRecord._on_calls_cancelled,
    EventType.RESPONSE_DONE: ConversationRecord._on_reply_end,
    EventType.GENERATION_DONE: ConversationRecord._on_reply_end,
    EventType.SERVER_INTERRUPTED: ConversationRecord._on_reply_end,
}
