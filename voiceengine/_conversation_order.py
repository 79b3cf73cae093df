"""Item ordering for :class:`~voiceengine.state.ConversationState` (private).

An item is placed right after the item its ``previous_item_id`` names; ``None`` (explicitly
present) means "at the beginning"; an absent or unknown predecessor means "at the end". The
order is derived from these declared links and recomputed only when the structure changes,
so items may arrive in any order and still end up in the same place. See the
:mod:`voiceengine.state` module docstring for the full rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._bounded import BoundedDict, BoundedSet
    from .state import ConversationItem

_START: Any = object()  # previous_item_id explicitly None: at the beginning
_ABSENT: Any = object()  # no previous_item_id given: at the end


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


class _ItemOrder:
    """The ordering half of :class:`~voiceengine.state.ConversationState` (a mixin).

    The attributes below are set up by ``ConversationState.__init__``.
    """

    max_items: int
    dropped_items: int
    _recs: dict[str, _Rec]
    _order: tuple[_Rec, ...] | None
    _items_view: tuple[ConversationItem, ...] | None
    _gone: BoundedSet[str]
    _orphans: BoundedDict[str, _Rec]
    _seq: int

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
            self.dropped_items += 1
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
