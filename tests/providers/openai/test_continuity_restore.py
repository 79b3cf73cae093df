"""Issue 5 continuity: restore sequence, replay source, lost responses, audio accounting."""

from __future__ import annotations

import asyncio
import base64
import itertools
import math
from typing import Any, Callable

from _shell_helpers import response_done, running, tone
from voiceengine.providers import AudioAccounting, ConnectionState, EventType
from voiceengine.testing import FakeServerConfig, Fault, FaultKind, Trigger

FAST = FakeServerConfig(turn_detection=None, speed=math.inf, responses=["Okay."])

HISTORY: list[dict[str, Any]] = [
    {"id": "item_user_1", "type": "message", "role": "user",
     "content": [{"type": "input_text", "text": "my name is Ada"}]},
    {"id": "item_asst_1", "type": "message", "role": "assistant",
     "content": [{"type": "output_text", "text": "Hello Ada."}]},
    {"id": "item_sys_1", "type": "message", "role": "system",
     "content": [{"type": "input_text", "text": "be brief"}]},
]


def appended(events: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(ev["audio"]) for ev in events if ev["type"] == "input_audio_buffer.append")


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll until the server has processed what we wrote (restored = written on our side)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def assert_balanced(acc: AudioAccounting) -> None:
    assert acc.balanced, acc


async def test_continuity_fresh_session_replays_config_items_then_audio() -> None:
    async with running(FAST) as (server, provider, rec):
        calls: list[int] = []

        def source() -> list[dict[str, Any]]:
            calls.append(1)
            return HISTORY

        provider.set_replay_source(source)
        tools = [{"type": "function", "name": "lookup", "description": "find", "parameters": {"type": "object"}}]
        await provider.update_session(instructions="Remember me.", tools=tools)
        provider.reconnect_delays = lambda config: itertools.repeat(0.05)
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1006))
        await rec.wait_phase("reconnecting")
        audio = tone(40)
        await provider.send_audio(audio)  # buffered while reconnecting
        assert provider.audio_accounting.pending_bytes == len(audio)
        restored = await rec.wait_phase("restored")
        change = restored.data
        assert change.replayed_items == 3 and change.replayed_audio_bytes == len(audio)
        assert change.dropped_audio_bytes == 0 and not change.planned and change.downtime_ms is not None
        assert calls == [1]  # the source is called once per outage
        fresh = server.sessions[1]
        await until(lambda: len(appended(fresh.received)) == len(audio))
        types = [ev["type"] for ev in fresh.received]
        # order: session.update(s), the items, then the audio
        first_item = types.index("conversation.item.create")
        assert set(types[:first_item]) == {"session.update"}
        assert types.index("input_audio_buffer.append") > first_item + 2
        updates = [ev["session"] for ev in fresh.received if ev["type"] == "session.update"]
        assert any(u.get("instructions") == "Remember me." for u in updates)
        assert any([t.get("name") for t in u.get("tools", [])] == ["lookup"] for u in updates)
        created = [ev["item"] for ev in fresh.received if ev["type"] == "conversation.item.create"]
        assert [(i["id"], i["role"]) for i in created] == [("item_user_1", "user"), ("item_asst_1", "assistant"),
                                                          ("item_sys_1", "system")]
        assert [i["id"] for i in fresh.items] == ["item_user_1", "item_asst_1", "item_sys_1"]
        assert "Ada" not in str(fresh.session.get("instructions"))  # never folded into instructions
        assert appended(fresh.received) == audio
        acc = provider.audio_accounting
        assert acc.replayed_bytes == len(audio) and acc.pending_bytes == 0
        assert_balanced(acc)


async def test_continuity_replay_source_held_across_failed_attempts() -> None:
    async with running(FAST, max_reconnect_attempts=5) as (server, provider, rec):
        calls: list[int] = []
        provider.set_replay_source(lambda: calls.append(1) or HISTORY[:1])
        server.inject(Fault(kind=FaultKind.REJECT_HANDSHAKE, status_code=503, trigger=Trigger.ON_CONNECT, times=2))
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1011))
        restored = await rec.wait_phase("restored")
        attempts = [e.data.attempt for e in rec.of(EventType.CONNECTION_STATE) if e.data.phase == "reconnecting"]
        assert attempts == [1, 2, 3]
        assert calls == [1]
        assert restored.data.replayed_items == 1
        await until(lambda: len(server.sessions[-1].items) == 1)
        assert [i["id"] for i in server.sessions[-1].items] == ["item_user_1"]


async def test_continuity_response_lost_mid_stream_is_reported_once_and_not_rerequested() -> None:
    config = FakeServerConfig(turn_detection=None, speed=20.0, responses=["A rather long answer " * 4])
    async with running(config) as (server, provider, rec):
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1006, trigger=Trigger.MID_RESPONSE, count=2))
        await provider.send_text("talk to me")
        restored = await rec.wait_phase("restored")
        dones = rec.of(EventType.RESPONSE_DONE)
        assert len(dones) == 1
        lost = dones[0]
        started = rec.of(EventType.RESPONSE_STARTED)[0]
        assert lost.data.status == "failed" and lost.data.reason == "connection_lost"
        assert lost.response_id == started.response_id == lost.data.response_id
        # reported before the reconnect phases
        assert rec.events.index(lost) < rec.events.index(restored)
        assert not provider.response_active
        assert [ev for ev in server.sessions[1].received if ev["type"] == "response.create"] == []
        mark = rec.mark()
        await provider.create_response()  # the app asks again
        assert (await rec.wait(response_done, since=mark)).data.status == "completed"


async def test_continuity_requested_response_not_started_is_reported() -> None:
    async with running(FAST) as (server, provider, rec):
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1011, trigger=Trigger.ON_CLIENT_EVENT,
                            event_type="response.create"))
        await provider.create_response()
        await rec.wait_phase("restored")
        dones = rec.of(EventType.RESPONSE_DONE)
        assert [(d.response_id, d.data.status, d.data.reason) for d in dones] == [(None, "failed", "connection_lost")]


async def test_continuity_backlog_overflow_drops_oldest_exactly() -> None:
    async with running(FAST, reconnect_audio_buffer_ms=100) as (server, provider, rec):
        await provider.send_audio(tone(20))  # sent normally first
        await server.wait_for_received(lambda ev: ev["type"] == "input_audio_buffer.append")
        provider.reconnect_delays = lambda config: itertools.repeat(0.1)
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1001))
        await rec.wait_phase("reconnecting")
        chunks = [bytes([i]) * 960 for i in range(1, 11)]  # 10 x 20 ms, distinguishable
        for chunk in chunks:
            await provider.send_audio(chunk)
            assert_balanced(provider.audio_accounting)
        acc = provider.audio_accounting
        assert acc.pending_bytes == 4800 and acc.dropped_bytes == 4800  # 100 ms kept = 4800 bytes
        restored = await rec.wait_phase("restored")
        assert restored.data.dropped_audio_bytes == 4800 and restored.data.replayed_audio_bytes == 4800
        await until(lambda: len(appended(server.sessions[1].received)) >= 4800)
        assert appended(server.sessions[1].received) == b"".join(chunks[5:])  # the newest survive
        acc = provider.audio_accounting
        assert (acc.captured_bytes, acc.sent_bytes, acc.replayed_bytes, acc.dropped_bytes, acc.pending_bytes) == (
            960 + 9600, 960, 4800, 4800, 0)


async def test_continuity_zero_buffer_keeps_nothing() -> None:
    async with running(FAST, reconnect_audio_buffer_ms=0) as (server, provider, rec):
        provider.reconnect_delays = lambda config: itertools.repeat(0.1)
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1006))
        await rec.wait_phase("reconnecting")
        await provider.send_audio(tone(20))
        acc = provider.audio_accounting
        assert acc.dropped_bytes == 960 and acc.pending_bytes == 0
        restored = await rec.wait_phase("restored")
        assert restored.data.replayed_audio_bytes == 0 and restored.data.dropped_audio_bytes == 960


async def test_continuity_queued_audio_moves_back_to_the_backlog() -> None:
    async with running(FAST) as (server, provider, rec):
        chunk = tone(20)
        # queued synchronously: the writer has not run when the loss is noticed
        for _ in range(5):
            await provider.send_audio(chunk)
        assert provider.audio_accounting.pending_bytes == 5 * len(chunk)
        ws = provider._transport
        assert ws is not None
        ws.abort()  # a TCP reset as seen from our side, before the writer runs
        restored = await rec.wait_phase("restored")
        acc = provider.audio_accounting
        assert acc.captured_bytes == 5 * len(chunk) and acc.dropped_bytes == 0 and acc.pending_bytes == 0
        assert acc.sent_bytes + acc.replayed_bytes == 5 * len(chunk)
        assert restored.data.replayed_audio_bytes == acc.replayed_bytes
        await until(lambda: len(appended(server.sessions[1].received)) == acc.replayed_bytes)
        assert len(appended(server.sessions[1].received)) == acc.replayed_bytes
        assert_balanced(acc)


async def test_continuity_gave_up_drops_pending_audio_with_reason() -> None:
    async with running(FAST, max_reconnect_attempts=2) as (server, provider, rec):
        calls: list[int] = []
        provider.set_replay_source(lambda: calls.append(1) or HISTORY)
        server.inject(Fault(kind=FaultKind.REJECT_HANDSHAKE, status_code=503, trigger=Trigger.ON_CONNECT, times=None))
        provider.reconnect_delays = lambda config: itertools.repeat(0.05)
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1006))
        await rec.wait_phase("reconnecting")
        await provider.send_audio(tone(20))
        gave_up = await rec.wait_phase("gave_up")
        assert gave_up.data.state is ConnectionState.ERROR and "503" in gave_up.data.reason
        assert gave_up.data.attempt == 2 and calls == [1]
        acc = provider.audio_accounting
        assert acc.dropped_bytes == 960 and acc.pending_bytes == 0
        assert_balanced(acc)


async def test_continuity_disconnect_counts_pending_audio_dropped() -> None:
    async with running(FAST) as (server, provider, rec):
        provider.reconnect_delays = lambda config: itertools.repeat(30.0)
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1012))
        await rec.wait_phase("reconnecting")
        await provider.send_audio(tone(30))
        await provider.disconnect()
        acc = provider.audio_accounting
        assert acc.dropped_bytes == 1440 and acc.pending_bytes == 0
        assert_balanced(acc)


async def test_continuity_fatal_close_1008_fails_without_reconnect() -> None:
    async with running(FAST) as (server, provider, rec):
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1008))
        failed = await rec.wait_phase("failed")
        assert failed.data.close_code == 1008 and failed.data.state is ConnectionState.ERROR
        assert "reconnecting" not in rec.phases() and server.handshakes == 1
