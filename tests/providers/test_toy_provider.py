"""A toy provider (tests/providers/toy_provider.py) gets reconnect, backlog, accounting and
restore from the runtime without writing any of them (issue 10)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection, serve

from toy_provider import ToyProvider
from voiceengine.clock import VirtualClock
from voiceengine.exceptions import InvalidState
from voiceengine.providers import ConnectionState, EventType, ProviderEvent
from voiceengine.providers.types import RestoreMethod

TOY_SOURCE = Path(__file__).with_name("toy_provider.py")


class ToyServer:
    """The toy service on 127.0.0.1: one record per connection of what it received."""

    def __init__(self) -> None:
        self.sessions: list[list[dict[str, Any]]] = []
        self.connections: list[ServerConnection] = []
        self.audio = bytearray()
        self._replies = itertools.count(1)

    async def handler(self, ws: ServerConnection) -> None:
        received: list[dict[str, Any]] = []
        self.sessions.append(received)
        self.connections.append(ws)
        async for frame in ws:
            msg = json.loads(frame)
            received.append(msg)
            if msg["t"] == "hello":
                await ws.send(json.dumps({"t": "ready", "session": f"s{len(self.sessions)}"}))
            elif msg["t"] == "audio":
                self.audio += base64.b64decode(msg["b64"])
            elif msg["t"] == "reply":
                said = [m["text"] for m in received if m["t"] == "say"]
                reply_id = f"r{next(self._replies)}"
                await ws.send(json.dumps({"t": "text", "id": reply_id, "text": f"you said {said[-1]}"}))
                await ws.send(json.dumps({"t": "done", "id": reply_id}))


@pytest.fixture
async def toy() -> AsyncIterator[tuple[ToyServer, ToyProvider, list[ProviderEvent]]]:
    server = ToyServer()
    async with serve(server.handler, "127.0.0.1", 0) as listener:
        port = listener.sockets[0].getsockname()[1]
        provider = ToyProvider(f"ws://127.0.0.1:{port}", reconnect_delays=lambda config: itertools.repeat(0.0))
        events: list[ProviderEvent] = []
        provider.on_event("*", events.append)
        try:
            yield server, provider, events
        finally:
            await provider.disconnect()


async def until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def phases(events: list[ProviderEvent]) -> list[str]:
    return [e.data.phase for e in events if e.type is EventType.CONNECTION_STATE]


def test_the_toy_provider_is_short() -> None:
    lines = TOY_SOURCE.read_text().splitlines()
    assert len(lines) < 150, len(lines)  # the whole module: transport, session, binding


async def test_toy_provider_converses(toy: tuple[ToyServer, ToyProvider, list[ProviderEvent]]) -> None:
    server, provider, events = toy
    await provider.connect()
    assert provider.is_connected and provider.session_id == "s1"
    await provider.send_text("hello toy")
    await until(lambda: any(e.type is EventType.RESPONSE_DONE for e in events))
    assert [(e.role, e.content_text) for e in provider.conversation] == [
        ("user", "hello toy"), ("assistant", "you said hello toy")]
    with pytest.raises(InvalidState):  # a verb the toy service lacks says so
        await provider.truncate("r1", 100)


async def test_toy_provider_gets_reconnect_backlog_accounting_and_restore(
        toy: tuple[ToyServer, ToyProvider, list[ProviderEvent]]) -> None:
    server, provider, events = toy
    clock = VirtualClock()
    provider.clock = clock  # the backoff sleeps on it: the outage lasts until we advance it
    provider.reconnect_delays = lambda config: itertools.repeat(1.0)
    await provider.connect()
    await provider.send_text("remember blue")
    await until(lambda: any(e.type is EventType.RESPONSE_DONE for e in events))
    chunk = bytes(range(256)) * 4  # 1024 bytes of "audio"
    await provider.send_audio(chunk)
    await until(lambda: len(server.audio) == len(chunk))
    # the service drops the connection; audio sent during the outage waits in the backlog
    await server.connections[0].close(1011, "toy restart")
    await until(lambda: "reconnecting" in phases(events))
    await provider.send_audio(chunk)
    backlog_audio = len(chunk)
    assert provider.audio_accounting.pending_bytes == backlog_audio
    clock.advance(1.0)
    await until(lambda: "restored" in phases(events))
    restored = next(e.data for e in events if e.type is EventType.CONNECTION_STATE and e.data.phase == "restored")
    assert restored.restored_by is RestoreMethod.REPLAY
    assert restored.replayed_items == 2 and restored.replayed_audio_bytes == backlog_audio
    fresh = server.sessions[1]
    said = [(m["role"], m["text"]) for m in fresh if m["t"] == "say"]
    assert said == [("user", "remember blue"), ("assistant", "you said remember blue")]
    await provider.send_audio(chunk)
    await until(lambda: len(server.audio) == len(chunk) * 2 + backlog_audio)
    await provider.disconnect()
    accounting = provider.audio_accounting
    assert accounting.balanced and accounting.pending_bytes == 0 and accounting.dropped_bytes == 0
    assert accounting.captured_bytes == accounting.sent_bytes + accounting.replayed_bytes
    assert accounting.replayed_bytes == backlog_audio


async def test_toy_provider_first_connect_retries(toy: tuple[ToyServer, ToyProvider, list[ProviderEvent]]) -> None:
    server, provider, events = toy
    real_open = provider.open_transport
    failures = 0

    async def flaky_open() -> Any:  # a service that refuses the first handshake with a 503
        nonlocal failures
        if failures == 0:
            failures += 1
            from voiceengine.exceptions import ConnectionFailed

            raise ConnectionFailed("HTTP 503", status_code=503, retryable=True)
        return await real_open()

    provider.open_transport = flaky_open  # type: ignore[method-assign]
    await provider.connect()
    assert provider.is_connected and failures == 1
    assert phases(events) == ["connecting", "connecting", "connected"]
