"""PCM helpers: float conversion, channels, saturating gain, level meters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceengine._audio import pcm
from voiceengine.exceptions import AudioFormatError

ALL16 = np.arange(-32768, 32768, dtype=np.int16)


def test_int16_float32_roundtrip_is_exact_for_every_value() -> None:
    f = pcm.int16_to_float32(ALL16)
    assert isinstance(f, memoryview) and f.format == "f" and f.readonly and len(f) == 65536
    assert np.array_equal(np.frombuffer(f, dtype=np.float32), ALL16.astype(np.float32) / 32768)
    assert pcm.float32_to_int16(f) == ALL16.tobytes()


def test_float32_to_int16_rounds_clips_and_zeroes_nan() -> None:
    x = np.array([0.0, 1.0, -1.0, 2.0, -7.5, 0.5 / 32768, 1.5 / 32768, -0.5 / 32768, np.nan, np.inf, -np.inf,
                  32766.5 / 32768], dtype=np.float32)
    got = np.frombuffer(pcm.float32_to_int16(x), dtype="<i2").tolist()
    assert got == [0, 32767, -32768, 32767, -32768, 0, 2, 0, 0, 32767, -32768, 32766]  # half to even
    assert pcm.float32_to_int16(x.tobytes()) == pcm.float32_to_int16(x)  # raw LE float32 bytes accepted


@pytest.mark.parametrize(
    ("arr", "exc"),
    [
        (np.zeros(4, dtype=np.float64), TypeError),
        (np.zeros(4, dtype=np.int16), TypeError),
        (np.zeros(4, dtype=">f4"), AudioFormatError),
        (np.zeros(8, dtype=np.float32)[::2], AudioFormatError),
        (b"\x00" * 6, AudioFormatError),
        ("text", TypeError),
    ],
)
def test_float32_to_int16_bad_input(arr: object, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        pcm.float32_to_int16(arr)


def test_stereo_mono() -> None:
    rng = np.random.default_rng(3)
    st_ = rng.integers(-32768, 32768, (5000, 2), dtype=np.int16)
    st_[:4] = [[32767, 32767], [-32768, -32768], [1, 2], [-1, -2]]
    mono = np.frombuffer(pcm.stereo_to_mono(st_), dtype="<i2")
    ref = np.rint(st_.astype(np.int64).sum(axis=1) / 2).astype(np.int16)  # rint: half to even
    assert np.array_equal(mono, ref)
    assert mono[:4].tolist() == [32767, -32768, 2, -2]
    back = np.frombuffer(pcm.mono_to_stereo(mono), dtype="<i2").reshape(-1, 2)
    assert np.array_equal(back[:, 0], mono) and np.array_equal(back[:, 1], mono)
    with pytest.raises(AudioFormatError):
        pcm.stereo_to_mono(b"\x00" * 6)  # 1.5 stereo frames


def _ref_gain(x: np.ndarray, db: float) -> np.ndarray:
    g = 10.0 ** (db / 20.0)
    return np.clip(np.rint(x.astype(np.float64) * g), -32768, 32767).astype(np.int16)


@settings(max_examples=200, deadline=None)
@given(
    samples=st.lists(st.integers(-32768, 32767), max_size=400),
    db=st.floats(-120, 60, allow_nan=False),
)
def test_gain_matches_reference_and_saturates(samples: list[int], db: float) -> None:
    x = np.array(samples, dtype=np.int16)
    out = np.frombuffer(pcm.apply_gain(x, db), dtype="<i2")
    assert np.array_equal(out, _ref_gain(x, db))
    # saturation, never wrap-around: sign kept, ordering kept
    assert np.all(np.sign(out) * np.sign(x) >= 0)
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(out[order].astype(np.int32)) >= 0)


def test_gain_edges() -> None:
    loud = np.array([32767, -32768, 20000, -20000, 1], dtype=np.int16)
    assert np.frombuffer(pcm.apply_gain(loud, 40.0), "<i2").tolist() == [32767, -32768, 32767, -32768, 100]
    assert pcm.apply_gain(ALL16, 0.0) == ALL16.tobytes()
    assert pcm.apply_gain(loud, float("-inf")) == bytes(10)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            pcm.apply_gain(loud, bad)
    with pytest.raises(TypeError):
        pcm.apply_gain(loud, "3")  # type: ignore[arg-type]


def test_levels() -> None:
    assert pcm.peak_dbfs(b"") == -math.inf and pcm.rms_dbfs(b"") == -math.inf
    assert pcm.peak_dbfs(bytes(100)) == -math.inf and pcm.rms_dbfs(bytes(100)) == -math.inf
    assert pcm.peak_dbfs(np.array([0, -32768], np.int16)) == 0.0
    assert pcm.peak_dbfs(np.array([16384], np.int16)) == pytest.approx(-6.0206, abs=1e-4)
    square = np.array([32767, -32768] * 100, np.int16)
    assert pcm.rms_dbfs(square) == pytest.approx(0.0, abs=1e-3)
    t = np.arange(48000)
    sine = np.rint(0.5 * 32768 * np.sin(2 * np.pi * 1000 * t / 48000)).astype(np.int16)
    assert pcm.rms_dbfs(sine) == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.01)
    assert pcm.peak_dbfs(sine) == pytest.approx(-6.0206, abs=0.01)


def test_outputs_are_fresh_and_inputs_untouched() -> None:
    src = bytearray(np.arange(-50, 50, dtype=np.int16).tobytes())
    before = bytes(src)
    for fn in (pcm.mono_to_stereo, pcm.ulaw_encode, pcm.alaw_encode, lambda b: pcm.apply_gain(b, 6)):
        out = fn(src)
        assert isinstance(out, bytes)
    assert bytes(src) == before
