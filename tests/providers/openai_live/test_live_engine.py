"""VoiceEngine over OpenAILiveProvider over loopback (FakeOpenAILiveServer): app audio at
48 kHz arrives at the declared rate, reply audio heard equals what the server sent, barge-in
stops playback and the next reply plays in full, a tool round trip through the engine's
function handler, silent injection, restore with the conversation carried."""

from __future__ import annotations

import asyncio
import math
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from live_helpers import live_provider
from voiceengine import InjectionMode, OpenAILiveConfig, OpenAILiveProvider, VoiceEngine, VoiceEngineConfig
from voiceengine.providers.types import EventType, ProviderEvent
from voiceengine.testing import FakeOpenAILiveConfig, FakeOpenAILiveServer, Fault, FaultKind
from voiceengine.testing.audio import synthesize

TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
APP_RATE = 48000
APP_CHUNK = 9600  # 100 ms at 48 kHz
STREAM_SPEEDUP = 10.0


class Session:
    def __init__(self, engine: VoiceEngine) -> None:
        self.engine = engine
        self.heard = bytearray()
        self.events: list[ProviderEvent] = []
        self._changed = asyncio.Event()
        engine.on_audio_response = self.heard.extend
        engine.events.subscribe(self._take)

    def _take(self, event: ProviderEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def stream(self, pcm: bytes) -> None:
        for i in range(0, len(pcm), APP_CHUNK):
            await self.engine.send_audio(pcm[i:i + APP_CHUNK], sample_rate=APP_RATE)
            await asyncio.sleep(0.1 / STREAM_SPEEDUP)

    async def wait(self, kind: EventType, *, after: int = 0, timeout: float = 10.0, **match: Any) -> ProviderEvent:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events[after:]:
                    if event.type is kind and all(getattr(event.data, k, None) == v for k, v in match.items()):
                        return event
                await self.stream(bytes(APP_CHUNK * 2))


@asynccontextmanager
async def engine_on(server: FakeOpenAILiveServer, **cfg: Any) -> AsyncIterator[Session]:
    provider = live_provider(server, **cfg)
    engine = VoiceEngine(provider, VoiceEngineConfig(output_sample_rate=24000, playback_speed=None))
    session = Session(engine)
    await engine.connect()
    try:
        yield session
    finally:
        await engine.close()


async def test_48k_app_audio_arrives_at_24k_with_the_same_duration_and_the_reply_is_heard_exactly() -> None:
    async with FakeOpenAILiveServer(FakeOpenAILiveConfig(speed=math.inf, replies=["Hello human."])) as server:
        async with engine_on(server) as s:
            speech = synthesize("hi there", APP_RATE).pcm + bytes(2 * APP_RATE * 700 // 1000)
            await s.stream(speech)
            await s.wait(EventType.RESPONSE_DONE)
            sent_ms = server.session.input_audio_bytes / 48
    app_ms = len(speech) / (2 * APP_RATE / 1000)
    assert server.session.rate == 24000
    assert sent_ms >= app_ms - 20          # all of it (the silence fed while waiting comes on top)
    assert bytes(s.heard) == synthesize("Hello human.").pcm


async def test_barge_in_stops_playback_and_the_next_reply_plays_in_full() -> None:
    long_reply = " ".join(["blah"] * 40)
    fake = FakeOpenAILiveConfig(speed=4 * STREAM_SPEEDUP, replies=[long_reply, "Sure."])
    async with FakeOpenAILiveServer(fake) as server:
        async with engine_on(server) as s:
            await s.stream(synthesize("tell me a story", APP_RATE).pcm + bytes(2 * APP_RATE * 600 // 1000))
            await s.wait(EventType.PLAYBACK_STARTED)
            mark = len(s.events)
            await s.stream(synthesize("stop", APP_RATE).pcm)
            await s.wait(EventType.SERVER_INTERRUPTED, after=mark)
            heard_at_cut = len(s.heard)
            done = await s.wait(EventType.RESPONSE_DONE, after=mark, status="completed")
    assert server.session.interrupted_replies == 1
    first_len = len(synthesize(long_reply).pcm)
    assert heard_at_cut < first_len
    second = b"".join(e.data for e in s.events if e.type is EventType.AUDIO_DELTA and e.response_id == done.response_id)
    assert second == synthesize("Sure.").pcm
    assert bytes(s.heard).endswith(second)
    assert {e["type"] for e in server.received} <= {"session.start", "session.input_audio.append"}


async def test_tool_round_trip_through_the_engine_function_handler() -> None:
    async with FakeOpenAILiveServer(FakeOpenAILiveConfig(speed=math.inf, tool_arguments={"city": "Oslo"})) as server:
        async with engine_on(server, tools=[TOOL]) as s:
            s.engine.on_function_call = lambda call: {"city": call.parsed_arguments()["city"], "sky": "clear"}
            await s.engine.send_text("Weather in Oslo?")
            await s.wait(EventType.RESPONSE_DONE)
    assert list(server.session.function_outputs.values()) == ['{"city":"Oslo","sky":"clear"}']
    assert bytes(s.heard) == synthesize('The tool returned {"city":"Oslo","sky":"clear"}').pcm
    assert [e["type"] for e in server.received if e["type"] == "response.create"] == ["response.create"] * 2


async def test_silent_injection_goes_to_thinking_append() -> None:
    async with FakeOpenAILiveServer(FakeOpenAILiveConfig(speed=math.inf)) as server:
        async with engine_on(server) as s:
            s.engine.inject_context("The user is a pilot.", mode=InjectionMode.SILENT)
            await server.wait_for_received(lambda e: e["type"] == "session.thinking.append")
    assert list(server.session.thinking) == ["The user is a pilot."]
    assert not server.errors


async def test_restore_after_expiry_carries_the_conversation() -> None:
    async with FakeOpenAILiveServer(FakeOpenAILiveConfig(speed=math.inf, replies=["Noted."])) as server:
        async with engine_on(server) as s:
            await s.stream(synthesize("remember blue", APP_RATE).pcm + bytes(2 * APP_RATE * 700 // 1000))
            await s.wait(EventType.RESPONSE_DONE)
            server.inject(Fault(kind=FaultKind.SESSION_EXPIRED))
            await s.wait(EventType.CONNECTION_STATE, phase="restored")
    assert server.sessions[1].history == (("user", "user turn 1"), ("assistant", "Noted."))


async def test_switch_provider_between_realtime_and_live_carries_the_conversation_both_ways() -> None:
    from voiceengine import OpenAIConfig, OpenAIProvider
    from voiceengine.testing import FakeRealtimeServer, FakeServerConfig

    realtime_cfg = FakeServerConfig(speed=math.inf, responses=["Realtime answer.", "Realtime again."])
    async with FakeRealtimeServer(realtime_cfg) as rt_server, \
            FakeOpenAILiveServer(FakeOpenAILiveConfig(speed=math.inf, replies=["Live answer."])) as live_server:
        realtime = OpenAIProvider(OpenAIConfig(api_key="sk-test", url=rt_server.url))
        live = OpenAILiveProvider(OpenAILiveConfig(api_key="sk-test", url=live_server.url))
        engine = VoiceEngine(realtime, VoiceEngineConfig(output_sample_rate=24000, playback_speed=None))
        s = Session(engine)
        await engine.connect()
        try:
            await engine.send_text("first question")
            await s.wait(EventType.RESPONSE_DONE)
            await engine.switch_provider(live)                  # Realtime -> Live
            mark = len(s.events)
            await s.stream(synthesize("second question", APP_RATE).pcm + bytes(2 * APP_RATE * 700 // 1000))
            await s.wait(EventType.RESPONSE_DONE, after=mark)
            await engine.switch_provider(OpenAIProvider(OpenAIConfig(api_key="sk-test", url=rt_server.url)))
        finally:
            await engine.close()
    carried_to_live = list(live_server.session.thinking)
    assert "first question" in carried_to_live
    assert "Earlier, the assistant said: Realtime answer." in carried_to_live
    assert not live_server.errors
    back = [e["item"] for e in rt_server.sessions[-1].received if e["type"] == "conversation.item.create"]
    texts = [(item["role"], item["content"][0].get("text")) for item in back]
    assert ("user", "first question") in texts and ("assistant", "Realtime answer.") in texts
    assert ("assistant", "Live answer.") in texts
    assert not rt_server.errors
