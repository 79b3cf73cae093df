"""Benchmarks of the Chunker, RingBuffer and PCM helpers (pytest-benchmark).

Run:  pytest benchmarks/bench_buffers.py --benchmark-enable \
          --benchmark-columns=min,median,mean,ops --benchmark-sort=name

Audio is 24 kHz mono PCM16: a 20 ms frame is 960 bytes, 1 s is 48 000 bytes (50 frames).
Per-frame figures = per-call figure / frames per call (``extra_info["frames"]``).
Targets (issue 2): Chunker <= 0.3 us per frame; RingBuffer write + read of one 20 ms
frame <= 0.15 us.
"""

from __future__ import annotations

import numpy as np
import pytest

from voiceengine._audio import pcm
from voiceengine._audio.chunker import Chunker
from voiceengine._audio.ring import RingBuffer

FRAME = 960
RNG = np.random.default_rng(0)
SEC = RNG.integers(-20000, 20000, 24000, dtype=np.int16).tobytes()
F20 = SEC[:FRAME]


# ------------------------------------------------------------------ Chunker

@pytest.mark.parametrize(
    ("name", "payload", "frames"),
    [
        pytest.param("bytes_20ms", F20, 1, id="bytes_20ms"),
        pytest.param("bytes_1s", SEC, 50, id="bytes_1s"),
        pytest.param("bytearray_20ms", bytearray(F20), 1, id="bytearray_20ms"),
        pytest.param("bytearray_1s", bytearray(SEC), 50, id="bytearray_1s"),
        pytest.param("numpy_1s", np.frombuffer(SEC, np.int16).copy(), 50, id="numpy_1s"),
    ],
)
def test_chunker_push(benchmark, name: str, payload: object, frames: int) -> None:
    chunker = Chunker(FRAME)
    benchmark.extra_info["frames"] = frames
    out = benchmark(chunker.push, payload)
    assert len(out) == frames


def test_chunker_push_unaligned_1000B(benchmark) -> None:
    """1000-byte pushes into 960-byte frames: every frame straddles a carry."""
    chunker = Chunker(FRAME)
    data = SEC[:1000]
    benchmark.extra_info["frames"] = 1000 / FRAME
    benchmark(chunker.push, data)
    assert chunker.pending < FRAME


# ------------------------------------------------------------------ RingBuffer

def test_ring_write_read_bytes_20ms(benchmark) -> None:
    ring = RingBuffer(48000, overflow="drop_newest")
    write, read = ring.write, ring.read

    def step() -> bytes:
        write(F20)
        return read(FRAME)

    assert benchmark(step) == F20


def test_ring_write_read_into_20ms(benchmark) -> None:
    ring = RingBuffer(48000, overflow="drop_newest")
    out = bytearray(FRAME)
    write, read_into = ring.write, ring.read_into

    def step() -> int:
        write(F20)
        return read_into(out)

    assert benchmark(step) == FRAME


def test_ring_write_read_into_numpy_20ms(benchmark) -> None:
    ring = RingBuffer(48000, overflow="drop_newest")
    src = np.frombuffer(F20, np.int16).copy()
    out = np.zeros(FRAME // 2, np.int16)
    write, read_into = ring.write, ring.read_into

    def step() -> int:
        write(src)
        return read_into(out)

    assert benchmark(step) == FRAME


def test_ring_write_drop_oldest_overflowing_20ms(benchmark) -> None:
    """Full ring under drop_oldest: every write takes the lock and drops a frame."""
    ring = RingBuffer(48000, overflow="drop_oldest")
    while ring.free:
        ring.write(F20)
    assert benchmark(ring.write, F20) == FRAME
    assert ring.overruns > 0


# ------------------------------------------------------------------ PCM helpers

STEREO = {"20ms": pcm.mono_to_stereo(F20), "1s": pcm.mono_to_stereo(SEC)}
FLOAT = {"20ms": bytes(pcm.int16_to_float32(F20)), "1s": bytes(pcm.int16_to_float32(SEC))}
ULAW = {"20ms": pcm.ulaw_encode(F20), "1s": pcm.ulaw_encode(SEC)}
ALAW = {"20ms": pcm.alaw_encode(F20), "1s": pcm.alaw_encode(SEC)}
MONO = {"20ms": F20, "1s": SEC}

CASES = {
    "int16_to_float32": (pcm.int16_to_float32, MONO),
    "float32_to_int16": (pcm.float32_to_int16, FLOAT),
    "stereo_to_mono": (pcm.stereo_to_mono, STEREO),
    "mono_to_stereo": (pcm.mono_to_stereo, MONO),
    "apply_gain": (lambda b: pcm.apply_gain(b, -6.0), MONO),
    "peak_dbfs": (pcm.peak_dbfs, MONO),
    "rms_dbfs": (pcm.rms_dbfs, MONO),
    "ulaw_encode": (pcm.ulaw_encode, MONO),
    "ulaw_decode": (pcm.ulaw_decode, ULAW),
    "alaw_encode": (pcm.alaw_encode, MONO),
    "alaw_decode": (pcm.alaw_decode, ALAW),
}


@pytest.mark.parametrize("length", ["20ms", "1s"])
@pytest.mark.parametrize("helper", list(CASES))
def test_pcm(benchmark, helper: str, length: str) -> None:
    fn, inputs = CASES[helper]
    result = benchmark(fn, inputs[length])
    assert result is not None
