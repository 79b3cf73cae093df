"""RingBuffer: policies, prebuffer, counters, validation, large (GIL-free) copies."""

from __future__ import annotations

import numpy as np
import pytest

from voiceengine._audio.ring import MAX_CAPACITY, RingBuffer
from voiceengine.exceptions import AudioFormatError, ConfigurationError, LimitExceeded


def test_write_read_roundtrip_with_wraparound() -> None:
    r = RingBuffer(10)
    assert r.write(b"abcdef") == 6
    assert r.read(4) == b"abcd"
    assert r.write(b"ghijkl") == 6  # wraps around the end of storage
    assert r.available == 8 and r.free == 2
    assert r.peek(100) == b"efghijkl"
    assert r.read(100) == b"efghijkl"
    assert r.read(4) == b"" and r.underruns == 0  # short read without pad is not an underrun


def test_drop_oldest_keeps_latest() -> None:
    r = RingBuffer(8, overflow="drop_oldest")
    r.write(b"012345")
    assert r.write(b"6789") == 4
    assert r.read(8) == b"23456789"
    assert (r.overruns, r.total_dropped) == (1, 2)
    assert r.write(b"ABCDEFGHIJ") == 8  # bigger than capacity: only its newest 8 bytes stay
    assert r.read(8) == b"CDEFGHIJ"
    assert r.total_dropped == 4


def test_drop_newest_keeps_oldest() -> None:
    r = RingBuffer(8, overflow="drop_newest")
    r.write(b"012345")
    assert r.write(b"6789") == 2
    assert r.read(8) == b"01234567"
    assert (r.overruns, r.total_dropped, r.total_written) == (1, 2, 10)


def test_raise_stores_nothing() -> None:
    r = RingBuffer(8, overflow="raise")
    r.write(b"012345")
    with pytest.raises(LimitExceeded) as ei:
        r.write(b"6789")
    assert ei.value.size == 4 and ei.value.limit == 2
    assert r.read(8) == b"012345"
    assert (r.overruns, r.total_dropped, r.total_written) == (1, 0, 6)


def test_pad_counts_underrun_and_total_read_excludes_padding() -> None:
    r = RingBuffer(16)
    r.write(b"abcd")
    assert r.read(8, pad=True) == b"abcd" + bytes(4)
    assert (r.total_read, r.underruns) == (4, 1)
    out = bytearray(b"\xff" * 6)
    assert r.read_into(out) == 0 and out == bytes(6)
    assert r.underruns == 2


def test_prebuffer_holds_then_releases_and_rearms() -> None:
    r = RingBuffer(64, prebuffer_bytes=8)
    assert r.prebuffering
    r.write(b"abcd")
    assert r.read(4) == b"" and r.read(4, pad=True) == bytes(4)
    assert r.underruns == 0  # waiting for the prebuffer is not an underrun
    r.write(b"efgh")
    assert r.read(4) == b"abcd" and not r.prebuffering
    assert r.read(8, pad=True) == b"efgh" + bytes(4)  # drained: underrun re-arms
    assert r.prebuffering and r.underruns == 1
    r.write(b"12345678")
    assert r.clear() == 8 and r.prebuffering and r.total_dropped == 8


def test_read_into_numpy_and_memoryview() -> None:
    r = RingBuffer(1024)
    src = np.arange(100, dtype=np.int16)
    r.write(src)
    dst = np.zeros(60, dtype=np.int16)
    assert r.read_into(dst) == 120
    assert np.array_equal(dst, src[:60])
    out = bytearray(200)
    assert r.read_into(memoryview(out)[:100], pad=False) == 80
    assert bytes(out[:80]) == src[60:].tobytes()


def test_large_writes_and_reads_take_the_nogil_path() -> None:
    r = RingBuffer(1 << 20)
    data = np.random.default_rng(1).integers(-32768, 32767, 200_000, dtype=np.int16).tobytes()
    assert r.write(data) == len(data)
    assert r.write(bytearray(data)) == len(data)
    assert r.read(len(data)) == data
    out = bytearray(len(data))
    assert r.read_into(out) == len(data) and out == data
    assert r.total_written == r.total_read == 2 * len(data)


@pytest.mark.parametrize("cap", [0, -2, 3, MAX_CAPACITY + 2])
def test_bad_capacity(cap: int) -> None:
    with pytest.raises(ConfigurationError):
        RingBuffer(cap)


@pytest.mark.parametrize("kwargs", [{"overflow": "drop"}, {"overflow": None}, {"prebuffer_bytes": 3},
                                    {"prebuffer_bytes": -2}, {"prebuffer_bytes": 66}])
def test_bad_options(kwargs: dict) -> None:
    with pytest.raises(ConfigurationError):
        RingBuffer(64, **kwargs)


@pytest.mark.parametrize("cap", [64.0, "64", None, True])
def test_capacity_type(cap: object) -> None:
    with pytest.raises(TypeError):
        RingBuffer(cap)  # type: ignore[arg-type]


def test_odd_counts_rejected_without_side_effects() -> None:
    r = RingBuffer(64)
    r.write(b"abcd")
    with pytest.raises(AudioFormatError):
        r.write(b"abc")
    with pytest.raises(AudioFormatError):
        r.read(3)
    with pytest.raises(AudioFormatError):
        r.peek(1)
    with pytest.raises(AudioFormatError):
        r.read_into(bytearray(3))
    with pytest.raises(AudioFormatError):
        r.read(-2)
    with pytest.raises(TypeError):
        r.read(2.0)  # type: ignore[arg-type]
    assert r.read(4) == b"abcd" and r.total_written == 4


def test_read_into_rejects_readonly_and_bad_buffers() -> None:
    r = RingBuffer(64)
    for out in (b"abcd", memoryview(bytearray(4)).toreadonly(), "abcd", None):
        with pytest.raises(TypeError):
            r.read_into(out)
    with pytest.raises(TypeError):
        r.read_into(np.zeros(4, dtype=np.float32))
    with pytest.raises(AudioFormatError):
        r.read_into(np.zeros(8, dtype=np.int16)[::2])


def test_repr_has_no_audio() -> None:
    r = RingBuffer(64, overflow="drop_newest")
    r.write(b"secret-audio")
    text = repr(r)
    assert "secret" not in text and "available=12" in text and "drop_newest" in text
    assert len(r) == 12 and r.capacity == 64 and r.overflow == "drop_newest"
