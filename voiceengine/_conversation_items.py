"""Folding item and content events into :class:`~voiceengine.state.ConversationState` (private).

Item lifecycle events (added, done, retrieved, truncated, deleted, function calls) and
content deltas (text, transcript, audio, input transcription) update the per-item records;
where an item goes in the order is :mod:`voiceengine._conversation_order`'s business.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Mapping

from ._bounded import BoundedDict
from ._conversation_order import _ABSENT, _START, _ItemOrder, _Rec
from .providers.types import FunctionCall, ProviderEvent

if TYPE_CHECKING:
    from .state import _TurnRec

_TEXT_PARTS = frozenset(("input_text", "text", "output_text"))
_AUDIO_PARTS = frozenset(("input_audio", "audio", "output_audio"))
_FINAL_STATUS = frozenset(("completed", "incomplete", "cancelled", "failed"))


class _ItemEvents(_ItemOrder):
    """The item-event handlers of :class:`~voiceengine.state.ConversationState` (a mixin).

    They also feed the state's turn tracking (text turns, spoken time, first output),
    which ``ConversationState`` provides along with the attributes declared below.
    """

    _pending_input_transcripts: collections.OrderedDict[str, str]
    _orphans: BoundedDict[str, _Rec]
    _turns: collections.deque[_TurnRec]
    _speaking: str | None

    if TYPE_CHECKING:  # implemented by ConversationState
        def _text_turn(self, item_id: str) -> None: ...
        def _spoken_ms(self, turn: _TurnRec) -> None: ...
        def _first_output(self, event: ProviderEvent, field_name: str) -> None: ...

    # ------------------------------------------------------------ item events
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
                rec.transcript = [pending]
                rec.transcript_final = True
        self._touch(rec)

    # ---------------------------------------------------------- text / audio
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
        if rec is not None and isinstance(event.data, str) and not rec.transcript_final:
            rec.has_audio = True
            if rec.transcript is None:
                rec.transcript = []
            rec.transcript.append(event.data)
            self._touch(rec)

    def _on_transcript_done(self, event: ProviderEvent) -> None:
        rec = self._rec_for(event)
        if rec is not None and isinstance(event.data, str):
            rec.transcript = [event.data]
            rec.transcript_final = True
            self._touch(rec)

    def _on_text_delta(self, event: ProviderEvent) -> None:
        rec = self._rec_for(event)
        if rec is not None and isinstance(event.data, str) and not rec.text_final:
            if rec.text is None:
                rec.text = []
            rec.text.append(event.data)
            self._touch(rec)
        self._first_output(event, "first_text_at")

    def _on_text_done(self, event: ProviderEvent) -> None:
        rec = self._rec_for(event)
        if rec is not None and isinstance(event.data, str):
            rec.text = [event.data]
            rec.text_final = True
            self._touch(rec)

    def _on_audio_delta(self, event: ProviderEvent) -> None:
        rec = self._rec_for(event)
        if rec is not None and event.data is not None:
            rec.audio_bytes += len(event.data)
            rec.has_audio = True
            rec.view = None
            self._items_view = None
        if self._speaking is None:
            self._speaking = "assistant"
        self._first_output(event, "first_audio_at")

    def _on_audio_done(self, event: ProviderEvent) -> None:
        if self._speaking == "assistant":
            self._speaking = None

    def _on_input_transcript_delta(self, event: ProviderEvent) -> None:
        rec = self._rec_for(event)
        if rec is not None and isinstance(event.data, str) and not rec.transcript_final:
            if rec.transcript is None:
                rec.transcript = []
            rec.transcript.append(event.data)
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
        rec.transcript = [event.data]
        rec.transcript_final = True
        self._touch(rec)

    def _on_truncated(self, event: ProviderEvent) -> None:
        rec = self._rec_for(event)
        data = event.data if isinstance(event.data, Mapping) else {}
        if rec is not None:
            rec.truncated_at_ms = int(data.get("audio_end_ms", 0))
            self._touch(rec)
        if self._speaking == "assistant":
            self._speaking = None

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
