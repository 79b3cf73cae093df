"""The bad-input matrix, across every buffer entry point of the audio core
(PCM helpers, Chunker.push, RingBuffer.write): wrong dtypes -> TypeError, big-endian /
non-contiguous / negative-stride -> AudioFormatError, odd byte counts per entry point,
zero length, read-only buffers and memoryview slices -> correct output."""

from __future__ import annotations

import array
from collections.abc import Callable

import numpy as np
import pytest

from voiceengine._audio import pcm
from voiceengine._audio.chunker import Chunker
from voiceengine._audio.ring import RingBuffer
from voiceengine.exceptions import AudioFormatError


def _ring_write(buf: object) -> object:
    r = RingBuffer(1 << 16)
    r.write(buf)
    return r.read(1 << 16)


def _chunk(buf: object) -> object:
    c = Chunker(4)
    frames = [bytes(f) for f in c.push(buf)]
    return frames, c.pending


ENTRY: dict[str, Callable[[object], object]] = {
    "int16_to_float32": lambda b: bytes(pcm.int16_to_float32(b)),
    "stereo_to_mono": pcm.stereo_to_mono,
    "mono_to_stereo": pcm.mono_to_stereo,
    "apply_gain": lambda b: pcm.apply_gain(b, -3.0),
    "peak_dbfs": pcm.peak_dbfs,
    "rms_dbfs": pcm.rms_dbfs,
    "ulaw_encode": pcm.ulaw_encode,
    "alaw_encode": pcm.alaw_encode,
    "ulaw_decode": pcm.ulaw_decode,
    "alaw_decode": pcm.alaw_decode,
    "Chunker.push": _chunk,
    "RingBuffer.write": _ring_write,
}
# entry points whose input is PCM16 (an odd byte count is not whole samples)
PCM16_IN = [k for k in ENTRY if not k.endswith("_decode")]

GOOD = np.array([1000, -2000, 3000, -4000, 32767, -32768, 0, 7], dtype=np.int16)

WRONG_DTYPE = {
    "int8": np.zeros(8, dtype=np.int8),
    "int32": np.zeros(8, dtype=np.int32),
    "float64": np.zeros(8, dtype=np.float64),
    "float32": np.zeros(8, dtype=np.float32),
    "uint16": np.zeros(8, dtype=np.uint16),
    "array_i": array.array("i", [0] * 8),
    "str": "abcd",
    "none": None,
    "int": 5,
    "list": [0, 1, 2, 3],
}
BAD_LAYOUT = {
    "big_endian": GOOD.astype(">i2"),
    "strided": np.repeat(GOOD, 2)[::2],
    "negative_stride": GOOD[::-1],
    "fortran_2d": np.asfortranarray(GOOD.reshape(2, 4).T.copy().T),
}


@pytest.mark.parametrize("entry", list(ENTRY))
@pytest.mark.parametrize("kind", list(WRONG_DTYPE))
def test_wrong_dtype_is_type_error(entry: str, kind: str) -> None:
    with pytest.raises(TypeError):
        ENTRY[entry](WRONG_DTYPE[kind])


@pytest.mark.parametrize("entry", list(ENTRY))
@pytest.mark.parametrize("kind", list(BAD_LAYOUT))
def test_bad_layout_is_audio_format_error(entry: str, kind: str) -> None:
    arr = BAD_LAYOUT[kind]
    if kind == "fortran_2d":
        assert not arr.flags.c_contiguous
    with pytest.raises(AudioFormatError):
        ENTRY[entry](arr)


@pytest.mark.parametrize("entry", [k for k in PCM16_IN if k != "Chunker.push"])
def test_odd_byte_count_is_audio_format_error(entry: str) -> None:
    with pytest.raises(AudioFormatError):
        ENTRY[entry](b"\x01\x02\x03")


def test_chunker_carries_odd_bytes_instead() -> None:
    assert _chunk(b"\x01\x02\x03") == ([], 3)


@pytest.mark.parametrize("entry", list(ENTRY))
@pytest.mark.parametrize("empty", [b"", bytearray(), memoryview(b""), np.zeros(0, np.int16)],
                         ids=["bytes", "bytearray", "memoryview", "ndarray"])  # stable ids: pytest-xdist compares them
def test_zero_length(entry: str, empty: object) -> None:
    out = ENTRY[entry](empty)
    if entry in ("peak_dbfs", "rms_dbfs"):
        assert out == float("-inf")
    elif entry == "Chunker.push":
        assert out == ([], 0)
    else:
        assert out == b""


def _variants() -> dict[str, object]:
    raw = GOOD.tobytes()
    ro = GOOD.copy()
    ro.flags.writeable = False
    padded = b"xx" + raw + b"yy"
    return {
        "bytes": raw,
        "bytearray": bytearray(raw),
        "memoryview": memoryview(raw),
        "mv_slice": memoryview(padded)[2:-2],
        "mv_odd_offset_slice": memoryview(b"x" + raw)[1:],  # unaligned start
        "mv_cast_h": memoryview(raw).cast("h"),
        "readonly_mv_bytearray": memoryview(bytearray(raw)).toreadonly(),
        "numpy_int16": GOOD,
        "numpy_readonly": ro,
        "numpy_le_explicit": GOOD.astype("<i2"),
        "numpy_uint8": np.frombuffer(raw, np.uint8),
        "numpy_2d_c": GOOD.reshape(2, 4),
        "array_h": array.array("h", GOOD.tolist()),
    }


@pytest.mark.parametrize("entry", list(ENTRY))
@pytest.mark.parametrize("variant", list(_variants()))
def test_every_accepted_buffer_gives_the_same_result(entry: str, variant: str) -> None:
    reference = ENTRY[entry](GOOD.tobytes())
    assert ENTRY[entry](_variants()[variant]) == reference


def test_inputs_are_not_modified() -> None:
    arr = GOOD.copy()
    for entry in ENTRY.values():
        entry(arr)
    assert np.array_equal(arr, GOOD)


def test_a_plain_byte_view_comes_back_as_itself_and_is_left_releasable() -> None:
    # A 1-D, contiguous, non-empty view of format "B" (a chunker's frame, a slice of bytes
    # or bytearray) is what the intake would hand back anyway: no second view is made.
    data = bytes(range(200)) * 4
    for view in (memoryview(data), memoryview(data)[2:10], memoryview(bytearray(data)),
                 memoryview(data).toreadonly()):
        out = pcm.pcm16_view(view)
        assert out is view
        view.release()  # the check took no lasting export of the caller's view


@pytest.mark.parametrize("make", ["cast_c", "two_d", "int16", "empty"])
def test_other_views_still_take_the_general_path(make: str) -> None:
    data = bytes(range(8))
    view = {"cast_c": memoryview(data).cast("c"), "two_d": memoryview(data).cast("B", (2, 4)),
            "int16": memoryview(np.frombuffer(data, "<i2")), "empty": memoryview(b"")}[make]
    out = pcm.pcm16_view(view)
    assert out is not view and isinstance(out, memoryview)
    assert out.format == "B" and out.ndim == 1 and bytes(out) == (data if make != "empty" else b"")


def test_views_the_fast_path_refuses_get_the_usual_errors() -> None:
    released = memoryview(bytes(4))
    released.release()
    with pytest.raises(TypeError):
        pcm.pcm16_view(released)
    with pytest.raises(AudioFormatError, match="even byte count"):
        pcm.pcm16_view(memoryview(bytes(5)))
    with pytest.raises(AudioFormatError, match="C-contiguous"):
        pcm.pcm16_view(memoryview(bytes(8))[::2])
