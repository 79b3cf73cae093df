"""WavSource / WavSink: round trips, chunking, realtime pacing on a fake clock, bad files."""

from __future__ import annotations

import array
import io
import struct
import wave
from pathlib import Path

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


def write_raw_wav(path: Path, *, fmt_tag: int = 1, width: int = 2, channels: int = 1, rate: int = 24000,
                  data: bytes = b"\x00\x00" * 10) -> None:
    block = channels * width
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, width * 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


@pytest.mark.parametrize("kwargs, message", [
    ({"fmt_tag": 3, "width": 4}, "float"),
    ({"fmt_tag": 7, "width": 1}, "mu-law"),
    ({"width": 1}, "8-bit"),
    ({"width": 3, "data": b"\x00" * 9}, "24-bit"),
    ({"width": 4}, "32-bit"),
    ({"channels": 6, "data": b"\x00" * 12}, "6 channels"),
])
def test_unsupported_formats_are_refused_clearly(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = tmp_path / "bad.wav"
    write_raw_wav(path, **kwargs)
    with pytest.raises(AudioFormatError, match=message):
        WavSource(path)


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
