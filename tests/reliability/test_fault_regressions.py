"""Directed reproductions of what the random episodes found, so each stays fixed.

Each test names the episode seed that first showed the problem.
"""

from __future__ import annotations

import asyncio
from typing import Any

from reliability_harness import (
    Harness,
    accounting_problems,
    eventually,
    lost_items,
    server_config,
    state_problems,
    tone,
)
from voiceengine.providers import EventType
from voiceengine.testing import FakeRealtimeServer, Fault, FaultKind, Trigger


def _alive_tasks() -> list[str]:
    me = asyncio.current_task()
    return sorted(t.get_name() for t in asyncio.all_tasks() if t is not me and not t.done())


async def test_loss_right_after_restored_leaves_no_task_behind() -> None:
    """Seeds 477 and 632: a second loss just after ``restored`` (the next session's first
    event) leaked the recycler task of the first restored session past ``disconnect()``."""
    before = _alive_tasks()
    async with FakeRealtimeServer(server_config()) as server:
        h = Harness.create(server)
        await h.provider.connect()
        reset_on_restore = Fault(kind=FaultKind.TCP_RESET, trigger=Trigger.AFTER_SERVER_EVENTS,
                                 event_type="session.created", session_index=1)
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1006, then=(reset_on_restore,)))
        await h.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == "restored"
                     and len(server.sessions) == 3, timeout=5)
        assert h.phases() == ["connecting", "connected", "reconnecting", "restored", "reconnecting", "restored"]
        await h.check_turn()
        async with asyncio.timeout(5):
            await h.disconnect()
        for _ in range(3):
            await asyncio.sleep(0)
        assert _alive_tasks() == before
        assert not accounting_problems(h, quiescent=True)


async def test_replay_held_by_a_stalled_server_is_not_lost() -> None:
    """Seed 242: a stall that begins with the restored session delays the replay; once it
    ends the server has every item the client holds (the views agree)."""
    async with FakeRealtimeServer(server_config()) as server:
        h = Harness.create(server)
        await h.provider.connect()
        await h.check_turn()
        stall = Fault(kind=FaultKind.STALL, duration_s=0.1, trigger=Trigger.AFTER_SERVER_EVENTS,
                      event_type="session.created", session_index=1)
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1011, then=(stall,)))
        await h.wait_phase("restored", timeout=5)
        try:
            assert await eventually(lambda: lost_items(h) + state_problems(h)) == []
            assert h.outages[0].replay_count == len(h.outages[0].committed) > 0
        finally:
            await h.disconnect()


async def test_audio_survives_a_second_outage_right_after_a_restore() -> None:
    """Seed 632: a loss just after ``restored``, with appends still queued, counted them as
    dropped (not moved to the backlog) and ``send_audio`` then raised InvalidState while
    reconnecting instead of buffering. Both outages are far shorter than the 3 s backlog."""
    chunk = tone(20)
    async with FakeRealtimeServer(server_config()) as server:
        h = Harness.create(server)
        await h.provider.connect()
        # the reset leaves with the restored session's session.created: the client restores,
        # the app appends, and the loss is read while those appends are still queued
        reset_on_restore = Fault(kind=FaultKind.TCP_RESET, trigger=Trigger.AFTER_SERVER_EVENTS,
                                 event_type="session.created", session_index=1)
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1006, then=(reset_on_restore,)))
        await h.wait_phase("restored", timeout=5)
        mark = h.mark()
        try:
            for _ in range(3):
                assert await h.send_audio(chunk)
            await h.wait_phase("reconnecting", since=mark, timeout=5)
            for _ in range(2):  # while reconnecting: into the backlog, never refused
                assert await h.send_audio(chunk), (h.provider.state, h.provider.audio_accounting)
            await h.wait_phase("restored", since=mark, timeout=5)
            acc = h.provider.audio_accounting
            assert acc.dropped_bytes == 0, acc
            assert await eventually(lambda: accounting_problems(h, quiescent=False)) == []
        finally:
            await h.disconnect()
        assert accounting_problems(h, quiescent=True) == []


async def test_out_of_order_right_before_response_done_still_ends_the_reply() -> None:
    """Seed 849: an ``out_of_order`` fault that fired between a reply's last item event and
    its ``response.done`` made the fake server hold ``response.done`` back until its next
    event, which never came: the client was waiting for that reply to end. (Timing decided
    whether the random fault landed there, so it showed mostly under CPU load.)"""
    async with FakeRealtimeServer(server_config()) as server:
        h = Harness.create(server)
        await h.provider.connect()
        # the text turn's second conversation.item.done is the reply's (the first, its user item's)
        server.inject(Fault(kind=FaultKind.OUT_OF_ORDER, trigger=Trigger.AFTER_SERVER_EVENTS,
                            event_type="conversation.item.done", count=2))
        try:
            await h.check_turn(timeout=3)  # the fault fires before this reply's response.done
            await h.check_turn(timeout=3)  # and swaps two events of this one
            assert [f.kind for _, f in server.faults.fired] == [FaultKind.OUT_OF_ORDER]
            items = [(ev["type"], ev["item"]["id"]) for ev in server.session.sent
                     if ev["type"] in ("conversation.item.added", "conversation.item.done")]
            swapped = [item for n, (kind, item) in enumerate(items)
                       if kind == "conversation.item.done" and ("conversation.item.added", item) not in items[:n]]
            assert len(swapped) == 1, items  # the second turn's user item: its done before its added
        finally:
            await h.disconnect()
        assert h.phases() == ["connecting", "connected", "closed"]


async def test_a_live_frame_whose_socket_write_fails_is_replayed_not_lost() -> None:
    """A frame written from the caller's step (``send_audio_nowait``, one per call: the
    engine's live path, no queue) whose socket write raises: the connection is dropped, the
    frame goes to the backlog with the teardown, and the restored session gets it."""
    chunk = tone(40)  # two 20 ms frames
    async with FakeRealtimeServer(server_config()) as server:
        h = Harness.create(server)
        await h.provider.connect()
        await h.wait_phase("connected", timeout=5)
        transport: Any = h.provider._transport
        socket_transport = transport.connection.transport
        real_write = socket_transport.write

        def failing_write(data: Any) -> None:
            socket_transport.write = real_write  # once
            raise OSError("EPIPE on the live frame")

        mark = h.mark()
        try:
            h.provider.send_audio_nowait(chunk[:960])  # written now, the connection still alive
            await asyncio.sleep(0.001)  # the next one is a live frame, not part of a burst
            socket_transport.write = failing_write
            h.provider.send_audio_nowait(chunk[960:])
            h.audio_accepted += len(chunk)
            await h.wait_phase("restored", since=mark, timeout=5)
            acc = h.provider.audio_accounting
            assert acc.dropped_bytes == 0 and acc.replayed_bytes == 960, acc
            assert await eventually(lambda: accounting_problems(h, quiescent=True)) == []
            # both frames reach the service, the second one replayed on the new connection
            assert await eventually(lambda: [] if h.server.input_audio_bytes == len(chunk)
                                    else [f"server has {h.server.input_audio_bytes} bytes"], timeout=5) == []
        finally:
            await h.disconnect()
