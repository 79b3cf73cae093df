"""The audio-delta fast path of ``RealtimeCodec.decode`` gives exactly the general path's result.

Oracle: the same codec with the fast path switched off (``decode_audio_delta`` patched to
decline), i.e. ``json.loads`` + the table decoder. Compared: wire type, event (all fields
but the timestamp) and message, for valid frames in many spellings, for every shape the
scanner must decline, and for 20,000 seeded byte-level mutations of a valid frame.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
from typing import Any

import pytest

from voiceengine._audio.delta import fill_slots, scan_audio_delta
from voiceengine.providers.openai import fastdecode, protocol
from voiceengine.providers.openai.beta import BetaCodec
from voiceengine.providers.openai.decoders import DecodeContext
from voiceengine.providers.openai.protocol import Decoded, RealtimeCodec
from voiceengine.providers.types import EventType, ProviderEvent

GA = "response.output_audio.delta"
PCM = bytes(range(256)) * 3 + b"\x01\x02"  # 770 bytes, whole PCM16 samples
B64 = base64.b64encode(PCM).decode()


def frame(**overrides: Any) -> str:
    msg: dict[str, Any] = {"type": GA, "event_id": "event_1", "response_id": "resp_1", "item_id": "item_1",
                           "output_index": 0, "content_index": 0, "delta": B64}
    msg.update(overrides)
    return json.dumps(msg)


def general(codec: RealtimeCodec, text: Any, ctx: DecodeContext, monkeypatch: pytest.MonkeyPatch) -> Decoded:
    with monkeypatch.context() as m:
        m.setattr(protocol, "decode_audio_delta", lambda *args: None)
        return codec.decode(text, ctx)


def same(a: Decoded, b: Decoded) -> bool:
    def norm(ev: ProviderEvent) -> ProviderEvent:
        return dataclasses.replace(ev, timestamp=0.0)

    return a.wire_type == b.wire_type and norm(a.event) == norm(b.event) and a.message == b.message


VALID = [
    frame(),
    frame().replace(", ", ",").replace(": ", ":"),                # compact separators
    " \n\t" + frame().replace(", ", " ,\r\n ") + " \n",           # JSON whitespace everywhere
    frame(content_index=3, output_index=-12, extra=None, flag=True, off=False, note="x y"),
    frame(event_id="e" * 500),
    frame(delta=""),                                             # empty delta: zero samples
    json.dumps({"type": GA, "delta": B64, "item_id": "i", "response_id": "r"}),  # no content_index
    frame(content_index=123456789012345678),                     # 18 digits: still exact
]


@pytest.mark.parametrize("text", VALID)
def test_valid_frames_take_the_fast_path_with_the_general_result(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    codec, ctx = RealtimeCodec(), DecodeContext(session_id="sess_1")
    assert scan_audio_delta(text, GA, 2) is not None
    fast = codec.decode(text, ctx)
    assert fast.event.type is EventType.AUDIO_DELTA
    assert fast.message == json.loads(text)
    assert same(fast, general(codec, text, ctx, monkeypatch))


DECLINED = {
    "escape in a string": frame(item_id="a\\u0041"),
    "escaped quote in the delta": frame().replace(B64[:8], B64[:4] + '\\"' + B64[6:8]),
    "non-ASCII text": frame(item_id="é"),
    "float member": frame(content_index=1.0),
    "exponent member": frame().replace('"output_index": 0', '"output_index": 1e2'),
    "19-digit integer": frame(output_index=1234567890123456789),
    "leading zero": frame().replace('"output_index": 0', '"output_index": 00'),
    "nested object": frame(extra={"a": 1}),
    "array member": frame(extra=[1]),
    "NaN literal": frame().replace('"output_index": 0', '"output_index": NaN'),
    "type not first": json.dumps({"event_id": "e", "type": GA, "item_id": "i", "response_id": "r", "delta": B64}),
    "another type": frame(type="response.output_audio_transcript.delta"),
    "duplicate delta": frame().replace('"delta": ', '"delta": "AAAA", "delta": '),
    "later duplicate type": frame()[:-1] + ', "type": "x"}',
    "invalid base64": frame(delta="!!!!"),
    "bad padding": frame(delta="AAAA=="),
    "padding inside": frame(delta="AA=AAAAA"),
    "odd byte count": frame(delta=base64.b64encode(b"abc").decode()),
    "bool content_index": frame(content_index=True),
    "null item_id": frame(item_id=None),
    "int response_id": frame(response_id=5),
    "missing item_id": json.dumps({"type": GA, "response_id": "r", "delta": B64}),
    "delta not a string": frame(delta=12),
    "control character": frame(item_id="a\tb").replace("\\t", "\t"),
    "trailing comma": frame()[:-1] + ",}",
    "trailing data": frame() + " x",
    "two objects": frame() + frame(),
    "truncated": frame()[:-1],
    "unterminated delta": frame()[: frame().index(B64) + 10],
    "not an object": json.dumps([GA]),
    "empty": "",
}


@pytest.mark.parametrize("text", list(DECLINED.values()), ids=list(DECLINED))
def test_other_shapes_are_declined_and_decoded_as_before(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    codec, ctx = RealtimeCodec(), DecodeContext()
    assert scan_audio_delta(text, GA, 2) is None
    assert same(codec.decode(text, ctx), general(codec, text, ctx, monkeypatch))


def test_non_str_frames_and_wrong_sample_width_are_declined() -> None:
    assert scan_audio_delta(frame().encode(), GA, 2) is None
    assert scan_audio_delta(None, GA, 2) is None
    assert scan_audio_delta(frame(delta=base64.b64encode(b"abc").decode()), GA, 1) is not None  # G.711
    assert scan_audio_delta(frame(), GA, 0) is None
    assert scan_audio_delta(frame(), "réponse", 2) is None


def test_beta_dialect_uses_its_own_type(monkeypatch: pytest.MonkeyPatch) -> None:
    codec, ctx = BetaCodec(), DecodeContext()
    text = frame(type="response.audio.delta")
    fast = codec.decode(text, ctx)
    assert fast.wire_type == "response.audio.delta" and fast.event.data == PCM
    assert same(fast, general(codec, text, ctx, monkeypatch))
    assert scan_audio_delta(frame(), codec.audio_delta_type, 2) is None  # a GA frame is not beta's


def test_seeded_mutations_agree_with_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(20251203)
    codec, ctx = RealtimeCodec(), DecodeContext()
    base = [frame(), frame().replace(", ", ","), VALID[3]]
    alphabet = '{}[]",:\\ 0123456789-.eE+/=AZaz\t\n\x00\x7fé'
    taken = 0
    for _ in range(20_000):
        chars = list(rng.choice(base))
        for _ in range(rng.randint(1, 3)):
            op, at = rng.random(), rng.randrange(len(chars))
            if op < 0.4:
                chars[at] = rng.choice(alphabet)
            elif op < 0.7:
                del chars[at]
            else:
                chars.insert(at, rng.choice(alphabet))
        text = "".join(chars)
        fast = codec.decode(text, ctx)
        taken += scan_audio_delta(text, GA, 2) is not None
        assert same(fast, general(codec, text, ctx, monkeypatch)), text
    assert taken > 1000  # the mutations kept many frames valid: both outcomes are exercised


def test_fill_slots_builds_the_same_event_as_the_constructor() -> None:
    assert fastdecode._FILL, "ProviderEvent changed shape: update _EVENT_FIELDS"
    values = (EventType.AUDIO_DELTA, b"ab", 1.5, "openai", "s", None, "i", "r", None)
    built = fill_slots(ProviderEvent, fastdecode._EVENT_FIELDS, values)
    assert built == ProviderEvent(**dict(zip(fastdecode._EVENT_FIELDS, values)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.data = b"x"
    with pytest.raises(ValueError):
        fill_slots(ProviderEvent, ("type",), ())
    with pytest.raises(AttributeError):
        fill_slots(ProviderEvent, ("no_such_field",), (1,))
