"""The runtime on the inbound fast path (messages pushed from the socket's read callback):
failures are reported as from the receive loop, and a message only ``receive()`` takes
(fragmented) keeps its place in the stream."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _shell_helpers import WAIT_S, running

from voiceengine.providers.interfaces import Frame
from voiceengine.providers.types import ConnectionState, EventType
from voiceengine.testing import FakeServerConfig



async def test_a_bug_while_handling_a_pushed_message_ends_the_provider_with_an_internal_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception out of frame handling is reported as from the receive loop: an error
    event and the ERROR state, never a silently dead reader or a crashed socket callback."""
    async with running(FakeServerConfig(turn_detection=None, speed=float("inf"))) as (_server, provider, rec):
        handled: list[Frame] = []

        def broken(session: Any, frame: Frame, *, reconnected: bool) -> None:
            handled.append(frame)
            raise RuntimeError("a bug")

        monkeypatch.setattr(provider, "_handle_frame", broken)
        await provider.send_text("hello", respond=True)
        async with asyncio.timeout(WAIT_S):
            while provider.state is not ConnectionState.ERROR:
                await asyncio.sleep(0.01)
        assert len(handled) == 1  # pushing stopped at the first failure
        errors = [e.error for e in rec.of(EventType.ERROR) if e.error is not None]
        assert [e.code for e in errors] == ["internal_error"]
        assert "RuntimeError" in errors[0].message


async def test_a_fragmented_server_event_reaches_the_session_in_order() -> None:
    """The runtime takes a fragmented message through ``receive()`` and resumes pushing:
    events before, in and after it arrive in wire order."""
    async with running(FakeServerConfig(turn_detection=None, speed=float("inf"))) as (server, provider, rec):
        connection = server.connections[0]
        ws = connection.ws
        events = [f'{{"type":"conversation.item.done","event_id":"ev_{i}","item":{{"id":"item_{i}",'
                  f'"type":"message","role":"assistant","status":"completed","content":[]}}}}' for i in range(3)]
        await ws.send(events[0])
        await ws.send([events[1][:40], events[1][40:]])
        await ws.send(events[2])
        async with asyncio.timeout(WAIT_S):
            while len([e for e in rec.events if e.item_id and e.item_id.startswith("item_")]) < 3:
                await asyncio.sleep(0.01)
        assert [e.item_id for e in rec.events if e.item_id and e.item_id.startswith("item_")] == \
            ["item_0", "item_1", "item_2"]
        assert provider.state is ConnectionState.CONNECTED
