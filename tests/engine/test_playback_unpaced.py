"""Unpaced playback (``speed=None``) plays a delta from the writer's step once a reply is
playing, without waking the clock task per delta; what must be awaited or raised still goes
through the task, in order."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from voiceengine.exceptions import AudioFormatError
from voiceengine.pipeline import Playback

RATE = 24000
DELTA = 960  # 20 ms


def _playback(deliver: Callable[[bytes], Awaitable[None] | None], **callbacks: Any) -> Playback:
    return Playback(in_rate=RATE, out_rate=RATE, out_channels=1, capacity_ms=60_000, prebuffer_ms=0,
                    speed=None, tick_ms=10, deliver=deliver, **callbacks)


@contextlib.asynccontextmanager
async def _playing(deliver: Callable[[bytes], Awaitable[None] | None], **callbacks: Any) -> AsyncIterator[Playback]:
    """A started playback, closed on the way out."""
    playback = _playback(deliver, **callbacks)
    playback.start()
    try:
        yield playback
    finally:
        await playback.aclose()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _delta(n: int) -> bytes:
    return bytes([n]) * DELTA


async def test_a_delta_mid_reply_is_played_before_write_returns() -> None:
    heard: list[bytes] = []
    starts: list[None] = []
    stops: list[bool] = []
    async with _playing(heard.append, on_start=lambda: starts.append(None), on_stop=stops.append) as playback:
        playback.write("item_1", "resp_1", _delta(1))
        assert heard == []  # the first delta of a reply starts playback in the clock task
        await _settle()
        assert heard == [_delta(1)] and len(starts) == 1 and playback.playing
        for n in range(2, 6):
            playback.write("item_1", "resp_1", _delta(n))
            assert heard[-1] == _delta(n)  # played from the writer's step
        assert playback.ring.available == 0
        track = playback._heard
        assert track is not None and track.played == track.received == 5 * DELTA
        playback.end_of_stream()
        await _settle()
        assert stops == [False] and not playback.playing and len(starts) == 1
    assert heard == [_delta(n) for n in range(1, 6)]


async def test_an_async_sink_is_awaited_by_the_task_in_order() -> None:
    heard: list[bytes] = []
    gate = asyncio.Event()

    async def slow_sink(pcm: bytes) -> None:
        await gate.wait()
        heard.append(pcm)

    async with _playing(slow_sink) as playback:
        playback.write("item_1", "resp_1", _delta(1))
        await _settle()  # the task awaits the first delivery
        gate.set()
        await _settle()
        assert heard == [_delta(1)]
        gate.clear()
        playback.write("item_1", "resp_1", _delta(2))  # its delivery is pending: handed to the task
        playback.write("item_1", "resp_1", _delta(3))  # queued behind it, not delivered past it
        await _settle()
        assert heard == [_delta(1)]
        gate.set()
        await _settle()
        assert heard == [_delta(1), _delta(2), _delta(3)]


async def test_a_sink_error_ends_the_clock_task_as_before() -> None:
    calls: list[bytes] = []

    def failing_sink(pcm: bytes) -> None:
        calls.append(pcm)
        if len(calls) == 2:
            raise OSError("device gone")

    playback = _playback(failing_sink)
    playback.start()
    task = playback._task
    assert task is not None
    playback.write("item_1", "resp_1", _delta(1))
    await _settle()
    playback.write("item_1", "resp_1", _delta(2))  # raises in the writer's step: handed over
    await _settle()
    assert task.done()
    with pytest.raises(OSError, match="device gone"):
        task.result()
    playback.write("item_1", "resp_1", _delta(3))  # the clock is gone: nothing is played
    assert calls == [_delta(1), _delta(2)]
    await playback.aclose()


async def test_a_barge_in_between_deltas_stops_direct_play() -> None:
    heard: list[bytes] = []
    async with _playing(heard.append) as playback:
        playback.write("item_1", "resp_1", _delta(1))
        await _settle()
        playback.write("item_1", "resp_1", _delta(2))
        cut = playback.stop_now()
        assert cut.heard is not None and cut.played_ms == 40 and not playback.playing
        playback.write("item_2", "resp_2", _delta(3))  # the next reply starts in the task again
        assert heard == [_delta(1), _delta(2)]
        await _settle()
        assert heard == [_delta(1), _delta(2), _delta(3)]


async def test_closing_with_a_delivery_handed_over_closes_it() -> None:
    returned: list[Any] = []

    async def sink_write(pcm: bytes) -> None:
        await asyncio.sleep(0)

    def sink(pcm: bytes) -> Awaitable[None]:
        coro = sink_write(pcm)
        returned.append(coro)
        return coro

    playback = _playback(sink)
    playback.start()
    playback.write("item_1", "resp_1", _delta(1))
    await _settle()  # the first delivery, awaited by the task
    playback.write("item_1", "resp_1", _delta(2))  # its delivery handed to the task...
    await playback.aclose()  # ...which is cancelled before it takes it
    assert len(returned) == 2
    assert inspect.getcoroutinestate(returned[1]) == inspect.CORO_CLOSED  # never left un-awaited


async def test_a_delta_played_directly_is_credited_to_its_item_and_never_enters_the_ring() -> None:
    heard: list[bytes] = []
    played: list[int] = []
    async with _playing(heard.append, on_played=played.append) as playback:
        playback.write("item_1", "resp_1", _delta(1))
        await _settle()
        written_before = playback.ring.total_written
        first = _delta(2)
        assert playback.write("item_1", "resp_1", first) == DELTA
        assert heard[-1] is first  # the caller's bytes, not a copy through the ring
        assert playback.write("item_2", "resp_1", _delta(3)) == DELTA  # a new item mid-reply
        assert playback.ring.total_written == written_before and playback.ring.available == 0
        assert played == [DELTA] * 3
        track = playback._heard
        assert track is not None and (track.key, track.played, track.received) == ("item_2", DELTA, DELTA)
        cut = playback.stop_now()
        assert cut.heard is track and cut.played_ms == 20 and cut.unheard == () and cut.dropped_bytes == 0


async def test_direct_play_takes_only_what_the_ring_path_would_take_whole() -> None:
    heard: list[bytes] = []
    async with _playing(heard.append) as playback:
        playback.write("item_1", "resp_1", _delta(1))
        await _settle()
        with pytest.raises(AudioFormatError):
            playback.write("item_1", "resp_1", b"\x01\x02\x03")  # odd: refused, as the ring refuses it
        assert heard == [_delta(1)] and playback.playing
        assert playback.write("item_1", "resp_1", b"") == 0
        view = memoryview(_delta(4))
        assert playback.write("item_1", "resp_1", view) == DELTA  # not bytes: through the ring, played all the same
        assert heard[-1] == _delta(4) and playback.ring.available == 0
        too_big = bytes(playback.ring.capacity + 2)
        assert playback.write("item_1", "resp_1", too_big) == playback.ring.capacity  # the ring's bound holds
        track = playback._heard
        assert track is not None and track.played == track.received == 2 * DELTA + playback.ring.capacity
