"""End to end over loopback: WAV in -> engine -> OpenAIProvider -> FakeRealtimeServer -> WAV out."""

from __future__ import annotations

import asyncio
import random
import wave
from pathlib import Path

from enginekit import Recorder, make_provider, silence, voiced
from voiceengine.audio import resample
from voiceengine.audio.wav import WavSink, WavSource
from voiceengine.engine import VoiceEngine, VoiceEngineConfig
from voiceengine.providers.types import EventType


def write_wav(path: Path, pcm: bytes, rate: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


async def test_wav_in_wav_out_sample_exact(tmp_path: Path) -> None:
    question = tmp_path / "question.wav"
    answer = tmp_path / "answer.wav"
    write_wav(question, voiced(48000, 700, channels=2) + silence(48000, 200, channels=2), 48000, 2)
    async with make_provider("openai", responses=["Here is the answer to your question."]) as (provider, server):
        sink = WavSink(str(answer), sample_rate=16000)
        cfg = VoiceEngineConfig(playback_speed=50.0, playback_tick_ms=5, prebuffer_ms=40, end_silence_ms=800)
        async with VoiceEngine(provider, cfg, sink=sink) as engine:
            rec = Recorder(engine)
            await engine.start_listening(WavSource(str(question)))
            await engine.wait_listening()
            await rec.wait(EventType.METRICS, past=True)
            assert engine.metrics.bytes_sent >= 1700 * 48 - 960  # 900 ms of 48k stereo + 800 ms silence, at 24k
        sink.close()
        assert server.errors == []
        sent = server.sessions[0].audio_sent_by_item
        assert len(sent) == 1
        expected = resample(next(iter(sent.values())), 24000, 16000)
        with wave.open(str(answer), "rb") as r:
            assert r.getframerate() == 16000 and r.getnchannels() == 1
            got = r.readframes(r.getnframes())
        assert len(got) == len(expected) and got == expected


async def test_barge_in_at_200_random_points() -> None:
    rng = random.Random(20240607)
    reply = "One two three four five six seven."
    async with make_provider("openai", responses=[reply], turn_detection=None,
                             server_config={"speed": 100.0}) as (provider, server):
        cfg = VoiceEngineConfig(playback_speed=100.0, playback_tick_ms=2, prebuffer_ms=0)
        async with VoiceEngine(provider, cfg) as engine:
            rec = Recorder(engine)
            played = bytearray()
            engine.on_audio_response = played.extend
            actions = {"truncated": 0, "deleted": 0}
            for n in range(200):
                target_ms = rng.choice([0.0, rng.uniform(0, 1200)]) if n % 10 == 0 else rng.uniform(0, 1200)
                played.clear()
                done_before = len(rec.of(EventType.RESPONSE_DONE))
                started = len(rec.of(EventType.PLAYBACK_STARTED))
                await engine.send_text(f"turn {n}")
                # barge in only once the reply is audible (played may still be 0 ms: then it is deleted)
                while len(rec.of(EventType.PLAYBACK_STARTED)) == started:
                    await asyncio.sleep(0.001)
                while len(played) < target_ms * 48:
                    await asyncio.sleep(0.001)
                result = await engine.interrupt()
                heard_ms = len(played) // 48
                assert result.played_ms is not None and abs(result.played_ms - heard_ms) <= 20, (n, result, heard_ms)
                actions[result.action] = actions.get(result.action, 0) + 1
                if result.action == "truncated":
                    assert abs(result.audio_end_ms - heard_ms) <= 20
                else:
                    assert result.action == "deleted" and heard_ms < 20
                while len(rec.of(EventType.RESPONSE_DONE)) <= done_before:
                    await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        assert server.errors == []
        truncs = [e for e in server.received if e["type"] == "conversation.item.truncate"]
        assert len(truncs) == actions["truncated"] and actions["truncated"] > 100
