"""Suite-wide fixtures: every test is checked for leaks.

After each test, :func:`_leakcheck` (autouse) fails the test (an error at teardown) when
the test left behind:

* an **asyncio task** still pending on the test's loop (async tests: checked by
  :func:`_leakcheck_tasks`, which runs on the test's own loop before pytest-asyncio
  closes it -- closing it would silently cancel them), or an asyncio "Task was destroyed
  but it is pending!" report (a pending task that was garbage-collected);
* an open **socket** (file descriptors that are sockets, compared with the set before
  the test, after a ``gc.collect()`` so that dropped-but-unclosed sockets are finalized
  here and their ResourceWarning lands on this test);
* a **thread** the test started that is still alive (after a short join grace);
* a **ResourceWarning**: ``filterwarnings = error::ResourceWarning`` turns the warning
  into an exception; one raised in ``__del__`` goes through ``sys.unraisablehook`` and
  ``error::pytest.PytestUnraisableExceptionWarning`` (pyproject) makes pytest fail the
  test on it. The ``gc.collect()`` here makes sure that happens in the test that dropped
  the object rather than in whichever later test the collector happens to run.

The failure message names what leaked (task name + coroutine + where it is suspended,
socket family/type/laddr/raddr, thread name/target).

Opt-out -- for a test that deliberately leaves something behind (should be rare; none
in the suite today)::

    @pytest.mark.allow_leaks("tasks", "sockets", "threads")   # no args = all kinds
    def test_...

Why a fixture and not a plugin module: the suite has one root conftest, and a fixture
fails the right test with pytest's normal "ERROR at teardown" report.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

pytest_plugins = ("pytester",)  # tests/test_leakcheck_selftest.py runs a nested pytest

LEAK_KINDS = ("tasks", "sockets", "threads")
_THREAD_GRACE_S = 2.0  # threads that are already winding down (e.g. just signalled) get this long
_TASK_TICKS = 20  # loop iterations granted to tasks that were cancelled but not yet awaited


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_leaks(*kinds): skip the suite's leak check for these kinds "
        f"({', '.join(LEAK_KINDS)}; none = all). Use only for a test that leaks on purpose.",
    )


def _allowed(item: pytest.Item) -> set[str]:
    allowed: set[str] = set()
    for marker in item.iter_markers("allow_leaks"):
        kinds = marker.args or LEAK_KINDS
        unknown = set(kinds) - set(LEAK_KINDS)
        if unknown:
            raise pytest.UsageError(f"allow_leaks: unknown kinds {sorted(unknown)}; use {LEAK_KINDS}")
        allowed.update(kinds)
    return allowed


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every function-loop async test the task check, set up before its other fixtures.

    Set up early = torn down late: fixtures such as a fake server own tasks until their own
    teardown, so the check must run after theirs but before the loop is closed.
    """
    try:
        from pytest_asyncio import is_async_test
    except ImportError:  # pragma: no cover - pytest-asyncio is a test dependency
        return
    for item in items:
        if not is_async_test(item) or getattr(item, "_loop_scope", "function") != "function":
            continue
        names = item.fixturenames  # type: ignore[attr-defined]
        if "_leakcheck_tasks" not in names:
            names.insert(names.index("_leakcheck") + 1 if "_leakcheck" in names else 0, "_leakcheck_tasks")


# --------------------------------------------------------------------------- tasks


def _describe_task(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", type(coro).__name__)
    where = ""
    frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
    # Walk down the await chain to the innermost suspended frame: that line is the leak.
    inner = coro
    while inner is not None:
        frame = getattr(inner, "cr_frame", None) or getattr(inner, "gi_frame", None) or frame
        inner = getattr(inner, "cr_await", None) or getattr(inner, "gi_yieldfrom", None)
    if frame is not None:
        where = f" suspended at {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
    state = " (cancelling)" if task.cancelling() else ""
    return f"Task {task.get_name()!r} running {name}(){state}{where}"


@pytest.fixture
async def _leakcheck_tasks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Fail an async test that leaves tasks pending on its loop (added by collection)."""
    before = {t for t in asyncio.all_tasks() if not t.done()}
    yield
    if "tasks" in _allowed(request.node):
        return
    me = asyncio.current_task()
    leaked: list[asyncio.Task[Any]] = []
    for _ in range(_TASK_TICKS):
        leaked = [t for t in asyncio.all_tasks() if t is not me and t not in before and not t.done()]
        if not leaked:
            return
        await asyncio.sleep(0)
    lines = "\n  ".join(_describe_task(t) for t in leaked)
    for task in leaked:  # so one leak does not cascade into "Task was destroyed" noise later
        task.cancel()
    await asyncio.gather(*leaked, return_exceptions=True)
    pytest.fail(f"test left {len(leaked)} asyncio task(s) pending:\n  {lines}", pytrace=False)


class _DestroyedTaskHandler(logging.Handler):
    """Collects asyncio's "Task was destroyed but it is pending!" reports."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "Task was destroyed but it is pending" in message:
            self.reports.append(" | ".join(message.splitlines())[:600])  # the 2nd line names the coroutine


# --------------------------------------------------------------------------- sockets


def _socket_fds() -> dict[int, str]:
    """fd -> link of every open socket of this process ({} where /proc is absent)."""
    fds: dict[int, str] = {}
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return _socket_fds_psutil()
    for name in names:
        try:
            link = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # closed meanwhile (or the listdir fd itself)
            continue
        if link.startswith("socket:"):
            fds[int(name)] = link
    return fds


def _socket_fds_psutil() -> dict[int, str]:
    try:
        import psutil
    except ImportError:  # pragma: no cover
        return {}
    return {c.fd: f"socket:{c.fd}" for c in psutil.Process().net_connections("all") if c.fd >= 0}


def _describe_sockets(fds: dict[int, str]) -> list[str]:
    details: dict[int, str] = {}
    try:
        import psutil

        for conn in psutil.Process().net_connections("all"):
            if conn.fd in fds:
                family = getattr(conn.family, "name", conn.family)
                kind = getattr(conn.type, "name", conn.type)
                details[conn.fd] = f"{family}/{kind} laddr={conn.laddr!r} raddr={conn.raddr!r} status={conn.status}"
    except Exception:  # noqa: BLE001 - details are best effort; the fd list is the finding
        pass
    for fd in fds:
        if fd not in details:
            try:  # a dup of the descriptor (family auto-detected); closing it leaves the leaked one alone
                with socket.socket(fileno=os.dup(fd)) as dup:
                    details[fd] = f"{dup.family.name}/{dup.type.name} laddr={dup.getsockname()!r}"
            except OSError:
                details[fd] = "(no details)"
    return [f"fd {fd} {fds[fd]} {details[fd]}" for fd in sorted(fds)]


# --------------------------------------------------------------------------- threads


def _describe_thread(thread: threading.Thread) -> str:
    target = getattr(thread, "_target", None)
    what = getattr(target, "__qualname__", None) or type(thread).__qualname__
    return f"Thread {thread.name!r} (target {what}, daemon={thread.daemon})"


def _leftover_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    deadline = time.monotonic() + _THREAD_GRACE_S
    while True:
        alive = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        remaining = deadline - time.monotonic()
        if not alive or remaining <= 0:
            return alive
        alive[0].join(min(remaining, 0.05))


# --------------------------------------------------------------------------- the fixture


@pytest.fixture(autouse=True)
def _leakcheck(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it leaves sockets, threads or destroyed-pending tasks behind.

    Autouse fixtures are set up before the ones a test names (and pytest-asyncio's loop),
    so this teardown runs after the loop and every other fixture of the test is closed.
    """
    sockets_before = set(_socket_fds().items())  # (fd, inode link): a reused fd number is a new socket
    threads_before = set(threading.enumerate())
    destroyed = _DestroyedTaskHandler()
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(destroyed)
    try:
        yield
        allowed = _allowed(request.node)
        # Finalize what the test dropped now (ResourceWarnings from __del__ go through
        # sys.unraisablehook and fail this test, not a later one). The young generations
        # hold what the test created and cost ~1 ms; a full collection (~30-50 ms in this
        # suite's heap, x1300 tests) only runs when something looks leaked, to rule out
        # garbage that simply has not been collected yet.
        gc.collect(1)
        if _socket_fds().items() - sockets_before:
            gc.collect()
            gc.collect()
    finally:
        asyncio_logger.removeHandler(destroyed)
    problems: list[str] = []
    if "tasks" not in allowed and destroyed.reports:
        problems.append("pending asyncio task(s) destroyed by the garbage collector:\n  "
                        + "\n  ".join(destroyed.reports))
    if "threads" not in allowed:
        threads = _leftover_threads(threads_before)
        if threads:
            problems.append(f"{len(threads)} thread(s) still alive:\n  "
                            + "\n  ".join(_describe_thread(t) for t in threads))
    if "sockets" not in allowed:
        now = _socket_fds()
        leaked = {fd: link for fd, link in now.items() if (fd, link) not in sockets_before}
        if leaked:
            problems.append(f"{len(leaked)} socket(s) left open:\n  " + "\n  ".join(_describe_sockets(leaked)))
    if problems:
        pytest.fail("leak check: test left resources behind\n" + "\n".join(problems), pytrace=False)

