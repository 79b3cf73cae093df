"""Client RSS per live session: the slope of process RSS from 10 to 60 live VoiceEngine sessions.

Each count runs in a fresh child process (so one count's heap never flatters the next):
the child starts the fake Realtime server in its own process (``benchmarks.soak_server``,
so the server's heap stays out of the figure), opens N :class:`VoiceEngine` sessions with
the default engine config (20 ms frames, real-time playback, the default playback buffer),
and streams paced 20 ms frames in each: 1 s of voiced tone then 0.8 s of silence, so the
server's VAD ends a turn and a reply's audio comes back and is played. After ``--seconds``
with all sessions live it reads its RSS (``VmRSS``). The slope is
``(RSS(60) - RSS(10)) / 50`` MB per session.

``--tree PATH`` (repeatable) measures another checkout too (its ``voiceengine`` and its
``benchmarks.soak_server``, put first on ``PYTHONPATH``; its extensions built in place);
trees and counts are interleaved in each repetition so load drifts hit every candidate.

    python benchmarks/session_memory.py                          # this tree, 10 and 60 sessions
    python benchmarks/session_memory.py --tree /tmp/rss_old --tree . --repeat 3
    python benchmarks/session_memory.py --tracemalloc 5          # + top allocation sites per session
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import statistics
import subprocess  # nosec B404 - runs this same script in a child interpreter
import sys
import time
from pathlib import Path
from typing import Any

RATE = 24000
FRAME_MS = 20
FRAME_BYTES = RATE * 2 * FRAME_MS // 1000
SPEECH_FRAMES = 50  # 1 s of tone
SILENCE_FRAMES = 40  # 0.8 s: the fake server's VAD ends the turn and replies


@functools.cache
def _speech() -> memoryview:
    """The tone every session sends, built once: shared, so not per-session memory. Imported
    here because only the child runs with the tree on ``PYTHONPATH``."""
    from benchmarks.voiced_tone import voiced_tone

    return memoryview(voiced_tone(RATE, SPEECH_FRAMES * FRAME_BYTES // 2))


_SILENCE = memoryview(bytes(FRAME_BYTES))


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


async def _session(index: int, url: str, stop: asyncio.Event, counts: dict[str, int]) -> None:
    from voiceengine.engine import VoiceEngine, VoiceEngineConfig
    from voiceengine.providers.openai import OpenAIProvider
    from voiceengine.providers.openai.config import OpenAIConfig

    provider = OpenAIProvider(OpenAIConfig(api_key="sk-bench-not-a-key", url=url, turn_detection="server_vad",
                                           ping_interval_s=None))
    engine = VoiceEngine(provider, VoiceEngineConfig(input_sample_rate=RATE))

    @engine.on_response_done
    def _done(_info: Any) -> None:
        counts["replies"] += 1

    speech = _speech()
    silence = _SILENCE
    loop = asyncio.get_running_loop()
    await engine.connect()
    counts["connected"] += 1
    try:
        await asyncio.sleep((index % 50) * FRAME_MS / 1000 / 50 * 10)  # spread the sessions' frame edges
        t0, sent = loop.time(), 0
        while not stop.is_set():
            k = sent % (SPEECH_FRAMES + SILENCE_FRAMES)
            frame = speech[k * FRAME_BYTES:(k + 1) * FRAME_BYTES] if k < SPEECH_FRAMES else silence
            await engine.send_audio(frame)
            sent += 1
            counts["frames"] += 1
            delay = t0 + sent * FRAME_MS / 1000 - loop.time()  # paced on the schedule, no drift
            if delay > 0:
                await asyncio.sleep(delay)
    finally:
        await engine.close()


async def _child(sessions: int, seconds: float, top: int) -> dict[str, Any]:
    from benchmarks.soak_server import ServerProcess
    import voiceengine

    async with ServerProcess(virtual_clock=False) as server:
        import tracemalloc
        gc.collect()
        base = _rss_mb()
        if top:
            tracemalloc.start(8)
        stop = asyncio.Event()
        counts = {"replies": 0, "connected": 0, "frames": 0}
        tasks = [asyncio.create_task(_session(i, server.url, stop, counts)) for i in range(sessions)]
        while counts["connected"] < sessions and not any(t.done() for t in tasks):
            await asyncio.sleep(0.1)  # the clock starts once every session is live
        counts["frames"] = counts["replies"] = 0
        await asyncio.sleep(seconds)
        gc.collect()
        live = _rss_mb()
        snapshot = tracemalloc.take_snapshot() if top else None
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    out: dict[str, Any] = {"sessions": sessions, "base_mb": base, "live_mb": live, "failures": failures[:3],
                           "voiceengine": os.path.dirname(voiceengine.__file__), **counts}
    if snapshot is not None:
        stats = snapshot.statistics("lineno")
        out["top"] = [(str(s.traceback[0]), s.size / sessions / 1024) for s in stats[:top]]
    return out


def _run_child(tree: Path, sessions: int, seconds: float, top: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--sessions", str(sessions),
           "--seconds", str(seconds), "--tracemalloc", str(top)]
    done = subprocess.run(cmd, env=env, cwd=str(tree.resolve()), capture_output=True, text=True,  # nosec B603
                          timeout=seconds + 180, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child failed ({tree}, {sessions} sessions):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", type=Path, help="checkout(s) to measure (default: this one)")
    parser.add_argument("--counts", type=int, nargs=2, default=(10, 60), metavar=("LOW", "HIGH"))
    parser.add_argument("--seconds", type=float, default=12.0, help="time with all sessions live before reading RSS")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="TOP",
                        help="also list the TOP allocation sites (KiB per session, at the high count)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args.sessions, args.seconds, args.tracemalloc))))
        return
    trees = args.tree or [Path(__file__).resolve().parent.parent]
    low, high = args.counts
    slopes: dict[Path, list[float]] = {tree: [] for tree in trees}
    for rep in range(args.repeat):
        for tree in trees:
            runs = {n: _run_child(tree, n, args.seconds, args.tracemalloc if n == high else 0) for n in (low, high)}
            slope = (runs[high]["live_mb"] - runs[low]["live_mb"]) / (high - low)
            slopes[tree].append(slope)
            for n, r in runs.items():
                print(f"rep {rep} {tree} n={n}: live {r['live_mb']:.1f} MB (base {r['base_mb']:.1f}), "
                      f"connected {r['connected']}, replies {r['replies']}, frames {r['frames']}"
                      + (f", FAILURES {r['failures']}" if r["failures"] else "") + f" [{r['voiceengine']}]")
                for site, kib in r.get("top", []):
                    print(f"    {kib:9.1f} KiB/session  {site}")
            print(f"rep {rep} {tree}: slope {slope:.3f} MB/session ({low} -> {high})", flush=True)
    for tree, values in slopes.items():
        print(f"{tree}: RSS slope mean {statistics.fmean(values):.3f} MB/session, "
              f"median {statistics.median(values):.3f}, runs {[round(v, 3) for v in values]}")


if __name__ == "__main__":
    t_start = time.monotonic()
    main()
    if "--child" not in sys.argv:
        print(f"({time.monotonic() - t_start:.0f} s)")
