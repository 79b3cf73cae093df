"""The connection of the OpenAI Live provider: its URL and handshake headers.

Opens one WebSocket to ``config.url`` as given (no query: Live takes the model in
``session.start``) with ``Authorization: Bearer``, through the provider-neutral
:mod:`voiceengine.providers.websocket` (its handshake failure table: 401/403/4xx fatal,
408/425/429/5xx, timeouts and resets retryable, redirects refused, TLS failures fatal;
explicit ``max_size``, compression off, a scrubbing wire logger).
"""

from __future__ import annotations

from typing import Any

from .. import websocket
from ..websocket import WebSocketTransport
from .config import OpenAILiveConfig

__all__ = ["open_live_transport", "build_headers", "WIRE_LOGGER_NAME"]

WIRE_LOGGER_NAME = "voiceengine.providers.openai_live.wire"


def build_headers(config: OpenAILiveConfig) -> list[tuple[str, str]]:
    key = config.key
    return [("Authorization", f"Bearer {key}")] if key else []


async def open_live_transport(config: OpenAILiveConfig, **overrides: Any) -> WebSocketTransport:
    """Open the WebSocket (handshake done) or raise :class:`~voiceengine.exceptions.ConnectionFailed`."""
    return await websocket.open_transport(config.url, build_headers(config), config,
                                          wire_logger_name=WIRE_LOGGER_NAME, **overrides)
