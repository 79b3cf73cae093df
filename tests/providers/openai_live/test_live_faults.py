"""Fault battery on OpenAILiveProvider: every fault the fake Live server carries out, idle and
mid-reply. After each: the provider is usable (restored or still connected), the audio
ledger balances, a spoken turn after the fault is answered, nothing leaks."""

from __future__ import annotations

import math
from typing import Any

import pytest

from live_helpers import Run, live_provider

from voiceengine import OpenAILiveConfig, OpenAILiveProvider
from voiceengine.providers.types import ConnectionState, EventType
from voiceengine.testing import FakeOpenAILiveConfig, FakeOpenAILiveServer, Fault, FaultKind, Trigger
from voiceengine.testing.audio import synthesize

RECONNECTING = {"close 1006": Fault(kind=FaultKind.CLOSE, close_code=1006),
                "close 1011": Fault(kind=FaultKind.CLOSE, close_code=1011),
                "close 1001": Fault(kind=FaultKind.CLOSE, close_code=1001),
                "tcp reset": Fault(kind=FaultKind.TCP_RESET),
                "session expired": Fault(kind=FaultKind.SESSION_EXPIRED)}
SURVIVED = {"malformed json": Fault(kind=FaultKind.MALFORMED_JSON),
            "malformed event": Fault(kind=FaultKind.MALFORMED_EVENT),
            "unknown event": Fault(kind=FaultKind.UNKNOWN_EVENT),
            "server error": Fault(kind=FaultKind.ERROR_EVENT, error_code="server_error")}


def _replied_after(mark: int, driver: Run) -> Any:
    return lambda e: e.type is EventType.RESPONSE_DONE and e.data.status == "completed" \
        and driver.events.index(e) >= mark


@pytest.mark.parametrize("phase", ["idle", "mid-reply"])
@pytest.mark.parametrize("name", sorted(RECONNECTING) + sorted(SURVIVED))
async def test_fault_battery(name: str, phase: str) -> None:
    fault = RECONNECTING.get(name) or SURVIVED[name]
    if phase == "mid-reply":
        fault = Fault(kind=fault.kind, close_code=fault.close_code, error_code=fault.error_code,
                      trigger=Trigger.MID_RESPONSE, count=2)
    long_reply = " ".join(["word"] * 12)
    fake = FakeOpenAILiveConfig(speed=40.0, replies=[long_reply, "Again."], faults=(fault,) if phase != "idle" else ())
    async with FakeOpenAILiveServer(fake) as server:
        provider = live_provider(server)
        d = Run(provider)
        await provider.connect()
        try:
            if phase == "idle":
                server.inject(fault)
            else:
                await d.stream(synthesize("first question").pcm + bytes(48 * 700))
            if name in RECONNECTING:
                restored = await d.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == "restored")
                assert restored.data.restored_by is not None
            else:
                await d.wait(lambda e: e.type in (EventType.ERROR, EventType.UNKNOWN))
            mark = len(d.events)
            await d.stream(synthesize("are you there").pcm + bytes(48 * 700))
            await d.wait(_replied_after(mark, d))
            assert provider.state is ConnectionState.CONNECTED
            assert provider.audio_accounting.balanced
        finally:
            await provider.disconnect()
    assert provider.state is ConnectionState.CLOSED
    assert provider.audio_accounting.balanced and provider.audio_accounting.pending_bytes == 0
    if name in RECONNECTING:
        assert len(server.sessions) == 2
    else:
        assert len(server.sessions) == 1
        errors = [e for e in d.events if e.type is EventType.ERROR]
        assert all(not e.error.fatal for e in errors if e.error is not None)


async def test_fatal_error_ends_the_provider_without_reconnecting() -> None:
    fatal = Fault(kind=FaultKind.ERROR_EVENT, error_code="invalid_api_key", error_type="invalid_request_error")
    async with FakeOpenAILiveServer(FakeOpenAILiveConfig(speed=math.inf)) as server:
        provider = OpenAILiveProvider(OpenAILiveConfig(api_key="sk-test", url=server.url))
        d = Run(provider)
        await provider.connect()
        try:
            server.inject(fatal)
            failed = await d.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase == "failed")
        finally:
            await provider.disconnect()
    assert "invalid_api_key" in failed.data.reason
    assert len(server.sessions) == 1
