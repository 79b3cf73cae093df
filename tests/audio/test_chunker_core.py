"""Chunker: framing, carry, flush/reset, from_ms, and the view-validity guarantee."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceengine._audio.chunker import Chunker
from voiceengine.exceptions import AudioFormatError, ConfigurationError


def _join(frames: list[memoryview]) -> bytes:
    return b"".join(bytes(f) for f in frames)


def test_exact_frames_from_bytes_are_zero_copy_views() -> None:
    data = bytes(range(200)) * 48  # 9600 bytes = 10 frames of 960
    frames = Chunker(960).push(data)
    assert len(frames) == 10
    for i, fr in enumerate(frames):
        assert fr.readonly and fr.format == "B" and fr.nbytes == 960
        assert fr.obj is data  # a view into the caller's immutable bytes, no copy
        assert bytes(fr) == data[i * 960 : (i + 1) * 960]


def test_readonly_memoryview_over_bytes_is_zero_copy() -> None:
    data = bytes(range(256)) * 10
    frames = Chunker(512).push(memoryview(data)[4:])
    assert all(f.obj is data for f in frames)
    assert _join(frames) == data[4 : 4 + 512 * len(frames)]


def test_carry_across_calls_including_odd_bytes() -> None:
    c = Chunker(4)
    assert c.push(b"\x01") == [] and c.pending == 1
    assert c.push(b"\x02\x03") == [] and c.pending == 3
    frames = c.push(b"\x04\x05\x06\x07\x08\x09")
    assert [bytes(f) for f in frames] == [b"\x01\x02\x03\x04", b"\x05\x06\x07\x08"]
    assert c.pending == 1
    assert c.push(b"") == [] and c.pending == 1


def test_mutable_input_frames_survive_buffer_reuse() -> None:
    """Documented rule: frames never alias a mutable input; reuse it freely."""
    c = Chunker(8)
    buf = bytearray(b"ABCDEFGHIJKLMNOPQR")  # 2 frames + 2 carried
    frames = c.push(buf)
    buf[:] = b"x" * len(buf)  # caller reuses its buffer
    buf.extend(b"more")  # and may resize it at once: no export is held
    assert [bytes(f) for f in frames] == [b"ABCDEFGH", b"IJKLMNOP"]
    arr = np.arange(8, dtype=np.int16)
    frames2 = c.push(arr)
    arr[:] = -1
    assert _join(frames2) == b"QR" + np.arange(8, dtype=np.int16).tobytes()[:14]
    assert all(f.readonly for f in frames + frames2)


def test_frames_survive_later_push_flush_reset() -> None:
    c = Chunker(4)
    a = c.push(bytearray(b"abcdef"))
    b = c.push(b"ghij")
    c.reset()
    c.push(bytearray(b"zzzzzzzz"))
    c.flush()
    assert _join(a) + _join(b) == b"abcdefgh"


def test_borrow_aliases_caller_buffer() -> None:
    """borrow=True: zero-copy into mutable input; valid only until the caller mutates it."""
    buf = bytearray(b"01234567")
    frames = Chunker(4).push(buf, borrow=True)
    assert all(f.readonly for f in frames)
    assert bytes(frames[0]) == b"0123"
    buf[0:1] = b"X"
    assert bytes(frames[0]) == b"X123"  # aliasing, as documented
    with pytest.raises(BufferError):
        buf.extend(b"..")  # the held views pin the bytearray's size
    frames.clear()
    buf.extend(b"..")


def test_flush_pad_and_nopad() -> None:
    c = Chunker(6)
    assert c.flush() is None
    c.push(b"abcd")
    fr = c.flush(pad=True)
    assert fr is not None and fr.readonly and bytes(fr) == b"abcd\x00\x00"
    assert c.pending == 0 and c.flush() is None
    c.push(b"ab")
    fr = c.flush(pad=False)
    assert fr is not None and bytes(fr) == b"ab"


def test_flush_odd_pending_raises_and_keeps_bytes() -> None:
    c = Chunker(6)
    c.push(b"abc")
    with pytest.raises(AudioFormatError):
        c.flush()
    assert c.pending == 3
    c.push(b"d")
    fr = c.flush(pad=False)
    assert fr is not None and bytes(fr) == b"abcd"


def test_reset() -> None:
    c = Chunker(4)
    c.push(b"abc")
    c.reset()
    assert c.pending == 0
    assert [bytes(f) for f in c.push(b"wxyz")] == [b"wxyz"]


@pytest.mark.parametrize(
    ("frame_ms", "rate", "channels", "expected"),
    [(20, 24000, 1, 960), (10, 16000, 1, 320), (20, 44100, 2, 3528), (2.5, 8000, 1, 40), (0.125, 8000, 1, 2)],
)
def test_from_ms(frame_ms: float, rate: int, channels: int, expected: int) -> None:
    c = Chunker.from_ms(frame_ms, rate, channels)
    assert isinstance(c, Chunker) and c.frame_bytes == expected


@pytest.mark.parametrize(
    ("args", "exc"),
    [
        ((0, 24000), ConfigurationError),
        ((-5, 24000), ConfigurationError),
        ((float("nan"), 24000), ConfigurationError),
        ((20, 0), ConfigurationError),
        ((20, 400000), ConfigurationError),
        ((20, 24000, 3), ConfigurationError),
        ((0.01, 8000), ConfigurationError),  # 0.08 samples
        ((1.01, 44100), ConfigurationError),  # 44.541 samples: not whole
        ((20, 24000.0), TypeError),
        (("20", 24000), TypeError),
    ],
)
def test_from_ms_rejects(args: tuple, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        Chunker.from_ms(*args)


@pytest.mark.parametrize("fb", [0, -2, 3, 961, 1 << 27])
def test_bad_frame_bytes(fb: int) -> None:
    with pytest.raises(ConfigurationError):
        Chunker(fb)


@pytest.mark.parametrize("fb", [2.0, "960", None, True])
def test_frame_bytes_type(fb: object) -> None:
    with pytest.raises(TypeError):
        Chunker(fb)  # type: ignore[arg-type]


_KINDS = ("bytes", "bytearray", "mv_bytes", "mv_slice", "numpy_or_bytes", "borrow")


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=3000),
    cuts=st.lists(st.integers(0, 3000), max_size=12),
    fb=st.integers(1, 300).map(lambda k: 2 * k),
    kinds=st.lists(st.sampled_from(_KINDS), min_size=13, max_size=13),
)
def test_reassembly_equals_input_for_random_splits(data: bytes, cuts: list[int], fb: int, kinds: list[str]) -> None:
    """Frames (+ flushed remainder) reassemble to the input, whatever the split and buffer type;
    frames are checked only at the end, after every mutable input was scribbled over."""
    c = Chunker(fb)
    bounds = sorted({0, len(data), *(x for x in cuts if x <= len(data))})
    held: list[memoryview] = []
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        piece, kind = data[lo:hi], kinds[i]
        if kind == "bytes":
            held += c.push(piece)
        elif kind == "bytearray":
            ba = bytearray(piece)
            held += c.push(ba)
            ba[:] = b"\xee" * len(ba)
        elif kind == "mv_bytes":
            held += c.push(memoryview(piece))
        elif kind == "mv_slice":
            padded = b"<" + piece + b">"
            held += c.push(memoryview(padded)[1:-1])
        elif kind == "numpy_or_bytes" and len(piece) % 2 == 0:
            arr = np.frombuffer(piece, dtype="<i2").copy()
            held += c.push(arr)
            arr[:] = 12345
        elif kind == "borrow":
            held += [memoryview(bytes(f)) for f in c.push(bytearray(piece), borrow=True)]
        else:
            held += c.push(piece)
        assert c.pending == hi % fb
    assert all(f.nbytes == fb and f.readonly for f in held)
    assert c.pending == len(data) % fb
    tail = b""
    if c.pending % 2:
        with pytest.raises(AudioFormatError):
            c.flush()
        tail = data[len(data) - c.pending :]
        c.reset()
    else:
        fr = c.flush(pad=False)
        tail = bytes(fr) if fr is not None else b""
    assert _join(held) + tail == data
