"""Reading conversation-load runs together: the paired-ratio interval, the table's
engine-vs-agents line, and ``benchmarks.load_combine`` on reports built here (the
arithmetic is what is tested; the benchmark's own runs are tested in
``test_conversation_load.py``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.conversation_load import format_table, ratio_interval
from benchmarks.load_combine import CombineError, combine, main

WORKLOAD = {"speech_ms": 2500, "cycle_ms": 6000, "reply_ms": 2500, "seconds": 12.0, "warmup": 3.0}


def _row(costs: list[float]) -> dict[str, Any]:
    mean = sum(costs) / len(costs)
    return {"cpu_ms_per_audio_s": mean, "cpu_ms_per_audio_s_reps": costs, "ratio_to_minimal": math.nan,
            "ratio_to_minimal_reps": [], "cpu_ms_per_session_s": mean, "sessions_per_core": 1.0,
            "lag_p99_ms": 1.0, "rss_mb": 30.0, "rss_above_start_per_session_mb": 0.1, "rx_audio_s": 100.0,
            "replies": 10.0}


def _report(costs: dict[str, list[float]], *, problems: list[str] | None = None, **config: Any) -> dict[str, Any]:
    return {"config": {**WORKLOAD, "repeat": len(next(iter(costs.values()))), "anchor_tree": "", **config},
            "summary": {"cpu": {"50": {client: _row(c) for client, c in costs.items()}}, "rss_slope": {}},
            "problems": problems or [], "warnings": [], "wall_s": 1.0, "runs": []}


def test_interval_is_the_geometric_mean_with_students_t_on_the_logs() -> None:
    assert ratio_interval([0.8, 0.8]) == pytest.approx((0.8, 0.8, 0.8))
    centre, low, high = ratio_interval([0.5, 2.0]) or (0.0, 0.0, 0.0)
    # logs -ln2, +ln2: mean 0, standard error ln2, t(1 df) = 12.706
    assert centre == pytest.approx(1.0)
    assert (low, high) == pytest.approx((2 ** -12.706, 2 ** 12.706))
    centre, low, high = ratio_interval([0.7, 0.8, 0.9]) or (0.0, 0.0, 0.0)
    assert low < centre < high and centre == pytest.approx((0.7 * 0.8 * 0.9) ** (1 / 3))
    assert ratio_interval([0.8]) is None  # one pair: no spread to estimate
    assert ratio_interval([0.8, 0.0]) is None and ratio_interval([]) is None


def test_the_table_states_the_engine_against_agents_with_its_interval() -> None:
    report = _report({"minimal": [4.0, 4.0], "voiceengine": [3.0, 3.3], "agents": [4.0, 4.0]})
    table = format_table(report)
    line = next(line for line in table.splitlines() if "voiceengine x agents" in line)
    assert "0.787 (per rep 0.750/0.825" in line and "95 % CI" in line and "over 2 pairs" in line


def test_runs_combine_per_run_and_per_pair() -> None:
    runs = [("a.json", _report({"minimal": [4.0, 4.0], "voiceengine": [3.2, 3.2], "agents": [4.0, 4.0]})),
            ("b.json", _report({"minimal": [4.0, 4.0], "voiceengine": [3.6, 3.6], "agents": [4.0, 4.0]}))]
    text = combine(runs)
    assert "2 run(s) combined: a.json, b.json" in text
    section = text.split("50 sessions, voiceengine x agents:")[1].split("\n\n")[0]
    assert "a.json: 0.800 (per rep 0.800/0.800)" in section and "b.json: 0.900" in section
    centre = math.sqrt(0.8 * 0.9)
    assert f"over runs:  {centre:.3f} (95 % CI" in section and "n=2)" in section
    assert f"over pairs: {centre:.3f} (95 % CI" in section and "n=4)" in section
    assert "voiceengine x minimal:" in text


def test_failed_runs_are_left_out_and_other_workloads_refused() -> None:
    good = _report({"minimal": [4.0], "voiceengine": [3.0]})
    failed = _report({"minimal": [4.0], "voiceengine": [1.0]}, problems=["voiceengine: no reply audio"])
    text = combine([("good.json", good), ("failed.json", failed)])
    assert "left out failed.json" in text and "good.json: 0.750" in text and "failed.json: 0.250" not in text
    with pytest.raises(CombineError, match="different workloads"):
        combine([("a.json", good), ("b.json", _report({"minimal": [4.0], "voiceengine": [3.0]}, seconds=6.0))])
    with pytest.raises(CombineError, match="every report failed"):
        combine([("failed.json", failed)])
    with pytest.raises(CombineError, match="not a conversation_load report"):
        combine([("x.json", {"runs": []})])


def test_layered_clients_are_left_to_their_runs_table() -> None:
    text = combine([("a.json", _report({"minimal": [4.0], "voiceengine": [3.0], "ve-raw": [2.6]}))])
    assert "x ve-raw" not in text and "voiceengine x minimal" in text


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_report({"minimal": [4.0, 4.2], "voiceengine": [3.0, 3.1]})))
    assert main([str(path)]) == 0
    assert "voiceengine x minimal" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main([str(bad)]) == 2
    assert "cannot combine" in capsys.readouterr().err


def test_the_recorded_runs_give_the_documented_figures() -> None:
    # docs/performance.md and the README quote these lines: the recorded reports must keep
    # giving them (a changed report, or a changed computation, shows here)
    runs = sorted((Path(__file__).resolve().parents[2] / "docs" / "load-runs").glob("*.json"))
    assert len(runs) == 23  # (one failed its checks: left out by combine)
    text = combine([(path.name, json.loads(path.read_text())) for path in runs])
    agents = text.split("\n50 sessions, voiceengine x agents:")[1].split("\n\n")[0]
    assert "over runs:  0.780 (95 % CI 0.760-0.800, n=18)" in agents
    assert "over pairs: 0.781 (95 % CI 0.769-0.793, n=75)" in agents
    minimal = text.split("\n50 sessions, voiceengine x minimal:")[1].split("\n\n")[0]
    assert "over runs:  0.842 (95 % CI 0.824-0.860, n=18)" in minimal
    assert "over pairs: 0.842 (95 % CI 0.830-0.854, n=75)" in minimal
    at_200 = text.split("\n200 sessions, voiceengine x agents:")[1].split("\n\n")[0]
    assert "over runs:  0.761 (95 % CI 0.717-0.806, n=8)" in at_200
    assert "over pairs: 0.761 (95 % CI 0.735-0.788, n=27)" in at_200


def test_the_latest_stops_runs_alone_give_the_documented_figure() -> None:
    # goal 1 read off the tenth stop's own runs (j to r, every one of them), which no earlier
    # look had seen: docs/performance.md and the README quote this interval
    folder = Path(__file__).resolve().parents[2] / "docs" / "load-runs"
    ratios = []
    for path in sorted(folder.glob("2026-12-05-[j-r]*.json")):
        report = json.loads(path.read_text())
        rows = report["summary"]["cpu"].get("50")
        if rows and "agents" in rows and not report["problems"]:
            ratios.append(rows["voiceengine"]["cpu_ms_per_audio_s"] / rows["agents"]["cpu_ms_per_audio_s"])
    assert len(ratios) == 9
    interval = ratio_interval(ratios)
    assert interval is not None
    assert [f"{x:.3f}" for x in interval] == ["0.765", "0.740", "0.791"]
