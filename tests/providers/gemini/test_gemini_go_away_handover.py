"""goAway handover (issue 11, "Resumption, seamless") while the user's microphone streams.

Break before make (docs/gemini.md, "Resumption"): from ``goAway`` on, input audio is held;
the reply in flight is received and played to its end on the old connection; once it ended
and a fresh handle came, the old connection is closed and the session resumed on a new one.

``pytest tests/providers/gemini/test_gemini_go_away_handover.py -s`` prints the figures.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any, AsyncIterator

import pytest

from gemini_provider_helpers import Recorder, is_, make_provider
from voiceengine.providers.gemini.provider import GeminiProvider
from voiceengine.providers.types import ConnectionChange, EventType, ProviderEvent, RestoreMethod
from voiceengine.testing import FakeGeminiLiveServer
from voiceengine.testing.gemini.session import FakeGeminiSession

FRAME = bytes(640)  # 20 ms of PCM16 16 kHz mono silence: no turn ends, so no reply is asked for
STORY = ("Once upon a time a small robot walked along the long river, counting the stones "
         "and naming every bird it met on the way to the sea.")


def server_audio(session: FakeGeminiSession) -> bytes:
    """The reply audio the fake server sent on one connection, in order."""
    out = bytearray()
    for frame in session.sent:
        for part in frame.get("serverContent", {}).get("modelTurn", {}).get("parts", ()):
            out += base64.b64decode(part["inlineData"]["data"])
    return bytes(out)


def changes(rec: Recorder) -> list[ConnectionChange]:
    return [e.data for e in rec.of(EventType.CONNECTION_STATE)]


class Microphone:
    """Sends 20 ms frames at real-time pace until stopped; counts what it sent."""

    def __init__(self, provider: GeminiProvider) -> None:
        self.provider = provider
        self.sent = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            await self.provider.send_audio(FRAME)
            self.sent += len(FRAME)
            await asyncio.sleep(0.02)

    @contextlib.asynccontextmanager
    async def streaming(self) -> AsyncIterator[Microphone]:
        task = asyncio.create_task(self.run())
        try:
            yield self
        finally:
            self._stop.set()
            await task


def restored(event: ProviderEvent) -> bool:
    return event.type is EventType.CONNECTION_STATE and event.data.phase == "restored"


async def test_go_away_mid_reply_plays_it_in_full_then_resumes_losing_no_audio() -> None:
    async with FakeGeminiLiveServer(speed=4.0, responses=[STORY]) as server:
        provider = make_provider(server)
        rec = Recorder(provider)
        loop = asyncio.get_running_loop()
        at: dict[str, float] = {}
        provider.on_event(EventType.CONNECTION_STATE, lambda e: at.setdefault(e.data.phase, loop.time()))
        await provider.connect()
        try:
            async with Microphone(provider).streaming() as mic:
                await provider.send_text("tell me a story")
                await rec.wait(is_(EventType.AUDIO_DELTA))
                server.go_away(20.0)
                await rec.wait(restored)
                await asyncio.sleep(0.2)  # live audio on the new connection too
            accounting = provider.audio_accounting
            # the server has read everything once the connection idles: wait for its count
            async with asyncio.timeout(5):
                while server.input_audio_bytes < mic.sent:
                    await asyncio.sleep(0.01)
        finally:
            await provider.disconnect()
    old, new = server.sessions
    done = rec.of(EventType.RESPONSE_DONE)
    phases = changes(rec)
    reconnecting = [c for c in phases if c.phase == "reconnecting"]
    restores = [c for c in phases if c.phase == "restored"]
    expiring_at = rec.events.index(rec.of(EventType.SESSION_EXPIRING)[0])
    done_at = rec.events.index(done[0])
    reconnecting_at = next(i for i, e in enumerate(rec.events) if e.type is EventType.CONNECTION_STATE
                           and e.data.phase == "reconnecting")
    figures = restores[0]
    print(f"\ngoAway mid-reply: downtime {figures.downtime_ms:.0f} ms (goAway to restored, the reply "
          f"playing meanwhile; {(at['restored'] - at['reconnecting']) * 1000:.0f} ms of it from the old "
          f"connection's close to restored), input held and carried over {figures.replayed_audio_bytes} bytes "
          f"({figures.replayed_audio_bytes / 32:.0f} ms), dropped {figures.dropped_audio_bytes}, "
          f"captured {accounting.captured_bytes} = sent {accounting.sent_bytes} + replayed "
          f"{accounting.replayed_bytes}; server received {server.input_audio_bytes}")
    # the reply in flight was heard in full, from the old connection, before the switch
    assert len(done) == 1 and done[0].data.status == "completed"
    assert expiring_at < done_at < reconnecting_at
    assert rec.audio() == server_audio(old) and len(server_audio(new)) == 0
    # one planned resumption, said so, restored by the handle; nothing replayed
    assert len(reconnecting) == 1 and reconnecting[0].planned and reconnecting[0].reason == "go_away"
    assert reconnecting[0].close_code == 1000 and old.closed_code == 1000  # we closed it, once drained
    assert len(restores) == 1 and figures.planned and figures.reason == "go_away"
    assert figures.restored_by is RestoreMethod.RESUMPTION and figures.replayed_items == 0
    assert new.resumed and ("model", STORY) in list(new.history)  # the fresh handle held the reply
    assert not any("clientContent" in f for f in new.received)  # no history replayed
    # no reply requested twice
    assert len(rec.of(EventType.RESPONSE_STARTED)) == 1 and new.interrupts == 0
    # not one byte of input audio lost or doubled, and every byte went to the service
    assert figures.dropped_audio_bytes == 0 and accounting.dropped_bytes == 0 and accounting.balanced
    assert accounting.captured_bytes == mic.sent == accounting.sent_bytes + accounting.replayed_bytes
    assert figures.replayed_audio_bytes > 0  # audio was held during the switch, then carried over
    assert server.input_audio_bytes == mic.sent
    assert old.input_audio_bytes + new.input_audio_bytes == mic.sent


async def test_a_1011_close_after_go_away_is_the_handover_not_a_second_reconnect() -> None:
    """The service closes the old connection (1011 "Deadline expired") before the reply in
    flight ended: that close is the planned handover, one reconnect, nothing lost."""
    async with FakeGeminiLiveServer(speed=1.0, responses=[STORY]) as server:
        provider = make_provider(server, go_away_margin_s=0.0)
        rec = Recorder(provider)
        await provider.connect()
        try:
            async with Microphone(provider).streaming() as mic:
                await provider.send_text("tell me a story")
                await rec.wait(is_(EventType.AUDIO_DELTA))
                server.go_away(0.3)  # the service closes 1011 in 0.3 s: the reply is far from done
                await rec.wait(restored)
                await asyncio.sleep(0.5)  # time for a second reconnect to show, were there one
            accounting = provider.audio_accounting
            async with asyncio.timeout(5):
                while server.input_audio_bytes < mic.sent:
                    await asyncio.sleep(0.01)
        finally:
            await provider.disconnect()
    phases = changes(rec)
    reconnecting = [c for c in phases if c.phase == "reconnecting"]
    restores = [c for c in phases if c.phase == "restored"]
    assert server.sessions[0].closed_code == 1011 and len(server.sessions) == 2
    assert len(reconnecting) == 1 and reconnecting[0].planned and reconnecting[0].reason == "go_away"
    assert reconnecting[0].close_code == 1011
    assert len(restores) == 1 and restores[0].planned and restores[0].restored_by is RestoreMethod.RESUMPTION
    # the cut reply ends once, as lost with the connection; nothing asks for it again
    done = rec.of(EventType.RESPONSE_DONE)
    assert [(d.data.status, d.data.reason) for d in done] == [("failed", "connection_lost")]
    assert len(rec.of(EventType.RESPONSE_STARTED)) == 1
    assert accounting.dropped_bytes == 0 and accounting.balanced and accounting.captured_bytes == mic.sent
    assert server.input_audio_bytes == mic.sent


async def test_the_old_connection_is_closed_at_the_deadline_when_the_reply_outlasts_it() -> None:
    async with FakeGeminiLiveServer(speed=1.0, responses=[STORY]) as server:
        provider = make_provider(server, go_away_margin_s=0.8)
        rec = Recorder(provider)
        await provider.connect()
        try:
            await provider.send_text("tell me a story")
            await rec.wait(is_(EventType.AUDIO_DELTA))
            server.go_away(1.0)  # 0.2 s to drain, then we close before the service does
            change = await rec.wait(restored)
        finally:
            await provider.disconnect()
    assert server.sessions[0].closed_code == 1000
    assert change.data.reason == "go_away" and change.data.restored_by is RestoreMethod.RESUMPTION
    done = rec.of(EventType.RESPONSE_DONE)
    assert [(d.data.status, d.data.reason) for d in done] == [("failed", "connection_lost")]


async def test_go_away_while_idle_hands_over_at_once() -> None:
    async with FakeGeminiLiveServer(speed=float("inf")) as server:
        provider = make_provider(server)
        rec = Recorder(provider)
        await provider.connect()
        try:
            server.go_away(30.0)
            change = await rec.wait(restored, timeout=5.0)  # not 27 s: nothing to wait for
        finally:
            await provider.disconnect()
    assert server.sessions[0].closed_code == 1000 and change.data.reason == "go_away"
    assert change.data.restored_by is RestoreMethod.RESUMPTION


async def test_handover_checks_its_arguments_and_needs_a_usable_connection() -> None:
    async with FakeGeminiLiveServer(speed=float("inf")) as server:
        provider = make_provider(server)
        assert provider.handover("test") is False  # not connected: nothing to hand over
        await provider.connect()
        try:
            bad: list[dict[str, Any]] = [{"reason": ""}, {"reason": "x", "deadline_s": -1.0},
                                         {"reason": "x", "hold_audio_bytes": -2}]
            for kwargs in bad:
                with pytest.raises(ValueError):
                    provider.handover(**kwargs)
            rec = Recorder(provider)
            assert provider.handover("test") is True
            assert provider.handover("again") is False  # one at a time
            change = await rec.wait(restored)
        finally:
            await provider.disconnect()
    assert change.data.reason == "test" and change.data.planned and len(server.sessions) == 2
