"""Every client event we can produce validates against the openai SDK's types."""

from __future__ import annotations

import array
import base64
import json

import numpy as np
import openai.types.beta.realtime as beta_types
import openai.types.realtime as ga_types
import pydantic
import pytest

from voiceengine.exceptions import AudioFormatError
from voiceengine.providers.openai.config import OpenAIConfig
from voiceengine.providers.openai.protocol import RealtimeCodec, new_item_id, pcm_bytes
from voiceengine.providers.openai.session import RealtimeSession
from voiceengine.providers.types import MessageType

GA = pydantic.TypeAdapter(ga_types.RealtimeClientEvent)
BETA = pydantic.TypeAdapter(beta_types.RealtimeClientEvent)

TOOL = {"type": "function", "name": "lookup", "description": "d",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}

CONFIGS = [
    OpenAIConfig(api_key="k"),
    OpenAIConfig(api_key="k", turn_detection=None, output_modalities=["text"], voice=None),
    OpenAIConfig(api_key="k", turn_detection="semantic_vad", transcription_model="gpt-4o-transcribe",
                 noise_reduction="near_field", instructions="be brief", tools=[TOOL], max_output_tokens=200,
                 temperature=0.7),
    OpenAIConfig(api_key="k", turn_detection={"type": "server_vad", "silence_duration_ms": 300,
                                              "interrupt_response": False},
                 input_audio_format="audio/pcmu", output_audio_format="audio/pcma", max_output_tokens="inf"),
]


def _exercise(session: RealtimeSession) -> list[str]:
    """Drive every encoder path the session has; returns the JSON texts."""
    session.start()
    session.update_session(instructions="x", voice="cedar", turn_detection=None, transcription_model=None,
                           noise_reduction=None, tools=[{"function": {"name": "f", "parameters": {}}}],
                           tool_choice="auto", output_modalities=["audio"], max_output_tokens=50, speed=1.1)
    session.update_session(turn_detection={"type": "semantic_vad", "eagerness": "low"},
                           tool_choice={"type": "function", "name": "f"})
    session.append_audio(b"\x01\x00" * 480)
    session.commit_audio()
    session.clear_audio()
    session.send_text("hello", respond=False)
    session.send_text("context", role="system", respond=False)
    session.send_text("earlier answer", role="assistant", respond=False)
    session.add_item({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]},
                     previous_item_id="item_root")
    session.add_item({"type": "function_call", "name": "f", "call_id": "call_1", "arguments": "{}"})
    session.send_function_result("call_1", {"ok": True}, respond=False)
    session.create_response(instructions="short", output_modalities=["text"], conversation="none",
                            metadata={"k": "v"}, tools=[TOOL], tool_choice="required", max_output_tokens=10,
                            voice="marin", output_audio_format="audio/pcm",
                            input=[{"type": "message", "role": "user",
                                    "content": [{"type": "input_text", "text": "q"}]}])
    session.receive(json.dumps({"type": "response.created", "response": {"id": "r1"}}))
    session.create_response()  # queued
    session.cancel_response()
    session.truncate("item_a", 120, content_index=0)
    session.delete_item("item_b")
    session.send_raw(MessageType.CONVERSATION_ITEM_RETRIEVE, {"item_id": "item_c"})
    session.send_raw(MessageType.OUTPUT_AUDIO_BUFFER_CLEAR, None)
    session.receive(json.dumps({"type": "response.done", "response": {"id": "r1", "status": "cancelled"}}))
    return session.data_to_send()


@pytest.mark.parametrize("config", CONFIGS)
def test_every_ga_client_event_validates(config: OpenAIConfig) -> None:
    texts = _exercise(RealtimeSession(config))
    kinds = set()
    for text in texts:
        message = json.loads(text)
        GA.validate_python(message)
        kinds.add(message["type"])
    assert kinds == {t.value for t in MessageType}  # every client event kind exercised
    ids = [json.loads(t)["event_id"] for t in texts]
    assert len(ids) == len(set(ids)) and all(len(i) <= 32 for i in ids)


@pytest.mark.parametrize("config", CONFIGS)
def test_every_beta_client_event_validates(config: OpenAIConfig) -> None:
    import dataclasses

    texts = _exercise(RealtimeSession(dataclasses.replace(config, codec="beta")))
    for text in texts:
        message = json.loads(text)
        BETA.validate_python(message)
        assert "output_modalities" not in json.dumps(message.get("session", {}))


def test_ga_session_update_shape() -> None:
    session = RealtimeSession(CONFIGS[2])
    session.start()
    message = json.loads(session.data_to_send()[0])
    s = message["session"]
    assert s["type"] == "realtime" and s["instructions"] == "be brief"
    assert s["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert s["audio"]["input"]["turn_detection"] == {"type": "semantic_vad"}
    assert s["audio"]["input"]["transcription"] == {"model": "gpt-4o-transcribe"}
    assert s["audio"]["input"]["noise_reduction"] == {"type": "near_field"}
    assert s["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}
    assert s["output_modalities"] == ["audio"] and s["max_output_tokens"] == 200
    assert s["tools"][0]["name"] == "lookup" and "temperature" not in s
    manual = RealtimeSession(CONFIGS[1])
    manual.start()
    assert json.loads(manual.data_to_send()[0])["session"]["audio"]["input"]["turn_detection"] is None


def test_beta_session_update_shape_and_content_names() -> None:
    import dataclasses

    session = RealtimeSession(dataclasses.replace(CONFIGS[2], codec="beta"))
    session.start()
    session.send_text("earlier", role="assistant", respond=False)
    texts = session.data_to_send()
    s = json.loads(texts[0])["session"]
    assert s["input_audio_format"] == "pcm16" and s["modalities"] == ["audio", "text"]
    assert s["input_audio_transcription"] == {"model": "gpt-4o-transcribe"}
    assert s["turn_detection"] == {"type": "semantic_vad"} and s["temperature"] == 0.7
    assert s["max_response_output_tokens"] == 200
    item = json.loads(texts[1])
    assert item["item"]["content"][0]["type"] == "text"  # beta name of output_text


# ------------------------------------------------------------------ audio appends
PCM = bytes(range(256)) * 4


@pytest.mark.parametrize("buf", [
    PCM, bytearray(PCM), memoryview(PCM), np.frombuffer(PCM, dtype="<i2"), np.frombuffer(PCM, dtype=np.int16),
    array.array("h", PCM), memoryview(PCM).cast("h"), np.frombuffer(PCM, dtype=np.uint8),
    np.frombuffer(PCM, dtype="<i2").reshape(2, -1), memoryview(bytes(PCM)).toreadonly(),
], ids=["bytes", "bytearray", "memoryview", "np-le", "np-native", "array-h", "mv-h", "np-u8", "np-2d", "readonly"])
def test_append_accepts_any_pcm16_buffer(buf) -> None:
    message = json.loads(RealtimeCodec().input_audio_buffer_append(buf, "ev_1"))
    GA.validate_python(message)
    assert base64.b64decode(message["audio"], validate=True) == PCM
    assert message["event_id"] == "ev_1"


@pytest.mark.parametrize("buf, error", [
    (b"\x00\x01\x02", AudioFormatError),
    (np.zeros(4, dtype=">i2"), AudioFormatError),
    (np.zeros(8, dtype="<i2")[::2], AudioFormatError),
    (np.zeros(4, dtype=np.float32), TypeError),
    (np.zeros(4, dtype=np.int32), TypeError),
    (np.zeros(4, dtype=np.float64), TypeError),
    ("abcd", TypeError),
    (None, TypeError),
    (1234, TypeError),
    (array.array("f", [0.0]), TypeError),
])
def test_append_rejects_bad_buffers(buf, error) -> None:
    session = RealtimeSession(OpenAIConfig(api_key="k"))
    with pytest.raises(error):
        session.append_audio(buf)
    assert session.data_to_send() == [] and session.pending_requests == 0


@pytest.mark.parametrize("n", [0, 2, 4, 6, 4800, 4802])
def test_append_edge_lengths(n: int) -> None:
    session = RealtimeSession(OpenAIConfig(api_key="k"))
    session.append_audio(bytes(n))
    texts = session.data_to_send()
    assert len(texts) == (1 if n else 0)
    if n:
        assert base64.b64decode(json.loads(texts[0])["audio"]) == bytes(n)


def test_pcm_bytes_zero_copy() -> None:
    arr = np.arange(8, dtype=np.int16)
    view = pcm_bytes(arr)
    arr[0] = 0x0102
    assert bytes(view)[:2] == b"\x02\x01"  # a view of the caller's memory, not a copy


def test_item_ids_and_validation() -> None:
    ids = {new_item_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) <= 32 and i.startswith("item_") for i in ids)
    session = RealtimeSession(OpenAIConfig(api_key="k"))
    with pytest.raises(ValueError):
        session.add_item({"type": "message", "id": "x" * 33})
    with pytest.raises(ValueError):
        session.add_item({"role": "user"})
    with pytest.raises(TypeError):
        session.add_item(["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        session.create_response(bogus=1)
    with pytest.raises(TypeError):
        session.update_session(bogus=1)
    with pytest.raises(ValueError):
        session.update_session(voice="nobody")
    with pytest.raises(ValueError):
        session.send_text("x", role="robot")
    assert session.data_to_send() == []
