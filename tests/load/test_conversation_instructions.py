"""The instruction-count benchmark as an instrument: the worker marks its window with the two
calls callgrind cuts at, the window is read only when it is exactly one part, the table
and ratios add up; and, where valgrind is installed, a real engine worker under callgrind
holds its conversation and yields a counted window."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks import conversation_clients, conversation_instructions
from benchmarks.conversation_clients import WINDOW_CLOSES, WINDOW_OPENS
from benchmarks.conversation_instructions import (callgrind_window, engine_over, format_table, main, read_part,
                                                  run_benchmark, valgrind_command)
from benchmarks.conversation_load import BenchmarkFailure, LoadConfig
from benchmarks.conversation_server import ServerProcess


def _part(path: Path, trigger: str, summary: str, events: str = "Ir") -> None:
    path.write_text(f"version: 1\ncreator: callgrind-3.19.0\ncmd:  python -m benchmarks.conversation_clients\n"
                    f"part: 1\ndesc: I1 cache: \ndesc: Trigger: {trigger}\n\npositions: line\nevents: {events}\n"
                    f"summary: {summary}\n\nob=(1) /usr/bin/python3\nfl=(1) ???\nfn=(1) main\n0 5\n"
                    f"totals: {summary}\n")


def _callgrind_output(tmp_path: Path, triggers: list[str], summaries: list[str], events: str = "Ir") -> Path:
    out = tmp_path / "voiceengine.callgrind"
    for number, (trigger, summary) in enumerate(zip(triggers, summaries), start=1):
        _part(out.parent / f"{out.name}.{number}", trigger, summary, events)
    _part(out, "Program termination", " ".join("7" for _ in events.split()), events)  # after the window
    return out


OPENS, CLOSES = f"--dump-after={WINDOW_OPENS}", f"--dump-before={WINDOW_CLOSES}"


def test_the_window_is_the_part_between_the_two_marks(tmp_path: Path) -> None:
    out = _callgrind_output(tmp_path, [OPENS, CLOSES], ["12 0", "250 3"], events="Ir Bcm")
    assert callgrind_window(out) == {"Ir": 250, "Bcm": 3}
    assert read_part(out) == ("Program termination", {"Ir": 7, "Bcm": 7})


@pytest.mark.parametrize("triggers", [
    [OPENS, CLOSES, OPENS],  # something else called getppid after the window: a third cut
    [OPENS, OPENS, CLOSES],  # ... or inside it
    [CLOSES, OPENS],  # the marks out of order
    [OPENS],  # the worker never closed its window (or was not told to mark it)
    [],
])
def test_a_window_cut_anywhere_else_is_refused(tmp_path: Path, triggers: list[str]) -> None:
    out = _callgrind_output(tmp_path, triggers, ["100"] * len(triggers))
    with pytest.raises(BenchmarkFailure, match="the window is not one part"):
        callgrind_window(out)


def test_a_summary_without_its_trailing_zeros_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "x.callgrind.1"
    path.write_text(f"desc: Trigger: {OPENS}\nevents: Ir Dr Dw I1mr\nsummary: 3 1\n")
    assert read_part(path) == (OPENS, {"Ir": 3, "Dr": 1, "Dw": 0, "I1mr": 0})


@pytest.mark.parametrize("text", [f"desc: Trigger: {OPENS}\n", "events: Ir\nsummary: \n",
                                  "events: Ir Dr\nsummary: 1 2 3\n", "summary: 5\n"])
def test_a_part_without_its_event_summary_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "x.callgrind.1"
    path.write_text(text)
    with pytest.raises(BenchmarkFailure, match="no event summary"):
        read_part(path)


def test_the_launcher_cuts_at_the_workers_marks(tmp_path: Path) -> None:
    if shutil.which("valgrind") is None:
        with pytest.raises(BenchmarkFailure, match="valgrind is not installed"):
            valgrind_command(tmp_path / "out", cache_sim=False)
        return
    command = valgrind_command(tmp_path / "out", cache_sim=True)
    assert "--tool=callgrind" in command and f"--zero-before={WINDOW_OPENS}" in command
    assert OPENS in command and CLOSES in command
    assert "--cache-sim=yes" in command and "--branch-sim=yes" in command
    assert "--cache-sim=yes" not in valgrind_command(tmp_path / "out", cache_sim=False)


def test_the_worker_marks_its_window_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_getppid, real_getpgrp = os.getppid, os.getpgrp

    def getppid() -> int:
        calls.append(WINDOW_OPENS)
        return real_getppid()

    def getpgrp() -> int:
        calls.append(WINDOW_CLOSES)
        return real_getpgrp()

    monkeypatch.setattr(os, WINDOW_OPENS, getppid)
    monkeypatch.setattr(os, WINDOW_CLOSES, getpgrp)
    with ServerProcess(reply_ms=660) as server:
        marked = asyncio.run(conversation_clients.run_worker(
            "voiceengine", server.url, [1], warmup_s=0.3, seconds=0.5, speech_ms=800, cycle_ms=2000,
            window_marks=True))
        assert calls == [WINDOW_OPENS, WINDOW_CLOSES]
        unmarked = asyncio.run(conversation_clients.run_worker(
            "minimal", server.url, [1], warmup_s=0.3, seconds=0.5, speech_ms=800, cycle_ms=2000))
        assert calls == [WINDOW_OPENS, WINDOW_CLOSES]  # no marks unless asked for
    assert marked["windows"][0]["sent_bytes"] > 0 and unmarked["windows"][0]["sent_bytes"] > 0


def _report(instructions: dict[str, float], *, sim: bool = False) -> dict[str, Any]:
    clients: dict[str, Any] = {}
    for name, count in instructions.items():
        figures: dict[str, Any] = {"instructions_per_audio_s": count, "late_frames": 0,
                                   "ratio_to_minimal": count / instructions["minimal"]}
        if sim:
            figures |= {"l1_misses_per_audio_s": count / 20, "mispredicted_per_audio_s": count / 50}
        clients[name] = figures
    return {"config": {"sessions": [1], "seconds": 12.0}, "cache_sim": sim, "valgrind": "valgrind-3.19.0",
            "clients": clients, "problems": []}


def test_the_table_states_the_engine_against_each_peer() -> None:
    report = _report({"minimal": 10e6, "voiceengine": 5e6, "agents": 12.5e6})
    assert engine_over(report, "agents") == pytest.approx(0.4)
    assert engine_over(report, "minimal") == pytest.approx(0.5)
    table = format_table(report)
    assert "voiceengine x agents: 0.400x instructions" in table
    assert "voiceengine x minimal: 0.500x instructions" in table
    assert "L1 misses" not in table
    simulated = format_table(_report({"minimal": 10e6, "voiceengine": 5e6}, sim=True))
    assert "voiceengine x minimal: 0.500x instructions, 0.500x L1 misses, 0.500x mispredicted branches" in simulated
    assert "agents" not in simulated  # no peer, no line


def test_the_command_line_refuses_a_run_without_its_anchor() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--clients", "voiceengine"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["--sessions", "0"])


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed (apt-get install valgrind)")
def test_an_engine_worker_under_callgrind_holds_its_conversation_and_is_counted() -> None:
    config = LoadConfig(sessions=[1], clients=["voiceengine"], seconds=2.0, warmup=0.5, rss_at=[], repeat=1,
                        speech_ms=800, cycle_ms=2000, reply_ms=660)
    report = run_benchmark(config, log=lambda _line: None)
    assert report["problems"] == []
    figures = report["clients"]["voiceengine"]
    # a second of audio both ways costs the engine a few million instructions (5.6 M in the
    # standard workload): not thousands, nor the hundreds of millions of its imports
    assert 1e6 < figures["instructions_per_audio_s"] < 3e7
    assert figures["counts"]["Ir"] == pytest.approx(figures["instructions_per_audio_s"] * figures["audio_s"])
    assert figures["ratio_to_minimal"] is None  # no anchor in this run
    assert report["valgrind"].startswith("valgrind-")


def test_the_guards_figure_refuses_a_run_that_did_not_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    held = _report({"minimal": 10e6, "voiceengine": 6e6})
    failed = {**held, "problems": ["voiceengine [1]: sent 40% of real time at 1 sessions (fell behind)"]}
    reports = iter([held, failed, {**held, "clients": {"minimal": held["clients"]["minimal"]}}])
    monkeypatch.setattr(conversation_instructions, "run_benchmark", lambda *_a, **_k: next(reports))
    assert conversation_instructions.engine_vs_minimal().ratio == pytest.approx(0.6)
    with pytest.raises(BenchmarkFailure, match="fell behind"):
        conversation_instructions.engine_vs_minimal()
    with pytest.raises(BenchmarkFailure, match="no ratio"):  # the engine's figure missing
        conversation_instructions.engine_vs_minimal()
