"""Decoding every server event type the openai SDK defines (GA and beta)."""

from __future__ import annotations

import base64
import json

import openai.types.beta.realtime as beta_types
import openai.types.realtime as ga_types
import pytest
from openai_sdk_samples import PCM, sample, server_event_models, wire_type

from voiceengine.providers.openai.beta import BetaCodec
from voiceengine.providers.openai.decoders import BETA_DECODERS, GA_DECODERS, PASSTHROUGH_TYPES, DecodeContext
from voiceengine.providers.openai.codecs import make_codec
from voiceengine.providers.openai.protocol import RealtimeCodec
from voiceengine.providers.types import EventType, FunctionCall, ResponseInfo

GA_MODELS = server_event_models(ga_types.RealtimeServerEvent)
BETA_MODELS = server_event_models(beta_types.RealtimeServerEvent)


def _ctx() -> DecodeContext:
    return DecodeContext(provider="openai", session_id="sess_1")


def test_ga_table_covers_every_sdk_server_event() -> None:
    sdk = {wire_type(m) for m in GA_MODELS}
    assert sdk - set(GA_DECODERS) == set()
    assert len(sdk) >= 46


def test_beta_table_covers_every_beta_server_event() -> None:
    sdk = {wire_type(m) for m in BETA_MODELS}
    assert sdk - set(BETA_DECODERS) == set()


@pytest.mark.parametrize("model", GA_MODELS, ids=wire_type)
def test_every_ga_event_decodes(model) -> None:
    message = sample(model)
    decoded = RealtimeCodec().decode(json.dumps(message), _ctx())
    event = decoded.event
    assert decoded.wire_type == message["type"]
    if message["type"] == "error":
        assert event.type is EventType.ERROR and event.error.code == "x"
    else:
        assert event.type is not EventType.ERROR, event.error
    assert (event.type is EventType.UNKNOWN) == (message["type"] in PASSTHROUGH_TYPES)
    assert event.provider == "openai"


@pytest.mark.parametrize("model", BETA_MODELS, ids=wire_type)
def test_every_beta_event_decodes(model) -> None:
    message = sample(model)
    event = BetaCodec().decode(json.dumps(message), _ctx()).event
    if message["type"] != "error":
        assert event.type is not EventType.ERROR, event.error
    assert (event.type is EventType.UNKNOWN) == (
        message["type"] in PASSTHROUGH_TYPES or message["type"] == "transcription_session.updated"
    )


def _decode(message: dict, codec: RealtimeCodec | None = None):
    return (codec or RealtimeCodec()).decode(json.dumps(message), _ctx()).event


@pytest.mark.parametrize("name", ["response.output_audio.delta", "response.audio.delta"])
def test_audio_delta_is_decoded_pcm_without_raw(name: str) -> None:
    codec = RealtimeCodec() if name.startswith("response.output") else BetaCodec()
    event = _decode({"type": name, "event_id": "e", "response_id": "r1", "item_id": "i1", "output_index": 0,
                     "content_index": 0, "delta": base64.b64encode(PCM).decode()}, codec)
    assert event.type is EventType.AUDIO_DELTA
    assert event.data == PCM and event.raw is None
    assert (event.item_id, event.response_id, event.session_id) == ("i1", "r1", "sess_1")


def test_beta_names_map_to_the_same_events() -> None:
    pairs = [
        ("response.audio_transcript.delta", {"delta": "hi"}, EventType.TRANSCRIPT_DELTA, "hi"),
        ("response.audio_transcript.done", {"transcript": "hi"}, EventType.TRANSCRIPT_DONE, "hi"),
        ("response.text.delta", {"delta": "t"}, EventType.TEXT_DELTA, "t"),
        ("response.text.done", {"text": "tt"}, EventType.TEXT_DONE, "tt"),
        ("response.audio.done", {}, EventType.AUDIO_DONE, None),
    ]
    for name, extra, kind, data in pairs:
        event = _decode({"type": name, "response_id": "r", "item_id": "i", "content_index": 0, **extra}, BetaCodec())
        assert (event.type, event.data) == (kind, data)
    created = _decode({"type": "conversation.item.created", "previous_item_id": "p",
                       "item": {"id": "i2", "type": "message", "role": "user", "content": []}}, BetaCodec())
    assert created.type is EventType.ITEM_ADDED and created.data["previous_item_id"] == "p"
    # the GA codec does not speak beta names: they stay visible as UNKNOWN
    assert _decode({"type": "response.audio.delta", "delta": ""}).type is EventType.UNKNOWN


def test_specific_mappings() -> None:
    event = _decode({"type": "response.done", "response": {
        "id": "r1", "status": "cancelled", "status_details": {"type": "cancelled", "reason": "turn_detected"},
        "output": [{"id": "i1", "type": "message"}], "usage": {"total_tokens": 3}, "conversation_id": "c1"}})
    info = event.data
    assert isinstance(info, ResponseInfo)
    assert (info.response_id, info.status, info.reason, info.output_item_ids, info.conversation) == (
        "r1", "cancelled", "turn_detected", ("i1",), "c1")
    assert info.usage == {"total_tokens": 3} and event.response_id == "r1"

    event = _decode({"type": "response.function_call_arguments.done", "name": "f", "call_id": "c", "item_id": "i",
                     "response_id": "r", "output_index": 0, "arguments": "{\"a\":1}"})
    assert isinstance(event.data, FunctionCall) and event.data.parsed_arguments() == {"a": 1}

    event = _decode({"type": "session.created", "session": {"id": "sess_9", "type": "realtime"}})
    assert event.type is EventType.SESSION_CREATED and event.session_id == "sess_9"

    event = _decode({"type": "conversation.item.truncated", "item_id": "i", "content_index": 0, "audio_end_ms": 5})
    assert event.data == {"content_index": 0, "audio_end_ms": 5} and event.item_id == "i"

    event = _decode({"type": "input_audio_buffer.speech_started", "audio_start_ms": 7, "item_id": "u"})
    assert event.data == {"audio_start_ms": 7}

    event = _decode({"type": "conversation.item.input_audio_transcription.failed", "item_id": "u",
                     "content_index": 0, "error": {"code": "bad_audio", "message": "no"}})
    assert event.type is EventType.INPUT_TRANSCRIPT_FAILED and event.error.code == "bad_audio"

    event = _decode({"type": "rate_limits.updated", "rate_limits": [{"name": "tokens", "remaining": 5}]})
    assert event.type is EventType.RATE_LIMITS and event.data[0]["remaining"] == 5

    event = _decode({"type": "some.future.event", "item_id": "i", "x": 1})
    assert event.type is EventType.UNKNOWN and event.data == "some.future.event" and event.raw["x"] == 1


def test_make_codec() -> None:
    assert make_codec("ga").headers == {}
    assert dict(make_codec("beta").headers) == {"OpenAI-Beta": "realtime=v1"}
    assert "Authorization" not in make_codec("beta").headers
    with pytest.raises(ValueError):
        make_codec("v3")
