"""Helpers for GeminiProvider tests over loopback (FakeGeminiLiveServer, no TLS unless asked)."""

from __future__ import annotations

import contextlib
import itertools
from typing import Any, AsyncIterator, Callable

from voiceengine.providers.gemini import GeminiConfig
from voiceengine.providers.gemini.provider import GeminiProvider
from voiceengine.providers.types import EventType, ProviderEvent
from voiceengine.testing import FakeGeminiLiveServer
from voiceengine.testing.audio import synthesize

from tests.event_recorder import EventRecorder

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


class Recorder(EventRecorder):
    """Collects every event of a provider (from connect on) and lets tests wait for one."""

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
