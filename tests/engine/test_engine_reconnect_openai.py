"""VoiceEngine across lost connections on the OpenAI provider against the FakeRealtimeServer.

Same contract as test_engine_reconnect_mock.py (issue 5): the provider replays our state's
items with their ids after a reconnect, reports the lost response as failed/connection_lost,
and accounts for every byte of input audio.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from typing import Any, AsyncIterator

import pytest

from enginekit import Recorder, fast_config
from voiceengine.engine import VoiceEngine
from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider
from voiceengine.providers.types import EventType as E
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig, Fault
from voiceengine.testing.faults import FaultKind, Trigger

LONG = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa"
WAIT = 10.0


def _no_delay(config: OpenAIConfig) -> Any:
    return itertools.repeat(0.0)


@pytest.fixture
async def served() -> AsyncIterator[tuple[VoiceEngine, FakeRealtimeServer, Recorder]]:
    scfg = FakeServerConfig(speed=math.inf, responses=("Hello there friend", LONG, "Back again", "More"))
    async with FakeRealtimeServer(scfg) as server:
        provider = OpenAIProvider(OpenAIConfig(api_key="test-key", url=server.url, turn_detection=None),
                                  reconnect_delays=_no_delay)
        engine = VoiceEngine(provider, fast_config())
        await engine.connect()
        rec = Recorder(engine)
        try:
            yield engine, server, rec
        finally:
            await engine.close()


def _phase(name: str) -> Any:
    return lambda e: getattr(e.data, "phase", None) == name


async def test_close_1006_mid_response_restores_with_the_same_ids(
        served: tuple[VoiceEngine, FakeRealtimeServer, Recorder]) -> None:
    engine, server, rec = served
    await engine.send_text("first")
    await rec.wait(E.RESPONSE_DONE, timeout=WAIT)
    server.inject(Fault(kind=FaultKind.CLOSE, close_code=1006, trigger=Trigger.MID_RESPONSE))
    await engine.send_text("second")
    restored = await rec.wait(E.CONNECTION_STATE, _phase("restored"), timeout=WAIT)
    lost = [e for e in rec.of(E.RESPONSE_DONE) if e.data.reason == "connection_lost"]
    assert len(lost) == 1 and lost[0].data.status == "failed"
    assert engine._response_id is None
    # the fresh session got our items back, with their original ids and roles
    assert len(server.sessions) >= 2
    created = [ev["item"] for ev in server.sessions[-1].received if ev["type"] == "conversation.item.create"]
    state_ids = [i.id for i in engine.state.items]
    assert [item["id"] for item in created] == [i for i in state_ids if i in {c["id"] for c in created}]
    roles = [item.get("role") for item in created]
    assert roles[:2] == ["user", "assistant"] and "user" in roles[2:]
    assert restored.data.replayed_items == len(created)
    assert len(set(state_ids)) == len(state_ids)  # the replayed ITEM_ADDEDs duplicated nothing
    m = engine.metrics
    assert m.restores == 1 and m.responses_lost == 1 and m.reconnects >= 1 and m.audio_balanced
    # the conversation goes on
    mark = len(rec.events)
    await engine.send_text("third")
    reply = await rec.wait(E.RESPONSE_DONE, lambda e: rec.events.index(e) >= mark, timeout=WAIT)
    assert reply.data.status == "completed"


async def test_input_audio_is_accounted_across_an_abrupt_close(
        served: tuple[VoiceEngine, FakeRealtimeServer, Recorder]) -> None:
    engine, server, rec = served
    frame = bytes(48 * 20)
    for _ in range(10):
        await engine.send_audio(frame)
    server.inject(Fault(kind=FaultKind.CLOSE, close_code=1006))
    for _ in range(10):
        await engine.send_audio(frame)
        await asyncio.sleep(0)
    await rec.wait(E.CONNECTION_STATE, _phase("restored"), timeout=WAIT, past=True)
    for _ in range(50):  # let the writer drain what is still queued
        if engine.metrics.audio_pending_bytes == 0:
            break
        await asyncio.sleep(0.01)
    m = engine.metrics
    assert m.audio_captured_bytes == 20 * len(frame)
    assert m.audio_balanced and m.audio_pending_bytes == 0
    assert m.audio_sent_bytes + m.audio_replayed_bytes + m.audio_dropped_bytes == m.audio_captured_bytes
