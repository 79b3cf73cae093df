"""The voiceengine command: demo end to end, file to file, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import pytest

from enginekit import silence, voiced
from voiceengine.cli import build_parser, main


def write_wav(path: Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def test_demo_runs_barges_in_and_writes_a_wav(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "reply.wav"
    # speed 4: the long second reply plays for ~1.5 s of wall time, so the barge-in lands
    # inside it even on a loaded machine
    rc = main(["demo", "--output", str(out), "--speed", "4", "--server-speed", "40", "--barge-in-after", "0.05",
               "--rate", "16000"])
    stdout = capsys.readouterr().out
    assert rc == 0
    assert "engine.interrupted" in stdout and "truncated item at" in stdout
    assert "first audio rx" in stdout  # the latency table
    with wave.open(str(out), "rb") as r:
        assert r.getframerate() == 16000 and r.getsampwidth() == 2 and r.getnchannels() == 1
        assert r.getnframes() > 16000  # more than a second of reply audio


@pytest.mark.parametrize("provider", ["gemini", "openai-live"])
def test_demo_runs_on_each_provider_fake_server(provider: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The same demo on Gemini Live and OpenAI Live: the user barges in once (the service
    stops by itself: nothing is truncated, so the table has no truncation column)."""
    out = tmp_path / "reply.wav"
    rc = main(["demo", "--provider", provider, "--output", str(out), "--speed", "4", "--server-speed", "40",
               "--barge-in-after", "0.05", "--rate", "16000", "--timeout", "60"])
    stdout = capsys.readouterr().out
    assert rc == 0
    name = {"gemini": "Gemini Live", "openai-live": "OpenAI Live"}[provider]
    assert f"fake {name} server on ws://127.0.0.1:" in stdout
    assert "engine.interrupted" in stdout and "truncated item" not in stdout
    table = stdout[stdout.index("first audio rx"):]
    assert "truncated at" not in stdout
    assert "interrupted" in table and "completed" in table
    # the latency clock starts on each service's end of the user's turn: figures, not "-"
    rows = [line for line in table.splitlines()[1:] if line[5:].lstrip().startswith("completed")]
    assert rows and all(row[19:33].strip().endswith("ms") and row[35:53].strip().endswith("ms") for row in rows), table
    with wave.open(str(out), "rb") as r:
        assert r.getframerate() == 16000 and r.getnframes() > 16000


def test_run_file_to_file_with_mock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = tmp_path / "q.wav", tmp_path / "a.wav"
    write_wav(src, voiced(16000, 600) + silence(16000, 300), 16000)
    assert main(["run", "--input", str(src), "--output", str(dst), "--provider", "mock"]) == 0
    with wave.open(str(dst), "rb") as r:
        assert r.getnframes() > 0 and r.getframerate() == 24000
    assert "reply audio written" in capsys.readouterr().out


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_missing_input_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--input", str(tmp_path / "nope.wav"), "--output", str(tmp_path / "a.wav"),
                 "--provider", "mock"]) == 1
    assert "not found" in _one_error_line(capsys)


def test_bad_input_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("this is not audio")
    assert main(["run", "--input", str(bad), "--output", str(tmp_path / "a.wav"), "--provider", "mock"]) == 1
    assert "bad.wav" in _one_error_line(capsys)


@pytest.mark.parametrize("command", ["run", "demo"])
def test_output_in_a_missing_directory_is_one_clean_line(tmp_path: Path, command: str) -> None:
    """As a user runs it (a subprocess: a traceback printed at interpreter exit counts too)."""
    src = tmp_path / "q.wav"
    write_wav(src, voiced(16000, 200), 16000)
    target = tmp_path / "missing-dir" / "a.wav"
    argv = ["run", "--input", str(src), "--provider", "mock"] if command == "run" else ["demo"]
    proc = subprocess.run([sys.executable, "-m", "voiceengine", *argv, "--output", str(target)],
                          capture_output=True, text=True, timeout=60)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode != 0
    assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "a.wav" in err[0] and "No such file or directory" in err[0]


def test_no_api_key(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    src = tmp_path / "q.wav"
    write_wav(src, voiced(16000, 200), 16000)
    assert main(["run", "--input", str(src), "--output", str(tmp_path / "a.wav")]) == 1
    assert "OPENAI_API_KEY" in _one_error_line(capsys)


def test_unreachable_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "q.wav"
    write_wav(src, voiced(16000, 200), 16000)
    assert main(["run", "--input", str(src), "--output", str(tmp_path / "a.wav"),
                 "--url", "ws://127.0.0.1:9/v1/realtime"]) == 1
    line = _one_error_line(capsys)
    assert "127.0.0.1" in line or "connect" in line.lower() or "reach" in line.lower()


def test_live_demo_without_key(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["demo", "--live"]) == 1
    assert "OPENAI_API_KEY" in _one_error_line(capsys)


def test_live_demo_on_gemini_needs_the_gemini_key(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    assert main(["demo", "--live", "--provider", "gemini"]) == 1
    assert "GEMINI_API_KEY" in _one_error_line(capsys)


def test_parser_commands() -> None:
    parser = build_parser()
    assert parser.parse_args(["demo"]).provider == "openai"
    assert parser.parse_args(["fake-server", "--provider", "openai-live"]).provider == "openai-live"
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--provider", "nope"])
    assert parser.parse_args(["fake-server", "--port", "9999"]).port == 9999
    assert parser.parse_args(["talk", "--provider", "mock"]).provider == "mock"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--input", "x.wav"])  # --output is required


def test_python_dash_m_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "voiceengine", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "demo" in proc.stdout and "fake-server" in proc.stdout
