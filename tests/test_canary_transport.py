"""Transport rules that keep the key off the wire in clear or in the wrong hands.

* plain ``ws://`` with a key is refused unless the host is loopback (config time, before
  any socket exists), including URLs that only *look* like loopback;
* ``wss://`` uses the default verified TLS context (``ssl.create_default_context``:
  CERT_REQUIRED + hostname check): a self-signed loopback server is refused, and the
  same server is accepted once its certificate is trusted (so the refusal is the
  verification, not something else).

Redirect refusal is covered by
tests/providers/openai/test_provider_reconnect.py::test_redirects_are_refused.
"""

from __future__ import annotations

import secrets
import ssl
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from voiceengine.exceptions import ConfigurationError, ConnectionFailed
from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider
from voiceengine.providers.openai.connection import open_connection

# A self-signed EC P-256 certificate for 127.0.0.1/localhost, valid 2025-2124, made for
# this test only (no trust anywhere): the server side of the TLS checks below.
CERT_PEM = """-----BEGIN CERTIFICATE-----
MIIBSDCB8KADAgECAhRYqlCWdfKzrBqk76uCnjwaMVaksjAKBggqhkjOPQQDAjAU
MRIwEAYDVQQDDAkxMjcuMC4wLjEwIBcNMjUwMTAxMDAwMDAwWhgPMjEyNDEyMDgw
MDAwMDBaMBQxEjAQBgNVBAMMCTEyNy4wLjAuMTBZMBMGByqGSM49AgEGCCqGSM49
AwEHA0IABB/k26BaMsiWVphAC1F7nycX1PIaRvPnKqHt9+pW5c7xFkhES3RF46JK
HHFYHnwa66TWl3i9nX53xjWxy92bIDKjHjAcMBoGA1UdEQQTMBGHBH8AAAGCCWxv
Y2FsaG9zdDAKBggqhkjOPQQDAgNHADBEAiBLEHLctK2VG6WF6b1Z75y3dEwdag+r
zrZDAVLEwD2DywIgI9NlqR8LldVLf1kUwPQ2pqWaAijGsL+Mp6PuhU8hPWg=
-----END CERTIFICATE-----
"""
KEY_PEM = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgj9CDC3yNDF8OHUvQ
9HQnMkV81DcgZJ6Arwlvnu4DnE6hRANCAAQf5NugWjLIllaYQAtRe58nF9TyGkbz
5yqh7ffqVuXO8RZIREt0ReOiShxxWB58Guuk1pd4vZ1+d8Y1scvdmyAy
-----END PRIVATE KEY-----
"""  # test fixture key, not a secret: it protects nothing


@pytest.fixture
def canary() -> str:
    return "sk-canary-" + secrets.token_hex(24)


@pytest.mark.parametrize("url", [
    "ws://api.openai.com/v1/realtime",
    "ws://10.0.0.1/v1/realtime",
    "ws://127.0.0.1.nip.io/v1/realtime",          # a name that starts like loopback
    "ws://localhost.example.com/v1/realtime",
    "ws://127.0.0.1@evil.example/v1/realtime",    # userinfo trick: the host is evil.example
    "ws://[::ffff:8.8.8.8]/v1/realtime",
])
def test_plain_ws_with_a_key_off_loopback_is_refused(url: str, canary: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        OpenAIConfig(api_key=canary, url=url)
    assert "loopback" in str(info.value) and canary not in str(info.value)


@pytest.mark.parametrize("url", ["ws://127.0.0.1:9/v1/realtime", "ws://localhost:9/v1/realtime",
                                 "ws://[::1]:9/v1/realtime"])
def test_plain_ws_to_loopback_is_accepted(url: str, canary: str) -> None:
    assert OpenAIConfig(api_key=canary, url=url).is_loopback


def _server_context() -> ssl.SSLContext:
    import os
    import tempfile

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain only reads files; the PEMs are written to a private temp dir.
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        with open(cert, "w") as f:
            f.write(CERT_PEM)
        with open(key, "w") as f:
            f.write(KEY_PEM)
        ctx.load_cert_chain(cert, key)
    return ctx


async def _echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def test_wss_uses_the_default_verified_context(canary: str, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[ssl.SSLContext] = []
    original = ssl.create_default_context

    def spy(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        ctx = original(*args, **kwargs)
        made.append(ctx)
        return ctx

    monkeypatch.setattr(ssl, "create_default_context", spy)
    async with serve(_echo, "127.0.0.1", 0, ssl=_server_context()) as server:
        port = server.sockets[0].getsockname()[1]
        provider = OpenAIProvider(OpenAIConfig(api_key=canary, url=f"wss://127.0.0.1:{port}/v1/realtime",
                                               max_reconnect_attempts=0, connect_timeout_s=5.0))
        with pytest.raises(ConnectionFailed) as info:
            await provider.connect()
        await provider.disconnect()
    assert made, "ssl.create_default_context was not used for wss://"
    assert all(ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname for ctx in made)
    message = str(info.value)
    # the wording is the provider's ("certificate verify failed", "certificate verification failed", ...)
    assert "certificate" in message.lower() and "verif" in message.lower(), message
    assert canary not in message and canary not in repr(info.value)


async def test_same_server_is_accepted_once_its_certificate_is_trusted(canary: str) -> None:
    """Positive control: the refusal above is certificate verification, nothing else."""
    trusting = ssl.create_default_context(cadata=CERT_PEM)
    async with serve(_echo, "127.0.0.1", 0, ssl=_server_context()) as server:
        port = server.sockets[0].getsockname()[1]
        config = OpenAIConfig(api_key=canary, url=f"wss://127.0.0.1:{port}/v1/realtime")
        ws = await open_connection(config, ssl=trusting)
        try:
            await ws.send("ping")
            assert await ws.recv() == "ping"
        finally:
            await ws.close()
