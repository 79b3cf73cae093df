"""10^5 malformed server events straight through ``RealtimeSession.receive()``.

Frames are seeded mutations of a valid instance of every GA server event in the openai
SDK (openai.types.realtime): fields dropped, retyped (null, bool, huge ints, NaN,
Infinity, nested garbage, huge strings), extra fields, the ``type`` swapped for another
known or unknown one, bad base64, lone surrogates, truncated or non-JSON text, binary
frames (invalid UTF-8), deep nesting. Oracle per frame, classified honestly:

* not a JSON object with a string ``type`` (or binary) -> exactly one ERROR ``malformed_event``;
* an unknown ``type`` -> exactly one UNKNOWN;
* a known ``type`` -> the decoder's event kind (the mutation stayed acceptable), an ERROR
  (``malformed_event``, or a server ``error`` event, or a limit), or nothing (a duplicate
  or a dropped late delta); an SDK-valid frame is never rejected as malformed.

Nothing may raise, no ``internal_client_error``, no "decoder failed" log record.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import random

import pytest
from openai.types.realtime import RealtimeServerEvent
from openai_sdk_samples import sample, server_event_models, wire_type
from pydantic import BaseModel, ValidationError

from voiceengine.providers.openai.config import OpenAIConfig
from voiceengine.providers.openai.decoders import GA_DECODERS, DecodeContext
from voiceengine.providers.openai.protocol import RealtimeCodec
from voiceengine.providers.openai.session import RealtimeSession
from voiceengine.providers.types import EventType

N_FRAMES = 100_000
SEED = 20250505

MODELS: dict[str, type[BaseModel]] = {wire_type(m): m for m in server_event_models(RealtimeServerEvent)}
SAMPLES: dict[str, dict] = {name: sample(model) for name, model in MODELS.items()}
KIND: dict[str, EventType] = {
    name: RealtimeCodec().decode(json.dumps(msg), DecodeContext()).event.type for name, msg in SAMPLES.items()
}
WIRE_TYPES = sorted(SAMPLES)

_NEST = json.loads("[" * 200 + "]" * 200)


def _garbage(rng: random.Random, depth: int = 0) -> object:
    r = rng.randrange(16)
    if r == 0:
        return None
    if r == 1:
        return rng.choice((True, False))
    if r == 2:
        return rng.choice((0, -1, 1, 2**31, 2**63, -(2**63), 10**30, 10**400))
    if r == 3:
        return rng.choice((math.nan, math.inf, -math.inf, 1e308, -0.0, 0.5))
    if r == 4:
        return ""
    if r == 5:
        return rng.choice(("x", "\x00", "\udcff", "é" * 3, "AAAA", "not base64!", "AAA=", "====", "\u202e"))
    if r == 6:
        return "A" * rng.choice((1000, 100_000)) if rng.random() < 0.05 else "s" * rng.randrange(1, 64)
    if r == 7 and depth < 3:
        return [_garbage(rng, depth + 1) for _ in range(rng.randrange(4))]
    if r == 8 and depth < 3:
        return {rng.choice(("id", "type", "x", "", "error", "item")): _garbage(rng, depth + 1)
                for _ in range(rng.randrange(4))}
    if r == 9:
        return _NEST
    if r == 10:
        return rng.choice(WIRE_TYPES)
    return rng.choice(({}, [], {"id": 1}, [None], "item_1", -5))


def _mutate(rng: random.Random, msg: object, depth: int = 0) -> object:
    """One random structural mutation somewhere inside ``msg`` (a copy)."""
    if isinstance(msg, dict) and msg:
        out = dict(msg)
        key = rng.choice(list(out))
        r = rng.random()
        if r < 0.25:
            del out[key]
        elif r < 0.6 or depth > 4:
            out[key] = _garbage(rng)
        elif r < 0.7:
            out[rng.choice(("extra", "x" * 50, "\udcff", "type", key + "_"))] = _garbage(rng)
        else:
            out[key] = _mutate(rng, out[key], depth + 1)
        return out
    if isinstance(msg, list) and msg:
        out_l = list(msg)
        out_l[rng.randrange(len(out_l))] = _mutate(rng, out_l[0], depth + 1)
        return out_l
    return _garbage(rng)


def _frame(rng: random.Random) -> tuple[str, object, str | bytes]:
    """(class, parsed dict or None, frame) for one fuzzed server frame."""
    name = rng.choice(WIRE_TYPES)
    msg: object = dict(SAMPLES[name])
    r = rng.random()
    if r < 0.06:  # text that is not a JSON object with a string type
        base = json.dumps(msg)
        text = rng.choice((base[: rng.randrange(len(base))], "", "nan", "[1,2]", '"x"', "null", "{}",
                           '{"type": 5}', '{"type": null}', "[" * 50_000, "{" * 5000 + "}" * 5000,
                           base + "}", base.replace('"', "'"), "\x00" * 10, rng.randbytes(40).decode("latin-1")))
        return "garbage", None, text
    if r < 0.09:  # binary frames: invalid UTF-8, or even valid JSON in a binary frame
        return "garbage", None, rng.choice((rng.randbytes(rng.randrange(64)), b"\xff\xfe" + json.dumps(msg).encode(),
                                            json.dumps(msg).encode()))
    if r < 0.13:
        msg["type"] = rng.choice(("x", "", "response.output_audio.deltax", "RESPONSE.DONE", "session.created ",
                                  "\udcff", "a" * 1000, "response.audio.delta"))  # beta name: unknown on GA
        cls = "unknown"
    else:
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            msg = _mutate(rng, msg)
        if not isinstance(msg, dict) or type(msg.get("type")) is not str:
            cls = "garbage"
        elif msg["type"] in GA_DECODERS:
            cls = "known"
        else:
            cls = "unknown"
    if name == "response.output_audio.delta" and cls == "known" and rng.random() < 0.3:
        msg["delta"] = rng.choice(("AAA", "A===", "éé==", "AAAA\n", " AAAA", base64.b64encode(b"abc").decode(),
                                   "AAAA" * 3 + "=", base64.b64encode(bytes(4096)).decode()))
    text = json.dumps(msg)  # NaN/Infinity as the non-standard tokens Python's json accepts
    return cls, msg, text


def _sdk_valid(wire: str, msg: dict) -> bool:
    """Valid per the SDK model in strict mode (JSON numbers, no "1" -> 1 coercion) and, for
    audio, per the wire rules the SDK leaves to the client (base64, whole PCM16 samples)."""
    try:
        MODELS[wire].model_validate(msg, strict=True)
    except ValidationError:
        return False
    if wire == "response.output_audio.delta":
        try:
            return len(base64.b64decode(msg["delta"], validate=True)) % 2 == 0
        except ValueError:
            return False
    return True


class _Failures(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_logs():
    handler = _Failures()
    root = logging.getLogger("voiceengine")
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def test_fuzz_malformed_server_events_through_receive(error_logs: _Failures) -> None:
    rng = random.Random(SEED)
    session = RealtimeSession(OpenAIConfig(api_key="sk-fuzz-0000000000000000"))
    counts: dict[str, int] = {}
    failures: list[str] = []
    sdk_checked = 0
    for i in range(N_FRAMES):
        cls, msg, frame = _frame(rng)
        try:
            events = session.receive(frame)
        except BaseException as exc:  # noqa: BLE001 - the whole point: nothing escapes
            failures.append(f"frame {i} ({cls}) raised {exc!r}")
            continue
        kinds = [e.type for e in events]
        codes = [e.error.code for e in events if e.error is not None]
        if "internal_client_error" in codes:
            failures.append(f"frame {i} ({cls}): internal_client_error for {str(frame)[:200]!r}")
        if cls == "garbage":
            outcome = "malformed" if kinds == [EventType.ERROR] and codes == ["malformed_event"] else "WRONG"
        elif cls == "unknown":
            outcome = "unknown" if kinds == [EventType.UNKNOWN] else "WRONG"
        else:
            wire = msg["type"]  # type: ignore[index]
            allowed = {EventType.ERROR, KIND[wire]} | ({EventType.FUNCTION_CALL} if wire.endswith("item.done") else set())
            if not set(kinds) <= allowed:
                outcome = "WRONG"
            elif not kinds:
                outcome = "suppressed"
            elif "malformed_event" in codes:
                outcome = "malformed"
                if i % 4 == 0 and wire in MODELS:  # an SDK-valid frame must not be refused
                    sdk_checked += 1
                    if _sdk_valid(wire, msg):  # type: ignore[arg-type]
                        failures.append(f"frame {i}: SDK-valid {wire} refused as malformed: {codes}")
            elif kinds == [EventType.ERROR]:
                outcome = "error"  # a server error event, or a limit
            else:
                outcome = "decoded"  # the mutation stayed acceptable to the decoder
        if outcome == "WRONG":
            failures.append(f"frame {i} ({cls}): events {kinds} {codes} for {str(frame)[:200]!r}")
        key = f"{cls}:{outcome}"
        counts[key] = counts.get(key, 0) + 1
    print(f"fuzz receive(): {N_FRAMES} frames -> {dict(sorted(counts.items()))}, sdk-validated {sdk_checked}")
    assert not failures, "\n".join(failures[:20])
    assert not error_logs.records, [r.getMessage() for r in error_logs.records[:10]]
    assert sum(counts.values()) == N_FRAMES
    for needed in ("garbage:malformed", "unknown:unknown", "known:malformed", "known:decoded"):
        assert counts.get(needed, 0) > N_FRAMES // 100, (needed, counts)
    # still a working session: a valid frame decodes normally after all that
    ok = session.receive(json.dumps(SAMPLES["response.output_text.delta"]))
    assert [e.type for e in ok] == [EventType.TEXT_DELTA]
