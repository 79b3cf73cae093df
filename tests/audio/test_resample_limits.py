"""Resampler filter size cap (issue 5): absurd ratios are refused at construction.

Downsampling by in/out needs ~62 * in / out taps; past MAX_FILTER_TAPS the constructor
raises ConfigurationError before allocating anything, while every realistic pair works.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from voiceengine._audio.resample import MAX_FILTER_TAPS, MAX_RATE, Resampler, resample
from voiceengine.exceptions import ConfigurationError

REALISTIC = [(8000, 384000), (384000, 8000), (384000, 1000), (192000, 8000), (44100, 8000), (8000, 44100),
             (48000, 24000), (24000, 16000), (96000, 11025), (1, 384000), (7, 384000), (384000, 383999)]


def test_limits_cap_is_declared_in_the_stub() -> None:
    assert MAX_FILTER_TAPS == 32768
    # (voiceengine._audio re-exports the function resample(), which shadows the module name)
    module = importlib.import_module("voiceengine._audio.resample")
    stub = Path(module.__file__ or "").with_name("resample.pyi").read_text()
    assert "MAX_FILTER_TAPS: int" in stub


@pytest.mark.parametrize(("in_rate", "out_rate"), REALISTIC)
def test_limits_realistic_pairs_work(in_rate: int, out_rate: int) -> None:
    rs = Resampler(in_rate, out_rate)
    info = rs._filter_info()
    assert info["ntaps"] <= MAX_FILTER_TAPS
    # the table stays bounded (<= 65 interpolated rows or <= 2^20 exact floats, + one row)
    assert len(info["table"]) <= 4 * max(65 * (MAX_FILTER_TAPS + 16), (1 << 20) + info["tpad"])
    pcm = (np.sin(np.arange(in_rate // 10 or 1) * 0.01) * 8000).astype("<i2").tobytes()
    out = rs.process(pcm) + rs.flush()
    n_in = len(pcm) // 2
    assert len(out) == 2 * -(-n_in * out_rate // in_rate)


@pytest.mark.parametrize(("in_rate", "out_rate"), [(384000, 1), (384000, 7), (384000, 726), (MAX_RATE, 100),
                                                   (100000, 1), (40000, 1)])
def test_limits_absurd_downsampling_is_refused(in_rate: int, out_rate: int) -> None:
    with pytest.raises(ConfigurationError, match="tap"):
        Resampler(in_rate, out_rate)
    with pytest.raises(ConfigurationError, match="tap"):
        Resampler(in_rate, out_rate, in_channels=2, out_channels=2)
    with pytest.raises(ConfigurationError):  # the one-shot function goes through the same check
        resample(b"\x00\x00" * 16, in_rate, out_rate)


def test_limits_boundary_is_the_tap_count() -> None:
    # 384000 -> 727 (coprime: interpolated table) is the last pair under the cap, 726 over it
    rs = Resampler(384000, 727)
    info = rs._filter_info()
    assert info["ntaps"] <= MAX_FILTER_TAPS and info["interp"]
    assert len(info["table"]) < 9 * 2**20  # ~8.4 MB, interpolated rows
    with pytest.raises(ConfigurationError):
        Resampler(384000, 726)


def test_limits_refusal_leaves_the_instance_reusable() -> None:
    rs = Resampler(48000, 24000)
    with pytest.raises(ConfigurationError):
        rs.__init__(384000, 1)  # type: ignore[misc]
    rs.__init__(48000, 16000)  # type: ignore[misc]
    assert rs.ratio == (1, 3) and len(rs.process(b"\x00\x00" * 300) + rs.flush()) == 200
