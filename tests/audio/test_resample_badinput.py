"""Resampler bad-input matrix: clear typed errors at the boundary, never a crash."""

from __future__ import annotations

import array

import numpy as np
import pytest

from voiceengine._audio.resample import Resampler, resample
from voiceengine.exceptions import AudioFormatError, ConfigurationError

SAMPLES = np.arange(-500, 500, dtype="<i2") * 37


@pytest.mark.parametrize(
    "buf",
    [
        np.zeros(10, dtype=np.int8),
        np.zeros(10, dtype=np.int32),
        np.zeros(10, dtype=np.float64),
        np.zeros(10, dtype=np.float32),
        np.zeros(10, dtype=np.uint16),
        array.array("i", [1, 2, 3]),
        "abcd",
        None,
        12,
        [1, 2, 3],
    ],
    ids=["int8", "int32", "float64", "float32", "uint16", "array-i", "str", "None", "int", "list"],
)
def test_wrong_types_raise_type_error(buf: object) -> None:
    rs = Resampler(48000, 24000)
    with pytest.raises(TypeError):
        rs.process(buf)
    with pytest.raises(TypeError):
        resample(buf, 48000, 24000)
    assert (rs.total_in, rs.pending) == (0, 0)  # nothing consumed


@pytest.mark.parametrize(
    "buf",
    [
        SAMPLES.astype(">i2"),
        SAMPLES[::2],
        SAMPLES[::-1],
        np.stack([SAMPLES, SAMPLES], axis=1)[:, 0],
    ],
    ids=["big-endian", "strided", "negative-stride", "column-view"],
)
def test_layout_errors_raise_audio_format_error(buf: np.ndarray) -> None:
    rs = Resampler(48000, 24000)
    with pytest.raises(AudioFormatError):
        rs.process(buf)
    with pytest.raises(ValueError):  # AudioFormatError is a ValueError
        resample(buf, 48000, 24000)


def test_accepted_buffer_kinds_give_identical_output() -> None:
    raw = SAMPLES.tobytes()
    expected = resample(raw, 44100, 24000)
    readonly = np.frombuffer(raw, dtype="<i2")
    assert not readonly.flags.writeable
    kinds = [
        bytearray(raw),
        memoryview(raw),
        memoryview(raw).toreadonly(),
        SAMPLES,
        readonly,
        SAMPLES.view(np.uint8),
        array.array("h", SAMPLES.tolist()),
        memoryview(b"x" + raw)[1:],  # odd address: unaligned int16 reads
    ]
    for buf in kinds:
        assert resample(buf, 44100, 24000) == expected
        rs = Resampler(44100, 24000)
        assert rs.process(buf) + rs.flush() == expected


def test_stereo_2d_numpy_array_accepted() -> None:
    stereo = np.ascontiguousarray(np.stack([SAMPLES, -SAMPLES], axis=1))
    assert resample(stereo, 48000, 24000, in_channels=2, out_channels=2) == resample(
        stereo.tobytes(), 48000, 24000, in_channels=2, out_channels=2
    )


@pytest.mark.parametrize("rate", [0, -1, -48000, 384001, 10**12])
def test_rates_out_of_range(rate: int) -> None:
    with pytest.raises(ValueError):
        Resampler(rate, 24000)
    with pytest.raises(ConfigurationError):
        Resampler(24000, rate)
    with pytest.raises(ValueError):
        resample(b"", rate, 24000)


@pytest.mark.parametrize("rate", [48000.0, 1.5, "48000", None, True])
def test_rates_wrong_type(rate: object) -> None:
    with pytest.raises(TypeError):
        Resampler(rate, 24000)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Resampler(24000, rate)  # type: ignore[arg-type]


def test_rate_limits_and_numpy_ints_accepted() -> None:
    assert Resampler(384000, 8000).ratio == (1, 48)
    assert Resampler(np.int64(48000), np.int32(24000)).ratio == (1, 2)
    assert Resampler(1, 2).ratio == (2, 1)


@pytest.mark.parametrize("channels", [0, 3, -1, 8])
def test_channels_out_of_range(channels: int) -> None:
    with pytest.raises(ValueError):
        Resampler(48000, 24000, in_channels=channels)
    with pytest.raises(ValueError):
        Resampler(48000, 24000, out_channels=channels)


def test_channels_wrong_type() -> None:
    with pytest.raises(TypeError):
        Resampler(48000, 24000, in_channels=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Resampler(48000, 24000, in_channels="2")  # type: ignore[arg-type]


def test_positional_channels_rejected() -> None:
    with pytest.raises(TypeError):
        Resampler(48000, 24000, 2, 1)  # type: ignore[misc]


def test_zero_length_and_single_byte_inputs() -> None:
    rs = Resampler(16000, 24000, in_channels=2)
    assert rs.process(b"") == b""
    assert rs.process(b"\x00") == b"" and rs.pending == 1
    assert rs.process(b"\x00\x00") == b"" and rs.pending == 3
    rs.process(b"\x00")  # completes the stereo frame from the carried bytes
    assert rs.pending == 0 and rs.total_in == 1
    assert resample(b"", 16000, 24000) == b""
    assert resample(b"\x01", 16000, 24000) == b""


def test_large_buffer_and_repeated_use_are_bounded() -> None:
    rs = Resampler(48000, 24000)
    big = bytes(2 * 48000 * 5)
    for _ in range(3):
        assert len(rs.process(big)) > 0
    # history is trimmed to the filter window after every call (no growth with stream length)
    for _ in range(2000):
        rs.process(bytes(1920))
    assert rs.total_out == rs.total_in // 2 - rs.delay


def test_uninitialized_or_reinitialized_instance_is_safe() -> None:
    from voiceengine.exceptions import InvalidState

    raw = Resampler.__new__(Resampler)
    for call in (lambda: raw.process(b"\x00\x00"), raw.flush, raw.reset, lambda: raw.delay):
        with pytest.raises(InvalidState):
            call()
    rs = Resampler(48000, 24000)
    rs.process(SAMPLES)
    rs.__init__(48000, 24000, in_channels=2, out_channels=2)  # type: ignore[misc]
    stereo = np.ascontiguousarray(np.stack([SAMPLES, SAMPLES], axis=1))
    assert rs.process(stereo) + rs.flush() == resample(stereo, 48000, 24000, in_channels=2, out_channels=2)
    with pytest.raises(ValueError):
        rs.__init__(48000, 24000, in_channels=3)  # type: ignore[misc]
    with pytest.raises(InvalidState):
        rs.process(b"\x00\x00")
