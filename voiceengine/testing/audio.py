"""Deterministic reply-audio synthesis and tiny codec helpers for the fake server.

The fake server must produce *real* PCM whose bytes tests can predict, so every word of a
reply becomes a short voiced-like tone (fundamental plus two harmonics, raised-cosine
envelope) whose pitch is derived from the word's CRC-32. The same text at the same rate
always yields the same bytes (:func:`synthesize`), and the word boundaries are returned so
transcript deltas can be interleaved with the audio deltas that carry them.

Pure Python on purpose: the package's only runtime dependency is ``websockets``.
"""

from __future__ import annotations

import math
import sys
import zlib
from array import array
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "SynthParams",
    "Synthesis",
    "synthesize",
    "synthesize_word",
    "pcm16_to_samples",
    "ulaw_encode",
    "ulaw_decode",
    "alaw_encode",
    "alaw_decode",
    "bytes_per_ms",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SynthParams:
    """How reply audio is shaped. Durations are in milliseconds."""

    ms_per_char: int = 50
    min_word_ms: int = 120
    gap_ms: int = 30
    amplitude: float = 0.3
    base_hz: float = 140.0
    spread_hz: float = 160.0

    def __post_init__(self) -> None:
        if self.ms_per_char < 1 or self.min_word_ms < 10 or self.gap_ms < 0:
            raise ValueError("ms_per_char >= 1, min_word_ms >= 10 and gap_ms >= 0 are required")
        if not 0.0 < self.amplitude <= 1.0:
            raise ValueError("amplitude must be in (0, 1]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Synthesis:
    """Audio for a whole reply plus where each word starts (byte offsets into ``pcm``)."""

    pcm: bytes
    words: tuple[str, ...]
    word_offsets: tuple[int, ...]
    sample_rate: int


def _to_le_bytes(samples: array[int]) -> bytes:
    # PCM16 on the wire is little-endian whatever the host is.
    if sys.byteorder != "little":
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def pcm16_to_samples(pcm: bytes) -> array[int]:
    """Little-endian PCM16 bytes -> ``array('h')`` in host order (odd trailing byte ignored)."""
    a = array("h")
    a.frombytes(pcm[: len(pcm) & ~1])
    if sys.byteorder != "little":
        a.byteswap()
    return a


@lru_cache(maxsize=4096)
def synthesize_word(word: str, sample_rate: int, params: SynthParams) -> bytes:
    """PCM16 LE mono tone for one word; cached because replies repeat words a lot."""
    duration_ms = max(params.min_word_ms, params.ms_per_char * len(word))
    duration_ms -= duration_ms % 10  # whole 10 ms frames keep chunk maths exact
    n = sample_rate * duration_ms // 1000
    f0 = params.base_hz + (zlib.crc32(word.lower().encode("utf-8")) % int(params.spread_hz))
    ramp = max(1, sample_rate // 100)  # 10 ms attack/release: no clicks, still deterministic
    peak = params.amplitude * 32767.0 / 1.75
    w = 2.0 * math.pi * f0 / sample_rate
    out = array("h", bytes(2 * n))
    for i in range(n):
        env = 1.0
        if i < ramp:
            env = 0.5 - 0.5 * math.cos(math.pi * i / ramp)
        elif i >= n - ramp:
            env = 0.5 - 0.5 * math.cos(math.pi * (n - 1 - i) / ramp)
        x = math.sin(w * i) + 0.5 * math.sin(2 * w * i) + 0.25 * math.sin(3 * w * i)
        out[i] = int(round(peak * env * x))
    return _to_le_bytes(out)


def synthesize(text: str, sample_rate: int = 24000, params: SynthParams | None = None) -> Synthesis:
    """Deterministic PCM16 LE mono audio for ``text``: one tone per word, silent gaps between."""
    if sample_rate not in (8000, 16000, 24000, 48000):
        raise ValueError(f"unsupported sample_rate {sample_rate}")
    params = params or SynthParams()
    words = tuple(text.split())
    gap = bytes(2 * (sample_rate * params.gap_ms // 1000))
    chunks: list[bytes] = []
    offsets: list[int] = []
    pos = 0
    for i, word in enumerate(words):
        if i:
            chunks.append(gap)
            pos += len(gap)
        offsets.append(pos)
        tone = synthesize_word(word, sample_rate, params)
        chunks.append(tone)
        pos += len(tone)
    return Synthesis(pcm=b"".join(chunks), words=words, word_offsets=tuple(offsets), sample_rate=sample_rate)


def bytes_per_ms(format_type: str) -> int:
    """Bytes per millisecond of mono audio for a GA format type (pcm 24 kHz, G.711 8 kHz)."""
    if format_type == "audio/pcm":
        return 48
    if format_type in ("audio/pcmu", "audio/pcma"):
        return 8
    raise ValueError(f"unknown audio format {format_type!r}")


# --- G.711 (ITU-T), table driven: 256-entry decode tables, per-sample encode -------------

def _ulaw_decode_one(u: int) -> int:
    u = ~u & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return (0x84 - t) if (u & 0x80) else (t - 0x84)


def _alaw_decode_one(a: int) -> int:
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t += 0x108
        t <<= seg - 1
    return t if (a & 0x80) else -t


_ULAW_DEC = tuple(_ulaw_decode_one(i) for i in range(256))
_ALAW_DEC = tuple(_alaw_decode_one(i) for i in range(256))
_SEG_END = (0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF)


_ULAW_SEG_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)


def _ulaw_encode_one(s: int) -> int:
    # Same 14-bit formulation as the ITU reference (and audioop), so bytes match exactly.
    s >>= 2
    mask = 0xFF
    if s < 0:
        s = -s
        mask = 0x7F
    s = min(s, 8159) + 0x21
    seg = 0
    while seg < 8 and s > _ULAW_SEG_END[seg]:
        seg += 1
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((s >> (seg + 1)) & 0x0F)) ^ mask


def _alaw_encode_one(s: int) -> int:
    s >>= 3
    if s >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        s = -s - 1
    seg = 0
    while seg < 8 and s > (_SEG_END[seg] >> 3):
        seg += 1
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (s >> 1) & 0x0F if seg < 2 else (s >> seg) & 0x0F
    return aval ^ mask


def ulaw_encode(pcm: bytes) -> bytes:
    """PCM16 LE -> mu-law bytes (one byte per sample)."""
    return bytes(_ulaw_encode_one(x) for x in pcm16_to_samples(pcm))


def alaw_encode(pcm: bytes) -> bytes:
    """PCM16 LE -> A-law bytes (one byte per sample)."""
    return bytes(_alaw_encode_one(x) for x in pcm16_to_samples(pcm))


def ulaw_decode(data: bytes) -> bytes:
    """mu-law bytes -> PCM16 LE."""
    return _to_le_bytes(array("h", [_ULAW_DEC[b] for b in data]))


def alaw_decode(data: bytes) -> bytes:
    """A-law bytes -> PCM16 LE."""
    return _to_le_bytes(array("h", [_ALAW_DEC[b] for b in data]))
