"""Every frame the Gemini codec writes validates as google-genai's LiveClientMessage, and the
setup frame is the one google-genai itself sends for the same settings."""

from __future__ import annotations

import base64
import json

import pytest

from gemini_sdk_oracle import camel_keys, sdk_setup, types, validate_client_frame
from voiceengine.exceptions import ConfigurationError
from voiceengine.providers.gemini.codec import (
    HistoryTurn, ToolResult, encode_activity_end, encode_activity_start, encode_audio, encode_audio_stream_end,
    encode_client_content, encode_realtime_text, encode_setup, encode_tool_response,
)
from voiceengine.providers.gemini.config import EPHEMERAL_URL, GeminiConfig
from voiceengine.providers.types import TurnDetection, TurnDetectionMode

TOOL = {"type": "function", "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city_name": {"type": "string"}}, "required": ["city_name"]}}


def full_config(**changes: object) -> GeminiConfig:
    fields: dict[str, object] = dict(
        api_key="k", instructions="Be brief.", voice="Puck", language_code="en-US", temperature=0.6, tools=[TOOL],
        turn_detection=TurnDetection(mode=TurnDetectionMode.SERVER_VAD, silence_ms=600, prefix_ms=200,
                                     sensitivity="low", interrupt_on_speech=False),
        context_window_compression=True, compression_trigger_tokens=25_000, compression_target_tokens=12_000)
    fields.update(changes)
    return GeminiConfig(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("handle", [None, "resume-me"])
@pytest.mark.parametrize("history", [False, True])
async def test_setup_equals_what_google_genai_sends(handle: str | None, history: bool) -> None:
    config = full_config()
    ours = validate_client_frame(encode_setup(config, handle=handle, initial_history=history))
    sdk_config = types.LiveConnectConfig(
        response_modalities=["AUDIO"], system_instruction="Be brief.", temperature=0.6,
        speech_config=types.SpeechConfig(language_code="en-US", voice_config=types.VoiceConfig(
            prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Puck"))),
        tools=[types.Tool(function_declarations=[types.FunctionDeclaration(
            name="get_weather", description="Weather in a city", parameters_json_schema=TOOL["parameters"])])],
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(
                disabled=False, start_of_speech_sensitivity="START_SENSITIVITY_LOW",
                end_of_speech_sensitivity="END_SENSITIVITY_LOW", prefix_padding_ms=200, silence_duration_ms=600),
            activity_handling="NO_INTERRUPTION"),
        input_audio_transcription={}, output_audio_transcription={},
        session_resumption=types.SessionResumptionConfig(handle=handle),
        context_window_compression=types.ContextWindowCompressionConfig(
            trigger_tokens=25_000, sliding_window=types.SlidingWindow(target_tokens=12_000)),
        history_config=types.HistoryConfig(initial_history_in_client_content=True) if history else None)
    theirs = await sdk_setup("models/gemini-live-2.5-flash-preview", sdk_config)
    theirs["setup"]["systemInstruction"].pop("role")  # the SDK tags the instruction "user"; the service ignores it
    ours_full = json.loads(encode_setup(config, handle=handle, initial_history=history))
    assert camel_keys(ours_full) == theirs
    assert ours["setup"]["model"] == "models/gemini-live-2.5-flash-preview"


def test_minimal_setup_and_manual_turns() -> None:
    frame = validate_client_frame(encode_setup(GeminiConfig(api_key="k", turn_detection=None,
                                                            session_resumption=False, output_modalities=["text"])))
    setup = json.loads(encode_setup(GeminiConfig(api_key="k", turn_detection=None, session_resumption=False,
                                                 output_modalities=["text"])))["setup"]
    assert setup["realtimeInputConfig"] == {"automaticActivityDetection": {"disabled": True}}
    assert setup["generationConfig"] == {"responseModalities": ["TEXT"]}
    assert "sessionResumption" not in setup and "tools" not in setup and "systemInstruction" not in setup
    assert frame["setup"]["inputAudioTranscription"] == {}
    with pytest.raises(ValueError, match="session_resumption"):
        encode_setup(GeminiConfig(api_key="k", session_resumption=False), handle="h")


@pytest.mark.parametrize("n_samples", [0, 1, 2, 159, 160, 161, 1600])
def test_audio_frame(n_samples: int) -> None:
    pcm = bytes((i * 7) % 256 for i in range(2 * n_samples))
    frame = validate_client_frame(encode_audio(pcm))
    assert frame["realtimeInput"]["audio"]["mimeType"] == "audio/pcm;rate=16000"
    assert base64.b64decode(frame["realtimeInput"]["audio"]["data"]) == pcm
    assert json.loads(encode_audio(memoryview(pcm))) == json.loads(encode_audio(bytearray(pcm)))


def test_realtime_control_frames() -> None:
    assert validate_client_frame(encode_audio_stream_end()) == {"realtimeInput": {"audioStreamEnd": True}}
    assert validate_client_frame(encode_activity_start()) == {"realtimeInput": {"activityStart": {}}}
    assert validate_client_frame(encode_activity_end()) == {"realtimeInput": {"activityEnd": {}}}
    assert validate_client_frame(encode_realtime_text('quote " and é')) == {"realtimeInput": {"text": 'quote " and é'}}
    with pytest.raises(TypeError):
        encode_realtime_text(b"bytes")  # type: ignore[arg-type]


def test_client_content_with_text_and_function_parts() -> None:
    turns = [HistoryTurn.text("user", "hi"), HistoryTurn.text("model", "hello"),
             HistoryTurn(role="model", parts=({"functionCall": {"id": "c1", "name": "f", "args": {"a_b": 1}}},)),
             HistoryTurn(role="user", parts=({"functionResponse": {"id": "c1", "name": "f", "response": {"ok": 1}}},))]
    for complete in (True, False):
        frame = validate_client_frame(encode_client_content(turns, turn_complete=complete))
        assert frame["clientContent"]["turnComplete"] is complete
        assert [t["role"] for t in frame["clientContent"]["turns"]] == ["user", "model", "model", "user"]
    with pytest.raises(ValueError):
        HistoryTurn.text("assistant", "roles are user or model")
    with pytest.raises(ValueError):
        HistoryTurn(role="user", parts=())


def test_tool_response_frame() -> None:
    frame = validate_client_frame(encode_tool_response([
        ToolResult(call_id="c1", name="f", response={"temperature": 21}),
        ToolResult(call_id="c2", name="g", response={"output": "done"}, scheduling="SILENT")]))
    assert frame == {"toolResponse": {"functionResponses": [
        {"id": "c1", "name": "f", "response": {"temperature": 21}},
        {"id": "c2", "name": "g", "response": {"output": "done"}, "scheduling": "SILENT"}]}}
    with pytest.raises(ValueError):
        encode_tool_response([])
    with pytest.raises(ValueError):
        ToolResult(call_id="c", name="f", response={}, scheduling="LATER")


def test_config_urls_credentials_and_checks() -> None:
    config = GeminiConfig(api_key="secret-key-123")
    assert config.effective_url.endswith("v1beta.GenerativeService.BidiGenerateContent")
    assert config.auth_headers() == {"x-goog-api-key": "secret-key-123"}
    assert "secret-key-123" not in repr(config) and "secret-key-123" not in config.effective_url
    token = GeminiConfig(api_key="auth_tokens/abc")
    assert token.effective_url == EPHEMERAL_URL and token.auth_headers() == {"Authorization": "Token auth_tokens/abc"}
    assert GeminiConfig(api_key="k", url="ws://127.0.0.1:9/x").is_loopback
    with pytest.raises(ConfigurationError, match="loopback"):
        GeminiConfig(api_key="k", url="ws://example.com/ws")
    with pytest.raises(ConfigurationError, match="x-goog-api-key"):
        GeminiConfig(url="wss://example.com/ws?key=abc")
    with pytest.raises(ConfigurationError, match="only function tools"):
        GeminiConfig(api_key="k", tools=[{"type": "web_search"}])
    with pytest.raises(ConfigurationError, match="unknown function tool fields"):
        GeminiConfig(api_key="k", tools=[{"type": "function", "name": "f", "strict": True}])
    with pytest.raises(ConfigurationError, match="recycle_margin_s"):
        GeminiConfig(api_key="k", connection_limit_s=10, recycle_margin_s=10)
    assert GeminiConfig(api_key="k", context_window_compression=True).effective_session_limit_s is None
    assert GeminiConfig(api_key="k").effective_session_limit_s == 900.0
    assert GeminiConfig(api_key="k").ping_timeout_s == 60.0  # Gemini pongs take 8-30 s (python-genai #2935)
