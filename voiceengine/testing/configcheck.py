"""Checks the fake servers' configs share (each config's ``__post_init__`` calls them)."""

from __future__ import annotations

import math
from typing import Iterable

from ..secrets import SecretKeys

__all__ = ["check_at_least_one", "check_pacing", "pace_s_per_ms", "secret_api_keys"]


def secret_api_keys(keys: Iterable[str] | None) -> SecretKeys | None:
    """``api_keys`` as the config keeps them: None (any key passes) or a :class:`SecretKeys`
    (the repr shows how many, never which; pickling refuses). ValueError when empty or blank."""
    if keys is None:
        return None
    kept = tuple(keys)
    if not kept or not all(isinstance(k, str) and k for k in kept):
        raise ValueError("api_keys must be None or non-empty strings")
    return SecretKeys(kept)


def check_pacing(speed: float, chunk_ms: int) -> None:
    """Reply audio pacing: ``speed`` times real time (inf: unpaced) in ``chunk_ms`` pieces."""
    if not (speed > 0 or math.isinf(speed)):
        raise ValueError("speed must be > 0 (math.inf for no pacing)")
    if chunk_ms < 10 or chunk_ms % 10:
        raise ValueError("chunk_ms must be a positive multiple of 10")


def pace_s_per_ms(speed: float) -> float:
    """Seconds to wait per millisecond of reply audio sent at ``speed`` (0 when unpaced)."""
    return 0.0 if math.isinf(speed) else 1.0 / (1000.0 * speed)


def check_at_least_one(limits: dict[str, int]) -> None:
    """Every named count limit is >= 1."""
    for name, value in limits.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1")
