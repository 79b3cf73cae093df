"""The Gemini codec decodes every server message kind, in both spellings, and turns bad
frames into typed Malformed/Unknown messages without raising."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gemini_sdk_oracle import validate_server_frame
from voiceengine.providers.gemini.codec import (
    GoAway, Malformed, ResumptionUpdate, ServerContent, SetupComplete, ToolCall, ToolCallCancellation,
    ToolCallPart, Unknown, UsageReport, VoiceActivity, decode, parse_duration_ms,
)

PCM = bytes(range(256)) * 4
AUDIO_PART = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(PCM).decode()}}

KINDS: list[tuple[dict[str, Any], Any]] = [
    ({"setupComplete": {"sessionId": "s-1"}}, SetupComplete(session_id="s-1")),
    ({"setupComplete": {}}, SetupComplete()),
    ({"serverContent": {"modelTurn": {"role": "model", "parts": [AUDIO_PART]}}}, ServerContent(audio=(PCM,))),
    ({"serverContent": {"modelTurn": {"parts": [{"text": "hi"}, {"text": "plan", "thought": True}]}}},
     ServerContent(text=("hi",))),
    ({"serverContent": {"outputTranscription": {"text": "Hel"}}}, ServerContent(output_transcription="Hel")),
    ({"serverContent": {"inputTranscription": {"text": "you"}}}, ServerContent(input_transcription="you")),
    ({"serverContent": {"interrupted": True}}, ServerContent(interrupted=True)),
    ({"serverContent": {"generationComplete": True}}, ServerContent(generation_complete=True)),
    ({"serverContent": {"turnComplete": True, "turnCompleteReason": "NEED_MORE_INPUT", "waitingForInput": True}},
     ServerContent(turn_complete=True, turn_complete_reason="NEED_MORE_INPUT", waiting_for_input=True)),
    ({"toolCall": {"functionCalls": [{"id": "c1", "name": "f", "args": {"city": "Paris"}}, {"id": "c2", "name": "g"}]}},
     ToolCall(calls=(ToolCallPart(call_id="c1", name="f", arguments='{"city":"Paris"}'),
                     ToolCallPart(call_id="c2", name="g", arguments="{}")))),
    ({"toolCallCancellation": {"ids": ["c1", "c2"]}}, ToolCallCancellation(ids=("c1", "c2"))),
    ({"usageMetadata": {"promptTokenCount": 30, "responseTokenCount": "70", "totalTokenCount": 100,
                        "cachedContentTokenCount": 5,
                        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 10},
                                                {"modality": "AUDIO", "tokenCount": 20}],
                        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 70}]}},
     UsageReport(prompt_tokens=30, response_tokens=70, cached_tokens=5,
                 prompt_by_modality={"TEXT": 10, "AUDIO": 20}, response_by_modality={"AUDIO": 70})),
    ({"goAway": {"timeLeft": "50s"}}, GoAway(time_left_ms=50_000)),
    ({"goAway": {}}, GoAway()),
    ({"sessionResumptionUpdate": {"newHandle": "h-2", "resumable": True, "lastConsumedClientMessageIndex": "7"}},
     ResumptionUpdate(new_handle="h-2", resumable=True, last_consumed_index=7)),
    ({"sessionResumptionUpdate": {"resumable": False}}, ResumptionUpdate()),
    ({"voiceActivity": {"voiceActivityType": "ACTIVITY_START"}}, VoiceActivity(started=True)),
    ({"voiceActivityDetectionSignal": {"vadSignalType": "VAD_SIGNAL_TYPE_EOS"}}, VoiceActivity(started=False)),
]


def snake(value: Any) -> Any:
    if isinstance(value, list):
        return [snake(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        name = "".join("_" + c.lower() if c.isupper() else c for c in key)
        out[name] = item if name == "args" else snake(item)
    return out


@pytest.mark.parametrize(("frame", "expected"), KINDS, ids=[next(iter(f)) for f, _ in KINDS])
def test_every_message_kind_in_both_spellings(frame: dict[str, Any], expected: Any) -> None:
    validate_server_frame(frame)  # the inputs are real LiveServerMessages
    assert decode(json.dumps(frame)) == [expected]
    assert decode(json.dumps(snake(frame))) == [expected]
    assert decode(json.dumps(frame).encode()) == [expected]


def test_several_fields_in_one_frame_decode_in_wire_order() -> None:
    frame = {"serverContent": {"turnComplete": True}, "usageMetadata": {"totalTokenCount": 3}}
    validate_server_frame(frame)
    assert decode(json.dumps(frame)) == [ServerContent(turn_complete=True), UsageReport()]


def test_function_call_args_keep_their_spelling() -> None:
    (message,) = decode(json.dumps({"tool_call": {"function_calls": [{"id": "c", "name": "f",
                                                                       "args": {"user_name": "x"}}]}}))
    assert isinstance(message, ToolCall) and json.loads(message.calls[0].arguments) == {"user_name": "x"}


@pytest.mark.parametrize(("text", "field"), [
    ("not json", None),
    ("[1, 2]", None),
    ('"text"', None),
    ('{"serverContent": []}', "serverContent"),
    ('{"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm", "data": "@@"}}]}}}',
     "serverContent"),
    ('{"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "image/png", "data": ""}}]}}}',
     "serverContent"),
    ('{"serverContent": {"turnComplete": "yes"}}', "serverContent"),
    ('{"toolCall": {"functionCalls": "not-a-list"}}', "toolCall"),
    ('{"toolCall": {"functionCalls": [{"name": "f"}]}}', "toolCall"),
    ('{"toolCall": {"functionCalls": [{"id": "c", "name": "f", "args": [1]}]}}', "toolCall"),
    ('{"toolCallCancellation": {"ids": [1]}}', "toolCallCancellation"),
    ('{"usageMetadata": {"totalTokenCount": -1, "promptTokenCount": -4}}', "usageMetadata"),
    ('{"usageMetadata": {"promptTokensDetails": {"modality": "TEXT"}}}', "usageMetadata"),
    ('{"goAway": {"timeLeft": "soon"}}', "goAway"),
    ('{"goAway": {"timeLeft": 50}}', "goAway"),
    ('{"sessionResumptionUpdate": {"newHandle": 5}}', "sessionResumptionUpdate"),
    ('{"voiceActivity": {"voiceActivityType": "LOUD"}}', "voiceActivity"),
])
def test_malformed_frames_are_typed(text: str, field: str | None) -> None:
    (message,) = decode(text)
    assert isinstance(message, Malformed) and message.field == field and message.reason


def test_unknown_fields_are_typed_and_the_rest_still_decodes() -> None:
    messages = decode('{"futureThing": {"x": 1}, "goAway": {"timeLeft": "1.5s"}}')
    assert messages == [Unknown(name="futureThing", raw={"futureThing": {"x": 1}, "goAway": {"timeLeft": "1.5s"}}),
                        GoAway(time_left_ms=1500)]
    assert decode("{}") == [Unknown(name="", raw={})]


def test_raw_never_keeps_audio() -> None:
    frame = {"serverContent": {"modelTurn": {"parts": [AUDIO_PART]}}, "extra": 1}
    unknown = [m for m in decode(json.dumps(frame)) if isinstance(m, Unknown)]
    assert unknown and AUDIO_PART["inlineData"]["data"] not in json.dumps(unknown[0].raw)


@pytest.mark.parametrize(("text", "ms"), [("0s", 0), ("50s", 50_000), ("1.5s", 1500), ("0.001s", 1),
                                          ("2.000000001s", 2000), ("10.25s", 10_250)])
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["serverContent", "toolCall", "goAway", "usageMetadata", "modelTurn",
                                         "parts", "inlineData", "data", "ids", "functionCalls", "timeLeft",
                                         "setupComplete", "turnComplete", "x"]), inner, max_size=4),
                    max_leaves=12))
def test_decode_never_raises(value: Any) -> None:
    for message in decode(json.dumps(value)):
        assert isinstance(message, (SetupComplete, ServerContent, ToolCall, ToolCallCancellation, UsageReport,
                                    GoAway, ResumptionUpdate, VoiceActivity, Unknown, Malformed))
