"""Benchmark-suite hooks.

* Collects ``bench_*.py`` files when a directory is given (``pytest benchmarks``); files
  named explicitly on the command line are collected by pytest itself.
* Prints the resampler ratio table (ours / soxr HQ median time, same session) at the end
  of a benchmark run. Benchmarks opt in through ``extra_info``: ``ratio_case`` (row),
  ``ratio_mode`` (column) and ``ratio_impl`` (``"ours"`` or ``"soxr"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        if not parent.session.isinitpath(file_path):
            return pytest.Module.from_parent(parent, path=file_path)
    return None


def _ratio_rows(config: pytest.Config) -> tuple[list[str], list[str], dict[tuple[str, str, str], float]]:
    bsession: Any = getattr(config, "_benchmarksession", None)
    medians: dict[tuple[str, str, str], float] = {}
    cases: list[str] = []
    modes: list[str] = []
    for bench in getattr(bsession, "benchmarks", None) or []:
        info = bench.extra_info or {}
        if "ratio_case" not in info:
            continue
        try:
            median = float(bench.stats.median)
        except Exception:  # no stats (disabled run or errored benchmark)
            continue
        case, mode, impl = info["ratio_case"], info["ratio_mode"], info["ratio_impl"]
        medians[(case, mode, impl)] = median
        if case not in cases:
            cases.append(case)
        if mode not in modes:
            modes.append(mode)
    return cases, modes, medians


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    cases, modes, medians = _ratio_rows(config)
    if not medians:
        return
    tr = terminalreporter
    tr.section("resampler vs soxr HQ (median time ratio ours/soxr; < 1.0 = faster)")
    header = f"{'case':<34}" + "".join(f"{m + ' ours':>14}{m + ' soxr':>14}{m + ' ratio':>12}" for m in modes)
    tr.write_line(header)
    for case in cases:
        line = f"{case:<34}"
        for mode in modes:
            ours = medians.get((case, mode, "ours"))
            soxr = medians.get((case, mode, "soxr"))
            if ours is None or soxr is None:
                line += f"{'-':>14}{'-':>14}{'-':>12}"
                continue
            line += f"{_fmt(ours):>14}{_fmt(soxr):>14}{ours / soxr:>11.2f}x"
        tr.write_line(line)


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} us"
    return f"{seconds * 1e3:.3f} ms"
