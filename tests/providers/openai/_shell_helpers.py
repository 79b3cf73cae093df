"""Helpers for the OpenAI provider shell tests (imported by test_provider_*.py)."""

from __future__ import annotations

import asyncio
import itertools
import math
import struct
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from voiceengine.providers import ConnectionState, EventType, ProviderEvent
from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig

from tests.event_recorder import EventRecorder

KEY = "sk-test-shell-0123456789"
WAIT_S = 10.0


class Recorder(EventRecorder):
    """Every event a provider emits (subscribed with on_event: nothing missed)."""

    def __init__(self, provider: OpenAIProvider) -> None:
        super().__init__(provider, wait_timeout=WAIT_S)

    async def wait_type(self, type_: EventType, *, since: int = 0, timeout: float = WAIT_S) -> ProviderEvent:
        return await self.wait(lambda e: e.type is type_, since=since, timeout=timeout)

    async def wait_phase(self, phase: str, *, since: int = 0, timeout: float = WAIT_S) -> ProviderEvent:
        return await self.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == phase,
                               since=since, timeout=timeout)

    def of(self, type_: EventType, since: int = 0) -> list[ProviderEvent]:
        return [e for e in self.events[since:] if e.type is type_]

    def phases(self) -> list[str]:
        return [e.data.phase for e in self.of(EventType.CONNECTION_STATE)]

    def errors(self, since: int = 0) -> list[ProviderEvent]:
        return self.of(EventType.ERROR, since)


def tone(ms: int, hz: float = 220.0, amplitude: float = 0.5) -> bytes:
    """PCM16 24 kHz mono sine (loud enough for the fake server's VAD)."""
    n = 24 * ms
    return struct.pack(f"<{n}h", *(int(amplitude * 32767 * math.sin(2 * math.pi * hz * i / 24000)) for i in range(n)))


def no_delay(config: OpenAIConfig) -> itertools.repeat[float]:
    return itertools.repeat(0.0)


def make_provider(server: FakeRealtimeServer, **fields: Any) -> OpenAIProvider:
    options: dict[str, Any] = dict(api_key=KEY, url=server.url, turn_detection=None, connect_timeout_s=WAIT_S)
    options.update(fields)
    provider_kwargs = {k: options.pop(k) for k in ("stable_after_s", "send_timeout_s") if k in options}
    return OpenAIProvider(OpenAIConfig(**options), reconnect_delays=no_delay, **provider_kwargs)


@asynccontextmanager
async def running(server_config: FakeServerConfig | None = None, *, connect: bool = True,
                  **fields: Any) -> AsyncIterator[tuple[FakeRealtimeServer, OpenAIProvider, Recorder]]:
    """A fake server, a provider pointed at it (connected unless ``connect=False``), a recorder.

    On exit the provider is disconnected and the server stopped, and no task started
    inside the block may survive.
    """
    before = asyncio.all_tasks()
    config = server_config or FakeServerConfig(turn_detection=None, speed=math.inf)
    async with FakeRealtimeServer(config) as server:
        provider = make_provider(server, **fields)
        rec = Recorder(provider)
        try:
            if connect:
                await provider.connect()
            yield server, provider, rec
        finally:
            await provider.disconnect()
            assert provider.state is ConnectionState.CLOSED
    leaked = asyncio.all_tasks() - before
    assert not leaked, f"tasks left running: {leaked}"


def response_done(event: ProviderEvent) -> bool:
    return event.type is EventType.RESPONSE_DONE


def server_error_codes(server: FakeRealtimeServer) -> list[str | None]:
    return [e.get("error", {}).get("code") for e in server.errors]
