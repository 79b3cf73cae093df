"""ConversationState idempotence: duplicated, swapped and replayed events (issue 5).

Base sequences are real GA event sequences recorded from the MockProvider (a spoken reply,
a VAD user turn, a function call, a text reply, an interrupted reply). Each event gets a
server-style ``raw["event_id"]`` (a duplicated frame repeats it). Hypothesis duplicates and
swaps adjacent events; the folded items must equal those of the clean sequence.
"""

from __future__ import annotations

import asyncio
import functools
import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from voiceengine.providers.mock import MockConfig, MockProvider
from voiceengine.providers.types import EventType as E, ProviderEvent
from voiceengine.state import ConversationState

FOLDED = (E.ITEM_ADDED, E.ITEM_DONE, E.OUTPUT_ITEM_DONE, E.TRANSCRIPT_DELTA, E.TRANSCRIPT_DONE, E.TEXT_DELTA,
          E.TEXT_DONE, E.AUDIO_DELTA, E.AUDIO_DONE, E.INPUT_TRANSCRIPT, E.ITEM_TRUNCATED, E.ITEM_DELETED,
          E.RESPONSE_STARTED, E.RESPONSE_DONE, E.SPEECH_STARTED, E.SPEECH_STOPPED, E.INPUT_COMMITTED,
          E.FUNCTION_CALL)


def _voiced(ms: int) -> bytes:
    import numpy as np

    t = np.arange(24 * ms) / 24000
    return (0.3 * np.sin(2 * np.pi * 180 * t) * 32767).astype("<i2").tobytes()


async def _record() -> dict[str, list[ProviderEvent]]:
    runs: dict[str, list[ProviderEvent]] = {}

    async def run(name: str, cfg: MockConfig, script: Any) -> None:
        p = MockProvider(cfg)
        await p.connect()
        mark = len(p.history)
        await script(p)
        await p.wait_idle()
        runs[name] = [r.event for r in p.history[mark:] if r.kind == "event" and r.event is not None
                      and r.event.type in FOLDED]
        await p.disconnect()

    async def spoken(p: MockProvider) -> None:
        await p.send_text("hello")

    async def vad(p: MockProvider) -> None:
        await p.send_audio(_voiced(400) + bytes(48 * 700))

    async def interrupted(p: MockProvider) -> None:
        await p.send_text("talk")
        while not p.emitted(E.AUDIO_DELTA):
            await asyncio.sleep(0)
        await p.interrupt(played_ms=50)

    await run("spoken", MockConfig(responses=("Hi there, nice day",)), spoken)
    await run("vad", MockConfig(responses=("Sure thing",), input_transcripts=("What time is it?",)), vad)
    await run("function", MockConfig(responses=({"text": "Checking", "function_call": {
        "name": "clock", "arguments": {"tz": "UTC"}}},)), spoken)
    await run("text", MockConfig(responses=("plain text reply here",), output_modalities=("text",)), spoken)
    await run("interrupted", MockConfig(responses=("a b c d e f g h i j k l",)), interrupted)
    return {name: [replace(e, raw={"type": e.type.value, "event_id": f"event_{i}"}) for i, e in enumerate(evs)]
            for name, evs in runs.items()}


@functools.cache
def recorded() -> dict[str, list[ProviderEvent]]:
    return asyncio.run(_record())


@pytest.fixture(scope="module")
def runs() -> dict[str, list[ProviderEvent]]:
    return recorded()


def fold(events: list[ProviderEvent]) -> ConversationState:
    state = ConversationState()
    for event in events:
        state.apply(event)
    return state


def project(state: ConversationState) -> list[tuple[Any, ...]]:
    return [(i.id, i.type, i.role, i.text, i.transcript, round(i.audio_ms, 6), i.status, i.truncated_at_ms,
             i.call_id, i.arguments, i.output) for i in state.items]


def mutate(events: list[ProviderEvent], ops: list[tuple[str, int]]) -> list[ProviderEvent]:
    out = list(events)
    for op, pos in ops:
        if len(out) < 2:
            break
        i = pos % (len(out) - 1)
        if op == "dup":
            out.insert(i + 1, out[i])  # the same server event (same event_id) delivered twice
        else:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def test_recorded_runs_are_real(runs: dict[str, list[ProviderEvent]]) -> None:
    for name, events in runs.items():
        assert events, name
        state = fold(events)
        assert state.items, name
    spoken = fold(runs["spoken"]).items
    assert [(i.role, i.transcript) for i in spoken] == [("user", None), ("assistant", "Hi there, nice day")]
    assert spoken[1].audio_ms > 0
    vad = fold(runs["vad"]).items
    assert vad[0].role == "user" and vad[0].transcript == "What time is it?" and vad[0].audio_ms > 0
    assert fold(runs["interrupted"]).items[-1].truncated_at_ms == 50


ops_strategy = st.lists(st.tuples(st.sampled_from(("dup", "swap")), st.integers(0, 10_000)), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(("spoken", "vad", "function", "text", "interrupted")), ops=ops_strategy)
def test_duplicates_and_adjacent_swaps_fold_to_the_same_items(name: str, ops: list[tuple[str, int]]) -> None:
    runs = recorded()
    clean = project(fold(runs[name]))
    mutated = mutate(runs[name], ops)
    state = fold(mutated)
    assert project(state) == clean
    assert len({i.id for i in state.items}) == len(state.items)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(("spoken", "vad", "function", "text")), picks=st.lists(st.integers(0, 10_000),
                                                                                     min_size=1, max_size=5))
def test_structural_events_repeated_without_event_ids_are_idempotent(name: str, picks: list[int]) -> None:
    """Item added/done, *_done and function calls re-sent as *new* events (fresh ids)."""
    base = recorded()[name]
    structural = [i for i, e in enumerate(base) if e.type in (
        E.ITEM_ADDED, E.ITEM_DONE, E.TRANSCRIPT_DONE, E.TEXT_DONE, E.INPUT_TRANSCRIPT, E.FUNCTION_CALL)]
    out = list(base)
    for n, pick in enumerate(picks):
        event = base[structural[pick % len(structural)]]
        out.append(replace(event, raw={"type": event.type.value, "event_id": f"again_{n}"}))
    assert project(fold(out)) == project(fold(base))


def test_replayed_snapshot_keeps_items_transcripts_and_audio(runs: dict[str, list[ProviderEvent]]) -> None:
    """A restored session re-creates our snapshot's items (same ids, audio turned into text)."""
    state = fold(runs["vad"] + runs["interrupted"])
    before = project(state)
    snap = state.snapshot()
    assert snap.item_ids and all(item["id"] == iid for item, iid in zip(snap.items, snap.item_ids))
    prev = None
    for n, item in enumerate(snap.items):
        wire = {**item, "status": "completed", "previous_item_id": prev}
        for etype in (E.ITEM_ADDED, E.ITEM_DONE):
            state.apply(ProviderEvent(type=etype, data=wire, item_id=item["id"],
                                      raw={"type": etype.value, "event_id": f"replay_{etype.name}_{n}"}))
        prev = item["id"]
    assert project(state) == before
    assert state.snapshot().items == snap.items  # a second outage replays exactly the same
    turns = len(state.turns)
    state.apply(ProviderEvent(type=E.ITEM_ADDED, data=dict(snap.items[0]), item_id=snap.items[0]["id"]))
    assert len(state.turns) == turns  # a replayed user text item is not a new turn


def test_duplicate_event_ids_are_counted_and_out_of_band_orphans_bounded() -> None:
    state = ConversationState()
    ev = ProviderEvent(type=E.ITEM_ADDED, data={"id": "a", "type": "message", "role": "user",
                                                "content": [{"type": "input_text", "text": "x"}]},
                       raw={"event_id": "e1"})
    state.apply(ev)
    state.apply(ev)
    assert state.duplicate_events == 1 and len(state.items) == 1
    for n in range(500):  # deltas of items never added (out-of-band responses)
        state.apply(ProviderEvent(type=E.TEXT_DELTA, data="t", item_id=f"oob_{n}", response_id="r"))
    assert len(state._orphans) <= 64 and len(state.items) == 1
    assert math.isclose(state.items[0].audio_ms, 0.0)
