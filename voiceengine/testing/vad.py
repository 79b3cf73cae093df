"""Energy-based voice activity detection for the fake server (sans-I/O, deterministic).

Frames of ``frame_ms`` are classified voiced when their RMS level is at or above
``threshold_dbfs``. Speech *starts* after ``min_speech_ms`` of consecutive voiced frames and
*stops* once ``silence_duration_ms`` of consecutive unvoiced frames followed it. Times are
milliseconds of audio fed since the detector was created (the Realtime API counts
``audio_start_ms``/``audio_end_ms`` from the start of the session's input audio):

* ``start.ms`` = onset of the first voiced frame minus ``prefix_padding_ms`` (clamped at 0),
  like the real service, whose ``audio_start_ms`` includes the prefix padding;
* ``stop.ms`` = end of the last voiced frame plus ``silence_duration_ms``, i.e. the moment
  the silence was long enough, like the real ``audio_end_ms``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from operator import mul

from .audio import pcm16_to_samples

try:  # numpy is optional: it makes long soak runs cheap, the pure-Python path is exact too
    import numpy as _np
except ImportError:  # pragma: no cover - exercised only without numpy
    _np = None  # type: ignore[assignment]

__all__ = ["VadEventKind", "VadEvent", "EnergyVad", "threshold_to_dbfs", "frame_rms_dbfs"]


class VadEventKind(enum.Enum):
    """What the detector saw."""

    SPEECH_STARTED = "speech_started"
    SPEECH_STOPPED = "speech_stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class VadEvent:
    """A speech boundary; ``ms`` is on the detector's audio clock (see module docstring)."""

    kind: VadEventKind
    ms: int


def threshold_to_dbfs(threshold: float) -> float:
    """Map the API's ``turn_detection.threshold`` (0..1, default 0.5) to an energy level.

    0.0 -> -70 dBFS (anything but digital silence is speech), 0.5 -> -40 dBFS,
    1.0 -> -10 dBFS (only loud audio). Linear in dB; the real service uses a model, this
    is a documented stand-in.
    """
    t = min(1.0, max(0.0, float(threshold)))
    return -70.0 + 60.0 * t


def frame_rms_dbfs(pcm: bytes) -> float:
    """RMS level of PCM16 LE bytes in dBFS (-inf for silence or empty input)."""
    n = len(pcm) // 2
    if n == 0:
        return -math.inf
    if _np is not None:
        a = _np.frombuffer(pcm, dtype="<i2", count=n).astype(_np.float64)
        ms = float(_np.dot(a, a)) / n
    else:
        s = pcm16_to_samples(pcm)
        ms = sum(map(mul, s, s)) / n
    if ms <= 0.0:
        return -math.inf
    return 10.0 * math.log10(ms / (32768.0 * 32768.0))


class EnergyVad:
    """Streaming energy VAD over PCM16 LE mono. ``process()`` carries partial frames."""

    def __init__(
        self,
        *,
        sample_rate: int = 24000,
        threshold_dbfs: float = -40.0,
        silence_duration_ms: int = 500,
        prefix_padding_ms: int = 300,
        min_speech_ms: int = 20,
        frame_ms: int = 10,
    ) -> None:
        if sample_rate <= 0 or frame_ms <= 0 or sample_rate * frame_ms % 1000:
            raise ValueError("sample_rate * frame_ms must be a whole number of samples per 1000")
        if silence_duration_ms < 0 or prefix_padding_ms < 0 or min_speech_ms < 0:
            raise ValueError("durations must be >= 0")
        self.sample_rate = sample_rate
        self.threshold_dbfs = threshold_dbfs
        self.silence_duration_ms = silence_duration_ms
        self.prefix_padding_ms = prefix_padding_ms
        self.min_speech_ms = min_speech_ms
        self.frame_ms = frame_ms
        self._frame_bytes = 2 * sample_rate * frame_ms // 1000
        self._carry = b""
        self._frames = 0  # frames processed since creation: the audio clock
        self.speaking = False
        self._voiced_run = 0
        self._silent_run = 0
        self._onset_frame = 0
        self._last_voiced_end_frame = 0

    @property
    def position_ms(self) -> int:
        """Milliseconds of audio classified so far (whole frames only)."""
        return self._frames * self.frame_ms

    def reset_state(self) -> None:
        """Forget speech state and carried bytes; the audio clock keeps running."""
        if self._carry:
            # Carried bytes still count as audio the client sent; keep the clock honest.
            self._frames += 1
        self._carry = b""
        self.speaking = False
        self._voiced_run = 0
        self._silent_run = 0

    def process(self, pcm: bytes) -> list[VadEvent]:
        """Feed PCM16 LE bytes; return the speech boundaries found in them, in order."""
        data = self._carry + bytes(pcm) if self._carry else bytes(pcm)
        fb = self._frame_bytes
        whole = len(data) - len(data) % fb
        self._carry = data[whole:]
        events: list[VadEvent] = []
        min_voiced = max(1, -(-self.min_speech_ms // self.frame_ms))
        silence_frames = max(1, -(-self.silence_duration_ms // self.frame_ms))
        for off in range(0, whole, fb):
            voiced = frame_rms_dbfs(data[off : off + fb]) >= self.threshold_dbfs
            idx = self._frames
            self._frames += 1
            if not self.speaking:
                if voiced:
                    if self._voiced_run == 0:
                        self._onset_frame = idx
                    self._voiced_run += 1
                    if self._voiced_run >= min_voiced:
                        self.speaking = True
                        self._silent_run = 0
                        self._last_voiced_end_frame = idx + 1
                        start = max(0, self._onset_frame * self.frame_ms - self.prefix_padding_ms)
                        events.append(VadEvent(kind=VadEventKind.SPEECH_STARTED, ms=start))
                else:
                    self._voiced_run = 0
            else:
                if voiced:
                    self._silent_run = 0
                    self._last_voiced_end_frame = idx + 1
                else:
                    self._silent_run += 1
                    if self._silent_run >= silence_frames:
                        self.speaking = False
                        self._voiced_run = 0
                        self._silent_run = 0
                        end = self._last_voiced_end_frame * self.frame_ms + self.silence_duration_ms
                        events.append(VadEvent(kind=VadEventKind.SPEECH_STOPPED, ms=end))
        return events
