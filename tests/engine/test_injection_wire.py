"""Every injection timing and mode observed on the wire (the fake server's received events)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from enginekit import Recorder, fast_config, make_provider
from voiceengine.engine import VoiceEngine
from voiceengine.injection import InjectionMode as M, InjectionTiming as T
from voiceengine.providers.types import EventType


def texts(ev: dict[str, Any]) -> str:
    return str(ev)


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.005)


def index_of(received: list[dict], marker: str, type_: str | None = None) -> int:
    for i, ev in enumerate(received):
        if marker in str(ev) and (type_ is None or ev["type"] == type_):
            return i
    return -1


async def test_injection_timings_on_the_wire_in_order() -> None:
    responses = ["The weather is sunny today.", "Second reply.", "Third reply.", "Fourth reply.", "Fifth."]
    async with make_provider("openai", responses=responses, turn_detection=None,
                             instructions="BASE-INSTRUCTIONS") as (provider, server):
        async with VoiceEngine(provider, fast_config()) as engine:
            rec = Recorder(engine)

            # IMMEDIATE + SILENT: one user item, no response
            engine.inject_context("CTX-IMMEDIATE")
            await until(lambda: index_of(server.received, "CTX-IMMEDIATE") >= 0)
            assert server.received[index_of(server.received, "CTX-IMMEDIATE")]["item"]["role"] == "user"

            # IMMEDIATE + GLOBAL: session.update with base + context (trusted only)
            engine.inject_context("CTX-GLOBAL", mode=M.GLOBAL, trusted=True)
            await until(lambda: index_of(server.received, "CTX-GLOBAL", "session.update") >= 0)
            instr = server.received[index_of(server.received, "CTX-GLOBAL", "session.update")]["session"]["instructions"]
            assert instr.startswith("BASE-INSTRUCTIONS") and instr.endswith("CTX-GLOBAL")

            # NEXT_TURN: after the user's item, before the turn's response.create (which carries PER_RESPONSE)
            engine.inject_context("CTX-NEXT-TURN", timing=T.NEXT_TURN)
            engine.inject_context("CTX-PER-RESPONSE", timing=T.NEXT_TURN, mode=M.PER_RESPONSE, trusted=True)
            engine.inject_context("CTX-TRIGGER", timing=T.ON_TRIGGER, keywords=["weather"])
            await asyncio.sleep(0.05)
            assert index_of(server.received, "CTX-NEXT-TURN") == -1
            await engine.send_text("USER-QUESTION-1")
            await until(lambda: index_of(server.received, "CTX-PER-RESPONSE", "response.create") >= 0)
            i_user = index_of(server.received, "USER-QUESTION-1")
            i_next = index_of(server.received, "CTX-NEXT-TURN")
            i_resp = index_of(server.received, "CTX-PER-RESPONSE", "response.create")
            assert 0 <= i_user < i_next < i_resp
            resp_instr = server.received[i_resp]["response"]["instructions"]
            assert "BASE-INSTRUCTIONS" in resp_instr and "CTX-GLOBAL" in resp_instr  # appended, not replaced
            assert sum(1 for e in server.received if e["type"] == "response.create") == 1  # one response per turn

            # ON_TRIGGER: armed by "weather" in the reply, delivered only after the response is done
            await until(lambda: index_of(server.received, "CTX-TRIGGER") >= 0)
            done = await rec.wait(EventType.RESPONSE_DONE, past=True)
            inj = await rec.wait(EventType.CONTEXT_INJECTED, lambda e: e.data.timing is T.ON_TRIGGER, past=True)
            assert rec.events.index(done) < rec.events.index(inj)

            # SCHEDULED, then NEXT_PAUSE, then MANUAL, each observed in that order
            await until(lambda: not engine.provider.response_active)
            engine.inject_context("CTX-SCHEDULED", timing=T.SCHEDULED, delay_s=0.05)
            await until(lambda: index_of(server.received, "CTX-SCHEDULED") >= 0)
            engine.inject_context("CTX-PAUSE", timing=T.NEXT_PAUSE, pause_ms=30)
            await until(lambda: index_of(server.received, "CTX-PAUSE") >= 0)
            manual = engine.inject_context("CTX-MANUAL", timing=T.MANUAL)
            await asyncio.sleep(0.05)
            assert index_of(server.received, "CTX-MANUAL") == -1
            engine.injector.trigger(manual.id)
            await until(lambda: index_of(server.received, "CTX-MANUAL") >= 0)
            assert index_of(server.received, "CTX-SCHEDULED") < index_of(server.received, "CTX-PAUSE") < index_of(server.received, "CTX-MANUAL")

            # OUT_OF_BAND: response.create with conversation "none" and the context as input
            engine.inject_context("CTX-OOB", mode=M.OUT_OF_BAND)
            await until(lambda: index_of(server.received, "CTX-OOB", "response.create") >= 0)
            oob = server.received[index_of(server.received, "CTX-OOB", "response.create")]["response"]
            assert oob["conversation"] == "none" and oob["input"][0]["role"] == "user"
            await until(lambda: not engine.provider.response_active)

            # RESPOND: item then response.create
            engine.inject_context("CTX-RESPOND", mode=M.RESPOND)
            await until(lambda: sum(1 for e in server.received if e["type"] == "response.create") == 3)
            i_item = index_of(server.received, "CTX-RESPOND", "conversation.item.create")
            assert 0 <= i_item < len(server.received) - 1 and server.received[-1]["type"] == "response.create" or any(
                e["type"] == "response.create" for e in server.received[i_item + 1:])
            await until(lambda: not engine.provider.response_active)

            injected = [e.data.context_id for e in rec.of(EventType.CONTEXT_INJECTED)]
            assert len(injected) == 10 and engine.metrics.context_injected == 10
        assert server.errors == []


async def test_next_turn_context_goes_in_before_the_reply_under_server_vad() -> None:
    """The README's example: default server VAD, NEXT_TURN context, the user speaks. The
    context must be in the conversation before the assistant's reply, and the turn gets
    exactly one reply (the engine asks for it; the service does not reply by itself)."""
    from enginekit import silence, voiced

    async with make_provider("openai", responses=["Hello there."]) as (provider, server):
        async with VoiceEngine(provider, fast_config()) as engine:
            rec = Recorder(engine)
            engine.inject_context("The user's name is Ana.", timing=T.NEXT_TURN)
            speech = voiced(24000, 600) + silence(24000, 900)
            for off in range(0, len(speech), 960):
                await engine.send_audio(speech[off:off + 960], sample_rate=24000)
            await rec.wait(EventType.RESPONSE_DONE)
            await asyncio.sleep(0.05)  # a second (service-made) reply would have started by now
            items = server.session.items
            roles = [(i.get("role"), "Ana." in str(i)) for i in items]
            assert roles == [("user", False), ("user", True), ("assistant", False)]
            assert sum(1 for e in server.sent if e["type"] == "response.created") == 1
            assert sum(1 for e in server.received if e["type"] == "response.create") == 1
        assert engine.metrics.context_injected == 1  # kept after close
        assert server.errors == []
