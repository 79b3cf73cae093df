"""Contract v2 events from the OpenAI provider: USAGE per response, SESSION_EXPIRING."""

from __future__ import annotations

import math

from _shell_helpers import running
from voiceengine.providers import EventType
from voiceengine.providers.openai.session import usage_from_response
from voiceengine.providers.types import SessionExpiring, Usage
from voiceengine.testing import FakeServerConfig, Fault, FaultKind

FAST = FakeServerConfig(turn_detection=None, speed=math.inf, responses=["Okay, noted."])


def test_usage_from_response_maps_modalities_and_ignores_junk() -> None:
    usage = usage_from_response({"input_tokens": 20, "output_tokens": 10,
                                 "input_token_details": {"text_tokens": 5, "audio_tokens": 15, "cached_tokens": 3},
                                 "output_token_details": {"text_tokens": 2, "audio_tokens": 8}}, "r1")
    assert usage == Usage(input_text_tokens=5, input_audio_tokens=15, input_cached_tokens=3, output_text_tokens=2,
                          output_audio_tokens=8, response_id="r1")
    # no details: the totals are taken as text; ill-typed members count as nothing
    assert usage_from_response({"input_tokens": 4, "output_tokens": 6}, None) == Usage(
        input_text_tokens=4, output_text_tokens=6)
    assert usage_from_response({"input_tokens": "x", "output_tokens": -3}, None) is None
    assert usage_from_response(None, "r") is None


async def test_provider_reports_usage_after_each_response() -> None:
    async with running(FAST) as (server, provider, rec):
        await provider.send_text("count me")
        done = await rec.wait(lambda e: e.type is EventType.RESPONSE_DONE)
        usage_event = await rec.wait(lambda e: e.type is EventType.USAGE)
        assert rec.events.index(usage_event) == rec.events.index(done) + 1
        wire = next(ev["response"]["usage"] for ev in server.sessions[0].sent if ev["type"] == "response.done")
        usage = usage_event.data
        assert isinstance(usage, Usage) and usage.response_id == done.response_id
        assert usage.input_tokens == wire["input_tokens"] and usage.output_tokens == wire["output_tokens"]


async def test_provider_announces_session_expiry_then_restores() -> None:
    async with running(FAST) as (server, provider, rec):
        server.inject(Fault(kind=FaultKind.SESSION_EXPIRED))
        expiring = await rec.wait(lambda e: e.type is EventType.SESSION_EXPIRING)
        assert expiring.data == SessionExpiring(time_left_ms=0, reason="session_expired")
        await rec.wait_phase("restored")
        assert len(rec.of(EventType.SESSION_EXPIRING)) == 1
