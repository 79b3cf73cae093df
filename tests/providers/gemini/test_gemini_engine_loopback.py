"""VoiceEngine over GeminiProvider over loopback: resampling in, playback out."""

from __future__ import annotations

import asyncio
import base64
import wave
from pathlib import Path

import numpy as np

from gemini_provider_helpers import make_provider
from voiceengine.audio.wav import WavSink, WavSource
from voiceengine.engine import VoiceEngine, VoiceEngineConfig
from voiceengine.providers import create
from voiceengine.providers.gemini import GeminiConfig
from voiceengine.providers.types import EventType, ProviderEvent
from voiceengine.testing import FakeGeminiLiveServer


def voiced(rate: int, ms: int) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    s = 0.3 * (np.sin(2 * np.pi * 180 * t) + 0.5 * np.sin(2 * np.pi * 360 * t)) / 1.5
    return (s * 32767).astype("<i2").tobytes()


def write_wav(path: Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def server_reply_audio(server: FakeGeminiLiveServer) -> bytes:
    out = bytearray()
    for frame in server.session.sent:
        for part in frame.get("serverContent", {}).get("modelTurn", {}).get("parts", []):
            out += base64.b64decode(part["inlineData"]["data"])
    return bytes(out)


async def test_48khz_app_audio_reaches_gemini_at_16khz_and_the_reply_is_heard_exactly(tmp_path: Path) -> None:
    question, answer = tmp_path / "question.wav", tmp_path / "answer.wav"
    write_wav(question, voiced(48000, 700) + bytes(48000 * 2 * 200 // 1000), 48000)
    async with FakeGeminiLiveServer(speed=float("inf"), responses=["Here is the answer."]) as server:
        provider = make_provider(server)
        sink = WavSink(str(answer), sample_rate=24000)
        cfg = VoiceEngineConfig(playback_speed=50.0, playback_tick_ms=5, prebuffer_ms=40, end_silence_ms=800)
        done = asyncio.Event()

        def on_event(event: ProviderEvent) -> None:
            if event.type is EventType.PLAYBACK_STOPPED:
                done.set()

        async with VoiceEngine(provider, cfg, sink=sink) as engine:
            engine.events.subscribe(on_event)
            await engine.start_listening(WavSource(str(question)))
            await engine.wait_listening()
            await asyncio.wait_for(done.wait(), 10)
        sink.close()
        sent_ms = server.input_audio_bytes / 32  # PCM16 16 kHz mono: 32 bytes per ms
        reply = server_reply_audio(server)
    # 700 ms voiced + 200 ms silence + 800 ms end silence, resampled 48 -> 16 kHz
    assert abs(sent_ms - 1700) <= 20
    with wave.open(str(answer), "rb") as r:
        assert r.getframerate() == 24000
        heard = r.readframes(r.getnframes())
    assert reply and heard == reply


def test_registry_builds_gemini() -> None:
    provider = create("gemini", GeminiConfig(api_key="k", url="ws://127.0.0.1:9/ws"))
    assert provider.name == "gemini" and provider.get_audio_format()[0].sample_rate == 16000
    built = create("gemini", api_key="k", url="ws://127.0.0.1:9/ws", instructions="hi")
    assert isinstance(built.config, GeminiConfig) and built.config.instructions == "hi"
    import voiceengine

    assert voiceengine.GeminiProvider is type(provider) and voiceengine.GeminiConfig is GeminiConfig


async def test_first_audio_latency_is_measured_for_a_spoken_gemini_turn() -> None:
    """The engine's clock starts at the end of the user's turn as the service reports it
    (INPUT_COMMITTED from ``inputTranscription.finished``): the turn's first-audio latencies
    are figures, not "-" (the demo's latency table)."""
    async with FakeGeminiLiveServer(speed=float("inf"), responses=["Here is the answer."]) as server:
        provider = make_provider(server)
        cfg = VoiceEngineConfig(playback_speed=50.0, playback_tick_ms=5, prebuffer_ms=40, end_silence_ms=800)
        metrics: asyncio.Queue[ProviderEvent] = asyncio.Queue()
        seen: list[EventType] = []

        def on_event(event: ProviderEvent) -> None:
            seen.append(event.type)
            if event.type is EventType.METRICS:
                metrics.put_nowait(event)

        async with VoiceEngine(provider, cfg) as engine:
            engine.events.subscribe(on_event)
            await engine.send_audio(voiced(48000, 700) + bytes(48000 * 2 * 900 // 1000), sample_rate=48000)
            turn = (await asyncio.wait_for(metrics.get(), 10)).data
    assert turn.status == "completed"
    assert turn.first_audio_received_ms is not None and turn.first_audio_played_ms is not None
    assert 0 <= turn.first_audio_received_ms <= turn.first_audio_played_ms
    # the user's turn ended before the reply began
    assert seen.index(EventType.INPUT_COMMITTED) < seen.index(EventType.RESPONSE_STARTED)
