"""Private compiled audio core. Import the public API from :mod:`voiceengine.audio`."""

from .chunker import Chunker
from .pcm import (
    alaw_decode,
    alaw_encode,
    apply_gain,
    float32_to_int16,
    int16_to_float32,
    mono_to_stereo,
    peak_dbfs,
    rms_dbfs,
    stereo_to_mono,
    ulaw_decode,
    ulaw_encode,
)
from .resample import Resampler, resample
from .ring import RingBuffer

__all__ = [
    "Chunker",
    "Resampler",
    "RingBuffer",
    "alaw_decode",
    "alaw_encode",
    "apply_gain",
    "float32_to_int16",
    "int16_to_float32",
    "mono_to_stereo",
    "peak_dbfs",
    "resample",
    "rms_dbfs",
    "stereo_to_mono",
    "ulaw_decode",
    "ulaw_encode",
]
