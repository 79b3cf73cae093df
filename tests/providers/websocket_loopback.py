"""What the WebSocket transport tests share: the connection settings of a loopback test
server, the payload lengths around each frame-header form, a self-signed TLS certificate."""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from voiceengine.providers.websocket import WebSocketTransport, open_transport

# lengths around each header form: 7-bit, 16-bit and 64-bit payload lengths
EDGE_LENGTHS = (0, 1, 125, 126, 127, 65535, 65536, 70000)


@dataclass
class LoopbackSettings:
    max_size_bytes: int = 2**20
    ping_interval_s: float | None = None
    ping_timeout_s: float | None = None
    open_timeout_s: float = 5.0
    close_timeout_s: float = 1.0
    is_loopback: bool = True


async def open_loopback(url: str, *, tls: ssl.SSLContext | None = None, **settings: Any) -> WebSocketTransport:
    """A transport to a loopback test server (``settings`` override :class:`LoopbackSettings`;
    ``tls``: a wss:// server's certificate is for ``localhost``)."""
    overrides: dict[str, Any] = {} if tls is None else {"ssl": tls, "server_hostname": "localhost"}
    return await open_transport(url, [], LoopbackSettings(**settings), wire_logger_name="voiceengine.tests.websocket",
                                **overrides)


def self_signed(tmp: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for ``localhost`` with a fresh self-signed certificate, and the
    certificate's path (what a client that trusts it loads)."""
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
    return context, tmp / "cert.pem"
