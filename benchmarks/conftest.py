"""Benchmark-suite hooks.

* Collects ``bench_*.py`` files when a directory is given (``pytest benchmarks``); files
  named explicitly on the command line are collected by pytest itself.
* Prints the ratio table (ours / anchor, same session) at the end of a benchmark run:
  mean cost per call (a round's time / ``calls_per_round``) and, beside it, the ratio of
  the medians. Benchmarks opt in through ``extra_info``: ``ratio_case`` (row),
  ``ratio_mode`` (column), ``ratio_impl`` (``"ours"`` or the anchor's name) and
  ``calls_per_round`` (default 1).
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


def _ratio_rows(config: pytest.Config) -> tuple[list[str], list[str], dict[tuple[str, str, str], tuple[float, float]]]:
    bsession: Any = getattr(config, "_benchmarksession", None)
    medians: dict[tuple[str, str, str], tuple[float, float]] = {}
    cases: list[str] = []
    modes: list[str] = []
    for bench in getattr(bsession, "benchmarks", None) or []:
        info = bench.extra_info or {}
        if "ratio_case" not in info:
            continue
        try:
            calls = int(info.get("calls_per_round", 1))
            per_call = (float(bench.stats.mean) / calls, float(bench.stats.median) / calls)
        except Exception:  # no stats (disabled run or errored benchmark)
            continue
        case, mode, impl = info["ratio_case"], info["ratio_mode"], info["ratio_impl"]
        medians[(case, mode, "ours" if impl == "ours" else "anchor")] = per_call
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
    tr.section("ours vs anchor, same run: mean cost per call (ratio of means; median ratio beside); < 1.0 = cheaper")
    tr.write_line(f"{'case':<34}{'mode':<10}{'ours mean':>12}{'anchor mean':>13}{'ratio':>8}{'median ratio':>14}")
    for case in cases:
        for mode in modes:
            ours = medians.get((case, mode, "ours"))
            anchor = medians.get((case, mode, "anchor"))
            if ours is None or anchor is None:
                continue
            tr.write_line(f"{case:<34}{mode:<10}{_fmt(ours[0]):>12}{_fmt(anchor[0]):>13}"
                          f"{ours[0] / anchor[0]:>7.2f}x{ours[1] / anchor[1]:>13.2f}x")


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} us"
    return f"{seconds * 1e3:.3f} ms"
