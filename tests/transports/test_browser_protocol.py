"""``/browser`` spoken by a Python client: the page protocol, played reports, bad input."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import websockets

from voiceengine.audio import resample
from voiceengine.testing import FakeRealtimeServer, ScriptedResponse
from voiceengine.testing.audio import synthesize

from transport_helpers import openai_factory, with_responses

pytestmark = pytest.mark.timeout(90)

RATE = 48000


def speech(ms: int) -> bytes:
    words = synthesize("hello there how are you doing today and tomorrow", sample_rate=24000).pcm
    return resample(words, 24000, RATE)[: RATE * 2 * ms // 1000]


class Page:
    """The console page's side of the protocol, with a player whose position the test sets."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.audio = bytearray()
        self.messages: list[dict[str, Any]] = []
        self.clear_at: int | None = None
        self.closed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if isinstance(frame, bytes):
                    self.audio += frame
                else:
                    msg = json.loads(frame)
                    self.messages.append(msg)
                    if msg["type"] == "clear" and self.clear_at is None:
                        self.clear_at = len(self.audio)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()

    @property
    def received_ms(self) -> float:
        return len(self.audio) / (RATE * 2 / 1000)

    async def send_audio(self, pcm: bytes) -> None:
        step = RATE * 2 // 50
        for off in range(0, len(pcm), step):
            await self.ws.send(pcm[off:off + step])

    async def until(self, predicate: Any, timeout: float = 20) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            assert loop.time() < deadline, "timed out"
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self.reader, return_exceptions=True)

    @property
    def close_code(self) -> int | None:
        rcvd = self.ws.protocol.close_rcvd
        return rcvd.code if rcvd is not None else None


async def _page(url: str, *, hello: dict[str, Any] | None = None) -> Page:
    ws = await websockets.connect(url, max_size=2**22)
    page = Page(ws)
    await ws.send(json.dumps(hello or {"type": "hello", "sampleRate": RATE, "outputSampleRate": RATE}))
    return page


async def test_page_session_converses_and_barge_in_truncates_at_the_played_report(
        fake: FakeRealtimeServer, serve_with: Any) -> None:
    with_responses(fake, [ScriptedResponse(text=" ".join(["one", "two", "three", "four", "five", "six"] * 4))])
    served = await serve_with(openai_factory(fake))
    page = await _page(served.browser_url + "?lang=de")
    try:
        await page.until(lambda: any(m["type"] == "ready" for m in page.messages))
        call = next(iter(served.host.calls))
        assert call.info.parameters == {"lang": "de"}
        await page.send_audio(speech(600) + bytes(RATE * 2 * 900 // 1000))
        await page.until(lambda: page.received_ms >= 1000)
        played = page.received_ms - 250.0  # the page's player is 250 ms behind what arrived
        await page.ws.send(json.dumps({"type": "played", "positionMs": played}))
        await page.until(lambda: call.engine._sink.position.heard_ms == played)
        await page.send_audio(speech(300))  # barge in; no more played reports: the position stays
        await page.until(lambda: page.clear_at is not None)
        truncate = await fake.wait_for_received(lambda e: e["type"] == "conversation.item.truncate", timeout=10)
        resampler_ms = call.engine.metrics.output_resampler_delay_ms
        assert played - 1 <= truncate["audio_end_ms"] <= played + resampler_ms + 1
        names = [m.get("name") for m in page.messages if m["type"] == "event"]
        assert "speech.started" in names and "engine.interrupted" in names
        assert any(m["type"] == "transcript" and m["role"] == "assistant" for m in page.messages)
        await page.ws.send(json.dumps({"type": "bye"}))
        await asyncio.wait_for(page.closed.wait(), 10)
        assert page.close_code == 1000
    finally:
        await page.close()
    await page.until(lambda: not served.host.calls and not fake.connections)


@pytest.mark.parametrize(("first", "code"), [
    (b"\x00\x00", 1008),                                                   # audio before hello
    ("not json", 1007),
    (json.dumps({"type": "played", "positionMs": 1}), 1008),              # before hello
    (json.dumps({"type": "hello", "sampleRate": 4000, "outputSampleRate": 48000}), 1007),
    (json.dumps({"type": "hello", "sampleRate": 48000, "outputSampleRate": "fast"}), 1007),
    (json.dumps({"no": "type"}), 1007),
])
async def test_bad_opening_frames_close_clearly(fake: FakeRealtimeServer, serve_with: Any,
                                                first: str | bytes, code: int) -> None:
    served = await serve_with(openai_factory(fake))
    ws = await websockets.connect(served.browser_url)
    page = Page(ws)
    try:
        await ws.send(first)
        await asyncio.wait_for(page.closed.wait(), 10)
        assert page.close_code == code
    finally:
        await page.close()
    assert not served.host.calls


@pytest.mark.parametrize("bad", [
    b"\x01\x02\x03",                                                       # odd byte count
    json.dumps({"type": "played", "positionMs": -5}),
    json.dumps({"type": "text", "text": ""}),
    json.dumps({"type": "dance"}),
])
async def test_bad_frames_in_a_session_are_dropped_with_a_warning(
        fake: FakeRealtimeServer, serve_with: Any, caplog: pytest.LogCaptureFixture, bad: str | bytes) -> None:
    caplog.set_level(logging.WARNING, logger="voiceengine.transports")
    served = await serve_with(openai_factory(fake))
    page = await _page(served.browser_url)
    try:
        await page.until(lambda: any(m["type"] == "ready" for m in page.messages))
        await page.ws.send(bad)
        await page.ws.send(json.dumps({"type": "text", "text": "still there?"}))
        await fake.wait_for(lambda e: e["type"] == "response.done", timeout=20)
        assert not page.closed.is_set()
    finally:
        await page.close()
    assert sum("frame dropped" in r.getMessage() for r in caplog.records) == 1
