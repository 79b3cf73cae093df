"""Issue 5 security: wss:// uses the default verified TLS context (a self-signed cert fails)."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.server import serve

from _shell_helpers import KEY
from voiceengine.exceptions import ConnectionFailed
from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider


def self_signed(tmp: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return context


async def test_limits_tls_default_context_refuses_an_unverified_certificate(tmp_path: Path) -> None:
    reached: list[str] = []

    async def handler(ws: object) -> None:  # pragma: no cover - the handshake must fail first
        reached.append("handler")

    async with serve(handler, "127.0.0.1", 0, ssl=self_signed(tmp_path)) as server:
        port = server.sockets[0].getsockname()[1]
        provider = OpenAIProvider(OpenAIConfig(api_key=KEY, url=f"wss://localhost:{port}/v1/realtime"))
        with pytest.raises(ConnectionFailed) as info:
            await provider.connect()
        await provider.disconnect()
    assert info.value.code == "tls_verify_failed" and info.value.fatal and not info.value.retryable
    assert KEY not in str(info.value)
    assert reached == []
