"""Every WebSocket provider's wire log: keys masked, data frames shown as opcode + length."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection, serve

from voiceengine.providers.gemini.config import GeminiConfig
from voiceengine.providers.gemini.connection import WIRE_LOGGER_NAME as GEMINI_WIRE
from voiceengine.providers.gemini.connection import open_transport as open_gemini
from voiceengine.providers.openai_live.config import OpenAILiveConfig
from voiceengine.providers.openai_live.transport import WIRE_LOGGER_NAME as LIVE_WIRE
from voiceengine.providers.openai_live.transport import open_live_transport
from voiceengine.providers.websocket import WebSocketTransport

KEY = "sk-wire-log-abcdef1234567890"
AUDIO = '{"realtimeInput":{"audio":{"data":"AAECAwQFBgcICQ=="}}}'

Opener = Callable[[str], Awaitable[WebSocketTransport]]


def _gemini(url: str) -> Awaitable[WebSocketTransport]:
    return open_gemini(GeminiConfig(url=url, api_key=KEY))


def _live(url: str) -> Awaitable[WebSocketTransport]:
    return open_live_transport(OpenAILiveConfig(url=url, api_key=KEY))


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize(("opener", "logger_name"), [(_gemini, GEMINI_WIRE), (_live, LIVE_WIRE)])
async def test_wire_log_hides_key_and_audio(opener: Opener, logger_name: str) -> None:
    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    logger = logging.getLogger(logger_name)
    capture = _Capture()
    old_level = logger.level
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    try:
        async with serve(echo, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            transport = await opener(f"ws://127.0.0.1:{port}/ws")
            try:
                await transport.send(AUDIO)
                assert await transport.receive() == AUDIO
            finally:
                await transport.close()
    finally:
        logger.removeHandler(capture)
        logger.setLevel(old_level)
    sent: Any = [m for m in capture.messages if m.startswith("> TEXT")]
    assert sent == [f"> TEXT [{len(AUDIO)} bytes]"]
    assert not any(KEY in m or "AAECAwQF" in m for m in capture.messages)
