"""Resumption while the user keeps talking: goAway and an unexpected 1011, with audio streamed
in 20 ms frames at real-time pace. With transparent resumption (``lastConsumedClientMessageIndex``)
nothing is lost or doubled in the resumed session's state, nothing replayed, nothing answered twice.

``pytest tests/providers/gemini/test_gemini_resumption_figures.py -s`` prints the figures (downtime,
audio carried over in the backlog) of each run.
"""

from __future__ import annotations

import asyncio

import pytest

from gemini_provider_helpers import Recorder, make_provider
from voiceengine.providers.types import EventType, RestoreMethod
from voiceengine.testing import FakeGeminiLiveServer, Fault, FaultKind

FRAME_BYTES = 640  # 20 ms of PCM16 16 kHz mono


@pytest.mark.parametrize("loss", ["go_away", "close_1011"])
async def test_streaming_through_a_resumption_loses_no_audio(loss: str) -> None:
    async with FakeGeminiLiveServer(speed=float("inf"), resumption_update_every=10) as server:
        provider = make_provider(server, transparent_resumption=True)
        rec = Recorder(provider)
        await provider.connect()
        try:
            sent = 0
            for n in range(100):  # 2 s of audio (silence: no turn ends, so no reply interferes)
                if n == 25:
                    if loss == "go_away":
                        server.go_away(1.0)
                    else:
                        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1011))
                await provider.send_audio(bytes(FRAME_BYTES))
                sent += FRAME_BYTES
                await asyncio.sleep(0.02)
            change = await rec.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == "restored")
            await provider.send_text("done?")
            await rec.wait(lambda e: e.type is EventType.RESPONSE_DONE)
            accounting = provider.audio_accounting
        finally:
            await provider.disconnect()
    data = change.data
    print(f"\n{loss}: downtime {data.downtime_ms:.1f} ms, audio carried over "
          f"{data.replayed_audio_bytes} bytes ({data.replayed_audio_bytes / 32:.0f} ms), dropped "
          f"{data.dropped_audio_bytes} bytes, restored by {data.restored_by.value}")
    assert data.restored_by is RestoreMethod.RESUMPTION and data.replayed_items == 0
    assert data.dropped_audio_bytes == 0 and accounting.dropped_bytes == 0
    assert accounting.captured_bytes == sent == accounting.sent_bytes + accounting.replayed_bytes
    # the resumed session's state holds every byte exactly once: what the old connection's
    # last handle held, plus what the new connection received (re-sent audio included)
    assert server.session.resumed and server.session.lineage_input_audio_bytes == sent
    assert len(rec.of(EventType.RESPONSE_STARTED)) == 1


async def test_plain_go_away_handover_delivers_every_byte_once() -> None:
    """Gemini Developer API (no transparent resumption): the handover closes the old
    connection only once it is idle, so each byte reaches the service exactly once."""
    async with FakeGeminiLiveServer(speed=float("inf")) as server:
        provider = make_provider(server)
        rec = Recorder(provider)
        await provider.connect()
        try:
            sent = 0
            for n in range(60):
                if n == 20:
                    server.go_away(1.0)
                await provider.send_audio(bytes(FRAME_BYTES))
                sent += FRAME_BYTES
                await asyncio.sleep(0.02)
            change = await rec.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == "restored")
            accounting = provider.audio_accounting
        finally:
            await provider.disconnect()
    assert change.data.restored_by is RestoreMethod.RESUMPTION
    assert accounting.dropped_bytes == 0 and accounting.captured_bytes == sent
    assert server.input_audio_bytes == sent  # summed over both connections: none lost, none twice
