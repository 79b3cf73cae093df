"""The Live wire codec: client events validate strictly against openai-python's ClientEvent;
every server event kind decodes to its record; malformed and unknown input never raises."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from live_schema import check_client_event, check_server_event
from voiceengine.providers.openai_live import codec
from voiceengine.providers.openai_live.codec import (
    Ack, BackendEvent, DelegationCreated, Info, InputTranscript, Malformed, OutputAudio, OutputTranscript,
    ServerError, SessionClosed, SessionStarted, SessionUpdated, Unknown, UsageUpdated,
)

TOOLS = ({"type": "function", "name": "lookup", "description": "Look up.", "parameters": {"type": "object"}},
         {"name": "no_type_given"})
SESSION = {"id": "sess_1", "expires_at": 1, "model": "gpt-live-1", "status": "active"}


def _start(**kw: Any) -> str:
    args: dict[str, Any] = {"model": "gpt-live-1", "instructions": "Be brief.", "voice": "marin", "sample_rate": 24000,
                            "tools": TOOLS, "backend_model": "gpt-5-mini", "backend_instructions": "Use tools.",
                            "acknowledgement_delay_ms": 200,
                            "history": [("user", "hi"), ("assistant", "hello"), ("developer", "note")]}
    args.update(kw)
    return codec.encode_session_start(codec.session_config(**args), "ve_1")


CLIENT_FRAMES = {
    "session.start (full)": _start(),
    "session.start (bare, 16 kHz)": _start(instructions=None, voice=None, sample_rate=16000, tools=(), history=()),
    "session.update": codec.encode_session_update({"delegation": {"type": "responses",
                                                                   "responses": {"model": "gpt-5"}}}, "ve_2"),
    "audio": codec.encode_audio(b"\x01\x00" * 240),
    "audio (memoryview)": codec.encode_audio(memoryview(bytearray(b"\x00\x10" * 8))),
    "thinking": codec.encode_context("thinking", "silent", "ve_3"),
    "instructions": codec.encode_context("instructions", "rule", None),
    "commentary": codec.encode_context("commentary", "say this", "ve_4"),
    "user message": codec.encode_user_message("What's the weather?", "ve_5"),
    "function output": codec.encode_function_output("call_1", '{"ok":true}', "ve_6"),
    "response.create": codec.encode_response_create("ve_7"),
    "response.create (no id)": codec.encode_response_create(),
    "session.close": codec.encode_session_close("ve_8"),
    "mute": codec.encode_mute(True, "ve_9"),
    "unmute": codec.encode_mute(False),
}


@pytest.mark.parametrize("name", sorted(CLIENT_FRAMES))
def test_every_client_frame_validates_strictly_against_the_sdk(name: str) -> None:
    event = json.loads(CLIENT_FRAMES[name])
    check_client_event(event)


def test_session_start_shape() -> None:
    session = json.loads(_start())["session"]
    assert session["audio"] == {"format": {"type": "audio/pcm", "rate": 24000}, "output": {"voice": "marin"}}
    backend = session["delegation"]["responses"]
    assert backend["model"] == "gpt-5-mini" and [t["name"] for t in backend["tools"]] == ["lookup", "no_type_given"]
    assert all(t["type"] == "function" for t in backend["tools"])
    assert [m["role"] for m in session["input"]] == ["user", "assistant", "developer"]
    assert session["input"][1]["content"] == [{"type": "output_text", "text": "hello"}]


def test_audio_frame_carries_the_pcm_and_no_event_id() -> None:
    pcm = bytes(range(256)) * 3
    event = json.loads(codec.encode_audio(pcm))
    assert base64.b64decode(event["audio"]) == pcm and "event_id" not in event


def test_bad_context_kind_and_history_role_raise() -> None:
    with pytest.raises(ValueError):
        codec.encode_context("shout", "x")
    with pytest.raises(ValueError):
        codec.session_config(model="m", instructions=None, voice=None, sample_rate=24000, tools=(),
                             backend_model="b", backend_instructions=None, acknowledgement_delay_ms=None,
                             history=[("system", "x")])


# ------------------------------------------------------------------ decoding
PCM = b"\x10\x00\xf0\xff" * 50
SERVER_SAMPLES: dict[str, tuple[dict[str, Any], Any]] = {
    "session.started": ({"type": "session.started", "event_id": "e", "session": SESSION},
                        SessionStarted(session=SESSION, session_id="sess_1")),
    "session.updated": ({"type": "session.updated", "event_id": "e", "session": SESSION},
                        SessionUpdated(session=SESSION)),
    "session.output_audio.delta": ({"type": "session.output_audio.delta", "delta": base64.b64encode(PCM).decode()},
                                   OutputAudio(pcm=PCM)),
    "session.output_transcript.delta": ({"type": "session.output_transcript.delta", "event_id": "e", "delta": "Hi",
                                         "start_ms": 10, "end_ms": 20}, OutputTranscript(delta="Hi", start_ms=10, end_ms=20)),
    "session.input_transcript.delta": ({"type": "session.input_transcript.delta", "event_id": "e", "delta": "yo",
                                        "start_ms": 5, "end_ms": 9}, InputTranscript(delta="yo", start_ms=5, end_ms=9)),
    "session.delegation.created": ({"type": "session.delegation.created", "event_id": "e", "offset_ms": 3,
                                    "delegation": {"id": "d1", "target": "responses", "type": "delegation",
                                                   "response_id": "r1"}},
                                   DelegationCreated(delegation_id="d1", target="responses", response_id="r1", offset_ms=3)),
    "response.event": ({"type": "response.event", "event_id": "e", "delegation_id": "d1",
                        "event": {"type": "response.function_call_arguments.delta", "sequence_number": 1,
                                  "item_id": "fc", "output_index": 0, "delta": "{"}}, BackendEvent),
    "session.usage.updated": ({"type": "session.usage.updated", "event_id": "e", "usage": {"seconds": 12.0}},
                              UsageUpdated(seconds=12.0)),
    "session.closed": ({"type": "session.closed", "event_id": "e", "reason": "expired", "session": SESSION,
                        "usage": {"seconds": 60}}, SessionClosed(reason="expired", seconds=60.0)),
    "error": ({"type": "error", "event_id": "e", "error": {"type": "invalid_request_error", "code": "bad",
                                                          "message": "no", "param": "x", "client_event_id": "ve_1"}},
              ServerError(code="bad", message="no", type="invalid_request_error", param="x", client_event_id="ve_1")),
    "info": ({"type": "info", "event_id": "e", "code": "c", "message": "m"}, Info(code="c", message="m")),
    **{t: ({"type": t, "event_id": "e", "client_event_id": "ve_2", **({"start_ms": 1, "end_ms": 1} if "appended" in t else {})},
           Ack(type=t, client_event_id="ve_2")) for t in sorted(codec.ACK_TYPES)},
}


def test_samples_cover_every_decoder() -> None:
    assert set(SERVER_SAMPLES) == set(codec.DECODERS)


@pytest.mark.parametrize("wire_type", sorted(SERVER_SAMPLES))
def test_every_server_event_kind_decodes(wire_type: str) -> None:
    event, expected = SERVER_SAMPLES[wire_type]
    check_server_event(event)  # the samples are real wire shapes
    record = codec.decode(json.dumps(event))
    if isinstance(expected, type):
        assert isinstance(record, expected)
    else:
        assert record == expected


@pytest.mark.parametrize("wire_type", sorted(SERVER_SAMPLES))
def test_every_known_kind_with_fields_missing_is_malformed_not_a_crash(wire_type: str) -> None:
    event, _ = SERVER_SAMPLES[wire_type]
    if wire_type in codec.ACK_TYPES:
        stripped = {"type": wire_type, "client_event_id": 5}  # mistyped
    else:
        stripped = {"type": wire_type}
    record = codec.decode(json.dumps(stripped))
    assert isinstance(record, Malformed) and record.type == wire_type and record.reason


@pytest.mark.parametrize("text", ["", "{", "[]", "null", "42", '{"no_type": 1}', '{"type": 7}', b"\xff\xfe"])
def test_non_events_are_malformed(text: str | bytes) -> None:
    record = codec.decode(text)
    assert isinstance(record, Malformed) and record.type is None


@pytest.mark.parametrize("delta", ["!!!", "AAA", base64.b64encode(b"\x01\x02\x03").decode()])
def test_bad_output_audio_is_malformed(delta: str) -> None:
    record = codec.decode(json.dumps({"type": "session.output_audio.delta", "delta": delta}))
    assert isinstance(record, Malformed) and record.type == "session.output_audio.delta"


def test_unknown_type_is_kept_raw() -> None:
    record = codec.decode('{"type": "session.brand_new", "x": 1}')
    assert isinstance(record, Unknown) and record.type == "session.brand_new" and record.raw["x"] == 1


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                     max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(wire_type=st.sampled_from(sorted(codec.DECODERS) + ["x"]), body=st.dictionaries(
    st.sampled_from(["delta", "session", "usage", "error", "event", "delegation", "start_ms", "end_ms", "reason",
                     "offset_ms", "code", "message", "client_event_id", "delegation_id"]), _json, max_size=6))
def test_decode_never_raises(wire_type: str, body: dict[str, Any]) -> None:
    record = codec.decode(json.dumps({**body, "type": wire_type}))
    assert record is not None
