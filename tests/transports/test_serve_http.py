"""``VoiceServer``'s HTTP side: health, readiness, metrics, the console page, refusals while draining."""

from __future__ import annotations

from typing import Any

import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from http_get import http_get
from twilio_client import TwilioCallClient, silence_pcm8k, tone_pcm8k
from voiceengine.exceptions import ConfigurationError
from voiceengine.testing import FakeRealtimeServer
from voiceengine.transports import CallHost, CallObserver, EngineFactory, ServeConfig, VoiceServer

from transport_helpers import eventually, openai_factory

pytestmark = pytest.mark.timeout(90)


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_health_ready_and_unknown_paths(fake: FakeRealtimeServer, serve_with: Any) -> None:
    served = await serve_with(openai_factory(fake))
    port = served.server.port
    assert (await http_get(port, "/healthz"))[0] == 200
    status, _, body = await http_get(port, "/readyz")
    assert (status, body) == (200, b"ready\n")
    assert (await http_get(port, "/nothing-here"))[0] == 404
    status, headers, body = await http_get(port, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"<script" in body and b"voiceengineStats" in (await http_get(port, "/console.js"))[2]
    assert b"registerProcessor" in (await http_get(port, "/worklets.js"))[2]


async def test_metrics_count_a_call(fake: FakeRealtimeServer, serve_with: Any) -> None:
    served = await serve_with(openai_factory(fake))
    async with TwilioCallClient(served.twilio_url) as client:
        await client.send_json({"event": "mystery"})  # dropped, counted as an error by code
        await client.send_audio(tone_pcm8k(500) + silence_pcm8k(800))
        await fake.wait_for(lambda e: e["type"] == "response.done", timeout=20)
        status, headers, body = await http_get(served.server.port, "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        live = _samples(body)
        assert live[("voiceengine_active_calls", (("transport", "twilio"),))] == 1
        reply_ms = sum(len(a) for a in fake.session.audio_sent_by_item.values()) / 48.0
        await client.wait_media_ms(reply_ms - 5)
        async def first_audio_observed() -> bool:  # the turn ends when its playback does
            m = _samples((await http_get(served.server.port, "/metrics"))[2])
            return bool(m.get(("voiceengine_first_audio_latency_seconds_count", (("transport", "twilio"),))))
        await eventually(first_audio_observed, interval=0.02)
        await client.stop()
        await client.wait_closed()
    await eventually(lambda: not served.host.calls)  # the call ends after the close frame: its bookkeeping
    m = _samples((await http_get(served.server.port, "/metrics"))[2])
    twilio = (("transport", "twilio"),)
    assert m[("voiceengine_active_calls", twilio)] == 0
    assert m[("voiceengine_calls_total", twilio)] == 1
    assert m[("voiceengine_audio_in_seconds_total", twilio)] == pytest.approx(1.3, abs=0.001)
    assert m[("voiceengine_audio_out_seconds_total", twilio)] == pytest.approx(client.received_ms / 1000, abs=0.001)
    assert m[("voiceengine_first_audio_latency_seconds_count", twilio)] == 1
    assert m[("voiceengine_errors_total", (("code", "twilio_unknown_event"), ("transport", "twilio")))] == 1


async def test_draining_refuses_new_calls_and_readyz_says_so(fake: FakeRealtimeServer, serve_with: Any) -> None:
    served = await serve_with(openai_factory(fake))
    async with TwilioCallClient(served.twilio_url) as running:
        await eventually(lambda: bool(served.host.calls))
        served.host.start_draining()
        status, _, body = await http_get(served.server.port, "/readyz")
        assert status == 503 and b"draining" in body
        assert (await http_get(served.server.port, "/healthz"))[0] == 200
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(served.twilio_url)
        assert refused.value.response.status_code == 503
        # the running call goes on
        await running.send_audio(tone_pcm8k(400) + silence_pcm8k(800))
        await fake.wait_for(lambda e: e["type"] == "response.done", timeout=20)
        await running.wait_media_ms(100)
        await running.stop()
        assert await running.wait_closed() == 1000


async def test_drain_closes_calls_left_after_the_timeout(fake: FakeRealtimeServer) -> None:
    host = CallHost(openai_factory(fake))
    server = VoiceServer(host, ServeConfig(port=0, drain_timeout_s=0.3, metrics=False))
    await server.start()
    try:
        async with TwilioCallClient(f"ws://127.0.0.1:{server.port}/twilio") as client:
            await eventually(lambda: bool(host.calls))
            await server.drain()
            assert await client.wait_closed() == 1001
        assert not host.calls and not fake.connections
    finally:
        await server.stop()


def test_metrics_need_the_prometheus_observer(fake: FakeRealtimeServer) -> None:
    class Mine(CallObserver):
        pass

    host = CallHost(EngineFactory(provider="mock"), observer=Mine())
    with pytest.raises(ConfigurationError, match="PrometheusMetrics"):
        VoiceServer(host, ServeConfig(port=0))
    VoiceServer(host, ServeConfig(port=0, metrics=False))  # without /metrics any observer does


@pytest.mark.parametrize("bad", [{"port": 70000}, {"drain_timeout_s": -1}, {"max_message_bytes": 10}])
def test_serve_config_is_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ServeConfig(**bad)
