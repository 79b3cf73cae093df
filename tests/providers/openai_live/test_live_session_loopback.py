"""LiveSession (codec + inference) against FakeOpenAILiveServer over a loopback socket, with a
minimal reader loop: spoken turn, barge-in, idle track, tool round trip, restore after expiry."""

from __future__ import annotations

import asyncio
import math
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

import websockets

from voiceengine.providers.conversation import ConversationRecord
from voiceengine.providers.openai_live import LiveSession, OpenAILiveConfig
from voiceengine.providers.types import EventType, ProviderEvent
from voiceengine.testing import FakeOpenAILiveConfig, FakeOpenAILiveServer, Fault, FaultKind
from voiceengine.testing.audio import synthesize

TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
CHUNK = 4800  # 100 ms at 24 kHz
#: the client streams audio at 10x real time; fakes that pace replies run at least as fast
#: (the inference assumes audio is streamed at its real rate, as a microphone does)
STREAM_SPEEDUP = 10.0


class Client:
    """One connection: a LiveSession, a reader task, the events seen and a conversation record."""

    def __init__(self, ws: Any, session: LiveSession, record: ConversationRecord) -> None:
        self.ws = ws
        self.session = session
        self.record = record
        self.events: list[ProviderEvent] = []
        self._changed = asyncio.Event()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    def _take(self, events: list[ProviderEvent]) -> None:
        for event in events:
            self.record.apply(event)
            self.events.append(event)
        self._changed.set()

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                self._take(self.session.receive(frame, time.monotonic()))
                await self.flush()
        except websockets.ConnectionClosed:
            pass
        self._take(self.session.connection_lost())

    async def flush(self) -> None:
        for frame in self.session.data_to_send():
            await self.ws.send(frame)

    async def stream(self, pcm: bytes) -> None:
        for i in range(0, len(pcm), CHUNK):
            self.session.send_audio(pcm[i:i + CHUNK])
            await self.flush()
            self._take(self.session.tick(time.monotonic()))
            await asyncio.sleep(0.1 / STREAM_SPEEDUP)

    async def wait(self, predicate: Callable[[ProviderEvent], bool], *, feed_silence: bool = False,
                   timeout: float = 10.0) -> ProviderEvent:
        async with asyncio.timeout(timeout):
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                if feed_silence:
                    await self.stream(bytes(CHUNK))
                else:
                    self._changed.clear()
                    await self._changed.wait()

    def of(self, kind: EventType) -> list[ProviderEvent]:
        return [e for e in self.events if e.type is kind]


@asynccontextmanager
async def live(server: FakeOpenAILiveServer, config: OpenAILiveConfig, record: ConversationRecord | None = None,
               ) -> AsyncIterator[Client]:
    record = record if record is not None else ConversationRecord()
    session = LiveSession(config, history=record.replayable())
    session.start()
    async with websockets.connect(server.url, additional_headers=server.auth_headers, max_size=2**24) as ws:
        client = Client(ws, session, record)
        await client.flush()
        await client.wait(lambda e: e.type is EventType.SESSION_CREATED)
        try:
            yield client
        finally:
            await ws.close()
            await client.reader


def cfg(server: FakeOpenAILiveServer, **kw: Any) -> OpenAILiveConfig:
    return OpenAILiveConfig(api_key="sk-test", url=server.url, **kw)


async def test_spoken_turn_is_inferred_end_to_end() -> None:
    async with FakeOpenAILiveServer(FakeOpenAILiveConfig(speed=math.inf, replies=["Hello human."])) as server:
        async with live(server, cfg(server)) as c:
            await c.stream(synthesize("hi there").pcm + bytes(48 * 700))
            done = await c.wait(lambda e: e.type is EventType.RESPONSE_DONE, feed_silence=True)
    assert done.data.status == "completed"
    kinds = [e.type for e in c.events]
    assert kinds.index(EventType.SPEECH_STARTED) < kinds.index(EventType.SPEECH_STOPPED) \
        < kinds.index(EventType.RESPONSE_STARTED) < kinds.index(EventType.GENERATION_DONE)
    assert [e.data for e in c.of(EventType.INPUT_TRANSCRIPT)] == ["user turn 1"]
    assert b"".join(e.data for e in c.of(EventType.AUDIO_DELTA)) == synthesize("Hello human.").pcm
    assert [e.data for e in c.of(EventType.TRANSCRIPT_DONE)] == ["Hello human."]
    assert [(e.role, e.content_text) for e in c.record.entries] == [("user", "user turn 1"),
                                                                     ("assistant", "Hello human.")]


async def test_barge_in_is_reported_and_the_next_reply_plays_in_full() -> None:
    long_reply = " ".join(["blah"] * 40)
    fake = FakeOpenAILiveConfig(speed=4 * STREAM_SPEEDUP, replies=[long_reply, "Sure."], idle_output_ms=100)
    async with FakeOpenAILiveServer(fake) as server:
        async with live(server, cfg(server)) as c:
            await c.stream(synthesize("tell me a story").pcm + bytes(48 * 600))
            await c.wait(lambda e: e.type is EventType.AUDIO_DELTA, feed_silence=True)
            await c.stream(synthesize("stop").pcm)
            cut = await c.wait(lambda e: e.type is EventType.SERVER_INTERRUPTED, feed_silence=True)
            await c.stream(bytes(48 * 600))
            second = await c.wait(lambda e: e.type is EventType.RESPONSE_DONE and e.response_id != cut.response_id,
                                  feed_silence=True)
    first_done = next(e for e in c.of(EventType.RESPONSE_DONE) if e.response_id == cut.response_id)
    assert first_done.data.status == "cancelled" and first_done.data.reason == "turn_detected"
    heard_first = b"".join(e.data for e in c.of(EventType.AUDIO_DELTA) if e.response_id == cut.response_id)
    assert 0 < len(heard_first) < len(synthesize(long_reply).pcm)
    heard_second = b"".join(e.data for e in c.of(EventType.AUDIO_DELTA) if e.response_id == second.response_id)
    assert heard_second == synthesize("Sure.").pcm
    assert c.session.dropped_idle_frames > 0          # the idle track never became a reply
    assert len(c.of(EventType.RESPONSE_STARTED)) == 2


async def test_tool_round_trip_end_to_end() -> None:
    async with FakeOpenAILiveServer(FakeOpenAILiveConfig(speed=math.inf, tool_arguments={"city": "Oslo"})) as server:
        async with live(server, cfg(server, tools=[TOOL])) as c:
            c.session.send_user_text("Weather in Oslo?")
            await c.flush()
            call = (await c.wait(lambda e: e.type is EventType.FUNCTION_CALL)).data
            assert (call.name, call.parsed_arguments()) == ("get_weather", {"city": "Oslo"})
            assert c.session.send_function_result(call.call_id, "sunny") is True
            await c.flush()
            await c.wait(lambda e: e.type is EventType.RESPONSE_DONE, feed_silence=True)
    assert [e.data for e in c.of(EventType.TRANSCRIPT_DONE)] == ["The tool returned sunny"]
    assert server.session.function_outputs == {call.call_id: "sunny"}
    creates = [e for e in server.received if e["type"] == "response.create"]
    assert len(creates) == 2                          # the typed turn, then exactly one per round


async def test_silent_context_and_usage() -> None:
    async with FakeOpenAILiveServer(FakeOpenAILiveConfig(speed=math.inf)) as server:
        async with live(server, cfg(server)) as c:
            c.session.send_context("thinking", "The user is a pilot.")
            await c.flush()
            await c.stream(bytes(48 * 1500) + synthesize("hello").pcm + bytes(48 * 700))  # billed: > 1 s
            await c.wait(lambda e: e.type is EventType.USAGE, feed_silence=True)
    assert list(server.session.thinking) == ["The user is a pilot."]
    assert not server.errors
    assert sum(e.data.input_audio_seconds for e in c.of(EventType.USAGE)) == server.session.usage_seconds


async def test_restore_after_expiry_carries_the_conversation_as_history() -> None:
    async with FakeOpenAILiveServer(FakeOpenAILiveConfig(speed=math.inf, replies=["Noted."])) as server:
        record = ConversationRecord()
        async with live(server, cfg(server), record) as c:
            await c.stream(synthesize("remember blue").pcm + bytes(48 * 700))
            await c.wait(lambda e: e.type is EventType.RESPONSE_DONE, feed_silence=True)
            server.inject(Fault(kind=FaultKind.SESSION_EXPIRED))
            await c.wait(lambda e: e.type is EventType.SESSION_EXPIRING)
            await c.reader
        assert c.session.restorable and c.session.closed_reason == "expired"
        async with live(server, cfg(server), record) as again:
            assert again.session.started
    assert server.sessions[-1].history == (("user", "user turn 1"), ("assistant", "Noted."))
