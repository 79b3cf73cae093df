"""The fake server's memory stays bounded: endless speech under server VAD, and closed sessions.

Structural checks (what is still reachable after N sessions), not RSS figures: they do not
depend on the allocator or on how loaded the machine is.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import math
import tracemalloc
from array import array

import pytest

from voiceengine.cli import build_parser, fake_server_config
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig, FakeSession

from fakeserver_helpers import connect

WAIT_S = 10.0


def _loud(ms: int) -> bytes:
    """A square wave at -12 dBFS: speech to the energy VAD, for as long as it lasts."""
    return array("h", [8000, -8000] * (12 * ms)).tobytes()


def _append(session: FakeSession, pcm: bytes) -> None:
    session.receive(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}))


def test_endless_speech_under_server_vad_is_bounded_like_manual_mode() -> None:
    session = FakeSession(FakeServerConfig(max_input_buffer_ms=1000, speed=math.inf))
    session.start()
    for _ in range(50):  # 5 s of speech that never stops, in 100 ms appends
        _append(session, _loud(100))
    out = session.events_to_send()
    assert [e["type"] for e in out].count("input_audio_buffer.speech_started") == 1
    assert "input_audio_buffer.speech_stopped" not in [e["type"] for e in out]
    assert session.input_buffer_ms <= 1000
    refused = [e for e in out if e["type"] == "error"]
    assert refused and {e["error"]["code"] for e in refused} == {"input_audio_buffer_too_large"}
    assert session.input_audio_bytes == 1000 * 48  # only what was accepted counts
    # the client's way out: clear, and the buffer takes audio again
    session.receive(json.dumps({"type": "input_audio_buffer.clear"}))
    _append(session, _loud(100))
    assert session.input_buffer_ms == 100
    assert not [e for e in session.events_to_send() if e["type"] == "error"]


async def _one_session(server: FakeRealtimeServer, audio_ms: int) -> None:
    """A client that speaks (never pausing), asks for a reply, reads it and leaves."""
    closed_before = server.sessions_closed
    async with connect(server) as client:
        await client.send("session.update", session={"type": "realtime", "audio": {"input": {
            "turn_detection": None}}})
        await client.append(_loud(audio_ms))
        await client.send("input_audio_buffer.commit")
        await client.send("response.create")
        await client.until("response.done", timeout=WAIT_S)
        await client.append(_loud(audio_ms))  # left uncommitted in the buffer
        await client.send("input_audio_buffer.commit")
        await client.until("input_audio_buffer.committed", timeout=WAIT_S)
    async with asyncio.timeout(WAIT_S):  # the server notices the close on its own task
        while server.sessions_closed == closed_before:
            await asyncio.sleep(0.005)


def _live_sessions() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, FakeSession))


def _cli_server(*argv: str) -> FakeRealtimeServer:
    args = build_parser().parse_args(["fake-server", "--server-speed", "inf", *argv])
    return FakeRealtimeServer(fake_server_config(args), port=0)


async def test_cli_server_keeps_nothing_of_closed_sessions_but_counters() -> None:
    before = _live_sessions()
    async with _cli_server() as server:
        for _ in range(6):
            await _one_session(server, audio_ms=500)
        assert server.sessions == []
        assert _live_sessions() == before  # no FakeSession reachable from anywhere
        assert server.sessions_started == server.sessions_closed == 6
        assert server.input_audio_bytes == 6 * 2 * 500 * 48  # the totals outlive the sessions


async def test_cli_keep_sessions_flag_keeps_the_last_n() -> None:
    async with _cli_server("--keep-sessions", "2") as server:
        for _ in range(5):
            await _one_session(server, audio_ms=200)
        assert [s.index for s in server.sessions] == [3, 4]
        assert all(s.finished and s.input_buffer_ms == 0 for s in server.sessions)
        assert server.sessions_closed == 5
        assert server.input_audio_bytes == 5 * 2 * 200 * 48


async def test_cli_server_memory_is_flat_after_warm_up() -> None:
    """Traced bytes after 3 more sessions of 2 s audio each: no per-session growth."""
    async with _cli_server() as server:
        for _ in range(2):  # warm-up: imports, caches, the first connection's buffers
            await _one_session(server, audio_ms=2000)
        gc.collect()
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            for _ in range(3):
                await _one_session(server, audio_ms=2000)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - baseline
        finally:
            tracemalloc.stop()
    per_session_audio = 2 * 2000 * 48  # what one session would hold if kept: 192 kB of input
    assert grown < per_session_audio, f"{grown} bytes still held after 3 sessions"


async def test_a_closed_session_kept_for_tests_drops_its_live_state() -> None:
    """The default (tests read closed sessions) keeps the records but not the input buffer."""
    async with FakeRealtimeServer(FakeServerConfig(speed=math.inf)) as server:
        async with connect(server) as client:
            await client.append(_loud(1500))  # speech still going on when the client leaves
            await client.until("input_audio_buffer.speech_started", timeout=WAIT_S)
            await client.send("conversation.item.retrieve", item_id="nothing")
            await client.until("error", timeout=WAIT_S)
        async with asyncio.timeout(WAIT_S):
            while server.sessions_closed == 0:
                await asyncio.sleep(0.005)
        session = server.sessions[0]
        assert session.finished and session.input_buffer_ms == 0
        assert [e["type"] for e in session.received].count("input_audio_buffer.append") == 1500 // 100
        assert server.input_audio_bytes == 1500 * 48


def test_keep_closed_sessions_is_validated() -> None:
    with pytest.raises(ValueError):
        FakeServerConfig(keep_closed_sessions=-1)
    args = build_parser().parse_args(["fake-server"])
    assert fake_server_config(args).keep_closed_sessions == 0  # the CLI default keeps nothing
