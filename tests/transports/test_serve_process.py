"""``voiceengine serve`` as a process: ``--workers 2`` serves calls from both, SIGTERM drains."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path


import pytest
import websockets
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from http_get import http_get
from twilio_client import TwilioCallClient, silence_pcm8k, tone_pcm8k
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig

from transport_helpers import eventually

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(not hasattr(__import__("socket"), "SO_REUSEPORT"),
                                                           reason="SO_REUSEPORT is not available")]

_READY = re.compile(r"listening on http://127\.0\.0\.1:(\d+) .*pids? ([\d ]+)\)")


class ServeProcess:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, pids: list[int]) -> None:
        self.proc = proc
        self.port = port
        self.pids = pids
        self.url = f"ws://127.0.0.1:{port}/twilio"

    async def output(self) -> str:
        assert self.proc.stdout is not None
        return (await self.proc.stdout.read()).decode()


async def _start(fake_url: str, *args: str, env: dict[str, str] | None = None) -> ServeProcess:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voiceengine.cli", "serve", "--provider", "openai", "--url", fake_url,
        "--port", "0", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {}), "OPENAI_API_KEY": ""})
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    match = _READY.search(line)
    if match is None:
        proc.kill()
        await proc.wait()
        assert proc.stderr is not None
        raise AssertionError(f"serve did not start: {line!r} {(await proc.stderr.read()).decode()[-2000:]}")
    return ServeProcess(proc, int(match.group(1)), [int(p) for p in match.group(2).split()])


@pytest.fixture
async def fake() -> AsyncIterator[FakeRealtimeServer]:
    async with FakeRealtimeServer(FakeServerConfig(responses=["Hello caller."], speed=20.0)) as server:
        yield server


async def _stop(server: ServeProcess) -> int:
    if server.proc.returncode is None:
        server.proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(server.proc.wait(), 60)
    finally:
        if server.proc.returncode is None:
            server.proc.kill()
            await server.proc.wait()
        await server.output()
        assert server.proc.stderr is not None
        await server.proc.stderr.read()


async def _short_call(url: str, n: int) -> None:
    async with TwilioCallClient(url, call_sid=f"CA{n}", stream_sid=f"MZ{n}") as client:
        await client.send_audio(tone_pcm8k(60))
        await client.stop()
        assert await client.wait_closed() == 1000


def _calls_by_pid(metrics_dir: Path) -> dict[int, float]:
    calls: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            if '"voiceengine_calls_total"' in key or '"voiceengine_calls"' in key:
                calls[pid] = calls.get(pid, 0) + value
    return calls


async def test_two_workers_serve_calls_from_both_processes(fake: FakeRealtimeServer, tmp_path: Path) -> None:
    server = await _start(fake.url, "--workers", "2", env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    try:
        assert len(set(server.pids)) == 2
        calls = 24
        await asyncio.gather(*(_short_call(server.url, n) for n in range(calls)))
        by_pid = _calls_by_pid(tmp_path)
        assert set(by_pid) == set(server.pids), by_pid  # both workers took calls
        assert sum(by_pid.values()) == calls
        # /metrics on either worker reports the sum over both
        text = (await http_get(server.port, "/metrics"))[2].decode()
        totals = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
                  if s.labels.get("transport") == "twilio"}
        assert totals["voiceengine_calls_total"] == calls
    finally:
        assert await _stop(server) == 0


async def test_sigterm_drains_running_calls_then_exits(fake: FakeRealtimeServer) -> None:
    server = await _start(fake.url, "--drain-timeout", "30")
    try:
        async with TwilioCallClient(server.url) as running:
            await running.send_audio(tone_pcm8k(60))
            await fake.wait_for_session(timeout=20)
            server.proc.send_signal(signal.SIGTERM)
            async def refusing() -> bool:
                return (await http_get(server.port, "/readyz"))[0] == 503
            await eventually(refusing, interval=0.02)
            assert (await http_get(server.port, "/readyz"))[0] == 503
            with pytest.raises(websockets.InvalidStatus) as refused:
                await websockets.connect(server.url)
            assert refused.value.response.status_code == 503
            # the running call still converses during the drain
            await running.send_audio(tone_pcm8k(400) + silence_pcm8k(800))
            await fake.wait_for(lambda e: e["type"] == "response.done", timeout=20)
            await running.wait_media_ms(100)
            assert server.proc.returncode is None
            await running.stop()
            assert await running.wait_closed() == 1000
        assert await asyncio.wait_for(server.proc.wait(), 30) == 0
        assert "drained" in await server.output()
    finally:
        await _stop(server)


async def test_sigterm_closes_calls_that_outlast_the_drain_timeout(fake: FakeRealtimeServer) -> None:
    server = await _start(fake.url, "--drain-timeout", "0.5")
    try:
        async with TwilioCallClient(server.url) as running:
            await running.send_audio(tone_pcm8k(60))
            await fake.wait_for_session(timeout=20)
            server.proc.send_signal(signal.SIGTERM)
            assert await running.wait_closed(timeout=30) == 1001
        assert await asyncio.wait_for(server.proc.wait(), 30) == 0
        await eventually(lambda: not fake.connections)
        assert not fake.connections  # the provider session ended with the call
    finally:
        await _stop(server)


async def test_unavailable_provider_fails_at_start_with_one_line(fake: FakeRealtimeServer) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voiceengine.cli", "serve", "--provider", "no-such-provider", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert err.decode().count("\n") == 1 and "not available in this build" in err.decode()


