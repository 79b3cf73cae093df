"""Benchmarks of the OpenAI Realtime codec (pytest-benchmark).

Run:  pytest benchmarks/bench_protocol.py --benchmark-enable --benchmark-columns=mean,median,ops

The audio-delta decode benchmarks feed a stream of 64 distinct 100 ms delta frames per
round (mean cost per call = round time / 64) through ``RealtimeCodec.decode`` and through
the anchor ``pybase64.b64decode(orjson.loads(text)["delta"], validate=True)`` (strict, as
the codec is; the non-validating pybase64 decode is slower); the ratio table at the end
compares them.

One "append event" = 100 ms of 24 kHz mono PCM16 = 4800 bytes -> ~6.5 kB of JSON text.
The template path is compared with the obvious ``json.dumps`` + ``base64`` version and
with the binascii fallback used when pybase64 is not installed.
"""

from __future__ import annotations

import base64
import binascii
import json
import os

import numpy as np
import pytest

from benchmarks.ratios import audio_delta_frames
from voiceengine.providers.openai.config import OpenAIConfig
from voiceengine.providers.openai import protocol
from voiceengine.providers.openai.decoders import DecodeContext
from voiceengine.providers.openai.protocol import RealtimeCodec, pcm_bytes
from voiceengine.providers.openai.session import RealtimeSession

PCM = os.urandom(4800)
ARRAY = np.frombuffer(PCM, dtype=np.int16)
CODEC = RealtimeCodec()
HEAD, MID, TAIL = protocol._APPEND_HEAD, protocol._APPEND_MID, protocol._APPEND_TAIL


def test_append_template_bytes(benchmark) -> None:
    """The codec path for bytes: validate + template + pybase64 (the <= 0.5 us target)."""
    text = benchmark(CODEC.input_audio_buffer_append, PCM, "ve0a1b2c_12345")
    assert json.loads(text)["audio"] == base64.b64encode(PCM).decode()


def test_append_template_numpy(benchmark) -> None:
    """Same from a numpy int16 array (memoryview + format checks + cast)."""
    text = benchmark(CODEC.input_audio_buffer_append, ARRAY, "ve0a1b2c_12345")
    assert len(text) > 6400


def test_append_session(benchmark) -> None:
    """RealtimeSession.append_audio: event id, pending record, outbound queue (drained)."""
    session = RealtimeSession(OpenAIConfig(api_key="k"))

    def run() -> None:
        session.append_audio(PCM)
        session._out.clear()  # keep the queue from growing during the run

    benchmark(run)
    assert session.pending_requests <= 1024


def test_append_template_binascii(benchmark) -> None:
    """The fallback without pybase64: binascii.b2a_base64 + decode."""

    def run() -> str:
        view = pcm_bytes(PCM)
        return f'{HEAD}{"ve0a1b2c_12345"}{MID}{binascii.b2a_base64(view, newline=False).decode("ascii")}{TAIL}'

    assert json.loads(benchmark(run))["audio"] == base64.b64encode(PCM).decode()


def test_append_json_dumps_baseline(benchmark) -> None:
    """The naive way, for comparison: dict + base64.b64encode + json.dumps."""

    def run() -> str:
        return json.dumps({"type": "input_audio_buffer.append", "event_id": "ve0a1b2c_12345",
                           "audio": base64.b64encode(PCM).decode("ascii")})

    assert len(benchmark(run)) > 6400


AUDIO_DELTA = json.dumps({"type": "response.output_audio.delta", "event_id": "event_1", "response_id": "resp_1",
                          "item_id": "item_1", "output_index": 0, "content_index": 0,
                          "delta": base64.b64encode(PCM).decode()})
TRANSCRIPT_DELTA = json.dumps({"type": "response.output_audio_transcript.delta", "event_id": "event_2",
                               "response_id": "resp_1", "item_id": "item_1", "output_index": 0, "content_index": 0,
                               "delta": "Hello"})


@pytest.mark.parametrize("frame", [AUDIO_DELTA, TRANSCRIPT_DELTA], ids=["audio-100ms", "transcript"])
def test_receive(benchmark, frame: str) -> None:
    """RealtimeSession.receive: JSON parse + table decode + state update."""
    # the same delta is fed thousands of times: lift the per-response audio cap (600 s by
    # default), which would otherwise start dropping it mid-benchmark
    session = RealtimeSession(OpenAIConfig(api_key="k", max_response_audio_s=1e9))
    events = benchmark(session.receive, frame)
    assert len(events) == 1


DELTA_STREAM = audio_delta_frames()


def _delta_tag(benchmark, impl: str) -> None:
    benchmark.extra_info.update(ratio_case="decode 100 ms audio delta", ratio_mode="stream", ratio_impl=impl,
                                calls_per_round=len(DELTA_STREAM))


def test_delta_decode_codec(benchmark) -> None:
    """RealtimeCodec.decode on a stream of audio deltas (the fast path)."""
    codec, ctx = RealtimeCodec(), DecodeContext()
    decode = codec.decode

    def stream() -> int:
        return sum(len(decode(f, ctx).event.data) for f in DELTA_STREAM)

    _delta_tag(benchmark, "ours")
    assert benchmark.pedantic(stream, rounds=200, warmup_rounds=5) == 4800 * len(DELTA_STREAM)


def test_delta_decode_orjson_pybase64(benchmark) -> None:
    """The anchor: orjson.loads + strict pybase64.b64decode of the same frames."""
    orjson = pytest.importorskip("orjson")
    import pybase64

    loads, b64decode = orjson.loads, pybase64.b64decode

    def stream() -> int:
        return sum(len(b64decode(loads(f)["delta"], validate=True)) for f in DELTA_STREAM)

    _delta_tag(benchmark, "orjson+pybase64")
    assert benchmark.pedantic(stream, rounds=200, warmup_rounds=5) == 4800 * len(DELTA_STREAM)
