"""FakeGeminiLiveServer resumption and faults: handles, goAway, closes, stalls, bad frames."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator

import pytest
from websockets.exceptions import InvalidStatus

from gemini_helpers import SETUP, closed_with, connect_raw, open_session, read_until, turn_complete, validate_all
from voiceengine.testing import FakeGeminiLiveServer, Fault, FaultKind, Trigger


@pytest.fixture
async def server() -> AsyncIterator[FakeGeminiLiveServer]:
    async with FakeGeminiLiveServer(speed=float("inf")) as srv:
        yield srv


async def text_turn(ws: Any, text: str) -> list[dict[str, Any]]:
    await ws.send(json.dumps({"realtimeInput": {"text": text}}))
    return await read_until(ws, turn_complete)


async def latest_handle(ws: Any) -> str:
    frames = await read_until(ws, lambda f: "sessionResumptionUpdate" in f)
    return str(frames[-1]["sessionResumptionUpdate"]["newHandle"])


async def test_handle_resumes_the_conversation_on_a_new_connection(server: FakeGeminiLiveServer) -> None:
    ws = await open_session(server)
    await latest_handle(ws)
    await text_turn(ws, "remember blue")
    handle = await latest_handle(ws)
    await ws.close()
    resumed = await open_session(server, {**SETUP, "sessionResumption": {"handle": handle}})
    await text_turn(resumed, "what colour")
    await resumed.close()
    assert server.session.resumed and server.handles.honoured == 1
    assert list(server.session.history)[:2] == [("user", "remember blue"), ("model", "You said remember blue")]
    validate_all(server)


async def test_refused_unknown_and_still_open_handles_close_1011(server: FakeGeminiLiveServer) -> None:
    ws = await open_session(server)
    handle = await latest_handle(ws)
    in_use = await connect_raw(server)  # the granting connection is still open
    await in_use.send(json.dumps({"setup": {**SETUP, "sessionResumption": {"handle": handle}}}))
    code, reason = await closed_with(in_use)
    assert code == 1011 and "still in use" in reason
    await ws.close()
    async with asyncio.timeout(5):
        while server.sessions[0].index in server.handles.open_sessions:
            await asyncio.sleep(0.01)  # until the server has seen the close
    server.refuse_handles(1)
    refused = await connect_raw(server)
    await refused.send(json.dumps({"setup": {**SETUP, "sessionResumption": {"handle": handle}}}))
    code, reason = await closed_with(refused)
    assert code == 1011 and "handle" in reason
    unknown = await connect_raw(server)
    await unknown.send(json.dumps({"setup": {**SETUP, "sessionResumption": {"handle": "no-such-handle"}}}))
    assert (await closed_with(unknown))[0] == 1011
    honoured = await open_session(server, {**SETUP, "sessionResumption": {"handle": handle}})  # refusal used up
    await honoured.close()
    assert server.handles.refused == 3 and server.handles.honoured == 1


async def test_go_away_after_n_seconds_then_close_1011() -> None:
    async with FakeGeminiLiveServer(speed=float("inf"), go_away_after_s=0.2, go_away_time_left_s=0.3) as server:
        started = time.monotonic()  # before the session opens: the server's clock starts after this
        ws = await open_session(server)
        frames = await read_until(ws, lambda f: "goAway" in f)
        code, reason = await closed_with(ws)
        elapsed = time.monotonic() - started
    assert frames[-1] == {"goAway": {"timeLeft": "0.300s"}}
    assert (code, reason) == (1011, "Deadline expired")
    assert elapsed >= 0.5  # goAway after 0.2 s, the close 0.3 s later (never earlier)


async def test_go_away_on_demand_and_session_expired_fault(server: FakeGeminiLiveServer) -> None:
    ws = await open_session(server)
    server.go_away(0.0)
    assert (await read_until(ws, lambda f: "goAway" in f))[-1] == {"goAway": {"timeLeft": "0s"}}
    assert (await closed_with(ws))[0] == 1011
    second = await open_session(server)
    server.inject(Fault(kind=FaultKind.SESSION_EXPIRED, duration_s=0.05))
    assert (await read_until(second, lambda f: "goAway" in f))[-1] == {"goAway": {"timeLeft": "0.050s"}}
    assert (await closed_with(second))[0] == 1011
    with pytest.raises(LookupError):
        server.go_away()  # no connection left to send it on


async def test_close_1011_mid_reply(server: FakeGeminiLiveServer) -> None:
    server.inject(Fault(kind=FaultKind.CLOSE, close_code=1011, trigger=Trigger.MID_RESPONSE, count=2))
    ws = await open_session(server)
    await ws.send(json.dumps({"realtimeInput": {"text": "talk to me for a while please"}}))
    code, _ = await closed_with(ws)
    audio_frames = [f for f in server.session.sent if "modelTurn" in f.get("serverContent", {})]
    assert code == 1011 and len(audio_frames) == 2


async def test_stall_holds_frames_then_delivers_them_in_order(server: FakeGeminiLiveServer) -> None:
    ws = await open_session(server)
    server.inject(Fault(kind=FaultKind.STALL, duration_s=0.3))
    started = time.monotonic()
    frames = await text_turn(ws, "after the stall")
    await ws.close()
    assert time.monotonic() - started >= 0.3
    assert "".join(f["serverContent"]["outputTranscription"]["text"] for f in frames
                   if "outputTranscription" in f.get("serverContent", {})) == "You said after the stall"


async def test_malformed_unknown_and_bad_audio_frames_are_sent_raw(server: FakeGeminiLiveServer) -> None:
    ws = await open_session(server)
    await latest_handle(ws)
    server.inject(Fault(kind=FaultKind.MALFORMED_JSON))
    assert await ws.recv() == '{"serverContent":{"modelTurn":'
    server.inject(Fault(kind=FaultKind.UNKNOWN_EVENT))
    assert json.loads(await ws.recv()) == {"fakeUnknownMessage": {"detail": "injected"}}
    server.inject(Fault(kind=FaultKind.MALFORMED_EVENT))
    assert json.loads(await ws.recv()) == {"toolCall": {"functionCalls": "not-a-list"}}
    server.inject(Fault(kind=FaultKind.BAD_BASE64_AUDIO))
    await ws.send(json.dumps({"realtimeInput": {"text": "x"}}))
    bad = (await read_until(ws, lambda f: "modelTurn" in f.get("serverContent", {})))[-1]
    await ws.close()
    assert bad["serverContent"]["modelTurn"]["parts"][0]["inlineData"]["data"] == "!!not*base64@@==="
    assert len(server.session.faulty_sent) == 4
    validate_all(server)  # the deliberate bad frames are not among the well-formed ones


async def test_handshake_faults_and_unsupported_kinds(server: FakeGeminiLiveServer) -> None:
    server.inject(Fault(kind=FaultKind.REJECT_HANDSHAKE, status_code=503))
    with pytest.raises(InvalidStatus) as info:
        await connect_raw(server)
    assert info.value.response.status_code == 503
    assert json.loads(info.value.response.body)["error"]["status"] == "UNAVAILABLE"
    server.inject(Fault(kind=FaultKind.CLOSE, close_code=1011, trigger=Trigger.BEFORE_SESSION_CREATED))
    ws = await connect_raw(server)
    await ws.send(json.dumps({"setup": SETUP}))
    assert (await closed_with(ws))[0] == 1011
    with pytest.raises(ValueError, match="does not implement"):
        server.inject(Fault(kind=FaultKind.RATE_LIMITS))


async def test_tcp_reset_and_on_client_event_close(server: FakeGeminiLiveServer) -> None:
    server.inject(Fault(kind=FaultKind.CLOSE, close_code=1011, trigger=Trigger.ON_CLIENT_EVENT,
                        event_type="clientContent"))
    ws = await open_session(server)
    await ws.send(json.dumps({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "x"}]}],
                                                "turnComplete": True}}))
    assert (await closed_with(ws))[0] == 1011
    assert json.loads(server.session.ignored[-1])["clientContent"]["turnComplete"] is True
    reset = await open_session(server)
    server.inject(Fault(kind=FaultKind.TCP_RESET))
    assert (await closed_with(reset))[0] == 1006


async def test_stop_closes_a_half_open_connection_without_waiting() -> None:
    async with FakeGeminiLiveServer(speed=float("inf")) as server:
        ws = await open_session(server)
        server.inject(Fault(kind=FaultKind.HALF_OPEN))
        await asyncio.sleep(0.05)
        started = time.monotonic()
    assert time.monotonic() - started < 2.0
    await ws.close()
