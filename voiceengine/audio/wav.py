"""WAV file I/O over the stdlib :mod:`wave`: :class:`WavSource` and :class:`WavSink`.

Only 16-bit integer PCM (mono or stereo) is read and written; anything else is refused
with :class:`~voiceengine.exceptions.AudioFormatError` saying what the file holds.

:class:`WavSource` never keeps a file open between chunks: a path is re-opened once per
read block (``block_ms``, default 1 s), so an abandoned ``async for`` leaks nothing. A file
object given by the caller is read whole at construction (and never closed by us).
"""

from __future__ import annotations

import asyncio
import os
import wave
from typing import Any, Awaitable, Callable

from ..exceptions import AudioFormatError, InvalidState

__all__ = ["WavSource", "WavSink"]



def _header_error(path: Any, exc: BaseException) -> AudioFormatError:
    detail = str(exc) or type(exc).__name__
    if "unknown format" in detail:
        code = detail.rsplit(":", 1)[-1].strip()
        kind = {"3": "32-bit float", "6": "A-law", "7": "mu-law", "65534": "WAVE_FORMAT_EXTENSIBLE"}.get(code, code)
        detail = f"encoding {kind} is not supported"
    return AudioFormatError(f"{_name(path)}: not a 16-bit PCM WAV file ({detail}); convert it, e.g. "
                            f"`ffmpeg -i in.wav -acodec pcm_s16le out.wav`")


def _name(path: Any) -> str:
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else getattr(path, "name", "<file>")


def _check(path: Any, reader: wave.Wave_read) -> tuple[int, int, int]:
    width, channels, rate = reader.getsampwidth(), reader.getnchannels(), reader.getframerate()
    if width != 2:
        raise AudioFormatError(f"{_name(path)}: {8 * width}-bit PCM is not supported, only 16-bit PCM")
    if channels not in (1, 2):
        raise AudioFormatError(f"{_name(path)}: {channels} channels are not supported, only mono or stereo")
    if not 1 <= rate <= 384000:
        raise AudioFormatError(f"{_name(path)}: sample rate {rate} Hz is out of range")
    return rate, channels, reader.getnframes()


class WavSource:
    """An async iterator of PCM16 chunks (``bytes``) from a 16-bit PCM WAV file.

    ``chunk_ms`` sets the chunk size (the last chunk may be shorter). With ``realtime``
    chunk *i* is released at ``t0 + (frames before it) / sample_rate`` on ``clock``
    (default: the running loop's clock), so the pace follows the audio without drift; a
    late consumer gets the overdue chunks at once (as from a microphone's buffer).
    ``clock``/``sleep`` can be injected (tests use a fake clock).
    """

    def __init__(
        self, path_or_file: Any, *, realtime: bool = False, chunk_ms: float = 20,
        block_ms: float = 1000, clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
    ) -> None:
        if not chunk_ms > 0 or not block_ms > 0:
            raise ValueError("chunk_ms and block_ms must be > 0")
        self._source = path_or_file
        self.realtime = realtime
        self.chunk_ms = float(chunk_ms)
        self._clock = clock
        self._sleep = sleep or asyncio.sleep
        self._data: bytes | None = None
        if isinstance(path_or_file, (str, os.PathLike)):
            try:
                with wave.open(os.fspath(path_or_file), "rb") as reader:
                    self.sample_rate, self.channels, self.frames = _check(path_or_file, reader)
            except (wave.Error, EOFError) as exc:
                raise _header_error(path_or_file, exc) from None
        elif hasattr(path_or_file, "read"):
            try:
                with wave.open(path_or_file, "rb") as reader:  # does not close a caller's file
                    self.sample_rate, self.channels, self.frames = _check(path_or_file, reader)
                    self._data = reader.readframes(self.frames)
            except (wave.Error, EOFError) as exc:
                raise _header_error(path_or_file, exc) from None
            self.frames = len(self._data) // (2 * self.channels)
        else:
            raise TypeError(f"expected a path or a binary file object, got {type(path_or_file).__name__}")
        self.chunk_frames = max(1, round(self.sample_rate * self.chunk_ms / 1000))
        self.block_frames = max(self.chunk_frames, round(self.sample_rate * block_ms / 1000))

    @property
    def duration_ms(self) -> float:
        return self.frames * 1000.0 / self.sample_rate

    @property
    def frame_bytes(self) -> int:
        """Bytes per sample frame."""
        return 2 * self.channels

    def read_all(self) -> bytes:
        """The whole file's PCM16 (synchronously)."""
        return self._read(0, self.frames)

    def _read(self, start: int, count: int) -> bytes:
        if self._data is not None:
            fb = self.frame_bytes
            return self._data[start * fb:(start + count) * fb]
        try:
            with wave.open(os.fspath(self._source), "rb") as reader:
                reader.setpos(start)
                return reader.readframes(count)
        except (wave.Error, EOFError) as exc:
            raise _header_error(self._source, exc) from None

    def __aiter__(self) -> "_WavIterator":
        return _WavIterator(self)

    def __repr__(self) -> str:
        return (f"<WavSource {_name(self._source)!r} {self.sample_rate} Hz x{self.channels} "
                f"{self.duration_ms:.0f} ms realtime={self.realtime}>")


class _WavIterator:
    def __init__(self, source: WavSource) -> None:
        self._src = source
        self._pos = 0  # next frame to hand out
        self._block = b""
        self._block_start = 0
        self._t0: float | None = None

    def __aiter__(self) -> "_WavIterator":
        return self

    async def __anext__(self) -> bytes:
        src = self._src
        if self._pos >= src.frames:
            raise StopAsyncIteration
        if src.realtime:
            clock = src._clock or asyncio.get_running_loop().time
            now = clock()
            if self._t0 is None:
                self._t0 = now
            # absolute schedule from t0: oversleeping once never accumulates into drift
            delay = self._t0 + self._pos / src.sample_rate - now
            if delay > 0:
                await src._sleep(delay)
        fb = src.frame_bytes
        offset = (self._pos - self._block_start) * fb
        if offset + src.chunk_frames * fb > len(self._block) and self._block_start + len(self._block) // fb < src.frames:
            # refill: keep the unread tail, read the next block
            start = self._block_start + len(self._block) // fb
            self._block = self._block[offset:] + src._read(start, src.block_frames)
            self._block_start = self._pos
            offset = 0
        chunk = self._block[offset:offset + src.chunk_frames * fb]
        if not chunk:  # the file shrank under us
            raise StopAsyncIteration
        self._pos += len(chunk) // fb
        return chunk


class WavSink:
    """Writes PCM16 to a WAV file. ``write(buf)`` takes any buffer of whole sample frames.

    Use as a (async) context manager or call :meth:`close`. Local-disk writes of 20-100 ms
    chunks take microseconds, so :meth:`awrite` writes inline; wrap in
    :func:`asyncio.to_thread` for slow file systems.
    """

    def __init__(self, path_or_file: Any, *, sample_rate: int, channels: int = 1) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 1 <= sample_rate <= 384000:
            raise ValueError(f"sample_rate must be an int in 1..384000, got {sample_rate!r}")
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {channels!r}")
        if not isinstance(path_or_file, (str, os.PathLike)) and not hasattr(path_or_file, "write"):
            raise TypeError(f"expected a path or a binary file object, got {type(path_or_file).__name__}")
        self.sample_rate = sample_rate
        self.channels = channels
        self.frames_written = 0
        target = os.fspath(path_or_file) if isinstance(path_or_file, (str, os.PathLike)) else path_or_file
        self._writer: wave.Wave_write | None = wave.open(target, "wb")
        self._writer.setnchannels(channels)
        self._writer.setsampwidth(2)
        self._writer.setframerate(sample_rate)

    @property
    def duration_ms(self) -> float:
        return self.frames_written * 1000.0 / self.sample_rate

    @property
    def closed(self) -> bool:
        return self._writer is None

    def write(self, buf: Any) -> int:
        """Append PCM16 frames; returns the frames written."""
        if self._writer is None:
            raise InvalidState("WavSink is closed")
        if isinstance(buf, str):
            raise TypeError("expected a bytes-like PCM16 buffer, not str")
        view = memoryview(buf)
        if view.format not in ("B", "b", "c", "h", "<h") or not view.c_contiguous:
            raise TypeError(f"expected C-contiguous int16/bytes data, got format {view.format!r}")
        view = view.cast("B")
        frame_bytes = 2 * self.channels
        if len(view) % frame_bytes:
            raise AudioFormatError(f"{len(view)} bytes is not a whole number of PCM16 frames "
                                   f"({frame_bytes} bytes each)")
        self._writer.writeframesraw(view)
        frames = len(view) // frame_bytes
        self.frames_written += frames
        return frames

    async def awrite(self, buf: Any) -> int:
        return self.write(buf)

    def close(self) -> None:
        """Finish the header and close (the caller's file object stays open). Idempotent."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    async def aclose(self) -> None:
        self.close()

    def __enter__(self) -> "WavSink":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> "WavSink":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<WavSink {self.sample_rate} Hz x{self.channels} {self.duration_ms:.0f} ms closed={self.closed}>"
