"""The fault x phase matrix: every fault of issue 5 injected at every phase of a session.

Each cell drives a real :class:`OpenAIProvider` (zero backoff, sub-second timeouts) against
the :class:`FakeRealtimeServer` on 127.0.0.1 and checks the outcome written in ``MATRIX``
below, plus the invariants every cell must keep: no hang (each cell has its own deadline),
every response started ends exactly once (a real or a synthetic ``RESPONSE_DONE``), no
committed item lost across a restore, no reply requested twice, exact audio accounting.

Phases:

* ``before_ready``     the first connection, before ``session.created`` (or its handshake)
* ``before_restored``  a reconnect after a 1011 drop, before its ``session.created``
* ``mid_upload``       on the 3rd ``input_audio_buffer.append`` of a 10-chunk upload
* ``mid_response``     after the 2nd output delta of a response
* ``during_interrupt`` when the client's truncate/cancel of a playing response arrives

Handshake faults (HTTP status, handshake timeout) in a phase after the handshake: the
connection is dropped (1006) at that point and the fault hits the reconnect's handshake.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import pytest

from reliability_harness import (
    CLIENT_LIMITS,
    Harness,
    accounting_problems,
    duplicate_replies,
    eventually,
    lost_items,
    server_config,
    state_problems,
    tone,
)
from voiceengine.exceptions import ConnectionFailed
from voiceengine.providers import EventType, ProviderEvent
from voiceengine.testing import FakeRealtimeServer, Fault, FaultKind, Trigger

PHASES = ("before_ready", "before_restored", "mid_upload", "mid_response", "during_interrupt")
CELL_TIMEOUT_S = 20.0
OVERSIZED_BYTES = 300 * 1024  # > the client's max_size_bytes (256 KiB)


# ------------------------------------------------------------------ expected outcomes
@dataclass(frozen=True)
class Expect:
    """One cell's outcome.

    kind: ``restored`` (a reconnect restored the session within ``within_s`` of the fault,
    on the loop clock), ``survives`` (no reconnect, the session keeps answering),
    ``failed`` / ``closed`` / ``gave_up`` (terminal CONNECTION_STATE phase, no restore),
    ``connect_error`` (``connect()`` raises ConnectionFailed with the given fields).
    marker: an event the fault must produce: ``error:<code>`` or ``unknown:<wire type>``.
    """

    kind: str
    within_s: float | None = None
    marker: str | None = None
    status_code: int | None = None
    codes: tuple[str, ...] | None = None
    retryable: bool | None = None
    fatal: bool | None = None


def restored(marker: str | None = None, within_s: float = 3.0) -> Expect:
    return Expect("restored", within_s=within_s, marker=marker)


def survives(marker: str | None = None) -> Expect:
    return Expect("survives", marker=marker)


def refused(status: int, *, fatal: bool) -> Expect:
    return Expect("connect_error", status_code=status, fatal=fatal, retryable=not fatal)


def connect_error(*codes: str, retryable: bool | None = True) -> Expect:
    return Expect("connect_error", codes=codes or None, retryable=retryable)


FAILED, CLOSED = Expect("failed"), Expect("closed")
BAD = "error:malformed_event"
UNKNOWN = "unknown:fake.unknown_event"

# fmt: off
MATRIX: dict[str, tuple[Expect, Expect, Expect, Expect, Expect]] = {
    # fault               before_ready                          before_restored            mid_upload / mid_response / during_interrupt
    "http_401":          (refused(401, fatal=True),             FAILED,                    FAILED, FAILED, FAILED),
    "http_403":          (refused(403, fatal=True),             FAILED,                    FAILED, FAILED, FAILED),
    "http_429":          (refused(429, fatal=False),            restored(),                restored(), restored(), restored()),
    "http_500":          (refused(500, fatal=False),            restored(),                restored(), restored(), restored()),
    "http_503":          (refused(503, fatal=False),            restored(),                restored(), restored(), restored()),
    "handshake_timeout": (connect_error("timeout"),             restored(within_s=5.0),    *(restored(within_s=5.0),) * 3),
    "tcp_reset":         (connect_error(),                      restored(),                restored(), restored(), restored()),
    "half_open":         (connect_error("timeout", "closed"),   restored(within_s=5.0),    *(restored(within_s=5.0),) * 3),
    "close_1000":        (connect_error(retryable=None),        CLOSED,                    CLOSED, CLOSED, CLOSED),
    "close_1001":        (connect_error(),                      restored(),                restored(), restored(), restored()),
    "close_1006":        (connect_error(),                      restored(),                restored(), restored(), restored()),
    "close_1008":        (connect_error(retryable=False),       FAILED,                    FAILED, FAILED, FAILED),
    # a 1009 *sent by the server* (our message was too big for it) is not worth a retry; the
    # 1009 of our own max_size (``oversized``) is: docs/reliability.md has the table
    "close_1009":        (connect_error(retryable=False),       FAILED,                    FAILED, FAILED, FAILED),
    "close_1011":        (connect_error(),                      restored(),                restored(), restored(), restored()),
    "close_4000":        (connect_error(retryable=False),       FAILED,                    FAILED, FAILED, FAILED),
    "bad_json":          (survives(BAD),                        restored(BAD),             survives(BAD), survives(BAD), survives(BAD)),
    "unknown_event":     (survives(UNKNOWN),                    restored(UNKNOWN),         *(survives(UNKNOWN),) * 3),
    "malformed_event":   (survives(BAD),                        restored(BAD),             survives(BAD), survives(BAD), survives(BAD)),
    "bad_base64":        (survives(BAD),                        restored(BAD),             survives(BAD), survives(BAD), survives(BAD)),
    "duplicate_event":   (survives(),                           restored(),                survives(), survives(), survives()),
    "out_of_order":      (survives(),                           restored(),                survives(), survives(), survives()),
    "session_expired":   (connect_error(),                      restored("error:session_expired"),
                          *(restored("error:session_expired"),) * 3),
    "stall":             (survives(),                           restored(),                survives(), survives(), survives()),
    "oversized":         (connect_error(),                      restored("error:message_too_big"),
                          *(restored("error:message_too_big"),) * 3),
}
# fmt: on
assert all(len(row) == len(PHASES) for row in MATRIX.values())

HANDSHAKE = {"http_401", "http_403", "http_429", "http_500", "http_503", "handshake_timeout"}


def make_fault(name: str, **trigger: Any) -> Fault:
    """The fault called ``name``, with the phase's trigger fields."""
    if name.startswith("http_"):
        return Fault(kind=FaultKind.REJECT_HANDSHAKE, status_code=int(name[5:]), **trigger)
    if name.startswith("close_"):
        return Fault(kind=FaultKind.CLOSE, close_code=int(name[6:]), close_reason="injected", **trigger)
    simple = {
        "handshake_timeout": dict(kind=FaultKind.HANDSHAKE_TIMEOUT),
        "tcp_reset": dict(kind=FaultKind.TCP_RESET),
        "half_open": dict(kind=FaultKind.HALF_OPEN),
        "bad_json": dict(kind=FaultKind.MALFORMED_JSON),
        "unknown_event": dict(kind=FaultKind.UNKNOWN_EVENT),
        "malformed_event": dict(kind=FaultKind.MALFORMED_EVENT),
        "bad_base64": dict(kind=FaultKind.BAD_BASE64_AUDIO),
        "duplicate_event": dict(kind=FaultKind.DUPLICATE_EVENT),
        "out_of_order": dict(kind=FaultKind.OUT_OF_ORDER),
        "session_expired": dict(kind=FaultKind.SESSION_EXPIRED),
        "stall": dict(kind=FaultKind.STALL, duration_s=0.3),
        "oversized": dict(kind=FaultKind.OVERSIZED_MESSAGE, size_bytes=OVERSIZED_BYTES),
    }[name]
    return Fault(**simple, **trigger)  # type: ignore[arg-type]


def phase_fault(name: str, phase: str) -> Fault:
    """The fault armed for ``phase``; handshake faults after the handshake ride on a 1006 drop."""
    trig: dict[str, Any] = {
        "before_ready": dict(trigger=Trigger.BEFORE_SESSION_CREATED, session_index=0),
        "before_restored": dict(trigger=Trigger.BEFORE_SESSION_CREATED, session_index=1),
        "mid_upload": dict(trigger=Trigger.ON_CLIENT_EVENT, event_type="input_audio_buffer.append", count=3),
        "mid_response": dict(trigger=Trigger.MID_RESPONSE, count=2),
        "during_interrupt": dict(trigger=Trigger.DURING_INTERRUPT),
    }[phase]
    if name in HANDSHAKE and phase in ("mid_upload", "mid_response", "during_interrupt"):
        return Fault(kind=FaultKind.CLOSE, close_code=1006, then=(make_fault(name),), **trig)
    if name in HANDSHAKE and phase == "before_ready":
        # the first connect() retries a transient refusal (issue 10): the service refuses
        # every attempt it makes, so that connect() still ends in the refusal
        return make_fault(name, session_index=None, trigger=Trigger.ON_CONNECT,
                          times=CLIENT_LIMITS["max_reconnect_attempts"] + 1)
    if name in HANDSHAKE:
        return make_fault(name, session_index=trig["session_index"])
    return make_fault(name, **trig)


# ------------------------------------------------------------------ drivers
def marker_hit(marker: str, event: ProviderEvent) -> bool:
    kind, _, value = marker.partition(":")
    if kind == "error":
        return event.type is EventType.ERROR and event.error is not None and event.error.code == value
    return event.type is EventType.UNKNOWN and event.data == value


async def drive(h: Harness, phase: str, arm: Fault | None) -> int:
    """Carry the session to the phase's fault; returns how many replies the app asked for."""
    p = h.provider
    # a first exchange, so that every outage has committed items to replay (ids, roles)
    mark = h.mark()
    await p.send_text("warm up")
    await h.wait(lambda e: e.type is EventType.RESPONSE_DONE, since=mark, timeout=5)
    if arm is not None:  # armed as the phase begins, so that the warm-up cannot trip it
        h.server.faults.add(arm)
    if phase == "before_restored":
        h.server.inject(Fault(kind=FaultKind.CLOSE, close_code=1011, label="restore trigger"))
        return 1
    if phase == "mid_upload":
        chunk = tone(20)
        for _ in range(10):
            await h.send_audio(chunk)
            await asyncio.sleep(0.01)
        try:
            await p.commit_audio()
            await p.create_response()
        except Exception:
            return 1  # the fault ended the session (a terminal cell): the request never went out
        return 2
    mark = h.mark()
    await p.send_text("hello")
    if phase == "during_interrupt":
        await h.wait(lambda e: e.type is EventType.AUDIO_DELTA, since=mark, timeout=5)
        await p.interrupt(played_ms=50)
    return 2


def responses_end_once(h: Harness, *, allow_duplicates: bool) -> list[str]:
    """Every RESPONSE_STARTED gets a RESPONSE_DONE (real or synthetic), and only one."""
    started = [e.response_id for e in h.of(EventType.RESPONSE_STARTED)]
    done = [e.response_id or getattr(e.data, "response_id", None) for e in h.of(EventType.RESPONSE_DONE)]
    problems = [f"response {rid} never ended" for rid in dict.fromkeys(started) if rid not in done]
    if not allow_duplicates:
        problems += [f"response {rid} ended {done.count(rid)} times" for rid in set(done) - {None} if done.count(rid) > 1]
    return problems


CELLS = [pytest.param(name, phase, MATRIX[name][i], id=f"{name}-{phase}")
         for name in MATRIX for i, phase in enumerate(PHASES)]


@pytest.mark.parametrize(("name", "phase", "expect"), CELLS)
async def test_fault_cell(name: str, phase: str, expect: Expect) -> None:
    speed = 10.0 if phase == "during_interrupt" else math.inf
    fault = phase_fault(name, phase)
    armed_early = phase in ("before_ready", "before_restored")
    config = server_config(speed=speed, faults=(fault,) if armed_early else ())
    async with FakeRealtimeServer(config) as server:
        h = Harness.create(server)
        try:
            async with asyncio.timeout(CELL_TIMEOUT_S):
                await run_cell(h, name, phase, expect, fault, armed_early)
        finally:
            async with asyncio.timeout(CELL_TIMEOUT_S):
                await h.disconnect()
        # quiescent: the provider is closed, every byte must have a fate
        problems = accounting_problems(h, quiescent=True)
        problems += lost_items(h) + h.apply_errors
        problems += responses_end_once(h, allow_duplicates=name == "duplicate_event")
        assert not problems, f"{name}@{phase}: {problems}"


async def run_cell(h: Harness, name: str, phase: str, expect: Expect, fault: Fault, armed_early: bool) -> None:
    if expect.kind == "connect_error":
        with pytest.raises(ConnectionFailed) as info:
            await h.provider.connect()
        exc = info.value
        if expect.status_code is not None:
            assert exc.status_code == expect.status_code, exc
        if expect.codes is not None:
            assert exc.code in expect.codes, exc
        if expect.retryable is not None:
            assert exc.retryable is expect.retryable, exc
        if expect.fatal is not None:
            assert exc.fatal is expect.fatal, exc
        assert h.terminal and "restored" not in h.phases()
        return
    await h.provider.connect()
    mark = 0 if phase == "before_ready" else h.mark()
    requests = await drive(h, phase, None if armed_early else fault)
    try:
        async with asyncio.timeout(5):
            while not h.server.faults.fired:
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"{name}@{phase}: the fault never fired") from None
    fired_at = h.server.faults.fired_at[0]

    if expect.kind == "restored":
        hit = await h.wait_phase("restored", "failed", "gave_up", "closed", since=mark, timeout=10)
        assert hit.event.data.phase == "restored", f"{name}@{phase}: {h.phases(mark)}"
        assert expect.within_s is not None
        took = hit.at - fired_at
        assert took <= expect.within_s, f"{name}@{phase}: restored after {took:.3f} s"
        print(f"CELL {name}@{phase}: restored {took * 1000:.0f} ms after the fault")
        change = hit.event.data
        outage = h.outages[0]
        assert change.replayed_items == outage.replay_count > 0, (change, outage)
        assert change.downtime_ms is not None and change.downtime_ms >= 0, change
        await h.check_turn()
        requests += 1
        # a sub-second outage is far inside the 3 s backlog: no input audio may be dropped
        assert h.provider.audio_accounting.dropped_bytes == 0, h.provider.audio_accounting
    elif expect.kind == "survives":
        await h.check_turn()
        requests += 1
        assert "reconnecting" not in h.phases(mark), f"{name}@{phase}: {h.phases(mark)}"
    else:
        hit = await h.wait_phase("restored", "failed", "gave_up", "closed", since=mark, timeout=10)
        assert hit.event.data.phase == expect.kind, f"{name}@{phase}: {h.phases(mark)}"
        assert "restored" not in h.phases(mark)
        assert h.terminal
        print(f"CELL {name}@{phase}: {hit.event.data.phase} ({hit.event.data.reason})")
    if phase == "mid_response" and expect.kind not in ("survives",):
        # the response cut by the loss is reported once, as failed with connection_lost
        lost = [e for e in h.of(EventType.RESPONSE_DONE, mark)
                if e.data.status == "failed" and e.data.reason == "connection_lost"]
        assert len(lost) == 1, f"{name}@{phase}: {[e.data for e in h.of(EventType.RESPONSE_DONE, mark)]}"
    if expect.marker is not None:
        assert any(marker_hit(expect.marker, s.event) for s in h.events[mark:]), \
            f"{name}@{phase}: no {expect.marker} event; errors: {[e.error for e in h.errors(mark)]}"
    problems = await eventually(lambda: state_problems(h))  # once the server handled what is in flight
    problems += duplicate_replies(h, requests) + accounting_problems(h, quiescent=False)
    assert not problems, f"{name}@{phase}: {problems}"
