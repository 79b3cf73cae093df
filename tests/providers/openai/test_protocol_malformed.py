"""Malformed server input becomes ERROR events, never exceptions."""

from __future__ import annotations

import base64
import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceengine.providers.openai.config import OpenAIConfig
from voiceengine.providers.openai.decoders import DecodeContext, b64decode_strict
from voiceengine.providers.openai.protocol import RealtimeCodec
from voiceengine.providers.openai.session import RealtimeSession
from voiceengine.providers.types import EventType

AUDIO = {"type": "response.output_audio.delta", "response_id": "r", "item_id": "i", "content_index": 0,
         "output_index": 0}

MALFORMED = [
    pytest.param("", id="empty"),
    pytest.param("{", id="truncated-json"),
    pytest.param("nan", id="not-json"),
    pytest.param("[1, 2]", id="array"),
    pytest.param('"text"', id="string"),
    pytest.param("null", id="null"),
    pytest.param("{}", id="no-type"),
    pytest.param('{"type": 5}', id="int-type"),
    pytest.param("[" * 100000 + "]" * 100000, id="deep-nesting"),
    pytest.param(b'{"type": "session.created"}', id="binary-frame"),
    pytest.param(bytearray(b"\x00\xff"), id="binary-garbage"),
    pytest.param('{"type": "error"}', id="error-without-error"),
    pytest.param('{"type": "error", "error": {"code": "x"}}', id="error-without-message"),
    pytest.param('{"type": "session.created", "session": []}', id="session-array"),
    pytest.param(json.dumps({**AUDIO, "delta": "not base64!"}), id="audio-bad-alphabet"),
    pytest.param(json.dumps({**AUDIO, "delta": "AAA"}), id="audio-bad-padding"),
    pytest.param(json.dumps({**AUDIO, "delta": "AAAA=AAA"}), id="audio-data-after-padding"),
    pytest.param(json.dumps({**AUDIO, "delta": "éé=="}), id="audio-non-ascii"),
    pytest.param(json.dumps({**AUDIO, "delta": base64.b64encode(b"abc").decode()}), id="audio-odd-bytes"),
    pytest.param(json.dumps({**AUDIO, "delta": 12}), id="audio-delta-int"),
    pytest.param(json.dumps({**AUDIO, "delta": "AAAA", "item_id": None}), id="audio-item-null"),
    pytest.param(json.dumps({**AUDIO, "delta": "AAAA", "content_index": "0"}), id="audio-index-str"),
    pytest.param('{"type": "conversation.item.truncated", "item_id": "i", "audio_end_ms": true}', id="bool-int"),
    pytest.param('{"type": "response.created", "response": null}', id="response-null"),
    pytest.param('{"type": "rate_limits.updated", "rate_limits": [1]}', id="rate-limits-items"),
    pytest.param('{"type": "response.function_call_arguments.done", "call_id": "c"}', id="call-missing"),
    pytest.param('{"type": "conversation.item.added", "item": "x"}', id="item-str"),
]


@pytest.mark.parametrize("message", MALFORMED)
def test_malformed_becomes_error_event(message) -> None:
    decoded = RealtimeCodec().decode(message, DecodeContext())
    event = decoded.event
    assert event.type is EventType.ERROR
    assert event.error is not None and event.error.remote and event.error.code == "malformed_event"
    assert not event.error.fatal and decoded.message is None
    assert event.raw is None  # a malformed message (maybe audio) is not kept


@pytest.mark.parametrize("message", MALFORMED)
def test_session_receive_survives_malformed(message) -> None:
    session = RealtimeSession(OpenAIConfig(api_key="k"))
    events = session.receive(message)
    assert [e.type for e in events] == [EventType.ERROR]
    assert session.data_to_send() == []


@pytest.fixture(params=["pybase64", "binascii"])
def base64_backend(request, monkeypatch):
    """Run the strict decoder with pybase64 and with the stdlib fallback."""
    from voiceengine.providers import base64_audio

    if request.param == "binascii":
        monkeypatch.setattr(base64_audio, "_pybase64", None)
    elif base64_audio._pybase64 is None:
        pytest.skip("pybase64 not installed")
    return request.param


@pytest.mark.parametrize("text", ["", "AAAA", "AAECAw==", "AAECAwQ="])
def test_strict_base64_accepts_valid(text: str, base64_backend) -> None:
    assert b64decode_strict(text) == base64.b64decode(text)


@pytest.mark.parametrize("text", ["A", "AAA", "AA=A", "AAAA=", "AAAA====", "A A A A", "AAAA\n", "@@@@"])
def test_strict_base64_rejects_invalid(text: str, base64_backend) -> None:
    with pytest.raises(ValueError):
        b64decode_strict(text)


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
_json = st.recursive(_json_leaf, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)), max_leaves=12)
_TYPES = ["error", "session.created", "response.output_audio.delta", "response.created", "response.done",
          "conversation.item.added", "response.function_call_arguments.done", "response.output_item.done",
          "response.output_item.added", "conversation.item.deleted", "input_audio_buffer.speech_started",
          "conversation.item.truncated", "rate_limits.updated", "unknown.kind"]
_KEYS = ["item", "response", "session", "error", "delta", "item_id", "response_id", "content_index", "call_id",
         "name", "arguments", "audio_end_ms", "audio_start_ms", "rate_limits", "transcript", "previous_item_id"]
_event_like = st.builds(
    lambda t, fields: json.dumps({"type": t, **fields}),
    st.sampled_from(_TYPES),
    st.dictionaries(st.sampled_from(_KEYS), _json, max_size=6),
)
#: The four classes of fuzzed frame, each tagged so the test can prove it drew all of them.
_FRAME_CLASSES = {
    "text": st.text(max_size=60),
    "binary": st.binary(max_size=40),
    "json": _json.map(json.dumps),
    "event_like": _event_like,
}
_frames = st.one_of(*(strategy.map(lambda frame, tag=tag: (tag, frame)) for tag, strategy in _FRAME_CLASSES.items()))
FUZZ_EXAMPLES = 1_000
MIN_PER_CLASS = 50


# Profiled: ~99 % of this test's time is Hypothesis drawing the recursive JSON strategy,
# ~1 % is session.receive(). 10,000 random examples took 70 s alone and over 240 s at load
# average ~6 on the shared 2-core machine. The volume fuzzing of receive() is the seeded
# 10^5-frame test in test_fuzz_decode.py; this one is Hypothesis' edge-case search over
# arbitrary frames: 1,000 derandomized examples (the same ones every run, so a failure
# reproduces), with every frame class drawn at least MIN_PER_CLASS times.
def test_fuzz_receive_never_raises() -> None:
    drawn: Counter[str] = Counter()

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None)
    @given(_frames)
    def receive_never_raises(tagged: tuple[str, str | bytes]) -> None:
        tag, frame = tagged
        drawn[tag] += 1
        session = _FUZZ_SESSION
        events = session.receive(frame)
        assert isinstance(events, list)
        for event in events:
            assert event.type in EventType.__members__.values()
            if event.type is EventType.ERROR:
                assert event.error is not None
                assert event.error.code != "internal_client_error", event.error  # a bug of ours, not bad input
        # the bookkeeping stays bounded whatever the input
        assert session.pending_requests <= 1024
        session.data_to_send()

    receive_never_raises()
    print(f"fuzz receive(): {FUZZ_EXAMPLES} Hypothesis examples by class {dict(drawn)}")
    assert set(drawn) == set(_FRAME_CLASSES), drawn
    assert min(drawn.values()) >= MIN_PER_CLASS, drawn


_FUZZ_SESSION = RealtimeSession(OpenAIConfig(api_key="k"))
