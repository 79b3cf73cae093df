"""Collects the events a provider emits and lets a test wait for one (no sleeps, no polling)."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Protocol

from voiceengine.providers.types import EventType, ProviderEvent

#: called while a wait finds nothing yet: True when it made progress itself (fed audio),
#: False to wait for the next event instead
WhileWaiting = Callable[[], Awaitable[bool]]


class EventSource(Protocol):
    def on_event(self, event_type: None, callback: Callable[[ProviderEvent], None]) -> object: ...


class EventRecorder:
    """Every event from ``source`` (from construction on; without one, what :meth:`record` gets).

    ``while_waiting``: what a :meth:`wait` does while nothing matches (e.g. stream silence so
    the provider's turn detection moves on); a wait with ``feed_silence=False`` skips it.
    ``wait_timeout``: a wait's default timeout (seconds).
    """

    def __init__(self, source: EventSource | None = None, *, while_waiting: WhileWaiting | None = None,
                 wait_timeout: float = 10.0) -> None:
        self.events: list[ProviderEvent] = []
        self._changed = asyncio.Event()
        self._while_waiting = while_waiting
        self._wait_timeout = wait_timeout
        if source is not None:
            source.on_event(None, self.record)

    def record(self, event: ProviderEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def mark(self) -> int:
        """The index the next event gets (a ``since`` for later waits)."""
        return len(self.events)

    async def wait(self, predicate: Callable[[ProviderEvent], bool], since: int = 0, *,
                   timeout: float | None = None, feed_silence: bool = True) -> ProviderEvent:
        """The first event from index ``since`` on that matches ``predicate``."""
        seen = since
        async with asyncio.timeout(self._wait_timeout if timeout is None else timeout):
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = max(seen, len(self.events))
                if feed_silence and self._while_waiting is not None and await self._while_waiting():
                    continue
                self._changed.clear()
                await self._changed.wait()

    def of(self, kind: EventType, since: int = 0) -> list[ProviderEvent]:
        return [e for e in self.events[since:] if e.type is kind]
