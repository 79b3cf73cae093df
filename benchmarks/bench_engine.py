"""Engine benchmarks: input frame size (20 vs 100 ms), per-path added latency, CPU per
second of two-way conversation through the fake server (-> sessions per core).

Run:  pytest benchmarks/bench_engine.py --benchmark-enable -q -s
(figures also land in each benchmark's ``extra_info``; -s prints a summary line each).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time

import pytest

from voiceengine.engine import VoiceEngine, VoiceEngineConfig
from voiceengine.pipeline import InputPipeline, Playback
from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider
from voiceengine.providers.openai.session import RealtimeSession
from voiceengine.providers.types import EventType


def _tone(rate: int, ms: int, channels: int = 1, amp: float = 0.3) -> bytes:
    import numpy as np

    t = np.arange(rate * ms // 1000) / rate
    s = (amp * np.sin(2 * np.pi * 180 * t) * 32767).astype("<i2")
    return np.repeat(s, channels).tobytes() if channels == 2 else s.tobytes()


@pytest.mark.parametrize("frame_ms", [20, 100])
def test_input_path_frame_size(benchmark, frame_ms: int) -> None:
    """One second of 48 kHz stereo app audio (10 ms buffers) -> resample -> chunk -> wire JSON."""
    audio = _tone(48000, 1000, 2)
    step = 48000 * 2 * 2 // 100
    pieces = [audio[i:i + step] for i in range(0, len(audio), step)]
    session = RealtimeSession(OpenAIConfig(api_key="bench", url="ws://127.0.0.1:1/v1/realtime"))

    def run() -> int:
        pipe = InputPipeline(provider_rate=24000, frame_ms=frame_ms)
        n = 0
        for p in pieces:
            for frame in pipe.push(p, 48000, 2):
                session.append_audio(frame)
                n += 1
        session.data_to_send()
        return n

    n = benchmark(run)
    benchmark.extra_info.update(frame_ms=frame_ms, events_per_s=n)
    if benchmark.stats:
        print(f"\ninput path, {frame_ms} ms frames: {benchmark.stats['mean'] * 1e3:.3f} ms CPU per second "
              f"of audio, {n} events/s")


def test_output_path_added_latency(benchmark) -> None:
    """AUDIO_DELTA written -> PCM handed to the sink (unpaced clock, 24k -> 48k resample)."""
    delta = _tone(24000, 100)

    async def scenario() -> list[float]:
        lat: list[float] = []
        t_write = [0.0]
        got = asyncio.Event()

        def deliver(pcm: bytes) -> None:
            lat.append(time.perf_counter() - t_write[0])
            got.set()

        pb = Playback(in_rate=24000, out_rate=48000, out_channels=1, capacity_ms=10_000, prebuffer_ms=0,
                      speed=None, tick_ms=10, deliver=deliver)
        pb.start()
        for i in range(200):
            got.clear()
            t_write[0] = time.perf_counter()
            pb.write("item", "resp", delta)
            await got.wait()
        await pb.aclose()
        return lat

    lat = benchmark.pedantic(lambda: asyncio.run(scenario()), rounds=3, iterations=1)
    p50 = statistics.median(lat) * 1e6
    benchmark.extra_info.update(output_latency_us_p50=p50)
    print(f"\noutput path (delta -> sink, incl. one loop wake-up + resample): p50 {p50:.0f} us")


def test_input_path_added_latency(benchmark) -> None:
    """App buffer in -> provider.send_audio called (48k stereo -> 24k mono, 20 ms frames)."""
    buf = _tone(48000, 20, 2)
    pipe = InputPipeline(provider_rate=24000, frame_ms=20)
    sent: list[float] = []

    def run() -> None:
        t0 = time.perf_counter()
        for frame in pipe.push(buf, 48000, 2):
            sent.append(time.perf_counter() - t0)

    benchmark(run)
    if sent:
        print(f"\ninput path (buffer -> send_audio): p50 {statistics.median(sent) * 1e6:.1f} us "
              f"+ resampler delay {pipe.delay_ms:.2f} ms (+ 0..20 ms framing)")


def test_two_way_conversation_cpu(benchmark) -> None:
    """CPU per second of conversation audio (user in + reply out), engine + OpenAIProvider +
    the fake server all in this process (so the figure is conservative)."""
    from voiceengine.testing import FakeRealtimeServer, FakeServerConfig

    turns = 4
    user = _tone(48000, 1500) + bytes(48000 * 2 * 900 // 1000)

    async def scenario() -> tuple[float, float]:
        async with FakeRealtimeServer(FakeServerConfig(speed=math.inf, responses=(
                "This is a reply of a few seconds, long enough to measure the output path properly.",))) as server:
            provider = OpenAIProvider(OpenAIConfig(api_key="bench", url=server.url))
            async with VoiceEngine(provider, VoiceEngineConfig(playback_speed=None, prebuffer_ms=0)) as engine:
                done = asyncio.Event()
                count = [0]

                def on_metrics(_e) -> None:
                    count[0] += 1
                    if count[0] == turns:
                        done.set()

                engine.events.on(EventType.METRICS, on_metrics)
                c0 = time.process_time()
                for _ in range(turns):
                    n = count[0]
                    for off in range(0, len(user), 1920):
                        await engine.send_audio(user[off:off + 1920], sample_rate=48000)
                    while count[0] == n:
                        await asyncio.sleep(0.001)
                cpu = time.process_time() - c0
                m = engine.metrics
                audio_s = m.bytes_sent / 48000 + m.bytes_received / 48000
                return cpu, audio_s

    cpu, audio_s = benchmark.pedantic(lambda: asyncio.run(scenario()), rounds=1, iterations=1)
    per_s = cpu / audio_s
    benchmark.extra_info.update(cpu_s_per_audio_s=per_s, sessions_per_core=1 / per_s)
    print(f"\ntwo-way conversation: {per_s * 1e3:.2f} ms CPU per second of audio "
          f"({audio_s:.1f} s audio) -> ~{1 / per_s:.0f} real-time sessions per core (incl. fake server)")


@pytest.mark.parametrize("who_replies", ["service", "engine", "engine+context"])
def test_reply_start_latency_by_who_replies(benchmark, who_replies: str) -> None:
    """Server VAD: the user's turn committed (INPUT_COMMITTED seen by the engine) -> the reply
    started (RESPONSE_STARTED seen by the engine), when the service replies by itself
    (``auto_response=True``) and when the engine asks for the reply (the default, which
    lets NEXT_TURN context go in first), without and with one NEXT_TURN item per turn. Over 127.0.0.1 to the fake server; over a real
    network the engine's way adds one round trip to the service on top."""
    from voiceengine.injection import InjectionTiming
    from voiceengine.testing import FakeRealtimeServer, FakeServerConfig

    turns = 8
    user = _tone(24000, 600) + bytes(24000 * 2 * 900 // 1000)

    async def scenario() -> list[float]:
        async with FakeRealtimeServer(FakeServerConfig(speed=math.inf, responses=("A short reply.",))) as server:
            provider = OpenAIProvider(OpenAIConfig(api_key="bench", url=server.url))
            config = VoiceEngineConfig(playback_speed=None, prebuffer_ms=0,
                                       auto_response=True if who_replies == "service" else None)
            async with VoiceEngine(provider, config) as engine:
                committed: list[float] = []
                started: list[float] = []
                engine.events.on(EventType.INPUT_COMMITTED, lambda _e: committed.append(time.perf_counter()))
                engine.events.on(EventType.RESPONSE_STARTED, lambda _e: started.append(time.perf_counter()))
                for turn in range(turns):
                    if who_replies == "engine+context":
                        engine.inject_context(f"context for turn {turn}", timing=InjectionTiming.NEXT_TURN)
                    # paced in real time, as a microphone would: unpaced audio would queue
                    # the silence after the end of speech ahead of the reply request
                    t0 = time.perf_counter()
                    for n, off in enumerate(range(0, len(user), 960)):
                        await engine.send_audio(user[off:off + 960], sample_rate=24000)
                        await asyncio.sleep(max(0.0, t0 + (n + 1) * 0.02 - time.perf_counter()))
                    while len(started) <= turn or engine.provider.response_active:
                        await asyncio.sleep(0.001)
                return [s - c for c, s in zip(committed, started)]

    lat = benchmark.pedantic(lambda: asyncio.run(scenario()), rounds=1, iterations=1)
    p50 = statistics.median(lat) * 1e3
    benchmark.extra_info.update(who_replies=who_replies, commit_to_reply_ms_p50=p50,
                                commit_to_reply_ms_max=max(lat) * 1e3)
    print(f"\nreply start after the commit, {who_replies} replies: p50 {p50:.2f} ms, "
          f"max {max(lat) * 1e3:.2f} ms over {len(lat)} turns")
