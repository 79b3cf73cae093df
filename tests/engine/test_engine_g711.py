"""G.711 (mu-law / A-law) on both sides of the engine, against the fake Realtime server.

The service's G.711 output must reach the app as PCM16 at the output rate it asked for,
lasting what the service sent (8000 samples = 1 s), and the state and metrics must measure
the same duration; app PCM16 must reach a G.711 service encoded, not as raw PCM16.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from enginekit import Recorder, voiced
from voiceengine import _audio
from voiceengine.engine import VoiceEngine, VoiceEngineConfig
from voiceengine.providers.types import EventType
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig

_DECODE = {"audio/pcmu": _audio.ulaw_decode, "audio/pcma": _audio.alaw_decode}


@pytest.mark.parametrize("wire_format", ["audio/pcmu", "audio/pcma"])
async def test_g711_output_is_decoded_resampled_and_measured_in_its_real_format(wire_format: str) -> None:
    async with FakeRealtimeServer(FakeServerConfig(speed=math.inf, responses=["One two three four five."])) as server:
        config = VoiceEngineConfig(api_key="test-key", url=server.url, turn_detection=None,
                                   provider_options={"output_audio_format": wire_format},
                                   output_sample_rate=24000, playback_speed=None, prebuffer_ms=0)
        heard = bytearray()
        async with VoiceEngine("openai", config) as engine:
            rec = Recorder(engine)
            engine.on_audio_response = heard.extend
            await engine.send_text("count")
            await rec.wait(EventType.PLAYBACK_STOPPED)
            (item_id, sent), = server.session.audio_sent_by_item.items()
            seconds = len(sent) / 8000  # G.711: one byte per sample at 8 kHz
            assert seconds > 0.5
            # what the app hears: the service's audio decoded and resampled to 24 kHz PCM16
            expected = _audio.resample(_DECODE[wire_format](sent), 8000, 24000)
            assert len(heard) == len(expected)
            assert len(heard) / 2 / 24000 == pytest.approx(seconds, abs=0.002)
            got = np.frombuffer(bytes(heard), "<i2").astype(float)
            want = np.frombuffer(expected, "<i2").astype(float)
            assert np.max(np.abs(got - want)) <= 1  # the same audio, not raw G.711 bytes
            # the state and the metrics measure the real duration
            item = engine.state.get(item_id)
            assert item is not None and item.audio_ms == pytest.approx(seconds * 1000, abs=1)
            turn = engine.metrics.last_turn
            assert turn is not None and turn.audio_received_ms == pytest.approx(seconds * 1000, abs=1)
            assert turn.audio_played_ms == pytest.approx(seconds * 1000, abs=1)
        assert server.errors == []


@pytest.mark.parametrize("wire_format", ["audio/pcmu", "audio/pcma"])
async def test_app_pcm16_is_encoded_for_a_g711_input(wire_format: str) -> None:
    async with FakeRealtimeServer(FakeServerConfig(speed=math.inf)) as server:
        config = VoiceEngineConfig(api_key="test-key", url=server.url, turn_detection=None,
                                   provider_options={"input_audio_format": wire_format},
                                   playback_speed=None, prebuffer_ms=0)
        async with VoiceEngine("openai", config) as engine:
            tone = voiced(24000, 1000)
            await engine.send_audio(tone, sample_rate=24000)
            await server.wait_for_received(lambda ev: ev["type"] == "input_audio_buffer.append"
                                           and server.session.input_audio_ms_total() >= 980)
            got_ms = server.session.input_audio_ms_total()
            assert 980 <= got_ms <= 1000  # 1 s of audio is 1 s of G.711, not 2 s of bytes
            appended = b"".join(_b64(ev["audio"]) for ev in server.received
                                if ev["type"] == "input_audio_buffer.append")
            decoded = np.frombuffer(_DECODE[wire_format](appended), "<i2").astype(float)
            reference = np.frombuffer(_audio.resample(tone, 24000, 8000), "<i2").astype(float)[:len(decoded)]
            # G.711 quantisation noise only: the tone survives (SNR well above 20 dB)
            noise = np.sqrt(np.mean((decoded - reference) ** 2))
            signal = np.sqrt(np.mean(reference ** 2))
            assert signal / noise > 10
        assert server.errors == []


@pytest.mark.parametrize("wire_format", ["audio/pcmu", "audio/pcma"])
async def test_g711_input_with_an_odd_sample_count_reaches_the_server(wire_format: str) -> None:
    """G.711 has one byte per sample: a buffer of an odd number of samples is whole
    samples, not a torn PCM16 sample (the runtime used to refuse it with AudioFormatError)."""
    samples = 160 * 7 + 1  # 141.125 ms at 8 kHz: the last frame is one sample long
    async with FakeRealtimeServer(FakeServerConfig(speed=math.inf)) as server:
        config = VoiceEngineConfig(api_key="test-key", url=server.url, turn_detection=None,
                                   provider_options={"input_audio_format": wire_format},
                                   playback_speed=None, prebuffer_ms=0)
        async with VoiceEngine("openai", config) as engine:
            await engine.send_audio(bytes(2 * samples), sample_rate=8000)
            await engine.commit(respond=False)
            await server.wait_for_received(lambda ev: ev["type"] == "input_audio_buffer.commit")
            appended = b"".join(_b64(ev["audio"]) for ev in server.received
                                if ev["type"] == "input_audio_buffer.append")
            assert len(appended) == samples  # every sample, one byte each
            assert engine.metrics.audio_unsent_bytes == 0
        assert server.errors == []


def test_g711_intake_takes_any_byte_count_but_only_byte_buffers() -> None:
    from voiceengine._audio.pcm import g711_view, pcm16_view
    from voiceengine.exceptions import AudioFormatError

    assert bytes(g711_view(memoryview(b"\x7f\x00\xff"))) == b"\x7f\x00\xff"
    with pytest.raises(AudioFormatError):
        pcm16_view(b"\x7f\x00\xff")  # PCM16 keeps its whole-sample rule
    with pytest.raises(TypeError):
        g711_view(np.zeros(4, np.int16))  # PCM16 that was never encoded
    with pytest.raises(TypeError):
        g711_view("not audio")
    with pytest.raises(AudioFormatError):
        g711_view(np.zeros(8, np.uint8)[::2])  # strided


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)
