"""The engine on contract v2: server-side interruption, end of generation, usage totals."""

from __future__ import annotations

import asyncio

import pytest

from enginekit import Recorder, fast_config, make_provider
from voiceengine.engine import VoiceEngine, VoiceEngineConfig
from voiceengine.providers.mock import MockConfig, MockProvider
from voiceengine.providers.types import EventType, ProviderEvent, ResponseInfo, ServerInterrupted, Usage

LONG = "This reply is long enough to still be playing when the service cuts it. " * 3


async def test_server_interrupted_flushes_playback_at_once_and_sends_nothing() -> None:
    provider = MockProvider(MockConfig(turn_detection=None, responses=(LONG,)))
    heard = bytearray()
    async with VoiceEngine(provider, VoiceEngineConfig(playback_speed=4.0, prebuffer_ms=0,
                                                       playback_tick_ms=5)) as engine:
        rec = Recorder(engine)
        engine.on_audio_response = heard.extend
        await engine.send_text("talk")
        started = await rec.wait(EventType.RESPONSE_STARTED, past=True)
        await rec.wait(EventType.PLAYBACK_STARTED, past=True)
        while len(heard) < 48 * 200:
            await asyncio.sleep(0.005)
        calls_before = len(provider.calls())
        provider._emit(ProviderEvent(type=EventType.SERVER_INTERRUPTED, provider="mock",
                                     data=ServerInterrupted(response_id=started.response_id),
                                     response_id=started.response_id))
        at_cut = len(heard)  # synchronous: nothing more is delivered from here on
        interrupted = await rec.wait(EventType.INTERRUPTED, past=True)
        assert interrupted.data.action == "none" and interrupted.data.response_id == started.response_id
        assert interrupted.data.played_ms is not None and interrupted.data.played_ms >= 200
        await asyncio.sleep(0.2)  # the mock keeps streaming that reply: none of it is played
        assert len(heard) == at_cut
        assert not engine._playback.audible
        assert [c.name for c in provider.calls()[calls_before:]] == []  # nothing sent to the service
        assert engine.metrics.interrupts == 1


@pytest.mark.parametrize("kind", ["openai"])
async def test_usage_totals_from_response_done(kind: str) -> None:
    async with make_provider(kind, responses=["First reply.", "Second, a little longer reply."],
                             turn_detection=None) as (provider, server):
        async with VoiceEngine(provider, fast_config()) as engine:
            rec = Recorder(engine)
            for text in ("one", "two"):
                n = len(rec.of(EventType.RESPONSE_DONE))
                await engine.send_text(text)
                await rec.wait(EventType.RESPONSE_DONE, lambda e: len(rec.of(EventType.RESPONSE_DONE)) > n,
                               past=True)
            usage = engine.metrics.usage
        done = [ev["response"]["usage"] for ev in server.sent if ev["type"] == "response.done"]
        assert len(done) == 2
        assert usage.input_text_tokens == sum(u["input_token_details"]["text_tokens"] for u in done)
        assert usage.input_audio_tokens == sum(u["input_token_details"]["audio_tokens"] for u in done)
        assert usage.output_text_tokens == sum(u["output_token_details"]["text_tokens"] for u in done)
        assert usage.output_audio_tokens == sum(u["output_token_details"]["audio_tokens"] for u in done)
        assert usage.output_tokens == sum(u["output_tokens"] for u in done) > 0


async def test_usage_events_add_up_and_are_not_counted_twice() -> None:
    provider = MockProvider(MockConfig(turn_detection=None))
    async with VoiceEngine(provider, fast_config()) as engine:
        def emit(event_type: EventType, data: object, response_id: str | None) -> None:
            provider._emit(ProviderEvent(type=event_type, data=data, provider="mock", response_id=response_id))

        emit(EventType.USAGE, Usage(input_audio_tokens=10, output_audio_tokens=20, output_audio_seconds=1.5,
                                    response_id="r1"), "r1")
        # the same response's RESPONSE_DONE usage is the same figures: not added again
        emit(EventType.RESPONSE_DONE, ResponseInfo(response_id="r1", status="completed", usage={
            "input_token_details": {"text_tokens": 0, "audio_tokens": 10},
            "output_token_details": {"text_tokens": 0, "audio_tokens": 20}}), "r1")
        emit(EventType.USAGE, Usage(input_text_tokens=3, input_audio_seconds=2.0), None)
        usage = engine.metrics.usage
        assert (usage.input_text_tokens, usage.input_audio_tokens, usage.output_audio_tokens) == (3, 10, 20)
        assert usage.output_audio_seconds == 1.5 and usage.input_audio_seconds == 2.0
    assert engine.metrics.usage.total_tokens == 33  # kept after close


async def test_generation_done_plays_out_a_reply_shorter_than_the_prebuffer() -> None:
    provider = MockProvider(MockConfig(turn_detection=None))
    config = VoiceEngineConfig(playback_speed=None, prebuffer_ms=5000)
    async with VoiceEngine(provider, config) as engine:
        rec = Recorder(engine)
        heard = bytearray()
        engine.on_audio_response = heard.extend
        provider._emit(ProviderEvent(type=EventType.AUDIO_DELTA, data=bytes(4800), provider="mock",
                                     item_id="item_g", response_id="gen_1"))
        await asyncio.sleep(0.05)
        assert heard == b""  # 100 ms queued, 5 s of prebuffer: waiting for more
        provider._emit(ProviderEvent(type=EventType.GENERATION_DONE, provider="mock", response_id="gen_1"))
        await rec.wait(EventType.PLAYBACK_STOPPED, timeout=5)
        assert len(heard) == 4800


async def test_engine_state_reads_the_providers_record_not_a_second_mirror() -> None:
    first = MockProvider(MockConfig(turn_detection=None, responses=("Hello from the first.",)))
    second = MockProvider(MockConfig(turn_detection=None, responses=("Hello from the second.",)))
    async with VoiceEngine(first, fast_config()) as engine:
        rec = Recorder(engine)
        assert engine.state.record is first.conversation
        await engine.send_text("hi")
        await rec.wait(EventType.METRICS)
        ids = [e.id for e in first.conversation.entries]
        assert [i.id for i in engine.state.items] == ids and len(engine.state) == len(ids) == 2
        assert engine.state.items[1].transcript == first.conversation.entries[1].transcript
        # whatever the provider records is the state's item, with no event in between
        first.conversation.add_message("system", "A note the provider recorded.", entry_id="note_1")
        assert "note_1" in engine.state and engine.state.get("note_1").text == "A note the provider recorded."
        await engine.switch_provider(second)
        assert engine.state.record is second.conversation
        # the conversation went to the new provider, which recorded it as its own items
        texts = [(i.role, (i.text or i.transcript or "").strip()) for i in engine.state.items]
        assert texts == [("user", "hi"), ("assistant", "Hello from the first."),
                         ("system", "A note the provider recorded.")]
        turns_before = len(engine.state.turns)
        await engine.send_text("again")
        await rec.wait(EventType.METRICS, lambda e: len(rec.of(EventType.METRICS)) >= 2, past=True)
        assert [i.role for i in engine.state.items][-2:] == ["user", "assistant"]
        assert len(engine.state.turns) == turns_before + 1  # turns are still the state's own
