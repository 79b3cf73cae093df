"""Resampler filter quality per ratio: stopband, passband, THD+N, delay, float64 reference.

Oracles live here only: an independent float64 evaluation of the designed continuous
kernel (Kaiser-windowed sinc), numpy FFTs and least-squares tone fits.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy.special import i0

from voiceengine._audio.resample import Resampler, resample

rmod = importlib.import_module("voiceengine._audio.resample")


LISTED = [
    (48000, 24000), (44100, 24000), (32000, 24000), (16000, 24000), (8000, 24000),
    (24000, 48000), (24000, 44100), (24000, 32000), (24000, 16000), (24000, 8000),
    (48000, 16000), (44100, 16000), (32000, 16000), (8000, 16000),
    (16000, 48000), (16000, 44100), (16000, 32000), (16000, 8000),
]
EXOTIC = [(44100, 44101), (8000, 44101), (192000, 8000), (11025, 24000)]

STOPBAND_DB = 100.0
PASSBAND_DB = 0.05
THDN_DB = 94.0


def _kernel(u: np.ndarray, fc: float, beta: float, half_width: float) -> np.ndarray:
    r = np.clip(u / half_width, -1.0, 1.0)
    w = np.where(np.abs(u) < half_width, i0(beta * np.sqrt(1.0 - r * r)) / i0(beta), 0.0)
    return 2 * fc * np.sinc(2 * fc * u) * w


def reference(x: np.ndarray, fi: int, fo: int) -> np.ndarray:
    """float64 direct evaluation: y[n] = sum_i x[i] g((n/fo - i/fi) * fl), ceil(N fo/fi) outputs."""
    info = Resampler(fi, fo)._filter_info()
    L, M, C = info["L"], info["M"], info["C"]
    fl = min(fi, fo)
    dens = L * fi / fl
    half = (C + 1) / dens
    k = np.arange(2 * C + 1)
    norm = L / _kernel((k - C) / dens, info["cutoff"], info["beta"], half).sum()
    n = np.arange(math.ceil(len(x) * L / M))
    i_hi = (n * M + C) // L
    taps = (2 * C) // L + 2
    i = i_hi[:, None] - np.arange(taps)[None, :]
    s = (n[:, None] * M - i * L) / L  # distance in input samples
    g = _kernel(s * fl / fi, info["cutoff"], info["beta"], half) * norm
    xi = np.where((i >= 0) & (i < len(x)), x[np.clip(i, 0, len(x) - 1)], 0.0)
    return (g * xi).sum(axis=1)


def _float_run(fi: int, fo: int, x: np.ndarray) -> np.ndarray:
    rs = Resampler(fi, fo)
    out = rs._process_f32(np.ascontiguousarray(x, dtype="<f4")) + rs._flush_f32()
    return np.frombuffer(out, "<f4").astype(np.float64)


def _prototype(rs: Resampler) -> np.ndarray:
    """The float32 prototype filter rebuilt from the exact polyphase table (gain L at DC)."""
    info = rs._filter_info()
    L, C, tpad = info["L"], info["C"], info["tpad"]
    tab = np.frombuffer(info["table"], "<f4").reshape(info["P"] + 1, tpad)[:L, ::-1].astype(np.float64)
    h = np.zeros(2 * C + 1)
    for p in range(L):
        js = np.arange((2 * C - p) // L + 1)
        h[p + js * L] = tab[p, js]
    return h


def _response_db(rs: Resampler) -> tuple[float, float, float]:
    """(passband min dB, passband max dB, stopband attenuation dB) of the float32 taps."""
    h = _prototype(rs) / rs.ratio[0]
    fi, fo = rs.in_rate, rs.out_rate
    F = rs.ratio[0] * fi
    fl = min(fi, fo)
    nfft = 1 << max(18, int(math.ceil(math.log2(len(h) * 16))))
    H = np.abs(np.fft.rfft(h, nfft))
    f = np.arange(len(H)) * F / nfft
    pb = H[f <= 0.4 * fl]
    sb = H[f >= 0.5 * fl]
    return 20 * np.log10(pb.min()), 20 * np.log10(pb.max()), -20 * np.log10(sb.max())


def _delay_budget_ms(fi: int, fo: int) -> float:
    return 2.0 if min(fi, fo) >= 16000 else 4.0


@pytest.mark.parametrize(("fi", "fo"), LISTED)
def test_filter_response_stopband_passband(fi: int, fo: int) -> None:
    rs = Resampler(fi, fo)
    assert not rs._filter_info()["interp"]
    pmin, pmax, stop = _response_db(rs)
    assert stop >= STOPBAND_DB, f"stopband {stop:.1f} dB"
    assert -PASSBAND_DB <= pmin and pmax <= PASSBAND_DB, (pmin, pmax)


@pytest.mark.parametrize(("fi", "fo"), LISTED + EXOTIC)
def test_kernel_matches_float64_reference(fi: int, fo: int, tone: Callable[..., np.ndarray]) -> None:
    x = tone(fi, 997.0, 0.05, dbfs=-1).astype(np.float64)
    x += np.random.default_rng(1).standard_normal(len(x)) * 2000
    ours = _float_run(fi, fo, x)
    ref = reference(x, fi, fo)
    assert len(ours) == len(ref)
    err_db = 20 * np.log10(np.max(np.abs(ours - ref)) / 32768)
    assert err_db < -110, f"max deviation from float64 reference {err_db:.1f} dBFS"


def _spectrum_peak_db(y: np.ndarray, rate: int, lo: float, hi: float, ref_amp: float) -> float:
    """Largest component in [lo, hi) Hz relative to ref_amp (Kaiser-20 window, ~-150 dB sidelobes)."""
    w = np.kaiser(len(y), 20.0)
    Y = np.abs(np.fft.rfft(y * w)) * 2 / w.sum()
    f = np.fft.rfftfreq(len(y), 1 / rate)
    band = Y[(f >= lo) & (f < hi)]
    return 20 * np.log10(max(band.max(), 1e-300) / ref_amp)


@pytest.mark.parametrize(("fi", "fo"), LISTED + [(8000, 44101), (192000, 8000)])
def test_stopband_end_to_end_float_domain(fi: int, fo: int) -> None:
    fl = min(fi, fo)
    amp = 30000.0
    worst = -math.inf
    if fo < fi:  # aliasing: tones between the lower Nyquist and the input Nyquist
        freqs = np.linspace(0.5 * fl + 10, 0.5 * fi - 10, 7)
        for f0 in freqs:
            x = amp * np.sin(2 * np.pi * f0 * np.arange(fi // 5) / fi)
            y = _float_run(fi, fo, x)[200:-200]
            worst = max(worst, _spectrum_peak_db(y, fo, 0, fo / 2, amp))
    else:  # imaging: passband tones, look above the lower Nyquist
        for f0 in (0.1 * fl, 0.25 * fl, 0.39 * fl):
            x = amp * np.sin(2 * np.pi * f0 * np.arange(fi // 5) / fi)
            y = _float_run(fi, fo, x)[200:-200]
            worst = max(worst, _spectrum_peak_db(y, fo, 0.5 * fl, fo / 2, amp))
    assert worst <= -STOPBAND_DB, f"worst alias/image {worst:.1f} dB"


@pytest.mark.parametrize(("fi", "fo"), LISTED)
def test_passband_tones_float_domain(fi: int, fo: int) -> None:
    fl = min(fi, fo)
    amp = 20000.0
    for f0 in (0.05 * fl, 0.2 * fl, 0.3 * fl, 0.4 * fl):
        x = amp * np.sin(2 * np.pi * f0 * np.arange(fi // 5) / fi)
        y = _float_run(fi, fo, x)[300:-300]
        t = (np.arange(len(y)) + 300) / fo
        basis = np.stack([np.sin(2 * np.pi * f0 * t), np.cos(2 * np.pi * f0 * t)], axis=1)
        (a, b), *_ = np.linalg.lstsq(basis, y, rcond=None)
        gain_db = 20 * np.log10(math.hypot(a, b) / amp)
        assert abs(gain_db) <= PASSBAND_DB, (f0, gain_db)
        # zero phase: the output is time-aligned with the input (delay = held-back samples only)
        assert abs(math.atan2(b, a)) < 1e-3


def thd_n_db(y: np.ndarray, rate: int, f0: float) -> float:
    t = np.arange(len(y)) / rate
    basis = np.stack([np.sin(2 * np.pi * f0 * t), np.cos(2 * np.pi * f0 * t), np.ones_like(t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    fit = basis[:, :2] @ coef[:2]
    resid = y - basis @ coef
    return 10 * np.log10(np.sum(fit**2) / np.sum(resid**2))


@pytest.mark.parametrize(("fi", "fo"), LISTED + EXOTIC)
def test_thd_n_1khz_minus1dbfs_through_int16(fi: int, fo: int, tone: Callable[..., np.ndarray]) -> None:
    x = tone(fi, 1000.0, 1.0, dbfs=-1.0)
    y = np.frombuffer(resample(x, fi, fo), "<i2").astype(np.float64)
    edge = fo // 100  # skip 10 ms at both ends (onset/offset of the tone)
    assert thd_n_db(y[edge:-edge], fo, 1000.0) >= THDN_DB


@pytest.mark.parametrize(("fi", "fo"), LISTED)
def test_delay_within_budget(fi: int, fo: int) -> None:
    rs = Resampler(fi, fo)
    info = rs._filter_info()
    budget = _delay_budget_ms(fi, fo)
    assert rs.delay_ms <= budget
    # worst-case latency = filter half-length C / (L * fi): also within budget
    assert info["C"] / (info["L"] * fi) * 1000 <= budget
    # the held-back count is exact: feeding n samples yields floor(n*fo/fi) - delay
    n = fi // 10
    assert len(rs.process(bytes(2 * n))) // 2 == n * fo // fi - rs.delay


def test_interpolated_table_used_only_for_exotic_ratios() -> None:
    assert Resampler(44100, 44101)._filter_info()["interp"]
    assert not Resampler(44100, 48000)._filter_info()["interp"]
    assert rmod.FILTER_BETA > 0 and 0 < rmod.FILTER_CUTOFF < 0.5
