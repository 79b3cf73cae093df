"""A server audio delta delivered twice is played once (issue 5: duplicate events).

Audio deltas carry ``raw=None`` (no payload kept on events), so the engine's
``raw["event_id"]`` dedupe cannot see them: the provider's session drops a repeated
``event_id`` before anyone sees it. Checked end to end: the fake server duplicates every
audio delta of a reply, and the bytes the engine plays equal the audio the server
generated, with no repeated chunk.
"""

from __future__ import annotations

import asyncio
import collections
import math

from voiceengine.engine import VoiceEngine, VoiceEngineConfig
from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider
from voiceengine.providers.types import EventType
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig, Fault
from voiceengine.testing.faults import FaultKind, Trigger

AUDIO = "response.output_audio.delta"
REPLY = "one two three four five six seven eight nine ten eleven twelve"


def duplicate_every_audio_delta() -> list[Fault]:
    # the first delta, then the one after every delta sent (times=None: always)
    return [Fault(kind=FaultKind.DUPLICATE_EVENT, target_type=AUDIO),
            Fault(kind=FaultKind.DUPLICATE_EVENT, target_type=AUDIO, trigger=Trigger.AFTER_SERVER_EVENTS,
                  event_type=AUDIO, times=None)]


async def test_bounds_duplicated_audio_deltas_are_played_once() -> None:
    config = FakeServerConfig(speed=math.inf, turn_detection=None, responses=(REPLY,))
    async with FakeRealtimeServer(config) as server:
        provider = OpenAIProvider(OpenAIConfig(api_key="test-key", url=server.url, turn_detection=None))
        played = bytearray()
        engine_config = VoiceEngineConfig(playback_speed=None, prebuffer_ms=0)
        async with VoiceEngine(provider, engine_config) as engine:
            engine.on_audio_response = played.extend
            done = asyncio.Event()
            engine.events.on(EventType.RESPONSE_DONE, lambda event: done.set())
            for fault in duplicate_every_audio_delta():
                server.inject(fault)
            await engine.send_text("count please")
            async with asyncio.timeout(10):
                await done.wait()
                await server.wait_for(lambda ev: ev["type"] == "response.done", timeout=10)
                sent_audio = b"".join(server.sessions[-1].audio_sent_by_item.values())
                while len(played) < len(sent_audio):  # the playback task drains the buffer
                    await asyncio.sleep(0.01)
            duplicates = engine.metrics.duplicate_events
        # the server really sent most deltas twice
        ids = collections.Counter(ev["event_id"] for ev in server.sessions[-1].sent if ev["type"] == AUDIO)
        twice = sum(1 for n in ids.values() if n == 2)
        assert len(ids) >= 3 and twice >= len(ids) - 1, ids
        # ... and each was played once: the played bytes are exactly the generated audio
        assert sent_audio and bytes(played) == sent_audio
        assert provider._session is None or provider._session.duplicates >= twice  # dropped in the session
        assert duplicates == 0  # nothing reached the engine twice


async def test_bounds_provider_emits_each_audio_delta_once() -> None:
    config = FakeServerConfig(speed=math.inf, turn_detection=None, responses=(REPLY,))
    async with FakeRealtimeServer(config) as server:
        provider = OpenAIProvider(OpenAIConfig(api_key="test-key", url=server.url, turn_detection=None))
        deltas: list[bytes] = []
        provider.on_event(EventType.AUDIO_DELTA, lambda event: deltas.append(event.data))
        await provider.connect()
        try:
            for fault in duplicate_every_audio_delta():
                server.inject(fault)
            await provider.send_text("count please")
            await server.wait_for(lambda ev: ev["type"] == "response.done", timeout=10)
            session = provider._session
            assert session is not None
            async with asyncio.timeout(10):
                while session.response_active:  # response.done read by the provider
                    await asyncio.sleep(0.01)
            n_sent = sum(1 for ev in server.sessions[-1].sent if ev["type"] == AUDIO)
            assert n_sent > len(deltas) >= 3  # duplicates were on the wire
            assert b"".join(deltas) == b"".join(server.sessions[-1].audio_sent_by_item.values())
            assert session.duplicates == n_sent - len(deltas)
        finally:
            await provider.disconnect()
