"""``voiceengine fake-server --provider gemini`` serves FakeGeminiLiveServer."""

from __future__ import annotations

import argparse
import asyncio
import json
import re

from websockets.asyncio.client import connect

from fakeserver_helpers import Announcements

from voiceengine.cli import build_parser, run_fake_server


async def test_fake_server_command_serves_gemini() -> None:
    args: argparse.Namespace = build_parser().parse_args(
        ["fake-server", "--provider", "gemini", "--port", "0", "--server-speed", "1000"])
    assert args.provider == "gemini"
    out = Announcements()
    task = asyncio.create_task(run_fake_server(args, out))
    try:
        await asyncio.wait_for(out.ready.wait(), 10)
        url = re.search(r"(ws://\S+)", out.text)
        assert url is not None and "GenerativeService.BidiGenerateContent" in url.group(1)
        assert out.text.startswith("fake Gemini Live server listening on ")
        async with connect(url.group(1), additional_headers={"x-goog-api-key": "k"}) as ws:
            await ws.send(json.dumps({"setup": {"model": "models/m", "outputAudioTranscription": {}}}))
            assert "setupComplete" in json.loads(await ws.recv())
            await ws.send(json.dumps({"realtimeInput": {"text": "ping"}}))
            texts = []
            while True:
                frame = json.loads(await ws.recv())
                content = frame.get("serverContent", {})
                texts.append(content.get("outputTranscription", {}).get("text", ""))
                if content.get("turnComplete"):
                    break
        assert "".join(texts) == "You said ping"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert build_parser().parse_args(["fake-server"]).provider == "openai"
