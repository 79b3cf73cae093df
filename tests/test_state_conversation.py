"""ConversationState: ordering by previous_item_id, deltas, truncation, deletion, turns, snapshot."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from openai.types.realtime import ConversationItem as WireItem
from voiceengine.providers.types import EventType, FunctionCall, ProviderEvent, ResponseInfo
from voiceengine.state import ConversationItem, ConversationState, Turn

WIRE = TypeAdapter(WireItem)


def added(item_id: str, prev: object = "absent", role: str = "user", **extra: object) -> ProviderEvent:
    data: dict[str, object] = {"id": item_id, "type": "message", "role": role, "content": [], **extra}
    if prev != "absent":
        data["previous_item_id"] = prev
    return ProviderEvent(type=EventType.ITEM_ADDED, data=data, item_id=item_id)


def ids(state: ConversationState) -> list[str]:
    return [i.id for i in state.items]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_append_and_insert_after_previous() -> None:
    s = ConversationState()
    s.apply(added("a", None))
    s.apply(added("b", "a"))
    s.apply(added("c", "b"))
    s.apply(added("x", "a"))  # inserted right after a
    assert ids(s) == ["a", "x", "b", "c"]
    s.apply(added("first", None))  # null previous: at the beginning
    assert ids(s) == ["first", "a", "x", "b", "c"]
    s.apply(added("end"))  # no previous given: appended
    assert ids(s)[-1] == "end"


def test_unknown_previous_appends_then_moves_when_predecessor_arrives() -> None:
    s = ConversationState()
    s.apply(added("a", None))
    s.apply(added("c", "b"))  # b not seen yet
    assert ids(s) == ["a", "c"]
    s.apply(added("b", "a"))
    assert ids(s) == ["a", "b", "c"]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 25), seed=st.integers(0, 2**32 - 1))
def test_random_arrival_order_converges_to_the_chain(n: int, seed: int) -> None:
    chain = [f"i{k}" for k in range(n)]
    events = [added(chain[k], chain[k - 1] if k else None) for k in range(n)]
    random.Random(seed).shuffle(events)
    s = ConversationState()
    for e in events:
        s.apply(e)
    assert ids(s) == chain
    assert [i.previous_item_id for i in s.items] == [None] + chain[:-1]


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(st.integers(0, 1000), min_size=1, max_size=30))
def test_random_inserts_match_a_list_model(ops: list[int]) -> None:
    """Inserting after a random existing item (or at the start) behaves like list.insert."""
    s = ConversationState()
    model: list[str] = []
    for k, r in enumerate(ops):
        pos = r % (len(model) + 1)  # 0 = at the start
        prev = model[pos - 1] if pos else None
        s.apply(added(f"n{k}", prev))
        model.insert(pos, f"n{k}")
    assert ids(s) == model


def test_delete_keeps_visible_order_and_no_resurrection() -> None:
    s = ConversationState()
    for k, prev in enumerate([None, "i0", "i1", "i2"]):
        s.apply(added(f"i{k}", prev))
    s.apply(ProviderEvent(type=EventType.ITEM_DELETED, item_id="i1"))
    assert ids(s) == ["i0", "i2", "i3"]
    s.apply(added("late", "i0"))  # inserted after i0, before i2
    assert ids(s) == ["i0", "late", "i2", "i3"]
    # ITEM_DONE of a deleted item (e.g. after a cancel) must not bring it back
    s.apply(ProviderEvent(type=EventType.ITEM_DONE, data={"id": "i1", "type": "message", "role": "assistant"},
                          item_id="i1"))
    assert "i1" not in s and s.get("i1") is None
    s.apply(ProviderEvent(type=EventType.ITEM_DELETED, item_id="i0"))
    assert ids(s) == ["late", "i2", "i3"]


def test_cycle_in_previous_ids_does_not_lose_items() -> None:
    s = ConversationState()
    s.apply(added("a", "b"))
    s.apply(added("b", "a"))
    s.apply(added("self", "self"))
    assert sorted(ids(s)) == ["a", "b", "self"]


def test_bounded_drops_oldest_and_counts() -> None:
    s = ConversationState(max_items=5)
    prev = None
    for k in range(12):
        s.apply(added(f"i{k}", prev))
        prev = f"i{k}"
    assert ids(s) == [f"i{k}" for k in range(7, 12)]
    assert s.dropped_items == 7
    assert s.snapshot().dropped_items == 7


def test_deltas_accumulate_and_done_replaces() -> None:
    s = ConversationState()
    s.apply(added("a1", None, role="assistant", status="in_progress"))
    for piece in ("Hel", "lo ", "there"):
        s.apply(ProviderEvent(type=EventType.TRANSCRIPT_DELTA, data=piece, item_id="a1"))
    s.apply(ProviderEvent(type=EventType.AUDIO_DELTA, data=bytes(4800), item_id="a1"))
    item = s.get("a1")
    assert item is not None and item.transcript == "Hello there" and item.audio_ms == 100.0
    # the in-progress item.done/added with empty content must not wipe the deltas
    s.apply(ProviderEvent(type=EventType.ITEM_DONE, data={"id": "a1", "type": "message", "role": "assistant",
                                                          "status": "completed",
                                                          "content": [{"type": "output_audio", "transcript": None}]},
                          item_id="a1"))
    assert s.get("a1").transcript == "Hello there" and s.get("a1").status == "completed"  # type: ignore[union-attr]
    s.apply(ProviderEvent(type=EventType.TRANSCRIPT_DONE, data="Hello there!", item_id="a1"))
    assert s.get("a1").transcript == "Hello there!"  # type: ignore[union-attr]
    s.apply(added("t1", "a1", role="assistant"))
    s.apply(ProviderEvent(type=EventType.TEXT_DELTA, data="ab", item_id="t1"))
    s.apply(ProviderEvent(type=EventType.TEXT_DELTA, data="c", item_id="t1"))
    assert s.get("t1").text == "abc"  # type: ignore[union-attr]
    s.apply(ProviderEvent(type=EventType.TEXT_DONE, data="abcd", item_id="t1"))
    assert s.get("t1").text == "abcd"  # type: ignore[union-attr]


def test_views_are_frozen_and_cached() -> None:
    s = ConversationState()
    s.apply(added("a", None, content=[{"type": "input_text", "text": "hi"}]))
    items = s.items
    assert isinstance(items, tuple) and isinstance(items[0], ConversationItem)
    assert s.items is items  # cached until something changes
    with pytest.raises(AttributeError):
        items[0].text = "x"  # type: ignore[misc]
    s.apply(ProviderEvent(type=EventType.INPUT_TRANSCRIPT, data="hello", item_id="a"))
    assert s.items is not items and s.items[0].transcript == "hello"


def test_input_transcript_before_item_is_kept() -> None:
    s = ConversationState()
    s.apply(ProviderEvent(type=EventType.INPUT_TRANSCRIPT, data="early", item_id="u1"))
    s.apply(added("u1", None, content=[{"type": "input_audio", "transcript": None}]))
    assert s.get("u1").transcript == "early"  # type: ignore[union-attr]


def test_truncation_keeps_transcript_and_estimates_heard_text() -> None:
    s = ConversationState()
    s.apply(added("a1", None, role="assistant"))
    s.apply(ProviderEvent(type=EventType.TRANSCRIPT_DONE, data="one two three four", item_id="a1"))
    s.apply(ProviderEvent(type=EventType.AUDIO_DELTA, data=bytes(48 * 1000), item_id="a1"))  # 1000 ms
    s.apply(ProviderEvent(type=EventType.ITEM_TRUNCATED, data={"content_index": 0, "audio_end_ms": 500},
                          item_id="a1"))
    item = s.get("a1")
    assert item is not None
    assert item.truncated and item.truncated_at_ms == 500 and item.heard_ms == 500
    assert item.transcript == "one two three four"  # full transcript kept
    assert item.heard_transcript == "one two"  # word boundary, proportional
    wire = s.snapshot().items[0]
    assert wire["content"] == [{"type": "output_text", "text": "one two"}]


def test_malformed_events_are_ignored() -> None:
    s = ConversationState()
    s.apply(ProviderEvent(type=EventType.ITEM_ADDED, data="not a dict"))
    s.apply(ProviderEvent(type=EventType.ITEM_ADDED, data={"type": "message"}))  # no id
    s.apply(ProviderEvent(type=EventType.ITEM_TRUNCATED, data={"audio_end_ms": "x"}, item_id="nope"))
    s.apply(ProviderEvent(type=EventType.RATE_LIMITS, data=[]))
    s.apply(added("a", None))
    s.apply(ProviderEvent(type=EventType.ITEM_TRUNCATED, data={"audio_end_ms": "bad"}, item_id="a"))
    assert ids(s) == ["a"]


def _voice_turn(s: ConversationState, clock: FakeClock, user: str, resp: str, assistant: str,
                prev: str | None) -> None:
    clock.now += 1
    s.apply(ProviderEvent(type=EventType.SPEECH_STARTED, data={"audio_start_ms": 1000}, item_id=user))
    assert s.speaking == "user"
    clock.now += 2
    s.apply(ProviderEvent(type=EventType.SPEECH_STOPPED, data={"audio_end_ms": 2500}, item_id=user))
    s.apply(ProviderEvent(type=EventType.INPUT_COMMITTED, data={"previous_item_id": prev}, item_id=user))
    s.apply(added(user, prev, content=[{"type": "input_audio", "transcript": None}]))
    clock.now += 0.25
    s.apply(ProviderEvent(type=EventType.RESPONSE_STARTED, data=ResponseInfo(response_id=resp), response_id=resp))
    assert s.current_response is not None and s.current_response.response_id == resp
    s.apply(added(assistant, user, role="assistant"))
    clock.now += 0.5
    s.apply(ProviderEvent(type=EventType.AUDIO_DELTA, data=bytes(4800), item_id=assistant, response_id=resp))
    assert s.speaking == "assistant"
    s.apply(ProviderEvent(type=EventType.TRANSCRIPT_DONE, data="sure thing", item_id=assistant))
    s.apply(ProviderEvent(type=EventType.INPUT_TRANSCRIPT, data="hi there", item_id=user))
    clock.now += 1
    s.apply(ProviderEvent(type=EventType.RESPONSE_DONE, data=ResponseInfo(
        response_id=resp, status="completed", output_item_ids=(assistant,)), response_id=resp))


def test_turn_tracking_and_timing_with_injected_clock() -> None:
    clock = FakeClock()
    s = ConversationState(clock=clock)
    _voice_turn(s, clock, "u1", "r1", "a1", None)
    assert s.speaking is None and s.current_response is None
    (turn,) = s.turns
    assert isinstance(turn, Turn)
    assert turn.trigger == "speech" and turn.status == "completed"
    assert turn.user_item_id == "u1" and turn.response_id == "r1" and turn.assistant_item_ids == ("a1",)
    assert turn.speech_stopped_at - turn.speech_started_at == 2  # type: ignore[operator]
    assert turn.response_latency_s == 0.25
    assert turn.first_audio_latency_s == 0.75
    assert turn.done_at == clock.now
    assert s.get("u1").audio_ms == 1500  # type: ignore[union-attr]  # from VAD audio_start/end_ms
    _voice_turn(s, clock, "u2", "r2", "a2", "a1")
    assert [t.index for t in s.turns] == [0, 1]


def test_barge_in_turn_and_cancelled_status() -> None:
    clock = FakeClock()
    s = ConversationState(clock=clock)
    s.apply(ProviderEvent(type=EventType.RESPONSE_STARTED, data=ResponseInfo(response_id="r1"), response_id="r1"))
    assert s.turns[0].trigger == "response"
    s.apply(ProviderEvent(type=EventType.SPEECH_STARTED, data={"audio_start_ms": 0}, item_id="u9"))
    s.apply(ProviderEvent(type=EventType.RESPONSE_DONE, data=ResponseInfo(
        response_id="r1", status="cancelled", reason="turn_detected"), response_id="r1"))
    first, second = s.turns
    assert first.status == "cancelled" and first.reason == "turn_detected"
    assert second.status == "listening" and s.speaking == "user"
    s.apply(ProviderEvent(type=EventType.SPEECH_STARTED, data={"audio_start_ms": 10}, item_id="u10"))
    assert s.turns[1].status == "superseded"


def test_text_turn_and_function_call_round_trip() -> None:
    s = ConversationState()
    s.apply(added("u1", None, content=[{"type": "input_text", "text": "weather?"}]))
    assert s.current_turn is not None and s.current_turn.trigger == "text"
    s.apply(ProviderEvent(type=EventType.RESPONSE_STARTED, data=ResponseInfo(response_id="r1"), response_id="r1"))
    s.apply(ProviderEvent(type=EventType.ITEM_ADDED, data={
        "id": "fc1", "type": "function_call", "status": "in_progress", "name": "get_weather",
        "call_id": "call1", "arguments": "", "previous_item_id": "u1"}, item_id="fc1"))
    s.apply(ProviderEvent(type=EventType.FUNCTION_CALL, data=FunctionCall(
        name="get_weather", call_id="call1", arguments='{"city": "Paris"}', item_id="fc1"), item_id="fc1"))
    s.apply(ProviderEvent(type=EventType.ITEM_ADDED, data={
        "id": "out1", "type": "function_call_output", "call_id": "call1", "output": "sunny",
        "previous_item_id": "fc1"}, item_id="out1"))
    fc, out = s.get("fc1"), s.get("out1")
    assert fc is not None and fc.arguments == '{"city": "Paris"}' and fc.status == "completed"
    assert out is not None and out.output == "sunny"
    assert ids(s) == ["u1", "fc1", "out1"]


def _full_conversation() -> ConversationState:
    clock = FakeClock()
    s = ConversationState(clock=clock)
    s.apply(added("sys1", None, role="system", content=[{"type": "input_text", "text": "be brief"}]))
    _voice_turn(s, clock, "u1", "r1", "a1", "sys1")
    s.apply(ProviderEvent(type=EventType.ITEM_TRUNCATED, data={"audio_end_ms": 50}, item_id="a1"))
    s.apply(added("u2", "a1", content=[{"type": "input_text", "text": "weather in Paris?"}]))
    s.apply(ProviderEvent(type=EventType.ITEM_ADDED, data={
        "id": "fc1", "type": "function_call", "name": "get_weather", "call_id": "call1",
        "arguments": '{"city": "Paris"}', "status": "completed", "previous_item_id": "u2"}, item_id="fc1"))
    s.apply(ProviderEvent(type=EventType.ITEM_ADDED, data={
        "id": "out1", "type": "function_call_output", "call_id": "call1", "output": '{"sky": "clear"}',
        "previous_item_id": "fc1"}, item_id="out1"))
    s.apply(added("a2", "out1", role="assistant", content=[{"type": "output_text", "text": "It is clear."}]))
    s.apply(added("u3", "a2", content=[{"type": "input_audio", "transcript": None}]))  # no transcription
    return s


def test_snapshot_shapes_and_roles() -> None:
    snap = _full_conversation().snapshot()
    by_id = dict(zip(snap.item_ids, snap.items))
    assert snap.item_ids == ("sys1", "u1", "a1", "u2", "fc1", "out1", "a2")
    assert snap.skipped_ids == ("u3",)
    assert by_id["sys1"]["role"] == "system"
    assert by_id["u1"]["content"] == [{"type": "input_text", "text": "hi there"}]
    assert by_id["a1"]["content"] == [{"type": "output_text", "text": "sure"}]  # heard half of 100 ms
    assert by_id["fc1"] == {"id": "fc1", "type": "function_call", "name": "get_weather",
                            "arguments": '{"city": "Paris"}', "call_id": "call1"}
    assert by_id["out1"]["output"] == '{"sky": "clear"}'
    assert by_id["a2"]["content"][0]["text"] == "It is clear."
    assert "id" not in _full_conversation().snapshot(include_ids=False).items[0]


def test_snapshot_items_validate_against_openai_types() -> None:
    snap = _full_conversation().snapshot()
    assert snap.items
    for item in snap.items:
        model = WIRE.validate_python(item)
        assert model.type == item["type"]


def test_clear() -> None:
    s = _full_conversation()
    s.clear()
    assert s.items == () and s.turns == () and s.speaking is None
    s.apply(added("x", None))
    assert ids(s) == ["x"]


def test_bad_bounds() -> None:
    with pytest.raises(ValueError):
        ConversationState(max_items=0)


def test_long_chain_has_no_recursion_limit() -> None:
    s = ConversationState(max_items=5000)
    for k, prev in zip(range(3000), itertools.chain([None], (f"i{k}" for k in range(3000)))):
        s.apply(added(f"i{k}", prev))
    assert len(s.items) == 3000 and s.items[-1].id == "i2999"


def test_attached_record_is_the_source_of_items_and_turns_stay_here() -> None:
    from voiceengine.providers.conversation import ConversationRecord

    record = ConversationRecord(output_bytes_per_ms=48.0)
    state = ConversationState(clock=iter(range(100)).__next__)
    state.attach(record)
    user = ProviderEvent(type=EventType.ITEM_ADDED, item_id="u1", data={
        "id": "u1", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]})
    for event in (user, user):  # the provider folds into its record; the state only keeps turns
        record.apply(event)
        state.apply(event)
    assert [i.id for i in state.items] == ["u1"] and state.get("u1").text == "hello"
    assert len(state.turns) == 1 and state.turns[0].trigger == "text"  # one text turn, not two
    started = ProviderEvent(type=EventType.RESPONSE_STARTED, response_id="r1", data=ResponseInfo(response_id="r1"))
    audio = ProviderEvent(type=EventType.AUDIO_DELTA, item_id="a1", response_id="r1", data=bytes(4800))
    added = ProviderEvent(type=EventType.ITEM_ADDED, item_id="a1", data={
        "id": "a1", "type": "message", "role": "assistant", "content": [{"type": "output_audio"}]})
    for event in (started, added, audio):
        record.apply(event)
        state.apply(event)
    assert state.speaking == "assistant" and state.current_turn.first_audio_at is not None
    assert state.get("a1").audio_ms == 100.0 and "a1" in state and len(state) == 2
    record.apply(ProviderEvent(type=EventType.ITEM_TRUNCATED, item_id="a1", data={"audio_end_ms": 40}))
    assert state.get("a1").truncated_at_ms == 40  # read, not folded: the state saw no event
    state.attach(None)
    assert state.items == ()  # standalone again: its own (empty) fold
