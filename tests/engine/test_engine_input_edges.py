"""Input edge cases at the engine boundary: nothing raised late, nothing lost uncounted."""

from __future__ import annotations

import pytest

from enginekit import fast_config
from voiceengine.engine import VoiceEngine
from voiceengine.engine_config import VoiceEngineConfig
from voiceengine.exceptions import AudioFormatError, InvalidState
from voiceengine.pipeline import InputPipeline
from voiceengine.providers.mock import MockConfig, MockProvider
from voiceengine.secrets import Secret


def test_pipeline_drops_and_counts_a_trailing_half_sample() -> None:
    pipeline = InputPipeline(provider_rate=24000, frame_ms=20)
    assert pipeline.push(b"\x01\x02\x03", 24000, 1) == []
    frames = pipeline.flush()
    assert [bytes(f) for f in frames] == [b"\x01\x02"]
    assert pipeline.dropped_bytes == 1
    assert pipeline.chunker.pending == 0


def test_half_sample_completing_a_frame_is_cut_from_that_frame() -> None:
    pipeline = InputPipeline(provider_rate=24000, frame_ms=20)  # 960-byte frames
    assert pipeline.push(bytes(959), 24000, 1) == []
    frames = pipeline.flush()
    assert sum(f.nbytes for f in frames) == 958 and pipeline.dropped_bytes == 1


async def test_odd_byte_stream_then_disconnect_is_counted_not_raised() -> None:
    provider = MockProvider(MockConfig(turn_detection=None))
    engine = VoiceEngine(provider, fast_config())
    await engine.connect()
    await engine.send_audio(b"\x01\x00\x07", sample_rate=24000)
    await engine.close()  # used to raise AudioFormatError from the chunker's flush
    metrics = engine.metrics
    assert metrics.audio_unsent_bytes == 1
    assert provider.audio_accounting.captured_bytes == 2
    with pytest.raises(InvalidState):
        await engine.send_audio(b"\x00\x00")


def test_engine_config_wraps_the_key() -> None:
    config = VoiceEngineConfig(api_key="sk-test-wrap-0123456789")
    assert isinstance(config.api_key, Secret)
    assert "sk-test-wrap" not in repr(config)


@pytest.mark.parametrize("fmt", [{"sample_rate": 0}, {"channels": 0}, {"sample_rate": -1}, {"channels": 3},
                                 {"sample_rate": 7999}, {"sample_rate": 16000.0}, {"channels": True}])
async def test_send_audio_refuses_zero_and_bad_rate_or_channels(fmt: dict[str, object]) -> None:
    provider = MockProvider(MockConfig(turn_detection=None))
    async with VoiceEngine(provider, fast_config()) as engine:
        with pytest.raises(AudioFormatError):
            await engine.send_audio(bytes(960), **fmt)  # type: ignore[arg-type]
        assert provider.audio_accounting.captured_bytes == 0  # nothing went anywhere
        # None still means "the default"
        assert await engine.send_audio(bytes(960), sample_rate=None, channels=None) == 1


async def test_send_audio_carries_an_odd_byte_but_the_provider_refuses_it() -> None:
    provider = MockProvider(MockConfig(turn_detection=None))
    async with VoiceEngine(provider, fast_config()) as engine:
        # the engine's input is a byte stream: the odd byte waits for the next call
        assert await engine.send_audio(b"\x01" * 959, sample_rate=24000) == 0
        assert await engine.send_audio(b"\x02", sample_rate=24000) == 1
        assert provider.audio_accounting.captured_bytes == 960
        with pytest.raises(AudioFormatError):  # a provider frame must be whole samples
            await provider.send_audio(b"\x01" * 959)
