"""Every complete Python example in README.md and docs/*.md runs, as written, against the fake server.

The convention (README.md, "Examples in the docs"):

* a ```python block is a complete program unless the line before its fence is
  ``<!-- fragment -->``; fragments are excerpts (they use names defined elsewhere) and are
  only compiled here (top-level ``await`` allowed);
* an example that talks to OpenAI reads its key from ``OPENAI_API_KEY`` and its endpoint
  from ``VOICEENGINE_URL`` (unset: the real API). This test starts a
  :class:`~voiceengine.testing.FakeRealtimeServer` on 127.0.0.1 and sets both, so nothing
  reaches the network;
* an example that listens to a microphone takes a WAV file instead when given one as its
  first argument; this test passes ``question.wav`` (a synthesized question) from the
  example's working directory.

Each example runs in its own interpreter (it calls ``asyncio.run`` itself), in a fresh
temporary directory. A failure names the file and the line of the block, with its stderr.
"""

from __future__ import annotations

import ast
import asyncio
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from voiceengine.audio.wav import WavSink
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig
from voiceengine.testing.audio import synthesize

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FRAGMENT_MARK = "<!-- fragment -->"
TEST_KEY = "sk-docs-example-not-a-key"
RUN_TIMEOUT_S = 90.0
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)


@dataclass(frozen=True, slots=True, kw_only=True)
class DocBlock:
    path: Path
    line: int          # 1-based line of the opening fence
    code: str
    fragment: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def python_blocks(path: Path) -> list[DocBlock]:
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        if match.group(1).strip().split(" ")[0] != "python":
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        blocks.append(DocBlock(path=path, line=text.count("\n", 0, match.start()) + 1, code=match.group(2),
                               fragment=before == FRAGMENT_MARK))
    return blocks


ALL_BLOCKS = [block for path in DOC_FILES for block in python_blocks(path)]
COMPLETE = [b for b in ALL_BLOCKS if not b.fragment]
FRAGMENTS = [b for b in ALL_BLOCKS if b.fragment]


def test_the_docs_have_examples_to_run() -> None:
    assert len(COMPLETE) >= 8 and FRAGMENTS, "the extractor found nothing: the fence pattern is broken"
    assert {b.path.name for b in COMPLETE} >= {"README.md", "engine.md", "provider_quickstart.md"}


@pytest.mark.parametrize("block", FRAGMENTS, ids=lambda b: b.where)
def test_fragment_compiles(block: DocBlock) -> None:
    try:
        compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as exc:
        pytest.fail(f"{block.where}: the fragment is not valid Python: {exc}")


def _question_wav(path: Path) -> None:
    """What the microphone examples hear instead: a spoken-like question, then silence."""
    with WavSink(path, sample_rate=24000) as sink:
        sink.write(synthesize("what time is it").pcm + bytes(48 * 1200))


@pytest.mark.parametrize("block", COMPLETE, ids=lambda b: b.where)
async def test_example_runs(block: DocBlock, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(block.code, encoding="utf-8")
    _question_wav(tmp_path / "question.wav")
    config = FakeServerConfig(speed=math.inf, responses=["Hello from the docs test."])
    async with FakeRealtimeServer(config) as server:
        env = {**os.environ, "OPENAI_API_KEY": TEST_KEY, "VOICEENGINE_URL": server.url,
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), "question.wav", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.communicate()
            pytest.fail(f"{block.where}: the example did not finish within {RUN_TIMEOUT_S:.0f} s")
        handshakes = server.handshakes
    if proc.returncode != 0:
        pytest.fail(f"{block.where}: the example exited with {proc.returncode}\n"
                    f"--- stderr (tail) ---\n{stderr.decode(errors='replace')[-4000:]}\n"
                    f"--- stdout (tail) ---\n{stdout.decode(errors='replace')[-1500:]}", pytrace=False)
    if "VOICEENGINE_URL" in block.code:
        assert handshakes > 0, f"{block.where}: reads VOICEENGINE_URL but never reached the fake server"
