"""WavSource / WavSink: round trips, chunking, realtime pacing on a fake clock, bad files."""

from __future__ import annotations

import array
import gc
import io
import struct
import sys
import wave
from pathlib import Path
from typing import Any

import pytest

from voiceengine.audio.wav import WavSink, WavSource
from voiceengine.exceptions import AudioFormatError, InvalidState


def ramp(frames: int, channels: int = 1) -> bytes:
    return array.array("h", [(i * 37) % 65536 - 32768 for i in range(frames * channels)]).tobytes()


class FakeClock:
    """A clock that only moves when the code under test sleeps (plus injected lag)."""

    def __init__(self, oversleep: float = 0.0) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.oversleep = oversleep

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay + self.oversleep


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("frames", [0, 1, 479, 480, 481, 24000])
async def test_round_trip(tmp_path: Path, channels: int, frames: int) -> None:
    pcm = ramp(frames, channels)
    path = tmp_path / "x.wav"
    with WavSink(path, sample_rate=24000, channels=channels) as sink:
        assert sink.write(pcm) == frames
    assert sink.closed and sink.frames_written == frames
    src = WavSource(path, chunk_ms=20, block_ms=30)
    assert (src.sample_rate, src.channels, src.frames) == (24000, channels, frames)
    assert src.duration_ms == pytest.approx(frames / 24)
    chunks = [c async for c in src]
    assert b"".join(chunks) == pcm
    assert all(len(c) == 480 * 2 * channels for c in chunks[:-1])
    assert src.read_all() == pcm
    # a second iteration starts again from the beginning
    assert b"".join([c async for c in src]) == pcm


async def test_chunk_sizes_at_odd_rates(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    with WavSink(path, sample_rate=44100) as sink:
        sink.write(ramp(44100))
    src = WavSource(path, chunk_ms=20)
    chunks = [c async for c in src]
    assert src.chunk_frames == 882 and len(chunks) == 50


async def test_file_object_source_and_sink() -> None:
    buf = io.BytesIO()
    sink = WavSink(buf, sample_rate=16000)
    sink.write(memoryview(ramp(1000)))
    await sink.awrite(bytearray(ramp(10)))
    await sink.aclose()
    assert not buf.closed  # the caller's file stays open
    buf.seek(0)
    src = WavSource(buf, chunk_ms=10)
    assert src.frames == 1010 and src.sample_rate == 16000
    assert b"".join([c async for c in src]) == ramp(1000) + ramp(10)


async def test_async_context_manager_and_closed_sink(tmp_path: Path) -> None:
    async with WavSink(tmp_path / "a.wav", sample_rate=8000) as sink:
        await sink.awrite(ramp(8))
    with pytest.raises(InvalidState):
        sink.write(ramp(8))
    sink.close()  # idempotent


async def test_early_break_leaks_no_file(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    with WavSink(path, sample_rate=24000) as sink:
        sink.write(ramp(24000))
    async for _chunk in WavSource(path):
        break  # ResourceWarning is an error in this suite: nothing may stay open


async def test_realtime_pacing_on_fake_clock(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    with WavSink(path, sample_rate=24000) as sink:
        sink.write(ramp(24000))  # 1 s = 50 chunks of 20 ms
    clock = FakeClock()
    src = WavSource(path, realtime=True, chunk_ms=20, clock=clock, sleep=clock.sleep)
    t0 = clock.now
    release_times = []
    async for _chunk in src:
        release_times.append(clock.now - t0)
    assert release_times == pytest.approx([i * 0.02 for i in range(50)])
    assert sum(clock.sleeps) == pytest.approx(0.98)


async def test_realtime_pacing_does_not_drift_when_sleep_overshoots(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    with WavSink(path, sample_rate=24000) as sink:
        sink.write(ramp(24000))
    clock = FakeClock(oversleep=0.005)  # every sleep wakes 5 ms late
    src = WavSource(path, realtime=True, chunk_ms=20, clock=clock, sleep=clock.sleep)
    t0 = clock.now
    release_times = [clock.now - t0 async for _ in _iter(src)]
    # each chunk is at most one oversleep late; the lateness never accumulates
    lateness = [t - i * 0.02 for i, t in enumerate(release_times)]
    assert max(lateness) <= 0.005 + 1e-9
    assert release_times[-1] == pytest.approx(0.98 + 0.005)
    assert all(d < 0.02 for d in clock.sleeps[1:])  # the schedule compensates


async def _iter(src: WavSource):  # type: ignore[no-untyped-def]
    async for chunk in src:
        yield chunk


async def test_realtime_catches_up_after_a_stall(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    with WavSink(path, sample_rate=24000) as sink:
        sink.write(ramp(4800))  # 10 chunks
    clock = FakeClock()
    src = WavSource(path, realtime=True, clock=clock, sleep=clock.sleep)
    it = src.__aiter__()
    await it.__anext__()
    clock.now += 0.1  # the consumer stalls for 100 ms
    for _ in range(5):
        await it.__anext__()
    assert clock.sleeps == []  # overdue chunks come at once
    await it.__anext__()
    assert clock.sleeps == [pytest.approx(0.02)]


_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")  # KSDATAFORMAT_SUBTYPE_*


def raw_wav(*, fmt_tag: int = 1, width: int = 2, channels: int = 1, rate: int = 24000,
            data: bytes = b"\x00\x00" * 10, subformat: int = 1, guid_tail: bytes = _GUID_TAIL,
            declared_data_bytes: int | None = None, extra_chunk: bytes = b"") -> bytes:
    """A WAV file's bytes; ``fmt_tag=0xFFFE`` writes WAVE_FORMAT_EXTENSIBLE with ``subformat``."""
    block = channels * width
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, width * 8)
    if fmt_tag == 0xFFFE:  # cbSize, valid bits, channel mask, subformat GUID (as sox writes it)
        fmt += struct.pack("<HHI", 22, width * 8, (1 << channels) - 1) + struct.pack("<H", subformat) + guid_tail
    size = len(data) if declared_data_bytes is None else declared_data_bytes
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra_chunk
            + b"data" + struct.pack("<I", size) + data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_raw_wav(path: Path, **kwargs: Any) -> None:
    path.write_bytes(raw_wav(**kwargs))


@pytest.mark.parametrize("kwargs, message", [
    ({"fmt_tag": 3, "width": 4}, "float"),
    ({"fmt_tag": 7, "width": 1}, "mu-law"),
    ({"width": 1}, "8-bit"),
    ({"width": 3, "data": b"\x00" * 9}, "24-bit"),
    ({"width": 4}, "32-bit"),
    ({"fmt_tag": 0xFFFE, "width": 4, "subformat": 3}, "float"),
    ({"fmt_tag": 0xFFFE, "subformat": 7, "width": 1}, "mu-law"),
    ({"fmt_tag": 0xFFFE, "guid_tail": bytes(14)}, "subformat"),
    ({"fmt_tag": 0xFFFE, "width": 3, "data": b"\x00" * 9}, "24-bit"),
])
def test_unsupported_formats_are_refused_clearly(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = tmp_path / "bad.wav"
    write_raw_wav(path, **kwargs)
    with pytest.raises(AudioFormatError, match=message):
        WavSource(path)


@pytest.mark.parametrize("channels", [1, 2])
async def test_extensible_pcm16_is_read_like_plain_pcm(tmp_path: Path, channels: int) -> None:
    pcm = ramp(4801, channels)
    path = tmp_path / "ext.wav"
    write_raw_wav(path, fmt_tag=0xFFFE, channels=channels, rate=16000, data=pcm)
    src = WavSource(path, chunk_ms=20, block_ms=50)
    assert (src.sample_rate, src.channels, src.frames) == (16000, channels, 4801)
    assert b"".join([c async for c in src]) == pcm
    assert WavSource(io.BytesIO(raw_wav(fmt_tag=0xFFFE, channels=channels, data=pcm))).read_all() == pcm


@pytest.mark.parametrize("fmt_tag", [1, 0xFFFE])
async def test_more_than_two_channels_are_mixed_down_to_mono(tmp_path: Path, fmt_tag: int) -> None:
    frames = [(1000, -3000, 5), (-32768, -32768, -32768), (32767, 32767, 32766), (7, 8, 9)] * 300
    data = array.array("h", [s for frame in frames for s in frame]).tobytes()
    path = tmp_path / "three.wav"  # what `sox -c 3` writes (fmt_tag 0xFFFE)
    write_raw_wav(path, fmt_tag=fmt_tag, channels=3, data=data)
    src = WavSource(path, chunk_ms=20, block_ms=30)
    assert (src.channels, src.file_channels, src.frames) == (1, 3, len(frames))
    expected = array.array("h", [sum(f) // 3 for f in frames]).tobytes()
    assert b"".join([c async for c in src]) == expected
    assert src.read_all() == expected
    assert all(len(c) == 480 * 2 for c in [c async for c in src][:-1])


async def test_chunks_before_data_and_odd_padding_are_skipped(tmp_path: Path) -> None:
    pcm = ramp(100)
    odd = b"LIST" + struct.pack("<I", 5) + b"INFO!" + b"\x00"  # 5 bytes + the pad byte
    path = tmp_path / "list.wav"
    write_raw_wav(path, data=pcm, extra_chunk=odd)
    assert WavSource(path).read_all() == pcm


def test_data_chunk_cut_short_is_an_error(tmp_path: Path) -> None:
    pcm = ramp(2400)
    path = tmp_path / "cut.wav"
    path.write_bytes(raw_wav(data=pcm)[:-1000])  # an interrupted copy: the header still says 4800 bytes
    with pytest.raises(AudioFormatError, match="cut short.*4800 bytes"):
        WavSource(path)
    with pytest.raises(AudioFormatError, match="cut short"):
        WavSource(io.BytesIO(raw_wav(data=pcm, declared_data_bytes=len(pcm) + 2)))
    write_raw_wav(path, data=pcm)  # whole again: fine
    assert WavSource(path).read_all() == pcm


def test_not_a_wav_and_truncated(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all")
    with pytest.raises(AudioFormatError, match="16-bit PCM WAV"):
        WavSource(junk)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioFormatError):
        WavSource(empty)
    with pytest.raises(AudioFormatError):
        WavSource(io.BytesIO(b"RIFF\x00\x00"))


def test_missing_file_passes_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        WavSource(tmp_path / "nope.wav")


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        WavSource(42)
    with pytest.raises(ValueError):
        WavSource(tmp_path / "x.wav", chunk_ms=0)
    with pytest.raises(ValueError):
        WavSink(tmp_path / "x.wav", sample_rate=0)
    with pytest.raises(ValueError):
        WavSink(tmp_path / "x.wav", sample_rate=24000, channels=3)


def test_sink_into_a_missing_directory_raises_and_leaves_nothing_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(FileNotFoundError):
        WavSink(tmp_path / "missing-dir" / "a.wav", sample_rate=24000)
    gc.collect()  # a half-built wave writer would complain from its __del__ here
    assert unraisable == []


def test_sink_validates_pcm16(tmp_path: Path) -> None:
    with WavSink(tmp_path / "x.wav", sample_rate=24000, channels=2) as sink:
        with pytest.raises(AudioFormatError):
            sink.write(b"\x00\x00")  # half a stereo frame
        with pytest.raises(AudioFormatError):
            sink.write(b"\x00")
        with pytest.raises(TypeError):
            sink.write(array.array("f", [0.0, 0.0]))
        with pytest.raises(TypeError):
            sink.write("text")
        sink.write(array.array("h", [1, 2, 3, 4]))
    with wave.open(str(tmp_path / "x.wav")) as reader:
        assert reader.getnframes() == 2 and reader.getsampwidth() == 2
