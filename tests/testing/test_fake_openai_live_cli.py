"""``voiceengine fake-server --provider openai-live`` serves FakeOpenAILiveServer."""

from __future__ import annotations

import argparse
import asyncio
import json
import re

from websockets.asyncio.client import connect

from fakeserver_helpers import Announcements

from voiceengine.cli import build_parser, run_fake_server


async def test_fake_server_command_serves_openai_live() -> None:
    args: argparse.Namespace = build_parser().parse_args(
        ["fake-server", "--provider", "openai-live", "--port", "0", "--server-speed", "1000"])
    out = Announcements()
    task = asyncio.create_task(run_fake_server(args, out))
    try:
        await asyncio.wait_for(out.ready.wait(), 30)
        url = re.search(r"(ws://\S+)", out.text)
        assert url is not None and url.group(1).endswith("/v1/live/sessions")
        assert out.text.startswith("fake OpenAI Live server listening on ")
        async with connect(url.group(1), additional_headers={"Authorization": "Bearer k"}) as ws:
            await ws.send(json.dumps({"type": "session.start", "session": {"model": "gpt-live-1"}}))
            started = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert started["type"] == "session.started"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
