"""GeminiProvider end to end over loopback against FakeGeminiLiveServer."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import AsyncIterator

import pytest

from gemini_provider_helpers import KEY, Recorder, is_, make_provider, running, speech
from voiceengine.exceptions import ConnectionFailed, InvalidState
from voiceengine.providers.types import (
    ConnectionChange, EventType, FunctionCall, ResponseInfo, RestoreMethod, ServerInterrupted, SessionExpiring,
)
from voiceengine.testing import FakeGeminiLiveServer
from voiceengine.testing.audio import synthesize


@pytest.fixture
async def server() -> AsyncIterator[FakeGeminiLiveServer]:
    async with FakeGeminiLiveServer(speed=float("inf")) as srv:
        yield srv


async def holds_latest_handle(server: FakeGeminiLiveServer, provider: object, *, at_least: int) -> None:
    """Until the provider holds the newest of at least ``at_least`` handles the server granted."""
    async with asyncio.timeout(5):
        while True:
            handles = [f["sessionResumptionUpdate"]["newHandle"] for f in server.session.sent
                       if "sessionResumptionUpdate" in f]
            session = getattr(provider, "session", None)
            if len(handles) >= at_least and session is not None and session.resumption_handle == handles[-1]:
                return
            await asyncio.sleep(0.01)


def restored(events: list) -> list[ConnectionChange]:
    return [e.data for e in events if e.type is EventType.CONNECTION_STATE and e.data.phase == "restored"]


async def test_connect_returns_on_setup_complete_and_text_turn(server: FakeGeminiLiveServer) -> None:
    async with running(server) as (provider, rec):
        assert provider.session is not None and provider.session.ready
        assert provider.session_id == server.session.session_id
        setup = server.session.setup
        assert setup is not None and setup["sessionResumption"] == {}
        assert server.session.request_headers["x-goog-api-key"] == "***"
        await provider.send_text("what time is it")
        done = await rec.wait(is_(EventType.RESPONSE_DONE))
    assert isinstance(done.data, ResponseInfo) and done.data.status == "completed"
    assert rec.audio() == synthesize("You said what time is it", 24000).pcm
    assert rec.of(EventType.TRANSCRIPT_DONE)[0].data == "You said what time is it"
    assert [(e.role, e.content_text) for e in provider.conversation.entries] == [
        ("user", "what time is it"), ("assistant", "You said what time is it")]


async def test_spoken_turn_audio_is_accounted(server: FakeGeminiLiveServer) -> None:
    pcm = speech("good morning")
    async with running(server) as (provider, rec):
        for i in range(0, len(pcm), 640):
            await provider.send_audio(pcm[i:i + 640])
        await provider.commit_audio()  # audioStreamEnd: the service answers the turn
        await rec.wait(is_(EventType.RESPONSE_DONE))
        accounting = provider.audio_accounting
    heard = rec.of(EventType.INPUT_TRANSCRIPT)[0].data
    assert heard == f"user turn 1 lasting {len(pcm) // 32} milliseconds"
    assert accounting.captured_bytes == accounting.sent_bytes == len(pcm) == server.input_audio_bytes
    assert accounting.balanced


async def test_server_interrupted_when_the_user_speaks_over_a_reply() -> None:
    reply = " ".join(["word"] * 40)
    async with FakeGeminiLiveServer(speed=2.0, responses=[reply, "ok"]) as server:
        async with running(server) as (provider, rec):
            await provider.send_text("talk")
            await rec.wait(is_(EventType.AUDIO_DELTA))
            await provider.send_audio(speech("stop please"))
            cut = await rec.wait(is_(EventType.SERVER_INTERRUPTED))
            result = await provider.interrupt(played_ms=150)
            done = await rec.wait(lambda e: e.type is EventType.RESPONSE_DONE)
    assert isinstance(cut.data, ServerInterrupted) and cut.data.response_id == done.response_id
    assert (done.data.status, done.data.reason) == ("cancelled", "turn_detected")
    assert result.action == "none" and not result.cancelled_response
    assert len(rec.audio()) < len(synthesize(reply, 24000).pcm)
    assert server.session.interrupts == 1


async def test_tool_call_round_trip(server: FakeGeminiLiveServer) -> None:
    server.script_tool_call("get_weather", {"city": "Paris"})
    tool = {"type": "function", "name": "get_weather", "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    async with running(server, tools=[tool]) as (provider, rec):
        await provider.send_text("weather in Paris?")
        call_event = await rec.wait(is_(EventType.FUNCTION_CALL))
        call = call_event.data
        assert isinstance(call, FunctionCall) and call.parsed_arguments() == {"city": "Paris"}
        await provider.send_function_result(call.call_id, {"temperature": 21})
        await rec.wait(is_(EventType.RESPONSE_DONE))
    assert rec.of(EventType.TRANSCRIPT_DONE)[-1].data == 'The tool returned {"temperature":21}'
    declared = server.session.setup["tools"][0]["functionDeclarations"][0]
    assert declared["name"] == "get_weather" and declared["parametersJsonSchema"]["type"] == "object"


async def test_go_away_resumes_with_the_handle_and_loses_nothing(server: FakeGeminiLiveServer) -> None:
    async with running(server) as (provider, rec):
        await provider.send_text("remember blue")
        await rec.wait(is_(EventType.RESPONSE_DONE))
        await holds_latest_handle(server, provider, at_least=2)
        mark = len(rec.events)
        server.go_away(5.0)
        expiring = await rec.wait(is_(EventType.SESSION_EXPIRING), since=mark)
        pcm = speech("during the switch")
        await provider.send_audio(pcm)  # sent on the old connection or buffered and carried over
        change = await rec.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == "restored",
                                since=mark)
        await provider.send_text("what colour")
        await rec.wait(is_(EventType.RESPONSE_DONE), since=len(rec.events))
        accounting = provider.audio_accounting
    assert isinstance(expiring.data, SessionExpiring) and expiring.data.time_left_ms == 5000
    assert change.data.restored_by is RestoreMethod.RESUMPTION and change.data.replayed_items == 0
    assert len(server.sessions) == 2 and server.sessions[1].resumed
    assert not any("clientContent" in f and not f["clientContent"].get("turnComplete", False)
                   for f in server.sessions[1].received)  # nothing replayed into the resumed session
    assert accounting.captured_bytes == len(pcm) == server.input_audio_bytes and accounting.balanced
    assert len(rec.of(EventType.RESPONSE_STARTED)) == 2  # no reply requested twice


async def test_close_1011_resumes_with_the_latest_handle(server: FakeGeminiLiveServer) -> None:
    from voiceengine.testing import Fault, FaultKind

    async with running(server) as (provider, rec):
        await provider.send_text("first")
        await rec.wait(is_(EventType.RESPONSE_DONE))
        await holds_latest_handle(server, provider, at_least=2)
        mark = len(rec.events)
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1011))
        change = await rec.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == "restored",
                                since=mark)
        await provider.send_text("second")
        await rec.wait(is_(EventType.RESPONSE_DONE), since=len(rec.events))
    assert change.data.restored_by is RestoreMethod.RESUMPTION
    assert list(server.sessions[1].history)[:2] == [("user", "first"), ("model", "You said first")]


async def test_turn_ended_after_its_audio_was_lost_with_the_connection_awaits_no_reply(
        server: FakeGeminiLiveServer) -> None:
    """The user's audio went out on a connection that is then reset; the turn is ended on the
    next one. No transparent resumption: nothing re-sends that audio, so the new connection's
    ``audioStreamEnd`` ends no turn the service holds and gets no reply. The session must not
    wait for one (it did, forever: never idle, so never recycled or handed over; the fault
    episode of seed 11, where the coalesced writer wrote a whole restored backlog just before
    a TCP reset)."""
    from voiceengine.testing import Fault, FaultKind

    pcm = speech("tell me something")
    async with running(server, max_reconnect_attempts=3) as (provider, rec):
        await provider.send_audio(pcm)
        async with asyncio.timeout(5):
            while server.sessions[0].input_audio_bytes < len(pcm):  # on the first connection only
                await asyncio.sleep(0.01)
        mark = len(rec.events)
        server.inject(Fault(kind=FaultKind.TCP_RESET))
        await rec.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == "restored", since=mark)
        await provider.commit_audio()
        session = provider.session
        assert session is not None and session.idle and not provider.response_active
        await server.wait_for_received(lambda f: f == {"realtimeInput": {"audioStreamEnd": True}})
        assert server.sessions[-1].input_audio_bytes == 0  # the new connection holds none of that turn
        after = len(rec.events)
        await provider.send_text("still there?")
        done = await rec.wait(is_(EventType.RESPONSE_DONE), since=after)
        accounting = provider.audio_accounting
    assert done.data.status == "completed"
    assert len(rec.of(EventType.RESPONSE_STARTED)) == 1  # the only reply: to the text
    assert rec.of(EventType.TRANSCRIPT_DONE)[-1].data == "You said still there?"
    assert accounting.balanced and accounting.sent_bytes == len(pcm)  # written, then lost with the connection


async def test_refused_handle_falls_back_to_replay(server: FakeGeminiLiveServer) -> None:
    from voiceengine.testing import Fault, FaultKind

    async with running(server, max_reconnect_attempts=3) as (provider, rec):
        await provider.send_text("my name is Ada")
        await rec.wait(is_(EventType.RESPONSE_DONE))
        mark = len(rec.events)
        server.refuse_handles(1)
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1011))
        change = await rec.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == "restored",
                                since=mark)
        await provider.send_text("who am I")
        await rec.wait(is_(EventType.RESPONSE_DONE), since=len(rec.events))
    assert change.data.restored_by is RestoreMethod.REPLAY and change.data.replayed_items == 2
    fresh = server.sessions[-1]
    assert fresh.setup is not None and fresh.setup["historyConfig"] == {"initialHistoryInClientContent": True}
    assert "handle" not in fresh.setup["sessionResumption"]
    assert list(fresh.history)[:2] == [("user", "my name is Ada"), ("model", "You said my name is Ada")]
    assert server.handles.refused == 1


async def test_bad_key_fails_connect_without_leaking_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeGeminiLiveServer(api_keys=("the-right-key",)) as server:
        provider = make_provider(server, max_reconnect_attempts=0)
        with pytest.raises(ConnectionFailed) as info:
            await provider.connect()
        await provider.disconnect()
    assert info.value.close_code == 1007 and not info.value.retryable
    text = caplog.text + repr(info.value) + str(info.value) + repr(provider.config)
    assert KEY not in text


async def test_ephemeral_token_and_tls() -> None:
    async with FakeGeminiLiveServer(tls=True, speed=float("inf")) as server:
        async with running(server, api_key="auth_tokens/ephemeral-1",
                           url=server.url_for("v1alpha", constrained=True)) as (provider, rec):
            await provider.send_text("hi")
            await rec.wait(is_(EventType.RESPONSE_DONE))
        headers = server.session.request_headers
    assert headers["Authorization"] == "Token ***" and "x-goog-api-key" not in headers


async def test_unsupported_verbs_say_so(server: FakeGeminiLiveServer) -> None:
    async with running(server) as (provider, rec):
        with pytest.raises(InvalidState):
            await provider.cancel_response()
        with pytest.raises(InvalidState):
            await provider.clear_audio()
        with pytest.raises(InvalidState):
            await provider.create_response(instructions="be loud")
        with pytest.raises(InvalidState):
            await provider.update_session(voice="Kore")
        with pytest.raises(InvalidState):
            await provider.add_item({"type": "message", "role": "user", "content": []}, previous_item_id="x")
        caps = provider.get_capabilities()
        assert not caps.client_cancel and not caps.truncation and caps.session_resumption
        assert provider.get_audio_format()[0].sample_rate == 16000
        assert provider.get_audio_format()[1].sample_rate == 24000


async def test_update_session_sends_context_update_and_carries_over(server: FakeGeminiLiveServer) -> None:
    from voiceengine.testing import Fault, FaultKind

    async with running(server, instructions="old") as (provider, rec):
        await provider.update_session(instructions="new rules")
        await server.wait_for_received(lambda f: "contextUpdate" in f)
        assert server.session.instructions == "new rules"
        mark = len(rec.events)
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1011))
        await rec.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == "restored", since=mark)
    assert server.sessions[-1].setup["systemInstruction"] == {"parts": [{"text": "new rules"}]}


async def test_every_frame_the_provider_sends_validates(server: FakeGeminiLiveServer) -> None:
    from gemini_sdk_oracle import validate_client_frame

    server.script_tool_call("f", {})
    async with running(server, tools=[{"type": "function", "name": "f"}]) as (provider, rec):
        await provider.send_audio(speech("x"))
        await provider.commit_audio()
        call = await rec.wait(is_(EventType.FUNCTION_CALL))
        await provider.send_function_result(call.data.call_id, "done", respond=False)
        await provider.send_text("context only", respond=False)
        await provider.send_text("as the model", role="assistant", respond=False)
        await provider.add_item({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "i"}]})
        await provider.update_session(tools=[])
        await provider.send_message("realtimeInput", {"text": "raw"})
        await rec.wait(is_(EventType.RESPONSE_DONE))
    frames = [json.dumps(f) for s in server.sessions for f in s.received]
    assert len(frames) >= 9
    for frame in frames:
        validate_client_frame(frame)
