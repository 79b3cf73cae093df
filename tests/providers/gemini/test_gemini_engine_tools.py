"""A tool round trip on Gemini through VoiceEngine's function handler, over loopback: the
call reaches ``on_function_call``, its result goes back as one ``toolResponse`` (the name
remembered from the call, the object sent as the response) and the service speaks the
answer once."""

from __future__ import annotations

import asyncio

from gemini_provider_helpers import make_provider
from voiceengine.engine import VoiceEngine, VoiceEngineConfig
from voiceengine.providers.types import EventType, FunctionCall, ProviderEvent
from voiceengine.testing import FakeGeminiLiveServer
from voiceengine.testing.audio import synthesize

TOOL = {"type": "function", "name": "get_weather", "description": "weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


async def test_tool_round_trip_through_the_engine_function_handler() -> None:
    async with FakeGeminiLiveServer(speed=float("inf")) as server:
        server.script_tool_call("get_weather", {"city": "Oslo"})
        provider = make_provider(server, tools=[TOOL])
        calls: list[FunctionCall] = []
        done = asyncio.Event()
        events: list[ProviderEvent] = []

        def on_event(event: ProviderEvent) -> None:
            events.append(event)
            if event.type is EventType.RESPONSE_DONE:
                done.set()

        async with VoiceEngine(provider, VoiceEngineConfig(playback_speed=None)) as engine:
            engine.events.subscribe(on_event)

            def on_call(call: FunctionCall) -> dict[str, str]:
                calls.append(call)
                return {"city": call.parsed_arguments()["city"], "sky": "clear"}

            engine.on_function_call = on_call
            heard = bytearray()
            engine.on_audio_response = heard.extend
            await engine.send_text("Weather in Oslo?")
            await asyncio.wait_for(done.wait(), 10)
    assert [(c.name, c.parsed_arguments()) for c in calls] == [("get_weather", {"city": "Oslo"})]
    (response,) = [r for f in server.received if "toolResponse" in f for r in f["toolResponse"]["functionResponses"]]
    assert response["id"] == calls[0].call_id and response["name"] == "get_weather"
    assert response["response"] == {"city": "Oslo", "sky": "clear"}
    spoken = 'The tool returned {"city":"Oslo","sky":"clear"}'
    assert [e.data for e in events if e.type is EventType.TRANSCRIPT_DONE] == [spoken]
    assert len([e for e in events if e.type is EventType.RESPONSE_STARTED]) == 1
    assert bytes(heard) == synthesize(spoken, 24000).pcm
    assert not [e for e in events if e.type is EventType.ERROR]
    assert not [f for f in server.received if "realtimeInput" in f]  # no stray audioStreamEnd
