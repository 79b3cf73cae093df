"""Switching provider between and during conversations, carrying the conversation as items."""

from __future__ import annotations

import pytest

from enginekit import Recorder, fast_config, make_provider
from voiceengine.engine import VoiceEngine
from voiceengine.providers.mock import MockConfig, MockProvider
from voiceengine.providers.types import EventType


@pytest.mark.parametrize("target", ["mock", "openai"])
async def test_switch_mid_conversation_replays_items_with_roles(target: str) -> None:
    first = MockProvider(MockConfig(responses=("First answer.",)))
    async with make_provider(target, responses=["Second answer."]) as (second, server):
        async with VoiceEngine(first, fast_config()) as engine:
            rec = Recorder(engine)
            await engine.send_text("first question")
            await rec.wait(EventType.METRICS, past=True)
            before = engine.state.snapshot().items
            assert [i["role"] for i in before] == ["user", "assistant"]
            old = await engine.switch_provider(second)
            assert old is first and not first.is_connected and engine.provider is second
            ev = await rec.wait(EventType.PROVIDER_SWITCHED, past=True)
            assert ev.data == {"from": "mock", "to": target, "items": 2}
            await engine.send_text("second question")
            await rec.wait(EventType.TRANSCRIPT_DONE, lambda e: "Second" in e.data)
            roles = [(i.role, (i.text or i.transcript or "").strip()) for i in engine.state.items]
            assert roles[:2] == [("user", "first question"), ("assistant", "First answer.")]
            assert roles[2][0] == "user" and roles[3] == ("assistant", "Second answer.")
        if server is not None:
            creates = [e["item"] for e in server.received if e["type"] == "conversation.item.create"]
            assert [c["role"] for c in creates[:2]] == ["user", "assistant"]
            assert creates[1]["content"][0]["type"] == "output_text"
            sessions = [e for e in server.received if e["type"] == "session.update"]
            assert all("First answer" not in str(s.get("session", {}).get("instructions", "")) for s in sessions)
            assert server.errors == []
        else:
            adds = [c.args["item"]["role"] for c in second.calls("add_item")]
            assert adds == ["user", "assistant"]


async def test_switch_between_conversations_by_name() -> None:
    engine = VoiceEngine("mock", fast_config())
    await engine.connect()
    try:
        await engine.switch_provider("mock")
        assert engine.provider.is_connected
        rec = Recorder(engine)
        await engine.send_text("hello")
        await rec.wait(EventType.METRICS, past=True)
        assert engine.metrics.provider_switches == 1
    finally:
        await engine.close()
