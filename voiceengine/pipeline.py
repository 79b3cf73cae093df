"""The engine's two audio paths, kept apart from the facade so each can be tested and timed.

Input:  app/mic/WAV buffer -> :class:`~voiceengine.audio.Resampler` (any rate 8k-192k, mono
or stereo -> provider rate, mono) -> :class:`~voiceengine.audio.Chunker` (frame_ms) ->
``provider.send_audio(frame)``. No Python-level copy in between: the resampler returns a
fresh ``bytes`` and the chunker's frames are read-only views into it (see the Chunker's
view-validity rules), so frames can be queued by the provider as they are.

Output: AUDIO_DELTA -> :class:`~voiceengine.audio.RingBuffer` (the playback/jitter buffer)
-> a playback clock that pulls from the ring -> :class:`~voiceengine.audio.Resampler` to the
sink rate -> sinks. The ring's ``total_read`` is the truth of what was heard. The clock:

* ``speed=1.0``: real time (devices, or anything that must be paced);
* ``speed=N``: a *virtual* playback clock draining N x faster than real time (files,
  app callbacks, tests): the read head still advances with time, so a barge-in still
  lands mid-reply and truncates at what was "played";
* ``speed=None``: unpaced, each delta is played as soon as it arrives (the read head
  equals the write head; a barge-in truncates at everything received).

Prebuffering (jitter) is done here, not in the ring: playback of a response starts when
``prebuffer_ms`` are queued *or* the response's audio is complete (a reply shorter than the
prebuffer must still play).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterable, Awaitable, Callable

from .audio import Chunker, Resampler, RingBuffer
from .exceptions import AudioFormatError, ConfigurationError

__all__ = ["InputPipeline", "Playback", "ItemTrack", "Transcript"]

log = logging.getLogger("voiceengine.pipeline")

SendFn = Callable[[Any], Awaitable[None]]
DeliverFn = Callable[[bytes], "Awaitable[None] | None"]


class InputPipeline:
    """Resample + chunk app audio into provider frames.

    ``push(buf, sample_rate, channels)`` returns the frames ready to send (read-only
    memoryviews). A change of input rate/channels flushes the old resampler first.
    """

    def __init__(self, *, provider_rate: int, frame_ms: float, quality: str | None = None) -> None:
        if not 1.0 <= frame_ms <= 1000.0:
            raise ConfigurationError(f"frame_ms must be in 1..1000, got {frame_ms!r}")
        self.provider_rate = provider_rate
        self.frame_ms = frame_ms
        self.chunker = Chunker.from_ms(frame_ms, provider_rate, 1)
        self._resampler: Resampler | None = None
        self._key: tuple[int, int] | None = None
        #: bytes that could not be sent: half a sample left when the stream ended mid-sample
        self.dropped_bytes = 0

    @property
    def delay_ms(self) -> float:
        return float(self._resampler.delay_ms) if self._resampler is not None else 0.0

    def _route(self, sample_rate: int, channels: int) -> list[memoryview]:
        key = (sample_rate, channels)
        if key == self._key:
            return []
        tail = self._drain_resampler()
        self._key = key
        if sample_rate == self.provider_rate and channels == 1:
            self._resampler = None  # passthrough: no resampler, no copy
        else:
            self._resampler = Resampler(sample_rate, self.provider_rate, in_channels=channels, out_channels=1)
        return tail

    def _drain_resampler(self) -> list[memoryview]:
        if self._resampler is None:
            return []
        rest = self._resampler.flush()
        return self.chunker.push(rest) if rest else []

    def push(self, buf: Any, sample_rate: int, channels: int) -> list[memoryview]:
        """Frames (at the provider rate, mono) completed by ``buf``."""
        if not 8000 <= sample_rate <= 192000:
            raise AudioFormatError(f"sample_rate must be in 8000..192000 Hz, got {sample_rate!r}")
        if channels not in (1, 2):
            raise AudioFormatError(f"channels must be 1 or 2, got {channels!r}")
        frames = self._route(sample_rate, channels)
        if self._resampler is None:
            frames += self.chunker.push(buf)
        else:
            out = self._resampler.process(buf)
            if out:
                frames += self.chunker.push(out)
        return frames

    def flush(self) -> list[memoryview]:
        """End of an utterance: drain the resampler and the chunker's remainder (unpadded)."""
        frames = self._drain_resampler()
        if self._resampler is not None:
            self._resampler.reset()
        if self.chunker.pending % 2:
            frames += self._drop_half_sample()
        rest = self.chunker.flush(pad=False)
        if rest is not None and len(rest):
            frames.append(rest)
        return frames

    def _drop_half_sample(self) -> list[memoryview]:
        """The stream ended mid-sample: keep the whole samples, drop (and count) the odd byte.

        The chunker only gives carried bytes back as whole samples, so the sample is
        completed with a zero byte and then cut off; that byte never reaches a frame.
        """
        self.dropped_bytes += 1
        frames = self.chunker.push(b"\0")
        if frames:  # the completed sample closed a frame: it is that frame's last sample
            frames[-1] = frames[-1][:-2]
            return [f for f in frames if len(f)]
        rest = self.chunker.flush(pad=False)
        return [rest[:-2]] if rest is not None and len(rest) > 2 else []

    def reset(self) -> None:
        self.chunker.reset()
        if self._resampler is not None:
            self._resampler.reset()


@dataclass(slots=True)
class ItemTrack:
    """Where one assistant item's audio sits in the ring's byte stream."""

    item_id: str
    response_id: str | None
    start: int  # the write head (bytes ever stored) when its first delta arrived
    received: int = 0


class Playback:
    """The playback buffer and its clock (see the module docstring).

    ``deliver(pcm)`` gets sink-rate PCM16 as it is played. ``on_start``/``on_stop`` are
    called at the edges of each playback session (a response's audio).
    """

    def __init__(
        self,
        *,
        in_rate: int,
        out_rate: int,
        out_channels: int,
        capacity_ms: int,
        prebuffer_ms: int,
        speed: float | None,
        tick_ms: float,
        deliver: DeliverFn,
        on_start: Callable[[], None] | None = None,
        on_stop: Callable[[bool], None] | None = None,
        on_played: Callable[[int], None] | None = None,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ConfigurationError("playback speed must be > 0 or None (unpaced)")
        if tick_ms <= 0 or prebuffer_ms < 0 or capacity_ms <= 0:
            raise ConfigurationError("tick_ms and capacity_ms must be > 0, prebuffer_ms >= 0")
        self.in_rate = in_rate
        self.bytes_per_s = in_rate * 2
        self.speed = speed
        self.tick_s = tick_ms / 1000.0
        self.prebuffer_bytes = _even(in_rate * 2 * prebuffer_ms // 1000)
        self.ring = RingBuffer(_even(in_rate * 2 * capacity_ms // 1000), overflow="drop_newest")
        self.resampler = Resampler(in_rate, out_rate, in_channels=1, out_channels=out_channels)
        self._deliver = deliver
        self._on_start = on_start
        self._on_stop = on_stop
        self._on_played = on_played
        self.items: dict[str, ItemTrack] = {}
        # The write head counts bytes stored; the read head is what left the ring, played
        # or flushed by barge-in (_stored - ring.available). Flushed bytes were never heard
        # but they did pass the head, so later items' offsets stay aligned.
        self._stored = 0
        self.last_item: ItemTrack | None = None
        self.playing = False
        self.stream_done = True  # no audio expected until a delta arrives
        self.underruns = 0
        self._in_underrun = False
        self._t0 = 0.0
        self._consumed = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -------------------------------------------------------------- write side
    def write(self, item_id: str | None, response_id: str | None, pcm: Any) -> int:
        """Queue one audio delta; returns bytes stored."""
        key = item_id or f"<{response_id}>"
        track = self.items.get(key)
        if track is None:
            track = ItemTrack(key, response_id, self._stored)
            self.items[key] = track
            if len(self.items) > 64:  # bounded: forget the oldest finished items
                self.items.pop(next(iter(self.items)))
        stored = self.ring.write(pcm)
        self._stored += stored
        track.received += stored
        self.last_item = track
        self.stream_done = False
        self._wake.set()
        return stored

    def end_of_stream(self) -> None:
        """No more audio is coming for now (response done): play out what is queued."""
        self.stream_done = True
        self._wake.set()

    # --------------------------------------------------------------- read head
    def played_bytes(self, track: ItemTrack | None = None, *, unheard_ms: float = 0.0) -> int:
        """Bytes of ``track`` (default: the latest item) past the read head, less
        ``unheard_ms``: audio the sink took but the listener has not heard yet (a remote
        jitter buffer, see :meth:`stop_now`)."""
        track = track or self.last_item
        if track is None:
            return 0
        unheard = _even(int(unheard_ms * self.bytes_per_s / 1000)) if unheard_ms > 0 else 0
        read_head = self._stored - self.ring.available - unheard
        return max(0, min(read_head - track.start, track.received))

    def played_ms(self, track: ItemTrack | None = None, *, unheard_ms: float = 0.0) -> int:
        """Milliseconds of ``track`` (default: the latest item) actually played, floored."""
        return self.played_bytes(track, unheard_ms=unheard_ms) * 1000 // self.bytes_per_s

    @property
    def audible(self) -> bool:
        """Whether the assistant is (or is about to be) heard."""
        return self.playing or self.ring.available > 0

    # ------------------------------------------------------------ barge-in
    def stop_now(self, *, unheard_ms: float = 0.0) -> tuple[ItemTrack | None, int, int]:
        """Flush playback at once. Returns (latest item, its played ms, bytes discarded).

        ``unheard_ms``: audio already handed to the sink that the listener has not heard
        (a phone network's or a browser's playout buffer, known from its acknowledgements);
        the played position is taken that far behind the read head.
        """
        track = self.last_item
        played = self.played_ms(track, unheard_ms=unheard_ms)
        dropped = self.ring.clear()
        self.resampler.reset()
        self.stream_done = True
        was_playing = self.playing
        self.playing = False
        self._in_underrun = False
        if was_playing and self._on_stop is not None:
            self._on_stop(True)
        return track, played, dropped

    # --------------------------------------------------------------- the clock
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="voiceengine-playback")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _emit(self, pcm: bytes) -> None:
        if not pcm:
            return
        if self._on_played is not None:
            self._on_played(len(pcm))
        out = self.resampler.process(pcm)
        if out:
            await self._call(out)

    async def _call(self, out: bytes) -> None:
        result = self._deliver(out)
        if inspect.isawaitable(result):
            await result

    async def _finish(self) -> None:
        tail = self.resampler.flush()
        if tail:
            await self._call(tail)
        self.playing = False
        if self._on_stop is not None:
            self._on_stop(False)

    def _ready(self) -> bool:
        avail = self.ring.available
        return avail > 0 and (avail >= self.prebuffer_bytes or self.stream_done)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        frame = 2
        while True:
            if not self.playing:
                self._wake.clear()
                if not self._ready():
                    await self._wake.wait()
                    continue
                self.playing = True
                self._in_underrun = False
                self._t0 = loop.time()
                self._consumed = 0
                if self._on_start is not None:
                    self._on_start()
            if self.speed is None:
                chunk = self.ring.read(self.ring.available)
                await self._emit(chunk)
                if self.ring.available == 0:
                    if self.stream_done:
                        await self._finish()
                    else:
                        self._wake.clear()
                        await self._wake.wait()
                continue
            await asyncio.sleep(self.tick_s)
            if not self.playing:  # stop_now() ran while we slept
                continue
            now = loop.time()
            due = int((now - self._t0) * self.bytes_per_s * self.speed) - self._consumed
            due -= due % frame
            if due <= 0:
                continue
            chunk = self.ring.read(due)
            self._consumed += due
            await self._emit(chunk)
            if len(chunk) < due:
                # Short read: restart the clock from now so there is no catch-up burst.
                self._t0, self._consumed = loop.time(), 0
                if self.stream_done and self.ring.available == 0:
                    await self._finish()
                elif not self._in_underrun:
                    self._in_underrun = True
                    self.underruns += 1
            else:
                self._in_underrun = False


def _even(n: int) -> int:
    return max(2, n - (n % 2))


# ------------------------------------------------- engine facade helpers
@dataclass(frozen=True, slots=True, kw_only=True)
class Transcript:
    """A transcript for :attr:`VoiceEngine.on_transcript`: ``role`` user or assistant."""

    role: str
    text: str
    final: bool
    item_id: str | None = None


class _Callback:
    """A settable callback attribute that is also a decorator: ``engine.on_x = f`` or ``@engine.on_x``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = "_cb_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        handler = obj.__dict__.get(self.name)

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            obj.__dict__[self.name] = fn
            return fn

        register.handler = handler  # type: ignore[attr-defined]
        return register

    def __set__(self, obj: Any, fn: Callable[..., Any] | None) -> None:
        if fn is not None and not callable(fn):
            raise TypeError("callback must be callable or None")
        obj.__dict__[self.name] = fn


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _guard(awaitable: Awaitable[Any], name: str) -> None:
    try:
        await awaitable
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("async %s callback raised", name)


async def _aiter(source: Any) -> AsyncIterable[Any]:
    if hasattr(source, "__aiter__"):
        async for buf in source:
            yield buf
    elif hasattr(source, "__iter__"):
        for buf in source:
            yield buf
            await asyncio.sleep(0)
    else:
        raise TypeError("source must be an (async) iterable of PCM16 buffers")
