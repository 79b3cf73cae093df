"""The sans-I/O Live session: turn and reply inference, barge-in, idle frames, tool rounds,
usage increments, close reasons, error matching. Frames in, events out; no sockets."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from live_schema import check_client_event
from voiceengine.exceptions import InvalidState
from voiceengine.providers.conversation import ConversationRecord
from voiceengine.providers.openai_live import LiveSession, OpenAILiveConfig
from voiceengine.providers.types import EventType, ProviderEvent, Usage

TOOL = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
LOUD = (b"\x00\x30\x00\xd0") * 1200          # 100 ms at 24 kHz, about -6 dBFS
QUIET = (b"\x03\x00\xfd\xff") * 1200         # 100 ms, peak 3: the idle track
SILENCE_100MS = bytes(4800)


def ev(type_: str, **fields: Any) -> str:
    return json.dumps({"type": type_, "event_id": "e", **fields})


def audio(pcm: bytes) -> str:
    return json.dumps({"type": "session.output_audio.delta", "delta": base64.b64encode(pcm).decode()})


def types(events: list[ProviderEvent]) -> list[EventType]:
    return [e.type for e in events]


def started(**cfg: Any) -> LiveSession:
    s = LiveSession(OpenAILiveConfig(**cfg))
    s.start()
    start = json.loads(s.data_to_send()[0])
    check_client_event(start)
    out = s.receive(ev("session.started", session={"id": "sess_9", "expires_at": 1, "model": "m", "status": "active"}), 0.0)
    assert types(out) == [EventType.SESSION_CREATED] and s.session_id == "sess_9"
    return s


def feed(s: LiveSession, ms: int, now: float = 0.0) -> list[ProviderEvent]:
    """Send ``ms`` of silence (the timeline moves) and run the inference."""
    out: list[ProviderEvent] = []
    for _ in range(ms // 100):
        s.send_audio(SILENCE_100MS)
        out += s.tick(now)
    s.data_to_send()
    return out


def test_requests_before_session_started_raise() -> None:
    s = LiveSession(OpenAILiveConfig())
    with pytest.raises(InvalidState):
        s.send_audio(SILENCE_100MS)
    with pytest.raises(InvalidState):
        s.send_context("thinking", "x")


def test_spoken_turn_then_reply_inferred_on_the_timeline() -> None:
    s = started()
    feed(s, 500)
    out = s.receive(ev("session.input_transcript.delta", delta="hello", start_ms=400, end_ms=450), 0.0)
    assert types(out) == [EventType.ITEM_ADDED, EventType.SPEECH_STARTED, EventType.INPUT_TRANSCRIPT_DELTA]
    assert out[1].data == {"audio_start_ms": 400}
    out = s.receive(ev("session.input_transcript.delta", delta=" there", start_ms=450, end_ms=700), 0.0)
    assert types(out) == [EventType.INPUT_TRANSCRIPT_DELTA]
    user_item = out[0].item_id
    # the reply starts: the user's turn is over
    out = s.receive(ev("session.output_transcript.delta", delta="Hi", start_ms=900, end_ms=1100), 1.0)
    assert types(out) == [EventType.SPEECH_STOPPED, EventType.INPUT_COMMITTED, EventType.INPUT_TRANSCRIPT,
                          EventType.ITEM_DONE,
                          EventType.RESPONSE_STARTED, EventType.ITEM_ADDED, EventType.OUTPUT_ITEM_ADDED,
                          EventType.TRANSCRIPT_DELTA]
    assert out[0].data == {"audio_end_ms": 700} and out[2].data == "hello there" and out[2].item_id == user_item
    rid, iid = out[4].response_id, out[5].item_id
    out = s.receive(audio(LOUD), 1.0)
    assert types(out) == [EventType.AUDIO_DELTA] and out[0].data == LOUD
    assert (out[0].item_id, out[0].response_id) == (iid, rid)
    assert s.reply_active
    # 1100 ms is where the reply's output ends; 800 ms of timeline after it, it is done
    assert feed(s, 1300, now=1.0) == []            # timeline 1800 < 1100 + 800
    done = feed(s, 100, now=1.0)                   # timeline 1900
    assert types(done) == [EventType.AUDIO_DONE, EventType.TRANSCRIPT_DONE, EventType.OUTPUT_ITEM_DONE,
                           EventType.ITEM_DONE, EventType.GENERATION_DONE, EventType.RESPONSE_DONE]
    assert done[1].data == "Hi" and done[-1].data.status == "completed" and not s.reply_active
    assert s.idle


def test_user_turn_ends_on_a_timeline_gap_without_a_reply() -> None:
    s = started(user_turn_gap_ms=500)
    s.receive(ev("session.input_transcript.delta", delta="um", start_ms=0, end_ms=100), 0.0)
    assert feed(s, 500) == []                      # timeline 500 < 100 + 500
    out = feed(s, 100)
    assert types(out) == [EventType.SPEECH_STOPPED, EventType.INPUT_COMMITTED, EventType.INPUT_TRANSCRIPT,
                          EventType.ITEM_DONE]


def test_wall_clock_ends_a_reply_when_the_app_stops_streaming() -> None:
    s = started(reply_end_quiet_s=2.0)
    s.receive(audio(LOUD), 10.0)
    assert s.tick(11.9) == []
    assert types(s.tick(12.0))[-1] is EventType.RESPONSE_DONE


def test_wall_clock_fallback_can_be_turned_off() -> None:
    s = started(reply_end_quiet_s=None)
    s.receive(audio(LOUD), 10.0)
    assert s.tick(1e9) == [] and s.reply_active


def test_barge_in_interrupts_the_reply_and_drops_its_tail() -> None:
    s = started(barge_in_tail_ms=200)
    s.receive(audio(LOUD), 0.0)
    rid = s._reply.response_id if s._reply else None
    feed(s, 300)
    out = s.receive(ev("session.input_transcript.delta", delta="wait", start_ms=250, end_ms=300), 0.0)
    assert types(out) == [EventType.SERVER_INTERRUPTED, EventType.AUDIO_DONE, EventType.TRANSCRIPT_DONE,
                          EventType.OUTPUT_ITEM_DONE, EventType.ITEM_DONE, EventType.RESPONSE_DONE,
                          EventType.ITEM_ADDED, EventType.SPEECH_STARTED, EventType.INPUT_TRANSCRIPT_DELTA]
    assert out[0].data.response_id == rid
    assert out[4].data["status"] == "incomplete"
    assert out[5].data.status == "cancelled" and out[5].data.reason == "turn_detected"
    assert s.receive(audio(LOUD), 0.0) == [] and s.dropped_tail_frames == 1   # in flight: the cut reply's tail
    feed(s, 200)
    out = s.receive(audio(LOUD), 0.0)                                           # a new reply
    assert EventType.RESPONSE_STARTED in types(out) and s._reply is not None and s._reply.response_id != rid


def test_idle_output_is_dropped_outside_a_reply() -> None:
    s = started()
    assert s.receive(audio(QUIET), 0.0) == [] and s.dropped_idle_frames == 1
    assert not s.reply_active


def test_a_quiet_pause_inside_a_reply_is_played_when_the_reply_goes_on() -> None:
    s = started()
    s.receive(audio(LOUD), 0.0)
    assert s.receive(audio(QUIET), 0.0) == []                                   # held: pause or idle track?
    out = s.receive(audio(LOUD), 0.0)                                           # the reply goes on: a pause
    assert [e.data for e in out] == [QUIET, LOUD] and s.dropped_idle_frames == 0


def test_a_quiet_tail_after_a_reply_is_the_idle_track_and_ends_it() -> None:
    s = started(reply_end_gap_ms=300)
    s.receive(audio(LOUD), 0.0)
    assert s.receive(audio(QUIET), 0.0) == [] and s.receive(audio(QUIET), 0.0) == []
    out = s.receive(audio(QUIET), 0.0)                                          # 300 ms of idle track
    assert types(out)[-1] is EventType.RESPONSE_DONE
    heard = [e for e in out if e.type is EventType.AUDIO_DELTA]
    assert heard == [] and s.dropped_idle_frames == 3 and not s.reply_active


def test_idle_dropping_can_be_turned_off() -> None:
    s = started(drop_idle_output=False)
    assert EventType.RESPONSE_STARTED in types(s.receive(audio(QUIET), 0.0))


def _call(s: LiveSession, call_id: str, *, response_id: str = "r1", name: str = "lookup") -> list[ProviderEvent]:
    created = {"type": "response.created", "sequence_number": 0,
               "response": {"id": response_id, "object": "response", "created_at": 1, "model": "b", "output": [],
                            "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}}
    s.receive(ev("session.delegation.created", offset_ms=0,
                 delegation={"id": "d1", "target": "responses", "type": "delegation", "response_id": response_id}), 0)
    s.receive(ev("response.event", delegation_id="d1", event=created), 0.0)
    return s.receive(ev("response.event", delegation_id="d1", event={
        "type": "response.output_item.done", "sequence_number": 4, "output_index": 0,
        "item": {"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id, "name": name,
                 "arguments": '{"q":1}', "status": "completed"}}), 0.0)


def _completed(s: LiveSession, response_id: str = "r1") -> list[ProviderEvent]:
    return s.receive(ev("response.event", delegation_id="d1", event={
        "type": "response.completed", "sequence_number": 5,
        "response": {"id": response_id, "object": "response", "created_at": 1, "model": "b", "output": [],
                     "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "status": "completed"}}), 0.0)


def test_tool_round_sends_one_response_create_after_every_result_and_the_backend_completed() -> None:
    s = started(tools=[TOOL])
    out = _call(s, "c1")
    assert types(out) == [EventType.FUNCTION_CALL]
    call = out[0].data
    assert (call.name, call.call_id, call.arguments, call.response_id) == ("lookup", "c1", '{"q":1}', "r1")
    _call(s, "c2")
    assert s.send_function_result("c1", "one") is False                          # backend still running
    assert _completed(s) == []
    assert s.open_calls == ("c2",)
    assert s.send_function_result("c2", "two") is True
    frames = [json.loads(f) for f in s.data_to_send()]
    assert [f["type"] for f in frames] == ["response.item.create", "response.item.create", "response.create"]
    assert [f["item"]["call_id"] for f in frames[:2]] == ["c1", "c2"]
    for f in frames:
        check_client_event(f)
    with pytest.raises(InvalidState):
        s.send_function_result("c1", "again")


def test_results_given_before_the_backend_completes_continue_on_completion() -> None:
    s = started(tools=[TOOL])
    _call(s, "c1")
    assert s.send_function_result("c1", "x") is False
    s.data_to_send()
    _completed(s)
    assert [json.loads(f)["type"] for f in s.data_to_send()] == ["response.create"]


def test_a_reply_does_not_end_while_delegated_work_is_outstanding() -> None:
    s = started(tools=[TOOL])
    s.receive(audio(LOUD), 0.0)                                                 # "let me check"
    _call(s, "c1")
    feed(s, 5000, now=100.0)
    assert s.reply_active
    s.send_function_result("c1", "42")
    assert types(_completed(s))[-1] is EventType.RESPONSE_DONE     # quiet long enough: ends at once


def test_unknown_function_result_and_typed_turn_without_tools_raise() -> None:
    s = started()
    with pytest.raises(InvalidState):
        s.send_function_result("nope", "x")
    with pytest.raises(InvalidState):
        s.send_user_text("hi")


def test_typed_turn_frames() -> None:
    s = started(tools=[TOOL])
    s.send_user_text("weather?")
    frames = [json.loads(f) for f in s.data_to_send()]
    assert [f["type"] for f in frames] == ["response.item.create", "response.create"]
    for f in frames:
        check_client_event(f)


def test_context_frames_validate() -> None:
    s = started()
    for kind in ("thinking", "instructions", "commentary"):
        s.send_context(kind, f"{kind} text")
    frames = [json.loads(f) for f in s.data_to_send()]
    assert [f["type"] for f in frames] == ["session.thinking.append", "session.instructions.append",
                                           "session.commentary.append"]
    assert all(f["delegation_id"] is None for f in frames)
    for f in frames:
        check_client_event(f)


def test_usage_is_reported_as_increments_of_the_cumulative_seconds() -> None:
    s = started()
    seen: list[Usage] = []
    for seconds in (1, 3, 3, 7):
        seen += [e.data for e in s.receive(ev("session.usage.updated", usage={"seconds": seconds}), 0.0)]
    seen += [e.data for e in s.receive(ev("session.closed", reason="close_requested", usage={"seconds": 8},
                                          session={"id": "s", "expires_at": 1, "model": "m", "status": "active"}), 0)
             if e.type is EventType.USAGE]
    assert [u.input_audio_seconds for u in seen] == [1, 2, 4, 1]
    assert sum(u.input_audio_seconds for u in seen) == 8


@pytest.mark.parametrize(("reason", "restorable"), [("expired", True), ("connection_lost", True),
                                                    ("close_requested", False), ("content", False),
                                                    ("remote_hangup", False)])
def test_session_closed_reasons(reason: str, restorable: bool) -> None:
    s = started(tools=[TOOL])
    s.receive(audio(LOUD), 0.0)
    _call(s, "c1")
    out = s.receive(ev("session.closed", reason=reason, usage={"seconds": 0},
                       session={"id": "s", "expires_at": 1, "model": "m", "status": "active"}), 0.0)
    assert s.restorable is restorable and s.closed_reason == reason
    kinds = types(out)
    assert (EventType.SESSION_EXPIRING in kinds) is (reason == "expired")
    done = next(e for e in out if e.type is EventType.RESPONSE_DONE)
    assert done.data.status == "cancelled" and done.data.reason == "connection_lost"
    cancelled = next(e for e in out if e.type is EventType.TOOL_CALL_CANCELLED)
    assert cancelled.data.call_ids == ("c1",)
    assert s.idle


def test_errors_are_matched_to_their_request_and_classified() -> None:
    s = started(tools=[TOOL])
    s.send_user_text("x")
    eid = json.loads(s.data_to_send()[0])["event_id"]
    out = s.receive(ev("error", error={"type": "invalid_request_error", "code": "bad_item", "message": "no",
                                       "param": None, "client_event_id": eid}), 0.0)
    info = out[0].error
    assert info is not None and info.request_type == "response.item.create" and info.event_id == eid
    assert not info.fatal
    out = s.receive(ev("error", error={"type": "invalid_request_error", "code": "invalid_api_key",
                                       "message": "bad key", "param": None}), 0.0)
    assert out[0].error is not None and out[0].error.fatal


def test_unknown_and_malformed_server_events_become_typed_events() -> None:
    s = started()
    assert types(s.receive('{"type": "session.shiny"}', 0.0)) == [EventType.UNKNOWN]
    err = s.receive("{oops", 0.0)
    assert types(err) == [EventType.ERROR] and err[0].error is not None and err[0].error.code == "malformed_event"
    bad = s.receive(ev("response.event", delegation_id=None, event={"type": "response.output_item.done",
                                                                    "sequence_number": 1, "item": 3}), 0.0)
    assert bad[0].error is not None and bad[0].error.code == "malformed_event"
    odd = s.receive(ev("response.event", delegation_id=None, event={"type": "response.brand_new"}), 0.0)
    assert types(odd) == [EventType.UNKNOWN]


def test_history_of_the_neutral_conversation() -> None:
    record = ConversationRecord()
    record.add_message("user", "What's up?")
    record.add_message("system", "Be kind.")
    record.add_item({"type": "function_call", "id": "fc", "call_id": "c", "name": "lookup", "arguments": "{}"})
    record.add_function_output("c", "42")
    record.add_message("assistant", "All good.")
    assert LiveSession.history_of(record.replayable()) == [
        ("user", "What's up?"), ("developer", "Be kind."), ("developer", "Earlier tool call: lookup({})"),
        ("developer", "Earlier tool result: 42"), ("assistant", "All good.")]
    s = LiveSession(OpenAILiveConfig(max_history_messages=2), history=record.replayable())
    s.start()
    start = json.loads(s.data_to_send()[0])
    check_client_event(start)
    assert [m["content"][0]["text"] for m in start["session"]["input"]] == ["Earlier tool result: 42", "All good."]
    s.receive(ev("session.started", session={"id": "s", "expires_at": 1, "model": "m", "status": "active"}), 0.0)
    for entry in record.replayable():   # the runtime replays every entry after set-up
        s.replay_entry(entry)
    frames = [json.loads(f) for f in s.data_to_send()]
    # the two carried by session.start are not sent again; the three it could not hold go as silent context
    assert [f["type"] for f in frames] == ["session.thinking.append"] * 3
    assert frames[0]["content"] == "Earlier in this conversation, user: What's up?"
    for f in frames:
        check_client_event(f)


def test_the_conversation_record_follows_the_inferred_items() -> None:
    s = started()
    record = ConversationRecord()
    events = s.receive(ev("session.input_transcript.delta", delta="hi bot", start_ms=0, end_ms=300), 0.0)
    events += s.receive(ev("session.output_transcript.delta", delta="Hello human", start_ms=900, end_ms=1500), 0.0)
    events += s.receive(audio(LOUD), 0.0)
    events += feed(s, 2400)
    for e in events:
        record.apply(e)
    assert [(e.role, e.content_text, e.status) for e in record.entries] == [
        ("user", "hi bot", "completed"), ("assistant", "Hello human", "completed")]


def test_a_late_fragment_of_the_answered_turn_is_not_a_barge_in() -> None:
    s = started()
    s.receive(ev("session.input_transcript.delta", delta="what time", start_ms=0, end_ms=400), 0.0)
    s.receive(ev("session.output_transcript.delta", delta="It is", start_ms=900, end_ms=1100), 0.0)
    user_item = next(e.item_id for e in s.receive(ev("session.input_transcript.delta", delta=" is it",
                                                     start_ms=400, end_ms=700), 0.0))
    assert s.reply_active                                     # stamped before the reply: not a barge-in
    assert user_item is not None and user_item.startswith("live_user")
    out = s.receive(ev("session.input_transcript.delta", delta="stop", start_ms=1200, end_ms=1300), 0.0)
    assert types(out)[0] is EventType.SERVER_INTERRUPTED    # after the reply began: a barge-in


def test_a_gap_between_fragments_starts_a_new_user_turn() -> None:
    s = started(user_turn_gap_ms=800)
    s.receive(ev("session.input_transcript.delta", delta="one", start_ms=0, end_ms=200), 0.0)
    out = s.receive(ev("session.input_transcript.delta", delta="two", start_ms=1000, end_ms=1200), 0.0)
    assert types(out) == [EventType.SPEECH_STOPPED, EventType.INPUT_COMMITTED, EventType.INPUT_TRANSCRIPT,
                          EventType.ITEM_DONE,
                          EventType.ITEM_ADDED, EventType.SPEECH_STARTED, EventType.INPUT_TRANSCRIPT_DELTA]
    assert out[2].data == "one"


_LEAF = st.none() | st.booleans() | st.integers(-5, 5000) | st.text(max_size=6) | st.just(base64.b64encode(LOUD[:96]).decode())
_VALUE = st.recursive(_LEAF, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
    st.sampled_from(["type", "id", "delta", "call_id", "name", "arguments", "item", "response", "status"]),
    kids, max_size=4), max_leaves=10)
_TYPES = ["session.started", "session.output_audio.delta", "session.output_transcript.delta",
          "session.input_transcript.delta", "session.delegation.created", "response.event", "session.usage.updated",
          "session.closed", "error", "info", "session.thinking.appended", "brand.new"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_TYPES), st.dictionaries(
    st.sampled_from(["delta", "start_ms", "end_ms", "event", "delegation", "usage", "reason", "error", "session",
                     "offset_ms", "delegation_id", "code", "message"]), _VALUE, max_size=5)), max_size=12))
def test_receive_never_raises_and_always_returns_typed_events(messages: list[tuple[str, dict[str, Any]]]) -> None:
    s = started(tools=[TOOL])
    for i, (wire_type, body) in enumerate(messages):
        for event in s.receive(json.dumps({**body, "type": wire_type}), float(i)) + s.tick(float(i)):
            assert isinstance(event, ProviderEvent) and isinstance(event.type, EventType)
        if s.started and s.closed_reason is None:
            s.send_audio(SILENCE_100MS)


def test_protocol_session_surface_for_the_runtime() -> None:
    s = LiveSession(OpenAILiveConfig())
    assert not s.ready and s.resumption_handle is None and not s.resumed and not s.expiring
    s.start()
    s.data_to_send()
    s.receive(ev("session.started", session={"id": "s1", "expires_at": 1, "model": "m", "status": "active"}), 0.0)
    assert s.ready and s.session_id == "s1" and s.idle
    s.receive(audio(LOUD), 0.0)
    rid = next(iter(s.lost_responses()))
    assert rid is not None and rid.startswith("live_resp") and not s.reply_active
    assert s.lost_responses() == []
    s.receive(ev("session.closed", reason="connection_lost", usage={"seconds": 0},
                 session={"id": "s1", "expires_at": 1, "model": "m", "status": "active"}), 0.0)
    assert s.expiring                                   # a normal close after this one is reconnectable
    with pytest.raises(ValueError):
        from voiceengine.providers.conversation import ConversationEntry, EntryKind
        s.replay_entry(ConversationEntry(id="x", kind=EntryKind.MESSAGE, role="user"))


def test_backend_reply_request_and_reply_ids() -> None:
    s = started(tools=[TOOL])
    assert s.reply_ids == (None, None)
    s.request_backend_reply()
    frame = json.loads(s.data_to_send()[0])
    assert frame["type"] == "response.create"
    check_client_event(frame)
    s.receive(audio(LOUD), 0.0)
    item_id, response_id = s.reply_ids
    assert item_id is not None and response_id is not None and item_id.startswith("live_item")
    _call(s, "c1")
    _call(s, "c2")
    _completed(s)
    s.data_to_send()
    s.request_backend_reply()                          # the round waits for its results: nothing yet
    assert s.data_to_send() == []
    assert s.send_function_result("c1", "1", respond=False) is False
    assert s.send_function_result("c2", "2", respond=False) is True   # asked for earlier: goes now
    frames = [json.loads(f)["type"] for f in s.data_to_send()]
    assert frames == ["response.item.create", "response.item.create", "response.create"]
    with pytest.raises(InvalidState):
        started().request_backend_reply()              # no delegation without tools


def test_results_without_respond_wait_for_an_explicit_request() -> None:
    s = started(tools=[TOOL])
    _call(s, "c1")
    _completed(s)
    s.data_to_send()
    assert s.send_function_result("c1", "1", respond=False) is False
    assert [json.loads(f)["type"] for f in s.data_to_send()] == ["response.item.create"]
    s.request_backend_reply()
    assert [json.loads(f)["type"] for f in s.data_to_send()] == ["response.create"]
    s.request_backend_reply()                          # a new request: a new backend reply
    assert [json.loads(f)["type"] for f in s.data_to_send()] == ["response.create"]
