"""Issue 5 limits: each limit becomes a typed error, never growth."""

from __future__ import annotations

import math

import pytest

from _shell_helpers import KEY, response_done, running, tone
from voiceengine.exceptions import ConfigurationError, LimitExceeded
from voiceengine.providers import ConnectionState, EventType
from voiceengine.providers.openai import OpenAIConfig
from voiceengine.testing import FakeServerConfig, Fault, FaultKind

SPOKEN = FakeServerConfig(turn_detection=None, speed=math.inf, chunk_ms=100,
                          responses=["A reply long enough to need several audio deltas, surely."])


async def test_limits_audio_delta_too_large_is_dropped_with_a_typed_error() -> None:
    async with running(SPOKEN, max_audio_delta_bytes=1000) as (server, provider, rec):  # deltas are 4800 bytes
        await provider.send_text("speak")
        done = await rec.wait(response_done)
        assert done.data.status == "completed"
        assert rec.of(EventType.AUDIO_DELTA) == []
        errors = [e.error for e in rec.errors() if e.error.code == "audio_delta_too_large"]
        assert errors and all(e.type == "client_error" and e.remote and not e.fatal for e in errors)
        assert provider.session is not None and provider.session.limit_drops == len(errors)
        assert provider.state is ConnectionState.CONNECTED


async def test_limits_response_audio_limit_cancels_the_response() -> None:
    async with running(SPOKEN, max_response_audio_s=0.25) as (server, provider, rec):
        await provider.send_text("speak")
        done = await rec.wait(response_done)
        audio = sum(len(e.data) for e in rec.of(EventType.AUDIO_DELTA))
        assert audio <= 0.25 * 48000
        errors = [e.error for e in rec.errors() if e.error.code == "response_audio_limit"]
        assert len(errors) == 1 and errors[0].type == "client_error" and errors[0].remote
        assert any(ev["type"] == "response.cancel" for ev in server.sessions[0].received)
        assert done.data.status in ("cancelled", "completed")  # the server may have finished first
        mark = rec.mark()
        await provider.send_text("again")  # the next response has its own budget
        await rec.wait(response_done, since=mark)


async def test_limits_message_too_big_then_restore_keeps_audio_balanced() -> None:
    config = FakeServerConfig(turn_detection=None, speed=math.inf)
    async with running(config, max_size_bytes=64 * 1024) as (server, provider, rec):
        await provider.send_audio(tone(20))
        server.inject(Fault(kind=FaultKind.OVERSIZED_MESSAGE, size_bytes=100 * 1024))
        restored = await rec.wait_phase("restored")
        reconnecting = next(e.data for e in rec.of(EventType.CONNECTION_STATE) if e.data.phase == "reconnecting")
        assert reconnecting.close_code == 1009 and not reconnecting.planned
        assert [e.error.code for e in rec.errors()] == ["message_too_big"]
        assert restored.data.state is ConnectionState.CONNECTED
        assert provider.audio_accounting.balanced


async def test_limits_outbound_queue_full_is_typed() -> None:
    async with running(max_queue_messages=2) as (server, provider, rec):
        for _ in range(2):
            await provider.send_audio(tone(10))
        with pytest.raises(LimitExceeded):
            await provider.send_audio(tone(10))
        acc = provider.audio_accounting
        assert acc.captured_bytes == 2 * 480 and acc.balanced  # refused audio is not counted


def test_limits_config_defaults_and_validation() -> None:
    config = OpenAIConfig()
    assert config.max_audio_delta_bytes == 1024 * 1024 and config.max_response_audio_s == 600
    assert config.max_size_bytes == 16 * 1024 * 1024 and config.max_queue_messages == 1024
    for bad in (dict(max_audio_delta_bytes=0), dict(max_response_audio_s=0), dict(max_size_bytes=10)):
        with pytest.raises(ConfigurationError):
            OpenAIConfig(**bad)


def test_limits_plain_ws_with_a_key_only_to_loopback() -> None:
    for url in ("ws://127.0.0.1:1/v1/realtime", "ws://localhost/x", "ws://[::1]:9/x", "ws://127.8.0.1/x"):
        assert OpenAIConfig(api_key=KEY, url=url).is_loopback
    with pytest.raises(ConfigurationError):
        OpenAIConfig(api_key=KEY, url="ws://example.com/v1/realtime")
    with pytest.raises(ConfigurationError):  # allow_insecure never sends a key in clear
        OpenAIConfig(api_key=KEY, url="ws://10.0.0.1/v1/realtime", allow_insecure=True)
    assert OpenAIConfig(url="ws://10.0.0.1/v1/realtime", allow_insecure=True).key is None
    assert OpenAIConfig(api_key=KEY, url="wss://example.com/v1/realtime").url.startswith("wss://")
