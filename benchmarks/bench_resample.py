"""Resampler benchmarks beside soxr HQ on identical input (pytest-benchmark).

Run (per-call figures + the ratio table printed at the end by benchmarks/conftest.py):

    pytest benchmarks/bench_resample.py --benchmark-enable --benchmark-columns=mean,median,rounds \
        --benchmark-sort=name -q

Every round feeds a real stream: 2 s of speech-like audio cut into 10, 20 or 100 ms chunks
through one long-lived object (ours: ``Resampler.process(bytes)``; soxr:
``ResampleStream(in, out, channels, dtype="int16", quality="HQ").resample_chunk`` on the
same samples as an int16 array, its native input). A round's time divided by its chunks is
the mean cost per call, which is what sets CPU per second of audio (soxr buffers
internally, so its per-call cost alternates; the median of one repeated call flatters
whichever side has the cheap mode). ``whole``: 10 s in one call (ours: ``resample()``;
soxr: ``soxr.resample(..., "HQ")``).

48k stereo -> 24k mono: soxr cannot downmix; soxr runs on the stereo signal
(``channels=2``, as a pipeline would before downmixing).

For a noise-robust same-run comparison (interleaved rounds), see ``python -m benchmarks.ratios``
and the CI guard ``.ci/bench_guard.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.ratios import CHUNK_MS, RESAMPLE_CASES, speech_like
from voiceengine._audio.resample import Resampler, resample

soxr = pytest.importorskip("soxr")

IDS = [c[0] for c in RESAMPLE_CASES]
STREAM_S = 2.0


def _tag(benchmark: Any, case: str, mode: str, impl: str, calls: int) -> None:
    benchmark.extra_info.update(ratio_case=case, ratio_mode=mode, ratio_impl=impl, calls_per_round=calls)


@pytest.mark.parametrize("chunk_ms", CHUNK_MS)
@pytest.mark.parametrize(("label", "fi", "fo", "ci", "co"), RESAMPLE_CASES, ids=IDS)
def test_stream_ours(benchmark: Any, label: str, fi: int, fo: int, ci: int, co: int, chunk_ms: int) -> None:
    x = speech_like(fi, STREAM_S, ci)
    frames = fi * chunk_ms // 1000
    chunks = [x[i:i + frames].tobytes() for i in range(0, len(x) - frames + 1, frames)]
    rs = Resampler(fi, fo, in_channels=ci, out_channels=co)
    process = rs.process

    def stream() -> int:
        return sum(len(process(c)) for c in chunks)

    _tag(benchmark, label, f"{chunk_ms} ms", "ours", len(chunks))
    produced = benchmark.pedantic(stream, rounds=30, warmup_rounds=2)
    expected = len(chunks) * frames * fo // fi * 2 * co  # per round, once the delay is held back
    assert 0 <= expected - produced <= 2 * co * (rs.delay + 1)


@pytest.mark.parametrize("chunk_ms", CHUNK_MS)
@pytest.mark.parametrize(("label", "fi", "fo", "ci", "co"), RESAMPLE_CASES, ids=IDS)
def test_stream_soxr(benchmark: Any, label: str, fi: int, fo: int, ci: int, co: int, chunk_ms: int) -> None:
    x = speech_like(fi, STREAM_S, ci)
    arr = x[:, 0].copy() if ci == 1 else x
    frames = fi * chunk_ms // 1000
    chunks = [arr[i:i + frames] for i in range(0, len(x) - frames + 1, frames)]
    st = soxr.ResampleStream(fi, fo, ci, dtype="int16", quality="HQ")
    resample_chunk = st.resample_chunk

    def stream() -> int:
        return sum(len(resample_chunk(c)) for c in chunks)

    _tag(benchmark, label, f"{chunk_ms} ms", "soxr", len(chunks))
    assert benchmark.pedantic(stream, rounds=30, warmup_rounds=2) > 0


@pytest.mark.parametrize(("label", "fi", "fo", "ci", "co"), RESAMPLE_CASES, ids=IDS)
def test_whole_ours(benchmark: Any, label: str, fi: int, fo: int, ci: int, co: int) -> None:
    data = speech_like(fi, 10.0, ci).tobytes()
    _tag(benchmark, label, "whole", "ours", 1)
    out = benchmark(resample, data, fi, fo, in_channels=ci, out_channels=co)
    assert len(out) == fo * 10 * 2 * co


@pytest.mark.parametrize(("label", "fi", "fo", "ci", "co"), RESAMPLE_CASES, ids=IDS)
def test_whole_soxr(benchmark: Any, label: str, fi: int, fo: int, ci: int, co: int) -> None:
    x = speech_like(fi, 10.0, ci)
    arr = x[:, 0].copy() if ci == 1 else x
    _tag(benchmark, label, "whole", "soxr", 1)
    out = benchmark(soxr.resample, arr, fi, fo, "HQ")
    assert len(out) == fo * 10
