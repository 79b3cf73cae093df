"""The proactive recycle when no ``goAway`` comes: ``recycle_margin_s`` before
``connection_limit_s`` an idle Gemini connection is replaced by a new one that resumes the
session with its handle (planned, nothing replayed, the conversation kept)."""

from __future__ import annotations

from gemini_provider_helpers import is_, running
from voiceengine.providers.types import EventType, RestoreMethod
from voiceengine.testing import FakeGeminiLiveServer


async def test_an_idle_connection_is_recycled_before_its_limit_and_resumed() -> None:
    async with FakeGeminiLiveServer(speed=float("inf")) as server:
        async with running(server, connection_limit_s=1.0, recycle_margin_s=0.5) as (provider, rec):
            await provider.send_text("remember blue")
            await rec.wait(is_(EventType.RESPONSE_DONE))
            restored = await rec.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == "restored",
                                      timeout=10)
            await provider.send_text("what colour")
            await rec.wait(lambda e: e.type is EventType.RESPONSE_DONE and len(rec.of(EventType.RESPONSE_DONE)) == 2)
    change = restored.data
    assert change.planned and change.reason.startswith("session recycle")
    assert change.restored_by is RestoreMethod.RESUMPTION and change.replayed_items == 0
    assert not [f for f in server.sent if "goAway" in f]  # the service never asked
    old, new = server.sessions[:2]
    assert old.closed_code == 1000 and new.resumed
    assert ("user", "remember blue") in list(new.history)
    assert len(rec.of(EventType.RESPONSE_STARTED)) == 2


async def test_the_connection_keeps_gemini_keepalive_defaults() -> None:
    """Gemini's pongs have been seen to take 8-30 s (python-genai #2935): the connection pings
    every 20 s and waits 60 s for the pong, not websockets' 20 s."""
    from voiceengine.providers.gemini import GeminiConfig
    from voiceengine.providers.gemini.connection import open_transport

    async with FakeGeminiLiveServer() as server:
        transport = await open_transport(GeminiConfig(api_key="k", url=server.url))
        try:
            assert (transport.connection.ping_interval, transport.connection.ping_timeout) == (20.0, 60.0)
        finally:
            await transport.close(1000, "done")
        custom = await open_transport(GeminiConfig(api_key="k", url=server.url, ping_timeout_s=90.0,
                                                   ping_interval_s=None))
        try:
            assert (custom.connection.ping_interval, custom.connection.ping_timeout) == (None, 90.0)
        finally:
            await custom.close(1000, "done")
