"""Conversation instructions: what each client's process executes per second of conversation
audio, counted by callgrind (valgrind), the engine against the minimal hand-written client
(and openai-agents' model when it is installed) in the same run, against the same fake server.

    python -m benchmarks.conversation_instructions               # 1 session: minimal, voiceengine (+ agents)
    python -m benchmarks.conversation_instructions --cache-sim   # + simulated L1 misses, mispredicted branches
    python -m benchmarks.conversation_instructions --sessions 3 --json out.json
    python -m benchmarks.conversation_instructions --layers     # + the engine minus one layer at a time
    python -m benchmarks.conversation_instructions --anchor-tree /tmp/old   # + an older checkout's engine (A/B)

Why, beside ``conversation_load``: CPU time at 50 sessions moves 5-8 % between runs on this
2-core VM, so a change of a few percent in what the engine does cannot be seen in one run.
Instruction counts do not move: two runs of one client agree within 0.01 %. They count the
user-space instructions only. Left out: the kernel (system calls, wake-ups, TCP over
loopback), which every client here pays alike, and what an instruction costs. ``--cache-sim``
simulates cache misses and branch mispredictions, but for a process alone on its core, whose
caches nothing else evicts, so those figures are lower bounds. These figures add to the CPU
figure; they do not replace it (docs/performance.md, "Instructions per second of audio").

Method:

* The workload, fake server, worker and checks are ``conversation_load``'s: the server in its
  own process (not counted), one worker process per client, the same paced 20 ms frames
  and replies, and a client that did not hold its conversation fails the run.
* Each worker runs under ``valgrind --tool=callgrind --zero-before=getppid
  --dump-after=getppid --dump-before=getpgrp`` with ``--window-marks``. The worker calls
  ``getppid()`` as its window opens and ``getpgrp()`` as it closes, and nothing else in it
  calls either. The counts are zeroed at the first call and written out at the second, so
  that part is the window exactly. The dump after ``getppid()`` holds only that call; it is
  there so that a second ``getppid()`` from anywhere would show up as an extra part. A
  full dump at the opening would stall the paced worker for tens of milliseconds. The run
  checks for exactly these two parts, in this order.
* One session by default, because under callgrind a client runs 20-50x slower. The counts per
  session-second at 1 and 3 sessions agree within about 2 % (docs). The window is 12 s by
  default: two whole turns of the 6 s speech/reply cycle, so where it starts in the cycle
  does not change what it holds.
* Figures are per second of conversation audio both ways (sent + received), as
  ``conversation_load``'s CPU. The ratios are against the minimal client, plus the engine
  against openai-agents.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.conversation_clients import WINDOW_CLOSES, WINDOW_OPENS
from benchmarks.conversation_load import (ANCHOR, ANCHOR_TREE_CLIENT, BenchmarkFailure, LoadConfig,
                                          add_client_arguments, check_run, resolve_clients, run_worker_process)
from benchmarks.conversation_server import ServerProcess

__all__ = ["EngineVsMinimal", "callgrind_window", "engine_over", "engine_vs_minimal", "format_table", "main",
           "read_part", "run_benchmark", "valgrind_command"]

#: callgrind's event names -> what the table calls them (``--cache-sim``: sums of these)
L1_MISSES = ("I1mr", "D1mr", "D1mw")
MISPREDICTED = ("Bcm", "Bim")
_LABELS = {"instructions_per_audio_s": "instructions", "l1_misses_per_audio_s": "L1 misses",
           "mispredicted_per_audio_s": "mispredicted branches"}
#: a worker's imports alone take 10-60 s under callgrind (openai-agents' the longest)
_STARTUP_TIMEOUT_S = 900.0


def valgrind_command(out_file: Path, *, cache_sim: bool) -> list[str]:
    """The launcher a worker runs under: callgrind, cutting its counts at the window marks."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise BenchmarkFailure("valgrind is not installed (Debian: apt-get install valgrind)")
    command = [valgrind, "--tool=callgrind", "--quiet", "--dump-line=no", f"--callgrind-out-file={out_file}",
               f"--zero-before={WINDOW_OPENS}", f"--dump-after={WINDOW_OPENS}", f"--dump-before={WINDOW_CLOSES}"]
    if cache_sim:
        command += ["--cache-sim=yes", "--branch-sim=yes"]
    return command


def read_part(path: Path) -> tuple[str, dict[str, int]]:
    """One callgrind output file: (what cut it, its event totals)."""
    trigger = ""
    events: list[str] = []
    summary: list[int] = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.startswith("desc: Trigger: "):
                trigger = line.removeprefix("desc: Trigger: ").strip()
            elif line.startswith("events: "):
                events = line.split()[1:]
            elif line.startswith("summary: "):
                summary = [int(x) for x in line.split()[1:]]
    if not events or not summary or len(summary) > len(events):
        raise BenchmarkFailure(f"{path.name}: no event summary (events {events}, summary {summary})")
    # callgrind leaves out a cost line's trailing zeros
    return trigger, dict(zip(events, summary + [0] * (len(events) - len(summary))))


def _part_number(path: Path) -> int:
    number = path.suffix.removeprefix(".")
    return int(number) if number.isdigit() else -1


def callgrind_window(out_file: Path) -> dict[str, int]:
    """The window's event totals from a worker's callgrind output, checked to be the window:
    exactly two dumps before the final one, after the opening call (zeroed before it: a
    dump of that call alone) and before the closing call."""
    parts = sorted(out_file.parent.glob(out_file.name + ".*"), key=_part_number)
    expected = [f"--dump-after={WINDOW_OPENS}", f"--dump-before={WINDOW_CLOSES}"]
    read = [read_part(p) for p in parts]
    triggers = [trigger for trigger, _ in read]
    if triggers != expected:
        raise BenchmarkFailure(f"callgrind cut {out_file.name} at {triggers}, expected {expected}: "
                               "the window is not one part (did something else call those functions?)")
    return read[1][1]


def _figures(run: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    window = run["windows"][0]
    audio_s = window["audio_s"] + window["rx_audio_s"]  # both ways, as conversation_load's CPU
    figures: dict[str, Any] = {"counts": counts, "audio_s": audio_s, "late_frames": window["late_frames"],
                               "instructions_per_audio_s": counts["Ir"] / audio_s}
    if all(event in counts for event in L1_MISSES + MISPREDICTED):
        figures["l1_misses_per_audio_s"] = sum(counts[e] for e in L1_MISSES) / audio_s
        figures["mispredicted_per_audio_s"] = sum(counts[e] for e in MISPREDICTED) / audio_s
    return figures


def run_benchmark(config: LoadConfig, *, cache_sim: bool = False, log: Any = print) -> dict[str, Any]:
    """Every client of ``config`` at ``config.sessions[0]`` sessions under callgrind, one after
    another (the counts do not depend on the machine's load, so no interleaving)."""
    sessions = config.sessions[0]
    clients: dict[str, Any] = {}
    problems: list[str] = []
    with ServerProcess(reply_ms=config.reply_ms) as server, tempfile.TemporaryDirectory() as tmp:
        log(f"fake server {server.url} (pid {server.pid}); {sessions} session(s), a {config.seconds:g} s window, "
            f"under callgrind")
        for client in config.clients:
            out_file = Path(tmp) / f"{client}.callgrind"
            run = run_worker_process(server, client, [sessions], config.seconds, config,
                                     launcher=valgrind_command(out_file, cache_sim=cache_sim), window_marks=True,
                                     startup_timeout=_STARTUP_TIMEOUT_S)
            found = check_run(run, config)
            problems += found
            clients[client] = _figures(run, callgrind_window(out_file))
            log(f"  {client:<12} {clients[client]['instructions_per_audio_s'] / 1e6:8.2f} M instructions per "
                f"audio s{'  FAILED: ' + '; '.join(found) if found else ''}")
    anchor = clients.get(ANCHOR, {}).get("instructions_per_audio_s")
    for figures in clients.values():
        figures["ratio_to_minimal"] = figures["instructions_per_audio_s"] / anchor if anchor else None
    return {"config": {k: getattr(config, k) for k in config.__slots__}, "cache_sim": cache_sim,
            "valgrind": _valgrind_version(), "clients": clients, "problems": problems}


def _valgrind_version() -> str:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return ""
    return subprocess.run([valgrind, "--version"], capture_output=True, text=True, check=False).stdout.strip()


def engine_over(report: dict[str, Any], other: str, figure: str = "instructions_per_audio_s") -> float | None:
    """voiceengine's ``figure`` over ``other``'s in the report (None when either is missing)."""
    clients = report["clients"]
    if "voiceengine" not in clients or other not in clients or figure not in clients[other]:
        return None
    return float(clients["voiceengine"][figure] / clients[other][figure])


def format_table(report: dict[str, Any]) -> str:
    config, clients = report["config"], report["clients"]
    sim = report["cache_sim"]
    lines = [f"Instructions per second of conversation audio (both ways): {config['sessions'][0]} session(s), "
             f"a {config['seconds']:g} s window, {report['valgrind'] or 'valgrind'} (callgrind)",
             f"{'client':<13}{'M instructions':>15}{'x minimal':>11}{'x voiceengine':>15}"
             + (f"{'M L1 misses':>13}{'M mispredicted':>16}" if sim else "") + f"{'late frames':>13}"]
    engine = clients.get("voiceengine", {}).get("instructions_per_audio_s")
    for name, figures in clients.items():
        count, ratio = figures["instructions_per_audio_s"], figures["ratio_to_minimal"]
        line = (f"{name:<13}{count / 1e6:>15.2f}{f'{ratio:.3f}x' if ratio is not None else '-':>11}"
                f"{f'{count / engine:.3f}x' if engine else '-':>15}")
        if sim:
            line += (f"{figures.get('l1_misses_per_audio_s', 0) / 1e6:>13.3f}"
                     f"{figures.get('mispredicted_per_audio_s', 0) / 1e6:>16.3f}")
        lines.append(line + f"{figures['late_frames']:>13}")
    compared = list(_LABELS) if sim else ["instructions_per_audio_s"]
    for other in ("agents", ANCHOR_TREE_CLIENT, ANCHOR):
        ratios = [(name, engine_over(report, other, name)) for name in compared]
        if ratios[0][1] is not None:
            lines.append(f"voiceengine x {other}: " + ", ".join(
                f"{ratio:.3f}x {_LABELS[name]}" for name, ratio in ratios if ratio is not None))
    for problem in report["problems"]:
        lines.append(f"FAILED: {problem}")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class EngineVsMinimal:
    """The CI guard's figure: the engine's instructions per audio second over the minimal client's."""

    ratio: float
    report: dict[str, Any]


def engine_vs_minimal(*, seconds: float = 6.0) -> EngineVsMinimal:
    """voiceengine over minimal at one session, a window of one speech/reply cycle."""
    config = LoadConfig(sessions=[1], clients=[ANCHOR, "voiceengine"], seconds=seconds, rss_at=[], repeat=1)
    report = run_benchmark(config, log=lambda _line: None)
    ratio = engine_over(report, ANCHOR)
    if report["problems"] or ratio is None:
        raise BenchmarkFailure("; ".join(report["problems"]) or "no ratio")
    return EngineVsMinimal(ratio, report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_client_arguments(parser)
    parser.add_argument("--sessions", type=int, default=1, help="live sessions per client (default 1)")
    parser.add_argument("--seconds", type=float, default=12.0, help="window (default 12: two speech/reply cycles)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after the sessions are up (default 3)")
    parser.add_argument("--cache-sim", action="store_true", help="also simulate L1 misses and branch prediction")
    parser.add_argument("--json", type=Path, help="write the whole report here")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.seconds <= 0:
        parser.error("--sessions >= 1 and --seconds > 0 required")
    config = LoadConfig(sessions=[args.sessions], seconds=args.seconds, warmup=args.warmup, rss_at=[], repeat=1)
    resolve_clients(parser, args, config)
    try:
        report = run_benchmark(config, cache_sim=args.cache_sim)
    except BenchmarkFailure as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    print(format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
