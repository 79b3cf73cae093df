"""The conversation-load benchmark as an instrument: on tiny sizes, every client it
measures really holds its conversations and the report adds up. No timing assertions:
the figures themselves belong to ``python -m benchmarks.conversation_load``."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import voiceengine
from benchmarks.conversation_clients import FRAME_BYTES, LAYER_CLIENTS, process_cpu_s, stat_cpu_s
from benchmarks.conversation_load import BYTES_PER_S, LoadConfig, check_run, format_table, parse_args, run_benchmark

CLIENTS = ["minimal", "voiceengine"]
CONFIG = LoadConfig(sessions=[2], rss_at=[1, 3], clients=CLIENTS, seconds=3.0, rss_seconds=1.0, warmup=0.5,
                    repeat=1, speech_ms=800, cycle_ms=2000, reply_ms=660)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run_benchmark(CONFIG, log=lambda _msg: None)


def test_every_client_held_its_conversations(report: dict[str, Any]) -> None:
    assert report["problems"] == []
    assert {r["client"] for r in report["runs"]} == set(CLIENTS)
    for run in report["runs"]:
        for window in run["windows"]:
            assert window["sent_bytes"] > 0 and window["received_bytes"] > 0, run["client"]
            assert window["errors"] == 0
        assert run["totals"]["replies"] > 0, run["client"]


def test_accounting_is_consistent(report: dict[str, Any]) -> None:
    for run in report["runs"]:
        totals, server = run["totals"], run["server"]
        assert totals["sent_bytes"] % FRAME_BYTES == 0  # whole 20 ms frames only
        # the server decoded what the client counted, give or take a frame in flight per session
        decoded = server["input_audio_bytes"] + server["ignored_audio_bytes"]
        assert abs(decoded - totals["sent_bytes"]) <= 2 * FRAME_BYTES * max(run["levels"])
        assert server["sessions_started"] == max(run["levels"])
        assert server["live_connections_after"] == 0
        for window in run["windows"]:
            assert window["sent_bytes"] <= totals["sent_bytes"]
            # paced in real time: the window's audio is its sessions x its wall time
            assert window["audio_s"] == pytest.approx(window["sessions"] * window["wall_s"], rel=0.1)
            assert window["audio_s"] == window["sent_bytes"] / BYTES_PER_S


def test_ratios_are_finite_and_anchored(report: dict[str, Any]) -> None:
    rows = report["summary"]["cpu"]["2"]
    assert rows["minimal"]["ratio_to_minimal"] == pytest.approx(1.0)
    for client in CLIENTS:
        row = rows[client]
        assert math.isfinite(row["ratio_to_minimal"]) and row["ratio_to_minimal"] > 0
        assert math.isfinite(row["cpu_ms_per_audio_s"]) and row["cpu_ms_per_audio_s"] > 0
        assert row["rss_mb"] > 0 and math.isfinite(row["lag_p99_ms"])
        assert math.isfinite(report["summary"]["rss_slope"][client]["mb_per_session"])
    table = format_table(report)
    assert all(client in table for client in CLIENTS) and "FAILED" not in table


def test_a_client_that_does_nothing_fails_the_run(report: dict[str, Any]) -> None:
    run = copy.deepcopy(next(r for r in report["runs"] if r["kind"] == "cpu"))
    for window in run["windows"]:
        window.update(received_bytes=0, replies=0)
    run["totals"].update(received_bytes=0, replies=0)
    assert any("no reply audio" in p for p in check_run(run, CONFIG))
    silent = copy.deepcopy(next(r for r in report["runs"] if r["kind"] == "cpu"))
    silent["server"]["input_audio_bytes"] = 0  # counted as sent, never reached the server
    silent["server"]["ignored_audio_bytes"] = 0
    assert any("the server decoded" in p for p in check_run(silent, CONFIG))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the server's CPU is read from /proc")
def test_the_servers_cpu_is_measured_in_each_window(report: dict[str, Any]) -> None:
    # the fake server's own CPU, read by the worker as its window opens and closes: the
    # server is one process, so this is how the table tells a server out of time from a client
    for run in report["runs"]:
        for window in run["windows"]:
            assert window["server_cpu_s"] is not None and 0 <= window["server_cpu_s"] <= 2 * window["wall_s"]
        assert run["server"]["cpu_s"] > 0  # over the worker's whole run: the server did work
    rows = report["summary"]["cpu"]["2"]
    for client in CLIENTS:
        assert 0 <= rows[client]["server_cores"] < 2
    header = format_table(report).splitlines()[2]
    assert header.split().index("server") == header.split().index("system") + 1


def test_another_processes_cpu_is_read_from_proc() -> None:
    # a command name may hold spaces and ")": the figures are the 14th and 15th fields
    ticks = os.sysconf("SC_CLK_TCK")
    line = b"4242 (a b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 " + f"{3 * ticks} {ticks}".encode() + b" 0 0 20 0 1 0\n"
    assert stat_cpu_s(line) == pytest.approx(4.0)
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc")
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\n"
                             "while time.process_time() - t < 0.3: pass\ninput()"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60  # (a loaded machine gives the child its 0.3 s late)
        while (cpu := process_cpu_s(busy.pid)) is not None and cpu < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cpu is not None and cpu >= 0.25  # its 0.3 s of spinning, seen from outside
    finally:
        busy.communicate(b"\n", timeout=30)
    assert process_cpu_s(busy.pid) is None  # gone (reaped): no figure, no error


def test_the_default_run_reports_1_50_and_200_sessions() -> None:
    config, _ = parse_args(["--clients", "minimal,voiceengine"])
    assert config.sessions == [1, 50, 200] and config.rss_at == [10, 60]


def test_quick_mode_is_small() -> None:
    config, json_path = parse_args(["--quick", "--clients", "minimal,voiceengine", "--json", "x.json"])
    assert config.clients == CLIENTS and json_path == "x.json"
    assert max(config.sessions) <= 4 and config.repeat == 1 and config.seconds <= 3
    with pytest.raises(SystemExit):
        parse_args(["--clients", "voiceengine"])  # no anchor, no ratio


def _library_tree() -> str:
    """The folder holding the voiceengine under test (a checkout, or site-packages when the
    suite runs against an installed wheel): a valid tree to use as the anchor."""
    return str(Path(voiceengine.__file__).resolve().parents[1])


def test_an_anchor_tree_adds_its_engine_as_a_client(tmp_path: Any) -> None:
    root = _library_tree()
    config, _ = parse_args(["--quick", "--clients", "minimal,voiceengine", "--anchor-tree", root])
    assert config.clients == [*CLIENTS, "ve-anchor"] and config.anchor_tree == root
    with pytest.raises(SystemExit):
        parse_args(["--quick", "--anchor-tree", str(tmp_path)])  # no voiceengine there
    with pytest.raises(SystemExit):
        parse_args(["--quick", "--clients", "minimal,ve-anchor"])  # which tree?


def test_the_anchor_trees_engine_holds_its_conversations_and_is_compared() -> None:
    # the library under test as its own anchor: the plumbing (the worker imports the
    # tree's voiceengine, the run is filed under ve-anchor, the table compares the two)
    root = _library_tree()
    config = LoadConfig(sessions=[1], rss_at=[], clients=["minimal", "voiceengine", "ve-anchor"], seconds=2.0,
                        warmup=0.5, repeat=1, speech_ms=800, cycle_ms=2000, reply_ms=660, anchor_tree=root)
    report = run_benchmark(config, log=lambda _msg: None)
    assert report["problems"] == []
    assert [r["client"] for r in report["runs"]] == ["minimal", "voiceengine", "ve-anchor"]
    ratio = report["summary"]["cpu"]["1"]["voiceengine"]["cpu_ms_per_audio_s"] / \
        report["summary"]["cpu"]["1"]["ve-anchor"]["cpu_ms_per_audio_s"]
    assert math.isfinite(ratio) and ratio > 0
    assert f"voiceengine x ve-anchor ({root}): {ratio:.3f}" in format_table(report)


def test_layers_add_the_engine_minus_one_layer_as_clients() -> None:
    config, _ = parse_args(["--quick", "--clients", "minimal,voiceengine", "--layers"])
    assert config.clients == [*CLIENTS, *LAYER_CLIENTS]
    with pytest.raises(SystemExit):
        parse_args(["--quick", "--clients", "minimal,ve-raw"])  # measured against what?
    with pytest.raises(SystemExit):
        parse_args(["--quick", "--clients", "minimal,voiceengine,nosuch"])


def test_each_layered_engine_holds_its_conversations_and_is_compared() -> None:
    # every layered client must still hold the conversation (the run's checks: real-time
    # audio the server decoded, replies, no errors), or its figure would flatter the layer
    config = LoadConfig(sessions=[1], rss_at=[], clients=["minimal", "voiceengine", *LAYER_CLIENTS], seconds=2.0,
                        warmup=0.5, repeat=1, speech_ms=800, cycle_ms=2000, reply_ms=660)
    report = run_benchmark(config, log=lambda _msg: None)
    assert report["problems"] == []
    rows = report["summary"]["cpu"]["1"]
    table = format_table(report)
    for client, what in LAYER_CLIENTS.items():
        row = rows[client]
        assert row["rx_audio_s"] > 0 and row["replies"] > 0, client
        ratio = row["cpu_ms_per_audio_s"] / rows["voiceengine"]["cpu_ms_per_audio_s"]
        assert f"{client:<12} {ratio:.3f}" in table and what in table
