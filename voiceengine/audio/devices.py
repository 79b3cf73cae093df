"""Sound devices over ``sounddevice`` (optional extra ``voiceengine[audio]``).

``sounddevice`` is imported lazily, on first use: a missing module or a missing PortAudio
library raises :class:`AudioDeviceError` with an install hint, never at import time.

Threading: PortAudio calls our callbacks on its own real-time thread. The
:class:`Microphone` callback copies the block into a bounded ``deque`` (append is atomic
under the GIL) and wakes the loop with ``call_soon_threadsafe`` only when no wake-up is
already pending, so the audio thread never blocks and a stalled loop never grows memory:
the oldest blocks are dropped and counted in :attr:`Microphone.overflows`. The
:class:`Speaker` callback only calls ``source.read_into(out, pad=True)`` (a
:class:`~voiceengine.audio.RingBuffer` or anything alike), so the source must tolerate a
reader on another thread.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import logging
from typing import Any, Protocol, Self

from .._audio.ring import RingBuffer
from ..exceptions import AudioFormatError, InvalidState, VoiceEngineError

__all__ = ["AudioDeviceError", "Microphone", "Speaker", "load_sounddevice"]

log = logging.getLogger("voiceengine.audio.devices")

_INSTALL_HINT = (
    "install it with `pip install 'voiceengine[audio]'` (sounddevice); it needs the PortAudio library "
    "(Debian/Ubuntu: `apt install libportaudio2`, macOS: `brew install portaudio`)"
)


class AudioDeviceError(VoiceEngineError):
    """Sound device support is missing (sounddevice, PortAudio) or a device failed."""


def load_sounddevice() -> Any:
    """Import ``sounddevice`` or raise :class:`AudioDeviceError` with an install hint."""
    try:
        return importlib.import_module("sounddevice")
    except ImportError as exc:
        raise AudioDeviceError(f"sound devices need the 'sounddevice' package: {_INSTALL_HINT}") from exc
    except OSError as exc:  # sounddevice raises OSError when libportaudio is not found
        raise AudioDeviceError(f"the PortAudio library could not be loaded ({exc}): {_INSTALL_HINT}") from exc


def _device_error(sd: Any, what: str, exc: BaseException) -> AudioDeviceError:
    return AudioDeviceError(f"could not open the {what}: {exc}. List devices with "
                            f"`python -m sounddevice` and pass device=<index or name>")


def _check(sample_rate: int, channels: int, frame_ms: float) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 384000:
        raise ValueError(f"sample_rate must be an int in 8000..384000, got {sample_rate!r}")
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels!r}")
    if not 1 <= frame_ms <= 1000:
        raise ValueError(f"frame_ms must be in 1..1000, got {frame_ms!r}")


class _Device:
    """What both devices share: an owned PortAudio stream and its idempotent close."""

    _stream: Any
    _closed: bool

    sample_rate: int
    channels: int
    blocksize: int
    device: int | str | None

    def start(self) -> None:
        raise NotImplementedError

    def _callback(self, data: Any, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's callback (on its thread)."""
        raise NotImplementedError

    def _open(self, sd: Any, stream_class: str, what: str) -> None:
        """Open and start ``sd.<stream_class>`` on ``self._callback``; typed errors, nothing left open."""
        try:
            stream = getattr(sd, stream_class)(samplerate=self.sample_rate, channels=self.channels, dtype="int16",
                                               blocksize=self.blocksize, device=self.device,
                                               callback=self._callback)
        except Exception as exc:  # sd.PortAudioError, ValueError for a bad device
            raise _device_error(sd, what, exc) from exc
        try:
            stream.start()
        except Exception as exc:
            stream.close()
            raise _device_error(sd, what, exc) from exc
        self._stream = stream

    def close(self) -> None:
        """Stop and close the device. Idempotent."""
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
            finally:
                stream.close()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class Microphone(_Device):
    """Async iterator of PCM16 frames (``bytes`` of ``frame_ms``) from an input device.

    ``queue_frames`` bounds the frames waiting for the loop (default 50 = 1 s at 20 ms).
    Open with ``async with`` (or :meth:`start`/:meth:`close`).
    """

    def __init__(self, *, sample_rate: int = 24000, channels: int = 1, frame_ms: float = 20,
                 device: int | str | None = None, queue_frames: int = 50) -> None:
        _check(sample_rate, channels, frame_ms)
        if queue_frames < 1:
            raise ValueError("queue_frames must be >= 1")
        self.sample_rate, self.channels, self.frame_ms, self.device = sample_rate, channels, frame_ms, device
        self.blocksize = max(1, round(sample_rate * frame_ms / 1000))
        self._frames: collections.deque[bytes] = collections.deque(maxlen=queue_frames)
        self._stream: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._wake_pending = False
        self._closed = False
        self.overflows = 0  # frames dropped because the loop did not keep up
        self.device_overflows = 0  # PortAudio reported input overflow
        self.frames_captured = 0

    def start(self) -> None:
        """Open and start the input stream (must be called on the event loop)."""
        if self._closed:
            raise InvalidState("Microphone is closed")
        if self._stream is not None:
            return
        sd = load_sounddevice()
        self._loop = asyncio.get_running_loop()
        self._open(sd, "RawInputStream", "input device")

    # runs on the PortAudio thread: no locks, no blocking, no allocation beyond the copy
    def _callback(self, data: Any, frames: int, time_info: Any, status: Any) -> None:
        if status and getattr(status, "input_overflow", False):
            self.device_overflows += 1
        frames_q = self._frames
        if len(frames_q) == frames_q.maxlen:
            self.overflows += 1  # the deque drops the oldest on append
        frames_q.append(bytes(data))
        self.frames_captured += 1
        if not self._wake_pending and self._loop is not None:
            self._wake_pending = True
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # loop closed while the device was still running
                pass

    def _wake(self) -> None:
        self._wake_pending = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> "Microphone":
        return self

    async def __anext__(self) -> bytes:
        if self._stream is None and not self._closed:
            self.start()
        while not self._frames:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._frames.popleft()

    def close(self) -> None:
        """Stop and close the device; iteration ends. Idempotent."""
        super().close()
        self._wake()


class _Readable(Protocol):
    def read_into(self, out: Any, *, pad: bool = True) -> int: ...


class Speaker(_Device):
    """Plays PCM16 on an output device.

    Two ways to feed it: pull from ``source.read_into(out, pad=True)`` (e.g. the engine's
    RingBuffer, whose read head then tracks what was played), or, with no ``source``, use
    it as a sink: :meth:`write` appends to an internal bounded buffer (``max_buffer_ms``)
    and :meth:`clear` flushes it (barge-in); the device starts on the first write.

    ``prebuffer_ms``: when the source has an ``available`` attribute, output silence until
    that much audio is buffered (then play until the source runs dry, and re-arm). Counters:
    :attr:`underruns` (callbacks that got less than a full block), :attr:`bytes_played`.
    """

    def __init__(self, source: _Readable | None = None, *, sample_rate: int = 24000, channels: int = 1,
                 device: int | str | None = None, prebuffer_ms: float = 0, frame_ms: float = 20,
                 max_buffer_ms: float = 120_000) -> None:
        _check(sample_rate, channels, frame_ms)
        if source is not None and not callable(getattr(source, "read_into", None)):
            raise TypeError("source must have read_into(out, *, pad=True) -> int")
        if prebuffer_ms < 0:
            raise ValueError("prebuffer_ms must be >= 0")
        self._own_buffer: RingBuffer | None = None
        if source is None:
            # the audio core's SPSC ring: the loop writes, the PortAudio thread reads;
            # bounded, the oldest audio is dropped (counted in total_dropped)
            capacity = max(2, int(sample_rate * max_buffer_ms / 1000) * 2 * channels)
            source = self._own_buffer = RingBuffer(capacity, overflow="drop_oldest")
        self.source = source
        self.sample_rate, self.channels, self.device = sample_rate, channels, device
        self.blocksize = max(1, round(sample_rate * frame_ms / 1000))
        self.prebuffer_bytes = int(sample_rate * prebuffer_ms / 1000) * 2 * channels
        self._prebuffering = self.prebuffer_bytes > 0
        self._stream: Any = None
        self._closed = False
        self.underruns = 0
        self.bytes_played = 0
        self.callback_errors = 0

    def start(self) -> None:
        if self._closed:
            raise InvalidState("Speaker is closed")
        if self._stream is not None:
            return
        sd = load_sounddevice()
        self._open(sd, "RawOutputStream", "output device")

    # runs on the PortAudio thread
    def _callback(self, data: Any, frames: int, time_info: Any, status: Any) -> None:
        out = memoryview(data).cast("B")
        if self._prebuffering:
            available = getattr(self.source, "available", None)
            if available is not None and available < self.prebuffer_bytes:
                out[:] = bytes(len(out))
                return
            self._prebuffering = False
        try:
            got = self.source.read_into(out, pad=True)
        except Exception:  # never let an exception into PortAudio's thread
            self.callback_errors += 1
            out[:] = bytes(len(out))
            return
        self.bytes_played += got
        if got < len(out):
            self.underruns += 1
            if self.prebuffer_bytes and got == 0:
                self._prebuffering = True

    def write(self, buf: Any) -> int:
        """Queue PCM16 for playback (sink mode, no ``source`` given); starts the device."""
        if self._own_buffer is None:
            raise InvalidState("this Speaker plays from its source; write to the source instead")
        if self._closed:
            raise InvalidState("Speaker is closed")
        view = memoryview(buf).cast("B")
        if len(view) % (2 * self.channels):
            raise AudioFormatError(f"{len(view)} bytes is not a whole number of PCM16 frames")
        if self._stream is None:
            self.start()
        return self._own_buffer.write(view)

    def clear(self) -> int:
        """Drop queued audio at once (sink mode); returns the bytes dropped."""
        return self._own_buffer.clear() if self._own_buffer is not None else 0


    @property
    def played_ms(self) -> float:
        return self.bytes_played / (2 * self.channels * self.sample_rate) * 1000.0
