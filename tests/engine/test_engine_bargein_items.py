"""Barge-in while the playback buffer holds audio of several items, checked on the wire.

Item A (the first reply) is being heard; item B (the next reply) is queued behind it and
was not heard at all. The barge-in must truncate A at what was heard, never truncate B at a
positive time (B is deleted: the service supports deletion), and no audio of either may
reach the app afterwards.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from enginekit import Recorder
from voiceengine.engine import VoiceEngine, VoiceEngineConfig
from voiceengine.pipeline import Playback
from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider
from voiceengine.providers.types import EventType
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig

LONG = "This answer goes on for quite a while so that it is still playing later. " * 3
BYTES_PER_MS = 48  # PCM16 24 kHz mono, the default output


async def test_barge_in_truncates_the_item_being_heard_not_the_last_received() -> None:
    config = FakeServerConfig(speed=math.inf, responses=[LONG, "A second reply queued behind the first."])
    async with FakeRealtimeServer(config) as server:
        provider = OpenAIProvider(OpenAIConfig(api_key="test-key", url=server.url, turn_detection=None))
        cfg = VoiceEngineConfig(playback_speed=4.0, prebuffer_ms=0, playback_tick_ms=5)
        heard = bytearray()
        async with VoiceEngine(provider, cfg) as engine:
            rec = Recorder(engine)
            engine.on_audio_response = heard.extend
            await engine.send_text("first")
            await engine.create_response()  # gated: starts when the first reply is done
            await rec.wait(EventType.RESPONSE_DONE, lambda e: len(rec.of(EventType.RESPONSE_DONE)) >= 2,
                           timeout=10, past=True)
            (a_id, a_audio), (b_id, b_audio) = server.session.audio_sent_by_item.items()
            while len(heard) < 500 * BYTES_PER_MS:
                await asyncio.sleep(0.005)
            result = await engine.interrupt()
            at_cut = len(heard)
            assert at_cut < len(a_audio)  # precondition: A was still playing, B not started
            await asyncio.sleep(0.1)
            assert len(heard) == at_cut  # silent at once: nothing of A or B afterwards
            assert result.item_id == a_id and result.action == "truncated"
        await server.wait_for_received(lambda ev: ev["type"] == "conversation.item.delete")
        truncates = [ev for ev in server.received if ev["type"] == "conversation.item.truncate"]
        assert [ev["item_id"] for ev in truncates] == [a_id]  # never B
        assert abs(truncates[0]["audio_end_ms"] - at_cut // BYTES_PER_MS) <= 25
        deletes = [ev["item_id"] for ev in server.received if ev["type"] == "conversation.item.delete"]
        assert deletes == [b_id]
        assert [e for e in server.errors if e["error"].get("code") != "response_cancel_not_active"] == []
        assert len(b_audio) > 0


async def test_playback_cut_names_the_item_under_the_read_head() -> None:
    delivered = bytearray()
    playback = Playback(in_rate=24000, out_rate=24000, out_channels=1, capacity_ms=60_000, prebuffer_ms=0,
                        speed=None, tick_ms=5, deliver=delivered.extend)
    playback.write("A", "r1", bytes(48 * 800))
    playback.write("B", "r2", bytes(48 * 300))
    assert playback._read(48 * 500) and playback._read(0) == b""  # 500 ms of A heard
    cut = playback.stop_now()
    assert cut.heard is not None and cut.heard.item_id == "A" and cut.played_ms == 500
    assert [t.item_id for t in cut.unheard] == ["B"] and cut.unheard[0].played == 0
    assert cut.dropped_bytes == 48 * 600
    # interleaved deltas of two items are credited to each in order
    playback.write("C", "r3", bytes(100))
    playback.write("D", "r3", bytes(100))
    playback.write("C", "r3", bytes(100))
    playback.write("E", "r3", bytes(100))
    playback._read(150)
    cut = playback.stop_now()
    # D is under the read head; C was partly heard (neither cut nor deleted); E never
    assert cut.heard is not None and cut.heard.item_id == "D" and cut.heard.played == 50
    assert [t.item_id for t in cut.unheard] == ["E"]


@pytest.mark.parametrize("when", ["between_items", "nothing_heard"])
async def test_playback_cut_when_no_item_is_being_heard(when: str) -> None:
    playback = Playback(in_rate=24000, out_rate=24000, out_channels=1, capacity_ms=60_000, prebuffer_ms=0,
                        speed=None, tick_ms=5, deliver=lambda pcm: None)
    playback.write("A", "r1", bytes(480))
    if when == "between_items":
        playback._read(480)  # A fully heard, B not started
    playback.write("B", "r2", bytes(480))
    cut = playback.stop_now()
    if when == "between_items":
        assert cut.heard is not None and cut.heard.item_id == "A" and cut.played_ms == 10
        assert [t.item_id for t in cut.unheard] == ["B"]
    else:
        assert cut.heard is None and cut.played_ms == 0
        assert [t.item_id for t in cut.unheard] == ["A", "B"]


async def test_barge_in_never_cancels_the_reply_that_follows_it() -> None:
    """The service holds its events (DELAY) while the user speaks over the reply, then sends
    speech started, the cancelled reply, speech stopped, the commit and the *next* reply in
    one burst. The barge-in must cut what was playing when the user spoke, and leave the
    next reply alone (it used to cancel it: the wire half ran after the burst)."""
    from enginekit import silence, voiced
    from voiceengine.testing import Fault, FaultKind, Trigger

    config = FakeServerConfig(speed=math.inf, responses=[LONG, "The reply to the barge-in."])
    async with FakeRealtimeServer(config) as server:
        provider = OpenAIProvider(OpenAIConfig(api_key="test-key", url=server.url))
        # the service replies by itself, so its next reply comes in the same burst
        cfg = VoiceEngineConfig(playback_speed=2.0, prebuffer_ms=0, playback_tick_ms=5, auto_response=True)
        async with VoiceEngine(provider, cfg) as engine:
            rec = Recorder(engine)
            await engine.send_text("first")
            await rec.wait(EventType.PLAYBACK_STARTED)
            await asyncio.sleep(0.1)
            server.inject(Fault(kind=FaultKind.DELAY, duration_s=0.5, trigger=Trigger.IMMEDIATE))
            speech = voiced(24000, 600) + silence(24000, 900)
            for off in range(0, len(speech), 960):
                await engine.send_audio(speech[off:off + 960], sample_rate=24000)
            second = await rec.wait(EventType.RESPONSE_DONE,
                                    lambda e: e.response_id != rec.of(EventType.RESPONSE_DONE)[0].response_id,
                                    timeout=10)
            assert second.data.status == "completed"
            interrupted = await rec.wait(EventType.INTERRUPTED, past=True)
            first_item = next(iter(server.session.audio_sent_by_item))
            assert interrupted.data.item_id == first_item and interrupted.data.action == "truncated"
        assert [e for e in server.errors if e["error"].get("code") != "response_cancel_not_active"] == []
