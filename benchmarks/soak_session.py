"""One soak session: a :class:`VoiceEngine` over an :class:`OpenAIProvider` talking to the fake server.

A :class:`SessionPlan` (pure data, derived from the seed) says how much audio the session
streams, in which turns, with manual commits or server VAD, where barge-ins happen and
which fault the fake server injects. :func:`run_session` plays the plan as fast as the
stack accepts audio and returns a :class:`SessionResult`. Every byte counted was really
resampled/chunked by the engine, base64-encoded by the provider, sent over the loopback
socket and decoded (and VAD-scanned) by the fake server.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from benchmarks.soak_server import ServerProcess
from benchmarks.voiced_tone import voiced_tone
from voiceengine.engine import VoiceEngine, VoiceEngineConfig
from voiceengine.exceptions import LimitExceeded
from voiceengine.providers.openai import OpenAIProvider
from voiceengine.providers.openai.config import OpenAIConfig
from voiceengine.providers.types import ConnectionChange, ConnectionState, EventType, FunctionCall, ProviderEvent

__all__ = ["SessionPlan", "SessionResult", "plan_sessions", "run_session", "RATE", "FRAME_MS", "TOOLS",
           "provider_takes_clock"]

RATE = 24000
BYTES_PER_MS = RATE * 2 // 1000
FRAME_MS = 100  # one engine frame = one input_audio_buffer.append (100 ms is a common app choice)
FRAME_BYTES = FRAME_MS * BYTES_PER_MS
BACKLOG_PROBE_MS = 1000  # audio sent into an outage before pausing (exercises the backlog replay)
# Audio allowed in the provider's outbound queue before the soak waits for the socket. A
# real-time source never gets further ahead than this; without it every session would sit
# at the queue's bound (max_queue_messages x 100 ms frames), which is bounded but says
# nothing about leaks.
QUEUE_WATERMARK_BYTES = 10 * FRAME_BYTES

TOOLS = ({"type": "function", "name": "get_weather", "description": "Weather for a city.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},)


VOICED = voiced_tone(RATE, RATE)  # one second
SILENCE = bytes(2 * RATE)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionPlan:
    """What one session does. ``turns`` = (speech ms, trailing silence ms), multiples of FRAME_MS."""

    index: int
    manual: bool  # turn_detection None: the soak commits each turn; else server VAD
    turns: tuple[tuple[int, int], ...]
    barge_in_turns: frozenset[int] = frozenset()  # manual mode: interrupt() on the reply's first audio
    fault: str | None = None  # "close_1006" | "session_expired"
    fault_turn: int = 0
    fault_mid_response: bool = False

    @property
    def audio_ms(self) -> int:
        return sum(s + q for s, q in self.turns)


def _split_turns(total_ms: int, rng: random.Random) -> tuple[tuple[int, int], ...]:
    turns: list[tuple[int, int]] = []
    left = total_ms
    while left > 0:
        speech = min(left, rng.randrange(6, 41) * FRAME_MS)  # 0.6..4 s
        left -= speech
        silence = min(left, rng.randrange(6, 16) * FRAME_MS)  # 0.6..1.5 s (VAD needs 200 ms)
        left -= silence
        turns.append((speech, silence))
    return tuple(turns)


def plan_sessions(*, sessions: int, audio_hours: float, seed: int, fault_every: int = 10,
                  manual_share: float = 0.5, barge_in_share: float = 0.15) -> list[SessionPlan]:
    """Deterministic plans whose audio adds up to ``audio_hours`` exactly (to the frame).

    Lengths vary (0.25x..1.75x the mean); every ``fault_every``-th session gets a fault,
    alternating a 1006 drop and a ``session_expired``, half of them mid-response.
    """
    rng = random.Random(seed)
    total_frames = round(audio_hours * 3600 * 1000 / FRAME_MS)
    weights = [rng.uniform(0.25, 1.75) for _ in range(sessions)]
    scale = total_frames / sum(weights)
    frames = [max(1, int(w * scale)) for w in weights]
    for i in range(total_frames - sum(frames)):  # hand out the rounding remainder
        frames[i % sessions] += 1
    assert sum(frames) == total_frames
    plans = []
    for i, n in enumerate(frames):
        srng = random.Random(f"{seed}:{i}")
        turns = _split_turns(n * FRAME_MS, srng)
        manual = srng.random() < manual_share
        barge = frozenset(t for t in range(len(turns)) if manual and srng.random() < barge_in_share)
        fault = None
        if fault_every and i % fault_every == fault_every - 1:
            fault = "close_1006" if (i // fault_every) % 2 == 0 else "session_expired"
        plans.append(SessionPlan(index=i, manual=manual, turns=turns, barge_in_turns=barge, fault=fault,
                                 fault_turn=srng.randrange(len(turns)), fault_mid_response=srng.random() < 0.5))
    return plans


@dataclass(slots=True, kw_only=True)
class SessionResult:
    """What one session did and whether it ended sane."""

    index: int
    ok: bool = False
    failure: str | None = None
    audio_bytes: int = 0  # handed to engine.send_audio / counted captured
    server_decoded_bytes: int = 0
    server_ignored_bytes: int = 0  # reached the server after it began closing: lost with the connection
    accounting: dict[str, int] = field(default_factory=dict)
    balanced: bool = False
    ledger_active: bool = False
    responses: int = 0
    responses_failed: int = 0
    interrupts: int = 0
    function_calls: int = 0
    phases: Counter[str] = field(default_factory=Counter)
    planned_restores: int = 0
    error_codes: Counter[str] = field(default_factory=Counter)
    limit_retries: int = 0
    flow_waits: int = 0
    faults_injected: int = 0
    epochs_seen: int = 0


def provider_takes_clock() -> bool:
    """Whether ``OpenAIProvider`` accepts ``clock=`` (virtual long timers) in this tree."""
    return "clock" in inspect.signature(OpenAIProvider.__init__).parameters


def _zero_delays(_config: OpenAIConfig) -> Any:
    while True:
        yield 0.0


class _Session:
    """Runtime state of one session (event counters, waits)."""

    def __init__(self, plan: SessionPlan, result: SessionResult, provider: OpenAIProvider) -> None:
        self.plan = plan
        self.r = result
        self.provider = provider
        self.midpoint = False
        self.audio_seen = asyncio.Event()
        self.connected = asyncio.Event()
        self.connected.set()
        self.started = 0
        self.done = 0
        self.last_event = 0.0
        self.session_ids: set[str] = set()  # every server session this client had (decoded-audio figure)
        self.session_updates = 0

    def note_session(self) -> None:
        if self.provider.session_id:
            self.session_ids.add(self.provider.session_id)

    def on_event(self, ev: ProviderEvent) -> None:
        self.last_event = asyncio.get_running_loop().time()
        t = ev.type
        if t is EventType.AUDIO_DELTA:
            self.audio_seen.set()
        elif t is EventType.SESSION_UPDATED:
            self.session_updates += 1
        elif t is EventType.RESPONSE_STARTED:
            self.started += 1
        elif t is EventType.RESPONSE_DONE:
            self.audio_seen.set()  # a reply with no audio (cancelled, tool call) ends the wait too
            self.done += 1
            self.r.responses += 1
            status = getattr(ev.data, "status", None)
            if status == "failed":
                self.r.responses_failed += 1
        elif t is EventType.INTERRUPTED:
            self.r.interrupts += 1
        elif t is EventType.ERROR and ev.error is not None:
            self.r.error_codes[ev.error.code or "?"] += 1
        elif t is EventType.CONNECTION_STATE and isinstance(ev.data, ConnectionChange):
            change = ev.data
            self.r.phases[change.phase] += 1
            if change.phase == "restored" and change.planned:
                self.r.planned_restores += 1
            if change.state is ConnectionState.CONNECTED:
                self.connected.set()
                self.note_session()
            elif change.phase == "reconnecting":
                self.connected.clear()
                self.started = self.done  # a response cut by the loss never ends on the wire
            elif change.phase in ("gave_up", "failed", "closed"):
                self.connected.set()  # never wait on a connection that will not come back


async def run_session(plan: SessionPlan, *, server: ServerProcess, clock: Any | None,
                      track: Callable[[_Session, bool], None] = lambda s, live: None,
                      on_midpoint: Callable[[_Session], None] = lambda s: None,
                      idle_s: float = 0.05, drain_timeout_s: float = 20.0, speed: float = math.inf) -> SessionResult:
    """Play ``plan`` against ``server`` at ``speed`` x real time (``inf``: as fast as the
    stack accepts); never raises (failures land in the result)."""
    result = SessionResult(index=plan.index)
    kwargs: dict[str, Any] = {}
    if clock is not None:
        kwargs["clock"] = clock  # virtual backoff/recycle timers
    else:
        # No virtual clock in this provider: zero-delay reconnects, and a connection that got
        # ready counts as stable (its real uptime is milliseconds, its virtual one an hour).
        kwargs["reconnect_delays"] = _zero_delays
        kwargs["stable_after_s"] = 0.0
    config = OpenAIConfig(api_key="sk-soak-not-a-key", url=server.url,
                          turn_detection=None if plan.manual else "server_vad",
                          tools=TOOLS, max_reconnect_attempts=5, ping_interval_s=None)
    provider = OpenAIProvider(config, **kwargs)
    engine = VoiceEngine(provider, VoiceEngineConfig(
        playback_speed=None, frame_ms=FRAME_MS, playback_buffer_ms=5000, prebuffer_ms=0, end_silence_ms=0,
        input_sample_rate=RATE))

    def on_function_call(call: FunctionCall) -> dict[str, Any]:
        result.function_calls += 1
        return {"temperature_c": 21, "city": "Paris"}

    state = _Session(plan, result, provider)
    engine.on_function_call = on_function_call
    engine.events.subscribe(state.on_event)
    track(state, True)
    try:
        await engine.connect()
        state.note_session()
        await _stream(state, engine, provider, server, on_midpoint, _Pacer(speed))
        await _drain(state, engine, idle_s, drain_timeout_s)
        result.ok = True
    except Exception as exc:  # the soak reports, it does not stop at the first failure
        result.failure = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            await engine.close()
        except Exception as exc:
            result.ok = False
            result.failure = result.failure or f"close: {type(exc).__name__}: {exc}"
        track(state, False)
    acc = provider.audio_accounting
    result.accounting = {k: getattr(acc, k) for k in ("captured_bytes", "sent_bytes", "replayed_bytes",
                                                        "dropped_bytes", "pending_bytes")}
    result.ledger_active = acc.captured_bytes > 0
    result.balanced = acc.balanced and (not result.ledger_active or acc.captured_bytes == result.audio_bytes)
    try:
        result.server_decoded_bytes, result.server_ignored_bytes = await server.audio_received(
            sorted(state.session_ids))
    except (RuntimeError, ConnectionError) as exc:
        result.ok = False
        result.failure = result.failure or f"server figures: {exc}"
    bad = {p: n for p, n in result.phases.items() if p in ("gave_up", "failed")}
    if result.ok and bad:
        result.ok, result.failure = False, f"connection ended: {bad}"
    return result


async def _send_frame(state: _Session, engine: VoiceEngine, frame: memoryview) -> None:
    provider = state.provider
    while state.connected.is_set() and provider.audio_accounting.pending_bytes > QUEUE_WATERMARK_BYTES:
        state.r.flow_waits += 1
        await asyncio.sleep(0.002)
    while True:
        try:
            await engine.send_audio(frame)
            return
        except LimitExceeded:
            # the outbound queue is full: the loopback socket is the bottleneck, wait for it
            state.r.limit_retries += 1
            await asyncio.sleep(0.002)


class _Pacer:
    """Frames at ``speed`` x real time, like a microphone on fast-forward.

    Unpaced, a client outruns the server process by megabytes of socket buffer, and a
    reconnect or an expiry then throws away seconds of audio no real-time source would
    have been ahead by. A pacer that fell behind (an outage, a long wait for a reply)
    starts again from now instead of bursting to catch up.
    """

    def __init__(self, speed: float) -> None:
        self.interval_s = FRAME_MS / 1000.0 / speed if speed > 0 and math.isfinite(speed) else 0.0
        self._next = 0.0

    async def frame_sent(self) -> None:
        if not self.interval_s:
            await asyncio.sleep(0)  # let the writer run: as fast as accepted
            return
        now = asyncio.get_running_loop().time()
        self._next = max(self._next + self.interval_s, now - self.interval_s)
        await asyncio.sleep(max(0.0, self._next - now))


async def _stream(state: _Session, engine: VoiceEngine, provider: OpenAIProvider, server: ServerProcess,
                  on_midpoint: Callable[[_Session], None], pacer: _Pacer) -> None:
    plan = state.plan
    half = plan.audio_ms * BYTES_PER_MS // 2
    outage_ms = 0
    for turn, (speech_ms, silence_ms) in enumerate(plan.turns):
        if plan.fault is not None and turn == plan.fault_turn and not plan.fault_mid_response:
            await _inject(state, server, provider)
        for source, ms in ((VOICED, speech_ms), (SILENCE, silence_ms)):
            view = memoryview(source)
            for off_ms in range(0, ms, FRAME_MS):
                if not state.connected.is_set():
                    if outage_ms >= BACKLOG_PROBE_MS:
                        await state.connected.wait()
                        outage_ms = 0
                        state.note_session()
                    else:
                        outage_ms += FRAME_MS
                else:
                    outage_ms = 0
                start = (off_ms % 1000) * BYTES_PER_MS
                await _send_frame(state, engine, view[start:start + FRAME_BYTES])
                state.r.audio_bytes += FRAME_BYTES
                if not state.midpoint and state.r.audio_bytes >= half:
                    state.midpoint = True
                    on_midpoint(state)
                await pacer.frame_sent()
        if plan.manual:
            if state.r.audio_bytes and speech_ms:
                state.audio_seen.clear()
                replies_before = state.done
                await _commit_turn(state, engine)
                if turn in plan.barge_in_turns or (plan.fault_mid_response and turn == plan.fault_turn):
                    await _first_audio(state)
                    if turn == plan.fault_turn and plan.fault_mid_response and plan.fault is not None:
                        await _inject(state, server, provider)
                    elif state.connected.is_set():
                        await engine.interrupt()
                else:
                    await _reply_end(state, replies_before)
        elif plan.fault_mid_response and turn == plan.fault_turn and plan.fault is not None:
            state.audio_seen.clear()
            await _first_audio(state)
            await _inject(state, server, provider)


async def _commit_turn(state: _Session, engine: VoiceEngine, wait_s: float = 5.0) -> None:
    """Commit the turn and ask for a reply. Audio streams far faster than real time, so
    turns can outrun replies: when the provider's queue of reply requests is full
    (``LimitExceeded``; the commit itself went through), wait for a reply to end and ask
    again, as an app honouring that limit would."""
    try:
        await engine.commit()
        return
    except LimitExceeded:
        state.r.limit_retries += 1
    while True:
        await _reply_end(state, state.done, wait_s)
        try:
            await engine.create_response()
            return
        except LimitExceeded:
            state.r.limit_retries += 1


async def _reply_end(state: _Session, replies_before: int, timeout_s: float = 5.0) -> None:
    """Let the assistant answer before the next turn, as a user does: audio streams many
    times faster than real time, and without this the turns would outrun the replies."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while state.done <= replies_before and loop.time() < deadline:
        await asyncio.sleep(0.002)


async def _first_audio(state: _Session, timeout_s: float = 1.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await state.audio_seen.wait()
    except TimeoutError:
        pass  # a reply can legitimately carry no audio (cancelled first): go on


async def _inject(state: _Session, server: ServerProcess, provider: OpenAIProvider) -> None:
    """Fire the plan's fault at this session's live connection, now (never left armed)."""
    sid = provider.session_id
    if sid and state.plan.fault is not None and await server.inject(sid, state.plan.fault):
        state.r.faults_injected += 1


async def _drain(state: _Session, engine: VoiceEngine, idle_s: float, timeout_s: float) -> None:
    """Wait for the server to have read everything sent, then for the conversation to go
    quiet: connected, no response running, no event for ``idle_s``.

    The audio streams faster than the server (another process) decodes it, so megabytes
    can sit in the socket buffers; closing then would throw them away. A ``session.update``
    is answered only after every message before it was handled: a barrier on the wire.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    provider = engine.provider
    while True:
        if loop.time() > deadline:
            raise TimeoutError(f"session {state.plan.index}: the server did not catch up in {timeout_s} s")
        await state.connected.wait()
        updates = state.session_updates
        await provider.update_session()
        while state.session_updates == updates and state.connected.is_set() and loop.time() < deadline:
            await asyncio.sleep(0.002)
        if state.session_updates > updates:
            break
    while True:
        if loop.time() > deadline:
            raise TimeoutError(f"session {state.plan.index} did not go quiet in {timeout_s} s")
        await asyncio.sleep(idle_s / 2)
        busy = (not state.connected.is_set() or getattr(provider, "response_active", False)
                or state.started > state.done)
        if not busy and loop.time() - state.last_event >= idle_s:
            return

