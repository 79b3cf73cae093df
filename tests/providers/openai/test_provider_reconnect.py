"""Reconnects, fatal errors and typed handshake failures of the OpenAI provider."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from _shell_helpers import KEY, make_provider, response_done, running
from voiceengine.exceptions import ConnectionFailed, InvalidState
from voiceengine.providers import ConnectionState, EventType
from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider
from voiceengine.providers.runtime import backoff
from voiceengine.testing import AuthFailureMode, FakeRealtimeServer, FakeServerConfig, Fault, FaultKind, Trigger

FAST = FakeServerConfig(turn_detection=None, speed=math.inf, responses=["Okay."])


async def test_reconnect_after_abnormal_close_restores_a_fresh_session() -> None:
    async with running(FAST) as (server, provider, rec):
        history = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "earlier"}]},
                   {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "reply"}]}]
        provider.set_replay_source(lambda: history)
        await provider.update_session(instructions="Remember me.")
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1006))  # TCP drop, no close frame
        restored = await rec.wait_phase("restored")
        reconnecting = [e.data for e in rec.of(EventType.CONNECTION_STATE) if e.data.phase == "reconnecting"]
        assert reconnecting[0].close_code == 1006 and reconnecting[0].attempt == 1
        assert restored.data.state is ConnectionState.CONNECTED
        assert provider.state is ConnectionState.CONNECTED
        assert len(server.sessions) == 2
        fresh = server.sessions[1]
        assert provider.session_id == fresh.id
        # config replayed (start() + the update_session options), then the replay source's items
        await server.wait_for_received(lambda ev: ev["type"] == "conversation.item.create", timeout=5)
        received = list(fresh.received)
        assert received[0]["type"] == "session.update"
        assert any(ev["type"] == "session.update" and ev["session"].get("instructions") == "Remember me."
                   for ev in received)
        replayed = [ev["item"] for ev in received if ev["type"] == "conversation.item.create"]
        assert [(i["role"], i["content"][0]["text"]) for i in replayed] == [("user", "earlier"),
                                                                           ("assistant", "reply")]
        # and the new session works
        mark = rec.mark()
        await provider.send_text("after the drop")
        assert (await rec.wait(response_done, since=mark)).data.status == "completed"
        assert not fresh.errors
        assert provider.stats["reconnects"] == 1


@pytest.mark.parametrize("code", [1001, 1011, 1012, 1013])
async def test_reconnectable_close_codes(code: int) -> None:
    async with running(FAST) as (server, provider, rec):
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=code))
        await rec.wait_phase("restored")
        assert rec.phases()[-2:] == ["reconnecting", "restored"]
        assert server.handshakes == 2


@pytest.mark.parametrize("code", [1000, 1008, 4000])
async def test_other_close_codes_end_the_connection(code: int) -> None:
    async with running(FAST) as (server, provider, rec):
        stream_ended = asyncio.Event()

        async def consume() -> None:
            async for _ in provider.events():
                pass
            stream_ended.set()

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0)
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=code))
        final = await rec.wait(lambda e: e.type is EventType.CONNECTION_STATE
                               and e.data.state in (ConnectionState.CLOSED, ConnectionState.ERROR))
        assert final.data.close_code == code
        assert final.data.state is (ConnectionState.CLOSED if code == 1000 else ConnectionState.ERROR)
        await asyncio.wait_for(consumer, 5)  # events() ends when the connection is over for good
        assert stream_ended.is_set()
        assert server.handshakes == 1
        with pytest.raises(InvalidState):
            await provider.send_text("nobody listens")


async def test_session_expired_then_1001_reconnects() -> None:
    async with running(FAST) as (server, provider, rec):
        server.inject(Fault(kind=FaultKind.SESSION_EXPIRED))
        expired = await rec.wait(lambda e: e.type is EventType.ERROR and e.error.code == "session_expired")
        assert not expired.error.fatal
        restored = await rec.wait_phase("restored")
        assert restored.data.state is ConnectionState.CONNECTED
        assert len(server.sessions) == 2 and provider.session_id == server.sessions[1].id


async def test_invalid_api_key_at_connect_is_fatal_and_not_retried() -> None:
    config = FakeServerConfig(api_keys=("sk-the-right-key",), auth_failure=AuthFailureMode.ERROR_EVENT)
    async with running(config, connect=False) as (server, provider, rec):
        with pytest.raises(ConnectionFailed) as info:
            await provider.connect()
        assert info.value.code == "invalid_api_key"
        assert info.value.fatal and not info.value.retryable
        assert provider.state is ConnectionState.ERROR
        await asyncio.sleep(0.05)
        assert server.handshakes == 1


async def test_fatal_error_mid_session_stops_without_reconnect() -> None:
    async with running(FAST) as (server, provider, rec):
        server.inject(Fault(kind=FaultKind.ERROR_EVENT, error_code="invalid_api_key",
                            error_type="invalid_request_error", error_message="Incorrect API key provided.",
                            close_after=True, close_code=1008))
        failed = await rec.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.state is ConnectionState.ERROR)
        assert failed.data.phase == "failed" and "invalid_api_key" in failed.data.reason
        fatal = rec.errors()[0].error
        assert fatal.fatal and fatal.code == "invalid_api_key"
        await asyncio.sleep(0.05)
        assert server.handshakes == 1
        assert "reconnecting" not in rec.phases()


@pytest.mark.parametrize(("status", "fatal", "code"), [
    (401, True, "invalid_api_key"),
    (403, True, "unsupported_country_region_territory"),
    (429, False, "rate_limit_exceeded"),
    (500, False, "server_error"),
    (503, False, "service_unavailable"),
])
async def test_handshake_refusals_are_typed(status: int, fatal: bool, code: str) -> None:
    config = FakeServerConfig(faults=(Fault(kind=FaultKind.REJECT_HANDSHAKE, status_code=status,
                                            trigger=Trigger.ON_CONNECT),))
    # no retries: the first connect retries a transient refusal (test_first_connect_retries_*)
    async with running(config, connect=False, max_reconnect_attempts=0) as (server, provider, rec):
        with pytest.raises(ConnectionFailed) as info:
            await provider.connect()
        assert info.value.status_code == status
        assert info.value.fatal is fatal and info.value.retryable is not fatal
        assert info.value.code == code
        assert provider.state is ConnectionState.ERROR
        assert rec.phases() == ["connecting", "failed"]
        # a later connect() may succeed (the fault fired once)
        await provider.connect()
        assert provider.is_connected


async def test_gives_up_after_max_reconnect_attempts() -> None:
    async with running(FAST, max_reconnect_attempts=3) as (server, provider, rec):
        server.inject(Fault(kind=FaultKind.REJECT_HANDSHAKE, status_code=503, trigger=Trigger.ON_CONNECT, times=None))
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1006))
        gave_up = await rec.wait_phase("gave_up")
        assert gave_up.data.state is ConnectionState.ERROR
        attempts = [e.data.attempt for e in rec.of(EventType.CONNECTION_STATE) if e.data.phase == "reconnecting"]
        assert attempts == [1, 2, 3]
        assert server.handshakes == 1 + 3
        assert "503" in gave_up.data.reason


async def test_fatal_handshake_during_reconnect_fails_at_once() -> None:
    # Issue 5: a fatal refusal is "failed" (no further attempt), "gave_up" is for exhausted attempts.
    async with running(FAST, max_reconnect_attempts=5) as (server, provider, rec):
        server.inject(Fault(kind=FaultKind.REJECT_HANDSHAKE, status_code=401, trigger=Trigger.ON_CONNECT, times=None))
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1011))
        failed = await rec.wait_phase("failed")
        assert "401" in failed.data.reason and failed.data.state is ConnectionState.ERROR
        assert server.handshakes == 2


async def test_no_reconnect_when_disabled() -> None:
    async with running(FAST, reconnect=False) as (server, provider, rec):
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1006))
        final = await rec.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.state is ConnectionState.ERROR)
        assert final.data.phase == "failed" and final.data.close_code == 1006
        assert server.handshakes == 1


async def test_audio_while_reconnecting_is_buffered_and_replayed() -> None:
    # Issue 5: audio sent while reconnecting is kept (bounded) and replayed after the restore.
    async with running(FAST) as (server, provider, rec):
        provider.reconnect_delays = lambda config: itertools.repeat(0.2)  # stay in RECONNECTING a while
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1006))
        await rec.wait_phase("reconnecting")
        assert provider.state is ConnectionState.RECONNECTING
        await provider.send_audio(b"\0\0" * 480)  # neither raises nor blocks
        assert provider.audio_accounting.pending_bytes == 960
        # a control call waits for the reconnect instead of failing
        await provider.send_text("back")
        assert provider.state is ConnectionState.CONNECTED
        await rec.wait(response_done)
        assert server.sessions[1].has_item(rec.of(EventType.ITEM_ADDED)[-1].item_id)
        accounting = provider.audio_accounting
        assert accounting.replayed_bytes == 960 and accounting.dropped_bytes == 0 and accounting.balanced


async def test_handshake_timeout_is_typed() -> None:
    config = FakeServerConfig(faults=(Fault(kind=FaultKind.HANDSHAKE_TIMEOUT, trigger=Trigger.ON_CONNECT,
                                            duration_s=5.0),))
    async with running(config, connect=False, open_timeout_s=0.2, max_reconnect_attempts=0) as (server, provider, rec):
        with pytest.raises(ConnectionFailed) as info:
            await provider.connect()
        assert info.value.code == "timeout" and info.value.retryable


async def test_redirects_are_refused() -> None:
    contacted: list[str] = []

    async def target(ws: object) -> None:  # pragma: no cover - must never be reached
        contacted.append("target")

    def redirect(connection: object, request: object) -> Response:
        return Response(302, "Found", Headers([("Location", target_url), ("Content-Length", "0")]))

    async with serve(target, "127.0.0.1", 0) as target_server, \
            serve(target, "127.0.0.1", 0, process_request=redirect) as redirecting:
        target_url = f"ws://127.0.0.1:{target_server.sockets[0].getsockname()[1]}/v1/realtime"
        url = f"ws://127.0.0.1:{redirecting.sockets[0].getsockname()[1]}/v1/realtime"
        provider = OpenAIProvider(OpenAIConfig(api_key=KEY, url=url))
        with pytest.raises(ConnectionFailed) as info:
            await provider.connect()
        await provider.disconnect()
    assert info.value.status_code == 302 and info.value.code == "redirect_refused" and info.value.fatal
    assert contacted == []


def test_backoff_policy_is_jittered_and_capped() -> None:
    config = OpenAIConfig(api_key=KEY, backoff_initial_s=0.5, backoff_max_s=4.0)
    delays = backoff(config, rng=lambda: 1.0)
    assert [next(delays) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    delays = backoff(config, rng=lambda: 0.0)
    assert [next(delays) for _ in range(4)] == [0.0, 0.5, 1.0, 2.0]


async def test_connect_twice_is_a_no_op_and_reconnect_after_disconnect_works() -> None:
    async with FakeRealtimeServer(FAST) as server:
        provider = make_provider(server)
        await provider.connect()
        await provider.connect()
        assert server.handshakes == 1
        await provider.disconnect()
        await provider.connect()
        assert provider.is_connected and server.handshakes == 2
        await provider.disconnect()
