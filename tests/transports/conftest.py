"""Fixtures: the fake Realtime server behind an in-process ``VoiceServer`` (loopback only)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from voiceengine.transports import CallHost, EngineFactory, ServeConfig, VoiceServer
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig

from transport_helpers import Served


@pytest.fixture
async def fake() -> AsyncIterator[FakeRealtimeServer]:
    async with FakeRealtimeServer(FakeServerConfig(responses=["Hello there caller."], speed=20.0)) as server:
        yield server


@pytest.fixture
async def serve_with() -> AsyncIterator[Callable[..., Any]]:
    """``await serve_with(factory, **host_kwargs)`` -> :class:`Served` (stopped at teardown)."""
    started: list[VoiceServer] = []

    async def start(factory: EngineFactory, *, config: ServeConfig | None = None, **host_kwargs: Any) -> Served:
        host = CallHost(factory, **host_kwargs)
        server = VoiceServer(host, config or ServeConfig(port=0))
        await server.start()
        started.append(server)
        return Served(server, host)

    yield start
    for server in started:
        await server.stop()
