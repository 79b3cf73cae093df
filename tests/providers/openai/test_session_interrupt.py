"""Barge-in: interrupt arithmetic, cancel only when active, late deltas dropped."""

from __future__ import annotations

import base64
import json

import pytest

from voiceengine.providers.openai.config import OpenAIConfig
from voiceengine.providers.openai.session import RealtimeSession
from voiceengine.providers.types import EventType


def feed(_session: RealtimeSession, type: str, **fields):
    return _session.receive(json.dumps({"type": type, "event_id": "srv", **fields}))


def sent(session: RealtimeSession) -> list[dict]:
    return [json.loads(t) for t in session.data_to_send()]


def audio(session, ms: int, item="item_a", response="resp_1", content_index=0, bytes_per_ms=48):
    return feed(session, "response.output_audio.delta", response_id=response, item_id=item, output_index=0,
                content_index=content_index, delta=base64.b64encode(b"\x01\x00" * (ms * bytes_per_ms // 2)).decode())


def start_response(session, response="resp_1", item="item_a"):
    session.create_response()
    session.data_to_send()
    feed(session, "response.created", response={"id": response})
    feed(session, "response.output_item.added", response_id=response, output_index=0,
         item={"id": item, "type": "message", "role": "assistant", "content": []})


@pytest.fixture
def session() -> RealtimeSession:
    return RealtimeSession(OpenAIConfig(api_key="k", turn_detection=None))


@pytest.mark.parametrize("received_ms, played_ms, expected_ms", [
    (1000, 400, 400), (1000, 1000, 1000), (1000, 5000, 1000), (1000, None, 1000), (250, 1, 1),
])
def test_truncate_clamped_to_audio_received(session, received_ms, played_ms, expected_ms) -> None:
    start_response(session)
    for _ in range(received_ms // 50):
        audio(session, 50)
    assert session.received_ms("item_a") == received_ms
    result = session.interrupt(played_ms=played_ms)
    messages = sent(session)
    assert [m["type"] for m in messages] == ["response.cancel", "conversation.item.truncate"]
    assert messages[1] == {"type": "conversation.item.truncate", "event_id": messages[1]["event_id"],
                           "item_id": "item_a", "content_index": 0, "audio_end_ms": expected_ms}
    assert (result.action, result.audio_end_ms, result.cancelled_response, result.item_id) == (
        "truncated", expected_ms, True, "item_a")
    assert result.response_id == "resp_1"


def test_zero_played_deletes_the_item(session) -> None:
    start_response(session)
    audio(session, 100)
    result = session.interrupt(played_ms=0)
    messages = sent(session)
    assert [m["type"] for m in messages] == ["response.cancel", "conversation.item.delete"]
    assert messages[1]["item_id"] == "item_a" and result.action == "deleted" and result.audio_end_ms is None


def test_no_cancel_when_response_already_done(session) -> None:
    start_response(session)
    audio(session, 300)
    feed(session, "response.done", response={"id": "resp_1", "status": "completed"})
    result = session.interrupt(played_ms=120)
    messages = sent(session)
    assert [m["type"] for m in messages] == ["conversation.item.truncate"]
    assert messages[0]["audio_end_ms"] == 120 and not result.cancelled_response


def test_nothing_to_cut(session) -> None:
    result = session.interrupt(played_ms=100)
    assert result.action == "none" and not result.cancelled_response and sent(session) == []
    # an item the server never told us about is left alone
    start_response(session)
    result = session.interrupt(played_ms=10, item_id="item_unknown")
    assert result.action == "none" and result.cancelled_response
    assert [m["type"] for m in sent(session)] == ["response.cancel"]


def test_cancel_not_repeated_and_second_interrupt_is_noop(session) -> None:
    start_response(session)
    audio(session, 100)
    session.interrupt(played_ms=50)
    sent(session)
    again = session.interrupt(played_ms=80)
    assert again.action == "none" and not again.cancelled_response and sent(session) == []
    assert session.cancel_response() is False


def test_late_deltas_of_cancelled_response_are_dropped(session) -> None:
    start_response(session)
    audio(session, 100)
    session.interrupt(played_ms=40)
    late = audio(session, 100)
    late += feed(session, "response.output_audio_transcript.delta", response_id="resp_1", item_id="item_a",
                 output_index=0, content_index=0, delta="late words")
    assert late == [] and session.dropped_deltas == 2
    assert session.received_ms("item_a") == 100  # dropped audio is not accounted
    done = feed(session, "response.done", response={"id": "resp_1", "status": "cancelled",
                                                    "status_details": {"reason": "client_cancelled"}})
    assert done[0].type is EventType.RESPONSE_DONE and not session.response_active
    # the next response's deltas flow again
    start_response(session, response="resp_2", item="item_b")
    assert len(audio(session, 20, item="item_b", response="resp_2")) == 1


def test_cancel_while_requested_drops_the_response_when_created(session) -> None:
    session.create_response()
    sent(session)
    result = session.interrupt()
    assert result.cancelled_response and [m["type"] for m in sent(session)] == ["response.cancel"]
    feed(session, "response.created", response={"id": "resp_x"})
    assert audio(session, 20, response="resp_x") == []


def test_server_vad_cancels_itself() -> None:
    session = RealtimeSession(OpenAIConfig(api_key="k"))  # server_vad, interrupt_response default
    start_response(session)
    audio(session, 500)
    feed(session, "input_audio_buffer.speech_started", audio_start_ms=900, item_id="user_1")
    result = session.interrupt(played_ms=300)
    messages = sent(session)
    assert [m["type"] for m in messages] == ["conversation.item.truncate"]  # no response.cancel
    assert not result.cancelled_response and messages[0]["audio_end_ms"] == 300
    assert audio(session, 20) == []  # in-flight deltas of the cancelled response still dropped


def test_server_vad_without_interrupt_response_needs_our_cancel() -> None:
    session = RealtimeSession(OpenAIConfig(api_key="k", turn_detection={"type": "server_vad",
                                                                        "interrupt_response": False}))
    start_response(session)
    audio(session, 500)
    feed(session, "input_audio_buffer.speech_started", audio_start_ms=900, item_id="user_1")
    assert session.interrupt(played_ms=300).cancelled_response


def test_per_item_and_content_accounting(session) -> None:
    start_response(session)
    audio(session, 200, item="item_a")
    feed(session, "response.output_item.added", response_id="resp_1", output_index=1,
         item={"id": "item_b", "type": "message", "role": "assistant", "content": []})
    audio(session, 300, item="item_b")
    audio(session, 100, item="item_b", content_index=1)
    assert (session.received_ms("item_a"), session.received_ms("item_b"), session.received_ms("item_b", 1)) == (
        200, 300, 100)
    assert session.current_item == ("item_b", 1)
    # the app says it is still playing item_a
    result = session.interrupt(played_ms=150, item_id="item_a", content_index=0)
    truncate = sent(session)[-1]
    assert truncate["item_id"] == "item_a" and truncate["audio_end_ms"] == 150 and result.action == "truncated"


def test_g711_output_accounting() -> None:
    session = RealtimeSession(OpenAIConfig(api_key="k", turn_detection=None, output_audio_format="audio/pcmu"))
    start_response(session)
    audio(session, 100, bytes_per_ms=8)
    assert session.received_ms("item_a") == 100


def test_truncate_rules(session) -> None:
    with pytest.raises(ValueError):
        session.truncate("item_a", 0)
    with pytest.raises(TypeError):
        session.truncate("item_a", 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        session.interrupt(played_ms=-1)
    start_response(session)
    audio(session, 100)
    session.truncate("item_a", 10_000)
    assert sent(session)[-1]["audio_end_ms"] == 100  # clamped to what the server sent
