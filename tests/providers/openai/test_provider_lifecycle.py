"""Lifecycle of the OpenAI provider: no leaks, bounded close, bad input, secrets."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import pickle

import pytest

from _shell_helpers import make_provider, response_done, running
from voiceengine.exceptions import ConnectionFailed
from voiceengine.providers import ConnectionState, EventType
from voiceengine.testing import AuthFailureMode, FakeRealtimeServer, FakeServerConfig, Fault, FaultKind, Trigger

FAST = FakeServerConfig(turn_detection=None, speed=math.inf, responses=["Fine."])


async def test_nothing_left_running_after_disconnect() -> None:
    before = asyncio.all_tasks()
    async with FakeRealtimeServer(FakeServerConfig(turn_detection=None, speed=50.0)) as server:
        provider = make_provider(server)
        async_calls: list[str] = []

        async def async_handler(event: object) -> None:
            async_calls.append("x")
            await asyncio.sleep(10)  # still running at disconnect: must be cancelled

        provider.on_event(EventType.RESPONSE_STARTED, async_handler)
        await provider.connect()
        during = asyncio.all_tasks() - before
        assert any(t.get_name() == "voiceengine-openai-reader" for t in during)
        assert any(t.get_name() == "voiceengine-openai-writer" for t in during)
        await provider.send_text("a long answer please")  # a response is streaming when we leave
        await server.wait_for(lambda ev: ev["type"] == "response.output_audio.delta")
        await provider.disconnect()
        await provider.disconnect()  # idempotent
        assert provider.state is ConnectionState.CLOSED
        assert async_calls == ["x"]
        sent_after_close = len(server.sessions[0].received)
        with pytest.raises(Exception):
            await provider.send_text("after close")
        assert len(server.sessions[0].received) == sent_after_close  # nothing more was sent
    assert asyncio.all_tasks() == before


async def test_events_iterators_end_on_disconnect() -> None:
    async with running(FAST) as (server, provider, rec):
        got: list[EventType] = []

        async def consume() -> None:
            async for event in provider.events():
                got.append(event.type)

        consumers = [asyncio.create_task(consume()) for _ in range(3)]
        await asyncio.sleep(0)
        await provider.send_text("hi")
        await rec.wait(response_done)
        await provider.disconnect()
        await asyncio.wait_for(asyncio.gather(*consumers), 5)
        assert all(c.done() for c in consumers)
        assert EventType.RESPONSE_DONE in got and got[-1] is EventType.CONNECTION_STATE


async def test_disconnect_during_reconnect_backoff() -> None:
    async with running(FAST) as (server, provider, rec):
        provider.reconnect_delays = lambda config: itertools.repeat(60.0)
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1012))
        await rec.wait_phase("reconnecting")
        async with asyncio.timeout(5):  # a guard against a hang, not a performance figure
            await provider.disconnect()
        assert provider.state is ConnectionState.CLOSED
        assert server.handshakes == 1


async def test_disconnect_during_connect() -> None:
    config = FakeServerConfig(faults=(Fault(kind=FaultKind.STALL,
                                            trigger=Trigger.BEFORE_SESSION_CREATED, duration_s=None),))
    async with running(config, connect=False) as (server, provider, rec):
        connecting = asyncio.create_task(provider.connect())
        async with asyncio.timeout(5):
            while not server.sessions:  # handshake done, session.created withheld by the stall
                await asyncio.sleep(0.01)
        await provider.disconnect()
        with pytest.raises(ConnectionFailed):
            await asyncio.wait_for(connecting, 5)
        assert provider.state is ConnectionState.CLOSED


async def test_disconnect_against_a_peer_that_never_answers() -> None:
    async with running(FAST, close_timeout_s=0.2) as (server, provider, rec):
        server.inject(Fault(kind=FaultKind.HALF_OPEN))
        await asyncio.sleep(0.05)
        async with asyncio.timeout(3):  # hang guard: close is bounded by close_timeout_s
            await provider.disconnect()
        assert provider.state is ConnectionState.CLOSED


async def test_half_open_connection_is_detected_by_keepalive_and_restored() -> None:
    async with running(FAST, ping_interval_s=0.1, ping_timeout_s=0.2, close_timeout_s=0.2) as (server, provider, rec):
        server.inject(Fault(kind=FaultKind.HALF_OPEN))
        restored = await rec.wait_phase("restored")
        reconnecting = [e.data for e in rec.of(EventType.CONNECTION_STATE) if e.data.phase == "reconnecting"]
        assert reconnecting[0].close_code in (1006, 1011)
        assert restored.data.state is ConnectionState.CONNECTED


async def test_session_created_timeout_fails_connect() -> None:
    config = FakeServerConfig(faults=(Fault(kind=FaultKind.STALL, trigger=Trigger.BEFORE_SESSION_CREATED,
                                            duration_s=None),))
    async with running(config, connect=False, connect_timeout_s=0.3) as (server, provider, rec):
        with pytest.raises(ConnectionFailed) as info:
            await provider.connect()
        assert info.value.code == "timeout" and info.value.retryable
        assert provider.state is ConnectionState.ERROR


@pytest.mark.parametrize("kind", [FaultKind.MALFORMED_JSON, FaultKind.MALFORMED_EVENT, FaultKind.UNKNOWN_EVENT,
                                  FaultKind.BAD_BASE64_AUDIO, FaultKind.DUPLICATE_EVENT])
async def test_bad_server_input_never_kills_the_receive_loop(kind: FaultKind) -> None:
    async with running(FAST) as (server, provider, rec):
        for _ in range(3):
            server.inject(Fault(kind=kind))
        await provider.send_text("hello")
        done = await rec.wait(response_done)
        assert done.data is not None
        mark = rec.mark()
        await provider.send_text("still alive?")
        await rec.wait(response_done, since=mark)
        assert provider.state is ConnectionState.CONNECTED
        if kind in (FaultKind.MALFORMED_JSON, FaultKind.MALFORMED_EVENT, FaultKind.BAD_BASE64_AUDIO):
            assert any(e.error.remote and not e.error.fatal for e in rec.errors())
        if kind is FaultKind.UNKNOWN_EVENT:
            assert rec.of(EventType.UNKNOWN)


async def test_oversized_message_is_a_typed_error() -> None:
    # Issue 5: 1009 from our max_size is a typed ERROR, then the session is restored.
    async with running(FAST, max_size_bytes=64 * 1024) as (server, provider, rec):
        server.inject(Fault(kind=FaultKind.OVERSIZED_MESSAGE, size_bytes=200 * 1024))
        restored = await rec.wait_phase("restored")
        reconnecting = [e.data for e in rec.of(EventType.CONNECTION_STATE) if e.data.phase == "reconnecting"]
        assert reconnecting[0].close_code == 1009
        assert restored.data.state is ConnectionState.CONNECTED
        too_big = [e.error for e in rec.errors() if e.error.code == "message_too_big"]
        assert len(too_big) == 1 and too_big[0].type == "client_error" and too_big[0].remote


async def test_canary_key_never_logged_or_shown(caplog: pytest.LogCaptureFixture) -> None:
    canary = "sk-CANARY-9f8e7d6c5b4a39281706"
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    handler = Capture(level=logging.DEBUG)
    old_level = root.level
    touched = [logging.getLogger(name) for name in ("websockets", "websockets.client", "voiceengine")]
    old_levels = [lg.level for lg in touched]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for lg in touched:
        lg.setLevel(logging.DEBUG)
    texts: list[str] = []
    try:
        server_config = FakeServerConfig(turn_detection=None, speed=math.inf, api_keys=(canary,))
        async with running(server_config, api_key=canary) as (server, provider, rec):
            await provider.send_audio(b"\1\0" * 4800)
            await provider.send_text("hello")
            await rec.wait(response_done)
            server.inject(Fault(kind=FaultKind.CLOSE, close_code=1006))
            await rec.wait_phase("restored")
            texts += [repr(provider), repr(provider.config), str(provider.config), repr(provider.session)]
            texts += [repr(e) for e in rec.events]
            with pytest.raises(TypeError):
                pickle.dumps(provider.config)
            # refused handshakes and fatal errors must not echo the key either
            async with FakeRealtimeServer(FakeServerConfig(api_keys=("sk-other-key-000",),
                                                           auth_failure=AuthFailureMode.HTTP_401)) as other:
                bad = make_provider(other, api_key=canary)
                with pytest.raises(ConnectionFailed) as info:
                    await bad.connect()
                await bad.disconnect()
                texts += [str(info.value), repr(info.value), repr(info.value.__cause__), repr(info.value.__context__)]
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for lg, level in zip(touched, old_levels):
            lg.setLevel(level)
    client_records = [r for r in records
                      if not r.name.startswith(("websockets.server", "voiceengine.testing"))]
    assert any(r.name == "voiceengine.providers.openai.wire" and "Authorization" in r.getMessage()
               for r in client_records), "the handshake headers were not logged at DEBUG: test is blind"
    leaked = [f"{r.name}: {r.getMessage()}" for r in client_records if canary in r.getMessage()]
    assert leaked == []
    assert not [t for t in texts if canary in t]
