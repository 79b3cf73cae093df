"""Resampler benchmarks beside soxr HQ on identical input (pytest-benchmark).

Run (figures + ratio table printed at the end by benchmarks/conftest.py):

    pytest benchmarks/bench_resample.py --benchmark-enable --benchmark-min-rounds=200 \
        --benchmark-columns=min,median,mean,rounds --benchmark-sort=name -q

Two modes per case:
* ``chunk``: one steady-state streaming call with a 20 ms chunk (ours: ``process(bytes)``;
  soxr: ``ResampleStream(in, out, channels, dtype="int16", quality="HQ").resample_chunk``
  on the same samples as an int16 array, its native input).
* ``whole``: 10 s in one call (ours: ``resample()``; soxr: ``soxr.resample(..., "HQ")``).

48k stereo -> 24k mono: soxr cannot downmix; the table compares against soxr on the
stereo signal (``channels=2``, as a pipeline would run it before downmixing), and the
extra ``soxr-mono-premixed`` rows time soxr on an already-downmixed mono signal (downmix
not timed), the most conservative comparison.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from voiceengine._audio.resample import Resampler, resample

soxr = pytest.importorskip("soxr")

CASES = [
    # (label, in_rate, out_rate, in_channels, out_channels)
    ("48k->24k", 48000, 24000, 1, 1),
    ("44.1k->24k", 44100, 24000, 1, 1),
    ("16k->24k", 16000, 24000, 1, 1),
    ("24k->16k", 24000, 16000, 1, 1),
    ("24k->48k", 24000, 48000, 1, 1),
    ("48k stereo->24k mono", 48000, 24000, 2, 1),
    ("8k->24k", 8000, 24000, 1, 1),
    ("24k->8k", 24000, 8000, 1, 1),
    ("32k->24k", 32000, 24000, 1, 1),
]
IDS = [c[0] for c in CASES]


def _signal(rate: int, seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    """Speech-like test signal: noise plus a tone, int16, shape (n, channels)."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    x = 8000 * np.sin(2 * np.pi * 440 * t)[:, None] + rng.standard_normal((n, channels)) * 3000
    return np.clip(np.round(x), -32768, 32767).astype("<i2")


def _tag(benchmark: Any, case: str, mode: str, impl: str) -> None:
    benchmark.extra_info.update(ratio_case=case, ratio_mode=mode, ratio_impl=impl)


@pytest.mark.parametrize(("label", "fi", "fo", "ci", "co"), CASES, ids=IDS)
def test_chunk_ours(benchmark: Any, label: str, fi: int, fo: int, ci: int, co: int) -> None:
    chunk = _signal(fi, 0.02, ci).tobytes()
    rs = Resampler(fi, fo, in_channels=ci, out_channels=co)
    for _ in range(5):  # steady state: history primed, buffers grown
        rs.process(chunk)
    _tag(benchmark, label, "chunk", "ours")
    out = benchmark(rs.process, chunk)
    assert len(out) == fo // 50 * 2 * co


@pytest.mark.parametrize(("label", "fi", "fo", "ci", "co"), CASES, ids=IDS)
def test_chunk_soxr(benchmark: Any, label: str, fi: int, fo: int, ci: int, co: int) -> None:
    x = _signal(fi, 0.02, ci)
    arr = x[:, 0].copy() if ci == 1 else x
    st = soxr.ResampleStream(fi, fo, ci, dtype="int16", quality="HQ")
    for _ in range(5):
        st.resample_chunk(arr)
    _tag(benchmark, label, "chunk", "soxr")
    out = benchmark(st.resample_chunk, arr)
    assert out.dtype == np.int16  # soxr buffers internally: chunk sizes vary


@pytest.mark.parametrize(("label", "fi", "fo", "ci", "co"), CASES, ids=IDS)
def test_whole_ours(benchmark: Any, label: str, fi: int, fo: int, ci: int, co: int) -> None:
    data = _signal(fi, 10.0, ci).tobytes()
    _tag(benchmark, label, "whole", "ours")
    out = benchmark(resample, data, fi, fo, in_channels=ci, out_channels=co)
    assert len(out) == fo * 10 * 2 * co


@pytest.mark.parametrize(("label", "fi", "fo", "ci", "co"), CASES, ids=IDS)
def test_whole_soxr(benchmark: Any, label: str, fi: int, fo: int, ci: int, co: int) -> None:
    x = _signal(fi, 10.0, ci)
    arr = x[:, 0].copy() if ci == 1 else x
    _tag(benchmark, label, "whole", "soxr")
    out = benchmark(soxr.resample, arr, fi, fo, "HQ")
    assert len(out) == fo * 10


def test_chunk_soxr_mono_premixed(benchmark: Any) -> None:
    mono = _signal(48000, 0.02, 2).mean(axis=1).round().astype("<i2")
    st = soxr.ResampleStream(48000, 24000, 1, dtype="int16", quality="HQ")
    for _ in range(5):
        st.resample_chunk(mono)
    _tag(benchmark, "48k st->24k mono (soxr-mono-premixed)", "chunk", "soxr")
    benchmark(st.resample_chunk, mono)


def test_whole_soxr_mono_premixed(benchmark: Any) -> None:
    mono = _signal(48000, 10.0, 2).mean(axis=1).round().astype("<i2")
    _tag(benchmark, "48k st->24k mono (soxr-mono-premixed)", "whole", "soxr")
    benchmark(soxr.resample, mono, 48000, 24000, "HQ")


def test_chunk_ours_stereo_mix_for_premixed_row(benchmark: Any) -> None:
    chunk = _signal(48000, 0.02, 2).tobytes()
    rs = Resampler(48000, 24000, in_channels=2, out_channels=1)
    for _ in range(5):
        rs.process(chunk)
    _tag(benchmark, "48k st->24k mono (soxr-mono-premixed)", "chunk", "ours")
    benchmark(rs.process, chunk)


def test_whole_ours_stereo_mix_for_premixed_row(benchmark: Any) -> None:
    data = _signal(48000, 10.0, 2).tobytes()
    _tag(benchmark, "48k st->24k mono (soxr-mono-premixed)", "whole", "ours")
    benchmark(resample, data, 48000, 24000, in_channels=2, out_channels=1)
