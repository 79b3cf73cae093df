"""VoiceEngine across lost connections, on the MockProvider (issue 5 continuity contract)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from enginekit import Recorder, fast_config, voiced
from voiceengine.engine import VoiceEngine
from voiceengine.exceptions import ConnectionFailed, InvalidState
from voiceengine.providers.mock import MockConfig, MockProvider
from voiceengine.providers.types import ConnectionState, EventType as E

LONG = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november"


def mock(**kw: Any) -> MockProvider:
    kw.setdefault("turn_detection", None)
    return MockProvider(MockConfig(**kw))


async def test_reconnect_mid_response_ends_turn_and_replays_items_with_ids() -> None:
    provider = mock(responses=("Hello there friend", LONG, "Back again"), latency_ms=1)
    async with VoiceEngine(provider, fast_config()) as engine:
        rec = Recorder(engine)
        await engine.send_text("first")
        await rec.wait(E.RESPONSE_DONE)
        await engine.send_text("second")
        await rec.wait(E.AUDIO_DELTA, lambda e: e.response_id != rec.of(E.RESPONSE_DONE)[0].response_id)
        ids_before = [i.id for i in engine.state.items]
        mark = len(rec.events)
        await provider.inject_disconnect("network blip", reconnect=True)
        after = rec.events[mark:]
        done = [e for e in after if e.type is E.RESPONSE_DONE]
        assert len(done) == 1 and done[0].data.status == "failed" and done[0].data.reason == "connection_lost"
        phases = [e.data.phase for e in after if e.type is E.CONNECTION_STATE]
        assert phases == ["reconnecting", "restored"]
        # the replay re-created our items with their original ids, in order
        replayed = [e.item_id for e in after if e.type is E.ITEM_ADDED]
        snapshot_ids = list(engine.state.snapshot().item_ids)
        assert replayed == snapshot_ids and set(replayed) <= set(ids_before)
        assert [i.id for i in engine.state.items] == ids_before  # nothing duplicated or lost
        restored = [e.data for e in after if e.type is E.CONNECTION_STATE][-1]
        assert restored.replayed_items == len(replayed)
        # the engine is not left waiting for the lost response; its audio may play out
        assert engine._response_id is None and not provider.response_active
        await rec.wait(E.TURN_ENDED, lambda e: e.data["speaker"] == "assistant" and
                       rec.events.index(e) >= mark, past=True)
        m = engine.metrics
        assert (m.reconnects, m.restores, m.gave_up, m.responses_lost) == (1, 1, 0, 1)
        assert m.last_turn is not None and m.last_turn.status == "failed"
        # the conversation goes on in the restored session
        await engine.send_text("third")
        reply = await rec.wait(E.RESPONSE_DONE, lambda e: e.data.status == "completed" and
                               rec.events.index(e) > mark)
        assert reply.data.status == "completed"
        assert len({i.id for i in engine.state.items}) == len(engine.state.items)


async def test_engine_engine_audio_accounting_across_an_outage() -> None:
    provider = mock(reconnect_audio_buffer_ms=100)
    async with VoiceEngine(provider, fast_config(frame_ms=20)) as engine:
        await engine.send_audio(bytes(48 * 40))
        resume = asyncio.Event()
        outage = asyncio.create_task(provider.inject_disconnect("blip", reconnect=True, resume=resume))
        while provider.state is not ConnectionState.RECONNECTING:
            await asyncio.sleep(0)
        await engine.send_audio(bytes(48 * 160))  # 160 ms into a 100 ms backlog
        m = engine.metrics
        assert m.audio_balanced and m.audio_pending_bytes == 48 * 100 and m.audio_dropped_bytes == 48 * 60
        resume.set()
        await outage
        m = engine.metrics
        assert m.audio_balanced and m.audio_pending_bytes == 0
        assert (m.audio_captured_bytes, m.audio_sent_bytes, m.audio_replayed_bytes, m.audio_dropped_bytes) == (
            48 * 200, 48 * 40, 48 * 100, 48 * 60)
        assert m.audio_sent_bytes + m.audio_replayed_bytes + m.audio_dropped_bytes == m.audio_captured_bytes


async def test_gave_up_is_counted_and_input_is_refused_loudly() -> None:
    provider = mock(responses=(LONG,), max_reconnect_attempts=1, latency_ms=1)
    errors: list[Any] = []
    async with VoiceEngine(provider, fast_config()) as engine:
        engine.on_error = errors.append
        rec = Recorder(engine)
        await engine.send_text("go")
        await rec.wait(E.AUDIO_DELTA)
        await provider.inject_disconnect("down", reconnect=True, failed_attempts=3)
        assert [e.data.phase for e in rec.of(E.CONNECTION_STATE)][-2:] == ["reconnecting", "gave_up"]
        assert engine._response_id is None
        m = engine.metrics
        assert (m.gave_up, m.restores, m.responses_lost) == (1, 0, 1)
        with pytest.raises(InvalidState):
            await engine.send_audio(bytes(48 * 20))
        assert engine.metrics.audio_unsent_bytes == 48 * 20 and engine.metrics.audio_balanced


async def test_engine_ends_a_lost_response_the_provider_did_not_report() -> None:
    """Defensive path: a provider that only says reconnecting/restored still frees the turn."""
    provider = mock(responses=(LONG,), latency_ms=1)
    async with VoiceEngine(provider, fast_config()) as engine:
        rec = Recorder(engine)
        await engine.send_text("go")
        await rec.wait(E.AUDIO_DELTA)
        rid = engine._response_id
        assert rid is not None
        provider._stop_active()  # the response vanishes without RESPONSE_DONE
        provider._set_state(ConnectionState.RECONNECTING, phase="reconnecting", attempt=1)
        provider._set_state(ConnectionState.CONNECTED, phase="restored", attempt=1)
        done = [e for e in rec.of(E.RESPONSE_DONE) if e.response_id == rid]
        assert len(done) == 1 and done[0].data.reason == "connection_lost"
        assert engine._response_id is None and engine.state.current_response is None
        assert engine.metrics.responses_lost == 1
        # a late report from the provider is not a second end of the turn
        turns = engine.metrics.turns
        provider._ev(E.RESPONSE_DONE, done[0].data, response_id=rid)
        assert engine.metrics.turns == turns and engine.metrics.responses_lost == 1


async def test_switch_provider_sums_accounting_and_strips_ids() -> None:
    first, second = mock(responses=("one",)), mock(responses=("two",), seed=7)
    async with VoiceEngine(first, fast_config()) as engine:
        rec = Recorder(engine)
        await engine.send_text("hello")
        await rec.wait(E.RESPONSE_DONE)
        await engine.send_audio(bytes(48 * 50))  # 50 ms = 2 frames + a 10 ms remainder
        await engine.switch_provider(second)
        assert second._replay_source is not None and first._replay_source is None
        added = [c.args["item"] for c in second.calls("add_item")]
        assert len(added) == 2 and all("id" not in item for item in added)  # another provider: new ids
        await engine.send_audio(bytes(48 * 30))
        m = engine.metrics
        assert m.audio_balanced
        # the 10 ms partial frame was carried to the new provider: nothing lost in the engine
        assert m.audio_captured_bytes == 48 * 80 == first.audio_accounting.captured_bytes + \
            second.audio_accounting.captured_bytes
        assert m.audio_unsent_bytes == 0


async def test_send_audio_during_a_switch_goes_to_the_new_provider() -> None:
    first, second = mock(), mock(latency_ms=5)
    async with VoiceEngine(first, fast_config()) as engine:
        switch = asyncio.create_task(engine.switch_provider(second))
        while engine._ready.is_set():
            await asyncio.sleep(0)
        sent = await engine.send_audio(bytes(48 * 40))  # waits for the switch, then sends
        await switch
        assert sent == 2
        assert second.audio_accounting.captured_bytes == 48 * 40
        assert first.audio_accounting.captured_bytes == 0


class _Unreachable(MockProvider):
    async def connect(self) -> None:
        await asyncio.sleep(0)
        raise ConnectionFailed("unreachable")


async def test_failed_switch_wakes_waiting_send_audio() -> None:
    async with VoiceEngine(mock(), fast_config()) as engine:
        switch = asyncio.create_task(engine.switch_provider(_Unreachable(MockConfig())))
        while engine._ready.is_set():
            await asyncio.sleep(0)
        with pytest.raises(InvalidState):
            await engine.send_audio(bytes(48 * 20))
        with pytest.raises(ConnectionFailed):
            await switch
        assert not engine.is_connected


async def test_playback_overflow_is_one_error_per_response() -> None:
    long_reply = " ".join(["wonderful"] * 30)  # ~19 s of audio into a 1 s buffer
    provider = mock(responses=(long_reply, long_reply))
    errors: list[Any] = []
    cfg = fast_config(playback_speed=1.0, playback_buffer_ms=1000, prebuffer_ms=0)
    async with VoiceEngine(provider, cfg) as engine:
        engine.on_error = errors.append
        rec = Recorder(engine)
        for n in range(2):
            await engine.send_text(f"talk {n}")
            await rec.wait(E.RESPONSE_DONE, lambda e, n=n: len(rec.of(E.RESPONSE_DONE)) > n)
            await engine.interrupt()
        overflow = [e for e in rec.of(E.ERROR) if e.error is not None and e.error.code == "playback_overflow"]
        assert len(overflow) == 2
        assert len({e.response_id for e in overflow}) == 2
        err = overflow[0].error
        assert err.type == "client_error" and err.remote is False
        assert [e for e in errors if getattr(e, "code", None) == "playback_overflow"] == [
            e.error for e in overflow]
        m = engine.metrics
        assert m.playback_overflows == 2 and m.playback_overruns > 0 and m.playback_dropped_bytes > 0


async def test_replay_source_is_the_state_snapshot_and_cleared_on_disconnect() -> None:
    provider = mock(responses=("hi",))
    engine = VoiceEngine(provider, fast_config())
    await engine.connect()
    rec = Recorder(engine)
    await engine.send_text("hello")
    await rec.wait(E.RESPONSE_DONE)
    assert provider._replay_source is not None
    assert tuple(provider._replay_source()) == engine.state.snapshot().items
    assert all("id" in item for item in provider._replay_source())
    await engine.close()
    assert provider._replay_source is None


async def test_vad_turn_audio_survives_an_outage_into_the_restored_session() -> None:
    provider = mock(turn_detection="server_vad", responses=("ok",))
    async with VoiceEngine(provider, fast_config()) as engine:
        rec = Recorder(engine)
        resume = asyncio.Event()
        outage = asyncio.create_task(provider.inject_disconnect("blip", reconnect=True, resume=resume))
        while provider.state is not ConnectionState.RECONNECTING:
            await asyncio.sleep(0)
        await engine.send_audio(voiced(24000, 400) + bytes(48 * 700))  # 1.1 s: fits the 3 s backlog
        resume.set()
        await outage
        await rec.wait(E.RESPONSE_DONE, past=True)
        assert rec.of(E.SPEECH_STARTED) and rec.of(E.INPUT_COMMITTED)
        m = engine.metrics
        assert m.audio_replayed_bytes == 48 * 1100 and m.audio_dropped_bytes == 0 and m.audio_balanced
