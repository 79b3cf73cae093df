"""switch_provider between OpenAI and Gemini, both ways, mid-conversation: the new provider
gets the conversation (as its own wire items or history) and answers in context."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from gemini_provider_helpers import make_provider
from voiceengine.engine import VoiceEngine, VoiceEngineConfig
from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider
from voiceengine.providers.types import EventType, ProviderEvent
from voiceengine.testing import FakeGeminiLiveServer, FakeRealtimeServer, FakeServerConfig


class Replies:
    def __init__(self, engine: VoiceEngine) -> None:
        self.done: asyncio.Queue[ProviderEvent] = asyncio.Queue()
        engine.events.subscribe(self._on)

    def _on(self, event: ProviderEvent) -> None:
        if event.type is EventType.RESPONSE_DONE and event.data is not None and event.data.status == "completed":
            self.done.put_nowait(event)

    async def next(self) -> ProviderEvent:
        return await asyncio.wait_for(self.done.get(), 10)


def texts(items: Any) -> list[tuple[str, str]]:
    out = []
    for item in items:
        for part in item.get("content", []):
            text = part.get("text") or part.get("transcript")
            if text:
                out.append((item.get("role"), text))
    return out


async def test_openai_to_gemini_and_back() -> None:
    config = VoiceEngineConfig(playback_speed=None, prebuffer_ms=0)
    async with FakeRealtimeServer(FakeServerConfig(speed=math.inf)) as openai_server, \
            FakeGeminiLiveServer(speed=float("inf")) as gemini_server:
        openai = OpenAIProvider(OpenAIConfig(api_key="test-key", url=openai_server.url))
        async with VoiceEngine(openai, config) as engine:
            replies = Replies(engine)
            await engine.send_text("my name is Ada")
            await replies.next()
            await engine.switch_provider(make_provider(gemini_server))
            await engine.send_text("who am I")
            await replies.next()
            history = list(gemini_server.session.history)
            assert history[:2] == [("user", "my name is Ada"), ("model", "You said my name is Ada")]
            assert history[2] == ("user", "who am I")
            # and back: OpenAI gets everything Gemini's conversation held, as its own items
            second = OpenAIProvider(OpenAIConfig(api_key="test-key", url=openai_server.url))
            await engine.switch_provider(second)
            await engine.send_text("and now?")
            await replies.next()
            carried = texts(openai_server.session.items)
    assert carried[:4] == [("user", "my name is Ada"), ("assistant", "You said my name is Ada"),
                           ("user", "who am I"), ("assistant", "You said who am I")]
