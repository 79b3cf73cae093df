"""Conversation load: client CPU per second of conversation audio and client RSS, the engine
against a minimal hand-written client (and openai-agents' model when it is installed),
measured in the same run, interleaved, against the same fake server.

    python -m benchmarks.conversation_load                    # 1, 50 and 200 sessions + RSS slope 10 -> 60
    python -m benchmarks.conversation_load --quick            # small, under a minute
    python -m benchmarks.conversation_load --sessions 1,50,200 --repeat 3 --json out.json
    python -m benchmarks.conversation_load --anchor-tree /tmp/old  # + an older checkout's engine (A/B)
    python -m benchmarks.conversation_load --layers --sessions 50 --rss-at none --repeat 3
                                                   # + the engine minus one layer at a time

Method (docs/performance.md, "Conversation load"):

* The fake OpenAI Realtime server (``voiceengine.testing``) runs in its own process
  (``benchmarks/conversation_server.py``) for the whole run; replies are paced in real
  time in 20 ms audio deltas.
* Each measurement runs one client in a fresh worker process
  (``benchmarks/conversation_clients.py``), so the CPU and RSS figures are that client's
  alone. Every session streams a 20 ms ``input_audio_buffer.append`` on a real-time
  schedule: ``speech_ms`` of voice then silence, server VAD ends the turn and a reply of
  ``reply_ms`` comes back while the microphone streams on.
* CPU (user + system, ``getrusage``) over a window after a warm-up, divided by the seconds
  of audio both ways in it (sent + received reply audio: a client that got less reply audio
  does not look cheaper); event-loop lag p99 from how late the paced frames wake up; RSS
  sampled in the window.
* Order: clients alternate (ABBA) across repetitions; ratios are against ``minimal`` in the
  same run, per repetition (pairs measured back to back) and of the means; the engine
  against openai-agents and against ``--anchor-tree`` the same way, with a 95 % interval
  over the pairs. Several runs' ``--json`` reports read together:
  ``python -m benchmarks.load_combine run1.json run2.json ...``.
* ``--layers``: the engine with one layer taken out (``LAYER_CLIENTS`` in
  ``benchmarks/conversation_clients.py``: the send path entered at the runtime, at the
  session, or by hand; the receive chain cut at the socket; both) runs as extra clients,
  interleaved with the rest; the table gives each as a ratio to the full engine per
  repetition, and 1 - ratio is what the layers it removes cost in place.
* RSS slope: one worker per client ramps from the first ``--rss-at`` count to the second
  and samples RSS at each: (RSS(n2) - RSS(n1)) / (n2 - n1).
* Each run is checked: audio sent at real-time rate, reply audio and replies received in
  the window, no error events, and the server decoded what the client says it sent. A
  client that did not hold the conversation fails the run (exit status 1): it must never
  look cheap.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.conversation_clients import (CLIENTS, FRAME_BYTES, FRAME_MS, LAYER_CLIENTS, RATE, TREE_ENV,
                                             process_cpu_s)
from benchmarks.conversation_server import ServerProcess

__all__ = ["LoadConfig", "add_client_arguments", "default_agents_python", "main", "paired_ratios", "ratio_interval",
           "resolve_clients", "run_benchmark", "run_worker_process"]

ROOT = Path(__file__).resolve().parent.parent
BYTES_PER_S = RATE * 2
ANCHOR = "minimal"
_AGENTS_VENV_PYTHON = ROOT / ".venv-agents" / "bin" / "python"
ANCHOR_TREE_CLIENT = "ve-anchor"


def default_agents_python() -> str:
    """The interpreter of ``.venv-agents`` (openai-agents installed) when it exists, else ""."""
    return str(_AGENTS_VENV_PYTHON) if _AGENTS_VENV_PYTHON.exists() else ""


@dataclass(slots=True, kw_only=True)
class LoadConfig:
    sessions: list[int] = field(default_factory=lambda: [1, 50, 200])
    rss_at: list[int] = field(default_factory=lambda: [10, 60])
    clients: list[str] = field(default_factory=lambda: ["minimal", "voiceengine"])
    seconds: float = 12.0
    rss_seconds: float = 4.0
    warmup: float = 3.0
    repeat: int = 2
    speech_ms: int = 2500
    cycle_ms: int = 6000
    reply_ms: int = 2500
    agents_python: str = ""
    #: another checkout (extensions built in place) whose voiceengine runs as the client
    #: ``ve-anchor``, interleaved with this tree's: a same-run A/B under this workload
    anchor_tree: str = ""


class BenchmarkFailure(RuntimeError):
    """A client did not hold its conversations: the figures would be meaningless."""


def _python_for(client: str, config: LoadConfig) -> str:
    return config.agents_python if client == "agents" else sys.executable


def run_worker_process(server: ServerProcess, client: str, levels: list[int], seconds: float,
                       config: LoadConfig, *, launcher: Sequence[str] = (), window_marks: bool = False,
                       startup_timeout: float = 60.0) -> dict[str, Any]:
    """One worker process for ``client``: its report, with what the server saw of it.
    ``launcher``: a command the worker runs under (an instruction counter);
    ``window_marks``: the worker marks its windows for it
    (``conversation_clients.WINDOW_OPENS``)."""
    cmd = [*launcher, _python_for(client, config), "-m", "benchmarks.conversation_clients",
           "--client", "voiceengine" if client == ANCHOR_TREE_CLIENT else client,
           "--url", server.url, "--levels", ",".join(map(str, levels)), "--warmup", str(config.warmup),
           "--seconds", str(seconds), "--speech-ms", str(config.speech_ms), "--cycle-ms", str(config.cycle_ms)]
    if window_marks:
        cmd.append("--window-marks")
    if server.pid:
        cmd += ["--server-pid", str(server.pid)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop(TREE_ENV, None)
    if client == ANCHOR_TREE_CLIENT:
        env[TREE_ENV] = config.anchor_tree  # this harness, that tree's voiceengine
    timeout = len(levels) * (config.warmup + seconds) + startup_timeout + max(levels) * 0.5
    before = server.counters()
    server_cpu0 = _process_cpu(server.pid)
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BenchmarkFailure(f"{client} worker ({levels} sessions) did not finish in {timeout:.0f} s") from None
    wall = time.perf_counter() - started
    after = server.counters()
    if proc.returncode != 0 or not proc.stdout.strip():
        raise BenchmarkFailure(f"{client} worker ({levels} sessions) exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["client"] = client  # (the anchor tree's worker ran the voiceengine client)
    result["server"] = {
        "input_audio_bytes": after.input_audio_bytes - before.input_audio_bytes,
        "ignored_audio_bytes": after.ignored_audio_bytes - before.ignored_audio_bytes,
        "sessions_started": after.sessions_started - before.sessions_started,
        "live_connections_after": after.live_connections,
        "cpu_s": _process_cpu(server.pid) - server_cpu0,
        "worker_wall_s": wall,
    }
    return result


def _process_cpu(pid: int) -> float:
    cpu_s = process_cpu_s(pid)
    return math.nan if cpu_s is None else cpu_s  # (not Linux: the figure is informative only)


def _window_figures(window: dict[str, Any]) -> dict[str, Any]:
    """Per-window figures. The cost is per second of conversation audio both ways (sent +
    received): a server slowed by the machine's load sends less reply audio in a window,
    and a client that got less would otherwise look cheaper. Sessions per core are per
    session-second (a session streams its microphone in real time)."""
    audio_s = window["sent_bytes"] / BYTES_PER_S
    rx_audio_s = window["received_bytes"] / BYTES_PER_S
    both_s = audio_s + rx_audio_s
    cpu_ms = window["cpu_s"] * 1e3
    session_s = window["sessions"] * window["wall_s"]
    return {
        "audio_s": audio_s,
        "rx_audio_s": rx_audio_s,
        "cpu_ms_per_audio_s": cpu_ms / both_s if both_s else math.inf,
        "cpu_ms_per_session_s": cpu_ms / session_s,
        "sessions_per_core": session_s * 1e3 / cpu_ms if cpu_ms else math.inf,
        "realtime_share": audio_s / session_s,
    }


def check_run(run: dict[str, Any], config: LoadConfig) -> list[str]:
    """Why this run does not count (empty: it held its conversations). Also fills the
    derived figures of each window."""
    problems: list[str] = []
    who = f"{run['client']} {run['levels']}"
    for window in run["windows"]:
        window.update(_window_figures(window))
        n, wall = window["sessions"], window["wall_s"]
        expected_replies = n * wall * 1e3 / config.cycle_ms
        if window["sent_bytes"] <= 0:
            problems.append(f"{who}: sent no audio in the window at {n} sessions")
        if window["realtime_share"] < 0.9:
            problems.append(f"{who}: sent {window['realtime_share']:.0%} of real time at {n} sessions (fell behind)")
        if window["received_bytes"] <= 0:
            problems.append(f"{who}: received no reply audio in the window at {n} sessions")
        elif window["rx_audio_s"] < 0.25 * expected_replies * config.reply_ms / 1e3:
            problems.append(f"{who}: received {window['rx_audio_s']:.1f} s of reply audio at {n} sessions, "
                            f"expected about {expected_replies * config.reply_ms / 1e3:.1f} s")
        if expected_replies >= 2 and window["replies"] < 0.25 * expected_replies:
            problems.append(f"{who}: {window['replies']} replies in the window at {n} sessions, "
                            f"expected about {expected_replies:.0f}")
        if window["errors"]:
            problems.append(f"{who}: {window['errors']} error events: {run['error_samples']}")
    totals, server = run["totals"], run["server"]
    if totals["replies"] <= 0 or totals["received_bytes"] <= 0:
        problems.append(f"{who}: no reply over the whole run")
    if totals["errors"] or run["close_errors"]:
        problems.append(f"{who}: errors {run['error_samples']} close errors {run['close_errors']}")
    got = server["input_audio_bytes"] + server["ignored_audio_bytes"]
    slack = max(run["levels"]) * FRAME_BYTES * 2  # a frame per session may be in flight at the stop
    if not totals["sent_bytes"] - slack - 0.02 * totals["sent_bytes"] <= got <= totals["sent_bytes"] + slack:
        problems.append(f"{who}: the server decoded {got} audio bytes, the client counted {totals['sent_bytes']}")
    if server["sessions_started"] != max(run["levels"]):
        problems.append(f"{who}: the server saw {server['sessions_started']} sessions, expected {max(run['levels'])}")
    return problems


def _order(clients: list[str], step: int) -> list[str]:
    """ABBA: the clients' order flips at every step, so drift in load hits each alike."""
    return list(clients) if step % 2 == 0 else list(reversed(clients))


def run_benchmark(config: LoadConfig, log: Any = print) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    problems: list[str] = []
    started = time.perf_counter()
    with ServerProcess(reply_ms=config.reply_ms) as server:
        log(f"fake server {server.url} (pid {server.pid}); clients {', '.join(config.clients)}; "
            f"{config.repeat} repetition(s)")
        step = 0
        for rep in range(config.repeat):
            plans: list[tuple[str, list[int], float]] = [("cpu", [n], config.seconds) for n in config.sessions]
            if config.rss_at:
                plans.append(("rss", config.rss_at, config.rss_seconds))
            for kind, levels, seconds in plans:
                for client in _order(config.clients, step):
                    run = run_worker_process(server, client, levels, seconds, config)
                    run.update(kind=kind, repetition=rep)
                    found = check_run(run, config)
                    problems += found
                    runs.append(run)
                    w = run["windows"][-1]
                    log(f"  rep {rep} {kind} {client:<12} {'->'.join(map(str, levels)):>6} sessions: "
                        f"{w['cpu_ms_per_audio_s']:.3f} ms CPU/audio s, lag p99 {w['lag_p99_ms']:.1f} ms, "
                        f"RSS {w['rss_mean_mb']:.1f} MB{'  FAILED' if found else ''}")
                step += 1
    summary = summarize(runs, config)
    report = {"config": {k: getattr(config, k) for k in config.__slots__}, "runs": runs,
              "summary": summary, "problems": problems, "warnings": reply_audio_warnings(summary),
              "wall_s": time.perf_counter() - started}
    return report


def reply_audio_warnings(summary: dict[str, Any]) -> list[str]:
    """Where a client got much less (or more) reply audio than the anchor in the same step:
    the server (slowed by the machine's load) did not give each client the same workload."""
    warnings = []
    for n, rows in summary["cpu"].items():
        anchor = rows.get(ANCHOR, {}).get("rx_audio_s", math.nan)
        for client, row in rows.items():
            if anchor > 0 and abs(row["rx_audio_s"] / anchor - 1) > 0.25:
                warnings.append(f"{n} sessions: {client} received {row['rx_audio_s']:.0f} s of reply audio, "
                                f"{ANCHOR} {anchor:.0f} s (the server kept pace unevenly; compare with care)")
    return warnings


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def summarize(runs: list[dict[str, Any]], config: LoadConfig) -> dict[str, Any]:
    cpu: dict[str, Any] = {}
    for n in config.sessions:
        by_client: dict[str, list[dict[str, Any]]] = {
            c: [r["windows"][0] for r in runs if r["kind"] == "cpu" and r["client"] == c and r["levels"] == [n]]
            for c in config.clients}
        anchor = by_client.get(ANCHOR, [])
        anchor_mean = _mean([w["cpu_ms_per_audio_s"] for w in anchor])
        rows: dict[str, dict[str, Any]] = {}
        for client, windows in by_client.items():
            costs = [w["cpu_ms_per_audio_s"] for w in windows]
            per_rep = [w["cpu_ms_per_audio_s"] / a["cpu_ms_per_audio_s"] for w, a in zip(windows, anchor)]
            rss = _mean([w["rss_mean_mb"] for w in windows])
            rows[client] = {
                "cpu_ms_per_audio_s": _mean(costs),
                "cpu_ms_per_audio_s_reps": costs,
                "ratio_to_minimal": _mean(costs) / anchor_mean if anchor else math.nan,
                "ratio_to_minimal_reps": per_rep,
                "cpu_ms_per_session_s": _mean([w["cpu_ms_per_session_s"] for w in windows]),
                # the kernel's share (system calls, TCP over loopback, wake-ups): alike for every
                # client making the same calls, whatever its own code costs
                "sys_share": _mean([w["sys_s"] / w["cpu_s"] for w in windows if "sys_s" in w and w["cpu_s"] > 0]),
                # the server's CPU in the same windows, in cores: near 1.0 the single-process fake
                # server, not the client, is what stops keeping real time
                "server_cores": _mean([w["server_cpu_s"] / w["wall_s"] for w in windows
                                       if w.get("server_cpu_s") is not None]),
                "sessions_per_core": 1e3 / _mean([w["cpu_ms_per_session_s"] for w in windows]) if windows else math.nan,
                "lag_p99_ms": _mean([w["lag_p99_ms"] for w in windows]),
                "rss_mb": rss,
                "rss_start_mb": _mean([r["rss_start_mb"] for r in runs if r["kind"] == "cpu"
                                       and r["client"] == client and r["levels"] == [n]]),
                "audio_s": _mean([w["audio_s"] for w in windows]),
                "rx_audio_s": _mean([w["rx_audio_s"] for w in windows]),
                "replies": _mean([float(w["replies"]) for w in windows]),
            }
            rows[client]["rss_above_start_per_session_mb"] = (rss - rows[client]["rss_start_mb"]) / n
        cpu[str(n)] = rows
    slope: dict[str, Any] = {}
    if config.rss_at:
        n1, n2 = config.rss_at[0], config.rss_at[-1]
        for client in config.clients:
            slopes = [(r["windows"][-1]["rss_mean_mb"] - r["windows"][0]["rss_mean_mb"]) / (n2 - n1)
                      for r in runs if r["kind"] == "rss" and r["client"] == client]
            slope[client] = {"mb_per_session": _mean(slopes), "reps": slopes,
                             "rss_at": [_mean([r["windows"][i]["rss_mean_mb"] for r in runs
                                               if r["kind"] == "rss" and r["client"] == client]) for i in (0, -1)]}
    return {"cpu": cpu, "rss_slope": slope}


#: two-sided 95 % quantiles of Student's t by degrees of freedom (1-30; beyond, the normal's)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def ratio_interval(ratios: list[float]) -> tuple[float, float, float] | None:
    """Geometric mean of paired ratios and its 95 % confidence interval (Student's t on
    the logs: a ratio and its inverse are equally far from 1); ``None`` under two pairs."""
    if len(ratios) < 2 or any(not r > 0 for r in ratios):
        return None
    logs = [math.log(r) for r in ratios]
    centre = statistics.fmean(logs)
    df = len(logs) - 1
    half = (_T975[df - 1] if df <= len(_T975) else 1.960) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(centre), math.exp(centre - half), math.exp(centre + half)


def paired_ratios(row: dict[str, Any], base: dict[str, Any]) -> list[float]:
    """``row``'s CPU over ``base``'s for each repetition (the pair measured in one ABBA step)."""
    return [a / b for a, b in zip(row["cpu_ms_per_audio_s_reps"], base["cpu_ms_per_audio_s_reps"])]


def _interval_text(ratios: list[float]) -> str:
    interval = ratio_interval(ratios)
    if interval is None:
        return ""
    _, low, high = interval
    return f"; 95 % CI {low:.3f}-{high:.3f} over {len(ratios)} pairs"


def _versus(row: dict[str, Any], base: dict[str, Any]) -> str:
    """``row``'s CPU as a ratio to ``base``'s in the same run: of the means, then per
    repetition (the pairs measured in the same ABBA step), with the pairs' 95 % interval."""
    pairs = paired_ratios(row, base)
    reps = "/".join(f"{r:.3f}" for r in pairs)
    return f"{row['cpu_ms_per_audio_s'] / base['cpu_ms_per_audio_s']:.3f} (per rep {reps}{_interval_text(pairs)})"


def format_table(report: dict[str, Any]) -> str:
    config = report["config"]
    lines = [f"Conversation load: {FRAME_MS} ms frames both ways, paced in real time, turns of "
             f"{config['speech_ms'] / 1e3:g} s speech every {config['cycle_ms'] / 1e3:g} s, replies "
             f"~{config['reply_ms'] / 1e3:g} s; window {config['seconds']:g} s after {config['warmup']:g} s "
             f"warm-up; {config['repeat']} repetition(s), clients interleaved (ABBA); same fake server.",
             "",
             f"{'sessions':>8}  {'client':<12} {'CPU ms/audio s':>14}  {'x minimal':>9}  {'per rep':<15} "
             f"{'ms/session-s':>12}  {'sess/core':>9}  {'system':>6}  {'server':>6}  {'lag p99 ms':>10}  {'RSS MB':>7}  {'(RSS-start)/n':>13}  "
             f"{'rx audio s':>10}  {'replies':>7}"]
    for n, rows in report["summary"]["cpu"].items():
        for client, row in rows.items():
            reps = "/".join(f"{r:.2f}" for r in row["ratio_to_minimal_reps"])
            lines.append(f"{n:>8}  {client:<12} {row['cpu_ms_per_audio_s']:>14.3f}  {row['ratio_to_minimal']:>8.2f}x  "
                         f"{reps:<15} {row['cpu_ms_per_session_s']:>12.3f}  {row['sessions_per_core']:>9.0f}  "
                         f"{row.get('sys_share', math.nan):>6.0%}  {row.get('server_cores', math.nan):>6.2f}  "
                         f"{row['lag_p99_ms']:>10.1f}  "
                         f"{row['rss_mb']:>7.1f}  {row['rss_above_start_per_session_mb']:>13.3f}  "
                         f"{row['rx_audio_s']:>10.1f}  {row['replies']:>7.1f}")
    # the engine against openai-agents (goal 1) and against the anchor tree's engine (A/B)
    for other, label in (("agents", "agents"), (ANCHOR_TREE_CLIENT, f"{ANCHOR_TREE_CLIENT} ({config['anchor_tree']})")):
        for n, rows in report["summary"]["cpu"].items():
            engine_row, other_row = rows.get("voiceengine"), rows.get(other)
            if engine_row and other_row:
                lines.append(f"{n:>8}  voiceengine x {label}: {_versus(engine_row, other_row)}")
    for n, rows in report["summary"]["cpu"].items():
        full = rows.get("voiceengine")
        layers = [c for c in rows if c in LAYER_CLIENTS]
        if full and layers:
            lines += ["", f"{n} sessions, the engine minus its layers (x voiceengine in the same run; "
                      "1 - x is what the removed layers cost in place):"]
            for client in layers:
                lines.append(f"  {client:<12} {_versus(rows[client], full)}: {LAYER_CLIENTS[client]}")
    slope = report["summary"]["rss_slope"]
    if slope:
        n1, n2 = config["rss_at"][0], config["rss_at"][-1]
        lines += ["", f"RSS slope {n1} -> {n2} live sessions (MB per session; goal <= 0.15):"]
        for client, row in slope.items():
            reps = "/".join(f"{s:.3f}" for s in row["reps"])
            lines.append(f"  {client:<12} {row['mb_per_session']:.3f} MB/session  (reps {reps}; "
                         f"RSS {row['rss_at'][0]:.1f} -> {row['rss_at'][1]:.1f} MB)")
    lines += ["", "CPU ms/audio s: client CPU per second of audio both ways (sent + received reply audio); "
              "ms/session-s and sess/core: per session-second (each session streams in real time); "
              "system: the kernel's share of that CPU; server: the fake server's CPU in the same windows, "
              "in cores (it is one process: near 1.00 it stops keeping real time, whatever the client)."]
    if report["warnings"]:
        lines += ["", "WARNINGS:", *(f"  {w}" for w in report["warnings"])]
    if report["problems"]:
        lines += ["", "FAILED CHECKS (these figures do not count):", *(f"  {p}" for p in report["problems"])]
    lines.append(f"\nwall time {report['wall_s']:.0f} s")
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    if text.strip().lower() == "none":
        return []
    return [int(x) for x in text.split(",") if x.strip()]


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose the clients (shared with ``conversation_instructions``)."""
    parser.add_argument("--clients", type=str, help="comma list of minimal, voiceengine, agents (default: "
                        "minimal,voiceengine, plus agents when --agents-python or .venv-agents exists)")
    parser.add_argument("--agents-python", type=str, help="interpreter with openai-agents installed "
                        "(default .venv-agents/bin/python when it exists)")
    parser.add_argument("--anchor-tree", type=str, help="another checkout (extensions built in place, e.g. "
                        "git worktree add --detach /tmp/old <commit>; python setup.py build_ext --inplace): its "
                        "voiceengine runs as the client ve-anchor, interleaved with this tree's (a same-run A/B)")
    parser.add_argument("--layers", action="store_true", help="add the engine minus one layer at a time as clients "
                        "(" + ", ".join(LAYER_CLIENTS) + "): what each layer costs in place")


def resolve_clients(parser: argparse.ArgumentParser, args: argparse.Namespace, config: LoadConfig) -> None:
    """Fill ``config``'s clients, openai-agents' interpreter and anchor tree from the options
    of :func:`add_client_arguments`; ``parser.error`` on a combination that cannot run."""
    agents_python = args.agents_python or default_agents_python()
    config.agents_python = agents_python
    if args.clients:
        config.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    elif agents_python:
        config.clients = ["minimal", "voiceengine", "agents"]
    if args.layers:
        config.clients += [c for c in LAYER_CLIENTS if c not in config.clients]
    if args.anchor_tree:
        tree = Path(args.anchor_tree).resolve()
        if not (tree / "voiceengine" / "__init__.py").is_file():
            parser.error(f"--anchor-tree {tree}: no voiceengine package there")
        config.anchor_tree = str(tree)
        if ANCHOR_TREE_CLIENT not in config.clients:
            config.clients.append(ANCHOR_TREE_CLIENT)
    elif ANCHOR_TREE_CLIENT in config.clients:
        parser.error(f"the client {ANCHOR_TREE_CLIENT} needs --anchor-tree")
    unknown = [c for c in config.clients if c not in CLIENTS and c != ANCHOR_TREE_CLIENT]
    if unknown:
        parser.error(f"unknown client(s) {', '.join(unknown)}: choose from {', '.join([*CLIENTS, ANCHOR_TREE_CLIENT])}")
    if ANCHOR not in config.clients:
        parser.error("the minimal client is the anchor: keep it in --clients")
    if any(c in LAYER_CLIENTS for c in config.clients) and "voiceengine" not in config.clients:
        parser.error("the layered clients are measured against voiceengine: keep it in --clients")
    if "agents" in config.clients and not config.agents_python:
        parser.error("agents needs --agents-python (a venv with openai-agents; it pins websockets<17)")


def parse_args(argv: list[str] | None) -> tuple[LoadConfig, str | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=_ints, help="concurrent sessions per CPU measurement (default 1,50,200; "
                        "'none': only the RSS slope)")
    parser.add_argument("--rss-at", type=str, help="RSS slope between these live-session counts (default "
                        "10,60; 'none' to skip)")
    add_client_arguments(parser)
    parser.add_argument("--seconds", type=float, help="measurement window per CPU run (default 12)")
    parser.add_argument("--rss-seconds", type=float, help="RSS sampling window per level (default 4)")
    parser.add_argument("--warmup", type=float, help="seconds after the sessions are up (default 3)")
    parser.add_argument("--repeat", type=int, help="repetitions (default 2)")
    parser.add_argument("--quick", action="store_true", help="small sizes and short turns: under a minute")
    parser.add_argument("--json", type=str, help="write the full report here")
    args = parser.parse_args(argv)
    config = LoadConfig()
    if args.quick:
        config = LoadConfig(sessions=[1, 4], rss_at=[2, 6], seconds=3.0, rss_seconds=1.5, warmup=0.5, repeat=1,
                            speech_ms=800, cycle_ms=2000, reply_ms=660)
    for name in ("sessions", "seconds", "rss_seconds", "warmup", "repeat"):
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    if args.rss_at is not None:
        config.rss_at = [] if args.rss_at.lower() in ("", "none", "0") else _ints(args.rss_at)
        if config.rss_at and (len(config.rss_at) != 2 or config.rss_at[0] >= config.rss_at[1]):
            parser.error("--rss-at takes two ascending counts, e.g. 10,60")
    resolve_clients(parser, args, config)
    if config.repeat < 1 or not (config.sessions or config.rss_at) or config.seconds <= 0:
        parser.error("--repeat >= 1, --seconds > 0 and --sessions or --rss-at required")
    return config, args.json


def main(argv: list[str] | None = None) -> int:
    config, json_path = parse_args(argv)
    try:
        report = run_benchmark(config, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except BenchmarkFailure as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(format_table(report))
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=1, default=float))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
