"""Same-run cost ratios against an anchor, robust on a loaded machine.

Every figure here is a *mean cost per call over a real stream*, in CPU time of the
measuring thread (``time.thread_time``: on a shared machine, wall time counts the
slices other processes run in; CPU time is the cost itself): a round feeds a stream
(10 s of speech-like audio cut into 10/20/100 ms chunks, or a sequence of audio-delta
frames) through one long-lived object and divides the round's time by its calls; the
anchor (soxr HQ ``ResampleStream`` int16, or ``orjson.loads`` + ``pybase64.b64decode``)
runs the same input. Rounds of ours and the anchor alternate (ABBA order) so a change in
machine load hits both; the ratio is mean(ours) / mean(anchor) over all rounds, with the
medians beside it. Used by ``benchmarks/bench_resample.py``, ``bench_protocol.py`` and
the CI guard ``.ci/bench_guard.py``.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import soxr  # type: ignore[import-untyped]

RESAMPLE_CASES: list[tuple[str, int, int, int, int]] = [
    # (label, in_rate, out_rate, in_channels, out_channels)
    ("48k->24k", 48000, 24000, 1, 1),
    ("44.1k->24k", 44100, 24000, 1, 1),
    ("16k->24k", 16000, 24000, 1, 1),
    ("24k->16k", 24000, 16000, 1, 1),
    ("24k->48k", 24000, 48000, 1, 1),
    ("8k->24k", 8000, 24000, 1, 1),
    ("24k->8k", 24000, 8000, 1, 1),
    ("48k stereo->24k mono", 48000, 24000, 2, 1),
]
CHUNK_MS = (10, 20, 100)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ratio:
    """One same-run comparison: per-call costs in seconds, ratio = ours / anchor (means)."""

    name: str
    ours_mean: float
    anchor_mean: float
    ours_median: float
    anchor_median: float

    @property
    def ratio(self) -> float:
        return self.ours_mean / self.anchor_mean

    @property
    def median_ratio(self) -> float:
        return self.ours_median / self.anchor_median


def interleaved(name: str, ours: Callable[[], int], anchor: Callable[[], int], *, rounds: int) -> Ratio:
    """Run ``ours`` and ``anchor`` rounds alternately (ABBA); each returns its call count."""
    ours()  # warm-up: caches, allocator, lazy imports
    anchor()
    per_call: dict[str, list[float]] = {"ours": [], "anchor": []}
    totals = {"ours": [0.0, 0], "anchor": [0.0, 0]}
    for r in range(rounds):
        order = (("ours", ours), ("anchor", anchor)) if r % 2 == 0 else (("anchor", anchor), ("ours", ours))
        for key, fn in order:
            t0 = time.thread_time()
            calls = fn()
            dt = time.thread_time() - t0
            per_call[key].append(dt / calls)
            totals[key][0] += dt
            totals[key][1] += calls
    return Ratio(
        name=name,
        ours_mean=totals["ours"][0] / totals["ours"][1],
        anchor_mean=totals["anchor"][0] / totals["anchor"][1],
        ours_median=statistics.median(per_call["ours"]),
        anchor_median=statistics.median(per_call["anchor"]),
    )


def speech_like(rate: int, seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    """Noise plus a tone, int16, shape (n, channels)."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    x = 8000 * np.sin(2 * np.pi * 440 * t)[:, None] + rng.standard_normal((n, channels)) * 3000
    return np.clip(np.round(x), -32768, 32767).astype("<i2")


def resample_stream(label: str, fi: int, fo: int, ci: int, co: int, chunk_ms: int, *,
                    rounds: int, seconds: float = 2.0) -> Ratio:
    """Streaming: ``Resampler.process(bytes)`` vs soxr ``ResampleStream.resample_chunk``."""
    from voiceengine._audio.resample import Resampler

    x = speech_like(fi, seconds, ci)
    anchor_in = x[:, 0].copy() if ci == 1 else x
    frames = fi * chunk_ms // 1000
    ours_chunks = [x[i:i + frames].tobytes() for i in range(0, len(x) - frames + 1, frames)]
    soxr_chunks = [anchor_in[i:i + frames] for i in range(0, len(x) - frames + 1, frames)]
    rs = Resampler(fi, fo, in_channels=ci, out_channels=co)
    st = soxr.ResampleStream(fi, fo, ci, dtype="int16", quality="HQ")
    process, resample_chunk = rs.process, st.resample_chunk

    def ours() -> int:
        for c in ours_chunks:
            process(c)
        return len(ours_chunks)

    def anchor() -> int:
        for c in soxr_chunks:
            resample_chunk(c)
        return len(soxr_chunks)

    return interleaved(f"resample {label} {chunk_ms} ms chunks", ours, anchor, rounds=rounds)


def resample_whole(label: str, fi: int, fo: int, ci: int, co: int, *, rounds: int, seconds: float = 10.0) -> Ratio:
    """One-shot: ``resample(bytes)`` vs ``soxr.resample(array, "HQ")`` on ``seconds`` of audio."""
    from voiceengine._audio.resample import resample

    x = speech_like(fi, seconds, ci)
    data = x.tobytes()
    anchor_in = x[:, 0].copy() if ci == 1 else x

    def ours() -> int:
        resample(data, fi, fo, in_channels=ci, out_channels=co)
        return 1

    def anchor() -> int:
        soxr.resample(anchor_in, fi, fo, "HQ")
        return 1

    return interleaved(f"resample {label} whole {seconds:g} s", ours, anchor, rounds=rounds)


def audio_delta_frames(count: int = 64, pcm_bytes: int = 4800) -> list[str]:
    """``response.output_audio.delta`` frames of 100 ms of 24 kHz PCM16 (distinct payloads)."""
    frames = []
    for k in range(count):
        frames.append(json.dumps({
            "type": "response.output_audio.delta", "event_id": f"event_{k}", "response_id": "resp_1",
            "item_id": "item_1", "output_index": 0, "content_index": 0,
            "delta": base64.b64encode(os.urandom(pcm_bytes)).decode(),
        }))
    return frames


def delta_decode(*, rounds: int, strict_anchor: bool = True) -> Ratio:
    """``RealtimeCodec.decode`` vs ``pybase64.b64decode(orjson.loads(text)["delta"])``.

    ``strict_anchor``: the anchor validates the base64 as the codec does
    (``validate=True``); pybase64's non-validating decode is about twice as slow, so the
    strict anchor is the harder one to beat.
    """
    import orjson
    import pybase64

    from voiceengine.providers.openai.decoders import DecodeContext
    from voiceengine.providers.openai.protocol import RealtimeCodec

    frames = audio_delta_frames()
    codec = RealtimeCodec()
    ctx = DecodeContext()
    decode = codec.decode
    loads, b64decode = orjson.loads, pybase64.b64decode
    assert decode(frames[0], ctx).event.data == b64decode(loads(frames[0])["delta"])
    repeat = 8

    def ours() -> int:
        for _ in range(repeat):
            for f in frames:
                decode(f, ctx)
        return repeat * len(frames)

    if strict_anchor:
        def anchor() -> int:
            for _ in range(repeat):
                for f in frames:
                    b64decode(loads(f)["delta"], validate=True)
            return repeat * len(frames)
    else:
        def anchor() -> int:
            for _ in range(repeat):
                for f in frames:
                    b64decode(loads(f)["delta"])
            return repeat * len(frames)

    kind = "strict" if strict_anchor else "default"
    return interleaved(f"decode 100 ms audio delta (anchor {kind} b64)", ours, anchor, rounds=rounds)


def all_ratios(*, rounds: int, whole_rounds: int) -> list[Ratio]:
    """Every ratio the CI guard and the README report."""
    out: list[Ratio] = []
    for label, fi, fo, ci, co in RESAMPLE_CASES:
        for ms in CHUNK_MS:
            out.append(resample_stream(label, fi, fo, ci, co, ms, rounds=rounds))
        out.append(resample_whole(label, fi, fo, ci, co, rounds=whole_rounds))
    out.append(delta_decode(rounds=rounds))
    out.append(delta_decode(rounds=rounds, strict_anchor=False))
    return out


def table(ratios: list[Ratio]) -> str:
    lines = [f"{'comparison':<52}{'ours mean':>12}{'anchor mean':>13}{'ratio':>8}{'median ratio':>14}"]
    for r in ratios:
        lines.append(f"{r.name:<52}{_us(r.ours_mean):>12}{_us(r.anchor_mean):>13}{r.ratio:>7.2f}x{r.median_ratio:>13.2f}x")
    return "\n".join(lines)


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} us" if seconds < 1e-3 else f"{seconds * 1e3:.3f} ms"


def as_json(ratios: list[Ratio]) -> dict[str, Any]:
    return {r.name: round(r.ratio, 4) for r in ratios}


if __name__ == "__main__":
    print(table(all_ratios(rounds=12, whole_rounds=12)))
