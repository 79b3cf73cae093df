"""A minimal HTTP/1.1 GET for the tests (loopback only, one request per connection)."""

from __future__ import annotations

import asyncio


async def http_get(port: int, path: str, *, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    async def fetch() -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            return status, headers, body
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionResetError:  # the server may reset once it has answered
                pass

    return await asyncio.wait_for(fetch(), timeout)
