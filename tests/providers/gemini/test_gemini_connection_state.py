"""CONNECTION_STATE through Gemini's resumptions: a planned one says when it starts (at
``goAway``, reason ``go_away``), and every restore, planned or not, says so and whether the
conversation came back by resumption or by replay."""

from __future__ import annotations

import pytest

from gemini_provider_helpers import Recorder, is_, running
from voiceengine.providers.types import ConnectionChange, ConnectionState, EventType, ProviderEvent, RestoreMethod
from voiceengine.testing import FakeGeminiLiveServer, Fault, FaultKind


def changes_since(rec: Recorder, mark: int) -> list[ConnectionChange]:
    return [e.data for e in rec.events[mark:] if e.type is EventType.CONNECTION_STATE]


def is_restored(event: ProviderEvent) -> bool:
    return event.type is EventType.CONNECTION_STATE and event.data.phase == "restored"


@pytest.mark.parametrize("refuse", [False, True], ids=["resumed", "replayed"])
async def test_go_away_says_the_planned_resumption_starts_then_how_it_was_restored(refuse: bool) -> None:
    async with FakeGeminiLiveServer(speed=float("inf")) as server:
        async with running(server, max_reconnect_attempts=3) as (provider, rec):
            await provider.send_text("remember blue")
            await rec.wait(is_(EventType.RESPONSE_DONE))
            if refuse:
                server.refuse_handles(1)
            mark = len(rec.events)
            server.go_away(5.0)
            await rec.wait(is_restored, since=mark)
            seen = [e for e in rec.events[mark:] if e.type in (EventType.SESSION_EXPIRING, EventType.CONNECTION_STATE)]
    phases = changes_since(rec, mark)
    # the start: with the goAway itself (SESSION_EXPIRING), before the old connection closes,
    # which is still connected
    assert {e.type for e in seen[:2]} == {EventType.SESSION_EXPIRING, EventType.CONNECTION_STATE}
    start = next(e.data for e in seen[:2] if e.type is EventType.CONNECTION_STATE)
    assert (start.phase, start.reason, start.planned) == ("handover", "go_away", True)
    assert start.state is ConnectionState.CONNECTED and start.restored_by is None
    assert [c.phase for c in phases][:2] == ["handover", "reconnecting"]
    assert all(c.planned and c.reason.startswith("go_away") for c in phases[:2])
    (done,) = [c for c in phases if c.phase == "restored"]
    assert done.planned and done.reason == "go_away" and done.state is ConnectionState.CONNECTED
    if refuse:  # the handle refused: the fresh session got the conversation replayed
        assert done.restored_by is RestoreMethod.REPLAY and done.replayed_items == 2
    else:
        assert done.restored_by is RestoreMethod.RESUMPTION and done.replayed_items == 0
    assert [c.phase for c in phases].count("handover") == 1


@pytest.mark.parametrize("refuse", [False, True], ids=["resumed", "replayed"])
async def test_an_unplanned_1011_says_it_was_not_planned_and_how_it_was_restored(refuse: bool) -> None:
    async with FakeGeminiLiveServer(speed=float("inf")) as server:
        async with running(server, max_reconnect_attempts=3) as (provider, rec):
            await provider.send_text("remember blue")
            await rec.wait(is_(EventType.RESPONSE_DONE))
            if refuse:
                server.refuse_handles(1)
            mark = len(rec.events)
            server.inject(Fault(kind=FaultKind.CLOSE, close_code=1011))
            await rec.wait(is_restored, since=mark)
    phases = changes_since(rec, mark)
    assert "handover" not in [c.phase for c in phases]  # nothing was planned
    reconnecting = phases[0]
    assert reconnecting.phase == "reconnecting" and not reconnecting.planned and reconnecting.close_code == 1011
    (done,) = [c for c in phases if c.phase == "restored"]
    assert not done.planned and done.state is ConnectionState.CONNECTED
    if refuse:
        assert done.restored_by is RestoreMethod.REPLAY and done.replayed_items == 2
    else:
        assert done.restored_by is RestoreMethod.RESUMPTION and done.replayed_items == 0
