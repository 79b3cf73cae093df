"""The transport of the OpenAI Live provider: this package's only ``websockets`` import.

Opens one WebSocket to ``config.url`` as given (no query: Live takes the model in
``session.start``) with ``Authorization: Bearer``, and maps every way the handshake can fail
to :class:`~voiceengine.exceptions.ConnectionFailed` with the Realtime transport's table
(:func:`voiceengine.providers.openai.connection.handshake_error`: 401/403/4xx fatal,
408/425/429/5xx, timeouts and resets retryable, redirects refused, TLS failures fatal).
The open connection is the Realtime provider's
:class:`~voiceengine.providers.openai.connection.WebSocketTransport` (nothing in it is
Realtime-specific).
``max_size`` is explicit, compression off, handshake logs go to a scrubbing logger, and a
raised failure carries no traceback frames that hold the request headers.
"""

from __future__ import annotations

import logging
from typing import Any

from websockets.asyncio.client import connect as _ws_connect

from ...secrets import SecretScrubbingFilter
from ..openai.connection import WebSocketTransport, handshake_error
from .config import OpenAILiveConfig

__all__ = ["open_live_transport", "WIRE_LOGGER_NAME"]

WIRE_LOGGER_NAME = "voiceengine.providers.openai_live.wire"

log = logging.getLogger("voiceengine.providers.openai_live.transport")


def _wire_logger() -> logging.Logger:
    """websockets logs request headers (the key) at DEBUG: this logger scrubs them."""
    logger = logging.getLogger(WIRE_LOGGER_NAME)
    if not any(isinstance(f, SecretScrubbingFilter) for f in logger.filters):
        logger.addFilter(SecretScrubbingFilter())
    return logger


class _NoRedirectConnect(_ws_connect):
    """websockets' ``connect`` with redirects refused (a 3xx must not move the key elsewhere)."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


async def open_live_transport(config: OpenAILiveConfig, **overrides: Any) -> WebSocketTransport:
    """Open the WebSocket (handshake done) or raise :class:`~voiceengine.exceptions.ConnectionFailed`."""
    headers: list[tuple[str, str]] = []
    key = config.key
    if key:
        headers.append(("Authorization", f"Bearer {key}"))
    options: dict[str, Any] = dict(
        additional_headers=headers,
        user_agent_header="voiceengine (websockets)",
        compression=None,
        max_size=config.max_size_bytes,
        ping_interval=config.ping_interval_s,
        ping_timeout=config.ping_timeout_s,
        open_timeout=config.open_timeout_s,
        close_timeout=config.close_timeout_s,
        logger=_wire_logger(),
    )
    if config.is_loopback:
        options["proxy"] = None  # a system proxy must not see loopback test traffic
    options.update(overrides)
    try:
        connection = await _NoRedirectConnect(config.url, **options)
    except Exception as exc:
        failure = handshake_error(exc)
        log.debug("connect to the Live endpoint failed: %s", failure.message)
    else:
        return WebSocketTransport(connection, close_timeout_s=config.close_timeout_s)
    # raised outside the except block, with no cause, context or inner frames: those hold
    # the request headers (the key, in clear), and error reporters record frame locals
    del options, headers, key
    failure.__cause__ = failure.__context__ = None
    raise failure.with_traceback(None)

