"""VoiceEngine + GeminiProvider + FakeGeminiLiveServer over loopback, while the app streams
microphone audio: a ``goAway`` handover and an unexpected 1011 are resumed with the handle,
no input audio is lost (captured = sent + replayed, none dropped, every byte in the resumed
session's state once), no history is replayed into the resumed session and no reply is
requested twice."""

from __future__ import annotations

import asyncio

import pytest

from gemini_provider_helpers import make_provider
from voiceengine.engine import VoiceEngine, VoiceEngineConfig
from voiceengine.providers.types import EventType, ProviderEvent, RestoreMethod
from voiceengine.testing import FakeGeminiLiveServer, Fault, FaultKind

FRAME = bytes(640)  # 20 ms of silence at 16 kHz: no turn ends, so only the text turns get replies


@pytest.mark.parametrize("loss", ["go_away", "close_1011"])
async def test_resumption_through_the_engine_loses_no_audio_and_replies_once(loss: str) -> None:
    async with FakeGeminiLiveServer(speed=float("inf"), resumption_update_every=10,
                                    responses=["Blue, noted.", "You said blue."]) as server:
        provider = make_provider(server, transparent_resumption=True)
        events: list[ProviderEvent] = []
        changed = asyncio.Event()

        def take(event: ProviderEvent) -> None:
            events.append(event)
            changed.set()

        async def until(predicate: object) -> ProviderEvent:
            async with asyncio.timeout(10):
                while True:
                    found = [e for e in events if predicate(e)]  # type: ignore[operator]
                    if found:
                        return found[-1]
                    changed.clear()
                    await changed.wait()

        async with VoiceEngine(provider, VoiceEngineConfig(playback_speed=None, input_sample_rate=16000)) as engine:
            engine.events.subscribe(take)
            await engine.send_text("remember blue")
            await until(lambda e: e.type is EventType.RESPONSE_DONE)
            for n in range(100):  # 2 s of microphone audio at real-time pace
                if n == 25:
                    if loss == "go_away":
                        server.go_away(2.0)
                    else:
                        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1011))
                await engine.send_audio(FRAME)
                await asyncio.sleep(0.02)
            restored = await until(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == "restored")
            await engine.send_text("what colour")
            await until(lambda e: e.type is EventType.RESPONSE_DONE and len(
                [d for d in events if d.type is EventType.RESPONSE_DONE]) == 2)
            accounting = engine.audio_accounting
            metrics = engine.metrics
    change = restored.data
    assert change.restored_by is RestoreMethod.RESUMPTION and change.replayed_items == 0
    assert change.planned is (loss == "go_away")
    new = server.sessions[-1]
    assert len(server.sessions) == 2 and new.resumed
    # no history replayed into the resumed session: its only clientContent is the new question
    texts = [p["text"] for f in new.received if "clientContent" in f
             for t in f["clientContent"].get("turns", []) for p in t["parts"]]
    assert texts == ["what colour"]
    assert ("user", "remember blue") in list(new.history)  # the service kept the conversation
    # zero lost input audio, accounted, and in the resumed session's state exactly once
    assert accounting.captured_bytes == 100 * len(FRAME) and accounting.balanced
    assert accounting.dropped_bytes == 0 and accounting.pending_bytes == 0
    assert accounting.captured_bytes == accounting.sent_bytes + accounting.replayed_bytes
    assert new.lineage_input_audio_bytes == accounting.captured_bytes
    assert metrics.audio_unsent_bytes == 0 and metrics.restores == 1
    # one reply per question, none requested twice
    assert len([e for e in events if e.type is EventType.RESPONSE_STARTED]) == 2
    assert len([f for f in server.sent if f.get("serverContent", {}).get("turnComplete")]) == 2
