"""The transport of the Gemini Live provider: the only client-side ``websockets`` import here.

Opens one WebSocket to ``config.effective_url`` with the credential in a header (the API
key as ``x-goog-api-key``, an ephemeral token as ``Authorization: Token ...``; never in
the URL) and maps every way the handshake can fail to a typed
:class:`~voiceengine.exceptions.ConnectionFailed` (the mapping and the transport wrapper
are the provider-neutral ones of :mod:`voiceengine.providers.openai.connection`).

Gemini refuses a bad key *after* the upgrade (close 1007 "API key not valid" on the
first frame, 1008 without any credential): the runtime sees that as a session that was
never set up.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import connect as _ws_connect

from ...secrets import SecretScrubbingFilter
from ..openai.connection import WebSocketTransport, handshake_error
from .config import GeminiConfig

__all__ = ["WIRE_LOGGER_NAME", "open_transport", "build_headers"]

WIRE_LOGGER_NAME = "voiceengine.providers.gemini.wire"

log = logging.getLogger("voiceengine.providers.gemini.connection")


def wire_logger() -> logging.Logger:
    """The logger handed to websockets (request headers scrubbed)."""
    logger = logging.getLogger(WIRE_LOGGER_NAME)
    if not any(isinstance(f, SecretScrubbingFilter) for f in logger.filters):
        logger.addFilter(SecretScrubbingFilter())
    return logger


def build_headers(config: GeminiConfig) -> list[tuple[str, str]]:
    return list(config.auth_headers().items())


class _NoRedirectConnect(_ws_connect):
    """websockets' ``connect`` with redirects refused (a 3xx would carry the key elsewhere)."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


async def open_transport(config: GeminiConfig, **overrides: Any) -> WebSocketTransport:
    """Open the WebSocket (handshake done) or raise :class:`ConnectionFailed`.

    ``overrides`` go to :func:`websockets.asyncio.client.connect` (tests: ``ssl=``)."""
    url = config.effective_url
    options: dict[str, Any] = dict(
        additional_headers=build_headers(config),
        user_agent_header="voiceengine (websockets)",
        compression=None,
        max_size=config.max_size_bytes,
        ping_interval=config.ping_interval_s,
        ping_timeout=config.ping_timeout_s,
        open_timeout=config.open_timeout_s,
        close_timeout=config.close_timeout_s,
        logger=wire_logger(),
    )
    if config.is_loopback:
        options["proxy"] = None  # a system proxy must not see loopback test traffic
    options.update(overrides)
    try:
        connection = await _NoRedirectConnect(url, **options)
    except Exception as exc:
        failure = handshake_error(exc)
        log.debug("connect to %s failed: %s", urlsplit(url).netloc, failure.message)
    else:
        return WebSocketTransport(connection, close_timeout_s=config.close_timeout_s)
    # Raised outside the except block, without cause, context or inner frames: those hold
    # the request headers (the key, in clear), and error reporters record frame locals.
    del options
    failure.__cause__ = failure.__context__ = None
    raise failure.with_traceback(None)
