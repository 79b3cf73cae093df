"""Issue 10 on the runtime: the first connect() retries transient handshake failures like a
reconnect (fatal ones raise at once), and a standalone OpenAIProvider (no engine, no replay
source) restores its own conversation after a loss."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from _shell_helpers import running
from voiceengine.exceptions import ConnectionFailed
from voiceengine.providers import ConnectionState, EventType
from voiceengine.providers.types import RestoreMethod
from voiceengine.testing import FakeServerConfig, Fault, FaultKind, Trigger

FAST = FakeServerConfig(turn_detection=None, speed=math.inf, responses=["Okay."])


def refuse(status: int, times: int | None = 1) -> Fault:
    return Fault(kind=FaultKind.REJECT_HANDSHAKE, status_code=status, trigger=Trigger.ON_CONNECT, times=times)


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_first_connect_retries_a_transient_refusal(status: int) -> None:
    config = FakeServerConfig(turn_detection=None, speed=math.inf, faults=(refuse(status),))
    async with running(config, connect=False, max_reconnect_attempts=2) as (server, provider, rec):
        await provider.connect()
        assert provider.is_connected and server.handshakes == 2
        assert rec.phases() == ["connecting", "connecting", "connected"]
        retry = rec.of(EventType.CONNECTION_STATE)[1].data
        assert retry.attempt == 1 and str(status) in retry.reason


async def test_first_connect_retries_a_handshake_timeout() -> None:
    timeout = Fault(kind=FaultKind.HANDSHAKE_TIMEOUT, trigger=Trigger.ON_CONNECT, duration_s=5.0)
    config = FakeServerConfig(turn_detection=None, speed=math.inf, faults=(timeout,))
    async with running(config, connect=False, open_timeout_s=0.2) as (server, provider, rec):
        await provider.connect()
        assert provider.is_connected and server.handshakes == 2


async def test_first_connect_gives_up_after_max_reconnect_attempts() -> None:
    config = FakeServerConfig(turn_detection=None, speed=math.inf, faults=(refuse(503, times=None),))
    async with running(config, connect=False, max_reconnect_attempts=2) as (server, provider, rec):
        with pytest.raises(ConnectionFailed) as info:
            await provider.connect()
        assert info.value.retryable and not info.value.fatal and info.value.status_code == 503
        assert server.handshakes == 3  # the first attempt and two retries
        assert provider.state is ConnectionState.ERROR and rec.phases()[-1] == "failed"


@pytest.mark.parametrize("status", [401, 403])
async def test_first_connect_never_retries_a_fatal_refusal(status: int) -> None:
    config = FakeServerConfig(turn_detection=None, speed=math.inf, faults=(refuse(status, times=None),))
    async with running(config, connect=False, max_reconnect_attempts=3) as (server, provider, rec):
        with pytest.raises(ConnectionFailed) as info:
            await provider.connect()
        assert info.value.fatal and server.handshakes == 1
        assert rec.phases() == ["connecting", "failed"]


async def test_disconnect_during_a_first_connect_backoff_ends_it() -> None:
    config = FakeServerConfig(turn_detection=None, speed=math.inf, faults=(refuse(503, times=None),))
    async with running(config, connect=False, max_reconnect_attempts=5) as (server, provider, rec):
        provider.reconnect_delays = lambda config: iter([30.0] * 10)  # a long backoff sleep
        connecting = asyncio.create_task(provider.connect())
        async with asyncio.timeout(5):
            while server.handshakes < 1 or "connecting" not in rec.phases()[1:]:
                await asyncio.sleep(0.01)
        await provider.disconnect()
        with pytest.raises(ConnectionFailed) as info:
            await asyncio.wait_for(connecting, 2)
        assert info.value.code == "closed" and server.handshakes == 1
        assert provider.state is ConnectionState.CLOSED


def created_items(session: Any) -> list[tuple[str, str, str]]:
    """(id, role, text) of the conversation.item.create messages a fake session received."""
    out = []
    for ev in session.received:
        if ev["type"] == "conversation.item.create" and ev["item"].get("type") == "message":
            item = ev["item"]
            text = "".join(part.get("text", "") for part in item.get("content", []))
            out.append((item.get("id", ""), item["role"], text))
    return out


async def _first_exchange(provider: Any, rec: Any) -> None:
    await provider.send_text("My name is Ada.")
    await rec.wait(lambda e: e.type is EventType.RESPONSE_DONE)
    await provider.send_text("What is my name?", respond=False)


@pytest.mark.parametrize("loss", ["tcp_drop_mid_response", "session_expired"])
async def test_standalone_provider_replays_its_own_conversation(loss: str) -> None:
    server_config = FakeServerConfig(turn_detection=None, speed=20.0,
                                     responses=["Nice to meet you Ada.", "one two three four five six seven"])
    async with running(server_config) as (server, provider, rec):
        assert provider._replay_source is None  # no engine: the provider's own record is the source
        await _first_exchange(provider, rec)
        before = [(e.id, e.role) for e in provider.conversation]
        assert [role for _, role in before] == ["user", "assistant", "user"]
        if loss == "tcp_drop_mid_response":
            server.inject(Fault(kind=FaultKind.TCP_RESET, trigger=Trigger.MID_RESPONSE, count=2))
            await provider.create_response()
        else:
            server.inject(Fault(kind=FaultKind.SESSION_EXPIRED))
        restored = await rec.wait_phase("restored")
        assert restored.data.restored_by is RestoreMethod.REPLAY
        await provider.send_text("Still there?")
        fresh = server.sessions[1]
        async with asyncio.timeout(5):
            while not any(text == "Still there?" for _, _, text in created_items(fresh)):
                await asyncio.sleep(0.01)
        items = created_items(fresh)
        # the earlier items, in order, with their ids and roles, before the new input
        assert [(i, role) for i, role, _ in items[:len(before)]] == before
        assert [text for _, _, text in items[:len(before)]] == [
            "My name is Ada.", "Nice to meet you Ada.", "What is my name?"]
        assert items[-1][1:] == ("user", "Still there?") and items[-1][0] not in dict(before)
        # between them at most the reply cut by the loss, as what was received of it
        assert all(role == "assistant" for _, role, _ in items[len(before):-1])
        assert restored.data.replayed_items == len(items) - 1
