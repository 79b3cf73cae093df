"""Fixtures: the fake Realtime server behind an in-process ``VoiceServer`` (loopback only)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from voiceengine import VoiceEngineConfig
from voiceengine.transports import CallHost, EngineFactory, ServeConfig, VoiceServer
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig


@pytest.fixture
async def fake() -> AsyncIterator[FakeRealtimeServer]:
    async with FakeRealtimeServer(FakeServerConfig(responses=["Hello there caller."], speed=20.0)) as server:
        yield server


def openai_factory(fake: FakeRealtimeServer, **config: Any) -> EngineFactory:
    return EngineFactory(provider="openai", config=VoiceEngineConfig(api_key="sk-test-fake", url=fake.url, **config))


class Served:
    """A started VoiceServer plus what the tests look at."""

    def __init__(self, server: VoiceServer, host: CallHost) -> None:
        self.server = server
        self.host = host

    @property
    def twilio_url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/twilio"

    @property
    def browser_url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/browser"


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


def with_responses(fake: FakeRealtimeServer, responses: Any) -> None:
    fake.config = dataclasses.replace(fake.config, responses=responses)
