"""The connection of the OpenAI Realtime provider: its endpoint URL and handshake headers.

The WebSocket itself (limits, refused redirects, scrubbed wire log, the handshake failure
table, the runtime's transport) is the provider-neutral :mod:`voiceengine.providers.websocket`;
this module only says where to connect and how to authenticate. It knows nothing about
the Realtime protocol (that is :mod:`.session`, sans-I/O) nor about tasks and reconnects
(that is :mod:`~voiceengine.providers.runtime`).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection

from .. import websocket
from ..websocket import WebSocketTransport
from .codecs import make_codec
from .config import OpenAIConfig

__all__ = [
    "WIRE_LOGGER_NAME",
    "build_url",
    "build_headers",
    "open_connection",
    "open_transport",
    "wire_logger",
]

WIRE_LOGGER_NAME = "voiceengine.providers.openai.wire"


def wire_logger() -> logging.Logger:
    """The logger handed to websockets for this provider (scrubbing filter attached)."""
    return websocket.wire_logger(WIRE_LOGGER_NAME)


def build_url(config: OpenAIConfig) -> str:
    """The endpoint URL with the ``model`` (or Azure ``deployment``) query parameter.

    Parameters already in ``config.url`` win, so a full Azure URL with ``api-version``
    and ``deployment`` can be given as is.
    """
    parts = urlsplit(config.url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = {name for name, _ in query}
    if config.azure_deployment:
        if "deployment" not in names and "model" not in names:
            query.append(("deployment", config.azure_deployment))
    elif "model" not in names:
        query.append(("model", config.model))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _codec_headers(config: OpenAIConfig) -> dict[str, str]:
    """Headers the selected codec needs (the beta dialect is opted into by a header)."""
    return dict(make_codec(config.codec).headers)


def build_headers(config: OpenAIConfig) -> list[tuple[str, str]]:
    """Handshake headers: user extras, codec headers, then authentication (which wins)."""
    headers: dict[str, str] = {}
    for name, value in (config.extra_headers or {}).items():
        headers[str(name)] = str(value)
    headers.update(_codec_headers(config))
    # Drop any user-supplied credential header so ours is the only one sent.
    for name in list(headers):
        if name.lower() in ("authorization", "api-key"):
            del headers[name]
    key = config.key
    if key:
        if config.azure_deployment:
            headers["api-key"] = key
        else:
            headers["Authorization"] = f"Bearer {key}"
    return list(headers.items())


async def open_connection(config: OpenAIConfig, **overrides: Any) -> ClientConnection:
    """Open the WebSocket or raise :class:`~voiceengine.exceptions.ConnectionFailed`.

    ``overrides`` go to :func:`websockets.asyncio.client.connect` (tests; e.g. ``ssl=``).
    The caller owns the connection and must close it.
    """
    return await websocket.open_connection(build_url(config), build_headers(config), config,
                                           wire_logger_name=WIRE_LOGGER_NAME, **overrides)


async def open_transport(config: OpenAIConfig, **overrides: Any) -> WebSocketTransport:
    """:func:`open_connection` wrapped as the runtime's transport."""
    return await websocket.open_transport(build_url(config), build_headers(config), config,
                                          wire_logger_name=WIRE_LOGGER_NAME, **overrides)
