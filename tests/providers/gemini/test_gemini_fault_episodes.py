"""Random-fault episodes on Gemini: seeded conversations (text, speech and tool turns) with
faults at random points. Every episode must end with a session that answers, every reply that
started ended exactly once, and exact audio accounting."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from gemini_provider_helpers import Recorder, is_, make_provider, speech
from voiceengine.exceptions import InvalidState
from voiceengine.providers.types import EventType
from voiceengine.testing import FakeGeminiLiveServer, Fault, FaultKind, Trigger

EPISODES = 30
EPISODE_TIMEOUT_S = 30.0
KINDS = [
    {"kind": FaultKind.CLOSE, "close_code": 1011},
    {"kind": FaultKind.CLOSE, "close_code": 1006},
    {"kind": FaultKind.TCP_RESET},
    {"kind": FaultKind.SESSION_EXPIRED, "duration_s": 0.1},
    {"kind": FaultKind.STALL, "duration_s": 0.2},
    {"kind": FaultKind.MALFORMED_JSON},
    {"kind": FaultKind.UNKNOWN_EVENT},
    {"kind": FaultKind.BAD_BASE64_AUDIO},
]
TRIGGERS = [
    {"trigger": Trigger.IMMEDIATE},
    {"trigger": Trigger.MID_RESPONSE, "count": 1},
    {"trigger": Trigger.MID_RESPONSE, "count": 3},
    {"trigger": Trigger.ON_CLIENT_EVENT, "event_type": "realtimeInput", "count": 2},
]


async def idle(provider: object) -> None:
    """Until the provider has a session with no reply requested or in progress."""
    async with asyncio.timeout(10):
        while (session := getattr(provider, "session", None)) is None or not session.idle:
            await asyncio.sleep(0.01)


async def settle(provider: object, rec: Recorder, answered: set[str]) -> None:
    """Until the turn is over: every function call answered (as an app does), no reply
    requested or in progress. A reply lost with a connection ends it too."""
    async with asyncio.timeout(10):
        while True:
            cancelled = {i for e in rec.of(EventType.TOOL_CALL_CANCELLED) for i in e.data.call_ids}
            for event in rec.of(EventType.FUNCTION_CALL):
                call_id = event.data.call_id
                if call_id in answered or call_id in cancelled:
                    continue
                answered.add(call_id)
                try:
                    await provider.send_function_result(call_id, {"ok": True})  # type: ignore[attr-defined]
                except InvalidState:  # withdrawn meanwhile (the user spoke): the service says so
                    await rec.wait(lambda e: e.type is EventType.TOOL_CALL_CANCELLED and call_id in e.data.call_ids)
            session = getattr(provider, "session", None)
            if session is not None and session.idle:
                return
            await asyncio.sleep(0.01)


async def episode(seed: int) -> None:
    rng = random.Random(seed)
    async with FakeGeminiLiveServer(speed=50.0, resumption_update_every=rng.choice([0, 5, 25])) as server:
        provider = make_provider(server, max_reconnect_attempts=5, connect_timeout_s=3.0,
                                 transparent_resumption=rng.random() < 0.5)
        rec = Recorder(provider)
        answered: set[str] = set()
        await provider.connect()
        try:
            for step in range(rng.randint(3, 6)):
                if rng.random() < 0.5:
                    server.inject(Fault(**rng.choice(KINDS), **rng.choice(TRIGGERS), label=f"{seed}/{step}"))
                turn = rng.choice(["text", "speech", "tool"])
                if turn == "tool":
                    server.script_tool_call("lookup", {"step": step})
                if turn == "speech":
                    pcm = speech("tell me something")
                    for i in range(0, len(pcm), 1600):
                        await provider.send_audio(pcm[i:i + 1600])
                    await provider.commit_audio()
                else:
                    await provider.send_text(f"turn {step}")
                await settle(provider, rec, answered)
            server.faults.clear()
            await settle(provider, rec, answered)
            for _ in range(5):  # a reply lost with a connection is not re-requested: ask again
                await idle(provider)
                after = len(rec.events)
                await provider.send_text("are you still there?")
                done = await rec.wait(is_(EventType.RESPONSE_DONE), since=after, timeout=10)
                if done.data.status == "completed":
                    break
            assert done.data.status == "completed", seed
        finally:
            await provider.disconnect()
        started = Counter(e.response_id for e in rec.of(EventType.RESPONSE_STARTED))
        ended = Counter(e.response_id for e in rec.of(EventType.RESPONSE_DONE) if e.response_id is not None)
        assert all(n == 1 for n in started.values()) and all(n == 1 for n in ended.values()), seed
        assert set(started) <= set(ended), f"seed {seed}: a reply that started never ended"
        accounting = provider.audio_accounting
        assert accounting.balanced and accounting.pending_bytes == 0, seed


@pytest.mark.parametrize("seed", range(EPISODES))
async def test_random_fault_episode(seed: int) -> None:
    await asyncio.wait_for(episode(seed), EPISODE_TIMEOUT_S)
