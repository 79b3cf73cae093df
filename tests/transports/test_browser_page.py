"""The console page in a real browser: headless Chromium with a fake microphone fed from a WAV file.

Chromium is driven over the DevTools protocol (``--remote-debugging-port``, websockets). The
page opens at ``/?autostart=1``, captures the fake microphone through its AudioWorklet,
streams it to ``/browser``, and plays the fake server's reply. Checked: the server heard the
audio, the page played the reply (``voiceengineStats.playedMs > 0``) and showed its
transcript, and the console logged no error. Skipped only when no Chromium is installed
(CI installs the Debian package ``chromium``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from voiceengine.audio import resample
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig, synthesize

from transport_helpers import eventually, openai_factory

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p),
                None)

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install "
                                                          "chromium); CI installs it")]


class DevTools:
    """A minimal Chrome DevTools protocol client over one page target's WebSocket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.errors: list[str] = []
        self.console: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg:
                fut = self.pending.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                continue
            method, params = msg.get("method"), msg.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                self.console.append(f"{params.get('type')}: {text}")
                if params.get("type") in ("error", "assert"):
                    self.errors.append(text)
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                self.errors.append(str(details.get("exception", {}).get("description") or details.get("text")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                self.errors.append(params["entry"].get("text", ""))

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = fut
        await self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        reply = await asyncio.wait_for(fut, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self.reader, return_exceptions=True)


def _write_mic_wav(path: Path) -> None:
    """What the fake microphone says: speech-like tones (48 kHz), then silence for the reply."""
    words = synthesize("hello there how are you doing today", sample_rate=24000).pcm
    speech = resample(words, 24000, 48000)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(bytes(48000 * 2 // 2) + speech + bytes(48000 * 2 * 6))


async def _devtools_port(profile: Path, proc: asyncio.subprocess.Process) -> int:
    marker = profile / "DevToolsActivePort"
    for _ in range(600):
        if marker.exists():
            text = marker.read_text().split()
            if text:
                return int(text[0])
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    raise AssertionError("Chromium did not open its DevTools port")


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path]]:
    wav = tmp_path / "mic.wav"
    _write_mic_wav(wav)
    profile = tmp_path / "profile"
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
        "--disable-extensions", "--disable-background-networking", "--disable-component-update",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop", "--autoplay-policy=no-user-gesture-required",
        "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
        "about:blank", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        yield proc, profile
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _page_target(port: int) -> str:
    from http_get import http_get

    for _ in range(200):
        status, _, body = await http_get(port, "/json/list")
        if status == 200:
            pages = [t for t in json.loads(body) if t.get("type") == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
        await asyncio.sleep(0.05)
    raise AssertionError("no page target in Chromium")


async def test_console_page_holds_a_conversation_in_headless_chromium(chromium: Any, serve_with: Any) -> None:
    proc, profile = chromium
    async with FakeRealtimeServer(FakeServerConfig(responses=["Hello from the fake server."], speed=20.0)) as fake:
        served = await serve_with(openai_factory(fake))
        devtools_port = await _devtools_port(profile, proc)
        ws = await websockets.connect(await _page_target(devtools_port), max_size=2**24)
        tools = DevTools(ws)
        try:
            await tools.call("Runtime.enable")
            await tools.call("Log.enable")
            await tools.call("Page.enable")
            await tools.call("Page.navigate", url=f"http://127.0.0.1:{served.server.port}/?autostart=1")
            stats: dict[str, Any] = {}
            for _ in range(1200):  # up to ~60 s on a loaded machine
                stats = await tools.evaluate("JSON.stringify(window.voiceengineStats || null)") or "null"
                stats = json.loads(stats) or {}
                replied = any(t.get("role") == "assistant" and t.get("final") for t in stats.get("transcript", []))
                if stats.get("playedMs", 0) > 300 and replied:
                    break
                await asyncio.sleep(0.05)
            assert stats.get("state") == "live", (stats, tools.console)
            # the server heard the microphone: the fake server's VAD committed a user turn
            assert fake.input_audio_bytes > 24000 * 2, fake.input_audio_bytes
            assert any(e["type"] == "input_audio_buffer.committed" for e in fake.sent)
            assert any(e["type"] == "response.done" for e in fake.sent)
            # the page played the reply and shows its transcript
            assert stats["sentMs"] > 1000 and stats["receivedMs"] > 300 and stats["playedMs"] > 300, stats
            assistant = [t["text"] for t in stats["transcript"] if t["role"] == "assistant" and t["final"]]
            assert assistant and "Hello from the fake server" in assistant[0]
            await tools.evaluate("document.getElementById('stop').click()")
            await eventually(lambda: not served.host.calls, interval=0.05)
            assert not served.host.calls  # the page's bye ended the call and its provider session
            assert tools.errors == [], tools.errors
        finally:
            await tools.close()
