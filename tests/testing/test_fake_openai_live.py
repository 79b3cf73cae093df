"""FakeOpenAILiveServer: openai-python's own ``client.live`` against it, strict schema, rules, faults."""

from __future__ import annotations

import asyncio
import base64
import json
import math
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.providers.openai_live.live_schema import check_server_event
from voiceengine.testing import FakeOpenAILiveConfig, FakeOpenAILiveServer, Fault, FaultKind, Trigger
from voiceengine.testing.audio import synthesize

openai = pytest.importorskip("openai")
live_types = pytest.importorskip("openai.types.live")

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
START = {"model": "gpt-live-1", "instructions": "Be brief.",
         "audio": {"format": {"type": "audio/pcm", "rate": 24000}, "output": {"voice": "marin"}},
         "delegation": {"type": "responses", "responses": {"model": "gpt-5-mini", "tools": TOOLS}}}


def speech(text: str, rate: int = 24000, silence_ms: int = 800) -> bytes:
    """Voiced audio for ``text`` followed by enough silence to end the turn."""
    return synthesize(text, rate).pcm + bytes(2 * rate * silence_ms // 1000)


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode("ascii")


class Raw:
    """A bare websockets client for protocol-rule tests."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, type_: str, **fields: Any) -> None:
        await self.ws.send(json.dumps({"type": type_, **fields}))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        return dict(json.loads(await asyncio.wait_for(self.ws.recv(), timeout)))

    async def until(self, type_: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        while True:
            ev = await self.recv(timeout)
            seen.append(ev)
            if ev["type"] == type_:
                return seen

    async def append(self, pcm: bytes, chunk_ms: int = 100, rate: int = 24000) -> None:
        step = 2 * rate * chunk_ms // 1000
        for i in range(0, len(pcm), step):
            await self.send("session.input_audio.append", audio=b64(pcm[i:i + step]))


@asynccontextmanager
async def raw(server: FakeOpenAILiveServer, *, start: dict[str, Any] | None = None) -> AsyncIterator[Raw]:
    async with websockets.connect(server.url, additional_headers=server.auth_headers, max_size=2**24) as ws:
        client = Raw(ws)
        if start is not None:
            await client.send("session.start", session=start)
            assert (await client.recv())["type"] == "session.started"
        yield client


def fast(**kw: Any) -> FakeOpenAILiveConfig:
    return FakeOpenAILiveConfig(speed=math.inf, **kw)


# ------------------------------------------------------------------ openai-python's own client
@pytest.mark.parametrize("via", ["base_url", "websocket_base_url"])
async def test_sdk_client_holds_a_spoken_turn_and_a_tool_round_trip(via: str) -> None:
    async with FakeOpenAILiveServer(fast()) as server:
        kwargs = {"base_url": server.base_url} if via == "base_url" else {
            "base_url": "http://127.0.0.1:9/v1", "websocket_base_url": server.websocket_base_url}
        client = openai.AsyncOpenAI(api_key="sk-test-live", **kwargs)
        received: list[Any] = []
        async with client.live.connect() as conn:

            async def next_event() -> Any:
                data = await asyncio.wait_for(conn.recv_bytes(), 5)
                event = conn.parse_event(data)
                received.append(event)
                return event

            await conn.session.start(session=START)
            started = await next_event()
            assert isinstance(started, live_types.SessionStartedEvent)
            assert started.session.audio.format.rate == 24000
            pcm = speech("hello there")
            for i in range(0, len(pcm), 4800):
                await conn.session.input_audio.append(audio=b64(pcm[i:i + 4800]))
            heard, said, audio = [], [], bytearray()
            while True:
                ev = await next_event()
                if isinstance(ev, live_types.InputTranscriptDeltaEvent):
                    heard.append(ev.delta)
                elif isinstance(ev, live_types.OutputTranscriptDeltaEvent):
                    said.append(ev.delta)
                elif isinstance(ev, live_types.OutputAudioDeltaEvent):
                    audio += base64.b64decode(ev.delta)
                elif isinstance(ev, live_types.SessionUsageUpdatedEvent):
                    break
            assert "".join(heard) == "user turn 1"
            assert "".join(said) == "You said user turn 1"
            assert bytes(audio) == synthesize("You said user turn 1").pcm

            await conn.response.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "Weather in Oslo?"}]})
            await conn.response.create()
            call = None
            while call is None:
                ev = await next_event()
                if isinstance(ev, live_types.ResponseEvent) and ev.event["type"] == "response.output_item.done":
                    call = ev.event["item"]
            assert call["type"] == "function_call" and call["name"] == "get_weather"
            await conn.response.item.create(item={"type": "function_call_output", "call_id": call["call_id"],
                                                  "output": "sunny"})
            await conn.response.create()
            said = []
            while True:
                ev = await next_event()
                if isinstance(ev, live_types.OutputTranscriptDeltaEvent):
                    said.append(ev.delta)
                elif isinstance(ev, live_types.SessionUsageUpdatedEvent):
                    break
            assert "".join(said) == "The tool returned sunny"
            await conn.session.close()
            closed = await next_event()
            assert isinstance(closed, live_types.SessionClosedEvent) and closed.reason == "close_requested"
        assert received and all(not isinstance(e, dict) for e in received)
        assert server.session.function_outputs == {call["call_id"]: "sunny"}
        assert server.session.request_headers["Authorization"] == "***"


# ------------------------------------------------------------------ the schema, strictly
async def test_every_sent_event_validates_strictly_against_the_sdk() -> None:
    cfg = fast(idle_output_ms=100, replies=["A rather long reply that the user will talk over now", "Okay."])
    async with FakeOpenAILiveServer(cfg, speed=20.0) as server:
        async with raw(server) as c:
            await c.send("session.input_audio.append", audio=b64(bytes(480)))     # error: not started
            await c.send("session.start", session=START, event_id="start_1")
            await c.until("session.started")
            await c.append(bytes(48 * 300))                                       # idle output track
            await c.append(speech("hello"))
            await c.until("session.output_audio.delta")
            await c.append(speech("stop please"))                                 # barge-in, then a turn
            await c.until("session.usage.updated")
            await c.send("session.thinking.append", content="The user is a pilot.", delegation_id=None)
            await c.send("session.instructions.append", content="Keep it short.", delegation_id=None)
            await c.send("session.commentary.append", content="Your order shipped.", delegation_id=None)
            await c.until("session.usage.updated")
            await c.send("session.input_audio.mute", event_id="m1")
            await c.send("session.input_audio.unmute")
            await c.send("session.update", session={"delegation": {"type": "responses",
                                                                   "responses": {"model": "gpt-5"}}})
            await c.until("session.updated")
            await c.send("response.item.create", item={"type": "message", "role": "user", "content": "hi"})
            await c.send("response.create")
            done = await c.until("response.event")
            while not (done[-1]["type"] == "response.event" and done[-1]["event"]["type"] == "response.completed"):
                done = await c.until("response.event")
            call_id = server.session._open_calls and next(iter(server.session.function_calls))
            await c.send("response.create")                                       # error: output missing
            await c.send("response.item.create", item={"type": "function_call_output", "call_id": call_id,
                                                       "output": "{\"ok\":true}"})
            await c.send("response.create")
            await c.until("session.usage.updated")
            await c.send("session.update", session={"instructions": "new"})      # error: immutable
            await c.send("no.such.event")                                         # error: unknown
            await c.send("decision.create", event_id="d1")                        # error: unsupported
            await c.ws.send("{not json")                                          # error: invalid json
            await c.send("session.close")
            await c.until("session.closed")
        sent = server.sent
        for ev in sent:
            check_server_event(ev)
    kinds = {e["type"] for e in sent}
    assert kinds >= {
        "session.started", "session.updated", "session.input_audio.muted", "session.input_audio.unmuted",
        "session.instructions.appended", "session.thinking.appended", "session.commentary.appended",
        "session.output_audio.delta", "session.input_transcript.delta", "session.output_transcript.delta",
        "session.delegation.created", "response.event", "session.usage.updated", "session.closed", "error",
    }
    nested = {e["event"]["type"] for e in sent if e["type"] == "response.event"}
    assert nested >= {"response.created", "response.output_item.added", "response.function_call_arguments.delta",
                      "response.function_call_arguments.done", "response.output_item.done",
                      "response.output_text.delta", "response.output_text.done", "response.completed"}
    codes = [e["error"]["code"] for e in server.errors]
    assert codes == ["session_not_started", "invalid_request_error", "immutable_parameter", "invalid_value",
                     "unsupported_event", "invalid_json"]
    assert server.session.interrupted_replies == 1
    assert all("event_id" not in e for e in sent if e["type"] == "session.output_audio.delta")


# ------------------------------------------------------------------ handshake rules
async def test_model_query_is_refused_with_http_400() -> None:
    async with FakeOpenAILiveServer(fast()) as server:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(server.url + "?model=gpt-live-1", additional_headers=server.auth_headers):
                pass
        assert info.value.response.status_code == 400
        assert b"session.start" in info.value.response.body


@pytest.mark.parametrize("header", [None, "Bearer ", "Basic abc"])
async def test_missing_or_empty_bearer_is_refused_with_401(header: str | None) -> None:
    async with FakeOpenAILiveServer(fast()) as server:
        headers = {} if header is None else {"Authorization": header}
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(server.url, additional_headers=headers):
                pass
        assert info.value.response.status_code == 401


async def test_any_non_empty_bearer_is_accepted_unless_keys_are_configured() -> None:
    async with FakeOpenAILiveServer(fast()) as server:
        async with websockets.connect(server.url, additional_headers={"Authorization": "Bearer whatever"}) as ws:
            await ws.send(json.dumps({"type": "session.start", "session": {"model": "m"}}))
            assert json.loads(await ws.recv())["type"] == "session.started"
    async with FakeOpenAILiveServer(fast(api_keys=("sk-only",))) as server:
        with pytest.raises(InvalidStatus):
            async with websockets.connect(server.url, additional_headers={"Authorization": "Bearer other"}):
                pass


# ------------------------------------------------------------------ protocol rules
async def test_commands_before_session_started_get_an_error_and_the_session_still_starts() -> None:
    async with FakeOpenAILiveServer(fast()) as server:
        async with raw(server) as c:
            await c.send("session.thinking.append", content="x", delegation_id=None, event_id="early")
            err = await c.recv()
            assert err["type"] == "error" and err["error"]["code"] == "session_not_started"
            assert err["error"]["client_event_id"] == "early"
            await c.send("session.start", session={"model": "gpt-live-1"})
            assert (await c.recv())["type"] == "session.started"
            await c.send("session.start", session={"model": "gpt-live-1"})
            assert (await c.recv())["error"]["code"] == "session_already_started"


@pytest.mark.parametrize(("session", "code"), [
    ({"model": "m", "voice": "marin"}, "unknown_parameter"),
    ({"instructions": "no model"}, "missing_required_parameter"),
    ({"model": "m", "audio": {"format": {"type": "audio/pcm", "rate": 48000}}}, "invalid_value"),
    ({"model": "m", "delegation": {"type": "responses", "responses": {}}}, "missing_required_parameter"),
    ({"model": "m", "input": [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}]}, "invalid_value"),
])
async def test_bad_session_start_is_refused(session: dict[str, Any], code: str) -> None:
    async with FakeOpenAILiveServer(fast()) as server:
        async with raw(server) as c:
            await c.send("session.start", session=session)
            ev = await c.recv()
            assert ev["type"] == "error" and ev["error"]["code"] == code
            assert not server.session.started


async def test_sixteen_khz_session_hears_and_speaks_at_16k() -> None:
    start = {"model": "m", "audio": {"format": {"type": "audio/pcm", "rate": 16000}}}
    async with FakeOpenAILiveServer(fast(replies=["Short answer."])) as server:
        async with raw(server, start=start) as c:
            await c.append(speech("hello", 16000), rate=16000)
            events = await c.until("session.usage.updated")
    audio = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "session.output_audio.delta")
    assert audio == synthesize("Short answer.", 16000).pcm


async def test_talking_over_a_reply_stops_it_and_sends_the_first_words_at_once() -> None:
    long_reply = " ".join(["word"] * 60)
    async with FakeOpenAILiveServer(fast(replies=[long_reply, "Fine."]), speed=10.0) as server:
        async with raw(server, start={"model": "m"}) as c:
            await c.append(speech("hello"))
            await c.until("session.output_audio.delta")
            await c.append(synthesize("wait").pcm)          # speech start only, no end yet
            events = await c.until("session.input_transcript.delta")
            assert events[-1]["delta"] == "user"            # the barge-in signal, before the turn ends
            await c.append(bytes(48 * 800))
            rest = await c.until("session.usage.updated")
    assert server.session.interrupted_replies == 1
    audio = b"".join(base64.b64decode(e["delta"]) for e in events + rest if e["type"] == "session.output_audio.delta")
    first_reply = len(synthesize(long_reply).pcm)
    assert len(audio) < first_reply                          # the long reply was cut short
    assert list(server.session.replies) == ["Fine."]


async def test_thinking_is_silent_and_commentary_is_spoken() -> None:
    async with FakeOpenAILiveServer(fast()) as server:
        async with raw(server, start={"model": "m"}) as c:
            await c.send("session.thinking.append", content="secret context", delegation_id=None)
            assert (await c.recv())["type"] == "session.thinking.appended"
            await c.send("session.commentary.append", content="Your order shipped.", delegation_id=None)
            events = await c.until("session.usage.updated")
    said = "".join(e["delta"] for e in events if e["type"] == "session.output_transcript.delta")
    assert said == "Your order shipped."
    assert list(server.session.thinking) == ["secret context"]
    assert list(server.session.replies) == ["Your order shipped."]


async def test_typed_turn_without_delegation_is_an_error() -> None:
    async with FakeOpenAILiveServer(fast()) as server:
        async with raw(server, start={"model": "m"}) as c:
            await c.send("response.item.create", item={"type": "message", "role": "user", "content": "hi"})
            assert (await c.recv())["error"]["code"] == "invalid_request_error"


async def test_idle_output_track_is_near_silent_and_stops_during_a_reply() -> None:
    async with FakeOpenAILiveServer(fast(idle_output_ms=100, idle_output_amplitude=3)) as server:
        async with raw(server, start={"model": "m"}) as c:
            await c.append(bytes(48 * 500))
            idle = [await c.recv() for _ in range(5)]
    for ev in idle:
        assert ev["type"] == "session.output_audio.delta"
        pcm = base64.b64decode(ev["delta"])
        assert len(pcm) == 4800
        assert max(abs(int.from_bytes(pcm[i:i + 2], "little", signed=True)) for i in range(0, len(pcm), 2)) == 3


# ------------------------------------------------------------------ faults
async def test_close_mid_reply() -> None:
    fault = Fault(kind=FaultKind.CLOSE, trigger=Trigger.MID_RESPONSE, count=2, close_code=1011)
    async with FakeOpenAILiveServer(fast(idle_output_ms=100, faults=(fault,))) as server:
        async with raw(server, start={"model": "m"}) as c:
            await c.append(bytes(48 * 1000))     # ten idle frames: they do not count as reply deltas
            await c.append(speech("hello"))
            idle = reply = 0
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    ev = await c.recv()
                    if ev["type"] == "session.output_audio.delta":
                        pcm = base64.b64decode(ev["delta"])
                        loud = max(abs(int.from_bytes(pcm[i:i + 2], "little", signed=True))
                                   for i in range(0, len(pcm), 2)) > 3
                        reply += loud
                        idle += not loud
    assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    assert reply == 2           # closed after the second reply delta
    assert idle >= 10           # the idle track went out and did not count
    assert server.faults.fired and server.faults.fired[0][1] is fault


async def test_session_expired_sends_session_closed_then_closes() -> None:
    async with FakeOpenAILiveServer(fast()) as server:
        async with raw(server, start={"model": "m"}) as c:
            server.inject(Fault(kind=FaultKind.SESSION_EXPIRED))
            closed = await c.recv()
            with pytest.raises(ConnectionClosed):
                await c.recv()
    assert closed["type"] == "session.closed" and closed["reason"] == "expired"
    check_server_event(closed)


async def test_max_session_s_expires_the_session() -> None:
    async with FakeOpenAILiveServer(fast(max_session_s=0.2, expiry_poll_s=0.01)) as server:
        async with raw(server, start={"model": "m"}) as c:
            closed = await c.recv(timeout=5)
    assert closed["reason"] == "expired"


async def test_error_fault_and_unsupported_fault_kinds() -> None:
    async with FakeOpenAILiveServer(fast()) as server:
        async with raw(server, start={"model": "m"}) as c:
            server.inject(Fault(kind=FaultKind.ERROR_EVENT, error_code="server_error"))
            err = await c.recv()
            assert err["type"] == "error" and err["error"]["code"] == "server_error"
            check_server_event(err)
        with pytest.raises(ValueError, match="does not carry out"):
            server.inject(Fault(kind=FaultKind.STALL))
    with pytest.raises(ValueError, match="does not carry out"):
        FakeOpenAILiveServer(fast(faults=(Fault(kind=FaultKind.CLOSE, then=(Fault(kind=FaultKind.DELAY),)),)))


async def test_reject_handshake_fault() -> None:
    fault = Fault(kind=FaultKind.REJECT_HANDSHAKE, status_code=503, trigger=Trigger.ON_CONNECT)
    async with FakeOpenAILiveServer(fast(faults=(fault,))) as server:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(server.url, additional_headers=server.auth_headers):
                pass
        assert info.value.response.status_code == 503
        async with raw(server, start={"model": "m"}):
            pass


async def test_serve_openai_live_async_serves_until_cancelled() -> None:
    from voiceengine.testing.openai_live import serve_openai_live_async

    urls: list[str] = []
    listening = asyncio.Event()

    def ready(server: FakeOpenAILiveServer) -> None:
        urls.append(server.url)
        listening.set()

    task = asyncio.get_running_loop().create_task(serve_openai_live_async(0, config=fast(), ready=ready))
    await asyncio.wait_for(listening.wait(), 5)
    async with websockets.connect(urls[0], additional_headers={"Authorization": "Bearer k"}) as ws:
        await ws.send(json.dumps({"type": "session.start", "session": {"model": "m"}}))
        assert json.loads(await ws.recv())["type"] == "session.started"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
