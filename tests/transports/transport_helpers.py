"""Helpers the transport tests share (fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from typing import Any, Awaitable, Callable

from voiceengine import VoiceEngineConfig
from voiceengine.testing import FakeRealtimeServer
from voiceengine.transports import CallHost, EngineFactory, VoiceServer


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


def with_responses(fake: FakeRealtimeServer, responses: Any) -> None:
    fake.config = dataclasses.replace(fake.config, responses=responses)


async def eventually(condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 10.0,
                     interval: float = 0.01) -> bool:
    """Poll ``condition`` (sync or async) until it holds or ``timeout`` passes; its last value.

    For what no event signals (another process's HTTP answers, a bookkeeping step after a
    close frame): the caller asserts the outcome afterwards.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        held = await result if inspect.isawaitable(result) else result
        if held or loop.time() >= deadline:
            return bool(held)
        await asyncio.sleep(interval)
