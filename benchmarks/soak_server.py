"""The soak's fake Realtime server, run in a child process.

The soak measures the process that runs the library. A peer in that same process would
put its own heap into the RSS figure (recorded events, conversation copies, replayed
items: as much again as the clients hold) and its own work into the loop-lag figure.
So the :class:`~voiceengine.testing.FakeRealtimeServer` runs in a spawned child, on
127.0.0.1 as before, and the parent talks to it over a pipe:

* ``advance``: the child's :class:`~voiceengine.clock.VirtualClock` follows the
  parent's, step by step, so the server's 60-minute expiry and the providers' recycle
  stay on one time line (the child applies each step a pipe hop later);
* ``inject``: fire a fault at the live connection of a session id, now;
* ``decoded``: input audio bytes the server decoded for some session ids (the figure
  that proves the audio really crossed the socket) and those that reached it after it
  began closing, once their connections have finished;
* ``stop``: shut the server down and exit.

:class:`ServerProcess` is the parent's handle; it owns the process and the pipe and
closes both.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import multiprocessing
import time
from collections import OrderedDict
from multiprocessing.connection import Connection
from typing import Any

from voiceengine.clock import VirtualClock
from voiceengine.testing import FakeRealtimeServer, FakeServerConfig, Fault, FaultKind, ResponseContext, ScriptedResponse
from voiceengine.testing.config import FunctionCallScript
from voiceengine.testing.session import FakeSession

__all__ = ["ServerProcess", "server_config", "FAULTS"]

_REPLIES = ("Okay.", "Sure, I can help with that.", "Let me check that for you right now.",
            "Got it, thanks.", "That is a good question, here is a short answer.")
# fault name (SessionPlan.fault) -> what the server does to the connection
FAULTS = {"close_1006": (FaultKind.CLOSE, 1006), "session_expired": (FaultKind.SESSION_EXPIRED, None)}
# Sessions whose decoded audio nobody asked for yet (a client that never saw session.created).
_MAX_WATCHED_SESSIONS = 10_000
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 30.0
_SETTLE_TIMEOUT_S = 5.0


def _script(ctx: ResponseContext) -> ScriptedResponse:
    """Replies: after a tool output a plain answer; every 7th reply (by session, turn) calls a tool."""
    if ctx.last_function_output is not None:
        return ScriptedResponse(text="It is twenty one degrees.")
    if (ctx.session_index * 31 + ctx.index) % 7 == 3:
        return ScriptedResponse(text="Checking.", function_calls=(
            FunctionCallScript(name="get_weather", arguments={"city": "Paris"}),))
    return ScriptedResponse(text=_REPLIES[(ctx.session_index + ctx.index) % len(_REPLIES)])


def server_config(clock: VirtualClock | None) -> FakeServerConfig:
    """The fake server as the soak runs it: unpaced, bounded bookkeeping, no audio kept."""
    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return FakeServerConfig(
        speed=math.inf, responses=_script, record_audio_payloads=False, retain_item_audio=False,
        max_recorded_events=64, max_recorded_sessions=1, max_history_items=32, close_timeout_s=1.0, **extra,
    )


# --- child side -------------------------------------------------------------------------


def _child_main(pipe: Connection, virtual_clock: bool) -> None:
    asyncio.run(_serve(pipe, virtual_clock))


class _Served:
    """The child's state: the server, its clock, and the sessions seen by id."""

    def __init__(self, server: FakeRealtimeServer, clock: VirtualClock | None) -> None:
        self.server = server
        self.clock = clock
        self.watched: OrderedDict[str, FakeSession] = OrderedDict()
        server.on_session = self._watch

    def _watch(self, session: FakeSession) -> None:
        self.watched[session.id] = session
        if len(self.watched) > _MAX_WATCHED_SESSIONS:
            self.watched.popitem(last=False)

    def handle(self, msg: tuple[Any, ...]) -> Any:
        op = msg[0]
        if op == "advance":
            if self.clock is not None:
                self.clock.advance(msg[1])
            return None
        if op == "inject":
            return self._inject(msg[1], msg[2])
        raise ValueError(f"unknown soak server command {op!r}")

    async def decoded(self, session_ids: list[str]) -> tuple[int, int]:
        # The client closed before asking; its last frames may still sit in the connection's
        # queue. Answer once the server side of every such connection has finished with them.
        wanted = set(session_ids)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SETTLE_TIMEOUT_S
        while any(c.session.id in wanted for c in self.server.connections) and loop.time() < deadline:
            await asyncio.sleep(0.005)
        sessions = [s for s in (self.watched.pop(sid, None) for sid in session_ids) if s is not None]
        return sum(s.input_audio_bytes for s in sessions), sum(s.ignored_audio_bytes for s in sessions)

    def _inject(self, session_id: str, fault: str) -> bool:
        kind, code = FAULTS[fault]
        for conn in self.server.connections:
            if conn.session.id == session_id and not conn.closing:
                self.server.inject(Fault(kind=kind, close_code=code, session_index=conn.index, label="soak"))
                return True
        return False  # between connections: skip rather than leave a fault armed for nobody


async def _serve(pipe: Connection, virtual_clock: bool) -> None:
    loop = asyncio.get_running_loop()
    clock = VirtualClock() if virtual_clock else None
    stop = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    async with FakeRealtimeServer(server_config(clock)) as server:
        served = _Served(server, clock)

        def reply(req_id: int | None, kind: str, value: Any) -> None:
            if req_id is not None:
                pipe.send((kind, req_id, value))

        async def answer_decoded(req_id: int, session_ids: list[str]) -> None:
            reply(req_id, "ok", await served.decoded(session_ids))

        def on_readable() -> None:
            try:
                while pipe.poll():
                    msg = pipe.recv()
                    if msg[0] == "stop":
                        stop.set()
                        return
                    req_id, body = msg[1], msg[2:]
                    if msg[0] == "decoded":
                        task = loop.create_task(answer_decoded(req_id, *body))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                        continue
                    try:
                        result = served.handle((msg[0], *body))
                    except Exception as exc:  # reported to the parent, which raises it there
                        reply(req_id, "error", f"{type(exc).__name__}: {exc}")
                        continue
                    reply(req_id, "ok", result)
            except EOFError:  # the parent went away: nothing left to serve
                stop.set()

        loop.add_reader(pipe.fileno(), on_readable)
        try:
            pipe.send(("ready", server.url))
            await stop.wait()
        finally:
            loop.remove_reader(pipe.fileno())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        handshakes = server.handshakes
    pipe.send(("stopped", {"handshakes": handshakes, "cpu_s": time.process_time()}))
    pipe.close()


# --- parent side ------------------------------------------------------------------------


class ServerProcess:
    """The fake server in a spawned child process (``async with``).

    ``url`` once started; :meth:`advance` mirrors a virtual-clock step; :meth:`inject` and
    :meth:`audio_received` are requests answered by the child. ``stats`` after the exit.
    """

    def __init__(self, *, virtual_clock: bool) -> None:
        self.virtual_clock = virtual_clock
        self.url = ""
        self.stats: dict[str, Any] = {}
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a process running an event loop
        self._proc: Any = None
        self._pipe: Connection | None = None
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._ready: asyncio.Future[str] | None = None
        self._stopped: asyncio.Future[dict[str, Any]] | None = None

    async def __aenter__(self) -> ServerProcess:
        loop = asyncio.get_running_loop()
        parent, child = self._ctx.Pipe(duplex=True)
        self._pipe = parent
        self._ready, self._stopped = loop.create_future(), loop.create_future()
        self._proc = self._ctx.Process(target=_child_main, args=(child, self.virtual_clock),
                                       name="soak-fake-server", daemon=True)
        try:
            self._proc.start()
        finally:
            child.close()
        loop.add_reader(parent.fileno(), self._on_readable)
        try:
            async with asyncio.timeout(_START_TIMEOUT_S):
                self.url = await self._ready
        except BaseException:
            await self._shutdown(kill=True)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._shutdown(kill=False)

    def advance(self, seconds: float) -> None:
        """Move the server's virtual clock by ``seconds`` (no reply awaited)."""
        if self._pipe is not None:
            try:
                self._pipe.send(("advance", None, seconds))
            except OSError:
                self._lost()

    async def inject(self, session_id: str, fault: str) -> bool:
        """Fire ``fault`` (a key of :data:`FAULTS`) at the live connection of ``session_id``;
        False when that session has no live connection."""
        return bool(await self._request("inject", session_id, fault))

    async def audio_received(self, session_ids: list[str]) -> tuple[int, int]:
        """Input audio bytes of these sessions (each one answered once) that the server
        decoded, and that reached it only after it began closing (ignored, so lost)."""
        decoded, ignored = await self._request("decoded", session_ids)
        return int(decoded), int(ignored)

    async def _request(self, op: str, *args: Any) -> Any:
        if self._pipe is None:
            raise ConnectionError("the soak server is not running")
        req_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[req_id] = future
        try:
            try:
                self._pipe.send((op, req_id, *args))
            except OSError:
                self._lost()
            return await future
        finally:
            self._waiting.pop(req_id, None)

    def _on_readable(self) -> None:
        pipe = self._pipe
        try:
            while pipe is not None and pipe.poll():
                kind, *rest = pipe.recv()
                self._dispatch(kind, rest)
        except (EOFError, OSError):
            self._lost()

    def _dispatch(self, kind: str, rest: list[Any]) -> None:
        if kind == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(rest[0])
        elif kind == "stopped" and self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(rest[0])
        elif kind in ("ok", "error"):
            future = self._waiting.get(rest[0])
            if future is not None and not future.done():
                if kind == "ok":
                    future.set_result(rest[1])
                else:
                    future.set_exception(RuntimeError(f"soak server: {rest[1]}"))

    def _lost(self) -> None:
        """The child is gone: close our end and fail everything that waits on it."""
        self._close_pipe()
        for future in (self._ready, self._stopped, *self._waiting.values()):
            if future is not None and not future.done():
                future.set_exception(ConnectionError("the soak server process went away"))

    def _close_pipe(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            asyncio.get_running_loop().remove_reader(pipe.fileno())
            pipe.close()

    async def _shutdown(self, *, kill: bool) -> None:
        pipe, proc = self._pipe, self._proc
        try:
            if pipe is not None and not kill and self._stopped is not None:
                try:
                    pipe.send(("stop",))
                    async with asyncio.timeout(_STOP_TIMEOUT_S):
                        self.stats = await self._stopped
                except (OSError, TimeoutError, ConnectionError):
                    kill = True
        finally:
            self._close_pipe()
            for future in (self._ready, self._stopped):
                if future is None:
                    continue
                if not future.done():
                    future.cancel()
                elif not future.cancelled():
                    future.exception()  # a failure already handled here: not "never retrieved"
            if proc is not None:
                await _reap(proc, kill=kill)
                self._proc = None


async def _reap(proc: Any, *, kill: bool) -> None:
    """Wait for the child without blocking the loop (no executor thread), then release it."""
    if kill and proc.is_alive():
        proc.kill()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _STOP_TIMEOUT_S
    while proc.is_alive():
        if loop.time() > deadline:
            proc.kill()
            deadline = math.inf
        await asyncio.sleep(0.02)
    proc.join()
    proc.close()
