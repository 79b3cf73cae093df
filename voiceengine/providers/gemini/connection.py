"""The connection of the Gemini Live provider: its handshake headers.

Opens one WebSocket to ``config.effective_url`` with the credential in a header (the API
key as ``x-goog-api-key``, an ephemeral token as ``Authorization: Token ...``; never in
the URL) through the provider-neutral :mod:`voiceengine.providers.websocket`, which maps
every way the handshake can fail to a typed :class:`~voiceengine.exceptions.ConnectionFailed`.

Gemini refuses a bad key *after* the upgrade (close 1007 "API key not valid" on the
first frame, 1008 without any credential): the runtime sees that as a session that was
never set up.
"""

from __future__ import annotations

from typing import Any

from .. import websocket
from ..websocket import WebSocketTransport
from .config import GeminiConfig

__all__ = ["WIRE_LOGGER_NAME", "open_transport", "build_headers"]

WIRE_LOGGER_NAME = "voiceengine.providers.gemini.wire"


def build_headers(config: GeminiConfig) -> list[tuple[str, str]]:
    return list(config.auth_headers().items())


async def open_transport(config: GeminiConfig, **overrides: Any) -> WebSocketTransport:
    """Open the WebSocket (handshake done) or raise :class:`ConnectionFailed`.

    ``overrides`` go to :func:`websockets.asyncio.client.connect` (tests: ``ssl=``)."""
    return await websocket.open_transport(config.effective_url, build_headers(config), config,
                                          wire_logger_name=WIRE_LOGGER_NAME, **overrides)
