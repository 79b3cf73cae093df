"""Helpers for GeminiProvider tests over loopback (FakeGeminiLiveServer, no TLS unless asked)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any, AsyncIterator, Callable

from voiceengine.providers.gemini import GeminiConfig
from voiceengine.providers.gemini.provider import GeminiProvider
from voiceengine.providers.types import EventType, ProviderEvent
from voiceengine.testing import FakeGeminiLiveServer
from voiceengine.testing.audio import synthesize

KEY = "gemini-test-key-do-not-log"


def speech(text: str = "hello there", silence_ms: int = 0) -> bytes:
    return synthesize(text, 16000).pcm + bytes(32 * silence_ms)


def make_provider(server: FakeGeminiLiveServer, **fields: Any) -> GeminiProvider:
    options = {"ssl": server.ssl_context} if server.ssl_context is not None else None
    fields.setdefault("api_key", KEY)
    fields.setdefault("url", server.url)
    provider = GeminiProvider(GeminiConfig(**fields), transport_options=options)
    provider.reconnect_delays = lambda config: itertools.repeat(0.0)
    return provider


class Recorder:
    """Collects every event of a provider (from connect on) and lets tests wait for one."""

    def __init__(self, provider: GeminiProvider) -> None:
        self.events: list[ProviderEvent] = []
        self._changed = asyncio.Event()
        provider.on_event(None, self._on)

    def _on(self, event: ProviderEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait(self, predicate: Callable[[ProviderEvent], bool], *, after: int = 0,
                   timeout: float = 10.0) -> ProviderEvent:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events[after:]:
                    if predicate(event):
                        return event
                self._changed.clear()
                await self._changed.wait()

    def of(self, kind: EventType) -> list[ProviderEvent]:
        return [e for e in self.events if e.type is kind]

    def audio(self) -> bytes:
        return b"".join(e.data for e in self.of(EventType.AUDIO_DELTA))


def is_(kind: EventType) -> Callable[[ProviderEvent], bool]:
    return lambda event: event.type is kind


@contextlib.asynccontextmanager
async def running(server: FakeGeminiLiveServer, **fields: Any) -> AsyncIterator[tuple[GeminiProvider, Recorder]]:
    provider = make_provider(server, **fields)
    recorder = Recorder(provider)
    try:
        await provider.connect()
        yield provider, recorder
    finally:
        await provider.disconnect()
