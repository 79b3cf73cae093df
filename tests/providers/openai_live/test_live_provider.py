"""OpenAILiveProvider on the runtime, end to end over loopback against FakeOpenAILiveServer:
a spoken turn, barge-in, a tool round trip, silent context, usage, restore after expiry and
after a dropped connection, handshake refusals, the verbs Live does not have."""

from __future__ import annotations

import json
import math
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import pytest

from live_schema import check_client_event
from live_helpers import STREAM_SPEEDUP, Run, live_provider
from voiceengine import OpenAILiveConfig, OpenAILiveProvider
from voiceengine.exceptions import ConnectionFailed, InvalidState
from voiceengine.providers import create
from voiceengine.providers.types import ConnectionState, EventType, ProviderEvent, RestoreMethod
from voiceengine.testing import FakeOpenAILiveConfig, FakeOpenAILiveServer, Fault, FaultKind, Trigger
from voiceengine.testing.audio import synthesize

TOOL = {"type": "function", "name": "get_weather", "description": "Weather.", "parameters": {"type": "object"}}
@asynccontextmanager
async def running(server: FakeOpenAILiveServer, **cfg: Any) -> AsyncIterator[Run]:
    provider = live_provider(server, api_key="sk-test-live", **cfg)
    run = Run(provider)
    await provider.connect()
    try:
        yield run
    finally:
        await provider.disconnect()


def fake(**kw: Any) -> FakeOpenAILiveConfig:
    kw.setdefault("speed", math.inf)
    return FakeOpenAILiveConfig(**kw)


def is_done(event: ProviderEvent) -> bool:
    return event.type is EventType.RESPONSE_DONE


def test_public_api_and_registry() -> None:
    provider = create("openai-live", OpenAILiveConfig(api_key="sk-x"))
    assert isinstance(provider, OpenAILiveProvider) and provider.name == "openai-live"
    built = create("openai-live", api_key="sk-x", sample_rate=16000)
    assert built.get_audio_format()[0].sample_rate == 16000
    caps = provider.get_capabilities()
    assert (caps.truncation, caps.client_cancel, caps.manual_commit, caps.silent_context) == (False, False, False, True)
    assert (caps.mutable_instructions, caps.mutable_tools, caps.session_resumption) == (False, False, False)
    assert caps.server_interruption and caps.input_format.sample_rate == 24000
    with pytest.raises(TypeError):
        OpenAILiveProvider(object())  # type: ignore[arg-type]


async def test_spoken_turn_audio_arrives_and_reply_audio_is_what_the_server_sent() -> None:
    async with FakeOpenAILiveServer(fake(replies=["Hello human."])) as server:
        async with running(server) as run:
            speech = synthesize("hi there").pcm + bytes(48 * 700)
            await run.stream(speech)
            done = await run.wait(is_done)
            assert done.data.status == "completed"
            sent = run.provider.audio_accounting
        start = next(e for e in server.received if e["type"] == "session.start")
        check_client_event(start)
    heard = b"".join(e.data for e in run.of(EventType.AUDIO_DELTA))
    assert heard == synthesize("Hello human.").pcm
    assert server.session.input_audio_bytes == sent.sent_bytes >= len(speech)
    assert [e.data for e in run.of(EventType.INPUT_TRANSCRIPT)] == ["user turn 1"]
    assert [(e.role, e.content_text) for e in run.provider.conversation.entries] == [
        ("user", "user turn 1"), ("assistant", "Hello human.")]
    assert "?" not in server.url and not any("model" in k for k in server.session.request_headers)


async def test_barge_in_is_server_side_and_interrupt_sends_nothing() -> None:
    long_reply = " ".join(["blah"] * 40)
    async with FakeOpenAILiveServer(fake(speed=4 * STREAM_SPEEDUP, replies=[long_reply, "Sure."])) as server:
        async with running(server) as run:
            await run.stream(synthesize("tell me a story").pcm + bytes(48 * 600))
            await run.wait(lambda e: e.type is EventType.AUDIO_DELTA)
            before = len(server.received)
            result = await run.provider.interrupt(played_ms=120)
            assert result.action == "none" and not result.cancelled_response
            assert len(server.received) == before                    # nothing on the wire
            local = run.of(EventType.RESPONSE_DONE)[-1]
            assert local.data.status == "cancelled" and local.data.reason == "client_cancelled"
            assert run.of(EventType.ITEM_TRUNCATED)[-1].data["audio_end_ms"] == 120
            await run.stream(synthesize("stop").pcm + bytes(48 * 600))  # the service hears it and stops
            second = await run.wait(lambda e: is_done(e) and e.response_id != local.response_id)
    assert server.session.interrupted_replies == 1
    heard = b"".join(e.data for e in run.of(EventType.AUDIO_DELTA) if e.response_id == second.response_id)
    assert heard == synthesize("Sure.").pcm
    types = {e["type"] for e in server.received}
    assert types <= {"session.start", "session.input_audio.append"}


async def test_tool_round_trip_sends_one_response_create_per_round() -> None:
    async with FakeOpenAILiveServer(fake(tool_arguments={"city": "Oslo"})) as server:
        async with running(server, tools=[TOOL]) as run:
            await run.provider.send_text("Weather in Oslo?")
            call = (await run.wait(lambda e: e.type is EventType.FUNCTION_CALL)).data
            assert (call.name, call.parsed_arguments()) == ("get_weather", {"city": "Oslo"})
            await run.provider.send_function_result(call.call_id, {"sky": "sunny"})
            await run.wait(is_done)
        for event in server.received:
            if event["type"] != "session.input_audio.append":
                check_client_event(event)
    assert [e.data for e in run.of(EventType.TRANSCRIPT_DONE)] == ['The tool returned {"sky":"sunny"}']
    assert [e["type"] for e in server.received if e["type"].startswith("response.")] == [
        "response.item.create", "response.create", "response.item.create", "response.create"]
    kinds = [(e.kind.value, e.role) for e in run.provider.conversation.entries]
    assert kinds[:3] == [("message", "user"), ("function_call", "assistant"), ("function_call_output", "user")]


async def test_silent_context_instructions_and_commentary() -> None:
    async with FakeOpenAILiveServer(fake()) as server:
        async with running(server, instructions="Be brief.") as run:
            await run.provider.add_item({"type": "message", "role": "user",
                                         "content": [{"type": "input_text", "text": "The user is a pilot."}]})
            await run.provider.update_session(instructions="Be brief. Use metric units.")
            await run.provider.speak("Your order shipped.")
            await run.wait(is_done)
            with pytest.raises(InvalidState):
                await run.provider.update_session(instructions="Something else entirely.")
            with pytest.raises(InvalidState):
                await run.provider.update_session(voice="cedar")
    assert list(server.session.thinking) == ["The user is a pilot."]
    assert list(server.session.instructions_appended) == ["Use metric units."]
    assert list(server.session.replies) == ["Your order shipped."]
    assert not server.errors


async def test_usage_is_surfaced_as_increments() -> None:
    async with FakeOpenAILiveServer(fake()) as server:
        async with running(server) as run:
            await run.stream(bytes(48 * 1500) + synthesize("hello").pcm + bytes(48 * 700))
            await run.wait(lambda e: e.type is EventType.USAGE)
            billed = server.session.usage_seconds
    assert billed >= 1 and sum(e.data.input_audio_seconds for e in run.of(EventType.USAGE)) == billed


@pytest.mark.parametrize("fault", [
    Fault(kind=FaultKind.SESSION_EXPIRED),
    Fault(kind=FaultKind.CLOSE, close_code=1006),
    Fault(kind=FaultKind.CLOSE, close_code=1011),
], ids=["expired", "dropped", "1011"])
async def test_restore_carries_the_conversation_into_a_fresh_session(fault: Fault) -> None:
    async with FakeOpenAILiveServer(fake(replies=["Noted."])) as server:
        async with running(server) as run:
            await run.stream(synthesize("remember blue").pcm + bytes(48 * 700))
            await run.wait(is_done)
            server.inject(fault)
            restored = await run.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == "restored",
                                      feed_silence=False)
            await run.stream(bytes(48 * 300))  # audio flows again
    assert restored.data.restored_by is RestoreMethod.REPLAY
    assert len(server.sessions) == 2
    assert server.sessions[1].history == (("user", "user turn 1"), ("assistant", "Noted."))
    assert server.sessions[1].input_audio_bytes > 0
    if fault.kind is FaultKind.SESSION_EXPIRED:
        assert run.of(EventType.SESSION_EXPIRING)


async def test_a_reply_lost_with_the_connection_ends_failed_and_is_not_replayed_as_heard() -> None:
    drop = Fault(kind=FaultKind.CLOSE, close_code=1006, trigger=Trigger.MID_RESPONSE, count=3)
    long_reply = " ".join(["word"] * 30)
    async with FakeOpenAILiveServer(fake(speed=4 * STREAM_SPEEDUP, replies=[long_reply, "Ok."], faults=(drop,))) as server:
        async with running(server) as run:
            await run.stream(synthesize("go on").pcm + bytes(48 * 700))
            await run.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == "restored")
    lost = [e for e in run.of(EventType.RESPONSE_DONE) if e.data.status == "failed"]
    assert len(lost) == 1 and lost[0].data.reason == "connection_lost"
    history = dict(server.sessions[1].history)
    assert history["user"] == "user turn 1"


async def test_handshake_refusals() -> None:
    async with FakeOpenAILiveServer(fake(api_keys=("sk-right",))) as server:
        provider = OpenAILiveProvider(OpenAILiveConfig(api_key="sk-wrong", url=server.url))
        with pytest.raises(ConnectionFailed) as info:
            await provider.connect()
        assert info.value.fatal and info.value.status_code == 401
        assert "sk-wrong" not in repr(info.value) and "sk-wrong" not in str(info.value)
    refuse = Fault(kind=FaultKind.REJECT_HANDSHAKE, status_code=503, trigger=Trigger.ON_CONNECT, times=1)
    async with FakeOpenAILiveServer(fake(faults=(refuse,))) as server:
        async with running(server) as run:      # a transient refusal is retried by the first connect
            assert run.provider.state is ConnectionState.CONNECTED
        assert server.handshakes == 2


async def test_verbs_live_does_not_have_raise() -> None:
    async with FakeOpenAILiveServer(fake()) as server:
        async with running(server) as run:
            p = run.provider
            for call in (p.commit_audio(), p.clear_audio(), p.cancel_response(), p.truncate("i", 10),
                         p.send_message("response.create"), p.create_response(),
                         p.send_text("hi"), p.add_item({"type": "message", "role": "user", "content": "x"},
                                                       previous_item_id="a")):
                with pytest.raises(InvalidState):
                    await call
            with pytest.raises(InvalidState):
                await p.send_function_result("no-such-call", "x")
            assert (await p.interrupt()).action == "none"         # nothing to interrupt: no-op
    assert not server.errors


async def test_first_event_is_session_created_and_start_is_the_only_pre_start_frame() -> None:
    async with FakeOpenAILiveServer(fake()) as server:
        async with running(server, sample_rate=16000, voice="cedar", instructions="x", tools=[TOOL]) as run:
            created = run.of(EventType.SESSION_CREATED)[0]
            assert created.data["audio"]["format"] == {"type": "audio/pcm", "rate": 16000}
        first = server.received[0]
    assert first["type"] == "session.start" and json.dumps(first).count("gpt-live-1") == 1
    assert first["session"]["delegation"]["responses"]["tools"][0]["name"] == "get_weather"
    assert not server.errors


async def test_the_key_never_reaches_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    async with FakeOpenAILiveServer(fake()) as server:
        async with running(server) as run:
            await run.stream(synthesize("hello").pcm + bytes(48 * 700))
            await run.wait(is_done)
        assert "sk-test-live" not in repr(run.provider) and "sk-test-live" not in repr(run.provider.config)
    assert caplog.records and "sk-test-live" not in caplog.text


async def test_a_call_still_owed_when_the_connection_drops_is_withdrawn() -> None:
    async with FakeOpenAILiveServer(fake()) as server:
        async with running(server, tools=[TOOL]) as run:
            await run.provider.send_text("Weather?")
            call = (await run.wait(lambda e: e.type is EventType.FUNCTION_CALL, feed_silence=False)).data
            server.inject(Fault(kind=FaultKind.CLOSE, close_code=1006))
            cancelled = await run.wait(lambda e: e.type is EventType.TOOL_CALL_CANCELLED)
            assert cancelled.data.call_ids == (call.call_id,)
            await run.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == "restored")
            with pytest.raises(InvalidState):
                await run.provider.send_function_result(call.call_id, "too late")
    assert [e.kind.value for e in run.provider.conversation.entries if e.kind.value == "function_call"] == []
