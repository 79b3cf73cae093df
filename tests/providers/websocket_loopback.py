"""What the WebSocket transport tests share: the connection settings of a loopback test
server and the payload lengths around each frame-header form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


async def open_loopback(url: str, **settings: Any) -> WebSocketTransport:
    """A transport to a loopback test server (``settings`` override :class:`LoopbackSettings`)."""
    return await open_transport(url, [], LoopbackSettings(**settings), wire_logger_name="voiceengine.tests.websocket")
