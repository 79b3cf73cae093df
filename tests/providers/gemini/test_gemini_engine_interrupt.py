"""VoiceEngine + GeminiProvider + FakeGeminiLiveServer over loopback: ``serverContent.interrupted``
mid-reply silences playback within one output frame, nothing of the cut generation is heard
after it, nothing goes on the wire for it, and the next reply plays in full."""

from __future__ import annotations

import asyncio

from gemini_provider_helpers import make_provider
from voiceengine.engine import VoiceEngine, VoiceEngineConfig
from voiceengine.providers.types import EventType, ProviderEvent
from voiceengine.testing import FakeGeminiLiveServer

LONG = "This reply is long on purpose so that it is still playing when the user cuts it off. " * 4
SHORT = "Sure, I stopped."
OUT_RATE = 24000
TICK_MS = 5
#: one output frame: what one playback tick hands the sink (the playback clock runs at 4x)
FRAME_BYTES = OUT_RATE * 2 * TICK_MS * 4 // 1000


class Listener:
    """Every delivery to the app (in order) and every bus event, with the delivery count
    at the moment each event was emitted."""

    def __init__(self, engine: VoiceEngine, heard_enough_bytes: int) -> None:
        self.deliveries: list[bytes] = []
        self.events: list[tuple[ProviderEvent, int]] = []
        self.heard_enough = asyncio.Event()
        self._enough = heard_enough_bytes
        self._waiters: list[tuple[EventType, asyncio.Future[ProviderEvent]]] = []
        engine.on_audio_response = self._deliver
        engine.events.subscribe(self._on)

    def _deliver(self, pcm: bytes) -> None:
        self.deliveries.append(bytes(pcm))
        if sum(map(len, self.deliveries)) >= self._enough:
            self.heard_enough.set()

    def _on(self, event: ProviderEvent) -> None:
        self.events.append((event, len(self.deliveries)))
        for kind, fut in list(self._waiters):
            if kind is event.type and not fut.done():
                fut.set_result(event)

    def mark(self, kind: EventType, nth: int = 1) -> tuple[ProviderEvent, int]:
        return [entry for entry in self.events if entry[0].type is kind][nth - 1]

    async def wait(self, kind: EventType, *, count: int = 1, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while sum(1 for e, _ in self.events if e.type is kind) < count:
                fut: asyncio.Future[ProviderEvent] = asyncio.get_running_loop().create_future()
                self._waiters.append((kind, fut))
                try:
                    await fut
                finally:
                    self._waiters.remove((kind, fut))


async def test_interrupted_mid_reply_silences_playback_within_one_frame() -> None:
    # the server streams 5x faster than the reply plays (4x): at the cut most of the reply
    # sits unplayed in the engine's buffer, and all of it must go at once
    async with FakeGeminiLiveServer(speed=20.0, responses=[LONG, SHORT]) as server:
        provider = make_provider(server)
        cfg = VoiceEngineConfig(output_sample_rate=OUT_RATE, playback_speed=4.0, playback_tick_ms=TICK_MS,
                                prebuffer_ms=40)
        async with VoiceEngine(provider, cfg) as engine:
            listener = Listener(engine, heard_enough_bytes=OUT_RATE * 2 * 300 // 1000)
            await engine.send_text("Tell me a long story.")
            await asyncio.wait_for(listener.heard_enough.wait(), 15)
            received_before = len(server.received)
            await engine.send_text("Stop.")  # the service cuts its reply: serverContent.interrupted
            await listener.wait(EventType.INTERRUPTED)
            assert not engine._playback.audible and engine._playback.ring.available == 0
            await listener.wait(EventType.PLAYBACK_STOPPED, count=2)  # the cut, then the second reply's end
            await listener.wait(EventType.RESPONSE_DONE, count=2)
            frames_after_cut = server.received[received_before:]

    server_cut, at_server_cut = listener.mark(EventType.SERVER_INTERRUPTED)
    _, at_interrupted = listener.mark(EventType.INTERRUPTED)
    second_start, at_second_start = listener.mark(EventType.PLAYBACK_STARTED, 2)
    first_id = server_cut.data.response_id
    first_audio = b"".join(e.data for e, _ in listener.events
                           if e.type is EventType.AUDIO_DELTA and e.response_id == first_id)
    done = [e for e, _ in listener.events if e.type is EventType.RESPONSE_DONE]
    assert [d.data.status for d in done] == ["cancelled", "completed"]
    second_audio = b"".join(e.data for e, _ in listener.events
                            if e.type is EventType.AUDIO_DELTA and e.response_id == done[1].response_id)

    # silenced within one frame: between the service's interruption and the next reply's
    # playback at most the frame already on its way to the sink was delivered
    late = listener.deliveries[at_server_cut:at_second_start]
    assert len(late) <= 1 and sum(map(len, late)) <= FRAME_BYTES
    assert at_interrupted - at_server_cut <= 1
    heard_first = b"".join(listener.deliveries[:at_second_start])
    assert first_audio.startswith(heard_first) and len(heard_first) < len(first_audio)
    # the cut reply's unplayed audio was in the buffer and is gone; the next reply is heard whole
    assert b"".join(listener.deliveries[at_second_start:]) == second_audio and second_audio
    assert second_start.type is EventType.PLAYBACK_STARTED
    # nothing goes out for the interruption (no truncate, no cancel): only the user's text turn
    assert {next(iter(f)) for f in frames_after_cut} == {"clientContent"}
    assert [p["text"] for f in frames_after_cut for t in f["clientContent"]["turns"] for p in t["parts"]] == ["Stop."]
    assert engine.metrics.interrupts == 1
