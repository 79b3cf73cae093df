"""Gemini fault x phase matrix: each fault of the fake server at each phase of a session.

Every cell drives a real GeminiProvider (zero backoff) against FakeGeminiLiveServer and checks
its outcome plus the invariants every cell keeps: no hang (a deadline per cell), every reply
started ends exactly once (a real or a synthetic RESPONSE_DONE), exact audio accounting, and
after the fault the session still answers.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from gemini_provider_helpers import Recorder, is_, make_provider, speech
from voiceengine.exceptions import ConnectionFailed
from voiceengine.providers.types import EventType, RestoreMethod
from voiceengine.testing import FakeGeminiLiveServer, Fault, FaultKind, Trigger

CELL_TIMEOUT_S = 20.0
PHASES = ("before_ready", "mid_upload", "mid_response", "idle")
FAULTS: dict[str, dict[str, Any]] = {
    "close_1011": {"kind": FaultKind.CLOSE, "close_code": 1011},
    "drop_1006": {"kind": FaultKind.CLOSE, "close_code": 1006},
    "tcp_reset": {"kind": FaultKind.TCP_RESET},
    "go_away": {"kind": FaultKind.SESSION_EXPIRED, "duration_s": 0.2},
    "stall": {"kind": FaultKind.STALL, "duration_s": 0.3},
    "malformed_json": {"kind": FaultKind.MALFORMED_JSON},
    "unknown_field": {"kind": FaultKind.UNKNOWN_EVENT},
    "malformed_field": {"kind": FaultKind.MALFORMED_EVENT},
    "bad_base64_audio": {"kind": FaultKind.BAD_BASE64_AUDIO},
    "close_then_503": {"kind": FaultKind.CLOSE, "close_code": 1011,
                       "then": (Fault(kind=FaultKind.REJECT_HANDSHAKE, status_code=503),)},
}
LOSSES = {"close_1011", "drop_1006", "tcp_reset", "go_away", "close_then_503"}
MARKERS = {"malformed_json": "error", "malformed_field": "error", "unknown_field": "unknown",
           "bad_base64_audio": "error"}
TRIGGERS = {
    "before_ready": {"trigger": Trigger.BEFORE_SESSION_CREATED},
    "mid_upload": {"trigger": Trigger.ON_CLIENT_EVENT, "event_type": "realtimeInput", "count": 3},
    "mid_response": {"trigger": Trigger.MID_RESPONSE, "count": 2},
    "idle": {"trigger": Trigger.IMMEDIATE},
}


def expected(fault: str, phase: str) -> str:
    if phase == "before_ready" and fault in LOSSES - {"go_away"}:
        return "connect_error"  # the first session never got set up: connect() says so
    if phase == "before_ready" and fault == "bad_base64_audio":
        return "survives"  # armed before any audio: it hits the first reply
    if fault in LOSSES:
        return "restored"
    return "survives"


async def run_cell(fault_name: str, phase: str) -> None:
    fields = {**FAULTS[fault_name], **TRIGGERS[phase], "label": f"{fault_name}@{phase}"}
    outcome = expected(fault_name, phase)
    async with FakeGeminiLiveServer(speed=50.0) as server:
        provider = make_provider(server, max_reconnect_attempts=3, connect_timeout_s=3.0)
        rec = Recorder(provider)
        try:
            if phase == "before_ready":
                server.inject(Fault(**fields))
                if outcome == "connect_error":
                    with pytest.raises(ConnectionFailed) as info:
                        await provider.connect()
                    assert info.value.retryable
                    return
            await provider.connect()
            if phase == "idle":
                await provider.send_text("warm up")
                await rec.wait(is_(EventType.RESPONSE_DONE))
                server.inject(Fault(**fields))
            elif phase != "before_ready":
                server.inject(Fault(**fields))
            mark = len(rec.events)
            if phase in ("mid_upload", "before_ready"):
                pcm = speech("one two three four five")
                for i in range(0, len(pcm), 3200):
                    await provider.send_audio(pcm[i:i + 3200])
                await provider.commit_audio()
            elif phase == "mid_response":
                await provider.send_text("a long answer please about many things")
            if outcome == "restored":
                change = await rec.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == "restored",
                                        since=mark)
                assert change.data.restored_by in (RestoreMethod.RESUMPTION, RestoreMethod.REPLAY)
            # whatever happened, the session answers
            after = len(rec.events)
            await provider.send_text("still there?")
            done = await rec.wait(lambda e: e.type is EventType.RESPONSE_DONE and e.data.status == "completed",
                                  since=after)
            assert done.data.status == "completed"
            marker = MARKERS.get(fault_name)  # the fault was seen (searched from the start)
            if marker == "error":
                await rec.wait(lambda e: e.type is EventType.ERROR and e.error is not None and e.error.remote)
            elif marker == "unknown":
                await rec.wait(is_(EventType.UNKNOWN))
        finally:
            await provider.disconnect()
        started = Counter(e.response_id for e in rec.of(EventType.RESPONSE_STARTED))
        ended = Counter(e.response_id for e in rec.of(EventType.RESPONSE_DONE) if e.response_id is not None)
        assert all(n == 1 for n in started.values()) and all(n == 1 for n in ended.values())
        assert set(started) <= set(ended), "a reply that started never ended"
        accounting = provider.audio_accounting
        assert accounting.balanced and accounting.pending_bytes == 0
        if outcome == "survives":
            assert not [e for e in rec.of(EventType.CONNECTION_STATE) if e.data.phase == "restored"]


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fault_matrix(fault: str, phase: str) -> None:
    await asyncio.wait_for(run_cell(fault, phase), CELL_TIMEOUT_S)
