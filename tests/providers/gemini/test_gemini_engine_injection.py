"""Context injection on Gemini through VoiceEngine, on the wire (FakeGeminiLiveServer over
loopback): SILENT is ``clientContent`` with ``turnComplete: false``; GLOBAL changes the
instructions in place (``contextUpdate``) and every later setup carries them (a resumed
connection included); NEXT_TURN goes in when the service ends the user's spoken turn; what
Gemini cannot carry (PER_RESPONSE, OUT_OF_BAND) is refused with an ERROR, never dropped
silently."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from gemini_provider_helpers import make_provider, speech
from voiceengine.engine import VoiceEngine, VoiceEngineConfig
from voiceengine.injection import InjectionMode as M, InjectionTiming as T
from voiceengine.providers.types import EventType, ProviderEvent
from voiceengine.testing import FakeGeminiLiveServer, Fault, FaultKind


class Events:
    def __init__(self, engine: VoiceEngine) -> None:
        self.events: list[ProviderEvent] = []
        self._changed = asyncio.Event()
        engine.events.subscribe(self._take)

    def _take(self, event: ProviderEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: EventType) -> list[ProviderEvent]:
        return [e for e in self.events if e.type is kind]

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


def silent_texts(frames: list[dict[str, Any]]) -> list[str]:
    return [p["text"] for f in frames if "clientContent" in f and not f["clientContent"].get("turnComplete")
            for t in f["clientContent"]["turns"] for p in t["parts"]]


def instructions_of(content: dict[str, Any]) -> str:
    return " ".join(p["text"] for p in content["parts"])


async def test_context_modes_on_gemini_through_the_engine() -> None:
    async with FakeGeminiLiveServer(speed=float("inf")) as server:
        provider = make_provider(server, instructions="BASE")
        async with VoiceEngine(provider, VoiceEngineConfig(playback_speed=None)) as engine:
            ev = Events(engine)

            engine.inject_context("CTX-SILENT")
            await server.wait_for_received(lambda f: "CTX-SILENT" in str(f))
            assert silent_texts(server.received) == ["CTX-SILENT"]

            engine.inject_context("CTX-GLOBAL", mode=M.GLOBAL, trusted=True)
            update = await server.wait_for_received(lambda f: "contextUpdate" in f)
            assert instructions_of(update["contextUpdate"]["systemInstruction"]).endswith("CTX-GLOBAL")
            assert server.session.instructions.startswith("BASE") and "CTX-GLOBAL" in server.session.instructions

            sent_before = len(server.received)
            for mode in (M.PER_RESPONSE, M.OUT_OF_BAND):
                engine.inject_context(f"CTX-{mode.name}", mode=mode, trusted=True)
            await ev.until(lambda: len(ev.of(EventType.ERROR)) == 2)
            assert {e.error.code for e in ev.of(EventType.ERROR)} == {"context_mode_unsupported"}
            assert engine.injector.stats["failed"] == 2
            assert not any("CTX-PER_RESPONSE" in str(f) or "CTX-OUT_OF_BAND" in str(f)
                           for f in server.received[sent_before:])

            # the setup is fixed per connection: a resumed one carries the changed instructions
            server.inject(Fault(kind=FaultKind.CLOSE, close_code=1011))
            await ev.until(lambda: any(e.type is EventType.CONNECTION_STATE and e.data.phase == "restored"
                                       for e in ev.events))
    setups = [s.setup for s in server.sessions]
    assert len(setups) == 2 and setups[1] is not None and "handle" in setups[1]["sessionResumption"]
    assert instructions_of(setups[1]["systemInstruction"]).endswith("CTX-GLOBAL")
    assert not ev.of(EventType.RESPONSE_STARTED)  # no context asked for a reply


async def test_next_turn_context_goes_in_when_the_service_ends_the_spoken_turn() -> None:
    async with FakeGeminiLiveServer(speed=float("inf")) as server:
        provider = make_provider(server)
        async with VoiceEngine(provider, VoiceEngineConfig(playback_speed=None, input_sample_rate=16000)) as engine:
            ev = Events(engine)
            engine.inject_context("CTX-NEXT-TURN", timing=T.NEXT_TURN)
            await engine.send_audio(speech("what is the weather", silence_ms=900))
            await ev.until(lambda: bool(ev.of(EventType.RESPONSE_DONE)))
            await server.wait_for_received(lambda f: "CTX-NEXT-TURN" in str(f))
    # after the user's audio, as context that asks for no reply
    audio_at = max(i for i, f in enumerate(server.received) if "realtimeInput" in f)
    context_at = next(i for i, f in enumerate(server.received) if "CTX-NEXT-TURN" in str(f))
    assert context_at > audio_at and silent_texts(server.received) == ["CTX-NEXT-TURN"]
    assert engine.metrics.context_injected == 1
    committed = ev.of(EventType.INPUT_COMMITTED)
    assert len(committed) == 1 and ev.events.index(committed[0]) < ev.events.index(ev.of(EventType.RESPONSE_DONE)[0])
