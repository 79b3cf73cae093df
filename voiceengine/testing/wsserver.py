"""What the fake WebSocket servers share: event waiters, JSON refusals, the held handshake and
the scrubbed wire logger. Each server composes these; the protocol rules stay in its own package."""

from __future__ import annotations

import asyncio
import dataclasses
import http
import json
import logging
import socket
import struct
from typing import Any, Callable, Coroutine, Mapping

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from ..secrets import SecretScrubbingFilter
from .faults import Fault

__all__ = ["ConnectionTasks", "EventPredicate", "EventWaiters", "hold_handshake", "json_response", "linger_reset",
           "peek_type", "wire_logger"]

EventPredicate = Callable[[Mapping[str, Any]], bool]


class EventWaiters:
    """Tasks waiting for an event that matches their predicate; :meth:`wake` offers each new event."""

    def __init__(self) -> None:
        self._waiters: list[tuple[EventPredicate, asyncio.Future[dict[str, Any]]]] = []

    def __bool__(self) -> bool:
        return bool(self._waiters)

    async def wait(self, past: list[dict[str, Any]], predicate: EventPredicate, timeout: float) -> dict[str, Any]:
        """The first of ``past`` matching ``predicate``, else the next woken one; ``TimeoutError`` after ``timeout`` s."""
        for event in past:
            if predicate(event):
                return event
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        entry = (predicate, fut)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def wake(self, event: dict[str, Any]) -> None:
        for predicate, fut in list(self._waiters):
            if fut.done():
                continue
            try:
                matched = predicate(event)
            except Exception as exc:  # a broken predicate fails its own waiter only
                fut.set_exception(exc)
                continue
            if matched:
                fut.set_result(event)

    def cancel_all(self) -> None:
        for _, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()


def json_response(connection: ServerConnection, status: int, body: str) -> Response:
    """An HTTP refusal of the upgrade carrying a JSON ``body`` (websockets would say text/plain)."""
    resp = connection.respond(status, body)
    headers = Headers([(k, v) for k, v in resp.headers.raw_items() if k.lower() != "content-type"])
    headers["Content-Type"] = "application/json"
    return dataclasses.replace(resp, headers=headers)


async def hold_handshake(connection: ServerConnection, fault: Fault, stopping: asyncio.Event) -> Response | None:
    """Carry out ``HANDSHAKE_TIMEOUT``: stall the upgrade for the fault's duration; a 503 when the
    server stops meanwhile, else None (the upgrade goes on)."""
    try:
        # websockets' own open_timeout still bounds this: it aborts the TCP connection
        await asyncio.wait_for(stopping.wait(), fault.duration_s)
    except TimeoutError:
        pass
    if stopping.is_set():
        return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "Server is shutting down.\n")
    return None


def wire_logger(name: str) -> logging.Logger:
    """The logger handed to websockets, which logs request headers (keys) at DEBUG: scrubbed."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, SecretScrubbingFilter) for f in logger.filters):
        logger.addFilter(SecretScrubbingFilter())
    return logger


class ConnectionTasks:
    """The tasks one fake-server connection started: failures other than the peer closing are
    logged on ``log``; :meth:`cancel` ends them all when the connection ends."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, ConnectionClosed):
            self._log.error("%s task failed", self._what, exc_info=exc)

    async def cancel(self) -> None:
        """Cancel every task but the caller's own and wait until they are gone."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def linger_reset(ws: ServerConnection) -> None:
    """Make the next abort of ``ws`` send an RST: SO_LINGER on with a 0 s timeout makes the
    kernel discard unsent data and answer with a reset instead of the FIN handshake."""
    sock = ws.transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:  # pragma: no cover - the socket is already gone
        pass


def peek_type(message: str | bytes) -> str | None:
    """The ``type`` of a client message, or None when it is not a JSON object with a string one
    (fault triggers match on it before the session handles the message)."""
    try:
        event = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        return None
    etype = event.get("type") if isinstance(event, dict) else None
    return etype if isinstance(etype, str) else None
