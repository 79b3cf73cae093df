"""Raw-WebSocket helpers for the fake Gemini Live server tests."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voiceengine.testing import FakeGeminiLiveServer
from voiceengine.testing.audio import synthesize

SETUP: dict[str, Any] = {
    "model": "models/gemini-live-2.5-flash-preview",
    "generationConfig": {"responseModalities": ["AUDIO"]},
    "inputAudioTranscription": {},
    "outputAudioTranscription": {},
    "sessionResumption": {},
}


def speech(text: str = "hello there", silence_ms: int = 0) -> bytes:
    """Voiced PCM16 16 kHz (loud enough for the energy VAD), then ``silence_ms`` of silence."""
    return synthesize(text, 16000).pcm + bytes(32 * silence_ms)


def audio_frame(pcm: bytes, rate: int = 16000) -> str:
    return json.dumps({"realtimeInput": {"audio": {"mimeType": f"audio/pcm;rate={rate}",
                                                   "data": base64.b64encode(pcm).decode()}}})


async def connect_raw(server: FakeGeminiLiveServer, *, url: str | None = None,
                      headers: dict[str, str] | None = None) -> ClientConnection:
    return await connect(url or server.url, additional_headers=server.auth_headers if headers is None else headers,
                         ssl=server.ssl_context, max_size=2**24)


async def open_session(server: FakeGeminiLiveServer, setup: dict[str, Any] | None = None,
                       **kwargs: Any) -> ClientConnection:
    """Connect, send ``setup``, read ``setupComplete`` (and the first handle when granted)."""
    ws = await connect_raw(server, **kwargs)
    await ws.send(json.dumps({"setup": setup if setup is not None else SETUP}))
    first = json.loads(await ws.recv())
    assert "setupComplete" in first, first
    return ws


async def read_until(ws: ClientConnection, predicate: Any, limit: int = 10_000) -> list[dict[str, Any]]:
    """Frames up to and including the first one matching ``predicate``."""
    frames: list[dict[str, Any]] = []
    for _ in range(limit):
        frame = json.loads(await ws.recv())
        frames.append(frame)
        if predicate(frame):
            return frames
    raise AssertionError("predicate never matched")


def turn_complete(frame: dict[str, Any]) -> bool:
    return bool(frame.get("serverContent", {}).get("turnComplete"))


def content_of(frames: list[dict[str, Any]], part: str) -> list[Any]:
    return [f["serverContent"][part] for f in frames if part in f.get("serverContent", {})]


def reply_audio(frames: list[dict[str, Any]]) -> bytes:
    out = bytearray()
    for turn in content_of(frames, "modelTurn"):
        for p in turn["parts"]:
            if "inlineData" in p:
                out += base64.b64decode(p["inlineData"]["data"])
    return bytes(out)


def transcript(frames: list[dict[str, Any]]) -> str:
    return "".join(t["text"] for t in content_of(frames, "outputTranscription"))


def validate_all(server: FakeGeminiLiveServer) -> None:
    """Every well-formed frame the server sent validates as google-genai's LiveServerMessage."""
    from google.genai import types

    for frame in server.sent:
        types.LiveServerMessage.model_validate_json(json.dumps(frame))


async def closed_with(ws: Any) -> tuple[int | None, str]:
    """Read until the server closes ``ws`` (fails when it never does); its close code and reason."""
    with pytest.raises(ConnectionClosed):
        while True:
            await ws.recv()
    return ws.close_code, ws.close_reason
