"""The benchmarks' stand-in for speech: a voiced-sounding PCM16 tone (180 Hz and two
harmonics, about -12 dBFS, well above the fake servers' VAD threshold).

Dependency-free on purpose: ``benchmarks/conversation_clients.py`` imports it in workers
that run in a venv without voiceengine (openai-agents).
"""

from __future__ import annotations

import math
from array import array

__all__ = ["voiced_tone"]


def voiced_tone(rate: int, samples: int) -> bytes:
    """``samples`` mono PCM16 samples at ``rate`` Hz, little-endian (native on x86/ARM)."""
    out = array("h", bytes(2 * samples))
    for i in range(samples):
        t = i / rate
        s = 0.6 * math.sin(2 * math.pi * 180 * t) + 0.3 * math.sin(2 * math.pi * 360 * t) \
            + 0.1 * math.sin(2 * math.pi * 540 * t)
        out[i] = int(s * 8000)
    return out.tobytes()
