"""MockProvider: the continuity contract of issue 5 (replay, backlog, accounting, lost responses)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from voiceengine.exceptions import ConfigurationError, InvalidState
from voiceengine.providers.mock import MockConfig, MockProvider
from voiceengine.providers.types import ConnectionChange, ConnectionState, EventType as E

BYTES_PER_MS = 48


def changes(p: MockProvider) -> list[ConnectionChange]:
    return [e.data for e in p.emitted(E.CONNECTION_STATE)]


@pytest.fixture
async def mock() -> Any:
    p = MockProvider(MockConfig(responses=("one two three four five six",), turn_detection=None,
                                reconnect_audio_buffer_ms=100))
    await p.connect()
    yield p
    await p.disconnect()


async def test_replay_source_called_once_items_recreated_with_ids(mock: MockProvider) -> None:
    calls = 0
    items = [
        {"id": "item_a", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"id": "item_b", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "yo"}]},
        {"id": "item_c", "type": "function_call", "name": "f", "call_id": "c1", "arguments": "{}"},
    ]

    def source() -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        return items

    mock.set_replay_source(source)
    await mock.update_session(instructions="be brief")
    mark = len(mock.history)
    await mock.inject_disconnect("network", reconnect=True, failed_attempts=1)
    assert calls == 1  # once per outage, even across a failed attempt
    new = [r.event for r in mock.history[mark:] if r.kind == "event"]
    added = [e for e in new if e.type is E.ITEM_ADDED]
    assert [e.item_id for e in added] == ["item_a", "item_b", "item_c"]
    assert [e.data["previous_item_id"] for e in added] == [None, "item_a", "item_b"]
    assert added[1].data["role"] == "assistant"  # roles kept, never folded into instructions
    phases = [c.phase for c in changes(mock)][-3:]
    assert phases == ["reconnecting", "reconnecting", "restored"]
    restored = changes(mock)[-1]
    assert restored.replayed_items == 3 and restored.attempt == 2
    assert restored.downtime_ms is not None and restored.downtime_ms >= 0
    # accumulated session options survive into the fresh session
    updated = [e for e in new if e.type is E.SESSION_UPDATED][-1]
    assert updated.data["session"]["instructions"] == "be brief"
    # the restored conversation holds the items: a duplicate id is refused like on the server
    await mock.add_item(dict(items[0]))
    assert mock.emitted(E.ERROR)[-1].error.param == "item.id"


async def test_active_response_ends_failed_connection_lost_once(mock: MockProvider) -> None:
    await mock.create_response()
    for _ in range(6):  # let the response get going
        await asyncio.sleep(0)
    await mock.inject_disconnect("drop", reconnect=True)
    done = mock.emitted(E.RESPONSE_DONE)
    assert len(done) == 1
    assert done[0].data.status == "failed" and done[0].data.reason == "connection_lost"
    assert not mock.response_active
    # nothing of the lost response is emitted afterwards and it is not re-requested
    await asyncio.sleep(0.01)
    assert len(mock.emitted(E.RESPONSE_DONE)) == 1
    assert len(mock.emitted(E.RESPONSE_STARTED)) <= 1


async def test_outage_audio_backlog_is_replayed_and_counted(mock: MockProvider) -> None:
    await mock.send_audio(bytes(20 * BYTES_PER_MS))  # normal: captured + sent
    resume = asyncio.Event()
    outage = asyncio.create_task(mock.inject_disconnect("net", reconnect=True, resume=resume))
    while mock.state is not ConnectionState.RECONNECTING:
        await asyncio.sleep(0)
    for _ in range(7):  # 140 ms into a 100 ms backlog: the oldest 40 ms are dropped
        await mock.send_audio(bytes(20 * BYTES_PER_MS))
        acc = mock.audio_accounting
        assert acc.balanced
    assert mock.audio_accounting.pending_bytes == 100 * BYTES_PER_MS
    assert mock.audio_accounting.dropped_bytes == 40 * BYTES_PER_MS
    resume.set()
    await outage
    acc = mock.audio_accounting
    assert acc.balanced and acc.pending_bytes == 0
    assert (acc.captured_bytes, acc.sent_bytes, acc.replayed_bytes, acc.dropped_bytes) == (
        160 * BYTES_PER_MS, 20 * BYTES_PER_MS, 100 * BYTES_PER_MS, 40 * BYTES_PER_MS)
    restored = changes(mock)[-1]
    assert restored.phase == "restored"
    assert restored.replayed_audio_bytes == 100 * BYTES_PER_MS
    assert restored.dropped_audio_bytes == 40 * BYTES_PER_MS
    # the replayed audio is in the new session's input buffer: a commit succeeds
    await mock.commit_audio()
    assert mock.emitted(E.INPUT_COMMITTED)


async def test_gave_up_drops_the_backlog() -> None:
    p = MockProvider(MockConfig(turn_detection=None, max_reconnect_attempts=2))
    await p.connect()
    resume = asyncio.Event()
    outage = asyncio.create_task(p.inject_disconnect("net", reconnect=True, resume=resume, failed_attempts=5))
    while p.state is not ConnectionState.RECONNECTING:
        await asyncio.sleep(0)
    await p.send_audio(bytes(960))
    resume.set()
    await outage
    phases = [c.phase for c in changes(p)]
    assert phases[-3:] == ["reconnecting", "reconnecting", "gave_up"]
    assert changes(p)[-1].dropped_audio_bytes == 960
    acc = p.audio_accounting
    assert acc.balanced and acc.dropped_bytes == 960 and acc.pending_bytes == 0
    assert p.state is ConnectionState.ERROR
    with pytest.raises(InvalidState):
        await p.send_audio(bytes(960))
    await p.disconnect()


async def test_disconnect_during_outage_drops_pending_audio() -> None:
    p = MockProvider(MockConfig(turn_detection=None))
    await p.connect()
    resume = asyncio.Event()
    outage = asyncio.create_task(p.inject_disconnect("net", reconnect=True, resume=resume))
    while p.state is not ConnectionState.RECONNECTING:
        await asyncio.sleep(0)
    await p.send_audio(bytes(480))
    await p.disconnect()
    resume.set()
    await outage
    acc = p.audio_accounting
    assert acc.balanced and acc.dropped_bytes == 480 and acc.pending_bytes == 0
    assert p.state is ConnectionState.CLOSED  # the outage did not resurrect the session


async def test_zero_backlog_and_replay_source_errors() -> None:
    p = MockProvider(MockConfig(turn_detection=None, reconnect_audio_buffer_ms=0))
    await p.connect()

    def broken() -> list[Any]:
        raise RuntimeError("boom")

    p.set_replay_source(broken)
    resume = asyncio.Event()
    outage = asyncio.create_task(p.inject_disconnect("net", reconnect=True, resume=resume))
    while p.state is not ConnectionState.RECONNECTING:
        await asyncio.sleep(0)
    await p.send_audio(bytes(480))
    assert p.audio_accounting.dropped_bytes == 480
    resume.set()
    await outage
    assert changes(p)[-1].phase == "restored" and changes(p)[-1].replayed_items == 0
    assert p.audio_accounting.balanced
    await p.disconnect()


async def test_normal_audio_is_captured_and_sent() -> None:
    p = MockProvider(MockConfig())
    await p.connect()
    await p.send_audio(bytes(4800))
    acc = p.audio_accounting
    assert (acc.captured_bytes, acc.sent_bytes, acc.pending_bytes) == (4800, 4800, 0) and acc.balanced
    await p.disconnect()
    with pytest.raises(ConfigurationError):
        MockConfig(reconnect_audio_buffer_ms=-1)
    with pytest.raises(InvalidState):
        await p.inject_disconnect(reconnect=True)
