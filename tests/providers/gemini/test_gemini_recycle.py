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
