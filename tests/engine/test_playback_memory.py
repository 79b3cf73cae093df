"""Playback gives its ring's storage back once a long reply is played out or flushed."""

from __future__ import annotations

import asyncio

from voiceengine._audio.ring import INITIAL_STORAGE
from voiceengine.pipeline import Playback

RATE = 24000
LONG_REPLY = bytes(RATE * 2 * 20)  # 20 s of audio: far more storage than an idle session needs


def _playback(delivered: list[int], stopped: asyncio.Event) -> Playback:
    return Playback(in_rate=RATE, out_rate=RATE, out_channels=1, capacity_ms=300_000, prebuffer_ms=0,
                    speed=None, tick_ms=10, deliver=lambda pcm: delivered.append(len(pcm)),
                    on_stop=lambda _cut: stopped.set())


async def test_storage_goes_back_down_after_a_long_reply_is_played() -> None:
    delivered: list[int] = []
    stopped = asyncio.Event()
    playback = _playback(delivered, stopped)
    assert playback.ring.storage_bytes == INITIAL_STORAGE
    for offset in range(0, len(LONG_REPLY), 9600):  # 200 ms deltas, all queued before playing
        playback.write("item_1", "resp_1", LONG_REPLY[offset:offset + 9600])
    assert playback.ring.storage_bytes >= len(LONG_REPLY)
    playback.end_of_stream()
    playback.start()
    try:
        await asyncio.wait_for(stopped.wait(), 30)
    finally:
        await playback.aclose()
    assert sum(delivered) == len(LONG_REPLY)
    assert playback.ring.storage_bytes == INITIAL_STORAGE


async def test_storage_goes_back_down_after_a_barge_in_flush() -> None:
    stopped = asyncio.Event()
    playback = _playback([], stopped)
    playback.write("item_1", "resp_1", LONG_REPLY)
    assert playback.ring.storage_bytes >= len(LONG_REPLY)
    cut = playback.stop_now()
    assert cut.dropped_bytes == len(LONG_REPLY)
    assert playback.ring.storage_bytes == INITIAL_STORAGE
    assert playback.write("item_2", "resp_2", b"\x01\x00" * 100) == 200  # still usable after the shrink
    assert playback.ring.read(200) == b"\x01\x00" * 100
