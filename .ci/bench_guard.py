"""CI regression guard: same-run cost ratios against the committed baseline.

Re-measures every ratio of :mod:`benchmarks.ratios` (resampler vs soxr HQ at 10/20/100 ms
chunks and whole buffers; audio-delta decode vs orjson + pybase64) and the engine's
instructions per second of conversation audio against the minimal client's
(:mod:`benchmarks.conversation_instructions`, one session under callgrind: needs valgrind),
and fails when one is more than ``--tolerance`` (default 25 %) above its value in
``.ci/bench_baseline.json`` (``--instructions-tolerance``, default 10 %, for the instruction
counts, which do not depend on the machine's load).

The baseline is per kind of CPU: how our kernels compare with soxr's depends on the
microarchitecture (on an AVX-512 AMD EPYC host every resampler ratio sits 10-20 % above
the AVX2 host the first baseline was recorded on, with soxr 0.5 and 1.1 alike). The entry
whose key is this machine's (CPU model name; widest vector extension) is used, else
``default``; ``--update`` writes this machine's entry.

Noise handling for a loaded 2-core machine: each ratio is the ratio of mean per-call
costs over interleaved (ABBA) rounds of ours and the anchor, so load changes hit both;
a ratio over the limit is measured again (up to ``--retries`` more times, with twice the
rounds) and the lowest attempt counts: a real regression is over the limit every time,
a burst of load on one side is not.

    python .ci/bench_guard.py            # check (exit 1 on a regression)
    python .ci/bench_guard.py --update   # re-measure and rewrite the baseline
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import conversation_instructions, ratios  # noqa: E402

BASELINE = ROOT / ".ci" / "bench_baseline.json"
#: instruction counts move by tenths of a percent between runs, so this ratio gets a
#: tolerance of its own (``--instructions-tolerance``) and no retry
INSTRUCTIONS = "conversation instructions voiceengine x minimal"


def machine_key() -> str:
    """This machine's CPU kind: its model name and its widest x86 vector extension."""
    model, flags = platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:  # not Linux: the architecture only
        pass
    vector = next((name for name in ("avx512f", "avx2", "avx", "sse4_2") if name in flags), "")
    return f"{model}; {vector}" if vector else model


def load_baseline(key: str) -> tuple[str, dict[str, float]]:
    """(which entry, its ratios): this machine's if there is one, else ``default``."""
    machines: dict[str, dict[str, float]] = json.loads(BASELINE.read_text())["machines"]
    entry = key if key in machines else "default"
    return entry, machines[entry]


def measure_one(name: str, rounds: int) -> float:
    """Re-measure the ratio called ``name``."""
    for label, fi, fo, ci, co in ratios.RESAMPLE_CASES:
        for ms in ratios.CHUNK_MS:
            if name == f"resample {label} {ms} ms chunks":
                return ratios.resample_stream(label, fi, fo, ci, co, ms, rounds=rounds).ratio
        if name.startswith(f"resample {label} whole"):
            return ratios.resample_whole(label, fi, fo, ci, co, rounds=rounds).ratio
    if name.startswith("decode 100 ms audio delta"):
        return ratios.delta_decode(rounds=rounds, strict_anchor="strict" in name).ratio
    raise KeyError(f"unknown ratio {name!r} in the baseline")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help="rewrite the baseline with this run's ratios")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds per ratio (default 20)")
    parser.add_argument("--tolerance", type=float, default=0.25, help="allowed relative degradation (default 0.25)")
    parser.add_argument("--retries", type=int, default=2, help="re-measurements of a ratio over the limit")
    parser.add_argument("--instructions-tolerance", type=float, default=0.10,
                        help=f"allowed relative degradation of {INSTRUCTIONS!r} (default 0.10)")
    args = parser.parse_args(argv)

    key = machine_key()
    measured = ratios.all_ratios(rounds=args.rounds, whole_rounds=args.rounds)
    print(ratios.table(measured))
    instructions = conversation_instructions.engine_vs_minimal()
    print(conversation_instructions.format_table(instructions.report))
    if args.update:
        stored = json.loads(BASELINE.read_text()) if BASELINE.exists() else {"machines": {}}
        stored["tolerance"] = args.tolerance
        stored["machines"][key] = ratios.as_json(measured) | {INSTRUCTIONS: round(instructions.ratio, 4)}
        BASELINE.write_text(json.dumps(stored, indent=2) + "\n")
        print(f"baseline written: {BASELINE.relative_to(ROOT)} [{key}]")
        return 0

    entry, baseline = load_baseline(key)
    print(f"baseline: {entry!r} (this machine: {key!r})")
    now = {r.name: r.ratio for r in measured} | {INSTRUCTIONS: instructions.ratio}
    failures = []
    for name, base in baseline.items():
        deterministic = name == INSTRUCTIONS
        limit = base * (1.0 + (args.instructions_tolerance if deterministic else args.tolerance))
        best = now[name] if name in now else measure_one(name, args.rounds)
        attempt = 0
        while best > limit and attempt < (0 if deterministic else args.retries):
            attempt += 1
            best = min(best, measure_one(name, 2 * args.rounds))
        status = "ok" if best <= limit else "REGRESSION"
        print(f"{status:<11}{name:<52} baseline {base:.2f}x  now {best:.2f}x  limit {limit:.2f}x")
        if best > limit:
            failures.append(name)
    if failures:
        print(f"\n{len(failures)} ratio(s) over their limit: {', '.join(failures)}")
        return 1
    print(f"\nall {len(baseline)} ratios within {args.tolerance:.0%} of the baseline "
          f"({args.instructions_tolerance:.0%} for the instruction counts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
