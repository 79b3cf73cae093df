"""Public audio API: resampling, framing, the playback ring buffer and PCM16 helpers.

PCM16 means signed 16-bit little-endian interleaved samples. Every function and
method accepts any C-contiguous buffer (``bytes``, ``bytearray``, ``memoryview``,
numpy ``int16`` arrays, read-only ones included) without copying it first; see
``docs/audio_buffers.md`` for the error rules, view lifetimes and threading design.
"""

from voiceengine import _audio as _core
from voiceengine._audio import *  # noqa: F403  (the audio core, listed once in its __all__)
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
]
__all__ += _core.__all__
