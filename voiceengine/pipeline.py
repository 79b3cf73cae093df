"""The engine's two audio paths, kept apart from the facade so each can be tested and timed.

Input:  app/mic/WAV buffer -> :class:`~voiceengine.audio.Resampler` (any rate 8k-192k, mono
or stereo -> provider rate, mono) -> :class:`~voiceengine.audio.Chunker` (frame_ms) ->
``provider.send_audio(frame)``. No Python-level copy in between: the resampler returns a
fresh ``bytes`` and the chunker's frames are read-only views into it (see the Chunker's
view-validity rules), so frames can be queued by the provider as they are.

Output: AUDIO_DELTA -> :class:`~voiceengine.audio.RingBuffer` (the playback/jitter buffer)
-> a playback clock that pulls from the ring -> :class:`~voiceengine.audio.Resampler` to the
sink rate -> sinks. Each item's track (bytes received, bytes played) is the truth of what
was heard (a delta played directly, unpaced, never passes through the ring). The clock:

* ``speed=1.0``: real time (devices, or anything that must be paced);
* ``speed=N``: a *virtual* playback clock draining N x faster than real time (files,
  app callbacks, tests): the read head still advances with time, so a barge-in still
  lands mid-reply and truncates at what was "played";
* ``speed=None``: unpaced, each delta is played as soon as it arrives (the read head
  equals the write head; a barge-in truncates at everything received). A delta that
  arrives while the ring is empty and the clock waits goes straight to the sink.

Prebuffering (jitter) is done here, not in the ring: playback of a response starts when
``prebuffer_ms`` are queued *or* the response's audio is complete (a reply shorter than the
prebuffer must still play).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterable, Awaitable, Callable, overload

from ._audio import Chunker, Resampler, RingBuffer, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from .exceptions import AudioFormatError, ConfigurationError
from .providers.types import AudioEncoding

__all__ = ["InputPipeline", "Playback", "PlaybackCut", "ItemTrack", "Transcript", "pcm16_decoder"]

log = logging.getLogger("voiceengine.pipeline")

SendFn = Callable[[Any], Awaitable[None]]
DeliverFn = Callable[[bytes], "Awaitable[None] | None"]
Codec = Callable[[Any], bytes]

_G711_ENCODERS: dict[AudioEncoding, Codec] = {AudioEncoding.PCMU: ulaw_encode, AudioEncoding.PCMA: alaw_encode}
_G711_DECODERS: dict[AudioEncoding, Codec] = {AudioEncoding.PCMU: ulaw_decode, AudioEncoding.PCMA: alaw_decode}


def pcm16_decoder(encoding: AudioEncoding) -> Codec | None:
    """The audio core's decoder from ``encoding`` to PCM16 (``None`` for PCM16 itself).

    G.711 (mu-law, A-law) is one byte per sample: each byte becomes one PCM16 sample, so a
    decoded delta is twice as long and its duration is ``len(g711) / sample_rate``.
    """
    return _G711_DECODERS.get(AudioEncoding(encoding))


class InputPipeline:
    """Resample + chunk app audio into provider frames.

    ``push(buf, sample_rate, channels)`` returns the frames ready to send (read-only
    memoryviews). A change of input rate/channels flushes the old resampler first.
    ``encoding``: the provider's input encoding; for G.711 each PCM16 frame is encoded by
    the audio core (a new ``bytes`` per frame, half the size) before it is returned.
    """

    def __init__(self, *, provider_rate: int, frame_ms: float,
                 encoding: AudioEncoding = AudioEncoding.PCM16) -> None:
        if not 1.0 <= frame_ms <= 1000.0:
            raise ConfigurationError(f"frame_ms must be in 1..1000, got {frame_ms!r}")
        self.provider_rate = provider_rate
        self.frame_ms = frame_ms
        self.encoding = AudioEncoding(encoding)
        self._encode = _G711_ENCODERS.get(self.encoding)
        self.chunker = Chunker.from_ms(frame_ms, provider_rate, 1)
        self._resampler: Resampler | None = None
        self._key: tuple[int, int] | None = None
        #: bytes that could not be sent: half a sample left when the stream ended mid-sample
        self.dropped_bytes = 0

    @property
    def delay_ms(self) -> float:
        return float(self._resampler.delay_ms) if self._resampler is not None else 0.0

    def _route(self, sample_rate: int, channels: int) -> list[memoryview]:
        """Switch to a new input format (checked here): the old resampler's tail, flushed."""
        if not 8000 <= sample_rate <= 192000:
            raise AudioFormatError(f"sample_rate must be in 8000..192000 Hz, got {sample_rate!r}")
        if channels not in (1, 2):
            raise AudioFormatError(f"channels must be 1 or 2, got {channels!r}")
        tail = self._drain_resampler()
        self._key = (sample_rate, channels)
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
        # (once per call of a live stream: the format is checked only when it changes)
        tail = self._route(sample_rate, channels) if (sample_rate, channels) != self._key else None
        resampler = self._resampler
        if resampler is None:
            frames = self.chunker.push(buf)
        else:
            out = resampler.process(buf)
            frames = self.chunker.push(out) if out else []
        if tail:
            frames = tail + frames
        return frames if self._encode is None else self._encoded(frames)

    def _encoded(self, frames: list[memoryview]) -> list[memoryview]:
        encode = self._encode
        if encode is None or not frames:
            return frames
        return [memoryview(encode(frame)) for frame in frames]

    def flush(self, *, encode: bool = True) -> list[memoryview]:
        """End of an utterance: drain the resampler and the chunker's remainder (unpadded).

        ``encode=False`` returns PCM16 whatever the provider's encoding (to carry the rest
        into another pipeline)."""
        frames = self._drain_resampler()
        if self._resampler is not None:
            self._resampler.reset()
        if self.chunker.pending % 2:
            frames += self._drop_half_sample()
        rest = self.chunker.flush(pad=False)
        if rest is not None and len(rest):
            frames.append(rest)
        return self._encoded(frames) if encode else frames

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
    """One assistant item's audio in the playback buffer: bytes received and bytes heard."""

    key: str  # the item id, or ``<response id>`` for audio of a service without item ids
    item_id: str | None
    response_id: str | None
    received: int = 0  # bytes stored in the ring
    played: int = 0  # bytes that left the ring through the read head (played, never flushed)


@dataclass(slots=True)
class _Segment:
    """A run of consecutive bytes of one item in the ring (``left``: not read yet)."""

    track: ItemTrack
    left: int


@dataclass(frozen=True, slots=True)
class PlaybackCut:
    """What :meth:`Playback.stop_now` cut.

    ``heard``: the item under the read head when playback stopped (the last one whose audio
    reached the sink, while its playback session was still going), ``played_ms`` how much
    of it was heard; ``unheard``: items with audio queued of which nothing reached the read
    head, in the order they arrived; ``dropped_bytes``: audio flushed unheard.
    """

    heard: ItemTrack | None
    played_ms: int
    unheard: tuple[ItemTrack, ...]
    dropped_bytes: int


async def _reraise(exc: Exception) -> None:
    raise exc


class Playback:
    """The playback buffer and its clock (see the module docstring).

    ``deliver(pcm)`` gets sink-rate PCM16 as it is played. ``on_start``/``on_stop`` are
    called at the edges of each playback session (a response's audio).

    Playback is tracked per item: a FIFO of (item, bytes) segments mirrors what the ring
    holds, so the read head always says which item is being heard and how much of it, even
    when a reply's audio spans several items (or several responses are queued).
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
        # capacity is the bound (minutes of audio); storage grows with what is queued and is
        # given back when playback drains or is cut (RingBuffer.shrink)
        self.ring = RingBuffer(_even(in_rate * 2 * capacity_ms // 1000), overflow="drop_newest")
        self.resampler = Resampler(in_rate, out_rate, in_channels=1, out_channels=out_channels)
        self._deliver = deliver
        self._on_start = on_start
        self._on_stop = on_stop
        self._on_played = on_played
        # what the ring holds, oldest first (bounded by the ring: a segment exists only
        # while its bytes are in the ring)
        self._queued: collections.deque[_Segment] = collections.deque()
        self._tracks: dict[str, ItemTrack] = {}  # items with audio in the ring, by key
        self._heard: ItemTrack | None = None  # the item of the last byte read, this playback session
        self.playing = False
        self.stream_done = True  # no audio expected until a delta arrives
        self.underruns = 0
        self._in_underrun = False
        self._t0 = 0.0
        self._consumed = 0
        # the clock task's wait for a delta or the end of the stream: a bare future (an
        # asyncio.Event costs a coroutine and a waiter list per wait, once per delta unpaced)
        self._waiter: asyncio.Future[None] | None = None
        #: what a delta played from the writer's step left for the task (see _play_now)
        self._handoff: Awaitable[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    # -------------------------------------------------------------- write side
    def write(self, item_id: str | None, response_id: str | None, pcm: Any) -> int:
        """Queue one audio delta of ``item_id``; returns bytes stored."""
        waiter = self._waiter
        if (waiter is None or waiter.done() or self.speed is not None or not self.playing
                or self._handoff is not None):
            waiter = None  # the clock task plays it (or is not waiting): wake it
        elif type(pcm) is bytes and not self._queued and 0 < len(pcm) <= self.ring.capacity and not len(pcm) & 1:
            # Nothing queued: the ring would hold just this delta and hand it back whole, so
            # it goes to the sink as it is (no copy in and out of the ring, no segment),
            # credited to its item as the read head would. (Whatever the ring would refuse
            # or cut, an odd or oversized delta, goes through it.)
            nbytes = len(pcm)
            self.stream_done = False
            key = item_id or f"<{response_id}>"
            heard = self._heard
            track = heard if heard is not None and heard.key == key else ItemTrack(key, item_id, response_id)
            track.received += nbytes
            track.played += nbytes
            self._heard = track
            self._play_now(waiter, pcm)
            return nbytes
        stored = self.ring.write(pcm)
        if stored:
            key = item_id or f"<{response_id}>"
            last = self._queued[-1] if self._queued else None
            if last is not None and last.track.key == key:
                last.left += stored
                track = last.track
            else:
                found = self._tracks.get(key)
                if found is None:
                    found = self._heard if self._heard is not None and self._heard.key == key else None
                track = found if found is not None else ItemTrack(key, item_id, response_id)
                self._tracks[key] = track
                self._queued.append(_Segment(track, stored))
            track.received += stored
        self.stream_done = False
        if waiter is not None:
            self._play_now(waiter)
        else:
            self._wake()
        return stored

    def _play_now(self, waiter: asyncio.Future[None], pcm: bytes | None = None) -> None:
        """Unpaced, with the clock task waiting for audio mid-reply: play what is queued (or
        ``pcm``, when nothing is) from the writer's step, as the task would, without waking
        it once per delta. What must be awaited (an async sink), or an error, is handed to
        the task, which awaits or raises it as if it had played the delta itself."""
        try:
            pending = self._emit(self._read(self.ring.available) if pcm is None else pcm)
        except Exception as exc:
            pending = _reraise(exc)
        if pending is not None:
            self._handoff = pending
            waiter.set_result(None)

    def end_of_stream(self) -> None:
        """No more audio is coming for now (response done): play out what is queued."""
        self.stream_done = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wait_for_wake(self) -> asyncio.Future[None]:
        """What the clock task awaits until the next :meth:`_wake` (awaited directly: no
        coroutine of its own)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        return waiter

    # --------------------------------------------------------------- read head
    def _read(self, n: int) -> bytes:
        """Take ``n`` bytes from the ring, crediting each item with what it gave."""
        chunk = self.ring.read(n)
        left = len(chunk)
        queued = self._queued
        while left and queued:
            segment = queued[0]
            track = segment.track
            take = min(left, segment.left)
            track.played += take
            segment.left -= take
            left -= take
            self._heard = track
            if segment.left == 0:
                queued.popleft()
                if not queued or not any(s.track is track for s in queued):
                    self._tracks.pop(track.key, None)
        return chunk

    def played_ms(self, track: ItemTrack) -> int:
        """Milliseconds of ``track`` actually played (floored)."""
        return track.played * 1000 // self.bytes_per_s

    @property
    def audible(self) -> bool:
        """Whether the assistant is (or is about to be) heard."""
        return self.playing or self.ring.available > 0

    # ------------------------------------------------------------ barge-in
    def stop_now(self, *, unheard_ms: float = 0.0) -> PlaybackCut:
        """Flush playback at once; returns which item was being heard and what was not.

        ``unheard_ms``: audio already handed to the sink that the listener has not heard
        (a phone network's or a browser's playout buffer, known from its acknowledgements);
        the heard item's played position is taken that far behind the read head.
        """
        heard = self._heard
        unheard: list[ItemTrack] = []
        for track in (segment.track for segment in self._queued):
            # a partly heard item that is not under the read head (interleaved deltas of
            # two items) is neither heard now nor unheard: it is left as it is
            if track is not heard and track.played == 0 and track not in unheard:
                unheard.append(track)
        played_ms = self.played_ms(heard) if heard is not None else 0
        if unheard_ms > 0:
            played_ms = max(0, played_ms - int(unheard_ms))
        cut = PlaybackCut(heard, played_ms, tuple(unheard), self.ring.clear())
        self.ring.shrink()  # the ring grew for the reply; an idle session keeps only a few KiB
        self._queued.clear()
        self._tracks.clear()
        self._heard = None
        self.resampler.reset()
        self.stream_done = True
        was_playing = self.playing
        self.playing = False
        self._in_underrun = False
        if was_playing and self._on_stop is not None:
            self._on_stop(True)
        return cut

    # --------------------------------------------------------------- the clock
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="voiceengine-playback")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        handoff, self._handoff = self._handoff, None
        if inspect.iscoroutine(handoff):  # handed over, and the task ended before awaiting it
            handoff.close()

    def _emit(self, pcm: bytes) -> Awaitable[Any] | None:
        """Play ``pcm``: the awaitable of an async ``deliver`` (to await), else ``None``.
        Not a coroutine: unpaced, this runs once per delta."""
        if not pcm:
            return None
        if self._on_played is not None:
            self._on_played(len(pcm))
        out = self.resampler.process(pcm)
        return self._call(out) if out else None

    def _call(self, out: bytes) -> Awaitable[Any] | None:
        result = self._deliver(out)
        return result if result is not None and inspect.isawaitable(result) else None

    async def _finish(self) -> None:
        tail = self.resampler.flush()
        if tail:
            pending = self._call(tail)
            if pending is not None:
                await pending
        self.playing = False
        self._heard = None  # played out: nothing is being heard any more
        if self.ring.available == 0:
            self.ring.shrink()  # drained: give back the storage the reply grew
        if self._on_stop is not None:
            self._on_stop(False)

    def _ready(self) -> bool:
        avail = self.ring.available
        return avail > 0 and (avail >= self.prebuffer_bytes or self.stream_done)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        frame = 2
        while True:
            handoff = self._handoff
            if handoff is not None:
                self._handoff = None
                await handoff
                handoff = None  # not kept alive across the waits below
            if not self.playing:
                if not self._ready():
                    await self._wait_for_wake()
                    continue
                self.playing = True
                self._in_underrun = False
                self._t0 = loop.time()
                self._consumed = 0
                if self._on_start is not None:
                    self._on_start()
            if self.speed is None:
                pending = self._emit(self._read(self.ring.available))
                if pending is not None:
                    await pending
                    pending = None  # not kept alive across the wait below
                if self.ring.available == 0:
                    if self.stream_done:
                        await self._finish()
                    else:
                        await self._wait_for_wake()
                continue
            await asyncio.sleep(self.tick_s)
            if not self.playing:  # stop_now() ran while we slept
                continue
            now = loop.time()
            due = int((now - self._t0) * self.bytes_per_s * self.speed) - self._consumed
            due -= due % frame
            if due <= 0:
                continue
            chunk = self._read(due)
            self._consumed += due
            pending = self._emit(chunk)
            if pending is not None:
                await pending
                pending = None
            got, chunk = len(chunk), b""  # not kept alive across the next tick's sleep
            if got < due:
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


class _CallbackRegistrar:
    """What reading a callback attribute gives: a decorator that sets the callback, and
    ``handler``, the callback set when it was read (or None)."""

    __slots__ = ("_owner", "_name", "handler")

    def __init__(self, owner: object, name: str, handler: Callable[..., Any] | None) -> None:
        self._owner = owner
        self._name = name
        self.handler = handler

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        vars(self._owner)[self._name] = fn
        return fn


#: a _Callback attribute ``on_x`` keeps its callback in the instance's ``__dict__`` under this + ``on_x``
_CALLBACK_PREFIX = "_cb_"


class _Callback:
    """A settable callback attribute that is also a decorator: ``engine.on_x = f`` or ``@engine.on_x``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = self.storage_key(name)

    @staticmethod
    def storage_key(name: str) -> str:
        """Where the callback attribute ``name`` keeps its callback in the instance's ``__dict__``."""
        return _CALLBACK_PREFIX + name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> "_Callback": ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> _CallbackRegistrar: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> "_Callback | _CallbackRegistrar":
        if obj is None:
            return self
        return _CallbackRegistrar(obj, self.name, vars(obj).get(self.name))

    def __set__(self, obj: object, fn: Callable[..., Any] | None) -> None:
        if fn is not None and not callable(fn):
            raise TypeError("callback must be callable or None")
        vars(obj)[self.name] = fn

    @staticmethod
    def current(obj: object, name: str) -> Callable[..., Any] | None:
        """The callback set on ``obj.<name>``, read without building a registrar (the
        engine fires callbacks once per audio chunk)."""
        handler: Callable[..., Any] | None = vars(obj).get(_CALLBACK_PREFIX + name)
        return handler


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
