"""Each fault kind and trigger, observed from a raw websockets client; server hygiene on stop()."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from fakeserver_helpers import LONG_REPLY, connect
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig, Fault, FaultKind, Trigger

PACED = FakeServerConfig(speed=1.0, turn_detection=None, responses=[LONG_REPLY])
FAST = FakeServerConfig(speed=float("inf"), turn_detection=None)


async def _recv_until_closed(c) -> list:
    out = []
    with pytest.raises(ConnectionClosed):
        while True:
            out.append(await c.recv())
    return out


@pytest.mark.parametrize("code", [1000, 1001, 1008, 1009, 1011, 4000])
async def test_close_mid_response_with_code(code: int) -> None:
    fault = Fault(kind=FaultKind.CLOSE, trigger=Trigger.MID_RESPONSE, count=2, close_code=code, close_reason="x")
    async with FakeRealtimeServer(PACED, faults=(fault,)) as srv, connect(srv) as c:
        await c.send("response.create")
        evs = await _recv_until_closed(c)
        assert [e["type"] for e in evs].count("response.output_audio.delta") == 2
        assert c.ws.close_code == code
        assert srv.faults.fired[0][1] is fault


async def test_close_1006_is_an_abrupt_drop_without_close_frame() -> None:
    fault = Fault(kind=FaultKind.CLOSE, trigger=Trigger.MID_RESPONSE, close_code=1006)
    async with FakeRealtimeServer(PACED, faults=(fault,)) as srv, connect(srv) as c:
        await c.send("response.create")
        with pytest.raises(websockets.ConnectionClosedError):
            while True:
                await c.recv()
        assert c.ws.close_code == 1006 and c.ws.protocol.close_rcvd is None


@pytest.mark.parametrize("kind", [FaultKind.MALFORMED_JSON, FaultKind.UNKNOWN_EVENT, FaultKind.MALFORMED_EVENT])
async def test_bad_messages_reach_the_client(kind: FaultKind) -> None:
    async with FakeRealtimeServer(FAST) as srv, connect(srv) as c:
        srv.inject(Fault(kind=kind))
        raw = await asyncio.wait_for(c.ws.recv(), 5)
        if kind is FaultKind.MALFORMED_JSON:
            with pytest.raises(json.JSONDecodeError):
                json.loads(raw)
        elif kind is FaultKind.UNKNOWN_EVENT:
            assert json.loads(raw)["type"] == "fake.unknown_event"
        else:
            ev = json.loads(raw)
            assert ev["type"] == "response.output_audio.delta" and "delta" not in ev
        assert srv.session.faulty_sent[-1] == raw
        await c.send("response.create")  # the session carries on
        assert (await c.until("response.done"))[-1]["response"]["status"] == "completed"


async def test_bad_base64_audio_delta() -> None:
    fault = Fault(kind=FaultKind.BAD_BASE64_AUDIO, trigger=Trigger.MID_RESPONSE, count=1)
    async with FakeRealtimeServer(FAST, faults=(fault,)) as srv, connect(srv) as c:
        await c.send("response.create")
        deltas = [e["delta"] for e in await c.until("response.done") if e["type"] == "response.output_audio.delta"]
        with pytest.raises(binascii.Error):
            base64.b64decode(deltas[1], validate=True)
        assert all(base64.b64decode(d, validate=True) for d in deltas[:1] + deltas[2:])


async def test_duplicate_and_out_of_order_events() -> None:
    faults = (
        Fault(kind=FaultKind.DUPLICATE_EVENT, trigger=Trigger.ON_CLIENT_EVENT, event_type="response.create"),
        Fault(kind=FaultKind.OUT_OF_ORDER, trigger=Trigger.AFTER_SERVER_EVENTS, event_type="response.created"),
    )
    async with FakeRealtimeServer(FAST, faults=faults) as srv, connect(srv) as c:
        await c.send("response.create")
        types = [e["type"] for e in await c.until("response.done")]
        assert types[:2] == ["response.created", "response.created"]
        assert c.events[1]["event_id"] == c.events[2]["event_id"]
        assert types[2:4] == ["conversation.item.added", "response.output_item.added"]  # swapped



async def test_out_of_order_never_withholds_the_last_event_of_a_burst() -> None:
    """Seed 849 of the reliability episodes: armed right before a reply's ``response.done``
    (nothing queued behind it), the swap held it back until the server's next event, which
    never came while the client waited for that very ``response.done``. It now goes out as
    is, and the fault swaps the next two events that are ready together (the next reply's)."""
    fault = Fault(kind=FaultKind.OUT_OF_ORDER, trigger=Trigger.AFTER_SERVER_EVENTS, event_type="conversation.item.done")
    async with FakeRealtimeServer(FAST, faults=(fault,)) as srv, connect(srv) as c:
        await c.send("response.create")
        first = [e["type"] for e in await c.until("response.done", timeout=2)]
        assert first[-2:] == ["conversation.item.done", "response.done"]  # not swapped: nothing to swap with
        await c.send("response.create")
        second = [e["type"] for e in await c.until("response.done", timeout=2)]
        assert second[:2] != first[:2] and sorted(second[:2]) == sorted(first[:2])  # the fault fired here
        assert srv.faults.fired[0][1] is fault


async def test_stall_keeps_socket_alive_but_silent() -> None:
    async with FakeRealtimeServer(FAST) as srv, connect(srv) as c:
        srv.inject(Fault(kind=FaultKind.STALL))
        await srv.wait_for(lambda e: True)  # injection is scheduled: let it run
        await asyncio.sleep(0)
        await c.send("response.create")
        pong = await c.ws.ping()
        await asyncio.wait_for(pong, 5)  # transport still healthy
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(c.ws.recv(), 0.3)
        assert not any(e["type"] == "response.created" for e in srv.sent)


async def test_half_open_answers_nothing_not_even_pings() -> None:
    async with FakeRealtimeServer(FAST) as srv:
        async with connect(srv, close_timeout=0.2) as c:
            srv.inject(Fault(kind=FaultKind.HALF_OPEN))
            for _ in range(3):
                await asyncio.sleep(0)
            pong = await c.ws.ping()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pong, 0.3)
            assert srv.connections[0].half_open


async def test_oversized_message_trips_client_max_size() -> None:
    async with FakeRealtimeServer(FAST) as srv, connect(srv, max_size=2**20) as c:
        srv.inject(Fault(kind=FaultKind.OVERSIZED_MESSAGE, size_bytes=2 * 2**20))
        with pytest.raises(websockets.ConnectionClosedError):
            await c.recv()
        assert c.ws.protocol.close_sent.code == 1009  # the client failed the connection: message too big


@pytest.mark.parametrize("status", [401, 403, 429, 500, 503])
async def test_reject_handshake(status: int) -> None:
    fault = Fault(kind=FaultKind.REJECT_HANDSHAKE, status_code=status)
    async with FakeRealtimeServer(FAST, faults=(fault,)) as srv:
        with pytest.raises(InvalidStatus) as info:
            async with connect(srv):
                pass
        assert info.value.response.status_code == status
        async with connect(srv) as c:  # one-shot: the next connection works
            assert c.events[0]["type"] == "session.created"


async def test_handshake_timeout_then_recovery() -> None:
    async with FakeRealtimeServer(FAST, faults=(Fault(kind=FaultKind.HANDSHAKE_TIMEOUT),)) as srv:
        with pytest.raises(TimeoutError):
            async with connect(srv, open_timeout=0.3):
                pass
        async with connect(srv) as c:
            assert c.events[0]["type"] == "session.created"
        assert srv.handshakes == 2


async def test_session_expiry_on_virtual_clock() -> None:
    now = [0.0]
    cfg = FakeServerConfig(speed=float("inf"), turn_detection=None, max_session_s=3600, clock=lambda: now[0],
                           expiry_poll_s=0.01)
    async with FakeRealtimeServer(cfg) as srv, connect(srv) as c:
        await c.send("response.create")
        await c.until("response.done")
        now[0] = 3600.0
        evs = await _recv_until_closed(c)
        assert evs[-1]["error"]["code"] == "session_expired"
        assert c.ws.close_code == 1001
        assert srv.session.closed_code == 1001


async def test_error_event_rate_limits_and_delay() -> None:
    async with FakeRealtimeServer(FAST) as srv, connect(srv) as c:
        srv.inject(Fault(kind=FaultKind.RATE_LIMITS))
        assert (await c.recv())["rate_limits"][0]["name"] == "requests"
        srv.inject(Fault(kind=FaultKind.DELAY, duration_s=0.05))
        await c.send("response.create")
        assert (await c.until("response.done"))[0]["type"] == "response.created"  # held, then in order
        srv.inject(Fault(kind=FaultKind.ERROR_EVENT, error_code="insufficient_quota", error_type="insufficient_quota",
                         close_after=True, close_code=1008))
        evs = await _recv_until_closed(c)
        assert evs[-1]["error"]["code"] == "insufficient_quota" and c.ws.close_code == 1008


async def test_before_session_created_and_on_client_event_triggers() -> None:
    faults = (
        Fault(kind=FaultKind.CLOSE, trigger=Trigger.BEFORE_SESSION_CREATED, close_code=1011, session_index=0),
        Fault(kind=FaultKind.CLOSE, trigger=Trigger.ON_CLIENT_EVENT, event_type="input_audio_buffer.append",
              count=3, close_code=4000, session_index=1),
    )
    async with FakeRealtimeServer(FAST, faults=faults) as srv:
        async with connect(srv, wait_created=False) as c:
            await _recv_until_closed(c)
            assert c.ws.close_code == 1011
        assert not srv.sessions[0].sent
        async with connect(srv) as c:
            for _ in range(5):
                try:
                    await c.append(bytes(480))
                except ConnectionClosed:
                    break
            await _recv_until_closed(c)
            assert c.ws.close_code == 4000
        assert [e["type"] for e in srv.sessions[1].received] == ["input_audio_buffer.append"] * 2


async def test_during_interrupt_trigger_fires_on_cancel() -> None:
    fault = Fault(kind=FaultKind.CLOSE, trigger=Trigger.DURING_INTERRUPT, close_code=1006)
    async with FakeRealtimeServer(PACED, faults=(fault,)) as srv, connect(srv) as c:
        await c.send("response.cancel")  # nothing active: no interrupt, benign error
        assert (await c.recv())["error"]["code"] == "response_cancel_not_active"
        await c.send("response.create")
        await c.until("response.output_audio.delta")
        await c.send("response.cancel")
        with pytest.raises(ConnectionClosed):
            while True:
                await c.recv()
        assert c.ws.close_code == 1006
        assert not any(e["type"] == "response.done" for e in srv.sent)


async def test_stop_closes_everything_and_leaks_no_task() -> None:
    before = asyncio.all_tasks()
    srv = FakeRealtimeServer(PACED, faults=(Fault(kind=FaultKind.HANDSHAKE_TIMEOUT, session_index=3),))
    await srv.start()
    url = srv.url
    a = await websockets.connect(url, additional_headers=srv.auth_headers, close_timeout=0.2)
    b = await websockets.connect(url, additional_headers=srv.auth_headers, close_timeout=0.2)
    d = await websockets.connect(url, additional_headers=srv.auth_headers, close_timeout=0.2)
    held = asyncio.ensure_future(websockets.connect(url, additional_headers=srv.auth_headers, open_timeout=5))
    await b.send(json.dumps({"type": "response.create"}))
    for ws in (a, b, d):
        assert json.loads(await ws.recv())["type"] == "session.created"
    srv.inject(Fault(kind=FaultKind.HALF_OPEN, session_index=0))
    srv.inject(Fault(kind=FaultKind.STALL, session_index=2))
    assert json.loads(await b.recv())["type"] == "response.created"
    await srv.stop()
    with pytest.raises((InvalidStatus, ConnectionClosed, OSError)):
        await held
    for ws in (a, b, d):
        await ws.close()
        assert ws.close_code is not None
    assert asyncio.all_tasks() == before
    with pytest.raises(OSError):
        await websockets.connect(url, open_timeout=1)
    await srv.stop()  # idempotent
