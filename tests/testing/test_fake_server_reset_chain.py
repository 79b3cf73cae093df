"""TCP reset, chained faults (``then``) and the accounting of unhandled client messages."""

from __future__ import annotations

import asyncio
import base64
import math

import pytest
import websockets
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from fakeserver_helpers import LONG_REPLY, connect
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig, Fault, FaultKind, Trigger
from voiceengine.testing.faults import FaultBook

FAST = FakeServerConfig(speed=math.inf, turn_detection=None)
PACED = FakeServerConfig(speed=1.0, turn_detection=None, responses=[LONG_REPLY])


async def _drain_until_closed(c) -> BaseException:
    with pytest.raises(ConnectionClosedError) as info:
        while True:
            await asyncio.wait_for(c.ws.recv(), 5)
    return info.value


async def test_tcp_reset_is_an_rst_not_a_fin() -> None:
    async with FakeRealtimeServer(FAST) as srv, connect(srv) as c:
        srv.inject(Fault(kind=FaultKind.TCP_RESET))
        exc = await _drain_until_closed(c)
        # SO_LINGER 0: the kernel answers with RST, which the client reads as ECONNRESET
        assert isinstance(exc.__cause__, ConnectionResetError)
        assert c.ws.close_code == 1006 and c.ws.protocol.close_rcvd is None
        assert srv.sessions[0].closed_code == 1006


async def test_close_1006_is_a_fin_not_an_rst() -> None:
    async with FakeRealtimeServer(FAST) as srv, connect(srv) as c:
        srv.inject(Fault(kind=FaultKind.CLOSE, close_code=1006))
        exc = await _drain_until_closed(c)
        assert not isinstance(exc.__cause__, ConnectionResetError)
        assert isinstance(exc.__cause__, EOFError)


async def test_tcp_reset_mid_response() -> None:
    fault = Fault(kind=FaultKind.TCP_RESET, trigger=Trigger.MID_RESPONSE, count=2)
    async with FakeRealtimeServer(PACED, faults=(fault,)) as srv, connect(srv) as c:
        await c.send("response.create")
        exc = await _drain_until_closed(c)
        assert isinstance(exc.__cause__, ConnectionResetError)
        assert [e["type"] for e in c.events].count("response.output_audio.delta") <= 2
        assert srv.faults.fired == [(0, fault)]


async def test_then_arms_a_handshake_fault_for_the_reconnect() -> None:
    reject = Fault(kind=FaultKind.REJECT_HANDSHAKE, status_code=503, times=2)
    drop = Fault(kind=FaultKind.CLOSE, close_code=1006, trigger=Trigger.MID_RESPONSE, then=(reject,))
    async with FakeRealtimeServer(PACED, faults=(drop,)) as srv:
        async with connect(srv) as c:
            await c.send("response.create")
            await _drain_until_closed(c)
        for _ in range(2):
            with pytest.raises(InvalidStatus) as info:
                async with connect(srv):
                    pass  # pragma: no cover - refused
            assert info.value.response.status_code == 503
        async with connect(srv) as c:  # the third handshake goes through
            assert c.events[0]["type"] == "session.created"
        assert [f for _, f in srv.faults.fired] == [drop, reject, reject]
        assert srv.faults.pending == ()


async def test_then_arms_an_after_events_fault_on_the_next_session() -> None:
    second = Fault(kind=FaultKind.CLOSE, close_code=1011, trigger=Trigger.BEFORE_SESSION_CREATED)
    first = Fault(kind=FaultKind.CLOSE, close_code=1001, then=(second,))
    async with FakeRealtimeServer(FAST) as srv:
        async with connect(srv) as c:
            srv.inject(first)
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(c.ws.recv(), 5)
            assert c.ws.close_code == 1001
        async with connect(srv, wait_created=False) as c:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(c.ws.recv(), 5)
            assert c.ws.close_code == 1011
        assert srv.sessions[1].sent == type(srv.sessions[1].sent)()  # nothing, not even session.created


def test_then_validation_and_book_arming() -> None:
    with pytest.raises(TypeError):
        Fault(kind=FaultKind.CLOSE, then=("not a fault",))  # type: ignore[arg-type]
    follow = Fault(kind=FaultKind.STALL, trigger=Trigger.ON_CLIENT_EVENT, event_type="response.create")
    f = Fault(kind=FaultKind.CLOSE, trigger=Trigger.ON_CLIENT_EVENT, event_type="x", then=[follow])  # type: ignore[arg-type]
    assert f.then == (follow,)
    book = FaultBook((f,))
    assert book.match_client_event(0, "response.create") == []
    assert book.match_client_event(0, "x") == [f]
    assert book.pending == (follow,)
    assert book.match_client_event(1, "response.create") == [follow]
    assert book.fired == [(0, f), (1, follow)]


async def test_audio_accounting_counts_accepted_and_ignored_appends() -> None:
    pcm = bytes(4800)
    close_on_third = Fault(kind=FaultKind.CLOSE, close_code=1011, trigger=Trigger.ON_CLIENT_EVENT,
                           event_type="input_audio_buffer.append", count=3)
    async with FakeRealtimeServer(FAST, faults=(close_on_third,)) as srv:
        async with connect(srv) as c:
            for _ in range(3):
                await c.send("input_audio_buffer.append", audio=base64.b64encode(pcm).decode())
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(c.ws.recv(), 5)
        s = srv.sessions[0]
        assert s.input_audio_bytes == 2 * len(pcm)
        assert [e["type"] for e in s.ignored] == ["input_audio_buffer.append"]
        assert s.ignored_audio_bytes == len(pcm)
        assert srv.input_audio_bytes + srv.ignored_audio_bytes == 3 * len(pcm)


async def test_stall_holds_client_messages_until_it_ends() -> None:
    stall = Fault(kind=FaultKind.STALL, duration_s=0.2, trigger=Trigger.ON_CLIENT_EVENT, event_type="response.create")
    async with FakeRealtimeServer(FAST, faults=(stall,)) as srv, connect(srv) as c:
        await c.send("response.create")  # triggers the stall, then waits behind it
        await c.send("input_audio_buffer.append", audio=base64.b64encode(bytes(960)).decode())
        await c.ws.ping()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(c.ws.recv(), 0.1)  # silent while stalled
        await c.until("response.done")  # then the held response.create is handled
        s = srv.sessions[0]
        assert [e["type"] for e in s.received] == ["response.create", "input_audio_buffer.append"]
        assert s.input_audio_bytes == 960 and not s.ignored


async def test_messages_held_by_an_endless_stall_are_ignored_at_close() -> None:
    pcm = bytes(960)
    async with FakeRealtimeServer(FAST) as srv:
        async with connect(srv) as c:
            srv.inject(Fault(kind=FaultKind.STALL, duration_s=None))
            await asyncio.sleep(0.05)
            await c.send("input_audio_buffer.append", audio=base64.b64encode(pcm).decode())
            await c.ws.send("not json at all")
            await c.ws.ping()  # the socket stays healthy: round trip through the server
        for _ in range(100):
            if not srv.connections:
                break
            await asyncio.sleep(0.01)
        s = srv.sessions[0]
        assert not s.received
        assert [e["type"] for e in s.ignored] == ["input_audio_buffer.append", None]
        assert s.ignored[1]["raw_bytes"] == len("not json at all")
        assert s.ignored_audio_bytes == len(pcm) and s.input_audio_bytes == 0


async def test_ignored_audio_is_counted_even_without_payloads() -> None:
    pcm = bytes(1920)
    close_on_append = Fault(kind=FaultKind.TCP_RESET, trigger=Trigger.ON_CLIENT_EVENT,
                            event_type="input_audio_buffer.append")
    config = FakeServerConfig(speed=math.inf, turn_detection=None, record_audio_payloads=False,
                              faults=(close_on_append,))
    async with FakeRealtimeServer(config) as srv:
        async with connect(srv) as c:
            await c.send("input_audio_buffer.append", audio=base64.b64encode(pcm).decode())
            await _drain_until_closed(c)
        ev = srv.sessions[0].ignored[0]
        assert ev["audio"] == "" and ev["audio_bytes"] == len(pcm)
        assert srv.ignored_audio_bytes == len(pcm) and srv.input_audio_bytes == 0


def test_fired_at_follows_fired_on_the_loop_clock() -> None:
    import time

    book = FaultBook((Fault(kind=FaultKind.STALL, trigger=Trigger.ON_CLIENT_EVENT, times=2),))
    before = time.monotonic()
    book.match_client_event(0, "a")
    book.match_client_event(1, "b")
    assert len(book.fired_at) == len(book.fired) == 2
    assert before <= book.fired_at[0] <= book.fired_at[1] <= time.monotonic()


def test_fired_record_keeps_the_last_max_fired_and_counts_all() -> None:
    book = FaultBook((Fault(kind=FaultKind.STALL, trigger=Trigger.ON_CLIENT_EVENT, times=None),), max_fired=3)
    for session in range(10):
        book.match_client_event(session, "x")
    assert [s for s, _ in book.fired] == [7, 8, 9]
    assert len(book.fired_at) == 3 and book.fired_total == 10
    with pytest.raises(ValueError):
        FaultBook(max_fired=0)
