"""WAV file I/O: :class:`WavSource` and :class:`WavSink`.

Only 16-bit integer PCM is read and written, in the plain (``WAVE_FORMAT_PCM``) or the
``WAVE_FORMAT_EXTENSIBLE`` form with the PCM subformat (what sox and ffmpeg write for more
than two channels). Anything else is refused with
:class:`~voiceengine.exceptions.AudioFormatError` saying what the file holds, and so is a
file whose data chunk is cut short (its header declares more audio than the file holds:
an interrupted copy or download), rather than playing part of it silently. Files with more
than two channels are read mixed down to mono (the engine takes mono or stereo).

:class:`WavSource` never keeps a file open between chunks: a path is re-opened once per
read block (``block_ms``, default 1 s), so an abandoned ``async for`` leaks nothing. A file
object given by the caller is read whole at construction (and never closed by us).
"""

from __future__ import annotations

import array
import asyncio
import io
import os
import struct
import sys
import wave
from dataclasses import dataclass
from typing import Any, Awaitable, BinaryIO, Callable

from ..exceptions import AudioFormatError, InvalidState

__all__ = ["WavSource", "WavSink"]

_PCM = 0x0001
_EXTENSIBLE = 0xFFFE
# The 14 bytes after the format code in a KSDATAFORMAT_SUBTYPE_* GUID (…-0000-0010-8000-00aa00389b71).
_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")
_FORMAT_NAMES = {3: "32-bit float", 6: "A-law", 7: "mu-law", 2: "ADPCM", 0x11: "IMA ADPCM", 0x55: "MP3"}
_CONVERT = "convert it, e.g. `ffmpeg -i in.wav -acodec pcm_s16le out.wav`"


def _name(path: Any) -> str:
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else getattr(path, "name", "<file>")


def _not_pcm16(path: Any, detail: str) -> AudioFormatError:
    return AudioFormatError(f"{_name(path)}: not a 16-bit PCM WAV file ({detail}); {_CONVERT}")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Layout:
    """Where a WAV file's PCM16 frames are and what they are."""

    sample_rate: int
    channels: int        # in the file
    data_offset: int     # byte offset of the first frame
    frames: int


def _read_layout(path: Any, f: BinaryIO) -> _Layout:
    """Parse the RIFF header of ``f`` (positioned at its start)."""
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        kind = "an RF64 file" if head[:4] == b"RF64" else "no RIFF/WAVE header"
        raise _not_pcm16(path, kind)
    position = 12
    fmt: tuple[int, int, int] | None = None
    while True:
        chunk = f.read(8)
        if len(chunk) < 8:
            raise _not_pcm16(path, "no fmt chunk" if fmt is None else "no data chunk")
        chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        position += 8
        if chunk_id == b"fmt ":
            body = f.read(size)
            if len(body) < size:
                raise _not_pcm16(path, "the fmt chunk is cut short")
            fmt = _parse_fmt(path, body)
        elif chunk_id == b"data":
            if fmt is None:
                raise _not_pcm16(path, "data chunk before the fmt chunk")
            rate, channels, block = fmt
            available = _remaining(f)
            if size > available:
                raise AudioFormatError(
                    f"{_name(path)}: the data chunk is cut short: its header declares {size} bytes of audio, "
                    f"the file holds {available} (an interrupted copy or download?)")
            return _Layout(sample_rate=rate, channels=channels, data_offset=position, frames=size // block)
        else:
            f.seek(size, os.SEEK_CUR)
        position += size + (size & 1)  # chunks are padded to an even size
        f.seek(position)


def _remaining(f: BinaryIO) -> int:
    here = f.tell()
    end = f.seek(0, os.SEEK_END)
    f.seek(here)
    return end - here


def _parse_fmt(path: Any, body: bytes) -> tuple[int, int, int]:
    """(sample_rate, channels, block_align) of a 16-bit PCM fmt chunk, else a clear error."""
    if len(body) < 16:
        raise _not_pcm16(path, "the fmt chunk is too short")
    tag, channels, rate, _byte_rate, block, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE:
        if len(body) < 40:
            raise _not_pcm16(path, "a WAVE_FORMAT_EXTENSIBLE fmt chunk without its subformat")
        guid = body[24:40]
        tag = struct.unpack("<H", guid[:2])[0]
        if guid[2:] != _GUID_TAIL:
            raise _not_pcm16(path, f"WAVE_FORMAT_EXTENSIBLE subformat {guid.hex()} is not supported")
    if tag != _PCM:
        kind = _FORMAT_NAMES.get(tag, f"format code {tag:#06x}")
        raise _not_pcm16(path, f"encoding {kind} is not supported")
    if bits != 16:
        raise AudioFormatError(f"{_name(path)}: {bits}-bit PCM is not supported, only 16-bit PCM; {_CONVERT}")
    if channels < 1:
        raise _not_pcm16(path, "0 channels")
    if block != 2 * channels:
        raise _not_pcm16(path, f"block align {block} does not match {channels} channels of 16-bit samples")
    if not 1 <= rate <= 384000:
        raise AudioFormatError(f"{_name(path)}: sample rate {rate} Hz is out of range")
    return rate, channels, block


def _mix_down(pcm: bytes, channels: int) -> bytes:
    """Mono PCM16 LE: the mean of ``channels`` interleaved channels (copies)."""
    samples = array.array("h", pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    mono = array.array("h", map(lambda *frame: sum(frame) // channels,
                                *(samples[c::channels] for c in range(channels))))
    if sys.byteorder == "big":
        mono.byteswap()
    return mono.tobytes()


class WavSource:
    """An async iterator of PCM16 chunks (``bytes``) from a 16-bit PCM WAV file.

    ``chunk_ms`` sets the chunk size (the last chunk may be shorter). With ``realtime``
    chunk *i* is released at ``t0 + (frames before it) / sample_rate`` on ``clock``
    (default: the running loop's clock), so the pace follows the audio without drift; a
    late consumer gets the overdue chunks at once (as from a microphone's buffer).
    ``clock``/``sleep`` can be injected (tests use a fake clock).

    ``channels`` is what the chunks hold: the file's channel count for mono and stereo
    files, 1 for files with more channels (mixed down, see the module docstring;
    ``file_channels`` keeps the file's count).
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
            with open(os.fspath(path_or_file), "rb") as f:
                self._layout = _read_layout(path_or_file, f)
        elif hasattr(path_or_file, "read"):
            raw = path_or_file.read()  # the caller's file stays open
            if not isinstance(raw, bytes):
                raise TypeError(f"expected a binary file object, got one that reads {type(raw).__name__}")
            self._layout = _read_layout(path_or_file, io.BytesIO(raw))
            start = self._layout.data_offset
            self._data = self._convert(raw[start:start + self._layout.frames * self._file_frame_bytes])
        else:
            raise TypeError(f"expected a path or a binary file object, got {type(path_or_file).__name__}")
        self.sample_rate = self._layout.sample_rate
        self.file_channels = self._layout.channels
        self.channels = self.file_channels if self.file_channels <= 2 else 1
        self.frames = self._layout.frames
        self.chunk_frames = max(1, round(self.sample_rate * self.chunk_ms / 1000))
        self.block_frames = max(self.chunk_frames, round(self.sample_rate * block_ms / 1000))

    @property
    def _file_frame_bytes(self) -> int:
        return 2 * self._layout.channels

    def _convert(self, pcm: bytes) -> bytes:
        """Whole frames of the file's PCM as the chunks carry them (mixed down if > 2 channels)."""
        pcm = pcm[: len(pcm) - len(pcm) % self._file_frame_bytes]
        return _mix_down(pcm, self._layout.channels) if self._layout.channels > 2 else pcm

    @property
    def duration_ms(self) -> float:
        return self.frames * 1000.0 / self.sample_rate

    @property
    def frame_bytes(self) -> int:
        """Bytes per sample frame of the chunks."""
        return 2 * self.channels

    def read_all(self) -> bytes:
        """The whole file's PCM16 (synchronously)."""
        return self._read(0, self.frames)

    def _read(self, start: int, count: int) -> bytes:
        if self._data is not None:
            fb = self.frame_bytes
            return self._data[start * fb:(start + count) * fb]
        count = max(0, min(count, self.frames - start))
        with open(os.fspath(self._source), "rb") as f:
            f.seek(self._layout.data_offset + start * self._file_frame_bytes)
            return self._convert(f.read(count * self._file_frame_bytes))

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
        # A path is opened here, not by wave.open: when that open fails, wave leaves a
        # half-built writer whose __del__ prints a traceback after our error.
        self._own_file: BinaryIO | None = None
        if isinstance(path_or_file, (str, os.PathLike)):
            self._own_file = open(os.fspath(path_or_file), "wb")
        try:
            target: Any = self._own_file if self._own_file is not None else path_or_file
            writer = wave.open(target, "wb")
            writer.setnchannels(channels)
            writer.setsampwidth(2)
            writer.setframerate(sample_rate)
        except BaseException:
            if self._own_file is not None:
                self._own_file.close()
            raise
        self._writer: wave.Wave_write | None = writer

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
        own, self._own_file = self._own_file, None
        try:
            if writer is not None:
                writer.close()
        finally:
            if own is not None:
                own.close()

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
