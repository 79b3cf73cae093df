"""Measuring instruments of the soak (``benchmarks/soak.py``): loop lag, RSS, virtual time.

Kept apart from the session script so each reads on its own. Nothing here talks to the
network; everything is an asyncio task owned by the soak runner and stopped by it.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import math
import sys
import time
from array import array
from dataclasses import dataclass
from typing import Callable

import psutil  # type: ignore[import-untyped]

from voiceengine.clock import VirtualClock

__all__ = ["LagMonitor", "RssProbe", "ClockDriver", "percentile", "trim_heap", "malloc_in_use_mb"]


def _load_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl): no trimming, figures include cached pages
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_MALLOC_TRIM = _load_malloc_trim()


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _load_mallinfo2() -> Callable[[], _MallInfo2] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2  # glibc >= 2.33
    except (OSError, AttributeError):
        return None
    fn.argtypes = []
    fn.restype = _MallInfo2
    return fn  # type: ignore[no-any-return]


_MALLINFO2 = _load_mallinfo2()


def malloc_in_use_mb() -> float | None:
    """Bytes the C heap has handed out and not got back (glibc ``mallinfo2``), in MB; None off glibc.

    ``uordblks`` (in-use chunks of the main and thread arenas) plus ``hblkhd`` (live mmap'd
    chunks): live memory only, whatever the fragmentation or the pages the allocator keeps.
    This covers the audio core's buffers (``PyMem_Raw*``/``malloc``) and Python objects over
    512 bytes, which pymalloc passes to malloc.
    """
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return (info.uordblks + info.hblkhd) / 2**20


def trim_heap() -> bool:
    """Give free heap pages back to the OS (glibc ``malloc_trim(0)``); False when unavailable.

    glibc keeps freed memory in its arenas, so RSS after a busy period shows the allocator's
    high-water mark, not what is still allocated. Trimming before a quiescent reading makes
    the reading describe live memory, which is what a leak check is about.
    """
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


def percentile(values: "array[float] | list[float]", q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not len(values):
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


class LagMonitor:
    """Event-loop lag: a task sleeping ``interval_s`` and recording how late it wakes.

    A wake-up late by L ms means every callback ready at that moment waited up to L ms
    (a websocket frame, a playback tick). Samples taken across a forced ``gc.collect()``
    of the soak itself are skipped (``paused``), so the figures describe the library.
    """

    def __init__(self, interval_s: float = 0.010) -> None:
        self.interval_s = interval_s
        self.samples_ms: array[float] = array("d")
        self.skipped = 0
        self.paused = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="soak-lag-monitor")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(self.interval_s)
            late = (loop.time() - t0 - self.interval_s) * 1000.0
            if self.paused:
                self.skipped += 1
                self.paused = False
                continue
            self.samples_ms.append(max(0.0, late))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def summary(self) -> dict[str, float]:
        s = self.samples_ms
        return {
            "samples": float(len(s)),
            "p50_ms": percentile(s, 50),
            "p99_ms": percentile(s, 99),
            "max_ms": max(s) if len(s) else math.nan,
            "mean_ms": (sum(s) / len(s)) if len(s) else math.nan,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RssSample:
    """One RSS reading: ``done`` sessions finished when it was taken, ``live`` still running."""

    t_s: float
    done: int
    live: int
    rss_mb: float
    collected: bool  # gc.collect() ran right before (a checkpoint)
    trimmed_mb: float | None = None  # after malloc_trim(0), for quiescent readings
    # live heap, for checkpoints (after gc.collect()): allocator caching and fragmentation
    # do not move these, so they grow only with what the process still holds
    py_blocks: int | None = None  # sys.getallocatedblocks(): live pymalloc blocks
    malloc_mb: float | None = None  # malloc_in_use_mb()


class RssProbe:
    """RSS of this process: periodic readings (``every_s``) plus checkpoints on demand.

    Checkpoints run ``gc.collect()`` first so cyclic garbage waiting for the collector does
    not pass for a leak; the lag monitor is told to skip the stall that causes. Periodic
    readings only move the peak: a list of them would itself grow for as long as the run.
    """

    def __init__(self, *, every_s: float = 1.0, lag: LagMonitor | None = None,
                 counts: Callable[[], tuple[int, int]] = lambda: (0, 0)) -> None:
        self.every_s = every_s
        self.lag = lag
        self.counts = counts
        self.peak_mb = math.nan
        self._proc = psutil.Process()
        self._t0 = time.perf_counter()
        self._task: asyncio.Task[None] | None = None

    def read(self, *, collect: bool, trim: bool = False) -> RssSample:
        if collect:
            if self.lag is not None:
                self.lag.paused = True
            gc.collect()
        done, live = self.counts()
        rss_mb = self._proc.memory_info().rss / 2**20
        trimmed = self._proc.memory_info().rss / 2**20 if trim and trim_heap() else None
        sample = RssSample(t_s=time.perf_counter() - self._t0, done=done, live=live,
                           rss_mb=rss_mb, collected=collect, trimmed_mb=trimmed,
                           py_blocks=sys.getallocatedblocks() if collect else None,
                           malloc_mb=malloc_in_use_mb() if collect else None)
        self.peak_mb = rss_mb if math.isnan(self.peak_mb) else max(self.peak_mb, rss_mb)
        return sample

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="soak-rss-probe")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            self.read(collect=False)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class ClockDriver:
    """Moves the :class:`VirtualClock` of the providers (and, through ``mirror``, the server's).

    * *ticks*: ``tick_s`` of virtual time every ``tick_real_s`` of real time, so virtual
      backoff sleeps (seconds) end within a few real milliseconds;
    * *epochs*: on :meth:`request_epoch`, a jump past the 60-minute session limit in two
      steps: first to ``limit - margin + 10 s`` (the provider's proactive recycle is due;
      the server's expiry is not), then, ``settle_real_s`` later, past the limit (the
      server expires every connection not recycled by then, e.g. one busy with a response).
      Each jump crosses the limit for every connection alive at that moment.
    """

    def __init__(self, clock: VirtualClock, *, limit_s: float = 3600.0, margin_s: float = 120.0,
                 tick_s: float = 0.5, tick_real_s: float = 0.010, settle_real_s: float = 0.5) -> None:
        self.clock = clock
        self.limit_s = limit_s
        self.margin_s = margin_s
        self.tick_s = tick_s
        self.tick_real_s = tick_real_s
        self.settle_real_s = settle_real_s
        self.epochs = 0
        # called with every step too: a clock in another process (the soak's server) follows
        self.mirror: Callable[[float], None] = lambda seconds: None
        self._wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.on_epoch: Callable[[], None] = lambda: None

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._ticks(), name="soak-clock-ticks"),
                       asyncio.create_task(self._epochs(), name="soak-clock-epochs")]

    def request_epoch(self) -> None:
        """Ask for a jump past the session limit (coalesced with pending requests)."""
        self._wanted.set()

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self.tick_real_s)
            self._advance(self.tick_s)

    async def _epochs(self) -> None:
        first = self.limit_s - self.margin_s + 10.0
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            self.epochs += 1
            self.on_epoch()  # before the jump: sessions alive now are the ones crossing it
            self._advance(first)
            await asyncio.sleep(self.settle_real_s)
            self._advance(self.limit_s - first + 20.0)

    def _advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.mirror(seconds)

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
