"""A small soak (benchmarks/soak.py) in the normal suite: 20 sessions, 5 at a time, 3 minutes of audio.

Asserts what the full soak asserts except the RSS bound (a few MB of allocator noise at this
size): every session ends sane, audio accounting balances, nothing is left running, every
session crosses the 60-minute limit on virtual time, faults/barge-ins/tool calls happen.
The fake server runs in a child process (benchmarks/soak_server.py), as in the full soak.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from benchmarks.soak import SoakConfig, format_report, run_soak
from benchmarks.soak_session import FRAME_MS, plan_sessions

SMALL = SoakConfig(sessions=20, concurrency=5, audio_hours=0.05, seed=7, fault_every=5,
                   warmup_sessions=5, checkpoint_every=5)


def test_soak_plans_add_up_to_the_requested_audio() -> None:
    plans = plan_sessions(sessions=1000, audio_hours=24.0, seed=1)
    assert sum(p.audio_ms for p in plans) == 24 * 3600 * 1000
    lengths = sorted(p.audio_ms for p in plans)
    assert lengths[0] < 86_400 < lengths[-1]  # varied around the 86.4 s mean
    assert all(s % FRAME_MS == 0 and q % FRAME_MS == 0 for p in plans for s, q in p.turns)
    assert {p.fault for p in plans} == {None, "close_1006", "session_expired"}
    assert any(p.manual for p in plans) and any(not p.manual for p in plans)
    assert plans == plan_sessions(sessions=1000, audio_hours=24.0, seed=1)  # seeded, reproducible


@pytest.fixture(scope="module")
def small_report():
    import asyncio

    return asyncio.run(run_soak(SMALL))


def test_soak_small_sessions_all_end_sane(small_report) -> None:
    r = small_report
    assert r.sessions_done == SMALL.sessions, format_report(r)
    assert r.sessions_failed == 0, r.failures
    assert r.unbalanced == [], format_report(r)
    assert r.leftover_tasks == []
    assert r.logged_errors == {}
    assert r.problems == [] or all(p.startswith("RSS grew") for p in r.problems), r.problems


def test_soak_small_streams_exactly_the_planned_audio(small_report) -> None:
    r = small_report
    assert r.audio_s == pytest.approx(SMALL.audio_hours * 3600)
    # the server (another process) really decoded the audio; what it lacks was in flight
    # when a connection dropped (paced audio: a fraction of a second per fault)
    assert 0.9 * r.audio_s <= r.server_decoded_audio_s <= r.audio_s
    assert r.server_handshakes >= SMALL.sessions and r.server_cpu_s > 0


def test_soak_small_exercises_turns_faults_and_the_session_limit(small_report) -> None:
    r = small_report
    assert r.responses > SMALL.sessions
    assert r.interrupts > 0 and r.function_calls > 0
    assert r.faults_injected > 0
    assert r.epochs > 0 and r.sessions_without_epoch == 0
    assert r.phases.get("reconnecting", 0) > 0
    assert 0 < r.phases.get("restored", 0) <= r.phases.get("reconnecting", 0)  # attempts >= restores
    assert r.phases.get("gave_up", 0) == 0 and r.phases.get("failed", 0) == 0


def test_soak_small_reports_rss_and_loop_lag(small_report) -> None:
    r = small_report
    assert math.isfinite(r.rss_growth_mb)  # reported; bounded only in the full soak
    assert r.rss_start_mb > 0 and r.rss_end_mb > 0 and r.rss_peak_mb >= r.rss_start_mb
    assert len(r.rss_checkpoints) >= 4
    assert r.lag["samples"] > 0 and r.lag["p50_ms"] <= r.lag["p99_ms"] <= r.lag["max_ms"]
    assert r.cpu_s > 0 and r.wall_s > 0 and r.audio_s_per_s > 0
    assert r.to_json()["ok"] is r.ok


async def test_soak_server_process_failure_is_typed_and_leaves_nothing() -> None:
    from benchmarks.soak_server import ServerProcess

    async with ServerProcess(virtual_clock=True) as server:
        assert server.url.startswith("ws://127.0.0.1:")
        assert await server.inject("sess_nobody", "close_1006") is False  # no live connection: skipped
        assert await server.audio_received(["sess_nobody"]) == (0, 0)
        server._proc.kill()  # the child dies mid-run
        with pytest.raises(ConnectionError):
            async with asyncio.timeout(10):
                await server.audio_received(["sess_nobody"])
    assert server._proc is None and server._pipe is None  # reaped and closed


def test_soak_small_reads_the_live_heap_after_every_wave(small_report) -> None:
    r = small_report
    assert len(r.heap_checkpoints) == len(r.rss_checkpoints)
    assert all(blocks > 0 and mb > 0 for _, blocks, mb in r.heap_checkpoints)
    assert math.isfinite(r.py_block_growth) and math.isfinite(r.malloc_growth_mb)


def _quiet_sample(done: int, blocks: int, malloc_mb: float, trimmed_mb: float = 80.0):
    from benchmarks.soak_probes import RssSample

    return RssSample(t_s=float(done), done=done, live=0, rss_mb=trimmed_mb + 20, collected=True,
                     trimmed_mb=trimmed_mb, py_blocks=blocks, malloc_mb=malloc_mb)


@pytest.mark.parametrize("leak, problem", [
    ("blocks", "live Python heap grew 3000 blocks"),
    ("malloc", "live C heap grew 2.00 MB"),
    ("none", None),
])
def test_soak_fails_on_live_heap_growth_not_on_an_arena_step(leak: str, problem: str | None) -> None:
    """The leak check reads the live heap: a steady climb of live blocks or malloc'd bytes
    fails the run; an RSS step with a flat live heap (a pymalloc arena high-water) does not."""
    from benchmarks.soak import SoakReport, _summarize, _Tally
    from benchmarks.soak_probes import LagMonitor, RssProbe

    cfg = SoakConfig(sessions=1000, warmup_sessions=100, checkpoint_every=100)
    samples = []
    for wave in range(10):
        blocks = 250_000 + (wave * 3000 // 9 if leak == "blocks" else 0)
        malloc_mb = 9.0 + (wave * 0.2222 if leak == "malloc" else 0.0)
        trimmed = 85.0 if wave < 5 else 90.5  # the CI run's +5.5 MB arena step
        samples.append(_quiet_sample(100 * (wave + 1), blocks, malloc_mb, trimmed))
    tally = _Tally()
    tally.done = cfg.sessions
    report = SoakReport(config={})
    _summarize(report, cfg, tally, [(s.done, s.trimmed_mb or 0.0) for s in samples], samples,
               RssProbe(), LagMonitor())
    assert report.rss_growth_mb == pytest.approx(5.5)
    assert not any(p.startswith("RSS grew") for p in report.problems)
    heap_problems = [p for p in report.problems if p.startswith("live")]
    if problem is None:
        assert heap_problems == [] and report.py_block_growth == 0 and report.malloc_growth_mb == 0
    else:
        assert len(heap_problems) == 1 and heap_problems[0].startswith(problem), report.problems
