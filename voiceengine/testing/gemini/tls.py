"""A self-signed certificate for 127.0.0.1, made on the fly, and the SSL contexts using it.

google-genai forces ``wss`` when it is given an API key, so a fake server that its own
client can reach serves TLS. The certificate is for ``127.0.0.1`` and ``localhost`` only,
valid for a day, and never written anywhere but a private temporary directory that is
removed as soon as the server context has loaded it.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SelfSignedTls"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SelfSignedTls:
    """A server context presenting a fresh self-signed certificate, and a client context trusting it."""

    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    certificate_pem: bytes

    @classmethod
    def create(cls) -> "SelfSignedTls":
        # cryptography is a test dependency: imported only when a TLS fake server is asked for
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "voiceengine fake Gemini Live")])
        now = datetime.datetime.now(datetime.timezone.utc)
        names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(prefix="voiceengine-fake-tls-") as tmp:
            cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            cert_path.write_bytes(cert_pem)
            key_path.touch(mode=0o600)
            key_path.write_bytes(key_pem)
            server.load_cert_chain(cert_path, key_path)
        client = ssl.create_default_context(cadata=cert_pem.decode("ascii"))
        return cls(server_context=server, client_context=client, certificate_pem=cert_pem)
