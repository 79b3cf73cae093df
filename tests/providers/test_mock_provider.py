"""MockProvider: GA event order, determinism, VAD, gating, interrupt clamping, function calls, cleanup."""

from __future__ import annotations

import array
import asyncio
import base64
import inspect
import math

import pytest

from voiceengine.exceptions import ConfigurationError, InvalidState, LimitExceeded, LocalProtocolError
from voiceengine.providers import create
from voiceengine.providers.base import BaseProvider
from voiceengine.providers.mock import MockConfig, MockProvider, synthesize_speech
from voiceengine.providers.types import (
    AudioFormat, ConnectionState, EventType as E, InterruptResult, MessageType, ProviderEvent,
)
from voiceengine.state import ConversationState

SPOKEN = [
    E.RESPONSE_STARTED, E.OUTPUT_ITEM_ADDED, E.ITEM_ADDED, E.CONTENT_PART_ADDED,
]
SPOKEN_END = [E.AUDIO_DONE, E.TRANSCRIPT_DONE, E.CONTENT_PART_DONE, E.OUTPUT_ITEM_DONE, E.ITEM_DONE, E.RESPONSE_DONE]
RESPONSE_TYPES = set(SPOKEN + SPOKEN_END + [E.TRANSCRIPT_DELTA, E.AUDIO_DELTA])


def response_events(p: MockProvider, since: int = 0) -> list[ProviderEvent]:
    return [e for e in p.emitted()[since:] if e.type in RESPONSE_TYPES and e.response_id is not None]


def silence(ms: int) -> bytes:
    return bytes(48 * ms)


@pytest.fixture
async def mock() -> MockProvider:
    p = MockProvider(MockConfig(responses=("Hello there, how are you?",)))
    await p.connect()
    yield p
    await p.disconnect()


def test_implements_every_abstract_method_and_registry() -> None:
    assert not inspect.isabstract(MockProvider)
    assert MockProvider.config_class is MockConfig
    for name in BaseProvider.__abstractmethods__:
        assert getattr(MockProvider, name) is not getattr(BaseProvider, name), name
    p = create("mock", latency_ms=0, seed=3)
    assert isinstance(p, MockProvider) and p.config.seed == 3
    with pytest.raises(ConfigurationError):
        MockProvider(MockConfig(responses=()))
    with pytest.raises(ConfigurationError):
        MockConfig(error_rate=2)
    with pytest.raises(ConfigurationError):
        MockConfig(responses=({"nope": 1},))


def test_formats_and_capabilities_are_honest() -> None:
    p = MockProvider()
    inp, out = p.get_audio_format()
    assert inp == out == AudioFormat(sample_rate=24000, channels=1)
    caps = p.get_capabilities()
    assert caps.name == "mock" and caps.server_vad and caps.truncation and caps.function_calling
    assert not caps.semantic_vad


async def test_connect_emits_session_and_state(mock: MockProvider) -> None:
    kinds = [e.type for e in mock.emitted()]
    assert kinds == [E.CONNECTION_STATE, E.SESSION_CREATED, E.SESSION_UPDATED, E.CONNECTION_STATE]
    assert mock.state is ConnectionState.CONNECTED and mock.session_id


async def test_spoken_response_in_ga_order(mock: MockProvider) -> None:
    await mock.send_text("hi")
    await mock.wait_idle()
    kinds = [e.type for e in response_events(mock)]
    words = len("Hello there, how are you?".split())
    assert kinds == SPOKEN + [E.TRANSCRIPT_DELTA, E.AUDIO_DELTA] * words + SPOKEN_END
    deltas = [e for e in mock.emitted(E.TRANSCRIPT_DELTA)]
    assert "".join(e.data for e in deltas) == "Hello there, how are you?"
    assert mock.emitted(E.TRANSCRIPT_DONE)[0].data == "Hello there, how are you?"
    audio = b"".join(e.data for e in mock.emitted(E.AUDIO_DELTA))
    assert len(audio) % 2 == 0 and len(audio) > 48 * 500
    samples = array.array("h", audio)
    assert max(samples) > 3000  # real, audible PCM16
    done = mock.emitted(E.RESPONSE_DONE)[0]
    assert done.data.status == "completed" and done.data.output_item_ids == (deltas[0].item_id,)
    assert not mock.response_active


async def test_text_modality(mock: MockProvider) -> None:
    await mock.create_response(output_modalities=["text"])
    await mock.wait_idle()
    kinds = [e.type for e in mock.emitted() if e.type not in (E.CONNECTION_STATE, E.SESSION_CREATED,
                                                                 E.SESSION_UPDATED)]
    assert kinds[:4] == SPOKEN and E.AUDIO_DELTA not in kinds
    assert mock.emitted(E.TEXT_DONE)[0].data == "Hello there, how are you?"


async def test_out_of_band_response_stays_out_of_the_conversation(mock: MockProvider) -> None:
    await mock.create_response(conversation="none", metadata={"k": "v"})
    await mock.wait_idle()
    assert mock.emitted(E.ITEM_ADDED) == [] and mock.emitted(E.OUTPUT_ITEM_ADDED)
    done = mock.emitted(E.RESPONSE_DONE)[0].data
    assert done.conversation == "none" and done.metadata == {"k": "v"}


async def run_script(seed: int) -> list[tuple]:
    p = MockProvider(MockConfig(seed=seed, responses=("one two", "three four five"), error_rate=0.3))
    await p.connect()
    for _ in range(4):
        await p.send_text("x")
        await p.wait_idle()
    await p.send_audio(synthesize_speech("hey you", seed=1) + silence(800))
    await p.wait_idle()
    await p.disconnect()
    return [(e.type, e.item_id, e.response_id, e.data if not hasattr(e.data, "state") else e.data.state)
            for e in p.emitted()]


async def test_deterministic_under_seed() -> None:
    a, b, c = await run_script(7), await run_script(7), await run_script(8)
    assert a == b
    assert a != c  # audio and the error draws depend on the seed
    assert any(kind is E.ERROR for kind, *_ in a)  # error_rate 0.3 hits in 4+1 responses for seed 7


async def test_server_vad_turn_and_auto_response() -> None:
    p = MockProvider(MockConfig(input_transcripts=("what time is it",), responses=("noon",)))
    await p.connect()
    speech = synthesize_speech("hello there assistant", seed=2)
    for start in range(0, len(speech), 960):  # 20 ms chunks, like a microphone
        await p.send_audio(speech[start:start + 960])
    await p.send_audio(silence(700))
    await p.wait_idle()
    kinds = [e.type for e in p.emitted() if e.type in (
        E.SPEECH_STARTED, E.SPEECH_STOPPED, E.INPUT_COMMITTED, E.ITEM_ADDED, E.INPUT_TRANSCRIPT, E.RESPONSE_STARTED,
        E.RESPONSE_DONE)]
    assert kinds == [E.SPEECH_STARTED, E.SPEECH_STOPPED, E.INPUT_COMMITTED, E.ITEM_ADDED, E.INPUT_TRANSCRIPT,
                     E.RESPONSE_STARTED, E.ITEM_ADDED, E.RESPONSE_DONE]
    started, stopped = p.emitted(E.SPEECH_STARTED)[0], p.emitted(E.SPEECH_STOPPED)[0]
    assert started.item_id == stopped.item_id == p.emitted(E.INPUT_TRANSCRIPT)[0].item_id
    speech_ms = len(speech) // 48
    assert 0 <= started.data["audio_start_ms"] < 100
    assert speech_ms - 100 <= stopped.data["audio_end_ms"] <= speech_ms
    assert p.emitted(E.INPUT_TRANSCRIPT)[0].data == "what time is it"
    await p.disconnect()


async def test_silence_never_triggers_vad(mock: MockProvider) -> None:
    await mock.send_audio(silence(3000))
    assert mock.emitted(E.SPEECH_STARTED) == []


async def test_speech_during_response_cancels_it_turn_detected() -> None:
    p = MockProvider(MockConfig(latency_ms=1, responses=("a long answer with many words to say",)))
    await p.connect()
    await p.send_text("go")
    while not p.emitted(E.AUDIO_DELTA):
        await asyncio.sleep(0.001)
    await p.send_audio(synthesize_speech("stop", seed=3))
    done = p.emitted(E.RESPONSE_DONE)
    assert done and done[0].data.status == "cancelled" and done[0].data.reason == "turn_detected"
    n = len(p.emitted(E.AUDIO_DELTA))
    await asyncio.sleep(0.02)
    assert len(p.emitted(E.AUDIO_DELTA)) == n  # nothing of the cancelled response afterwards
    await p.disconnect()


async def test_manual_mode_commit_and_create() -> None:
    p = MockProvider(MockConfig(turn_detection=None))
    await p.connect()
    await p.send_audio(synthesize_speech("hello", seed=1) + silence(800))
    assert p.emitted(E.SPEECH_STARTED) == [] and not p.response_active
    await p.commit_audio()
    assert [e.type for e in p.emitted(E.INPUT_COMMITTED, E.ITEM_ADDED)] == [E.INPUT_COMMITTED, E.ITEM_ADDED]
    await p.commit_audio()  # nothing buffered now
    err = p.emitted(E.ERROR)[-1].error
    assert err is not None and err.code == "input_audio_buffer_commit_empty" and err.benign
    await p.create_response()
    await p.wait_idle()
    assert p.emitted(E.RESPONSE_DONE)[0].data.status == "completed"
    await p.send_audio(silence(200))
    await p.clear_audio()
    await p.commit_audio()
    assert p.emitted(E.ERROR)[-1].error.code == "input_audio_buffer_commit_empty"  # type: ignore[union-attr]
    await p.disconnect()


async def test_gating_never_two_responses(mock: MockProvider) -> None:
    for _ in range(3):
        await mock.create_response()
    assert mock.response_active
    await mock.wait_idle()
    order = [e.type for e in mock.emitted(E.RESPONSE_STARTED, E.RESPONSE_DONE)]
    assert order == [E.RESPONSE_STARTED, E.RESPONSE_DONE] * 3


async def test_queue_is_bounded() -> None:
    p = MockProvider(MockConfig(max_queued_responses=1))
    await p.connect()
    await p.create_response()
    await p.create_response()
    with pytest.raises(LimitExceeded):
        await p.create_response()
    assert await p.cancel_response() is True
    assert not p.response_active
    assert await p.cancel_response() is False
    await p.disconnect()


async def start_speaking(p: MockProvider, deltas: int) -> ProviderEvent:
    await p.create_response()
    while len(p.emitted(E.AUDIO_DELTA)) < deltas:
        await asyncio.sleep(0)
    return p.emitted(E.AUDIO_DELTA)[0]


@pytest.mark.parametrize("played, expected_action", [(None, "truncated"), (10, "truncated"), (0, "deleted"),
                                                      (10**6, "truncated")])
async def test_interrupt_clamping(played: int | None, expected_action: str) -> None:
    p = MockProvider(MockConfig(responses=("alpha beta gamma delta epsilon",)))
    await p.connect()
    first = await start_speaking(p, 2)
    received_ms = sum(len(e.data) for e in p.emitted(E.AUDIO_DELTA)) // 48
    result = await p.interrupt(played_ms=played)
    assert isinstance(result, InterruptResult)
    assert result.item_id == first.item_id and result.action == expected_action
    assert result.cancelled_response and result.response_id == first.response_id
    expected_end = received_ms if played is None else min(played, received_ms)
    assert result.audio_end_ms == expected_end
    tail = [e.type for e in p.emitted()][-3:]
    if expected_action == "truncated":
        assert p.emitted(E.ITEM_TRUNCATED)[0].data["audio_end_ms"] == expected_end
        assert tail == [E.OUTPUT_ITEM_DONE, E.ITEM_DONE, E.RESPONSE_DONE]
    else:
        assert p.emitted(E.ITEM_DELETED)[0].item_id == first.item_id
        assert tail[-2:] == [E.ITEM_DELETED, E.RESPONSE_DONE]
    assert p.emitted(E.RESPONSE_DONE)[0].data.status == "cancelled"
    n = len(p.emitted())
    await asyncio.sleep(0.01)
    assert len(p.emitted()) == n  # late deltas dropped
    await p.disconnect()


async def test_interrupt_after_response_done_truncates_without_cancel(mock: MockProvider) -> None:
    await mock.create_response()
    await mock.wait_idle()
    result = await mock.interrupt(played_ms=120)
    assert result.action == "truncated" and result.audio_end_ms == 120 and not result.cancelled_response
    again = await mock.interrupt(played_ms=50)  # nothing left to cut
    assert again.action == "none" and again.item_id is None
    with pytest.raises(ValueError):
        await mock.interrupt(played_ms=-1)


async def test_truncate_errors_like_the_server(mock: MockProvider) -> None:
    await mock.create_response()
    await mock.wait_idle()
    item_id = mock.emitted(E.AUDIO_DELTA)[0].item_id
    assert item_id is not None
    await mock.truncate(item_id, 10**7)
    await mock.truncate(item_id, 0)
    await mock.truncate("nope", 5)
    assert [e.error.param for e in mock.emitted(E.ERROR)] == ["audio_end_ms", "audio_end_ms", "item_id"]  # type: ignore[union-attr]
    await mock.truncate(item_id, 100)
    assert mock.emitted(E.ITEM_TRUNCATED)[0].data == {"content_index": 0, "audio_end_ms": 100}


async def test_function_call_round_trip() -> None:
    p = MockProvider(MockConfig(responses=(
        {"function_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}, "It is sunny in Paris.")))
    state = ConversationState()
    p.on_event(None, state.apply)
    await p.connect()
    await p.send_text("weather?")
    await p.wait_idle()
    (call_event,) = p.emitted(E.FUNCTION_CALL)
    call = call_event.data
    assert call.name == "get_weather" and call.parsed_arguments() == {"city": "Paris"}
    kinds = [e.type for e in p.emitted()[4:]]
    assert kinds[kinds.index(E.RESPONSE_STARTED):] == [
        E.RESPONSE_STARTED, E.OUTPUT_ITEM_ADDED, E.ITEM_ADDED, E.FUNCTION_CALL_ARGUMENTS_DELTA, E.FUNCTION_CALL,
        E.OUTPUT_ITEM_DONE, E.ITEM_DONE, E.RESPONSE_DONE]
    await p.send_function_result(call.call_id, {"sky": "clear"})
    await p.wait_idle()
    assert p.emitted(E.TRANSCRIPT_DONE)[-1].data == "It is sunny in Paris."
    assert [i.type for i in state.items] == ["message", "function_call", "function_call_output", "message"]
    assert state.items[2].output == '{"sky": "clear"}'
    await p.disconnect()


async def test_state_folds_mock_events_and_snapshot_replays() -> None:
    p = MockProvider(MockConfig(responses=("fine thanks",)))
    state = ConversationState()
    p.on_event(None, state.apply)
    await p.connect()
    await p.send_text("how are you", role="user")
    await p.wait_idle()
    await p.send_audio(synthesize_speech("and you", seed=4) + silence(800))
    await p.wait_idle()
    snap = state.snapshot()
    assert [i["role"] for i in snap.items] == ["user", "assistant", "user", "assistant"]
    q = MockProvider(MockConfig())
    await q.connect()
    for item in snap.items:
        await q.add_item(item)
    assert q.emitted(E.ERROR) == [] and len(q.emitted(E.ITEM_ADDED)) == 4
    await q.disconnect()
    await p.disconnect()


async def test_add_item_ordering_and_errors(mock: MockProvider) -> None:
    a = await mock.add_item({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]})
    b = await mock.add_item({"type": "message", "role": "user", "content": []})
    c = await mock.add_item({"type": "message", "role": "system", "content": []}, previous_item_id=a)
    adds = {e.item_id: e.data["previous_item_id"] for e in mock.emitted(E.ITEM_ADDED)}
    assert adds == {a: None, b: a, c: a}
    assert await mock.add_item({"id": a, "type": "message", "role": "user", "content": []}) == ""
    await mock.add_item({"type": "message", "role": "user", "content": []}, previous_item_id="missing")
    assert len(mock.emitted(E.ERROR)) == 2
    with pytest.raises(ValueError):
        await mock.add_item({"no": "type"})
    await mock.delete_item(b)
    assert mock.emitted(E.ITEM_DELETED)[0].item_id == b


async def test_send_message_raw_access(mock: MockProvider) -> None:
    audio = base64.b64encode(silence(200)).decode()
    event_id = await mock.send_message(MockProvider and MessageType.INPUT_AUDIO_BUFFER_APPEND, {"audio": audio})
    assert event_id
    await mock.send_message("input_audio_buffer.commit")
    assert mock.emitted(E.INPUT_COMMITTED)
    await mock.send_message(MessageType.SESSION_UPDATE, {"session": {"instructions": "x"}})
    assert mock.emitted(E.SESSION_UPDATED)[-1].data["session"]["instructions"] == "x"
    await mock.send_message(MessageType.RESPONSE_CREATE, {"response": {"instructions": "y"}, "event_id": "ev1"})
    await mock.send_message(MessageType.RESPONSE_CANCEL)
    assert mock.emitted(E.RESPONSE_DONE)[-1].data.status == "cancelled"
    with pytest.raises(LocalProtocolError):
        await mock.send_message("bogus.type")
    with pytest.raises(InvalidState):
        await mock.send_message(MessageType.OUTPUT_AUDIO_BUFFER_CLEAR)
    with pytest.raises(ConfigurationError):
        await mock.update_session(bogus=1)
    with pytest.raises(ConfigurationError):
        await mock.create_response(bogus=1)


async def test_audio_input_validation(mock: MockProvider) -> None:
    with pytest.raises(Exception) as info:
        await mock.send_audio(b"\x00\x01\x02")
    assert "even" in str(info.value)
    with pytest.raises(TypeError):
        await mock.send_audio("text")
    with pytest.raises(TypeError):
        await mock.send_audio(array.array("f", [0.0]))
    await mock.send_audio(array.array("h", [0] * 480))  # any int16 buffer
    await mock.send_audio(memoryview(bytearray(960)))


async def test_not_connected_raises() -> None:
    p = MockProvider()
    with pytest.raises(InvalidState):
        await p.send_audio(b"\x00\x00")
    with pytest.raises(InvalidState):
        await p.create_response()


async def test_inject_error_and_fatal(mock: MockProvider) -> None:
    event = mock.inject_error("rate_limit_exceeded", "slow down")
    assert event.error is not None and event.error.retryable and not event.error.fatal
    assert mock.state is ConnectionState.CONNECTED
    await mock.create_response()
    fatal = mock.inject_error("invalid_api_key", "bad key")
    assert fatal.error is not None and fatal.error.fatal
    assert mock.state is ConnectionState.ERROR and not mock.response_active
    with pytest.raises(InvalidState):
        await mock.send_text("x")


async def test_inject_disconnect_and_reconnect(mock: MockProvider) -> None:
    await mock.create_response()
    await mock.inject_disconnect("network", reconnect=True)
    changes = [e.data for e in mock.emitted(E.CONNECTION_STATE)][-2:]
    assert [c.phase for c in changes] == ["reconnecting", "restored"]
    assert changes[0].close_code == 1006
    assert mock.state is ConnectionState.CONNECTED and not mock.response_active
    await mock.inject_disconnect("gone")
    assert mock.state is ConnectionState.ERROR
    await mock.connect()
    assert mock.state is ConnectionState.CONNECTED


async def test_latency_and_events_iterator() -> None:
    p = MockProvider(MockConfig(latency_ms=1, responses=("hi",)))
    await p.connect()
    got: list[E] = []

    async def consume() -> None:
        async for event in p.events():
            got.append(event.type)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    await p.send_text("x")
    await p.wait_idle()
    await p.disconnect()
    await asyncio.wait_for(task, 5)  # disconnect ends events()
    assert E.RESPONSE_DONE in got and got[-1] is E.CONNECTION_STATE


async def test_history_records_calls_and_events(mock: MockProvider) -> None:
    await mock.send_audio(silence(20))
    await mock.send_text("hello", respond=False)
    names = [r.name for r in mock.calls()]
    assert names[-2:] == ["send_audio", "send_text"]
    assert mock.calls("send_audio")[0].args == {"bytes": 960}  # size only, never the payload
    assert mock.emitted(E.ITEM_ADDED)[0].data["content"][0]["text"] == "hello"


async def test_no_leaked_tasks_after_disconnect() -> None:
    before = asyncio.all_tasks()
    p = MockProvider(MockConfig(latency_ms=5, responses=("many words here to keep it busy for a while",)))
    await p.connect()

    async def handler(event: ProviderEvent) -> None:
        await asyncio.sleep(10)

    p.on_event(E.AUDIO_DELTA, handler)
    for _ in range(3):
        await p.create_response()
    while not p.emitted(E.AUDIO_DELTA):
        await asyncio.sleep(0.001)
    await p.disconnect()
    await p.disconnect()  # idempotent
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()
    assert p.state is ConnectionState.CLOSED


def test_synthesized_speech_is_deterministic_speech_like() -> None:
    a = synthesize_speech("hello world", seed=1)
    assert a == synthesize_speech("hello world", seed=1)
    assert a != synthesize_speech("hello world", seed=2)
    samples = array.array("h", a)
    rms = math.sqrt(sum(x * x for x in samples) / len(samples))
    assert 1000 < rms < 20000
