"""Transport benchmarks: what each front door adds per frame and to the first audio, and calls per core.

Run:  pytest benchmarks/bench_transports.py --benchmark-enable -q -s

* per-frame CPU of each path (Twilio in/out, browser in), next to the engine's own input
  path for the same 20 ms (the anchor, measured in the same run);
* first audio: the fake server sends a reply's first delta -> the caller receives its first
  audio frame, through ``VoiceServer`` over loopback (p50 of several calls);
* calls per core: ``voiceengine serve`` in its own process (CPU measured with psutil)
  carrying concurrent real-time Twilio calls against ``voiceengine fake-server`` (another
  process); CPU seconds per call-second -> calls per core.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import AsyncIterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "transports"))

from twilio_client import TwilioCallClient, silence_pcm8k, tone_pcm8k  # noqa: E402

from voiceengine import VoiceEngineConfig  # noqa: E402
from voiceengine.audio import ulaw_decode, ulaw_encode  # noqa: E402
from voiceengine.pipeline import InputPipeline  # noqa: E402
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig  # noqa: E402
from voiceengine.transports import CallHost, EngineFactory, ServeConfig, VoiceServer  # noqa: E402
from voiceengine.transports import twilio_protocol as tp  # noqa: E402


def _media_frame(ms: int = 20) -> str:
    payload = base64.b64encode(ulaw_encode(tone_pcm8k(ms))).decode()
    return json.dumps({"event": "media", "streamSid": "MZ1", "sequenceNumber": "7",
                       "media": {"track": "inbound", "chunk": "6", "timestamp": "120", "payload": payload}})


_ANCHOR: dict[str, float] = {}


def _stamp_sent(fake: FakeRealtimeServer, event_type: str) -> list[float]:
    """The perf_counter time of each ``event_type`` event the fake service sends, in order."""
    stamps: list[float] = []

    def on_session(session) -> None:
        original = session.record_sent

        def record(event) -> None:
            if event.get("type") == event_type:
                stamps.append(time.perf_counter())
            original(event)
        session.record_sent = record

    fake.on_session = on_session
    return stamps


async def _twilio_calls(fake: FakeRealtimeServer, count: int = 5) -> AsyncIterator[TwilioCallClient]:
    """``count`` calls one after another through ``VoiceServer``, each opened with a spoken turn."""
    host = CallHost(EngineFactory(provider="openai", config=VoiceEngineConfig(api_key="k", url=fake.url)))
    async with VoiceServer(host, ServeConfig(port=0, metrics=False)) as server:
        for n in range(count):
            async with TwilioCallClient(f"ws://127.0.0.1:{server.port}/twilio", call_sid=f"CA{n}") as c:
                await c.send_audio(tone_pcm8k(300) + silence_pcm8k(800))
                yield c
                await c.stop()


def test_engine_input_anchor(benchmark) -> None:
    """Anchor: 20 ms of 8 kHz PCM through the engine's input pipeline (resample to 24 kHz + chunk)."""
    pcm = tone_pcm8k(20)
    pipe = InputPipeline(provider_rate=24000, frame_ms=20)
    benchmark(lambda: pipe.push(pcm, 8000, 1))
    if benchmark.stats:
        _ANCHOR["mean"] = benchmark.stats["mean"]
        print(f"\nanchor (engine input path, 8 kHz, 20 ms): {benchmark.stats['mean'] * 1e6:.1f} us")


def _ratio(benchmark) -> str:
    anchor = _ANCHOR.get("mean")
    return f", {benchmark.stats['mean'] / anchor:.1f}x the anchor" if anchor and benchmark.stats else ""


def test_twilio_inbound_frame(benchmark) -> None:
    """A Twilio media frame: JSON decode + base64 + mu-law decode + the engine input pipeline."""
    frame = _media_frame()
    pipe = InputPipeline(provider_rate=24000, frame_ms=20)

    def run() -> None:
        media = tp.decode(frame)
        assert isinstance(media, tp.Media)
        pipe.push(ulaw_decode(media.payload), 8000, 1)

    benchmark(run)
    if benchmark.stats:
        print(f"\ntwilio in: {benchmark.stats['mean'] * 1e6:.1f} us per 20 ms frame{_ratio(benchmark)} "
              f"(+ 8k->24k resampler delay {pipe.delay_ms:.2f} ms)")


def test_twilio_outbound_frame(benchmark) -> None:
    """20 ms of reply at 8 kHz: mu-law encode + the media and mark messages."""
    pcm = tone_pcm8k(20)
    benchmark(lambda: (tp.encode_media("MZ1", ulaw_encode(pcm)), tp.encode_mark("MZ1", "ve:1234.000")))
    if benchmark.stats:
        print(f"\ntwilio out: {benchmark.stats['mean'] * 1e6:.1f} us per 20 ms frame{_ratio(benchmark)}")


def test_browser_inbound_frame(benchmark) -> None:
    """20 ms of 48 kHz page audio (binary frame, no decoding) through the engine input pipeline."""
    pcm = bytes(48000 * 2 // 50)
    pipe = InputPipeline(provider_rate=24000, frame_ms=20)
    benchmark(lambda: pipe.push(pcm, 48000, 1))
    if benchmark.stats:
        print(f"\nbrowser in: {benchmark.stats['mean'] * 1e6:.1f} us per 20 ms frame{_ratio(benchmark)} "
              f"(+ 48k->24k resampler delay {pipe.delay_ms:.2f} ms)")


def test_first_audio_added_latency_twilio(benchmark) -> None:
    """First reply delta sent by the (fake) service -> first media frame at the caller, p50."""

    async def scenario() -> list[float]:
        latencies = []
        async with FakeRealtimeServer(FakeServerConfig(responses=["Hello caller."], speed=20.0)) as fake:
            deltas = _stamp_sent(fake, "response.output_audio.delta")
            async for c in _twilio_calls(fake):
                call_start = len(deltas)
                await c.wait_media_ms(1, timeout=20)
                latencies.append(c.received.media_at[0] - deltas[call_start])
        return latencies

    latencies = benchmark.pedantic(lambda: asyncio.run(scenario()), rounds=1, iterations=1)
    p50 = statistics.median(latencies) * 1e3
    benchmark.extra_info.update(first_audio_added_ms_p50=p50)
    print(f"\ntwilio first audio added (service delta -> caller frame; the 60 ms prebuffer is met by the "
          f"first 100 ms delta, then the 20 ms playback tick): "
          f"p50 {p50:.1f} ms over {len(latencies)} calls")


_READY = re.compile(r"listening on http://127\.0\.0\.1:(\d+) .*pid (\d+)\)")


@pytest.mark.parametrize("calls", [20])
def test_calls_per_core(benchmark, calls: int) -> None:
    """``voiceengine serve`` (own process) with concurrent real-time calls; its CPU per call-second."""
    import psutil

    async def scenario() -> tuple[float, float]:
        fake = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voiceengine.cli", "fake-server", "--port", "0", "--server-speed", "1",
            stdout=asyncio.subprocess.PIPE)
        assert fake.stdout is not None
        fake_line = (await fake.stdout.readline()).decode()
        fake_url = re.search(r"(ws://\S+)", fake_line).group(1)  # type: ignore[union-attr]
        serve = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voiceengine.cli", "serve", "--provider", "openai", "--url", fake_url,
            "--port", "0", stdout=asyncio.subprocess.PIPE, env={**os.environ, "OPENAI_API_KEY": ""})
        assert serve.stdout is not None
        match = _READY.search((await serve.stdout.readline()).decode())
        assert match is not None
        port, pid = int(match.group(1)), int(match.group(2))
        proc = psutil.Process(pid)
        try:
            cpu0 = sum(proc.cpu_times()[:2])
            t0 = time.perf_counter()
            user = tone_pcm8k(1500) + silence_pcm8k(1000)

            async def call(n: int) -> float:
                start = time.perf_counter()
                async with TwilioCallClient(f"ws://127.0.0.1:{port}/twilio", call_sid=f"CA{n}") as c:
                    for _ in range(2):  # two turns, audio paced in real time
                        await c.send_audio(user, pace=1.0)
                        await c.send_audio(silence_pcm8k(2000), pace=1.0)  # the reply plays meanwhile
                    await c.stop()
                return time.perf_counter() - start

            seconds = await asyncio.gather(*(call(n) for n in range(calls)))
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            wall = time.perf_counter() - t0
            assert wall > 0
            return cpu, sum(seconds)
        finally:
            for p in (serve, fake):
                p.terminate()
                await p.wait()

    cpu, call_seconds = benchmark.pedantic(lambda: asyncio.run(scenario()), rounds=1, iterations=1)
    per_call_second = cpu / call_seconds
    benchmark.extra_info.update(cpu_s_per_call_s=per_call_second, calls_per_core=1 / per_call_second)
    print(f"\nserve: {per_call_second * 1e3:.1f} ms CPU per call-second ({calls} concurrent Twilio calls, "
          f"{call_seconds:.0f} call-seconds) -> ~{1 / per_call_second:.0f} concurrent calls per core")


def test_barge_in_clear_latency_twilio(benchmark) -> None:
    """The service signals speech during a reply -> the caller receives ``clear``, p50."""

    async def scenario() -> list[float]:
        latencies: list[float] = []
        long_reply = " ".join(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"] * 4)
        async with FakeRealtimeServer(FakeServerConfig(responses=[long_reply], speed=20.0)) as fake:
            started = _stamp_sent(fake, "input_audio_buffer.speech_started")
            async for c in _twilio_calls(fake):
                await c.wait_media_ms(500, timeout=20)
                await c.send_audio(tone_pcm8k(200))
                while not c.received.clears:
                    await asyncio.sleep(0.001)
                latencies.append(c.received.clears[0] - started[-1])
        return latencies

    latencies = benchmark.pedantic(lambda: asyncio.run(scenario()), rounds=1, iterations=1)
    p50 = statistics.median(latencies) * 1e3
    benchmark.extra_info.update(clear_latency_ms_p50=p50)
    print(f"\ntwilio barge-in: service speech_started -> caller receives clear: p50 {p50:.2f} ms, "
          f"max {max(latencies) * 1e3:.2f} ms over {len(latencies)} calls")
