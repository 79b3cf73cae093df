"""The smoke scripts under tests/smoke/ run green in their default (offline) mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "tests" / "smoke"


def run_script(name: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}  # never go live from the suite
    return subprocess.run([sys.executable, str(SMOKE / name)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize(("script", "steps"), [
    ("smoke_mock_provider.py", ["OK connect", "OK text turn", "OK audio turn", "OK function call",
                                "OK manual turn", "OK interrupt", "OK disconnect"]),
    ("smoke_openai_provider.py", ["OK connect", "OK text turn", "OK audio turn", "OK function call",
                                  "OK interrupt", "OK disconnect", "OK audio bytes", "OK server errors"]),
])
def test_smoke_script_passes(script: str, steps: list[str]) -> None:
    result = run_script(script)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for step in steps:
        assert any(line.startswith(step) for line in lines), f"missing {step!r} in:\n{result.stdout}"
    assert lines[-1] == "SMOKE OK"


def test_live_mode_without_a_key_is_a_usage_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    result = subprocess.run([sys.executable, str(SMOKE / "smoke_openai_provider.py"), "--live"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "OPENAI_API_KEY" in result.stderr
