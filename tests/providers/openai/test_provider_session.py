"""OpenAIProvider against the FakeRealtimeServer over loopback: setup, audio, text, tools."""

from __future__ import annotations

import base64
import math

import pytest

from _shell_helpers import KEY, make_provider, response_done, running, server_error_codes, tone
from voiceengine.exceptions import AudioFormatError, InvalidState, LimitExceeded
from voiceengine.providers import AudioEncoding, ConnectionState, EventType, create
from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig, FunctionCallScript, ScriptedResponse


async def test_connect_sets_up_the_session() -> None:
    async with running() as (server, provider, rec):
        assert provider.state is ConnectionState.CONNECTED
        assert provider.is_connected
        session = server.sessions[0]
        # connect() returned after session.created arrived and session.update was sent
        assert rec.of(EventType.SESSION_CREATED)
        assert provider.session_id == session.id
        await server.wait_for_received(lambda ev: ev["type"] == "session.update")
        first = session.received[0]
        assert first["type"] == "session.update"
        assert first["session"]["type"] == "realtime"
        assert first["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert session.request_headers["Authorization"] == "Bearer ***"  # the server saw a bearer key
        assert rec.phases() == ["connecting", "connected"]
        assert not server.errors


async def test_registry_creates_the_openai_provider() -> None:
    provider = create("openai", api_key=KEY)
    assert isinstance(provider, OpenAIProvider)
    assert provider.name == "openai"
    caps = provider.get_capabilities()
    assert caps.truncation and caps.function_calling and caps.server_vad
    in_fmt, out_fmt = provider.get_audio_format()
    assert in_fmt.sample_rate == out_fmt.sample_rate == 24000
    g711 = OpenAIProvider(OpenAIConfig(api_key=KEY, input_audio_format="audio/pcmu", output_audio_format="audio/pcma"))
    in_fmt, out_fmt = g711.get_audio_format()
    assert (in_fmt.encoding, in_fmt.sample_rate, out_fmt.encoding) == (AudioEncoding.PCMU, 8000, AudioEncoding.PCMA)


async def test_calls_before_connect_raise_invalid_state() -> None:
    async with FakeRealtimeServer(FakeServerConfig()) as server:
        provider = make_provider(server)
        with pytest.raises(InvalidState):
            await provider.send_audio(b"\0\0")
        with pytest.raises(InvalidState):
            await provider.send_text("hi")
        await provider.disconnect()
        with pytest.raises(InvalidState):
            await provider.create_response()
        assert server.handshakes == 0


async def test_audio_in_reaches_the_server_unchanged() -> None:
    async with running() as (server, provider, rec):
        audio = tone(1000)
        for offset in range(0, len(audio), 4800):  # 100 ms chunks, as bytes/memoryview/bytearray
            chunk = audio[offset:offset + 4800]
            await provider.send_audio(memoryview(chunk) if offset % 9600 else bytearray(chunk))
        await provider.commit_audio()
        committed = await rec.wait_type(EventType.INPUT_COMMITTED)
        appends = [ev for ev in server.sessions[0].received if ev["type"] == "input_audio_buffer.append"]
        assert b"".join(base64.b64decode(ev["audio"]) for ev in appends) == audio
        assert committed.item_id
        assert not server.errors


async def test_bad_audio_is_refused_at_the_boundary() -> None:
    async with running() as (server, provider, rec):
        with pytest.raises(AudioFormatError):
            await provider.send_audio(b"\0\0\0")  # odd byte count
        with pytest.raises(TypeError):
            await provider.send_audio("not audio")
        await provider.send_text("still fine")
        await rec.wait(response_done)
        assert not [ev for ev in server.sessions[0].received if ev["type"] == "input_audio_buffer.append"]


async def test_response_audio_out_equals_what_the_server_sent() -> None:
    script = [ScriptedResponse(text="The quick brown fox jumps over the lazy dog.")]
    async with running(FakeServerConfig(turn_detection=None, speed=math.inf, responses=script)) as (server, provider,
                                                                                                    rec):
        await provider.send_text("Say the pangram.")
        done = await rec.wait(response_done)
        assert done.data.status == "completed"
        deltas = rec.of(EventType.AUDIO_DELTA)
        sent = server.sessions[0].audio_sent_by_item
        assert sent, "the server sent no audio"
        for item_id, pcm in sent.items():
            received = b"".join(e.data for e in deltas if e.item_id == item_id)
            assert received == pcm
        transcript = rec.of(EventType.TRANSCRIPT_DONE)[0].data
        assert transcript == "The quick brown fox jumps over the lazy dog."
        assert "".join(e.data for e in rec.of(EventType.TRANSCRIPT_DELTA)) == transcript
        assert not server.errors


async def test_text_turn_with_text_output() -> None:
    server_config = FakeServerConfig(turn_detection=None, speed=math.inf, responses=["Plain text reply."])
    async with running(server_config, output_modalities=("text",)) as (server, provider, rec):
        item_id = await provider.send_text("Write something.")
        done = await rec.wait(response_done)
        assert done.data.status == "completed"
        assert rec.of(EventType.TEXT_DONE)[0].data == "Plain text reply."
        assert not rec.of(EventType.AUDIO_DELTA)
        assert server.sessions[0].has_item(item_id)


async def test_function_call_round_trip() -> None:
    script = [
        ScriptedResponse(function_calls=(FunctionCallScript(name="get_weather", arguments={"city": "Oslo"}),)),
        ScriptedResponse(text="It is sunny in Oslo."),
    ]
    tools = [{"type": "function", "name": "get_weather", "description": "weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    server_config = FakeServerConfig(turn_detection=None, speed=math.inf, responses=script)
    async with running(server_config, tools=tools) as (server, provider, rec):
        await provider.send_text("Weather in Oslo?")
        call_event = await rec.wait_type(EventType.FUNCTION_CALL)
        await rec.wait(response_done)
        call = call_event.data
        assert call.name == "get_weather" and call.parsed_arguments() == {"city": "Oslo"}
        mark = rec.mark()
        await provider.send_function_result(call.call_id, {"sky": "sunny"})
        done = await rec.wait(response_done, since=mark)
        assert done.data.status == "completed"
        assert server.sessions[0].function_outputs[call.call_id] == '{"sky":"sunny"}'
        assert rec.of(EventType.TRANSCRIPT_DONE, mark)[0].data == "It is sunny in Oslo."
        assert not server.errors


async def test_raw_messages_items_and_session_updates() -> None:
    async with running() as (server, provider, rec):
        item_id = await provider.add_item({"type": "message", "role": "system",
                                           "content": [{"type": "input_text", "text": "context"}]})
        event_id = await provider.send_message("conversation.item.retrieve", {"item_id": item_id})
        await provider.update_session(instructions="Answer in French.")
        await rec.wait_type(EventType.ITEM_RETRIEVED)
        await server.wait_for(lambda ev: ev["type"] == "session.updated"
                              and ev["session"].get("instructions") == "Answer in French.")
        received = server.sessions[0].received
        assert any(ev.get("event_id") == event_id for ev in received)
        assert server.sessions[0].session["instructions"] == "Answer in French."
        assert not server.errors


async def test_outbound_queue_full_refuses_audio() -> None:
    async with running(max_queue_messages=4) as (server, provider, rec):
        chunk = tone(30)  # 4 x 30 ms: above the server's 100 ms commit minimum
        # send_audio never yields, so the writer cannot drain between these calls
        for _ in range(4):
            await provider.send_audio(chunk)
        with pytest.raises(LimitExceeded):
            await provider.send_audio(chunk)
        # control calls wait for room instead, and everything accepted is delivered in order
        await provider.commit_audio()
        await rec.wait_type(EventType.INPUT_COMMITTED)
        types = [ev["type"] for ev in server.sessions[0].received]
        assert types.count("input_audio_buffer.append") == 4
        assert types[-1] == "input_audio_buffer.commit"
        assert server_error_codes(server) == []
