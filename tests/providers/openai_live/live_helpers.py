"""Helpers the OpenAILiveProvider loopback tests share: a provider with instant reconnects, and
a recorder that streams audio and feeds silence while it waits."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from voiceengine import OpenAILiveConfig, OpenAILiveProvider
from voiceengine.providers.types import ConnectionState
from voiceengine.testing import FakeOpenAILiveServer

from tests.event_recorder import EventRecorder

CHUNK = 4800                     # 100 ms at 24 kHz
STREAM_SPEEDUP = 10.0            # audio is pushed at 10x real time; paced fakes run faster than that


def live_provider(server: FakeOpenAILiveServer, *, api_key: str = "sk-test", **cfg: Any) -> OpenAILiveProvider:
    """A provider for ``server`` that reconnects without delay."""
    provider = OpenAILiveProvider(OpenAILiveConfig(api_key=api_key, url=server.url, **cfg))
    provider.reconnect_delays = lambda config: itertools.repeat(0.0)
    return provider


class Run(EventRecorder):
    """A provider, the events it emitted, and helpers to stream audio and wait."""

    def __init__(self, provider: OpenAILiveProvider) -> None:
        super().__init__(provider, while_waiting=self._feed_silence)
        self.provider = provider

    async def stream(self, pcm: bytes) -> None:
        for i in range(0, len(pcm), CHUNK):
            await self.provider.send_audio(pcm[i:i + CHUNK])
            await asyncio.sleep(0.1 / STREAM_SPEEDUP)

    async def _feed_silence(self) -> bool:
        if self.provider.state is not ConnectionState.CONNECTED:
            return False
        await self.stream(bytes(CHUNK))
        return True
