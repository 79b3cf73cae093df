"""The transport helpers of the OpenAI provider: URL, headers, log scrubbing, error mapping."""

from __future__ import annotations

import logging

import pytest
from websockets.frames import Close, Frame, Opcode

from voiceengine.exceptions import ConnectionFailed
from voiceengine.providers.openai import OpenAIConfig
from voiceengine.providers.openai.connection import (
    WIRE_LOGGER_NAME,
    build_headers,
    build_url,
    wire_logger,
)
from voiceengine.providers.websocket import handshake_error

KEY = "sk-wire-test-abcdef123456"


def test_bearer_header_and_model_query() -> None:
    config = OpenAIConfig(api_key=KEY, extra_headers={"X-Trace": "1", "Authorization": "Bearer other"})
    headers = dict(build_headers(config))
    assert headers == {"X-Trace": "1", "Authorization": f"Bearer {KEY}"}  # ours replaces the user's
    assert build_url(config) == "wss://api.openai.com/v1/realtime?model=gpt-realtime"


def test_beta_codec_adds_its_header() -> None:
    headers = dict(build_headers(OpenAIConfig(api_key=KEY, codec="beta")))
    assert headers["OpenAI-Beta"] == "realtime=v1"
    assert "OpenAI-Beta" not in dict(build_headers(OpenAIConfig(api_key=KEY)))


def test_azure_uses_api_key_header_and_deployment() -> None:
    config = OpenAIConfig(api_key=KEY, url="wss://res.openai.azure.com/openai/realtime?api-version=2025-04-01-preview",
                          azure_deployment="my-realtime")
    headers = dict(build_headers(config))
    assert headers == {"api-key": KEY}
    assert build_url(config).endswith("?api-version=2025-04-01-preview&deployment=my-realtime")


def test_wire_logger_masks_keys_and_audio_payloads() -> None:
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = wire_logger()
    assert logger.name == WIRE_LOGGER_NAME
    handler = Capture()
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("> %s: %s", "Authorization", f"Bearer {KEY}")
        payload = b'{"type":"input_audio_buffer.append","audio":"AAECAwQFBgcICQ=="}'
        logger.debug("> %s", Frame(Opcode.TEXT, payload))
        logger.debug("< %s", Frame(Opcode.CLOSE, Close(1001, "going away").serialize()))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    messages = [r.getMessage() for r in records]
    assert messages[0] == "> Authorization: Bearer ***"
    assert messages[1] == f"> TEXT [{len(payload)} bytes]"
    assert "1001" in messages[2]  # control frames keep their useful detail
    assert not any(KEY in m or "AAECAwQF" in m for m in messages)


@pytest.mark.parametrize(("exc", "code", "retryable", "fatal"), [
    (TimeoutError(), "timeout", True, False),
    (ConnectionRefusedError(111, "refused"), "os_error", True, False),
])
def test_transport_errors_map_to_connection_failed(exc: BaseException, code: str, retryable: bool,
                                                   fatal: bool) -> None:
    failure = handshake_error(exc)
    assert isinstance(failure, ConnectionFailed)
    assert (failure.code, failure.retryable, failure.fatal) == (code, retryable, fatal)
