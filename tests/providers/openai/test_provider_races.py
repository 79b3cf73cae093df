"""Barge-in at random points and response.create races, against the fake server."""

from __future__ import annotations

import asyncio
import random

from _shell_helpers import response_done, running, server_error_codes
from voiceengine.exceptions import LimitExceeded
from voiceengine.providers import EventType
from voiceengine.testing import FakeServerConfig

LONG_REPLY = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"


def alternates(sent: list[dict]) -> bool:
    """The server's response.created/response.done events alternate: never two in flight."""
    kinds = [ev["type"] for ev in sent if ev["type"] in ("response.created", "response.done")]
    return all(kind == ("response.created" if i % 2 == 0 else "response.done") for i, kind in enumerate(kinds))


async def test_barge_in_at_random_points_causes_no_server_error() -> None:
    seed = 20240611
    rng = random.Random(seed)
    server_config = FakeServerConfig(turn_detection=None, speed=40.0, chunk_ms=40, responses=[LONG_REPLY])
    async with running(server_config) as (server, provider, rec):
        actions: dict[str, int] = {}
        for turn in range(30):
            mark = rec.mark()
            point = rng.choice(["before_created", "started", "delta", "delta", "delta", "done"])
            await provider.send_text(f"turn {turn}")
            if point == "started":
                await rec.wait_type(EventType.RESPONSE_STARTED, since=mark)
            elif point == "delta":
                k = rng.randint(1, 12)
                await rec.wait(lambda e: e.type is EventType.AUDIO_DELTA
                               and len(rec.of(EventType.AUDIO_DELTA, mark)) >= k, since=mark)
            elif point == "done":
                await rec.wait(response_done, since=mark)
            played = rng.choice([None, 0, rng.randint(1, 400), rng.randint(1, 5000)])
            result = await provider.interrupt(played_ms=played)
            after = rec.mark()
            actions[result.action] = actions.get(result.action, 0) + 1
            done = await rec.wait(response_done, since=mark)
            if result.cancelled_response:
                # nothing of the cancelled response is emitted after interrupt() returned
                late = [e for e in rec.of(EventType.AUDIO_DELTA, after) if e.response_id == done.response_id]
                assert not late, f"seed {seed} turn {turn}: {len(late)} late deltas"
                assert done.data.status in ("cancelled", "completed")
            if result.action == "truncated":
                assert result.audio_end_ms is not None and result.audio_end_ms > 0
                if played is not None:
                    assert result.audio_end_ms <= played
        # let the last truncate/delete be answered before judging
        await provider.send_message("conversation.item.retrieve", {"item_id": "item_does_not_exist"})
        await rec.wait(lambda e: e.type is EventType.ERROR and e.error.code is not None
                       and "item" in (e.error.param or e.error.code or e.error.message))
        codes = [c for c in server_error_codes(server)]
        # the only error is the deliberate retrieve of an unknown item
        assert len(codes) == 1, f"seed {seed}: server errors {codes}"
        assert actions.get("truncated", 0) > 0 and actions.get("deleted", 0) > 0, actions
        assert alternates(list(server.sessions[0].sent))


async def test_concurrent_create_response_never_overlaps() -> None:
    server_config = FakeServerConfig(turn_detection=None, speed=200.0, responses=["A short reply."])
    async with running(server_config) as (server, provider, rec):
        results = await asyncio.gather(*(provider.create_response() for _ in range(10)),
                                       provider.send_text("and a text turn"))
        assert isinstance(results[-1], str)
        await rec.wait(lambda e: len(rec.of(EventType.RESPONSE_DONE)) >= 11, timeout=30)
        assert len(rec.of(EventType.RESPONSE_DONE)) == 11
        assert server_error_codes(server) == []
        assert alternates(list(server.sessions[0].sent))
        assert not provider.response_active


async def test_random_response_control_ops_only_benign_races() -> None:
    seed = 77
    rng = random.Random(seed)
    server_config = FakeServerConfig(turn_detection=None, speed=100.0, responses=["Reply with a few words."])
    refused: list[int] = []
    async with running(server_config) as (server, provider, rec):

        async def op(i: int) -> None:
            await asyncio.sleep(rng.random() * 0.05)
            kind = rng.choice(["create", "create", "text", "cancel", "interrupt"])
            try:
                if kind == "create":
                    await provider.create_response()
                elif kind == "text":
                    await provider.send_text(f"message {i}")
            except LimitExceeded:  # more than 16 queued response requests: refused, typed
                refused.append(i)
                return
            if kind in ("create", "text"):
                return
            if kind == "cancel":
                await provider.cancel_response()
            else:
                await provider.interrupt(played_ms=rng.choice([None, 0, 50]))

        await asyncio.gather(*(op(i) for i in range(60)))
        await rec.wait(lambda e: not provider.response_active
                       and len(rec.of(EventType.RESPONSE_DONE)) == len(rec.of(EventType.RESPONSE_STARTED)),
                       timeout=30)
        codes = server_error_codes(server)
        assert "conversation_already_has_active_response" not in codes, f"seed {seed}: {codes}"
        assert set(codes) <= {"response_cancel_not_active"}, f"seed {seed}: {codes}"
        assert len(refused) < 60
        assert alternates(list(server.sessions[0].sent))
