"""Server-driven bookkeeping of RealtimeSession stays bounded under a flood (issue 5).

Each test feeds 10^5 hostile server events that add an entry to one structure and never
send the event that would remove it, asserts the structure stays at its limit (oldest
forgotten), then checks that a normal exchange after the flood still works.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Iterator

import pytest

from voiceengine.providers.openai.bounded import (
    MAX_ACTIVE_RESPONSES,
    MAX_CONTENT_PARTS,
    MAX_SEEN_AUDIO_EVENTS,
    MAX_TRACKED_RESPONSES,
    BoundedDict,
    BoundedSet,
)
from voiceengine.providers.openai.config import OpenAIConfig
from voiceengine.providers.openai.session import RealtimeSession
from voiceengine.providers.types import EventType

FLOOD = 100_000
MAX_ITEMS = 512  # RealtimeSession's default max_items
PCM_B64 = base64.b64encode(b"\x01\x00" * 1200).decode()  # 50 ms of 24 kHz PCM16


def frame(type_: str, event_id: str = "evt", **fields: Any) -> str:
    return json.dumps({"type": type_, "event_id": event_id, **fields})


def flood(session: RealtimeSession, frames: Iterator[str]) -> int:
    """Feed every frame; returns how many ERROR events came back (there should be none)."""
    errors = 0
    for text in frames:
        errors += sum(e.type is EventType.ERROR for e in session.receive(text))
    return errors


def types_of(events: list[Any]) -> list[EventType]:
    return [e.type for e in events]


@pytest.fixture
def session() -> RealtimeSession:
    return RealtimeSession(OpenAIConfig(api_key="k"), drop_duplicate_audio=True)


def test_bounds_helper_evicts_the_oldest() -> None:
    d: BoundedDict[str, int] = BoundedDict(3)
    for i in range(10):
        d.put(f"k{i}", i)
    assert list(d) == ["k7", "k8", "k9"] and d.evicted == 7
    d["k8"] = 80  # an update keeps its place and the bound
    d.put("k7", 70)
    assert list(d.items()) == [("k7", 70), ("k8", 80), ("k9", 9)]
    s: BoundedSet[str] = BoundedSet(2)
    for key in "abc":
        s.add(key)
    assert "a" not in s and "b" in s and "c" in s and len(s) == 2
    s.discard("b")
    s.discard("zz")
    assert list(s) == ["c"]
    with pytest.raises(ValueError):
        BoundedSet(0)


def test_bounds_response_created_never_done(session: RealtimeSession) -> None:
    frames = (frame("response.created", f"e{i}", response={"id": f"resp_{i}", "status": "in_progress"})
              for i in range(FLOOD))
    assert flood(session, frames) == 0
    assert len(session._active) == MAX_ACTIVE_RESPONSES
    assert f"resp_{FLOOD - 1}" in session._active and "resp_0" not in session._active
    # the newest responses are still tracked: their lost-response report stays bounded too
    assert len(session.lost_responses()) == MAX_ACTIVE_RESPONSES
    # a real response after the flood: started, audio, done, all delivered and accounted
    assert types_of(session.receive(frame("response.created", "real1", response={"id": "resp_real"}))) == [
        EventType.RESPONSE_STARTED]
    audio = session.receive(frame("response.output_audio.delta", "real2", response_id="resp_real",
                                  item_id="item_real", output_index=0, content_index=0, delta=PCM_B64))
    assert types_of(audio) == [EventType.AUDIO_DELTA] and session.received_ms("item_real") == 50
    done = session.receive(frame("response.done", "real3", response={"id": "resp_real", "status": "completed"}))
    assert types_of(done) == [EventType.RESPONSE_DONE]
    assert "resp_real" not in session._active and len(session._active) <= MAX_ACTIVE_RESPONSES
    # a cancel still covers every tracked response (bounded loop, bounded _cancelled)
    assert session.cancel_response() is True
    assert len(session._cancelled) <= 64


def test_bounds_function_call_added_never_done(session: RealtimeSession) -> None:
    frames = (frame("response.output_item.added", f"e{i}", response_id="r", output_index=0,
                    item={"id": f"fc_{i}", "type": "function_call", "name": "f", "call_id": f"call_{i}"})
              for i in range(FLOOD))
    assert flood(session, frames) == 0
    assert len(session._call_names) == MAX_ITEMS
    assert len(session._confirmed) == MAX_ITEMS
    # a real call after the flood: the name from output_item.added is still found
    session.receive(frame("response.output_item.added", "a", response_id="r", output_index=0,
                          item={"id": "fc_real", "type": "function_call", "name": "weather", "call_id": "c_real"}))
    events = session.receive(frame("response.function_call_arguments.done", "b", response_id="r",
                                   item_id="fc_real", output_index=0, call_id="c_real", arguments='{"x":1}'))
    assert types_of(events) == [EventType.FUNCTION_CALL]
    assert (events[0].data.name, events[0].data.call_id) == ("weather", "c_real")
    assert "fc_real" not in session._call_names and len(session._call_names) <= MAX_ITEMS


def test_bounds_arguments_done_without_name(session: RealtimeSession) -> None:
    frames = (frame("response.function_call_arguments.done", f"e{i}", response_id="r", item_id=f"fd_{i}",
                    output_index=0, call_id=f"call_{i}", arguments="{}")
              for i in range(FLOOD))
    assert flood(session, frames) == 0
    assert len(session._deferred_calls) == MAX_ITEMS
    assert f"fd_{FLOOD - 1}" in session._deferred_calls and "fd_0" not in session._deferred_calls
    # a real deferred call after the flood: completed by output_item.done, arguments kept
    assert session.receive(frame("response.function_call_arguments.done", "a", response_id="r", item_id="fd_real",
                                 output_index=0, call_id="c_real", arguments='{"q":2}')) == []
    events = session.receive(frame("response.output_item.done", "b", response_id="r", output_index=0,
                                   item={"id": "fd_real", "type": "function_call", "name": "g",
                                         "call_id": "c_real", "status": "completed"}))
    assert types_of(events) == [EventType.FUNCTION_CALL, EventType.OUTPUT_ITEM_DONE]
    assert (events[0].data.name, events[0].data.arguments) == ("g", '{"q":2}')
    assert "fd_real" not in session._deferred_calls


def test_bounds_audio_content_index_chosen_by_the_server(session: RealtimeSession) -> None:
    tiny = base64.b64encode(b"\x01\x00").decode()
    frames = (frame("response.output_audio.delta", f"e{i}", response_id="r", item_id="item_a", output_index=0,
                    content_index=i, delta=tiny)
              for i in range(FLOOD))
    assert flood(session, frames) == 0
    assert len(session._audio["item_a"]) == MAX_CONTENT_PARTS
    # one entry per item, whatever the parts: distinct items are bounded by max_items
    frames = (frame("response.output_audio.delta", f"f{i}", response_id=f"r{i}", item_id=f"item_{i}",
                    output_index=0, content_index=0, delta=tiny)
              for i in range(FLOOD))
    assert flood(session, frames) == 0
    assert len(session._audio) == MAX_ITEMS
    assert len(session._response_audio) == MAX_TRACKED_RESPONSES
    # normal audio after the flood: accounted per part, truncation clamps to it
    session.receive(frame("response.created", "c", response={"id": "resp_real"}))
    for i in range(4):
        events = session.receive(frame("response.output_audio.delta", f"real{i}", response_id="resp_real",
                                       item_id="item_real", output_index=0, content_index=0, delta=PCM_B64))
        assert types_of(events) == [EventType.AUDIO_DELTA]
    assert session.received_ms("item_real", 0) == 200
    result = session.interrupt(played_ms=120)
    assert (result.item_id, result.action, result.audio_end_ms) == ("item_real", "truncated", 120)


def test_bounds_audio_event_ids_and_duplicates(session: RealtimeSession) -> None:
    frames = (frame("response.output_audio.delta", f"e{i}", response_id="r", item_id="item_a", output_index=0,
                    content_index=0, delta=base64.b64encode(b"\x01\x00").decode())
              for i in range(FLOOD))
    assert flood(session, frames) == 0
    seen = session._seen_audio
    assert seen is not None and len(seen) == MAX_SEEN_AUDIO_EVENTS
    # a delta delivered twice is dropped the second time, before any accounting
    text = frame("response.output_audio.delta", "dup", response_id="r2", item_id="item_b", output_index=0,
                 content_index=0, delta=PCM_B64)
    duplicates = session.duplicates
    assert types_of(session.receive(text)) == [EventType.AUDIO_DELTA]
    assert session.receive(text) == []
    assert session.duplicates == duplicates + 1 and session.received_ms("item_b") == 50
    # without an event_id nothing can be matched: delivered (never dropped on a guess)
    bare = json.dumps({"type": "response.output_audio.delta", "response_id": "r2", "item_id": "item_b",
                       "output_index": 0, "content_index": 0, "delta": PCM_B64})
    assert len(session.receive(bare)) == 1 and len(session.receive(bare)) == 1
    # forgotten on reconnect: event ids are per connection
    session.reset_for_reconnect()
    assert session._seen_audio is not None and len(session._seen_audio) == 0


def test_bounds_bare_session_keeps_scripted_duplicates() -> None:
    # The sans-I/O session alone does not dedupe (scripted inputs may reuse event ids).
    session = RealtimeSession(OpenAIConfig(api_key="k"))
    text = frame("response.output_audio.delta", "same", response_id="r", item_id="i", output_index=0,
                 content_index=0, delta=PCM_B64)
    assert len(session.receive(text)) == len(session.receive(text)) == 1
    assert session._seen_audio is None and session.received_ms("i") == 100


def test_bounds_items_and_truncations(session: RealtimeSession) -> None:
    # conversation.item.added for ever-new ids, deletions of unknown ids: all bounded
    frames = (frame("conversation.item.added", f"e{i}", previous_item_id=None,
                    item={"id": f"it_{i}", "type": "message", "role": "user", "content": []})
              for i in range(FLOOD))
    assert flood(session, frames) == 0
    assert len(session._added) == MAX_ITEMS and len(session._confirmed) == MAX_ITEMS
    frames = (frame("conversation.item.deleted", f"d{i}", item_id=f"gone_{i}") for i in range(FLOOD))
    assert flood(session, frames) == 0
    assert len(session._added) == MAX_ITEMS
    # a real item after the flood is reported once
    text = frame("conversation.item.added", "x", previous_item_id=None,
                 item={"id": "it_real", "type": "message", "role": "user", "content": []})
    assert types_of(session.receive(text)) == [EventType.ITEM_ADDED]
    assert session.receive(frame("conversation.item.created", "y", previous_item_id=None,
                                 item={"id": "it_real", "type": "message", "role": "user", "content": []})) == []
