"""Public audio API: resampling, framing, the playback ring buffer and PCM16 helpers.

PCM16 means signed 16-bit little-endian interleaved samples. Every function and
method accepts any C-contiguous buffer (``bytes``, ``bytearray``, ``memoryview``,
numpy ``int16`` arrays, read-only ones included) without copying it first; see
``docs/audio_buffers.md`` for the error rules, view lifetimes and threading design.
"""

from voiceengine._audio import (
    Chunker,
    Resampler,
    RingBuffer,
    alaw_decode,
    alaw_encode,
    apply_gain,
    float32_to_int16,
    int16_to_float32,
    mono_to_stereo,
    peak_dbfs,
    resample,
    rms_dbfs,
    stereo_to_mono,
    ulaw_decode,
    ulaw_encode,
)
from voiceengine.audio.devices import AudioDeviceError, Microphone, Speaker
from voiceengine.audio.wav import WavSink, WavSource
from voiceengine.providers.types import AudioFormat

__all__ = [
    "AudioDeviceError",
    "Microphone",
    "Speaker",
    "WavSink",
    "WavSource",
    "AudioFormat",
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
