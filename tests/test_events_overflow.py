"""EventBus streams: overflow policies (issue 5: every subscriber queue bounded, typed error)."""

from __future__ import annotations

import pytest

from voiceengine.events import EventBus
from voiceengine.exceptions import LimitExceeded
from voiceengine.providers.types import EventType as E, ProviderEvent


def ev(n: int) -> ProviderEvent:
    return ProviderEvent(type=E.TEXT_DELTA, data=str(n))


async def test_raise_policy_ends_the_stream_with_limit_exceeded() -> None:
    bus = EventBus()
    stream = bus.stream(maxsize=3, overflow="raise")
    for n in range(3):
        bus.emit(ev(n))
    assert not stream.overflowed and stream.pending == 3
    bus.emit(ev(3))  # the 4th does not fit: the stream ends instead of dropping silently
    assert stream.overflowed and stream.closed and stream.dropped == 1
    bus.emit(ev(4))  # no longer subscribed: nothing grows
    assert stream.pending == 3 and bus.stats["streams"] == 0
    with pytest.raises(LimitExceeded) as info:
        await stream.__anext__()
    assert info.value.limit == 3
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    # what was buffered before the overflow is still readable
    assert [stream.get_nowait().data for _ in range(3)] == ["0", "1", "2"]
    await bus.aclose()


async def test_raise_policy_consumer_keeping_up_sees_everything() -> None:
    bus = EventBus()
    got: list[str] = []
    async with bus.stream(maxsize=2, overflow="raise") as stream:
        for n in range(10):
            bus.emit(ev(n))
            got.append((await stream.__anext__()).data)
        assert not stream.overflowed
    assert got == [str(n) for n in range(10)]
    await bus.aclose()


async def test_drop_oldest_is_the_default_and_bad_policy_is_refused() -> None:
    bus = EventBus()
    stream = bus.stream(maxsize=2)
    for n in range(5):
        bus.emit(ev(n))
    assert stream.overflow == "drop_oldest" and stream.dropped == 3 and not stream.overflowed
    assert (await stream.__anext__()).data == "3"
    with pytest.raises(ValueError):
        bus.stream(overflow="grow")
    await stream.aclose()
    await bus.aclose()
