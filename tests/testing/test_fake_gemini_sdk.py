"""google-genai's own async Live client against FakeGeminiLiveServer(tls=True).

The SDK is the oracle: it builds the URL, headers and frames the real service gets, and
parses every frame the fake sends with its own ``LiveServerMessage``.
"""

from __future__ import annotations

import json
import warnings
from typing import Any, AsyncIterator

import pytest

genai = pytest.importorskip("google.genai")
from google.genai import types  # noqa: E402

from voiceengine.testing import FakeGeminiLiveServer  # noqa: E402
from voiceengine.testing.audio import synthesize  # noqa: E402

MODEL = "gemini-live-2.5-flash-preview"
KEY = "fake-gemini-sdk-key"


@pytest.fixture
async def server() -> AsyncIterator[FakeGeminiLiveServer]:
    async with FakeGeminiLiveServer(tls=True, speed=float("inf")) as srv:
        yield srv


def client_for(server: FakeGeminiLiveServer, **options: Any) -> Any:
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(
        base_url=server.base_url, async_client_args={"ssl": server.ssl_context}, **options))


def live_config(**fields: Any) -> Any:
    defaults: dict[str, Any] = {"response_modalities": ["AUDIO"], "input_audio_transcription": {},
                                "output_audio_transcription": {}, "session_resumption": {}}
    return types.LiveConnectConfig(**{**defaults, **fields})


async def collect_turn(session: Any) -> list[Any]:
    return [msg async for msg in session.receive()]


def reply_audio(messages: list[Any]) -> bytes:
    out = bytearray()
    for msg in messages:
        content = msg.server_content
        if content is not None and content.model_turn is not None:
            for part in content.model_turn.parts or ():
                if part.inline_data is not None:
                    assert part.inline_data.mime_type == "audio/pcm;rate=24000"
                    out += part.inline_data.data
    return bytes(out)


def output_transcript(messages: list[Any]) -> str:
    return "".join(m.server_content.output_transcription.text for m in messages
                   if m.server_content is not None and m.server_content.output_transcription is not None)


def assert_every_frame_validates(server: FakeGeminiLiveServer) -> None:
    assert server.sent
    for frame in server.sent:
        # extra="forbid" in the SDK's models: an unknown or misspelt field fails here
        types.LiveServerMessage.model_validate_json(json.dumps(frame))


async def test_sdk_spoken_turn_over_tls(server: FakeGeminiLiveServer) -> None:
    speech = synthesize("hello there friend", 16000).pcm
    async with client_for(server).aio.live.connect(model=MODEL, config=live_config()) as session:
        assert session.session_id == server.session.session_id
        await session.send_realtime_input(audio=types.Blob(data=speech, mime_type="audio/pcm;rate=16000"))
        await session.send_realtime_input(audio_stream_end=True)
        messages = await collect_turn(session)
    heard_ms = len(speech) * 1000 // 32000
    transcript = f"user turn 1 lasting {heard_ms} milliseconds"
    inputs = [m.server_content.input_transcription.text for m in messages
              if m.server_content is not None and m.server_content.input_transcription is not None]
    assert inputs == [transcript]
    reply = f"You said {transcript}"
    assert reply_audio(messages) == synthesize(reply, 24000).pcm
    assert output_transcript(messages) == reply
    flags = [(bool(m.server_content.generation_complete), bool(m.server_content.turn_complete))
             for m in messages if m.server_content is not None
             and (m.server_content.generation_complete or m.server_content.turn_complete)]
    assert flags == [(True, False), (False, True)]  # generationComplete comes before turnComplete
    usage = [m.usage_metadata for m in messages if m.usage_metadata is not None]
    assert len(usage) == 1 and usage[0].response_token_count and usage[0].total_token_count
    # what the SDK put on the wire: the key in the header, never in the URL
    headers = {k.lower(): v for k, v in server.session.request_headers.items()}
    assert headers["x-goog-api-key"] == "***"
    setup = server.session.setup
    assert setup is not None and setup["model"] == f"models/{MODEL}"
    assert server.session.input_audio_bytes == len(speech)
    assert_every_frame_validates(server)


@pytest.mark.parametrize("version", ["v1", "v1beta", "v1alpha"])
async def test_sdk_text_turn_and_resumption_handle(server: FakeGeminiLiveServer, version: str) -> None:
    client = client_for(server, api_version=version)
    async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
        first = await session._receive()  # the handle granted right after setupComplete
        assert first.session_resumption_update is not None and first.session_resumption_update.resumable
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="what time is it")]))
        messages = await collect_turn(session)
        assert output_transcript(messages) == "You said what time is it"
        assert reply_audio(messages) == synthesize("You said what time is it", 24000).pcm
        update = await session._receive()
        handle = update.session_resumption_update.new_handle
        assert handle and update.session_resumption_update.resumable
    # a new connection resumes the session with that handle: the history is there
    async with client.aio.live.connect(
            model=MODEL, config=live_config(session_resumption=types.SessionResumptionConfig(handle=handle))) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="and now")]))
        await collect_turn(session)
    assert [s.path_version for s in server.sessions] == [version, version]
    assert server.session.resumed and server.handles.honoured == 1
    assert ("user", "what time is it") in server.session.history
    assert_every_frame_validates(server)


async def test_sdk_tool_call_round_trip(server: FakeGeminiLiveServer) -> None:
    server.script_tool_call("get_weather", {"city": "Paris", "unit": "celsius"})
    tools = [types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_weather", description="Weather in a city",
        parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}})])]
    async with client_for(server).aio.live.connect(model=MODEL, config=live_config(tools=tools)) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="weather?")]))
        messages: list[Any] = []
        async for msg in session.receive():
            messages.append(msg)
            if msg.tool_call is not None:
                (call,) = msg.tool_call.function_calls
                assert call.name == "get_weather" and call.args == {"city": "Paris", "unit": "celsius"}
                await session.send_tool_response(function_responses=types.FunctionResponse(
                    id=call.id, name=call.name, response={"temperature": 21}))
    assert output_transcript(messages) == 'The tool returned {"temperature":21}'
    (response,) = server.session.function_responses
    assert response["name"] == "get_weather" and response["response"] == {"temperature": 21}
    declared = server.session.setup["tools"][0]["functionDeclarations"][0]
    assert declared["name"] == "get_weather"
    assert_every_frame_validates(server)


async def test_sdk_ephemeral_token_uses_the_constrained_method(server: FakeGeminiLiveServer) -> None:
    client = genai.Client(api_key="auth_tokens/fake-ephemeral", http_options=types.HttpOptions(
        base_url=server.base_url, api_version="v1alpha", async_client_args={"ssl": server.ssl_context}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns that ephemeral tokens are experimental
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await session.send_realtime_input(text="hi")
            messages = await collect_turn(session)
    assert output_transcript(messages) == "You said hi"
    headers = {k.lower(): v for k, v in server.session.request_headers.items()}
    assert headers["authorization"] == "Token ***"
    assert not any("fake-ephemeral" in v for v in headers.values())  # stored masked
    assert server.session.path_version == "v1alpha"
