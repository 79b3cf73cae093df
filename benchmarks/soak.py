"""Soak: many VoiceEngine sessions through the fake Realtime server.

::

    python -m benchmarks.soak                      # 1000 sessions, 24 h of audio, 50 at a time
    python -m benchmarks.soak --sessions 20 --concurrency 5 --audio-hours 0.1 --json out.json

Each session is a :class:`~voiceengine.engine.VoiceEngine` (unpaced playback) over an
:class:`~voiceengine.providers.openai.OpenAIProvider` connected to one
:class:`~voiceengine.testing.FakeRealtimeServer` (``speed=inf``: replies are not paced)
on 127.0.0.1. The server runs in a child process (``benchmarks/soak_server.py``), so the
RSS and loop-lag figures are those of the process running the library, as in an app.
Sessions stream their share of the audio at ``--speed`` x real time (20; ``inf``: as fast
as the stack accepts it), in turns (manual commits or server VAD; a manual-mode user waits
for the reply before the next turn), get replies, some barge-ins, some function calls
and some injected faults (a 1006 drop or a ``session_expired``), and each one crosses the
60-minute session limit on a :class:`~voiceengine.clock.VirtualClock` (the providers'
proactive recycle; the server's expiry runs on a copy in the child moved step by step with
it), so the long timers run in milliseconds.

Measured: memory. Sessions run in waves (the warm-up, then ``--checkpoint-every`` each; a
wave ends before the next starts), and after each wave, with no session alive and after
``gc.collect()``, the runner reads the live heap (live pymalloc blocks,
``sys.getallocatedblocks()``, and live C-heap bytes, glibc ``mallinfo2``) and RSS after
glibc ``malloc_trim(0)`` (untrimmed figures are reported too). Growth = the highest reading
of the last half of the waves minus the warm-up reading. The live-heap figures are the leak
check; RSS also follows allocator high-water marks. Peak RSS from a 1 s sampler;
event-loop lag (a 10 ms sleeper's overshoot), sessions/s, audio s/s, CPU seconds, errors,
reconnect/restore counts, audio accounting per session, tasks left at the end.

Exit status 1 when live pymalloc blocks grow by more than ``--max-block-growth`` (2000),
live C-heap bytes by more than ``--max-malloc-growth-mb`` (1), trimmed RSS by more than
``--max-growth-mb`` (16), a session failed, an audio
accounting is unbalanced or a task is left behind; 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import psutil  # type: ignore[import-untyped]

from benchmarks.soak_probes import ClockDriver, LagMonitor, RssProbe, RssSample
from benchmarks.soak_session import SessionPlan, SessionResult, plan_sessions, provider_takes_clock, run_session
from benchmarks.soak_server import ServerProcess
from voiceengine.clock import VirtualClock

__all__ = ["SoakConfig", "SoakReport", "run_soak", "main"]

@dataclass(frozen=True, slots=True, kw_only=True)
class SoakConfig:
    """Soak settings (see the module docstring and ``--help``)."""

    sessions: int = 1000
    concurrency: int = 50
    audio_hours: float = 24.0
    seed: int = 1
    fault_every: int = 10
    warmup_sessions: int | None = None  # None: min(100, sessions // 5)
    checkpoint_every: int | None = None  # None: max(1, sessions // 10): sessions per wave after warm-up
    speed: float = 20.0  # each session's audio, x real time (math.inf: as fast as accepted)
    # Leak bounds after the warm-up. The live-heap ones are the precise check: live pymalloc
    # blocks and live C-heap bytes move only with what the process still holds. RSS, even
    # after malloc_trim, also follows pymalloc's arena high-water, which rises in 4-8 MB steps
    # at random waves with nothing held (seen: +5.47 MB in one CI run, while the live heap
    # stayed flat), so its bound is a catch-all for memory outside both heaps.
    max_growth_mb: float = 16.0
    max_block_growth: int = 2000
    max_malloc_growth_mb: float = 1.0
    virtual_clock: bool = True
    epochs: bool = True  # cross the 60-minute limit in every session

    @property
    def warmup(self) -> int:
        return self.warmup_sessions if self.warmup_sessions is not None else min(100, self.sessions // 5)

    @property
    def checkpoint(self) -> int:
        return self.checkpoint_every if self.checkpoint_every is not None else max(1, self.sessions // 10)


@dataclass(slots=True, kw_only=True)
class SoakReport:
    """Figures of one soak run (``to_json()`` for the JSON file)."""

    config: dict[str, Any]
    wall_s: float = 0.0
    cpu_s: float = 0.0
    sessions_done: int = 0
    sessions_failed: int = 0
    failures: list[str] = field(default_factory=list)
    audio_s: float = 0.0
    server_decoded_audio_s: float = 0.0
    server_ignored_audio_s: float = 0.0
    sessions_per_s: float = 0.0
    audio_s_per_s: float = 0.0
    rss_start_mb: float = 0.0
    rss_warmup_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_growth_mb: float = math.nan
    rss_raw_growth_mb: float = math.nan
    rss_warmup_trimmed_mb: float = math.nan
    rss_end_trimmed_mb: float = math.nan
    rss_checkpoints: list[tuple[int, float]] = field(default_factory=list)
    py_block_growth: float = math.nan  # live pymalloc blocks, last half's highest vs warm-up
    malloc_growth_mb: float = math.nan  # live C-heap bytes (mallinfo2), same comparison
    heap_checkpoints: list[tuple[int, int, float]] = field(default_factory=list)  # (done, blocks, malloc MB)
    lag: dict[str, float] = field(default_factory=dict)
    unbalanced: list[int] = field(default_factory=list)
    ledger_active_sessions: int = 0
    leftover_tasks: list[str] = field(default_factory=list)
    phases: dict[str, int] = field(default_factory=dict)
    planned_restores: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)
    responses: int = 0
    responses_failed: int = 0
    interrupts: int = 0
    function_calls: int = 0
    faults_injected: int = 0
    epochs: int = 0
    sessions_without_epoch: int = 0
    limit_retries: int = 0
    flow_waits: int = 0
    logged_errors: dict[str, int] = field(default_factory=dict)
    provider_clock: bool = False
    server_handshakes: int = 0
    server_cpu_s: float = math.nan
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


class _ErrorCounter(logging.Handler):
    """Counts ERROR records of the library (a handler that raised, a task that failed): each
    one is a bug the soak must report even when the session itself carried on."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = f"{record.name}: {record.getMessage()[:80]}"
        self.counts[key] = self.counts.get(key, 0) + 1


# SessionResult counters reported as they are, summed over the sessions
_COUNTED = ("responses", "responses_failed", "interrupts", "function_calls", "faults_injected",
            "planned_restores", "limit_retries", "flow_waits")
_SUMMED = ("audio_bytes", "server_decoded_bytes", "server_ignored_bytes", *_COUNTED)
_MAX_FAILURES_KEPT = 20


class _Tally:
    """Running totals of the finished sessions.

    Each :class:`SessionResult` is folded in as it arrives and dropped. Keeping 1000 result
    objects (each with its counters) would put long-lived objects born mid-run into the
    heap the RSS figure is about: scattered among the transient objects of a busy wave,
    they pin otherwise empty pymalloc arenas, and the harness would measure itself.
    """

    def __init__(self) -> None:
        self.done = 0
        self.failed = 0
        self.failures: list[str] = []
        self.unbalanced: list[int] = []
        self.ledger_active = 0
        self.without_epoch = 0
        self.sums = dict.fromkeys(_SUMMED, 0)
        self.phases: Counter[str] = Counter()
        self.error_codes: Counter[str] = Counter()

    def add(self, r: SessionResult) -> None:
        self.done += 1
        if not r.ok:
            self.failed += 1
            if len(self.failures) < _MAX_FAILURES_KEPT:
                self.failures.append(f"session {r.index}: {r.failure}")
        if not r.balanced:
            self.unbalanced.append(r.index)
        self.ledger_active += r.ledger_active
        self.without_epoch += r.epochs_seen == 0
        for name in _SUMMED:
            self.sums[name] += getattr(r, name)
        self.phases.update(r.phases)
        self.error_codes.update(r.error_codes)


async def run_soak(cfg: SoakConfig, *, progress: bool = False) -> SoakReport:
    """Run the soak in the current event loop and return its report."""
    return await _Soak(cfg, progress=progress).run()


class _Soak:
    """One soak run: the sessions, the probes, the clock driver and the live-session table."""

    def __init__(self, cfg: SoakConfig, *, progress: bool) -> None:
        self.cfg = cfg
        self.progress = progress
        self.report = SoakReport(config=asdict(cfg))
        self.plans = plan_sessions(sessions=cfg.sessions, audio_hours=cfg.audio_hours, seed=cfg.seed,
                                   fault_every=cfg.fault_every)
        self.vc = VirtualClock() if cfg.virtual_clock else None
        self.report.provider_clock = self.vc is not None and provider_takes_clock()
        self.live: dict[int, Any] = {}
        self.tally = _Tally()
        self.lag = LagMonitor()
        self.rss = RssProbe(lag=self.lag, counts=lambda: (self.tally.done, len(self.live)))
        self.driver = ClockDriver(self.vc) if self.vc is not None and cfg.epochs else None
        if self.driver is not None:
            self.driver.on_epoch = self._on_epoch
        self.checkpoints: list[tuple[int, float]] = []
        self.quiescent: list[RssSample] = []
        self.t0 = 0.0

    async def run(self) -> SoakReport:
        report, proc = self.report, psutil.Process()
        errors = _ErrorCounter()
        lib_logger = logging.getLogger("voiceengine")
        lib_logger.addHandler(errors)
        cpu0 = sum(proc.cpu_times()[:2])
        self.t0 = time.perf_counter()
        report.rss_start_mb = self.rss.read(collect=True).rss_mb
        try:
            async with ServerProcess(virtual_clock=self.vc is not None) as server:
                if self.driver is not None:
                    self.driver.mirror = server.advance
                await self._sessions(server)
            report.server_handshakes = int(server.stats.get("handshakes", 0))
            report.server_cpu_s = float(server.stats.get("cpu_s", math.nan))
        finally:
            lib_logger.removeHandler(errors)
        report.wall_s = time.perf_counter() - self.t0
        report.cpu_s = sum(proc.cpu_times()[:2]) - cpu0
        report.epochs = self.driver.epochs if self.driver is not None else 0
        report.logged_errors = dict(sorted(errors.counts.items(), key=lambda kv: -kv[1])[:20])
        await asyncio.sleep(0)  # let done-callbacks of finished tasks run
        current = asyncio.current_task()
        report.leftover_tasks = sorted(t.get_name() for t in asyncio.all_tasks() if t is not current)
        _summarize(report, self.cfg, self.tally, self.checkpoints, self.quiescent, self.rss, self.lag)
        return report

    async def _sessions(self, server: ServerProcess) -> None:
        self.lag.start()
        self.rss.start()
        if self.driver is not None:
            self.driver.start()
        sem = asyncio.Semaphore(self.cfg.concurrency)
        clock = self.vc if self.report.provider_clock else None

        async def one(plan: SessionPlan) -> None:
            async with sem:
                res = await run_session(plan, server=server, clock=clock, track=self._track,
                                        on_midpoint=self._on_midpoint, speed=self.cfg.speed)
            self.tally.add(res)

        try:
            # One task per session, gated by the semaphore: plans start in order. Sessions run
            # in waves (the warm-up, then ``checkpoint`` sessions each); each wave finishes
            # before the next starts, so every RSS reading is quiescent (no session alive)
            # and growth compares like with like.
            warm = min(self.cfg.warmup, len(self.plans))
            waves = [self.plans[:warm]] + [self.plans[i:i + self.cfg.checkpoint]
                                           for i in range(warm, len(self.plans), self.cfg.checkpoint)]
            for wave in waves:
                if wave:
                    await asyncio.gather(*(one(p) for p in wave))
                    self._quiescent_reading()
        finally:
            if self.driver is not None:
                await self.driver.stop()
            await self.rss.stop()
            await self.lag.stop()

    def _quiescent_reading(self) -> None:
        sample = self.rss.read(collect=True, trim=True)
        self.quiescent.append(sample)
        n = self.tally.done
        self.checkpoints.append((n, round(sample.trimmed_mb if sample.trimmed_mb is not None else sample.rss_mb, 2)))
        if self.progress:
            print(f"  {n:5d}/{self.cfg.sessions} sessions  rss {sample.rss_mb:7.1f} MB  trimmed "
                  f"{sample.trimmed_mb or math.nan:7.1f} MB  live blocks {sample.py_blocks or 0:8d}  "
                  f"malloc {sample.malloc_mb or math.nan:6.2f} MB  {time.perf_counter() - self.t0:6.1f} s",
                  file=sys.stderr, flush=True)

    def _track(self, state: Any, alive: bool) -> None:
        if alive:
            self.live[state.plan.index] = state
        else:
            self.live.pop(state.plan.index, None)

    def _on_midpoint(self, state: Any) -> None:
        # a session half-way through that has not crossed the limit yet asks for a jump
        if self.driver is not None and state.r.epochs_seen == 0:
            self.driver.request_epoch()

    def _on_epoch(self) -> None:
        for state in self.live.values():
            state.r.epochs_seen += 1


def _summarize(report: SoakReport, cfg: SoakConfig, tally: _Tally,
               checkpoints: list[tuple[int, float]], quiescent: Sequence[RssSample], rss: RssProbe,
               lag: LagMonitor) -> None:
    report.rss_peak_mb = rss.peak_mb
    report.rss_checkpoints = checkpoints
    if len(quiescent) >= 2:
        # growth: the highest quiescent reading of the last half of the run vs the warm-up one
        warm, rest = quiescent[0], quiescent[1:]
        last_part = rest[len(rest) // 2:]
        report.rss_warmup_mb, report.rss_end_mb = warm.rss_mb, rest[-1].rss_mb
        report.rss_raw_growth_mb = max(s.rss_mb for s in last_part) - warm.rss_mb
        if all(s.trimmed_mb is not None for s in quiescent):
            report.rss_warmup_trimmed_mb = warm.trimmed_mb or math.nan
            report.rss_end_trimmed_mb = rest[-1].trimmed_mb or math.nan
            report.rss_growth_mb = max(s.trimmed_mb or 0.0 for s in last_part) - report.rss_warmup_trimmed_mb
        else:  # no malloc_trim: the raw figure, allocator caching included
            report.rss_growth_mb = report.rss_raw_growth_mb
        heap = [(s.done, s.py_blocks, s.malloc_mb) for s in quiescent
                if s.py_blocks is not None and s.malloc_mb is not None]
        if len(heap) == len(quiescent):
            report.heap_checkpoints = [(done, blocks, round(mb, 3)) for done, blocks, mb in heap]
            tail = heap[1 + (len(heap) - 1) // 2:]
            report.py_block_growth = max(blocks for _, blocks, _ in tail) - heap[0][1]
            report.malloc_growth_mb = max(mb for _, _, mb in tail) - heap[0][2]
    report.lag = lag.summary()
    report.sessions_done = tally.done
    report.sessions_failed = tally.failed
    report.failures = list(tally.failures)
    report.audio_s = tally.sums["audio_bytes"] / 48000.0
    report.server_decoded_audio_s = tally.sums["server_decoded_bytes"] / 48000.0
    report.server_ignored_audio_s = tally.sums["server_ignored_bytes"] / 48000.0
    report.sessions_per_s = tally.done / report.wall_s if report.wall_s else 0.0
    report.audio_s_per_s = report.audio_s / report.wall_s if report.wall_s else 0.0
    report.unbalanced = sorted(tally.unbalanced)
    report.ledger_active_sessions = tally.ledger_active
    report.phases = dict(sorted(tally.phases.items()))
    report.error_codes = dict(sorted(tally.error_codes.items()))
    for name in _COUNTED:
        setattr(report, name, tally.sums[name])
    report.sessions_without_epoch = tally.without_epoch if cfg.epochs else 0
    problems = report.problems
    if report.sessions_done != cfg.sessions:
        problems.append(f"{cfg.sessions - report.sessions_done} sessions did not finish")
    if tally.failed:
        problems.append(f"{tally.failed} sessions failed")
    if report.unbalanced:
        problems.append(f"{len(report.unbalanced)} sessions with unbalanced audio accounting")
    if report.logged_errors:
        problems.append(f"{sum(report.logged_errors.values())} ERROR log records from the library")
    if report.leftover_tasks:
        problems.append(f"{len(report.leftover_tasks)} tasks left: {report.leftover_tasks[:5]}")
    if not math.isfinite(report.rss_growth_mb):
        problems.append("RSS growth not measured")
    elif report.rss_growth_mb > cfg.max_growth_mb:
        problems.append(f"RSS grew {report.rss_growth_mb:.2f} MB after warm-up (limit {cfg.max_growth_mb} MB)")
    if report.py_block_growth > cfg.max_block_growth:  # NaN (not measured) compares False
        problems.append(f"live Python heap grew {report.py_block_growth:.0f} blocks after warm-up "
                        f"(limit {cfg.max_block_growth})")
    if report.malloc_growth_mb > cfg.max_malloc_growth_mb:
        problems.append(f"live C heap grew {report.malloc_growth_mb:.2f} MB after warm-up "
                        f"(limit {cfg.max_malloc_growth_mb} MB)")


def format_report(r: SoakReport) -> str:
    """The summary table printed at the end of a run."""
    lag = r.lag
    rows = [
        ("sessions (done / failed)", f"{r.sessions_done} / {r.sessions_failed}"),
        ("audio streamed", f"{r.audio_s / 3600:.2f} h ({r.audio_s:.0f} s; server decoded {r.server_decoded_audio_s:.0f} s, "
                           f"got {r.server_ignored_audio_s:.0f} s while closing)"),
        ("wall / CPU time", f"{r.wall_s:.1f} s / {r.cpu_s:.1f} s"),
        ("sessions/s, audio s/s", f"{r.sessions_per_s:.2f}, {r.audio_s_per_s:.0f}"),
        ("RSS start / warm-up / end / peak", f"{r.rss_start_mb:.1f} / {r.rss_warmup_mb:.1f} / {r.rss_end_mb:.1f} / "
                                             f"{r.rss_peak_mb:.1f} MB (warm-up, end: no session alive)"),
        ("RSS after malloc_trim warm-up / end", f"{r.rss_warmup_trimmed_mb:.1f} / {r.rss_end_trimmed_mb:.1f} MB"),
        ("RSS growth after warm-up", f"{r.rss_growth_mb:+.2f} MB (untrimmed {r.rss_raw_growth_mb:+.2f} MB)"),
        ("RSS after each wave (trimmed)", " ".join(f"{n}:{mb:.1f}" for n, mb in r.rss_checkpoints)),
        ("live heap growth after warm-up", f"{r.py_block_growth:+.0f} pymalloc blocks, {r.malloc_growth_mb:+.3f} MB "
                                           "malloc'd (glibc mallinfo2)"),
        ("live heap after each wave", " ".join(f"{n}:{blocks}/{mb:.2f}MB" for n, blocks, mb in r.heap_checkpoints)
                                      or "not measured (no mallinfo2)"),
        ("loop lag p50 / p99 / max", f"{lag.get('p50_ms', math.nan):.2f} / {lag.get('p99_ms', math.nan):.2f} / "
                                     f"{lag.get('max_ms', math.nan):.2f} ms ({int(lag.get('samples', 0))} samples)"),
        ("responses (failed), interrupts", f"{r.responses} ({r.responses_failed}), {r.interrupts}"),
        ("function calls, faults injected", f"{r.function_calls}, {r.faults_injected}"),
        ("limit epochs (sessions missed)", f"{r.epochs} ({r.sessions_without_epoch}); provider clock: {r.provider_clock}"),
        ("connection phases", ", ".join(f"{k} {v}" for k, v in r.phases.items()) or "-"),
        ("planned restores (recycles)", str(r.planned_restores)),
        ("server process: handshakes, CPU", f"{r.server_handshakes}, {r.server_cpu_s:.1f} s"),
        ("error codes", ", ".join(f"{k} {v}" for k, v in r.error_codes.items()) or "-"),
        ("accounting (ledger active / unbalanced)", f"{r.ledger_active_sessions} / {len(r.unbalanced)}"),
        ("outbound queue: full retries / flow waits", f"{r.limit_retries} / {r.flow_waits}"),
        ("tasks left", str(len(r.leftover_tasks))),
        ("library ERROR log records", str(sum(r.logged_errors.values()))),
        ("result", "OK" if r.ok else "FAIL: " + "; ".join(r.problems)),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _parse(argv: Sequence[str] | None) -> tuple[SoakConfig, str | None, bool]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--audio-hours", type=float, default=24.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fault-every", type=int, default=10, help="a fault in every N-th session (0: none)")
    p.add_argument("--warmup", type=int, default=None, help="sessions before the RSS baseline (default min(100, N/5))")
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--max-growth-mb", type=float, default=16.0,
                   help="RSS growth after warm-up, trimmed (catch-all; moves in pymalloc arena steps)")
    p.add_argument("--max-block-growth", type=int, default=2000,
                   help="growth of live pymalloc blocks after warm-up (sys.getallocatedblocks)")
    p.add_argument("--max-malloc-growth-mb", type=float, default=1.0,
                   help="growth of live C-heap bytes after warm-up (glibc mallinfo2)")
    p.add_argument("--speed", type=float, default=20.0,
                   help="each session's audio, x real time (inf: as fast as the stack accepts)")
    p.add_argument("--no-virtual-clock", action="store_true", help="real time only (no expiry epochs)")
    p.add_argument("--json", dest="json_path", default=None, help="write the report here")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    if a.sessions < 1 or a.concurrency < 1 or not a.audio_hours > 0 or not a.speed > 0:
        p.error("--sessions, --concurrency must be >= 1, --audio-hours and --speed > 0")
    cfg = SoakConfig(sessions=a.sessions, concurrency=a.concurrency, audio_hours=a.audio_hours, seed=a.seed,
                     fault_every=a.fault_every, warmup_sessions=a.warmup, checkpoint_every=a.checkpoint_every,
                     max_growth_mb=a.max_growth_mb, max_block_growth=a.max_block_growth,
                     max_malloc_growth_mb=a.max_malloc_growth_mb, speed=a.speed, virtual_clock=not a.no_virtual_clock,
                     epochs=not a.no_virtual_clock)
    return cfg, a.json_path, a.quiet


def main(argv: Sequence[str] | None = None) -> int:
    cfg, json_path, quiet = _parse(argv)
    if not quiet:
        print(f"soak: {cfg.sessions} sessions, {cfg.audio_hours} h of audio, {cfg.concurrency} concurrent, "
              f"seed {cfg.seed}", file=sys.stderr, flush=True)
    report = asyncio.run(run_soak(cfg, progress=not quiet))
    print(format_report(report))
    if json_path:
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump(report.to_json(), fh, indent=2)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
