"""Clocks for the library's long timers (reconnect backoff, session recycling).

Long timers (minutes: a 60-minute session limit, backoff schedules) run on a
:class:`Clock`, so tests and soaks can run them in milliseconds with a
:class:`VirtualClock`. Timeouts that bound real I/O (handshake, close, send) stay on the
event loop's own clock: virtual time must never make a real socket look dead.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "VirtualClock", "SYSTEM_CLOCK"]


@runtime_checkable
class Clock(Protocol):
    """``monotonic()`` in seconds, and ``sleep()`` on that same time line."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time: :func:`time.monotonic` and :func:`asyncio.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


class VirtualClock:
    """Time that moves only when told to.

    ``advance(seconds)`` moves time forward and wakes every sleeper whose deadline has
    passed, earliest first. With ``auto_advance=True`` a ``sleep(d)`` moves time itself by
    ``d`` (after yielding once to the loop), so backoff schedules run at once while their
    virtual durations stay measurable. Share one clock between a provider and a
    :class:`~voiceengine.testing.FakeRealtimeServer` (``FakeServerConfig(clock=vc.monotonic)``)
    so a 60-minute session limit and its expiry happen on the same time line.
    """

    def __init__(self, start: float = 0.0, *, auto_advance: bool = False) -> None:
        if not math.isfinite(start):
            raise ValueError("start must be finite")
        self._now = float(start)
        self.auto_advance = auto_advance
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def __call__(self) -> float:  # usable where a ``Callable[[], float]`` clock is expected
        return self._now

    async def sleep(self, seconds: float) -> None:
        if not math.isfinite(seconds):
            raise ValueError("sleep duration must be finite")
        seconds = max(0.0, seconds)
        if self.auto_advance:
            await asyncio.sleep(0)
            self.advance(seconds)
            return
        if seconds == 0.0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake the sleepers that are due."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError("can only advance by a finite, non-negative number of seconds")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        """Sleeps still waiting (cancelled ones excluded)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now:.3f}, sleepers={self.sleepers})"
