"""Client CPU per second of conversation audio: this tree against an older one, same run.

N engines (:class:`VoiceEngine` over :class:`OpenAIProvider`) stream 20 ms input frames
paced in real time to the fake Realtime server, which runs in its own process and answers
every turn (server VAD) with 20 ms audio deltas paced in real time: 20 ms framing both
ways. Each client runs in its own process, so its CPU (``time.process_time`` over the
measured window) is the client's alone. The candidate (this tree) and the anchor (an
older checkout, e.g. the base of this branch: ``git worktree add --detach /tmp/cpu_old
<commit>`` then ``python setup.py build_ext --inplace`` there) alternate, A B A B ...,
against the same server; the ratio is new / old of the mean CPU per audio second.

Run:  VOICEENGINE_ANCHOR_TREE=/tmp/cpu_old pytest benchmarks/bench_outbound.py --benchmark-enable -q -s
 or:  python benchmarks/bench_outbound.py --anchor /tmp/cpu_old --sessions 50 --seconds 8 --reps 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

HERE_TREE = Path(__file__).resolve().parent.parent
RATE = 24000
FRAME_MS = 20
FRAME_BYTES = RATE * 2 * FRAME_MS // 1000
SPEECH_MS = 1200  # then SILENCE_MS of silence: the server's VAD commits, the reply streams
SILENCE_MS = 1800
WARMUP_S = 2.0


# ------------------------------------------------------------------ the server process
def _serve() -> None:
    """Child: the fake server, 20 ms deltas in real time; prints its URL, runs until stdin closes."""
    from voiceengine.testing import FakeRealtimeServer, FakeServerConfig

    async def main() -> None:
        config = FakeServerConfig(speed=1.0, chunk_ms=FRAME_MS, max_recorded_events=1,
                                  responses=("Sure, here is a short answer to that question.",))
        async with FakeRealtimeServer(config) as server:
            print(server.url, flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


# ------------------------------------------------------------------ the client process
def _client(url: str, sessions: int, seconds: float) -> None:
    """Child: ``sessions`` engines streaming paced audio; prints CPU and audio seconds (JSON)."""
    # (this file runs as a script: its own directory is first on sys.path, whichever
    # tree's voiceengine PYTHONPATH selects)
    from voiced_tone import voiced_tone

    from voiceengine.engine import VoiceEngine, VoiceEngineConfig
    from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider

    period = SPEECH_MS + SILENCE_MS
    turn = voiced_tone(RATE, RATE * SPEECH_MS // 1000) + bytes(2 * RATE * SILENCE_MS // 1000)
    frames = [turn[i:i + FRAME_BYTES] for i in range(0, len(turn), FRAME_BYTES)]

    async def main() -> None:
        engines = []
        for _ in range(sessions):
            provider = OpenAIProvider(OpenAIConfig(api_key="bench", url=url))
            engine = VoiceEngine(provider, VoiceEngineConfig(playback_speed=None, prebuffer_ms=0))
            await engine.connect()
            engines.append(engine)
        loop = asyncio.get_running_loop()
        start = loop.time()
        ticks = int((WARMUP_S + seconds) * 1000 / FRAME_MS)
        warm_tick = int(WARMUP_S * 1000 / FRAME_MS)
        cpu0 = wall0 = 0.0
        before = (0, 0)
        for tick in range(ticks):
            if tick == warm_tick:
                cpu0, wall0 = time.process_time(), time.perf_counter()
                before = (sum(e.metrics.bytes_sent for e in engines), sum(e.metrics.bytes_received for e in engines))
            for n, engine in enumerate(engines):
                # sessions offset in their turn cycle, so replies do not all start at once
                await engine.send_audio(frames[(tick + n * 7) % len(frames)], sample_rate=RATE)
            await asyncio.sleep(max(0.0, start + (tick + 1) * FRAME_MS / 1000 - loop.time()))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        sent = sum(e.metrics.bytes_sent for e in engines) - before[0]
        received = sum(e.metrics.bytes_received for e in engines) - before[1]
        for engine in engines:
            await engine.close()
        import voiceengine

        print(json.dumps({"tree": voiceengine.__file__, "cpu_s": cpu, "wall_s": wall, "audio_in_s": sent / (2 * RATE),
                          "audio_out_s": received / (2 * RATE), "period_ms": period}), flush=True)

    asyncio.run(main())


# ------------------------------------------------------------------ the parent
class _Server:
    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, cwd=HERE_TREE,
                                        env={**os.environ, "PYTHONPATH": str(HERE_TREE)})
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("ws://127.0.0.1:"):
            self.close()
            raise RuntimeError("fake server did not start")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def run_client(tree: Path, url: str, sessions: int, seconds: float) -> dict[str, float]:
    """One client run with ``tree``'s voiceengine; CPU ms per second of audio (in + out)."""
    script = Path(__file__).resolve()
    out = subprocess.run([sys.executable, str(script), "--client", url, str(sessions), str(seconds)],
                         cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
                         timeout=seconds * 10 + 120, check=True)
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    audio_s = figures["audio_in_s"] + figures["audio_out_s"]
    figures["cpu_ms_per_audio_s"] = figures["cpu_s"] * 1000 / audio_s
    return figures


def compare(anchor: Path, sessions: int, seconds: float, reps: int) -> dict[str, Any]:
    """Interleaved A/B (anchor first, then alternating order) against one server process."""
    server = _Server()
    runs: dict[str, list[dict[str, float]]] = {"new": [], "old": []}
    try:
        for rep in range(reps):
            order = [("old", anchor), ("new", HERE_TREE)]
            for name, tree in order if rep % 2 == 0 else reversed(order):
                runs[name].append(run_client(tree, server.url, sessions, seconds))
    finally:
        server.close()
    new = [r["cpu_ms_per_audio_s"] for r in runs["new"]]
    old = [r["cpu_ms_per_audio_s"] for r in runs["old"]]
    return {"sessions": sessions, "new_ms": new, "old_ms": old,
            "ratio_mean": statistics.fmean(new) / statistics.fmean(old),
            "ratio_median": statistics.median(new) / statistics.median(old),
            "audio_s_per_run": runs["new"][0]["audio_in_s"] + runs["new"][0]["audio_out_s"]}


def _report(result: dict[str, Any]) -> str:
    fmt = ", ".join
    return (f"{result['sessions']} sessions: new {fmt(f'{v:.2f}' for v in result['new_ms'])} ms CPU/audio s; "
            f"old {fmt(f'{v:.2f}' for v in result['old_ms'])}; ratio new/old {result['ratio_mean']:.3f} "
            f"(median {result['ratio_median']:.3f}); {result['audio_s_per_run']:.0f} audio s per run")


@pytest.mark.parametrize("sessions", [1, 50])
def test_outbound_cpu_against_anchor(benchmark: Any, sessions: int) -> None:
    anchor = os.environ.get("VOICEENGINE_ANCHOR_TREE")
    if not anchor or not Path(anchor, "voiceengine").is_dir():
        pytest.skip("set VOICEENGINE_ANCHOR_TREE to a built checkout of the anchor commit")
    result = benchmark.pedantic(compare, args=(Path(anchor), sessions, 6.0, 3), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print("\n" + _report(result))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        _serve()
    elif sys.argv[1:2] == ["--client"]:
        _client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--anchor", type=Path, required=True)
        parser.add_argument("--sessions", type=int, nargs="+", default=[50])
        parser.add_argument("--seconds", type=float, default=8.0)
        parser.add_argument("--reps", type=int, default=3)
        args = parser.parse_args()
        for n in args.sessions:
            print(_report(compare(args.anchor, n, args.seconds, args.reps)), flush=True)
