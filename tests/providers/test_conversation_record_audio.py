"""ConversationRecord: audio deltas add to an entry's audio_ms without rebuilding it per
delta; whatever reads or changes the record sees the audio received so far."""

from __future__ import annotations

from voiceengine.providers.conversation import ConversationRecord
from voiceengine.providers.types import EventType, ProviderEvent

BYTES_PER_MS = 48.0


def item(item_id: str, role: str = "assistant") -> ProviderEvent:
    data = {"id": item_id, "type": "message", "role": role, "content": [{"type": "output_audio"}]}
    return ProviderEvent(type=EventType.ITEM_ADDED, data=data, item_id=item_id)


def audio(item_id: str | None, n_bytes: int, *, view: bool = False) -> ProviderEvent:
    pcm = bytes(n_bytes)
    return ProviderEvent(type=EventType.AUDIO_DELTA, data=memoryview(pcm) if view else pcm, item_id=item_id)


def test_deltas_add_up_and_every_reader_sees_them() -> None:
    record = ConversationRecord(output_bytes_per_ms=BYTES_PER_MS)
    record.apply(item("a1"))
    version = record.version
    for n in (960, 960, 480):
        record.apply(audio("a1", n))
    entry = record.get("a1")
    assert entry is not None and entry.has_audio and entry.audio_ms == 50.0
    record.apply(audio("a1", 960, view=True))
    assert record.entries[0].audio_ms == 70.0
    record.apply(audio("a1", 960))
    assert [e.audio_ms for e in record] == [90.0]
    assert record.version == version  # audio alone is not a change readers are told of


def test_the_entries_view_changes_when_audio_arrives() -> None:
    record = ConversationRecord(output_bytes_per_ms=BYTES_PER_MS)
    record.apply(item("a1"))
    before = record.entries
    assert record.entries is before  # cached while nothing changes
    record.apply(audio("a1", 960))
    after = record.entries
    assert after is not before and after[0].audio_ms == 20.0 and before[0].audio_ms == 0.0


def test_a_change_in_between_keeps_the_audio_received_before_it() -> None:
    record = ConversationRecord(output_bytes_per_ms=BYTES_PER_MS)
    record.apply(item("a1"))
    record.apply(audio("a1", 960))
    record.apply(ProviderEvent(type=EventType.TRANSCRIPT_DELTA, data="Hel", item_id="a1"))
    record.apply(audio("a1", 960))
    record.apply(ProviderEvent(type=EventType.ITEM_TRUNCATED, data={"audio_end_ms": 30}, item_id="a1"))
    record.apply(audio("a1", 960))
    entry = record.get("a1")
    assert entry is not None
    assert (entry.transcript, entry.audio_ms, entry.heard_ms) == ("Hel", 60.0, 30)


def test_audio_of_a_deleted_or_unknown_item_is_not_kept() -> None:
    record = ConversationRecord(output_bytes_per_ms=BYTES_PER_MS)
    record.apply(item("a1"))
    record.apply(audio("a1", 960))
    record.apply(ProviderEvent(type=EventType.ITEM_DELETED, item_id="a1"))
    record.apply(audio("a1", 960))  # late audio of the deleted item
    record.apply(audio("nobody", 960))  # out-of-band output: not in the conversation
    assert len(record) == 0 and record.entries == ()
    record.apply(item("a1"))  # the same id again is a new entry: no audio carried over
    entry = record.get("a1")
    assert entry is not None and entry.audio_ms == 0.0


def test_an_evicted_entry_takes_its_audio_along() -> None:
    record = ConversationRecord(max_entries=2, output_bytes_per_ms=BYTES_PER_MS)
    record.apply(item("a1"))
    record.apply(audio("a1", 960))
    record.apply(item("a2"))
    record.apply(audio("a2", 480))
    record.apply(item("a3"))  # evicts a1
    record.apply(audio("a3", 960))
    assert [(e.id, e.audio_ms) for e in record] == [("a2", 10.0), ("a3", 20.0)]
    assert record.dropped == 1
    record.apply(item("a1"))  # back as a new entry (evicts a2)
    assert [(e.id, e.audio_ms) for e in record] == [("a3", 20.0), ("a1", 0.0)]


def test_clear_forgets_pending_audio() -> None:
    record = ConversationRecord(output_bytes_per_ms=BYTES_PER_MS)
    record.apply(item("a1"))
    record.apply(audio("a1", 960))
    record.clear()
    record.apply(item("a1"))
    entry = record.get("a1")
    assert entry is not None and entry.audio_ms == 0.0


def test_a_service_without_item_ids_gets_one_entry_per_reply() -> None:
    record = ConversationRecord(output_bytes_per_ms=BYTES_PER_MS)
    for _ in range(3):
        record.apply(audio(None, 960))
    record.apply(ProviderEvent(type=EventType.RESPONSE_DONE))
    record.apply(audio(None, 480))
    assert [(e.role, e.audio_ms, e.status, e.synthetic_id) for e in record] == [
        ("assistant", 60.0, "completed", True), ("assistant", 10.0, "in_progress", True)]
