"""Fuzz every PCM helper of voiceengine._audio.pcm with 10^5 seeded inputs each.

Each call must either succeed with exactly the reference output (numpy, computed once
per distinct input and cached) or raise the one exception the docs give for that input
(docs/audio_buffers.md "Input rules"): TypeError for wrong item types and non-buffers,
AudioFormatError for big-endian / non-contiguous buffers and partial samples, ValueError
for a NaN / +inf gain. Anything else (another exception, a wrong result, a crash of the
process) fails. Reproduce with VOICEENGINE_FUZZ_SEED=<seed>.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest
from test_fuzz_corpus import N_CALLS, SEED, Entry, Tally, build_pool

from voiceengine._audio import pcm
from voiceengine.exceptions import AudioFormatError

_ALL16 = np.arange(-32768, 32768, dtype="<i2")


def _i16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2")


def _ref_f32_to_i16(data: bytes) -> bytes:
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf bit patterns are the point
        v = np.frombuffer(data, dtype="<f4").astype(np.float64) * 32768.0
        out = np.clip(np.rint(np.nan_to_num(v, nan=0.0, posinf=40000.0, neginf=-40000.0)), -32768, 32767)
    return out.astype("<i2").tobytes()


def _ref_stereo_to_mono(data: bytes) -> bytes:
    lr = _i16(data).astype(np.int32).reshape(-1, 2)
    s = lr[:, 0] + lr[:, 1]
    q = s >> 1
    q += (s & 1) & (q & 1)
    return q.astype("<i2").tobytes()


def _ref_peak(data: bytes) -> float:
    x = _i16(data).astype(np.int32)
    peak = int(np.abs(x).max()) if x.size else 0
    return -math.inf if peak == 0 else 20.0 * math.log10(peak / 32768.0)


def _ref_rms(data: bytes) -> float:
    x = _i16(data).astype(np.int64)
    acc = int((x * x).sum()) if x.size else 0
    return -math.inf if acc == 0 else 20.0 * math.log10(math.sqrt(acc / x.size) / 32768.0)


# Tables through the module itself: the fuzz checks the buffer intake and the loops
# (offsets, alignment, lengths); the table contents are pinned in test_pcm_g711.py.
_ENC = {name: np.frombuffer(getattr(pcm, name)(_ALL16.tobytes()), dtype=np.uint8)
        for name in ("ulaw_encode", "alaw_encode")}
_DEC = {name: np.frombuffer(getattr(pcm, name)(bytes(range(256))), dtype="<i2")
        for name in ("ulaw_decode", "alaw_decode")}

# name -> (function, sample width the input must be a multiple of (0 = any), reference)
CASES: dict[str, tuple[Callable[[object], object], int, Callable[[bytes], object]]] = {
    "pcm16_view": (lambda b: bytes(pcm.pcm16_view(b)), 2, lambda d: d),
    "int16_to_float32": (lambda b: pcm.int16_to_float32(b), 2,
                         lambda d: (_i16(d).astype("<f4") / np.float32(32768.0)).astype("<f4").tobytes()),
    "stereo_to_mono": (pcm.stereo_to_mono, 4, _ref_stereo_to_mono),
    "mono_to_stereo": (pcm.mono_to_stereo, 2, lambda d: np.repeat(_i16(d), 2).tobytes()),
    "peak_dbfs": (pcm.peak_dbfs, 2, _ref_peak),
    "rms_dbfs": (pcm.rms_dbfs, 2, _ref_rms),
    "ulaw_encode": (pcm.ulaw_encode, 2, lambda d: _ENC["ulaw_encode"][_i16(d).astype(np.int32) + 32768].tobytes()),
    "alaw_encode": (pcm.alaw_encode, 2, lambda d: _ENC["alaw_encode"][_i16(d).astype(np.int32) + 32768].tobytes()),
    "ulaw_decode": (pcm.ulaw_decode, 0, lambda d: _DEC["ulaw_decode"][np.frombuffer(d, np.uint8)].tobytes()),
    "alaw_decode": (pcm.alaw_decode, 0, lambda d: _DEC["alaw_decode"][np.frombuffer(d, np.uint8)].tobytes()),
}


def _same(out: object, ref: object) -> bool:
    if isinstance(ref, float):
        return isinstance(out, float) and (out == ref or math.isclose(out, ref, rel_tol=1e-12, abs_tol=1e-12))
    if isinstance(out, memoryview):  # int16_to_float32: read-only float32 view
        return out.readonly and out.format == "f" and out.tobytes() == ref
    return type(out) is bytes and out == ref


@pytest.mark.parametrize("name", sorted(CASES))
def test_fuzz_pcm_helper(name: str) -> None:
    fn, width, reference = CASES[name]
    seed = SEED + zlib.crc32(name.encode())
    rng = random.Random(seed)
    pool = build_pool(seed)
    cache: dict[bytes, object] = {}
    tally = Tally(name, seed)
    size = len(pool)
    for _ in range(N_CALLS):
        entry = pool[rng.randrange(size)]
        tally.calls += 1
        expected = entry.pcm_error()
        if expected is None and width and len(entry.data) % width:
            expected = AudioFormatError
        done, out = tally.attempt(f"{entry.label} len {len(entry.data)}", expected, lambda: fn(entry.obj))
        if not done:
            continue
        ref = cache.get(entry.data)
        if ref is None:
            ref = cache[entry.data] = reference(entry.data)
        if not _same(out, ref):
            tally.fail(f"{entry.label} len {len(entry.data)}: wrong output")
    tally.check()


def test_fuzz_float32_to_int16() -> None:
    seed = SEED + 7
    rng = random.Random(seed)
    pool = build_pool(seed)
    # the float intake sees NaN/inf/huge/denormal values too: float32 bit patterns are random
    tally = Tally("float32_to_int16", seed)
    cache: dict[bytes, bytes] = {}
    for _ in range(N_CALLS):
        entry = pool[rng.randrange(len(pool))]
        tally.calls += 1
        expected = entry.f32_error()
        if expected is None and len(entry.data) % 4:
            expected = AudioFormatError
        done, out = tally.attempt(f"{entry.label} len {len(entry.data)}", expected,
                                  lambda: pcm.float32_to_int16(entry.obj))
        if not done:
            continue
        ref = cache.get(entry.data)
        if ref is None:
            ref = cache[entry.data] = _ref_f32_to_i16(entry.data)
        if out != ref:
            tally.fail(f"{entry.label} len {len(entry.data)}: wrong output")
    tally.check()


# gain values: finite (tiny/huge), infinities, NaN, exotic Real types, and non-numbers
_GAINS: tuple[tuple[object, type[Exception] | None], ...] = (
    (0.0, None), (0, None), (-3.0, None), (6.0, None), (-0.0, None), (96.0, None), (-120.0, None),
    (1e-300, None), (-1e300, None), (1e300, None), (700.0, None), (1e5, None),
    (float("-inf"), None), (np.float32(-6.0), None), (np.float64(12.5), None), (np.int64(3), None),
    (Fraction(1, 3), None), (-(10**400), None),
    (float("inf"), ValueError), (float("nan"), ValueError), (np.float64("nan"), ValueError),
    (10**400, ValueError), (Fraction(10**400, 3), ValueError),
    (True, TypeError), ("3", TypeError), (None, TypeError), (1j, TypeError), ([1.0], TypeError),
    (np.array([1.0, 2.0]), TypeError), (object(), TypeError),
)


def _ref_gain(data: bytes, gain: object) -> bytes:
    try:
        db = float(gain)  # type: ignore[arg-type]
    except OverflowError:
        db = -math.inf
    g = 0.0 if db == -math.inf else 10.0 ** (db / 20.0) if db < 6000 else math.inf
    x = _i16(data).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        y = x * g
    y = np.where(x == 0, 0.0, y)  # 0 * inf: silence stays silence
    return np.clip(np.rint(y), -32768, 32767).astype("<i2").tobytes()


def test_fuzz_apply_gain() -> None:
    seed = SEED + 11
    rng = random.Random(seed)
    pool = build_pool(seed)
    tally = Tally("apply_gain", seed)
    for i in range(N_CALLS):
        entry = pool[rng.randrange(len(pool))]
        gain, gain_error = _GAINS[rng.randrange(len(_GAINS))]
        tally.calls += 1
        expected = entry.pcm_error()
        if expected is None and len(entry.data) % 2:
            expected = AudioFormatError
        expected = expected or gain_error
        done, out = tally.attempt(f"{entry.label} gain {gain!r}", expected, lambda: pcm.apply_gain(entry.obj, gain))
        if not done:
            continue
        if len(out) != len(entry.data):
            tally.fail(f"{entry.label} gain {gain!r}: {len(out)} bytes out for {len(entry.data)}")
        elif i % 4 == 0 and out != _ref_gain(entry.data, gain):  # full reference on a quarter
            tally.fail(f"{entry.label} len {len(entry.data)} gain {gain!r}: wrong output")
    tally.check()
