"""Shared harness of the reliability battery (fault matrix, random episodes). Not a test module.

A :class:`Harness` is one OpenAIProvider against one FakeRealtimeServer on 127.0.0.1, with a
ConversationState fed by the provider's events and used as its replay source (what the
engine does), zero backoff and small timeouts, and a recorder that stamps every event with
the loop clock.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

from voiceengine.providers import ConnectionState, EventType, ProviderEvent
from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider
from voiceengine.state import ConversationState
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig, ResponseContext

KEY = "sk-test-reliability-0123456789"
#: Client limits small enough that faults are detected in well under a second.
CLIENT_LIMITS: dict[str, Any] = dict(
    connect_timeout_s=1.0, close_timeout_s=0.3, open_timeout_s=0.4,
    ping_interval_s=0.2, ping_timeout_s=0.2, max_size_bytes=256 * 1024, max_reconnect_attempts=3,
)
SHORT_REPLY = "Done."
LONG_REPLY = "one two three four five six seven eight nine ten eleven twelve"
CHECK_TEXT = "check"
TERMINAL_PHASES = ("failed", "gave_up", "closed")


def reply_script(ctx: ResponseContext) -> str:
    """The follow-up check gets a short, recognisable reply; everything else a longer one."""
    if ctx.last_user_text and CHECK_TEXT in ctx.last_user_text:
        return f"Heard {CHECK_TEXT}."
    return LONG_REPLY


def server_config(**over: Any) -> FakeServerConfig:
    opts: dict[str, Any] = dict(turn_detection=None, speed=math.inf, responses=reply_script, chunk_ms=100,
                                close_timeout_s=0.3)
    opts.update(over)
    return FakeServerConfig(**opts)


def tone(ms: int, hz: float = 440.0) -> bytes:
    """PCM16 24 kHz mono sine, loud enough to be speech for the fake VAD."""
    n = 24 * ms
    return struct.pack(f"<{n}h", *(int(12000 * math.sin(2 * math.pi * hz * i / 24000)) for i in range(n)))


def no_backoff(config: OpenAIConfig) -> itertools.repeat[float]:
    return itertools.repeat(0.0)


@dataclass(slots=True)
class Outage:
    """What the client's ConversationState held when a connection was lost."""

    at: float
    committed: list[tuple[str, str | None]]  # (id, role) of completed items that a replay must carry
    restored_at: float | None = None
    session_count: int = 0  # server sessions that existed at the loss
    replay_count: int = 0  # items the replay source gave at the loss


@dataclass(slots=True)
class Stamped:
    at: float
    event: ProviderEvent


@dataclass(slots=True)
class Harness:
    server: FakeRealtimeServer
    provider: OpenAIProvider
    state: ConversationState = field(default_factory=ConversationState)
    events: list[Stamped] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)
    apply_errors: list[str] = field(default_factory=list)
    audio_accepted: int = 0  # bytes send_audio() accepted (did not raise)
    closed_mark: int | None = None  # len(events) when the app called disconnect()
    unbalanced: list[str] = field(default_factory=list)  # accounting seen unbalanced at some moment
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def create(cls, server: FakeRealtimeServer, **config: Any) -> "Harness":
        opts: dict[str, Any] = dict(api_key=KEY, url=server.url, turn_detection=None, **CLIENT_LIMITS)
        opts.update(config)
        provider = OpenAIProvider(OpenAIConfig(**opts), reconnect_delays=no_backoff, stable_after_s=0.0)
        h = cls(server=server, provider=provider)
        provider.on_event("*", h._on_event)
        provider.set_replay_source(lambda: h.state.snapshot().items)
        return h

    # ------------------------------------------------------------ recording
    def _on_event(self, event: ProviderEvent) -> None:
        now = asyncio.get_running_loop().time()
        if event.type is EventType.CONNECTION_STATE:
            phase = event.data.phase
            if phase == "reconnecting" and (not self.outages or self.outages[-1].restored_at is not None):
                snap = self.state.snapshot()
                skipped = set(snap.skipped_ids)
                committed = [(it.id, it.role) for it in self.state.items
                             if it.status == "completed" and it.id not in skipped]
                self.outages.append(Outage(at=now, committed=committed, session_count=len(self.server.sessions),
                                           replay_count=len(snap.items)))
            elif phase == "restored" and self.outages and self.outages[-1].restored_at is None:
                self.outages[-1].restored_at = now
        try:
            self.state.apply(event)
        except Exception as exc:  # ConversationState must tolerate anything: record, assert later
            self.apply_errors.append(f"{event.type.name}: {type(exc).__name__}: {exc}")
        self.events.append(Stamped(now, event))
        self._check_balance(event.type.name)
        self._changed.set()

    def _check_balance(self, where: str) -> None:
        acc = self.provider.audio_accounting
        if not acc.balanced and len(self.unbalanced) < 5:
            self.unbalanced.append(f"unbalanced at {where}: {acc}")

    def mark(self) -> int:
        return len(self.events)

    def of(self, type_: EventType, since: int = 0) -> list[ProviderEvent]:
        return [s.event for s in self.events[since:] if s.event.type is type_]

    def phases(self, since: int = 0) -> list[str]:
        return [e.data.phase for e in self.of(EventType.CONNECTION_STATE, since)]

    def errors(self, since: int = 0) -> list[ProviderEvent]:
        return self.of(EventType.ERROR, since)

    async def wait(self, predicate: Callable[[ProviderEvent], bool], *, since: int = 0,
                   timeout: float = 5.0) -> Stamped:
        async with asyncio.timeout(timeout):
            while True:
                for s in self.events[since:]:
                    if predicate(s.event):
                        return s
                since = len(self.events)
                self._changed.clear()
                await self._changed.wait()

    async def wait_phase(self, *phases: str, since: int = 0, timeout: float = 5.0) -> Stamped:
        return await self.wait(lambda e: e.type is EventType.CONNECTION_STATE and e.data.phase in phases,
                               since=since, timeout=timeout)

    # ------------------------------------------------------------ actions
    async def send_audio(self, pcm: bytes) -> bool:
        """send_audio that records what was accepted; False when the provider refused it."""
        try:
            await self.provider.send_audio(pcm)
        except Exception:
            self._check_balance("send_audio (refused)")
            return False
        self.audio_accepted += len(pcm)
        self._check_balance("send_audio")
        return True

    async def check_turn(self, *, timeout: float = 5.0) -> ProviderEvent:
        """A text turn that must be answered: proves the (restored) session works.

        Returns once the reply has ended (its RESPONSE_DONE), not at its transcript: the
        server sends ``response.done`` after the transcript, and on a loaded machine it can
        arrive after the caller has moved on to ``disconnect()``, which ends no reply.
        """
        mark = self.mark()
        await self.provider.send_text(CHECK_TEXT)
        hit = await self.wait(lambda e: e.type is EventType.TRANSCRIPT_DONE and CHECK_TEXT in str(e.data),
                              since=mark, timeout=timeout)
        reply = hit.event.response_id
        await self.wait(lambda e: e.type is EventType.RESPONSE_DONE and e.response_id == reply,
                        since=mark, timeout=timeout)
        return hit.event

    async def disconnect(self) -> None:
        """The app's disconnect(); events from here on are the close, not a fault."""
        if self.closed_mark is None:
            self.closed_mark = self.mark()
        await self.provider.disconnect()

    def phases_before_close(self) -> list[str]:
        """CONNECTION_STATE phases up to the app's disconnect()."""
        events = self.events if self.closed_mark is None else self.events[: self.closed_mark]
        return [s.event.data.phase for s in events if s.event.type is EventType.CONNECTION_STATE]

    @property
    def connection_lost(self) -> bool:
        """True when some connection ended before the app closed it (a fault did it)."""
        return any(ph in ("reconnecting",) + TERMINAL_PHASES for ph in self.phases_before_close())

    @property
    def terminal(self) -> bool:
        return self.provider.state in (ConnectionState.CLOSED, ConnectionState.ERROR, ConnectionState.DISCONNECTED)


# ---------------------------------------------------------------- server-side views


def server_item_ids(session: Any) -> dict[str, str | None]:
    """id -> role of the items in a fake session's conversation."""
    return {it["id"]: it.get("role") for it in session.items}


def lost_items(h: Harness) -> list[str]:
    """Committed client items missing (or with another role) from the session that restored each outage."""
    problems: list[str] = []
    for n, outage in enumerate(h.outages):
        if outage.restored_at is None:
            continue
        # the session that carried the restore: the first one after the loss that got the replay
        candidates = h.server.sessions[outage.session_count:]
        if not candidates:
            problems.append(f"outage {n}: no new server session")
            continue
        best = max(candidates, key=lambda s: len(set(server_item_ids(s)) & {i for i, _ in outage.committed}))
        have = server_item_ids(best)
        for item_id, role in outage.committed:
            if item_id not in have:
                problems.append(f"outage {n}: item {item_id} ({role}) not replayed")
            elif have[item_id] != role:
                problems.append(f"outage {n}: item {item_id} role {have[item_id]} != {role}")
    return problems


def duplicate_replies(h: Harness, requests_made: int) -> list[str]:
    """Server view: response.create never re-sent, never more than the app asked for."""
    problems: list[str] = []
    creates = [ev for s in h.server.sessions for ev in s.received if ev.get("type") == "response.create"]
    creates += [ev for s in h.server.sessions for ev in s.ignored if ev.get("type") == "response.create"]
    ids = [ev.get("event_id") for ev in creates]
    if len(ids) != len(set(ids)):
        problems.append(f"a response.create event_id arrived twice: {sorted(ids)}")
    if len(creates) > requests_made:
        problems.append(f"server got {len(creates)} response.create for {requests_made} requests")
    for s in h.server.sessions:
        seen = [it["id"] for it in s.items]
        if len(seen) != len(set(seen)):
            problems.append(f"session {s.index}: duplicate item ids")
        dup_errors = [e for e in s.errors if "already exists" in str(e.get("error", {}).get("message", ""))]
        if dup_errors:
            problems.append(f"session {s.index}: {len(dup_errors)} item(s) created twice")
    return problems


def accounting_problems(h: Harness, *, quiescent: bool) -> list[str]:
    """Client ledger identities, and the cross-check against what the server got."""
    acc = h.provider.audio_accounting
    out: list[str] = list(h.unbalanced)
    if not acc.balanced:
        out.append(f"unbalanced: {acc}")
    if acc.captured_bytes != h.audio_accepted:
        out.append(f"captured {acc.captured_bytes} != accepted by send_audio {h.audio_accepted}")
    if quiescent:
        if acc.pending_bytes:
            out.append(f"pending {acc.pending_bytes} after quiescence")
        if acc.captured_bytes != acc.sent_bytes + acc.replayed_bytes + acc.dropped_bytes:
            out.append(f"captured != sent + replayed + dropped: {acc}")
    # The server can only have what was written, and gets all of it unless a loss ate it in flight.
    got = h.server.input_audio_bytes + h.server.ignored_audio_bytes
    if got > acc.sent_bytes + acc.replayed_bytes:
        out.append(f"server got {got} bytes > sent+replayed {acc.sent_bytes + acc.replayed_bytes}")
    if quiescent and not h.connection_lost and got != acc.sent_bytes + acc.replayed_bytes:
        out.append(f"no connection lost but server got {got} != sent+replayed {acc.sent_bytes + acc.replayed_bytes}")
    return out


def state_problems(h: Harness) -> list[str]:
    """The client's ConversationState has no duplicate item and agrees with the live server session."""
    ids = [it.id for it in h.state.items]
    out = [f"duplicate items in ConversationState: {ids}"] if len(ids) != len(set(ids)) else []
    if h.terminal or not h.server.sessions:
        return out
    live = [s for s in h.server.sessions if s.id == h.provider.session_id]
    server_ids = set(server_item_ids(live[0] if live else h.server.sessions[-1]))
    skipped = set(h.state.snapshot().skipped_ids)
    missing_on_server = [i for i in ids if i not in server_ids and i not in skipped]
    unknown_to_client = [i for i in server_ids if i not in set(ids)]
    if missing_on_server:
        def describe(item_id: str) -> str:
            it = h.state.get(item_id)
            where = [s.index for s in h.server.sessions if item_id in server_item_ids(s)]
            return (f"{item_id} ({it.type}/{it.role}/{it.status}, text={it.text!r}, transcript={it.transcript!r}, "
                    f"in server sessions {where}, phases {h.phases()})")
        out.append(f"client items not in the server session: {[describe(i) for i in missing_on_server]}")
    if unknown_to_client:
        out.append(f"server items the client does not know: {unknown_to_client}")
    return out


async def eventually(check: Callable[[], list[str]], timeout: float = 1.5) -> list[str]:
    """Poll ``check`` until it finds no problem or ``timeout`` passes; the last problems.

    The client and the server are two loops' worth of tasks: a replay may still be held by
    a stalled server, a reconnect may still be under way. Views are compared once settled.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        problems = check()
        if not problems or asyncio.get_running_loop().time() >= deadline:
            return problems
        await asyncio.sleep(0.02)
