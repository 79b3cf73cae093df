"""The engine's event bus: one vocabulary (:class:`~voiceengine.providers.types.EventType`)
for provider events and engine events, fanned out to callbacks and ``async for`` streams.

Design constraints (the bus carries ~50 audio deltas per second per session):

* :meth:`EventBus.emit` is synchronous and never blocks. Dispatch is one dict lookup keyed
  on ``event.type`` plus the wildcard list; subscriber lists are immutable tuples replaced on
  (un)subscribe (copy-on-write), so emitting allocates nothing and handlers may (un)subscribe
  or emit re-entrantly.
* Sync handlers run inline; async handlers (coroutine functions, or callables returning an
  awaitable) run as tasks owned by the bus, bounded per subscription (``max_pending``): a
  handler that cannot keep up loses events (counted), it never grows memory without bound.
  :meth:`EventBus.aclose` cancels them.
* A handler that raises is logged (the first time with a traceback, then once per power of
  ten with a count) and counted in :attr:`EventBus.handler_errors`; other subscribers and the
  emitter never see the exception.
* Each :class:`EventStream` has its own bounded buffer. When full, ``overflow="drop_oldest"``
  (the default) drops the OLDEST event, counts it in :attr:`EventStream.dropped` and logs once
  per power of ten; ``overflow="raise"`` ends the stream instead and its next ``__anext__``
  raises :class:`~voiceengine.exceptions.LimitExceeded` (for consumers that must not miss an
  event). Either way a slow stream never stalls :meth:`~EventBus.emit` nor grows memory.

The bus is single-threaded (the event loop's thread); from other threads use
:meth:`EventBus.emit_threadsafe`.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from typing import Any, Awaitable, Callable, Iterable

from .exceptions import InvalidState, LimitExceeded
from .providers.types import EventType, ProviderEvent

__all__ = ["EventBus", "EventStream", "Subscription", "Handler", "Predicate", "OVERFLOW_POLICIES"]

log = logging.getLogger("voiceengine.events")

Handler = Callable[[ProviderEvent], "Awaitable[Any] | Any"]
Predicate = Callable[[ProviderEvent], bool]

_EMPTY: tuple["Subscription", ...] = ()

#: What a full :class:`EventStream` does with a new event (see :meth:`EventBus.stream`).
OVERFLOW_POLICIES = ("drop_oldest", "raise")


def _normalize_types(types: Any) -> frozenset[EventType] | None:
    """``None``/``"*"`` -> wildcard (None); one type or an iterable -> a frozenset."""
    if types is None or types == "*":
        return None
    if isinstance(types, (EventType, str)):
        return frozenset((EventType(types),))
    try:
        result = frozenset(EventType(t) for t in types)
    except TypeError:
        raise TypeError(f"types must be an EventType, a str, an iterable of them or None, got {types!r}") from None
    if not result:
        raise ValueError("types must not be empty (use None for every event)")
    return result


class Subscription:
    """A handle on one subscription: :meth:`unsubscribe`, :attr:`active`, counters."""

    __slots__ = (
        "_bus", "handler", "types", "predicate", "once", "active", "is_async",
        "max_pending", "pending", "dropped", "errors", "_stream",
    )

    def __init__(
        self, bus: "EventBus", handler: Handler | None, types: frozenset[EventType] | None,
        predicate: Predicate | None, once: bool, max_pending: int,
        stream: "EventStream | None" = None,
    ) -> None:
        self._bus = bus
        self.handler = handler
        self.types = types
        self.predicate = predicate
        self.once = once
        self.active = True
        # decided once here rather than on every emit
        self.is_async = handler is not None and inspect.iscoroutinefunction(handler)
        self.max_pending = max_pending
        self.pending = 0  # async handler tasks running
        self.dropped = 0  # events not delivered because max_pending tasks were running
        self.errors = 0
        self._stream = stream

    def unsubscribe(self) -> bool:
        """Stop delivering events; returns whether it was still active."""
        return self._bus._remove(self)

    def __repr__(self) -> str:
        what = "*" if self.types is None else ",".join(sorted(t.name for t in self.types))
        target = "stream" if self._stream is not None else getattr(self.handler, "__qualname__", repr(self.handler))
        return f"<Subscription {target} types={what} active={self.active}>"


class EventStream:
    """An ``async for`` view of the bus with its own bounded buffer.

    Single consumer. Iteration ends after :meth:`aclose` (or the bus closing) once the
    buffered events are consumed. Use ``async with bus.stream(...) as s`` to unsubscribe
    deterministically. ``overflow``: ``"drop_oldest"`` (count in :attr:`dropped`) or
    ``"raise"`` (the stream ends at the first overflow: the next ``__anext__`` raises
    :class:`~voiceengine.exceptions.LimitExceeded`, later ones end the iteration; the
    events buffered before the overflow stay readable with :meth:`get_nowait`).
    """

    __slots__ = ("_buffer", "maxsize", "dropped", "_next_report", "_waiter", "_closed", "_subscription",
                 "overflow", "overflowed", "_raise_pending")

    def __init__(self, maxsize: int, overflow: str = "drop_oldest") -> None:
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, got {overflow!r}")
        self._buffer: collections.deque[ProviderEvent] = collections.deque()
        self.maxsize = maxsize
        self.overflow = overflow
        self.dropped = 0
        self.overflowed = False  # "raise" policy: the buffer overflowed and the stream ended
        self._raise_pending = False
        self._next_report = 1
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._subscription: Subscription | None = None

    # called by the bus, on the loop thread
    def _push(self, event: ProviderEvent) -> None:
        buffer = self._buffer
        if len(buffer) >= self.maxsize:
            if self.overflow == "raise":
                # the consumer asked to be told rather than lose events silently: stop
                # receiving (no growth) and surface a typed error on its next read
                self.dropped += 1
                self.overflowed = self._raise_pending = True
                log.warning("event stream overflowed (buffer %d): ended with LimitExceeded", self.maxsize)
                self.close()
                return
            buffer.popleft()
            self.dropped += 1
            if self.dropped >= self._next_report:
                self._next_report *= 10
                log.warning("event stream is too slow: %d events dropped so far (buffer %d)",
                            self.dropped, self.maxsize)
        buffer.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _finish(self) -> None:
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """Events buffered and not yet consumed."""
        return len(self._buffer)

    def get_nowait(self) -> ProviderEvent | None:
        """The next buffered event, or ``None`` when the buffer is empty."""
        return self._buffer.popleft() if self._buffer else None

    def __aiter__(self) -> "EventStream":
        return self

    async def __anext__(self) -> ProviderEvent:
        if self._raise_pending:
            self._raise_pending = False
            raise LimitExceeded(f"event stream overflowed its buffer of {self.maxsize} events "
                                "(overflow='raise')", limit=self.maxsize, size=self.maxsize + 1)
        if self.overflowed:
            raise StopAsyncIteration
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            if self._waiter is not None and not self._waiter.done():
                raise InvalidState("an EventStream supports a single consumer")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._buffer.popleft()

    def close(self) -> None:
        """Unsubscribe; buffered events can still be consumed, then iteration ends."""
        if self._subscription is not None:
            self._subscription.unsubscribe()
        self._finish()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> "EventStream":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<EventStream pending={len(self._buffer)} dropped={self.dropped} overflow={self.overflow} "
                f"closed={self._closed}>")


class EventBus:
    """Publish/subscribe for :class:`ProviderEvent` (see the module docstring).

    ``queue_size`` is the default buffer of each :meth:`stream` and the default bound on
    concurrently running tasks of each async handler.
    """

    def __init__(self, *, queue_size: int = 1024) -> None:
        if not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError("queue_size must be an int >= 1")
        self.queue_size = queue_size
        self._by_type: dict[EventType, tuple[Subscription, ...]] = {}
        self._wildcard: tuple[Subscription, ...] = _EMPTY
        self._tasks: set[asyncio.Task[Any]] = set()
        self._streams: set[EventStream] = set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.emitted = 0
        self.handler_errors = 0
        self.handler_drops = 0

    # ------------------------------------------------------------ subscribe
    def subscribe(
        self, handler: Handler, *, types: Any = None, predicate: Predicate | None = None,
        once: bool = False, max_pending: int | None = None,
    ) -> Subscription:
        """Call ``handler(event)`` for matching events.

        ``types``: ``None``/``"*"`` (every event), one :class:`EventType` (or its value), or
        an iterable of them. ``predicate(event) -> bool`` filters further (a raising
        predicate counts as a handler error). ``once``: unsubscribe after the first match.
        ``max_pending`` bounds the concurrently running tasks of an async handler.
        """
        if not callable(handler):
            raise TypeError("handler must be callable")
        if predicate is not None and not callable(predicate):
            raise TypeError("predicate must be callable or None")
        sub = Subscription(self, handler, _normalize_types(types), predicate, once,
                           max_pending or self.queue_size)
        self._add(sub)
        return sub

    def on(self, types: Any = None, handler: Handler | None = None, *,
           predicate: Predicate | None = None) -> Any:
        """``bus.on(EventType.X, handler)`` or as a decorator ``@bus.on(EventType.X)``.

        Returns the handler (so decorated functions stay usable).
        """
        if handler is None:
            def decorator(func: Handler) -> Handler:
                self.subscribe(func, types=types, predicate=predicate)
                return func
            return decorator
        self.subscribe(handler, types=types, predicate=predicate)
        return handler

    def once(self, types: Any = None, handler: Handler | None = None, *,
             predicate: Predicate | None = None) -> Any:
        """Like :meth:`on`, for the first matching event only."""
        if handler is None:
            def decorator(func: Handler) -> Handler:
                self.subscribe(func, types=types, predicate=predicate, once=True)
                return func
            return decorator
        self.subscribe(handler, types=types, predicate=predicate, once=True)
        return handler

    def unsubscribe(self, subscription_or_handler: Subscription | Handler) -> bool:
        """Remove a subscription, or every subscription of a handler. Returns whether any was removed."""
        if isinstance(subscription_or_handler, Subscription):
            return self._remove(subscription_or_handler)
        removed = False
        for sub in self._all_subscriptions():
            if sub.handler == subscription_or_handler:
                removed = self._remove(sub) or removed
        return removed

    def stream(self, types: Any = None, *, predicate: Predicate | None = None,
               maxsize: int | None = None, overflow: str = "drop_oldest") -> EventStream:
        """A new :class:`EventStream` receiving matching events from now on.

        ``maxsize`` bounds its buffer (default ``queue_size``); ``overflow`` says what a full
        buffer does: ``"drop_oldest"`` or ``"raise"`` (see :class:`EventStream`).
        """
        if maxsize is not None and (not isinstance(maxsize, int) or maxsize < 1):
            raise ValueError("maxsize must be an int >= 1 or None")
        if predicate is not None and not callable(predicate):
            raise TypeError("predicate must be callable or None")
        stream = EventStream(maxsize or self.queue_size, overflow)
        sub = Subscription(self, None, _normalize_types(types), predicate, False, 1, stream)
        stream._subscription = sub
        self._add(sub)
        self._streams.add(stream)
        return stream

    def _add(self, sub: Subscription) -> None:
        if self._closed:
            raise InvalidState("the event bus is closed")
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
        if sub.types is None:
            self._wildcard = self._wildcard + (sub,)
        else:
            for event_type in sub.types:
                self._by_type[event_type] = self._by_type.get(event_type, _EMPTY) + (sub,)

    def _remove(self, sub: Subscription) -> bool:
        if not sub.active:
            return False
        sub.active = False
        if sub.types is None:
            self._wildcard = tuple(s for s in self._wildcard if s is not sub)
        else:
            for event_type in sub.types:
                remaining = tuple(s for s in self._by_type.get(event_type, _EMPTY) if s is not sub)
                if remaining:
                    self._by_type[event_type] = remaining
                else:
                    self._by_type.pop(event_type, None)
        if sub._stream is not None:
            self._streams.discard(sub._stream)
        return True

    def _all_subscriptions(self) -> list[Subscription]:
        seen: dict[int, Subscription] = {id(s): s for s in self._wildcard}
        for subs in self._by_type.values():
            for s in subs:
                seen[id(s)] = s
        return list(seen.values())

    # ----------------------------------------------------------------- emit
    def emit(self, event: ProviderEvent) -> None:
        """Deliver ``event`` to every matching subscriber. Synchronous, never blocks, never raises
        because of a subscriber. A no-op once the bus is closed."""
        if self._closed:
            return
        self.emitted += 1
        subs = self._by_type.get(event.type)
        if subs:
            self._deliver(subs, event)
        if self._wildcard:
            self._deliver(self._wildcard, event)

    def emit_new(self, type: EventType | str, data: Any = None, **fields: Any) -> ProviderEvent:
        """Build a :class:`ProviderEvent` (``provider`` defaults to ``"engine"``), emit it, return it."""
        fields.setdefault("provider", "engine")
        event = ProviderEvent(type=EventType(type), data=data, **fields)
        self.emit(event)
        return event

    def emit_threadsafe(self, event: ProviderEvent) -> None:
        """Emit from another thread, on the loop the bus was first used on."""
        if self._loop is None:
            raise InvalidState("the bus has not been used on an event loop yet")
        self._loop.call_soon_threadsafe(self.emit, event)

    def _deliver(self, subs: tuple[Subscription, ...], event: ProviderEvent) -> None:
        for sub in subs:
            if not sub.active:  # unsubscribed by an earlier handler of this very emit
                continue
            if sub.predicate is not None:
                try:
                    if not sub.predicate(event):
                        continue
                except Exception:
                    self._handler_failed(sub, event, "predicate")
                    continue
            if sub.once:
                self._remove(sub)  # before calling, so a re-entrant emit cannot fire it twice
            handler = sub.handler
            if handler is None:  # a stream's subscription
                if sub._stream is not None:
                    sub._stream._push(event)
            elif sub.is_async:
                self._spawn(sub, event, handler, None)
            else:
                try:
                    result = handler(event)
                except Exception:
                    self._handler_failed(sub, event, "handler")
                    continue
                if result is not None and inspect.isawaitable(result):
                    self._spawn(sub, event, handler, result)

    def _spawn(self, sub: Subscription, event: ProviderEvent, handler: Handler, awaitable: Any) -> None:
        if sub.pending >= sub.max_pending:
            sub.dropped += 1
            self.handler_drops += 1
            if awaitable is not None and inspect.iscoroutine(awaitable):
                awaitable.close()
            if _is_power_of_ten(sub.dropped):
                log.warning("async handler %r is too slow: %d events skipped", sub.handler, sub.dropped)
            return
        coro = self._run_async(sub, event, handler, awaitable)
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:
            coro.close()
            if awaitable is not None and inspect.iscoroutine(awaitable):
                awaitable.close()
            self._handler_failed(sub, event, "async handler (no running event loop)")
            return
        sub.pending += 1
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_async(self, sub: Subscription, event: ProviderEvent, handler: Handler,
                         awaitable: Any) -> None:
        try:
            if awaitable is None:
                awaitable = handler(event)
            await awaitable
        except asyncio.CancelledError:
            raise
        except Exception:
            self._handler_failed(sub, event, "async handler")
        finally:
            sub.pending -= 1

    def _handler_failed(self, sub: Subscription, event: ProviderEvent, what: str) -> None:
        self.handler_errors += 1
        sub.errors += 1
        # a handler failing on every audio delta must not flood the log: traceback once,
        # then a count at powers of ten
        if sub.errors == 1:
            log.exception("event %s %r raised on %s (isolated)", what, sub.handler or sub.predicate,
                          event.type.name)
        elif _is_power_of_ten(sub.errors):
            log.error("event %s %r has raised %d times", what, sub.handler or sub.predicate, sub.errors)

    # ------------------------------------------------------------- lifecycle
    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Cancel running handler tasks, end every stream, refuse new subscriptions. Idempotent."""
        self._closed = True
        for stream in list(self._streams):
            stream._finish()
        self._streams.clear()
        for sub in self._all_subscriptions():
            sub.active = False
        self._by_type = {}
        self._wildcard = _EMPTY
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if not t.done() and t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> "EventBus":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def stats(self) -> dict[str, int]:
        """Counters: emitted, handler_errors, handler_drops, stream_drops, subscriptions, streams, tasks."""
        return {
            "emitted": self.emitted,
            "handler_errors": self.handler_errors,
            "handler_drops": self.handler_drops,
            "stream_drops": sum(s.dropped for s in self._streams),
            "subscriptions": len(self._all_subscriptions()),
            "streams": len(self._streams),
            "tasks": len(self._tasks),
        }

    def __repr__(self) -> str:
        return f"<EventBus subscriptions={len(self._all_subscriptions())} closed={self._closed}>"


def _is_power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1
