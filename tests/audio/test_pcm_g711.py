"""G.711 mu-law / A-law against reference tables built here from the standard's segment
algorithm (ITU-T G.711, as implemented by the ITU-T G.191 reference software), and
against the stdlib ``audioop`` when it is importable."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceengine._audio import pcm

ALL16 = np.arange(-32768, 32768, dtype=np.int64)
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # deprecated in 3.11, removed in 3.13
except ImportError:  # pragma: no cover - Python >= 3.13
    audioop = None


# -- reference: segment/decision-level formulation -------------------------------------------

def ref_ulaw_encode(x: int) -> int:
    """mu-law: 14-bit magnitude (one's complement for negatives), bias 33, 8 segments."""
    mag = ((~x) >> 2) if x < 0 else (x >> 2)
    mag = min(mag + 33, 0x1FFF)
    seg = max(mag.bit_length() - 6, 0)  # segment = position of the leading 1 above bit 5
    mant = (mag >> (seg + 1)) & 0xF
    code = (seg << 4) | mant
    return (~code & 0x7F) | (0x80 if x >= 0 else 0)


def ref_ulaw_decode(code: int) -> int:
    c = ~code & 0xFF
    seg, mant = (c >> 4) & 7, c & 0xF
    mag = (((mant << 3) + 0x84) << seg) - 0x84
    return -mag if c & 0x80 else mag


def ref_alaw_encode(x: int) -> int:
    """A-law: 12-bit magnitude (one's complement for negatives), 8 segments, even bits toggled."""
    mag = ((~x) >> 4) if x < 0 else (x >> 4)
    seg = max(mag.bit_length() - 4, 0)  # segment 1 starts at magnitude 16
    mant = (mag >> (seg - 1)) & 0xF if seg > 0 else mag & 0xF
    code = (seg << 4) | mant
    return (code | (0x80 if x >= 0 else 0)) ^ 0x55


def ref_alaw_decode(code: int) -> int:
    c = code ^ 0x55
    seg, mant = (c >> 4) & 7, c & 0xF
    mag = (mant << 4) + 8 if seg == 0 else ((mant << 4) + 0x108) << (seg - 1)
    return mag if c & 0x80 else -mag


ULAW_ENC = np.array([ref_ulaw_encode(int(x)) for x in ALL16], dtype=np.uint8)
ALAW_ENC = np.array([ref_alaw_encode(int(x)) for x in ALL16], dtype=np.uint8)
ULAW_DEC = np.array([ref_ulaw_decode(c) for c in range(256)], dtype="<i2")
ALAW_DEC = np.array([ref_alaw_decode(c) for c in range(256)], dtype="<i2")
PCM_ALL = ALL16.astype("<i2").tobytes()
CODES = bytes(range(256))


def test_reference_table_sanity() -> None:
    # well-known anchor points of G.711
    assert ref_ulaw_encode(0) == 0xFF and ref_ulaw_encode(32767) == 0x80 and ref_ulaw_encode(-32768) == 0x00
    assert ref_alaw_encode(0) == 0xD5 and ref_alaw_encode(-1) == 0x55
    assert ref_ulaw_decode(0x00) == -32124 and ref_ulaw_decode(0x80) == 32124 and ref_ulaw_decode(0xFF) == 0
    assert ref_alaw_decode(0xD5) == 8 and ref_alaw_decode(0xAA) == 32256 and ref_alaw_decode(0x2A) == -32256


def test_encoders_match_reference_for_every_int16() -> None:
    assert np.array_equal(np.frombuffer(pcm.ulaw_encode(PCM_ALL), np.uint8), ULAW_ENC)
    assert np.array_equal(np.frombuffer(pcm.alaw_encode(PCM_ALL), np.uint8), ALAW_ENC)


def test_decoders_match_reference_for_every_code() -> None:
    assert np.array_equal(np.frombuffer(pcm.ulaw_decode(CODES), "<i2"), ULAW_DEC)
    assert np.array_equal(np.frombuffer(pcm.alaw_decode(CODES), "<i2"), ALAW_DEC)


def test_code_roundtrip() -> None:
    """encode(decode(code)) == code for every code (mu-law's negative zero 0x7F maps to 0xFF)."""
    assert pcm.alaw_encode(pcm.alaw_decode(CODES)) == CODES
    assert pcm.ulaw_encode(pcm.ulaw_decode(CODES)) == CODES[:0x7F] + b"\xff" + CODES[0x80:]


@given(st.lists(st.integers(-32768, 32767), max_size=300))
def test_sample_roundtrip_error_within_half_step(samples: list[int]) -> None:
    x = np.array(samples, dtype="<i2")
    for enc, dec, step0, bits in ((pcm.ulaw_encode, pcm.ulaw_decode, 8, 2), (pcm.alaw_encode, pcm.alaw_decode, 16, 4)):
        y = np.frombuffer(dec(enc(x)), "<i2").astype(np.int64)
        # quantisation step of the segment the decoded value falls in (clipping region excluded)
        codes = np.frombuffer(enc(x), np.uint8)
        err = np.abs(y - x.astype(np.int64))
        ok = np.abs(x.astype(np.int64)) < 32000
        seg = (((~codes.astype(np.int64)) >> 4) & 7) if bits == 2 else (((codes.astype(np.int64) ^ 0x55) >> 4) & 7)
        step = step0 << np.maximum(seg - (0 if bits == 2 else 1), 0)
        assert np.all(err[ok] <= step[ok])
        assert np.array_equal(np.sign(y[x > 16]), np.ones(int((x > 16).sum())))


@pytest.mark.skipif(audioop is None, reason="audioop not available (Python >= 3.13)")
def test_against_audioop() -> None:
    assert pcm.alaw_encode(PCM_ALL) == audioop.lin2alaw(PCM_ALL, 2)
    assert pcm.alaw_decode(CODES) == audioop.alaw2lin(CODES, 2)
    assert pcm.ulaw_decode(CODES) == audioop.ulaw2lin(CODES, 2)
    ours = np.frombuffer(pcm.ulaw_encode(PCM_ALL), np.uint8)
    theirs = np.frombuffer(audioop.lin2ulaw(PCM_ALL, 2), np.uint8)
    # audioop (Sun g711.c) negates negative mu-law inputs (-x) where G.191 takes the one's
    # complement (~x): identical for x >= 0, and for x <= -5 ours(x) == audioop(x + 4).
    pos = ALL16 >= 0
    assert np.array_equal(ours[pos], theirs[pos])
    neg = np.nonzero(ALL16 <= -5)[0]
    assert np.array_equal(ours[neg], theirs[neg + 4])
    assert ours[32768 - 4 : 32768].tolist() == [0x7F] * 4
