"""RealtimeSession state machine: response gate, error matching, function calls, reconnect."""

from __future__ import annotations

import base64
import json

import pytest

from voiceengine.exceptions import LimitExceeded
from voiceengine.providers.openai.config import OpenAIConfig
from voiceengine.providers.openai.session import RealtimeSession
from voiceengine.providers.types import EventType, FunctionCall


def feed(_session: RealtimeSession, type: str, **fields):
    return _session.receive(json.dumps({"type": type, "event_id": "srv", **fields}))


def sent(session: RealtimeSession) -> list[dict]:
    return [json.loads(t) for t in session.data_to_send()]


def types_of(messages: list[dict]) -> list[str]:
    return [m["type"] for m in messages]


def audio(session, item="item_a", response="resp_1", n_bytes=4800, content_index=0):
    return feed(session, "response.output_audio.delta", response_id=response, item_id=item, output_index=0,
                content_index=content_index, delta=base64.b64encode(b"\x01\x00" * (n_bytes // 2)).decode())


@pytest.fixture
def session() -> RealtimeSession:
    return RealtimeSession(OpenAIConfig(api_key="k"))


# ------------------------------------------------------------------ response gate
def test_response_create_is_never_sent_while_active(session) -> None:
    assert session.create_response() is True
    first = sent(session)
    assert types_of(first) == ["response.create"] and session.response_active
    # requested, not yet created: gated
    assert session.create_response(instructions="second") is False
    assert sent(session) == [] and session.queued_responses == 1
    feed(session, "response.created", response={"id": "r1", "status": "in_progress"})
    assert session.create_response(instructions="third") is False
    assert sent(session) == []
    # released one at a time, on response.done
    feed(session, "response.done", response={"id": "r1", "status": "completed"})
    released = sent(session)
    assert types_of(released) == ["response.create"]
    assert released[0]["response"]["instructions"] == "second"
    assert session.response_active and session.queued_responses == 1
    feed(session, "response.created", response={"id": "r2"})
    feed(session, "response.done", response={"id": "r2", "status": "completed"})
    assert sent(session)[0]["response"]["instructions"] == "third"
    feed(session, "response.created", response={"id": "r3"})
    feed(session, "response.done", response={"id": "r3"})
    assert not session.response_active and sent(session) == []


def test_server_vad_response_blocks_the_gate(session) -> None:
    feed(session, "response.created", response={"id": "auto"})
    assert session.response_active
    assert session.create_response() is False
    feed(session, "response.done", response={"id": "auto"})
    assert types_of(sent(session)) == ["response.create"]


def test_failed_create_frees_the_gate_and_is_matched(session) -> None:
    session.create_response()
    session.create_response(instructions="next")
    create_id = sent(session)[0]["event_id"]
    events = feed(session, "error", error={"type": "invalid_request_error", "code": "invalid_value",
                                           "message": "bad", "event_id": create_id})
    info = events[0].error
    assert (info.event_id, info.request_type, info.benign, info.fatal) == (create_id, "response.create", False, False)
    released = sent(session)
    assert types_of(released) == ["response.create"] and released[0]["response"]["instructions"] == "next"


def test_benign_race_is_downgraded_not_hidden(session) -> None:
    session.create_response()
    create_id = sent(session)[0]["event_id"]
    feed(session, "response.created", response={"id": "vad"})  # server VAD won the race
    events = feed(session, "error", error={"type": "invalid_request_error", "message": "active",
                                           "code": "conversation_already_has_active_response",
                                           "event_id": create_id})
    assert events[0].type is EventType.ERROR and events[0].error.benign
    assert events[0].error.request_type == "response.create"
    feed(session, "response.done", response={"id": "vad"})
    assert not session.response_active


def test_queue_is_bounded() -> None:
    session = RealtimeSession(OpenAIConfig(api_key="k"), max_queued_responses=2)
    session.create_response()
    session.create_response()
    session.create_response()
    with pytest.raises(LimitExceeded):
        session.create_response()


def test_raw_response_create_is_gated(session) -> None:
    session.create_response()
    eid = session.send_raw("response.create", {"response": {"instructions": "raw"}})
    assert len(sent(session)) == 1
    feed(session, "response.created", response={"id": "r1"})
    feed(session, "response.done", response={"id": "r1"})
    released = sent(session)
    assert released[0]["event_id"] == eid and released[0]["response"]["instructions"] == "raw"


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("code, fatal, benign, retryable", [
    ("invalid_api_key", True, False, False),
    ("insufficient_quota", True, False, False),
    ("account_deactivated", True, False, False),
    ("billing_hard_limit_reached", True, False, False),
    ("response_cancel_not_active", False, True, False),
    ("input_audio_buffer_commit_empty", False, True, False),
    ("server_error", False, False, True),
    ("rate_limit_exceeded", False, False, True),
    ("session_expired", False, False, True),
    ("something_new", False, False, False),
])
def test_error_classification(session, code, fatal, benign, retryable) -> None:
    session.commit_audio()
    eid = sent(session)[0]["event_id"]
    info = feed(session, "error", error={"type": "invalid_request_error", "code": code, "message": "m",
                                         "event_id": eid})[0].error
    assert (info.fatal, info.benign, info.retryable) == (fatal, benign, retryable)
    assert info.request_type == "input_audio_buffer.commit" and info.remote
    assert session.expiring == (code == "session_expired")


def test_unmatched_error_and_bounded_pending() -> None:
    session = RealtimeSession(OpenAIConfig(api_key="k"), max_pending=8)
    for _ in range(20):
        session.append_audio(b"\x00\x00")
    first = sent(session)[0]["event_id"]
    assert session.pending_requests == 8
    info = feed(session, "error", error={"type": "x", "message": "m", "event_id": first})[0].error
    assert info.event_id == first and info.request_type is None  # forgotten, still reported
    info = feed(session, "error", error={"type": "server_error", "message": "m"})[0].error
    assert info.event_id is None and info.retryable


# ------------------------------------------------------------------ function calls
def test_function_call_round_trip(session) -> None:
    feed(session, "response.created", response={"id": "r1"})
    item = {"id": "fc1", "type": "function_call", "name": "lookup", "call_id": "call_1", "arguments": "",
            "status": "in_progress"}
    feed(session, "response.output_item.added", response_id="r1", output_index=0, item=item)
    feed(session, "response.function_call_arguments.delta", response_id="r1", item_id="fc1", output_index=0,
         call_id="call_1", delta='{"q":')
    events = feed(session, "response.function_call_arguments.done", response_id="r1", item_id="fc1",
                  output_index=0, call_id="call_1", name="lookup", arguments='{"q":"x"}')
    assert [e.type for e in events] == [EventType.FUNCTION_CALL]
    call = events[0].data
    assert isinstance(call, FunctionCall) and (call.name, call.call_id, call.parsed_arguments()) == (
        "lookup", "call_1", {"q": "x"})
    done = feed(session, "response.output_item.done", response_id="r1", output_index=0,
                item={**item, "arguments": '{"q":"x"}', "status": "completed"})
    assert [e.type for e in done] == [EventType.OUTPUT_ITEM_DONE]  # FUNCTION_CALL only once
    # the app answers while the response is still active: output now, response gated
    item_id = session.send_function_result("call_1", {"answer": 42})
    messages = sent(session)
    assert types_of(messages) == ["conversation.item.create"]
    assert messages[0]["item"] == {"type": "function_call_output", "call_id": "call_1",
                                   "output": '{"answer":42}', "id": item_id}
    feed(session, "response.done", response={"id": "r1", "status": "completed"})
    assert types_of(sent(session)) == ["response.create"]


def test_function_call_from_output_item_done_only(session) -> None:
    item = {"id": "fc2", "type": "function_call", "name": "f", "call_id": "call_2", "arguments": "{}",
            "status": "completed"}
    events = feed(session, "response.output_item.done", response_id="r", output_index=0, item=item)
    assert [e.type for e in events] == [EventType.FUNCTION_CALL, EventType.OUTPUT_ITEM_DONE]
    assert events[0].data.name == "f"
    again = feed(session, "response.function_call_arguments.done", response_id="r", item_id="fc2",
                 output_index=0, call_id="call_2", name="f", arguments="{}")
    assert again == [] and session.duplicates == 1
    incomplete = feed(session, "response.output_item.done", response_id="r", output_index=0,
                      item={**item, "id": "fc3", "call_id": "call_3", "status": "incomplete"})
    assert [e.type for e in incomplete] == [EventType.OUTPUT_ITEM_DONE]


def test_beta_function_call_name_comes_from_output_item() -> None:
    session = RealtimeSession(OpenAIConfig(api_key="k", codec="beta"))
    feed(session, "response.output_item.added", response_id="r", output_index=0,
         item={"id": "fc", "type": "function_call", "name": "weather", "call_id": "c"})
    events = feed(session, "response.function_call_arguments.done", response_id="r", item_id="fc",
                  output_index=0, call_id="c", arguments="{}")
    assert events[0].data.name == "weather"
    # without output_item.added: deferred to output_item.done, still emitted once
    assert feed(session, "response.function_call_arguments.done", response_id="r", item_id="fd",
                output_index=0, call_id="d", arguments='{"x":1}') == []
    events = feed(session, "response.output_item.done", response_id="r", output_index=0,
                  item={"id": "fd", "type": "function_call", "name": "g", "call_id": "d", "arguments": '{"x":1}'})
    assert events[0].type is EventType.FUNCTION_CALL and events[0].data.name == "g"


# ------------------------------------------------------------------ session lifecycle
def test_session_created_updated_and_duplicates(session) -> None:
    events = feed(session, "session.created", session={"id": "sess_1", "type": "realtime"})
    assert session.session_id == "sess_1" and not session.session_ready
    assert events[0].session_id == "sess_1"
    feed(session, "session.updated", session={"type": "realtime"})
    assert session.session_ready
    later = feed(session, "input_audio_buffer.speech_started", audio_start_ms=1, item_id="u")
    assert later[0].session_id == "sess_1"
    item = {"id": "i1", "type": "message", "role": "user", "content": []}
    assert len(feed(session, "conversation.item.added", item=item, previous_item_id=None)) == 1
    assert feed(session, "conversation.item.created", item=item) == []  # same item, other name
    assert session.duplicates == 1


def test_reset_for_reconnect_keeps_config_and_overrides(session) -> None:
    feed(session, "session.created", session={"id": "sess_1"})
    session.update_session(instructions="updated")
    session.create_response()
    session.create_response()
    session.append_audio(b"\x00\x00")
    session.reset_for_reconnect()
    assert session.data_to_send() == [] and not session.response_active and session.queued_responses == 0
    assert session.session_id is None and session.pending_requests == 0
    session.start()
    session.replay_items([{"id": "item_x", "type": "message", "role": "user",
                           "content": [{"type": "input_text", "text": "hi"}], "previous_item_id": None}])
    messages = sent(session)
    assert types_of(messages) == ["session.update", "conversation.item.create"]
    assert messages[0]["session"]["instructions"] == "updated"
    assert messages[1]["item"]["id"] == "item_x" and "previous_item_id" not in messages[1]["item"]
    assert session.create_response() is True
