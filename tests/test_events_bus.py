"""EventBus: dispatch, isolation, streams with drop-oldest, once/unsubscribe/predicate/wildcard."""

from __future__ import annotations

import asyncio
import logging

import pytest

from voiceengine.events import EventBus, EventStream, Subscription
from voiceengine.exceptions import InvalidState
from voiceengine.providers.types import EventType, ProviderEvent


def ev(t: EventType = EventType.AUDIO_DELTA, data: object = None) -> ProviderEvent:
    return ProviderEvent(type=t, data=data)


async def test_subscribe_by_type_set_and_wildcard() -> None:
    bus = EventBus()
    one, many, every = [], [], []
    bus.subscribe(one.append, types=EventType.AUDIO_DELTA)
    bus.subscribe(many.append, types={EventType.TEXT_DELTA, EventType.TEXT_DONE})
    bus.subscribe(every.append)
    for t in (EventType.AUDIO_DELTA, EventType.TEXT_DELTA, EventType.TEXT_DONE, EventType.ERROR):
        bus.emit(ev(t))
    assert [e.type for e in one] == [EventType.AUDIO_DELTA]
    assert [e.type for e in many] == [EventType.TEXT_DELTA, EventType.TEXT_DONE]
    assert len(every) == 4
    assert bus.stats["emitted"] == 4
    await bus.aclose()


async def test_string_type_and_star_wildcard() -> None:
    bus = EventBus()
    got, star = [], []
    bus.subscribe(got.append, types="audio.delta")
    bus.subscribe(star.append, types="*")
    bus.emit(ev(EventType.AUDIO_DELTA))
    assert len(got) == 1 and len(star) == 1
    with pytest.raises(ValueError):
        bus.subscribe(got.append, types="no.such.type")
    with pytest.raises(ValueError):
        bus.subscribe(got.append, types=[])
    with pytest.raises(TypeError):
        bus.subscribe("not callable")  # type: ignore[arg-type]
    await bus.aclose()


async def test_predicate_filters_and_raising_predicate_is_isolated() -> None:
    bus = EventBus()
    got = []
    bus.subscribe(got.append, predicate=lambda e: e.data == "yes")
    bus.subscribe(lambda e: None, predicate=lambda e: 1 / 0)
    bus.emit(ev(data="no"))
    bus.emit(ev(data="yes"))
    assert [e.data for e in got] == ["yes"]
    assert bus.handler_errors == 2
    await bus.aclose()


async def test_raising_handler_is_logged_isolated_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    after = []

    def boom(event: ProviderEvent) -> None:
        raise RuntimeError("handler bug")

    sub = bus.subscribe(boom)
    bus.subscribe(after.append)
    with caplog.at_level(logging.ERROR, logger="voiceengine.events"):
        for _ in range(25):
            bus.emit(ev())  # must not raise
    assert len(after) == 25
    assert bus.handler_errors == 25 and sub.errors == 25
    # traceback once, then at 10: not 25 log lines
    records = [r for r in caplog.records if r.name == "voiceengine.events"]
    assert 1 <= len(records) <= 3
    assert records[0].exc_info is not None
    await bus.aclose()


async def test_async_handler_runs_as_owned_task_and_errors_are_isolated() -> None:
    bus = EventBus()
    seen = asyncio.Event()

    async def ok(event: ProviderEvent) -> None:
        seen.set()

    async def bad(event: ProviderEvent) -> None:
        raise ValueError("async bug")

    bus.subscribe(ok)
    bus.subscribe(bad)
    bus.emit(ev())
    await asyncio.wait_for(seen.wait(), 5)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert bus.handler_errors == 1
    await bus.aclose()


async def test_sync_callable_returning_awaitable_is_awaited() -> None:
    bus = EventBus()
    done = asyncio.Event()

    async def work() -> None:
        done.set()

    bus.subscribe(lambda e: work())
    bus.emit(ev())
    await asyncio.wait_for(done.wait(), 5)
    await bus.aclose()


async def test_aclose_cancels_handler_tasks_and_ends_streams() -> None:
    bus = EventBus()
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def slow(event: ProviderEvent) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    bus.subscribe(slow)
    stream = bus.stream()
    bus.emit(ev())
    await asyncio.wait_for(started.wait(), 5)
    assert bus.stats["tasks"] == 1
    await bus.aclose()
    assert cancelled.is_set()
    assert bus.stats["tasks"] == 0
    # the buffered event is still delivered, then the stream ends
    assert [e.type async for e in stream] == [EventType.AUDIO_DELTA]
    with pytest.raises(InvalidState):
        bus.subscribe(print)
    bus.emit(ev())  # a no-op once closed, never raises


async def test_slow_async_handler_is_bounded() -> None:
    bus = EventBus()
    gate = asyncio.Event()

    async def slow(event: ProviderEvent) -> None:
        await gate.wait()

    sub = bus.subscribe(slow, max_pending=3)
    for _ in range(10):
        bus.emit(ev())
    assert sub.pending == 3 and sub.dropped == 7 and bus.handler_drops == 7
    gate.set()
    await bus.aclose()


async def test_once_fires_a_single_time_even_reentrantly() -> None:
    bus = EventBus()
    got = []

    def handler(event: ProviderEvent) -> None:
        got.append(event)
        bus.emit(ev())  # re-entrant emit must not fire it again

    bus.once(EventType.AUDIO_DELTA, handler)
    bus.emit(ev())
    bus.emit(ev())
    assert len(got) == 1


async def test_on_and_once_as_decorators() -> None:
    bus = EventBus()
    got = []

    @bus.on(EventType.TEXT_DELTA)
    def on_text(event: ProviderEvent) -> None:
        got.append(("on", event.data))

    @bus.once(EventType.TEXT_DELTA)
    def first(event: ProviderEvent) -> None:
        got.append(("once", event.data))

    bus.emit(ev(EventType.TEXT_DELTA, "a"))
    bus.emit(ev(EventType.TEXT_DELTA, "b"))
    assert got == [("on", "a"), ("once", "a"), ("on", "b")]
    assert callable(on_text) and callable(first)


async def test_unsubscribe_by_subscription_and_by_handler() -> None:
    bus = EventBus()
    got = []
    sub = bus.subscribe(got.append, types=EventType.AUDIO_DELTA)
    assert isinstance(sub, Subscription) and sub.active
    assert sub.unsubscribe() is True
    assert sub.unsubscribe() is False and not sub.active
    bus.emit(ev())
    assert got == []
    bus.on(EventType.AUDIO_DELTA, got.append)
    bus.on(EventType.TEXT_DELTA, got.append)
    assert bus.unsubscribe(got.append) is True
    assert bus.unsubscribe(got.append) is False
    bus.emit(ev())
    bus.emit(ev(EventType.TEXT_DELTA))
    assert got == []
    assert bus.stats["subscriptions"] == 0


async def test_unsubscribe_during_emit_skips_later_subscriber() -> None:
    bus = EventBus()
    got = []
    second: list[Subscription] = []

    def first(event: ProviderEvent) -> None:
        second[0].unsubscribe()

    bus.subscribe(first)
    second.append(bus.subscribe(got.append))
    bus.emit(ev())
    assert got == []


async def test_stream_receives_in_order_and_closes() -> None:
    bus = EventBus()
    async with bus.stream(EventType.TEXT_DELTA) as stream:
        assert isinstance(stream, EventStream)
        for i in range(3):
            bus.emit(ev(EventType.TEXT_DELTA, i))
            bus.emit(ev(EventType.AUDIO_DELTA, i))
        got = [(await stream.__anext__()).data for _ in range(3)]
    assert got == [0, 1, 2]
    assert stream.closed
    bus.emit(ev(EventType.TEXT_DELTA, 9))
    assert stream.pending == 0  # unsubscribed
    await bus.aclose()


async def test_stream_waits_for_events() -> None:
    bus = EventBus()
    stream = bus.stream()

    async def consume() -> list[object]:
        return [e.data async for e in stream]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    bus.emit(ev(data=1))
    await asyncio.sleep(0)
    bus.emit(ev(data=2))
    await stream.aclose()
    assert await asyncio.wait_for(task, 5) == [1, 2]
    await bus.aclose()


async def test_slow_stream_never_blocks_emit_and_drops_oldest(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus(queue_size=8)
    fast_got = []
    bus.subscribe(fast_got.append)
    slow = bus.stream(maxsize=4)
    with caplog.at_level(logging.WARNING, logger="voiceengine.events"):
        for i in range(1000):
            bus.emit(ev(data=i))  # returns at once: nobody consumes the stream
    assert len(fast_got) == 1000
    assert slow.dropped == 996
    assert bus.stats["stream_drops"] == 996
    # the newest events survive
    assert [slow.get_nowait().data for _ in range(4)] == [996, 997, 998, 999]
    warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 3  # once per power of ten: 1, 10, 100
    await bus.aclose()


async def test_stream_single_consumer() -> None:
    bus = EventBus()
    stream = bus.stream()
    t1 = asyncio.create_task(stream.__anext__())
    await asyncio.sleep(0)
    with pytest.raises(InvalidState):
        await stream.__anext__()
    t1.cancel()
    await asyncio.gather(t1, return_exceptions=True)
    await bus.aclose()


async def test_emit_new_and_threadsafe() -> None:
    bus = EventBus()
    stream = bus.stream(EventType.METRICS)
    event = bus.emit_new(EventType.METRICS, {"x": 1}, item_id="i1")
    assert event.provider == "engine" and event.item_id == "i1"
    assert stream.get_nowait() is event
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, bus.emit_threadsafe, ProviderEvent(type=EventType.METRICS, data=2))
    got = await asyncio.wait_for(stream.__anext__(), 5)
    assert got.data == 2
    await bus.aclose()


def test_emit_without_loop_with_async_handler_is_isolated() -> None:
    bus = EventBus()

    async def handler(event: ProviderEvent) -> None:
        pass

    bus.subscribe(handler)
    bus.emit(ev())  # no running loop: counted as a handler error, no crash, no un-awaited coroutine
    assert bus.handler_errors == 1


def test_bad_queue_size() -> None:
    with pytest.raises(ValueError):
        EventBus(queue_size=0)
