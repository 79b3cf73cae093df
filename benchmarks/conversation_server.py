"""The conversation-load benchmark's fake Realtime server, in a spawned child process.

The clients under test each run in their own worker process; the server runs in a third
one so that its work (JSON, base64, VAD, pacing the replies) is never counted as a
client's CPU or memory. The parent is synchronous (it only starts workers and waits), so
the handle here is a plain blocking pipe, unlike the soak's asyncio one
(``benchmarks/soak_server.py``).

Pipe requests: ``("counters",)`` -> the server's audio counters once no connection is
left (the worker that just exited has been fully handled), ``("stop",)``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["ServerCounters", "ServerProcess", "reply_text"]

_START_TIMEOUT_S = 60.0
_REPLY_TIMEOUT_S = 30.0
_SETTLE_TIMEOUT_S = 10.0


def reply_text(reply_ms: int) -> str:
    """A reply whose synthesized audio lasts about ``reply_ms`` (the fake's synth: 50 ms per
    character of a word, at least 120 ms a word, 30 ms between words: 6-letter words are
    330 ms each)."""
    words = max(1, round(reply_ms / 330))
    return " ".join(["replys"] * words)


@dataclass(frozen=True, slots=True)
class ServerCounters:
    """What the server saw, summed over every session since it started."""

    input_audio_bytes: int  # appends it decoded and handled
    ignored_audio_bytes: int  # appends that arrived while a connection was ending
    sessions_started: int
    sessions_closed: int
    live_connections: int


def _child_main(pipe: Connection, reply_ms: int) -> None:
    asyncio.run(_serve(pipe, reply_ms))


async def _serve(pipe: Connection, reply_ms: int) -> None:
    from voiceengine.testing import FakeRealtimeServer, FakeServerConfig

    config = FakeServerConfig(
        speed=1.0, chunk_ms=20,  # replies paced in real time, 20 ms per audio delta: the same framing both ways
        responses=[reply_text(reply_ms)],
        # max_recorded_sessions above any session count run here: a live session dropped from
        # the records would stop adding to input_audio_bytes, the figure that checks the clients
        record_audio_payloads=False, retain_item_audio=False, keep_closed_sessions=0,
        max_recorded_events=64, max_recorded_sessions=1000, max_history_items=32, close_timeout_s=1.0,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    async with FakeRealtimeServer(config) as server:

        async def counters() -> ServerCounters:
            deadline = loop.time() + _SETTLE_TIMEOUT_S
            while server.connections and loop.time() < deadline:
                await asyncio.sleep(0.01)
            return ServerCounters(server.input_audio_bytes, server.ignored_audio_bytes, server.sessions_started,
                                  server.sessions_closed, len(server.connections))

        async def answer_counters() -> None:
            pipe.send(("ok", await counters()))

        pending: set[asyncio.Task[None]] = set()

        def on_readable() -> None:
            try:
                while pipe.poll():
                    msg = pipe.recv()
                    if msg[0] == "stop":
                        stop.set()
                        return
                    if msg[0] == "counters":
                        task = loop.create_task(answer_counters())
                        pending.add(task)
                        task.add_done_callback(pending.discard)
            except EOFError:  # the parent is gone
                stop.set()

        loop.add_reader(pipe.fileno(), on_readable)
        try:
            pipe.send(("ready", server.url))
            await stop.wait()
        finally:
            loop.remove_reader(pipe.fileno())
            for task in pending:
                task.cancel()
    pipe.close()


class ServerProcess:
    """The fake server in a spawned child (``with``); ``url`` once started."""

    def __init__(self, *, reply_ms: int) -> None:
        self.reply_ms = reply_ms
        self.url = ""
        self._ctx = multiprocessing.get_context("spawn")  # a fresh interpreter, nothing inherited
        self._proc: Any = None
        self._pipe: Connection | None = None

    def __enter__(self) -> ServerProcess:
        parent, child = self._ctx.Pipe(duplex=True)
        self._pipe = parent
        self._proc = self._ctx.Process(target=_child_main, args=(child, self.reply_ms),
                                       name="conversation-fake-server", daemon=True)
        self._proc.start()
        child.close()
        kind, url = self._receive(_START_TIMEOUT_S)
        if kind != "ready":
            self.__exit__(None, None, None)
            raise RuntimeError(f"the fake server did not start: {kind} {url}")
        self.url = url
        return self

    def __exit__(self, *exc_info: object) -> None:
        pipe, proc = self._pipe, self._proc
        self._pipe = self._proc = None
        if pipe is not None:
            try:
                pipe.send(("stop",))
            except OSError:
                pass
            pipe.close()
        if proc is not None:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
            proc.close()

    @property
    def pid(self) -> int:
        return int(self._proc.pid) if self._proc is not None else 0

    def counters(self) -> ServerCounters:
        """The server's counters, read once every connection has ended (or after 10 s)."""
        if self._pipe is None:
            raise RuntimeError("the fake server is not running")
        self._pipe.send(("counters",))
        kind, value = self._receive(_REPLY_TIMEOUT_S)
        if kind != "ok":
            raise RuntimeError(f"fake server: unexpected answer {kind!r}")
        counters: ServerCounters = value
        return counters

    def _receive(self, timeout_s: float) -> tuple[str, Any]:
        pipe = self._pipe
        if pipe is None or not pipe.poll(timeout_s):
            raise RuntimeError(f"the fake server did not answer in {timeout_s:.0f} s")
        try:
            kind, value = pipe.recv()
        except EOFError:
            raise RuntimeError("the fake server process went away") from None
        return str(kind), value

