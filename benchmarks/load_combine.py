"""Several conversation-load runs read together: the engine's CPU as a ratio to each other
client, per run and over all runs, with 95 % confidence intervals.

    python -m benchmarks.conversation_load --json run1.json      # (one or more runs, same workload)
    python -m benchmarks.load_combine run1.json run2.json ...

One run's ratios move with the machine (docs/performance.md: several percent from one run
to the next on a 2-core VM), so whether a goal such as "<= 0.8x openai-agents" holds is
read off many runs, not one. Two views, printed side by side:

* per run: the ratio of the run's mean costs (what its table prints); over the runs,
  their geometric mean and a 95 % interval with the run as the unit;
* per pair: every repetition's pair (the two clients measured in one ABBA step), pooled
  over the runs: geometric mean and 95 % interval with the pair as the unit.

The layered clients of ``--layers`` are left to each run's table (they are ratios to the
engine, not the engine's to them). Runs whose checks failed (``problems`` in the report)
are left out and named; runs of a different workload (turn lengths, window) are refused:
their ratios do not pool.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.conversation_clients import LAYER_CLIENTS
from benchmarks.conversation_load import paired_ratios, ratio_interval

__all__ = ["combine", "main"]

#: the report's config keys that define the workload: runs must agree on them to pool
WORKLOAD_KEYS = ("speech_ms", "cycle_ms", "reply_ms", "seconds", "warmup")
ENGINE = "voiceengine"


class CombineError(ValueError):
    """The reports cannot be read together."""


def _interval(ratios: list[float]) -> str:
    interval = ratio_interval(ratios)
    if interval is None:
        return f"{ratios[0]:.3f} (one value: no interval)" if ratios else "no values"
    centre, low, high = interval
    return f"{centre:.3f} (95 % CI {low:.3f}-{high:.3f}, n={len(ratios)})"


def combine(reports: list[tuple[str, dict[str, Any]]]) -> str:
    """The combined text for ``(name, report)`` pairs (``CombineError`` when they cannot pool)."""
    if not reports:
        raise CombineError("no reports")
    usable: list[tuple[str, dict[str, Any]]] = []
    lines: list[str] = []
    for name, report in reports:
        if "summary" not in report or "config" not in report:
            raise CombineError(f"{name}: not a conversation_load report (no summary/config)")
        if report.get("problems"):
            lines.append(f"left out {name}: its checks failed ({len(report['problems'])} problem(s))")
            continue
        usable.append((name, report))
    if not usable:
        raise CombineError("every report failed its checks")
    first_name, first = usable[0]
    for name, report in usable[1:]:
        differing = [k for k in WORKLOAD_KEYS if report["config"].get(k) != first["config"].get(k)]
        if differing:
            raise CombineError(f"{name} and {first_name} ran different workloads ({', '.join(differing)})")
    levels = sorted({n for _, r in usable for n in r["summary"]["cpu"]}, key=int)
    header = [f"{len(usable)} run(s) combined: " + ", ".join(name for name, _ in usable)]
    for n in levels:
        others = sorted({c for _, r in usable for c in r["summary"]["cpu"].get(n, {})
                         if c != ENGINE and c not in LAYER_CLIENTS})
        for other in others:
            per_run: list[float] = []
            pairs: list[float] = []
            run_lines: list[str] = []
            for name, report in usable:
                rows = report["summary"]["cpu"].get(n, {})
                engine, base = rows.get(ENGINE), rows.get(other)
                if not engine or not base:
                    continue
                ratio = engine["cpu_ms_per_audio_s"] / base["cpu_ms_per_audio_s"]
                reps = paired_ratios(engine, base)
                per_run.append(ratio)
                pairs.extend(reps)
                run_lines.append(f"    {name}: {ratio:.3f} (per rep {'/'.join(f'{r:.3f}' for r in reps)})")
            if not per_run:
                continue
            lines += ["", f"{n} sessions, {ENGINE} x {other}:", *run_lines,
                      f"  over runs:  {_interval(per_run)}", f"  over pairs: {_interval(pairs)}"]
    return "\n".join(header + lines)


def _load(path: str) -> tuple[str, dict[str, Any]]:
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CombineError(f"{path}: {exc}") from None
    if not isinstance(report, dict):
        raise CombineError(f"{path}: not a conversation_load report")
    return path, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="JSON reports of python -m benchmarks.conversation_load --json")
    args = parser.parse_args(argv)
    try:
        print(combine([_load(path) for path in args.reports]))
    except CombineError as exc:
        print(f"cannot combine: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
