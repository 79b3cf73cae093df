"""Helpers for the fake-server tests: a raw websockets client over loopback (not a test module)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from typing import Any, AsyncIterator

import websockets

from voiceengine.testing import FakeRealtimeServer, FakeServerConfig
from voiceengine.testing.audio import synthesize

LONG_REPLY = " ".join(f"word{i}" for i in range(60))


class Client:
    """A thin JSON client for the fake server."""

    _ids = itertools.count(1)

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def send(self, type_: str, **fields: Any) -> str:
        event_id = f"evt_client_{next(self._ids)}"
        await self.ws.send(json.dumps({"type": type_, "event_id": event_id, **fields}))
        return event_id

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        ev = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.events.append(ev)
        return ev

    async def until(self, type_: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Events up to and including the first of ``type_``."""
        out = []
        while True:
            ev = await self.recv(timeout)
            out.append(ev)
            if ev["type"] == type_:
                return out

    async def append(self, pcm: bytes, chunk: int = 4800) -> None:
        for i in range(0, len(pcm), chunk):
            await self.send("input_audio_buffer.append", audio=base64.b64encode(pcm[i:i + chunk]).decode())


def speech(text: str = "hello there", silence_ms: int = 800) -> bytes:
    """Voiced-like audio followed by enough silence to end the turn."""
    return synthesize(text).pcm + bytes(48 * silence_ms)


@contextlib.asynccontextmanager
async def connect(server: FakeRealtimeServer, *, wait_created: bool = True, **kwargs: Any) -> AsyncIterator[Client]:
    kwargs.setdefault("additional_headers", server.auth_headers)
    kwargs.setdefault("open_timeout", 5)
    kwargs.setdefault("close_timeout", 1)
    async with websockets.connect(server.url, **kwargs) as ws:
        client = Client(ws)
        if wait_created:
            ev = await client.recv()
            assert ev["type"] == "session.created"
        yield client




class Announcements:
    """A text sink for ``run_fake_server``: wakes a waiter once the server announces its URL."""

    def __init__(self) -> None:
        self.text = ""
        self.ready = asyncio.Event()

    def write(self, text: str) -> int:
        self.text += text
        if "listening on" in self.text:
            self.ready.set()
        return len(text)

    def flush(self) -> None:
        pass
