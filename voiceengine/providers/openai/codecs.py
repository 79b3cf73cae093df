"""Choosing the Realtime dialect: ``OpenAIConfig.codec`` -> its codec object.

Its own module because it names both dialects: :mod:`.beta` builds on :mod:`.protocol`, so
neither can pick between them without importing the other (a cycle).
"""

from __future__ import annotations

from .beta import BetaCodec
from .protocol import RealtimeCodec

__all__ = ["make_codec"]


def make_codec(name: str = "ga", *, output_audio_format: str = "audio/pcm") -> RealtimeCodec:
    """The codec for ``OpenAIConfig.codec`` (``"ga"`` or ``"beta"``)."""
    if name == "ga":
        return RealtimeCodec(output_audio_format=output_audio_format)
    if name == "beta":
        return BetaCodec(output_audio_format=output_audio_format)
    raise ValueError(f"codec must be 'ga' or 'beta', got {name!r}")
