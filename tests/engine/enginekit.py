"""Shared helpers for the engine tests (a plain module: tests dirs have no conftest chain here)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any, AsyncIterator, Callable

from voiceengine.engine import VoiceEngine, VoiceEngineConfig
from voiceengine.providers.types import EventType, ProviderEvent

PROVIDERS = ["mock", "openai"]


def voiced(rate: int, ms: int, *, channels: int = 1, f0: float = 180.0, amp: float = 0.3) -> bytes:
    """A loud harmonic tone (both VADs call it speech), PCM16."""
    import numpy as np

    t = np.arange(rate * ms // 1000) / rate
    s = amp * (np.sin(2 * np.pi * f0 * t) + 0.5 * np.sin(2 * np.pi * 2 * f0 * t)) / 1.5
    pcm = (s * 32767).astype("<i2")
    if channels == 2:
        pcm = np.repeat(pcm, 2)
    return pcm.tobytes()


def silence(rate: int, ms: int, *, channels: int = 1) -> bytes:
    return bytes(rate * ms // 1000 * 2 * channels)


class Recorder:
    """Collects every bus event and lets a test await one."""

    def __init__(self, engine: VoiceEngine) -> None:
        self.events: list[ProviderEvent] = []
        self._waiters: list[tuple[Callable[[ProviderEvent], bool], asyncio.Future[ProviderEvent]]] = []
        engine.events.subscribe(self._on)

    def _on(self, event: ProviderEvent) -> None:
        self.events.append(event)
        for pred, fut in list(self._waiters):
            if not fut.done() and pred(event):
                fut.set_result(event)

    def of(self, *types: EventType) -> list[ProviderEvent]:
        return [e for e in self.events if e.type in types]

    async def wait(self, etype: EventType, pred: Callable[[ProviderEvent], bool] | None = None, *,
                   timeout: float = 10.0, past: bool = False) -> ProviderEvent:
        match = lambda e: e.type is etype and (pred is None or pred(e))  # noqa: E731
        if past:
            for e in self.events:
                if match(e):
                    return e
        fut: asyncio.Future[ProviderEvent] = asyncio.get_running_loop().create_future()
        entry = (match, fut)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters.remove(entry)


@contextlib.asynccontextmanager
async def make_provider(kind: str, *, responses: Any = None, turn_detection: Any = "server_vad",
                        server_config: dict | None = None, instructions: str | None = None
                        ) -> AsyncIterator[tuple[Any, Any]]:
    """Yields (provider, server-or-None)."""
    if kind == "mock":
        from voiceengine.providers.mock import MockConfig, MockProvider

        kw: dict[str, Any] = {"turn_detection": turn_detection, "instructions": instructions}
        if responses is not None:
            kw["responses"] = tuple(responses)
        yield MockProvider(MockConfig(**kw)), None
        return
    from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider
    from voiceengine.testing import FakeRealtimeServer, FakeServerConfig

    scfg: dict[str, Any] = {"speed": math.inf}
    if responses is not None:
        scfg["responses"] = tuple(responses)
    scfg.update(server_config or {})
    async with FakeRealtimeServer(FakeServerConfig(**scfg)) as server:
        yield OpenAIProvider(OpenAIConfig(api_key="test-key", url=server.url, turn_detection=turn_detection,
                                          instructions=instructions)), server


def fast_config(**kw: Any) -> VoiceEngineConfig:
    base = dict(playback_speed=None, prebuffer_ms=0, end_silence_ms=800)
    base.update(kw)
    return VoiceEngineConfig(**base)
