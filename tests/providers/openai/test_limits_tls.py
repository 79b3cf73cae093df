"""Issue 5 security: wss:// uses the default verified TLS context (a self-signed cert fails)."""

from __future__ import annotations

from pathlib import Path

import pytest
from websockets.asyncio.server import serve

from _shell_helpers import KEY
from voiceengine.exceptions import ConnectionFailed
from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider

from tests.providers.websocket_loopback import self_signed


async def test_limits_tls_default_context_refuses_an_unverified_certificate(tmp_path: Path) -> None:
    reached: list[str] = []

    async def handler(ws: object) -> None:  # pragma: no cover - the handshake must fail first
        reached.append("handler")

    async with serve(handler, "127.0.0.1", 0, ssl=self_signed(tmp_path)[0]) as server:
        port = server.sockets[0].getsockname()[1]
        provider = OpenAIProvider(OpenAIConfig(api_key=KEY, url=f"wss://localhost:{port}/v1/realtime"))
        with pytest.raises(ConnectionFailed) as info:
            await provider.connect()
        await provider.disconnect()
    assert info.value.code == "tls_verify_failed" and info.value.fatal and not info.value.retryable
    assert KEY not in str(info.value)
    assert reached == []
