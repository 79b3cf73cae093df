"""Microphone / Speaker over a fake ``sounddevice`` (no hardware), and the missing-module path."""

from __future__ import annotations

import asyncio
import sys
import threading
import types
from typing import Any

import pytest

from voiceengine.audio import devices
from voiceengine.audio.devices import AudioDeviceError, Microphone, Speaker, load_sounddevice
from voiceengine.exceptions import InvalidState, VoiceEngineError


class FakeStream:
    instances: list["FakeStream"] = []
    fail_open: Exception | None = None

    def __init__(self, *, samplerate: int, channels: int, dtype: str, blocksize: int, device: Any,
                 callback: Any) -> None:
        if FakeStream.fail_open is not None:
            raise FakeStream.fail_open
        self.kwargs = dict(samplerate=samplerate, channels=channels, dtype=dtype, blocksize=blocksize, device=device)
        self.callback = callback
        self.started = self.stopped = self.closed = False
        FakeStream.instances.append(self)

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None:
        self.closed = True


class PortAudioError(Exception):
    pass


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("sounddevice")
    module.RawInputStream = FakeStream  # type: ignore[attr-defined]
    module.RawOutputStream = FakeStream  # type: ignore[attr-defined]
    module.PortAudioError = PortAudioError  # type: ignore[attr-defined]
    FakeStream.instances = []
    FakeStream.fail_open = None
    monkeypatch.setitem(sys.modules, "sounddevice", module)
    return module


def test_missing_sounddevice_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import raises ImportError
    with pytest.raises(AudioDeviceError, match="pip install") as info:
        load_sounddevice()
    assert isinstance(info.value, VoiceEngineError)


def test_missing_portaudio_gives_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str) -> Any:
        raise OSError("PortAudio library not found")

    monkeypatch.setattr(devices.importlib, "import_module", broken)
    with pytest.raises(AudioDeviceError, match="PortAudio"):
        load_sounddevice()


async def test_microphone_missing_module_raises_on_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    mic = Microphone()  # constructing needs no sounddevice
    with pytest.raises(AudioDeviceError):
        async with mic:
            pass


async def test_microphone_delivers_frames_from_the_audio_thread(fake_sd: types.ModuleType) -> None:
    async with Microphone(sample_rate=16000, frame_ms=20, device="mic") as mic:
        (stream,) = FakeStream.instances
        assert stream.started and stream.kwargs == dict(samplerate=16000, channels=1, dtype="int16",
                                                        blocksize=320, device="mic")
        frames = [bytes([i]) * 640 for i in range(5)]

        def audio_thread() -> None:
            for frame in frames:
                stream.callback(memoryview(frame), 320, None, None)

        thread = threading.Thread(target=audio_thread)
        thread.start()
        thread.join()
        got = [await asyncio.wait_for(mic.__anext__(), 5) for _ in range(5)]
        assert got == frames and mic.overflows == 0 and mic.frames_captured == 5
    assert stream.stopped and stream.closed
    with pytest.raises(StopAsyncIteration):
        await mic.__anext__()


async def test_microphone_overflow_is_bounded_and_counted(fake_sd: types.ModuleType) -> None:
    mic = Microphone(queue_frames=4)
    mic.start()
    stream = FakeStream.instances[0]
    status = types.SimpleNamespace(input_overflow=True)
    thread = threading.Thread(target=lambda: [stream.callback(bytes([i]) * 960, 480, None, status)
                                              for i in range(10)])
    thread.start()
    thread.join()
    assert mic.overflows == 6 and mic.device_overflows == 10
    got = [await mic.__anext__() for _ in range(4)]
    assert [g[0] for g in got] == [6, 7, 8, 9]  # the newest survive
    await mic.aclose()


async def test_microphone_iteration_ends_on_close(fake_sd: types.ModuleType) -> None:
    mic = Microphone()

    async def consume() -> list[bytes]:
        return [frame async for frame in mic]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    mic.close()
    assert await asyncio.wait_for(task, 5) == []
    with pytest.raises(InvalidState):
        mic.start()


async def test_device_open_failure_is_typed(fake_sd: types.ModuleType) -> None:
    FakeStream.fail_open = PortAudioError("Invalid device")
    with pytest.raises(AudioDeviceError, match="python -m sounddevice"):
        Microphone(device=99).start()
    with pytest.raises(AudioDeviceError):
        Speaker(Source(b"")).start()


class Source:
    """A RingBuffer-like source: read_into(out, pad=True) -> real bytes copied."""

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)

    @property
    def available(self) -> int:
        return len(self.data)

    def read_into(self, out: Any, *, pad: bool = True) -> int:
        n = min(len(out), len(self.data))
        out[:n] = self.data[:n]
        if pad:
            out[n:] = bytes(len(out) - n)
        del self.data[:n]
        return n


async def test_speaker_pulls_from_source_and_counts_underruns(fake_sd: types.ModuleType) -> None:
    source = Source(b"\x01\x02" * 700)
    async with Speaker(source, sample_rate=24000, frame_ms=20) as speaker:
        (stream,) = FakeStream.instances
        assert stream.kwargs["blocksize"] == 480
        out = bytearray(960)
        stream.callback(out, 480, None, None)
        assert out == b"\x01\x02" * 480 and speaker.underruns == 0
        stream.callback(out, 480, None, None)
        assert out[:440] == b"\x01\x02" * 220 and out[440:] == bytes(520)
        assert speaker.underruns == 1 and speaker.bytes_played == 1400
        assert speaker.played_ms == pytest.approx(1400 / 48)
    assert stream.closed


async def test_speaker_prebuffers(fake_sd: types.ModuleType) -> None:
    source = Source(b"\x05\x00" * 100)
    speaker = Speaker(source, prebuffer_ms=10)  # 480 bytes
    speaker.start()
    stream = FakeStream.instances[0]
    out = bytearray(b"\xff" * 960)
    stream.callback(out, 480, None, None)
    assert out == bytes(960) and source.available == 200  # silence, nothing consumed
    source.data += b"\x05\x00" * 200
    stream.callback(out, 480, None, None)
    assert speaker.bytes_played == 600
    speaker.close()


async def test_speaker_survives_a_raising_source(fake_sd: types.ModuleType) -> None:
    class Bad:
        def read_into(self, out: Any, *, pad: bool = True) -> int:
            raise RuntimeError("boom")

    speaker = Speaker(Bad())
    speaker.start()
    out = bytearray(b"\xff" * 960)
    FakeStream.instances[0].callback(out, 480, None, None)
    assert out == bytes(960) and speaker.callback_errors == 1
    speaker.close()


def test_bad_arguments() -> None:
    with pytest.raises(TypeError):
        Speaker(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Microphone(sample_rate=100)
    with pytest.raises(ValueError):
        Microphone(channels=3)
    with pytest.raises(ValueError):
        Speaker(Source(b""), prebuffer_ms=-1)


async def test_speaker_as_a_sink(fake_sd: types.ModuleType) -> None:
    speaker = Speaker(sample_rate=24000)  # no source: write()/clear() sink mode, as the engine uses it
    assert FakeStream.instances == []
    speaker.write(b"\x07\x00" * 600)  # the device starts on the first write
    (stream,) = FakeStream.instances
    assert stream.started
    out = bytearray(960)
    stream.callback(out, 480, None, None)
    assert out == b"\x07\x00" * 480
    assert speaker.clear() == 240  # barge-in flush
    stream.callback(out, 480, None, None)
    assert out == bytes(960) and speaker.underruns == 1
    with pytest.raises(Exception):
        speaker.write(b"\x00")  # half a sample
    speaker.close()
    with pytest.raises(InvalidState):
        speaker.write(b"\x00\x00")
    with pytest.raises(InvalidState):
        Speaker(Source(b"")).write(b"\x00\x00")


def test_sink_buffer_is_bounded() -> None:
    speaker = Speaker(sample_rate=8000, max_buffer_ms=10)  # 160 bytes
    buffer = speaker._own_buffer
    assert buffer is not None
    buffer.write(b"\x01\x00" * 100)
    assert buffer.available == 160 and buffer.total_dropped == 40
