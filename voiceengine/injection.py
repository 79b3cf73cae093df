"""Context injection: put information into a live conversation at the right moment.

A :class:`ContextInjector` holds a priority queue of :class:`ContextItem`\\ s. Each item says
*when* it goes in (:class:`InjectionTiming`) and *how* it goes on the wire
(:class:`InjectionMode`; the modes' wire actions and the trust rule are
described in :mod:`voiceengine.injection_types`).

Safety rules the injector keeps:

* it never injects while a response is active, except IMMEDIATE items (the app asked for
  "now"; response requests are still queued by the provider's response gate);
* every ``response.create`` goes through :meth:`BaseProvider.create_response`, which never
  sends one while another is active;
* expired items (``ttl_s``) are dropped, counted in :attr:`ContextInjector.stats` and
  announced with a CONTEXT_EXPIRED event; each injection emits CONTEXT_INJECTED.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from typing import Any, Callable, Iterable

from .exceptions import ConfigurationError, InvalidState, LimitExceeded
from .injection_types import (  # Condition and Trigger: type aliases, importable from here as before
    Condition, ContextItem, InjectionContext, InjectionMode, InjectionRecord, InjectionTiming, Trigger, _Entry,
)
from .providers.base import BaseProvider
from .providers.types import ErrorInfo, EventType, ProviderCapabilities, ProviderEvent

__all__ = [
    "InjectionTiming",
    "InjectionMode",
    "ContextItem",
    "InjectionContext",
    "InjectionRecord",
    "ContextInjector",
]

log = logging.getLogger("voiceengine.injection")

_WORD = re.compile(r"\w+", re.UNICODE)
_AUDIO_DELTA = EventType.AUDIO_DELTA
_ACTIVITY_EVENTS = frozenset({EventType.SPEECH_STARTED, EventType.SPEECH_STOPPED, EventType.RESPONSE_STARTED,
                              EventType.RESPONSE_DONE, EventType.PLAYBACK_STARTED, EventType.PLAYBACK_STOPPED,
                              EventType.INPUT_COMMITTED})


class ContextInjector:
    """Delivers :class:`ContextItem`\\ s to a provider at the right moment.

    ``provider`` is a :class:`BaseProvider` or a zero-argument callable returning the
    current one (the engine passes a callable so provider switches are followed).
    ``emit`` receives CONTEXT_INJECTED / CONTEXT_EXPIRED events. ``base_instructions``
    defaults to the provider config's ``instructions``. ``auto_response``: whether the
    service creates responses itself at the end of a user turn (server VAD with
    ``create_response``); when false the engine calls :meth:`end_of_turn` with
    ``respond=True`` and the injector sends the turn's single ``response.create``.

    Feed it every provider/engine event with :meth:`observe`. Timed deliveries
    (SCHEDULED, NEXT_PAUSE, ttl expiry, safe-point waits) need the background task:
    ``await injector.start()`` ... ``await injector.aclose()`` (the engine does this).
    """

    def __init__(
        self,
        provider: BaseProvider | Callable[[], BaseProvider],
        *,
        emit: Callable[[ProviderEvent], None] | None = None,
        base_instructions: str | None = None,
        auto_response: bool = True,
        max_pending: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider_ref = provider
        self._emit_cb = emit
        self._base_instructions = base_instructions
        self.auto_response = auto_response
        self.max_pending = max_pending
        self._clock = clock
        self._entries: list[_Entry] = []
        self._seq = itertools.count()
        self._globals: list[str] = []
        self._per_response: list[tuple[_Entry, str]] = []
        self._lock = asyncio.Lock()
        self._deferred_respond = False
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # conversation view, from observed events
        self._response_active = False
        self._user_speaking = False
        self._playing = False
        self._turns = 0
        self._activity = 0
        self._last_activity_at = clock()
        self._last_user_text: str | None = None
        self._last_assistant_text: str | None = None
        self.stats: dict[str, int] = {"added": 0, "injected": 0, "expired": 0, "removed": 0, "failed": 0}
        self.history: list[InjectionRecord] = []

    # ----------------------------------------------------------------- public API
    @property
    def provider(self) -> BaseProvider:
        ref = self._provider_ref
        # duck-typed: anything with create_response is a provider, else a getter
        return ref if hasattr(ref, "create_response") else ref()  # type: ignore[return-value]

    @property
    def base_instructions(self) -> str:
        if self._base_instructions is not None:
            return self._base_instructions
        return getattr(self.provider.config, "instructions", None) or ""

    @base_instructions.setter
    def base_instructions(self, value: str | None) -> None:
        self._base_instructions = value

    @property
    def pending(self) -> tuple[ContextItem, ...]:
        """Items not yet injected (or re-armable), in delivery order."""
        return tuple(e.item for e in sorted(self._entries, key=_Entry.sort_key))

    @property
    def global_context(self) -> tuple[str, ...]:
        """The GLOBAL contexts currently appended to the session instructions."""
        return tuple(self._globals)

    def add(self, item: ContextItem) -> ContextItem:
        """Queue ``item``; returns it. Raises LimitExceeded past ``max_pending``."""
        if self._closed:
            raise InvalidState("the context injector is closed")
        if not isinstance(item, ContextItem):
            raise TypeError("add() takes a ContextItem (use inject() for keyword arguments)")
        if len(self._entries) >= self.max_pending:
            raise LimitExceeded(f"too many pending context items (max_pending={self.max_pending})",
                                limit=self.max_pending, size=len(self._entries) + 1)
        if any(e.item.id == item.id for e in self._entries):
            raise ConfigurationError(f"context item id {item.id!r} is already queued")
        entry = _Entry(item, next(self._seq), self._clock(), time.time())
        self._entries.append(entry)
        self.stats["added"] += 1
        log.debug("context %s queued (%s, %s, priority %d)", item.id, item.timing.value, item.mode.value,
                  item.priority)
        self._poke()
        return item

    def inject(self, content: str, **fields: Any) -> ContextItem:
        """Build a :class:`ContextItem` from ``content`` and keyword fields and queue it."""
        return self.add(ContextItem(content=content, **fields))

    def remove(self, context_id: str) -> bool:
        """Drop a queued item; returns whether it was queued."""
        for entry in self._entries:
            if entry.item.id == context_id:
                self._entries.remove(entry)
                self._per_response = [(e, t) for e, t in self._per_response if e is not entry]
                self.stats["removed"] += 1
                return True
        return False

    def clear_global(self) -> None:
        """Forget GLOBAL contexts (they stop being appended at the next session update)."""
        self._globals.clear()

    def trigger(self, context_id: str | None = None) -> int:
        """Arm MANUAL items (one by id, or all); they go in at the next safe point."""
        n = 0
        for entry in self._entries:
            if entry.item.timing is InjectionTiming.MANUAL and context_id in (None, entry.item.id):
                entry.armed = True
                n += 1
        if context_id is not None and n == 0:
            raise KeyError(context_id)
        self._poke()
        return n

    async def start(self) -> None:
        """Start the background task that delivers timed and waiting items."""
        if self._closed:
            raise InvalidState("the context injector is closed")
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="voiceengine-context-injector")

    async def aclose(self) -> None:
        """Stop the background task. Queued items stay in :attr:`pending` (not injected)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def flush(self) -> int:
        """Deliver everything that is due now; returns how many injections were made."""
        return await self._pump(None)

    def observe(self, event: ProviderEvent) -> None:
        """Update the conversation view from an event and wake the delivery task."""
        etype = event.type
        if etype is _AUDIO_DELTA and not self._entries:
            return  # (per 20 ms delta) changes nothing below unless an item's trigger may match it
        if etype is EventType.RESPONSE_STARTED:
            self._response_active = True
        elif etype is EventType.RESPONSE_DONE:
            self._response_active = False
        elif etype is EventType.SPEECH_STARTED:
            self._user_speaking = True
        elif etype is EventType.SPEECH_STOPPED:
            self._user_speaking = False
        elif etype is EventType.PLAYBACK_STARTED:
            self._playing = True
        elif etype is EventType.PLAYBACK_STOPPED:
            self._playing = False
        elif etype is EventType.INPUT_TRANSCRIPT and isinstance(event.data, str):
            self._last_user_text = event.data
        elif etype in (EventType.TRANSCRIPT_DONE, EventType.TEXT_DONE) and isinstance(event.data, str):
            self._last_assistant_text = event.data
        elif etype is EventType.CONNECTION_STATE and getattr(event.data, "phase", None) != "handover":
            self._response_active = False  # the connection went (a handover's drain still delivers)
        if etype in _ACTIVITY_EVENTS:
            self._activity += 1
            self._last_activity_at = self._clock()
        if etype is EventType.INPUT_COMMITTED:
            self._turns += 1
            for entry in self._entries:
                if entry.item.timing is InjectionTiming.NEXT_TURN:
                    entry.pending_turn = True
        for entry in self._entries:
            if entry.item.timing is InjectionTiming.ON_TRIGGER and not entry.armed and self._matches(entry, event):
                entry.armed = True
        if self._entries:
            self._poke()

    async def end_of_turn(self, *, respond: bool = False, **response_options: Any) -> int:
        """The user's turn just ended (audio committed, or a text message added).

        Delivers NEXT_TURN items now, before the reply; with ``respond`` it then sends the
        turn's single ``response.create`` (with any PER_RESPONSE instructions). Returns the
        number of injections made.
        """
        for entry in self._entries:
            if entry.item.timing is InjectionTiming.NEXT_TURN:
                entry.pending_turn = True
        self._deferred_respond = False
        n = await self._pump(None, turn_end=True)
        if respond or self._deferred_respond:
            self._deferred_respond = False
            await self.create_response(**response_options)
        return n

    async def create_response(self, **options: Any) -> None:
        """``provider.create_response`` with armed PER_RESPONSE instructions merged in.

        The instructions sent are the caller's ``instructions`` (or the session's) plus
        each armed PER_RESPONSE context, appended.
        """
        taken, self._per_response = self._per_response, []
        if taken:
            base = options.pop("instructions", None) or self._session_instructions()
            options["instructions"] = _join(base, [text for _, text in taken])
        await self.provider.create_response(**options)
        for entry, _ in taken:
            self._record(entry, "response.instructions", None)

    # ------------------------------------------------------------------ internals
    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _session_instructions(self) -> str:
        return _join(self.base_instructions, self._globals)

    def _response_busy(self) -> bool:
        try:
            active = bool(self.provider.response_active)
        except Exception:  # a provider mid-switch may not answer; fall back on events
            active = False
        return active or self._response_active

    def _context(self, event: ProviderEvent | None) -> InjectionContext:
        return InjectionContext(
            now=self._clock(), response_active=self._response_busy(), user_speaking=self._user_speaking,
            playing=self._playing, turns=self._turns, last_user_transcript=self._last_user_text,
            last_assistant_transcript=self._last_assistant_text, event=event,
        )

    @staticmethod
    def _matches(entry: _Entry, event: ProviderEvent) -> bool:
        item = entry.item
        if item.trigger is not None:
            try:
                if item.trigger(event):
                    return True
            except Exception:
                log.exception("context %s: trigger raised", item.id)
        if item.keywords and event.type in (EventType.INPUT_TRANSCRIPT, EventType.TRANSCRIPT_DONE,
                                            EventType.TEXT_DONE) and isinstance(event.data, str):
            words = {w.lower() for w in _WORD.findall(event.data)}
            return any(all(part in words for part in k.split()) for k in item.keywords)
        return False

    def _due(self, entry: _Entry, now: float, busy: bool, turn_end: bool) -> bool:
        """Whether ``entry``'s timing says it goes in now."""
        timing = entry.item.timing
        if timing is InjectionTiming.IMMEDIATE:
            return True  # the app asked for "now": allowed during a response
        if timing is InjectionTiming.NEXT_TURN:
            # A turn boundary is the moment this timing names. With auto responses the
            # service answers right after the commit, so the commit is the last moment
            # before the reply (its response may already be starting): deliver there.
            return entry.pending_turn and (turn_end or self.auto_response)
        if busy:
            return False
        if timing is InjectionTiming.NEXT_PAUSE:
            quiet = not self._user_speaking and not self._playing
            return (quiet and entry.activity_mark != self._activity
                    and now - self._last_activity_at >= entry.item.pause_ms / 1000.0)
        if timing is InjectionTiming.SCHEDULED:
            return entry.due_at is not None and now >= entry.due_at
        return entry.armed  # ON_TRIGGER, MANUAL

    def _expire(self, now: float) -> None:
        for entry in list(self._entries):
            expires = entry.expires_at
            if expires is not None and now >= expires:
                self._entries.remove(entry)
                self._per_response = [(e, t) for e, t in self._per_response if e is not entry]
                self.stats["expired"] += 1
                log.debug("context %s expired after %d injections", entry.item.id, entry.count)
                self._emit(ProviderEvent(type=EventType.CONTEXT_EXPIRED, data=entry.item.id,
                                         raw={"context_id": entry.item.id, "count": entry.count}))

    async def _pump(self, event: ProviderEvent | None, *, turn_end: bool = False) -> int:
        async with self._lock:  # one delivery at a time keeps the wire in priority order
            now = self._clock()
            self._expire(now)
            made = 0
            for entry in sorted(self._entries, key=_Entry.sort_key):
                if entry not in self._entries or any(e is entry for e, _ in self._per_response):
                    continue
                if not self._due(entry, now, self._response_busy(), turn_end):
                    continue
                missing = _missing_capability(entry.item.mode, self.provider.get_capabilities())
                if missing is not None:
                    self._refuse(entry, missing)
                    continue
                ctx = self._context(event)
                if not all(_safe_call(c, ctx, entry.item.id) for c in entry.item.conditions):
                    continue
                try:
                    await self._deliver(entry, turn_end=turn_end)
                except Exception as exc:  # a failed send must not kill the injector
                    self.stats["failed"] += 1
                    log.warning("context %s: injection failed: %s", entry.item.id, exc)
                    continue
                made += 1
            return made

    async def _deliver(self, entry: _Entry, *, turn_end: bool = False) -> None:
        item = entry.item
        provider = self.provider
        mode = item.mode
        if mode is InjectionMode.PER_RESPONSE:
            # armed now, recorded when the next response.create goes out through create_response()
            self._per_response.append((entry, item.content))
            return
        if mode is InjectionMode.SILENT:
            wire_id = await provider.add_item(item.message_item())
            self._record(entry, "item", wire_id)
        elif mode is InjectionMode.RESPOND:
            wire_id = await provider.add_item(item.message_item())
            self._record(entry, "item+response", wire_id)
            if item.timing is InjectionTiming.NEXT_TURN and self.auto_response and not turn_end:
                return  # the service's automatic reply to this turn is the response
            if turn_end:
                self._deferred_respond = True  # end_of_turn sends the turn's single response.create
                return
            await self.create_response(**item.response_options)
        elif mode is InjectionMode.GLOBAL:
            self._globals.append(item.content)
            await provider.update_session(instructions=self._session_instructions())
            self._record(entry, "session.update", None)
        elif mode is InjectionMode.OUT_OF_BAND:
            options: dict[str, Any] = {"output_modalities": ["text"], "metadata": {"context_id": item.id}}
            options.update(item.response_options)
            options["conversation"] = "none"
            options["input"] = [item.message_item()]
            await provider.create_response(**options)
            self._record(entry, "out_of_band", None)

    def _refuse(self, entry: _Entry, missing: str) -> None:
        """The current provider cannot carry this mode: drop the item and say so (an ERROR
        event and ``stats["failed"]``), never a silent no-op."""
        item = entry.item
        if entry in self._entries:
            self._entries.remove(entry)
        self.stats["failed"] += 1
        message = (f"context {item.id}: {item.mode.name} needs a provider with {missing}, "
                   f"and {self.provider.name} has none; the item was dropped")
        log.warning("%s", message)
        info = ErrorInfo(message=message, code="context_mode_unsupported", type="client_error", remote=False)
        self._emit(ProviderEvent(type=EventType.ERROR, error=info, data=item.id,
                                 raw={"context_id": item.id, "mode": item.mode.value, "missing": missing}))

    def _record(self, entry: _Entry, action: str, wire_id: str | None) -> None:
        item = entry.item
        entry.count += 1
        entry.armed = False
        entry.pending_turn = False
        entry.activity_mark = self._activity
        if item.timing is InjectionTiming.SCHEDULED and item.delay_s is not None:
            entry.due_at = self._clock() + item.delay_s
        else:
            entry.due_at = None
        if entry.count >= item.max_injections and entry in self._entries:
            self._entries.remove(entry)
        record = InjectionRecord(context_id=item.id, mode=item.mode, timing=item.timing, action=action,
                                 count=entry.count, wire_item_id=wire_id, priority=item.priority, at=time.time())
        self.history.append(record)
        self.stats["injected"] += 1
        log.debug("context %s injected (%s, #%d)", item.id, action, entry.count)
        self._emit(ProviderEvent(type=EventType.CONTEXT_INJECTED, data=record, item_id=wire_id))

    def _emit(self, event: ProviderEvent) -> None:
        if self._emit_cb is not None:
            try:
                self._emit_cb(event)
            except Exception:
                log.exception("context injector: emit callback raised")

    def _next_deadline(self, now: float) -> float | None:
        times: list[float] = []
        for entry in self._entries:
            if entry.expires_at is not None:
                times.append(entry.expires_at)
            if entry.item.timing is InjectionTiming.SCHEDULED and entry.due_at is not None:
                times.append(entry.due_at)
            if entry.item.timing is InjectionTiming.NEXT_PAUSE and entry.activity_mark != self._activity:
                times.append(self._last_activity_at + entry.item.pause_ms / 1000.0)
        if not times:
            return None
        # a deadline already passed while busy would spin: re-check busy items at a slow tick
        return max(min(times), now + 0.005)

    async def _run(self) -> None:
        wake = self._wake
        if wake is None:  # start() creates it before the task; guard against misuse anyway
            raise RuntimeError("ContextInjector._run() started before start()")
        while True:
            await self._pump(None)
            now = self._clock()
            deadline = self._next_deadline(now)
            wake.clear()
            timeout = None if deadline is None else max(deadline - now, 0.0)
            if self._response_busy() and timeout is not None:
                timeout = max(timeout, 0.05)  # RESPONSE_DONE wakes us; this is only a fallback
            try:
                await asyncio.wait_for(wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass


#: the capability each mode needs (RESPOND works everywhere: an item, then a reply)
_MODE_NEEDS: dict[InjectionMode, tuple[str, str]] = {
    InjectionMode.SILENT: ("silent_context", "a silent path for context (an item that does not start a reply)"),
    InjectionMode.PER_RESPONSE: ("per_response_instructions", "per-reply instructions"),
    InjectionMode.GLOBAL: ("mutable_instructions", "instructions that can change mid-session"),
    InjectionMode.OUT_OF_BAND: ("out_of_band_responses", "out-of-band replies"),
}


def _missing_capability(mode: InjectionMode, caps: ProviderCapabilities) -> str | None:
    """What the provider lacks for ``mode`` (a description), or ``None``."""
    need = _MODE_NEEDS.get(mode)
    if need is None or getattr(caps, need[0]):
        return None
    return need[1]


def _join(base: str | None, extra: Iterable[str]) -> str:
    parts = [p for p in [base or "", *extra] if p]
    return "\n\n".join(parts)


def _safe_call(cond: Condition, ctx: InjectionContext, context_id: str) -> bool:
    try:
        return bool(cond(ctx))
    except Exception:
        log.exception("context %s: condition raised; treating as false", context_id)
        return False
