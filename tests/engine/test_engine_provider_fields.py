"""VoiceEngineConfig's provider fields (api_key, url, instructions, voice, tools) reach every
provider the engine builds by name, and the wire of its fake server."""

from __future__ import annotations

import math
from typing import Any

import pytest

from voiceengine.engine import VoiceEngine, VoiceEngineConfig
from voiceengine.exceptions import ConfigurationError
from voiceengine.providers.gemini import GeminiConfig
from voiceengine.providers.mock import MockConfig
from voiceengine.providers.openai import OpenAIConfig
from voiceengine.providers.openai_live import OpenAILiveConfig
from voiceengine.testing import FakeGeminiLiveServer, FakeOpenAILiveServer, FakeRealtimeServer

TOOL = {"type": "function", "name": "get_weather", "description": "The weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
INSTRUCTIONS = "Answer in one short sentence."


def _fields(url: str, voice: str) -> VoiceEngineConfig:
    return VoiceEngineConfig(api_key="test-key", url=url, instructions=INSTRUCTIONS, voice=voice, tools=[TOOL],
                             playback_speed=None)


@pytest.mark.parametrize(("name", "config_class", "voice"), [("openai", OpenAIConfig, "cedar"),
                                                             ("openai-live", OpenAILiveConfig, "cedar"),
                                                             ("gemini", GeminiConfig, "Puck")])
def test_every_field_reaches_the_provider_config(name: str, config_class: type, voice: str) -> None:
    engine = VoiceEngine(name, _fields("ws://127.0.0.1:9/custom/path", voice))
    config = engine.provider.config
    assert type(config) is config_class
    assert config.url == "ws://127.0.0.1:9/custom/path"
    assert config.instructions == INSTRUCTIONS and config.voice == voice
    assert config.tools == (TOOL,)
    assert config.key == "test-key"


def test_the_mock_takes_the_tools_and_ignores_the_url() -> None:
    engine = VoiceEngine("mock", _fields("ws://127.0.0.1:9/ignored", "alloy"))
    assert type(engine.provider.config) is MockConfig
    assert engine.provider.config.tools == (TOOL,) and engine.provider.config.instructions == INSTRUCTIONS


def test_no_tools_keeps_the_provider_default_and_bad_tools_are_refused() -> None:
    assert VoiceEngine("gemini", VoiceEngineConfig(api_key="k")).provider.config.tools == ()
    with pytest.raises(ConfigurationError):
        VoiceEngineConfig(tools=TOOL)  # type: ignore[arg-type]  # one tool, not a list of them
    with pytest.raises(ConfigurationError):
        VoiceEngineConfig(tools=["get_weather"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError):  # the provider's own check: Gemini takes function tools
        VoiceEngine("gemini", VoiceEngineConfig(api_key="k", tools=[{"type": "web_search"}]))


async def test_gemini_setup_carries_instructions_voice_and_tools() -> None:
    async with FakeGeminiLiveServer(speed=math.inf) as server:
        async with VoiceEngine("gemini", _fields(server.url, "Puck")):
            frame = await server.wait_for_received(lambda f: "setup" in f)
    setup: dict[str, Any] = frame["setup"]
    assert setup["systemInstruction"] == {"parts": [{"text": INSTRUCTIONS}]}
    voice = setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"]
    assert voice == "Puck"
    (declaration,) = setup["tools"][0]["functionDeclarations"]
    assert declaration["name"] == "get_weather" and declaration["description"] == TOOL["description"]
    assert declaration["parametersJsonSchema"] == TOOL["parameters"]


async def test_openai_live_session_start_carries_instructions_voice_and_tools() -> None:
    async with FakeOpenAILiveServer(speed=math.inf) as server:
        async with VoiceEngine("openai-live", _fields(server.url, "cedar")):
            event = await server.wait_for_received(lambda e: e.get("type") == "session.start")
    session = event["session"]
    assert session["instructions"] == INSTRUCTIONS
    assert session["audio"]["output"]["voice"] == "cedar"
    assert session["delegation"]["responses"]["tools"] == [TOOL]


async def test_openai_realtime_session_update_carries_instructions_voice_and_tools() -> None:
    async with FakeRealtimeServer() as server:
        async with VoiceEngine("openai", _fields(server.url, "cedar")):
            event = await server.wait_for_received(lambda e: e.get("type") == "session.update"
                                                   and "tools" in e["session"])
    session = event["session"]
    assert session["instructions"] == INSTRUCTIONS
    assert session["audio"]["output"]["voice"] == "cedar"
    assert session["tools"] == [TOOL]


@pytest.mark.parametrize("name", ["gemini", "openai-live"])
async def test_a_service_that_owns_turn_taking_still_connects_under_server_vad(name: str) -> None:
    """Regression: the engine asked every provider to stop its own replies and Gemini Live
    and OpenAI Live refused (InvalidState at connect). Their service replies by itself."""
    server_class = FakeGeminiLiveServer if name == "gemini" else FakeOpenAILiveServer
    async with server_class(speed=math.inf) as server:
        engine = VoiceEngine(name, VoiceEngineConfig(api_key="k", url=server.url, playback_speed=None))
        async with engine:
            assert engine.injector.auto_response is True
        assert not any("turn_detection" in str(f) for f in server.received[1:])
