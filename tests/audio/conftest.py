"""Shared fixtures for the audio-core tests: deterministic PCM16 signal generators.

Only generic signal makers live here; area-specific fixtures stay in their test files.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

FULL_SCALE = 32767.0


def make_tone(
    rate: int, freq: float, seconds: float, *, dbfs: float = -1.0, channels: int = 1, phase: float = 0.0
) -> np.ndarray:
    """A sine at ``dbfs`` (peak re full scale) rounded to int16, shape (n,) or (n, channels)."""
    n = int(round(rate * seconds))
    t = np.arange(n) / rate
    x = np.round(FULL_SCALE * 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t + phase)).astype("<i2")
    return x if channels == 1 else np.repeat(x[:, None], channels, axis=1)


def make_noise(n_frames: int, *, channels: int = 1, seed: int = 0, scale: float = 6000.0) -> np.ndarray:
    """Gaussian noise clipped to int16, shape (n,) or (n, channels)."""
    rng = np.random.default_rng(seed)
    shape = (n_frames,) if channels == 1 else (n_frames, channels)
    return np.clip(np.round(rng.standard_normal(shape) * scale), -32768, 32767).astype("<i2")


@pytest.fixture
def tone() -> Callable[..., np.ndarray]:
    """``tone(rate, freq, seconds, dbfs=-1.0, channels=1, phase=0.0)`` -> int16 array."""
    return make_tone


@pytest.fixture
def noise() -> Callable[..., np.ndarray]:
    """``noise(n_frames, channels=1, seed=0, scale=6000.0)`` -> int16 array."""
    return make_noise
