"""Issue 5 continuity: proactive session recycle on a shared VirtualClock."""

from __future__ import annotations

import asyncio
import math

import pytest

from _shell_helpers import KEY, make_provider, response_done, running
from voiceengine.clock import VirtualClock
from voiceengine.exceptions import ConfigurationError
from voiceengine.providers import ConnectionState, EventType
from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig


async def test_continuity_recycle_waits_for_the_response_then_restores_before_expiry() -> None:
    vc = VirtualClock()
    config = FakeServerConfig(turn_detection=None, speed=8.0, clock=vc, max_session_s=3600.0,
                              responses=["This reply takes a little while to speak out loud."])
    async with FakeRealtimeServer(config) as server:
        provider = OpenAIProvider(
            OpenAIConfig(api_key=KEY, url=server.url, turn_detection=None), clock=vc,
            reconnect_delays=lambda c: iter([0.0] * 10),
        )
        events: list = []
        provider.on_event("*", events.append)
        await provider.connect()
        try:
            provider.set_replay_source(lambda: [{"id": "item_keep", "type": "message", "role": "user",
                                                 "content": [{"type": "input_text", "text": "keep me"}]}])
            await provider.send_text("speak")
            await server.wait_for(lambda ev: ev["type"] == "response.output_audio.delta")
            vc.advance(3600 - 120 + 1)  # the recycle is due; the server's session is not expired
            await asyncio.sleep(0.05)
            assert provider.response_active and len(server.sessions) == 1  # still waiting for the reply
            async with asyncio.timeout(10):
                while not any(e.type is EventType.CONNECTION_STATE and e.data.phase == "restored" for e in events):
                    await asyncio.sleep(0.01)
            kinds = [(e.type, getattr(e.data, "phase", None)) for e in events]
            done_at = next(i for i, e in enumerate(events) if response_done(e))
            reconnecting_at = kinds.index((EventType.CONNECTION_STATE, "reconnecting"))
            assert done_at < reconnecting_at
            assert events[done_at].data.status == "completed"
            phases = [e.data for e in events if e.type is EventType.CONNECTION_STATE]
            reconnecting = next(c for c in phases if c.phase == "reconnecting")
            restored = next(c for c in phases if c.phase == "restored")
            assert reconnecting.planned and restored.planned
            assert "3600 s limit" in reconnecting.reason and reconnecting.close_code == 1000
            assert restored.replayed_items == 1
            assert len(server.sessions) == 2
            assert not any(ev.get("error", {}).get("code") == "session_expired" for ev in server.errors)
            assert provider.state is ConnectionState.CONNECTED
            mark = len(events)
            await provider.send_text("still there?")
            async with asyncio.timeout(10):
                while not any(response_done(e) for e in events[mark:]):
                    await asyncio.sleep(0.01)
        finally:
            await provider.disconnect()


async def test_continuity_no_recycle_when_disabled_then_expiry_reconnects() -> None:
    vc = VirtualClock()
    config = FakeServerConfig(turn_detection=None, speed=math.inf, clock=vc, max_session_s=600.0,
                              expiry_poll_s=0.01)
    async with running(config, recycle=False, session_limit_s=600.0, recycle_margin_s=60.0) as (server, provider, rec):
        provider.clock = vc
        vc.advance(599)
        await asyncio.sleep(0.05)
        assert len(server.sessions) == 1
        vc.advance(2)  # the server expires the session: the normal (unplanned) path runs
        restored = await rec.wait_phase("restored")
        assert not restored.data.planned
        assert any(e.error.code == "session_expired" for e in rec.errors())


def test_continuity_session_limit_defaults() -> None:
    assert OpenAIConfig().effective_session_limit_s == 3600
    assert OpenAIConfig(azure_deployment="dep").effective_session_limit_s == 1800
    assert OpenAIConfig(session_limit_s=900).effective_session_limit_s == 900
    assert OpenAIConfig().recycle_margin_s == 120 and OpenAIConfig().recycle
    assert OpenAIConfig().reconnect_audio_buffer_ms == 3000
    with pytest.raises(ConfigurationError):
        OpenAIConfig(session_limit_s=100, recycle_margin_s=100)
    with pytest.raises(ConfigurationError):
        OpenAIConfig(reconnect_audio_buffer_ms=-1)


async def test_continuity_backoff_sleeps_on_the_clock() -> None:
    vc = VirtualClock()
    async with FakeRealtimeServer(FakeServerConfig(turn_detection=None, speed=math.inf)) as server:
        provider = make_provider(server)
        provider.clock = vc
        provider.reconnect_delays = lambda c: iter([30.0] * 5)  # 30 virtual seconds
        events: list = []
        provider.on_event(EventType.CONNECTION_STATE, events.append)
        await provider.connect()
        try:
            ws = provider._transport
            assert ws is not None
            ws.abort()
            async with asyncio.timeout(5):
                while not any(e.data.phase == "reconnecting" for e in events):
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.01)
            assert vc.sleepers == 1  # the backoff sleep (the old recycler's sleep was cancelled)
            assert server.handshakes == 1  # asleep on virtual time
            vc.advance(30)
            async with asyncio.timeout(5):
                while not any(e.data.phase == "restored" for e in events):
                    await asyncio.sleep(0.01)
            assert server.handshakes == 2
            restored = next(e.data for e in events if e.data.phase == "restored")
            assert restored.downtime_ms == pytest.approx(30_000)
        finally:
            await provider.disconnect()
