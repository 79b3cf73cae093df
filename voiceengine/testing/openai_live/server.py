"""``FakeOpenAILiveServer``: a local OpenAI Live (``/v1/live/sessions``) server for tests.

::

    async with FakeOpenAILiveServer() as server:
        client = AsyncOpenAI(api_key="sk-test", base_url=server.base_url)
        async with client.live.connect() as conn:
            await conn.session.start(session={"model": "gpt-live-1"})
            ...

Binds 127.0.0.1 on a free port. The protocol rules live in :mod:`.session` (sans-I/O);
this module moves the bytes, paces reply audio and carries out faults
(:class:`~voiceengine.testing.Fault`; the kinds in :data:`SUPPORTED_FAULTS`).
See ``docs/openai_live.md``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import weakref
from typing import Any, Callable, Coroutine

from websockets.asyncio.server import Server, ServerConnection, serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..faults import Fault, FaultBook, FaultKind, Trigger
from ..wsserver import (ConnectionTasks, EventPredicate, EventWaiters, hold_handshake, json_response, linger_reset,
                        peek_type, wire_logger)
from .config import FakeOpenAILiveConfig
from .session import FakeLiveSession

__all__ = ["FakeOpenAILiveServer", "SUPPORTED_FAULTS", "LIVE_DELTA_TYPES", "serve_openai_live",
           "serve_openai_live_async"]

log = logging.getLogger("voiceengine.testing.openai_live")

#: fault kinds the Live fake carries out (others are refused when armed)
SUPPORTED_FAULTS = frozenset({
    FaultKind.CLOSE, FaultKind.TCP_RESET, FaultKind.MALFORMED_JSON, FaultKind.UNKNOWN_EVENT,
    FaultKind.MALFORMED_EVENT, FaultKind.OVERSIZED_MESSAGE, FaultKind.HALF_OPEN,
    FaultKind.REJECT_HANDSHAKE, FaultKind.HANDSHAKE_TIMEOUT, FaultKind.SESSION_EXPIRED,
    FaultKind.ERROR_EVENT,
})
#: server events that count for ``Trigger.MID_RESPONSE`` (reply audio only, never the idle track)
LIVE_DELTA_TYPES = frozenset({"session.output_audio.delta"})
_NO_DELTAS: frozenset[str] = frozenset()
_BLOCKING = frozenset({FaultKind.CLOSE, FaultKind.TCP_RESET, FaultKind.SESSION_EXPIRED, FaultKind.HALF_OPEN})
_HTTP_ERRORS = {
    400: ("invalid_request_error", "Bad request."),
    401: ("invalid_api_key", "Incorrect API key provided."),
    403: ("unsupported_country_region_territory", "Country, region, or territory not supported."),
    429: ("rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", "The server had an error while processing your request."),
    503: ("service_unavailable", "The engine is currently overloaded, please try again later."),
}
_SECRET_HEADERS = frozenset({"authorization", "api-key"})


def _dumps(ev: Any) -> str:
    return json.dumps(ev, separators=(",", ":"))


def _error_body(code: str, message: str, type_: str = "invalid_request_error") -> str:
    return _dumps({"error": {"message": message, "type": type_, "code": code, "param": None}})


def _check_supported(fault: Fault) -> None:
    pending = [fault]
    while pending:
        f = pending.pop()
        if f.kind not in SUPPORTED_FAULTS:
            raise ValueError(f"the fake Live server does not carry out {f.kind.value!r} faults; "
                             f"supported: {sorted(k.value for k in SUPPORTED_FAULTS)}")
        pending.extend(f.then)


class _LiveConnection:
    """Owns the tasks of one WebSocket connection: the reader (the handler itself), the reply
    pacer, the expiry watchdog and the close watcher. Writes are serialized by one lock."""

    def __init__(self, server: "FakeOpenAILiveServer", ws: ServerConnection, session: FakeLiveSession) -> None:
        self.server = server
        self.ws = ws
        self.session = session
        self.index = session.index
        self.closing = False
        self.half_open = False
        self._tasks = ConnectionTasks(log, "fake Live server")
        self._lock = asyncio.Lock()
        self._pacing = False

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro)

    async def run(self) -> None:
        book, idx = self.server.faults, self.index
        try:
            self.spawn(self._watch_closed())
            for f in book.match_simple(idx, Trigger.ON_CONNECT) + book.match_simple(idx, Trigger.BEFORE_SESSION_CREATED):
                await self.execute(f)
            if self.closing:
                return
            for f in book.match_simple(idx, Trigger.IMMEDIATE):
                self.spawn(self.execute(f))
            if self.server.config.max_session_s is not None:
                self.spawn(self._watchdog())
            async for message in self.ws:
                if self.closing:
                    break
                await self._on_message(message)
        except ConnectionClosed:
            pass
        finally:
            self.closing = True
            if self.session.closed_code is None and self.ws.close_code is not None:
                self.session.closed_code = self.ws.close_code
            await self._tasks.cancel()

    async def _watch_closed(self) -> None:
        await self.ws.wait_closed()
        self.closing = True

    async def _watchdog(self) -> None:
        while not self.closing:
            if self.session.expired():
                await self.execute(Fault(kind=FaultKind.SESSION_EXPIRED, label="max_session_s"))
                return
            await asyncio.sleep(self.server.config.expiry_poll_s)

    # ------------------------------------------------------------ inbound
    async def _on_message(self, message: str | bytes) -> None:
        book, idx, sess = self.server.faults, self.index, self.session
        etype = peek_type(message)
        async with self._lock:
            fired = book.match_client_event(idx, etype) if etype is not None else []
            for f in fired:
                await self._execute_locked(f)
            if self.closing or any(f.kind in _BLOCKING or (f.kind is FaultKind.ERROR_EVENT and f.close_after)
                                   for f in fired):
                return
            interrupted = sess.interrupted_replies
            sess.receive(message)
            self.server.notify_received(sess)
            await self._write(sess.events_to_send(), reply=False)
            if sess.interrupted_replies > interrupted:
                for f in book.match_simple(idx, Trigger.DURING_INTERRUPT):
                    await self._execute_locked(f)
            if sess.take_new_reply():
                book.reset_response_counters(idx)
                if not self._pacing:
                    self._pacing = True
                    self.spawn(self._pace())
            if sess.closed_reason is not None:
                await self._close(1000, sess.closed_reason)

    async def _pace(self) -> None:
        pace = self.server.config.pace_s_per_ms
        try:
            while not self.closing:
                async with self._lock:
                    ms = self.session.advance()
                    events = self.session.events_to_send()
                    if ms is None:
                        self._pacing = False  # set before any await: a new reply spawns a new pacer
                    await self._write(events, reply=ms is not None)
                if ms is None:
                    return
                await asyncio.sleep(ms * pace)
        finally:
            self._pacing = False

    # ------------------------------------------------------------ outbound
    async def _send_raw(self, text: str) -> bool:
        if self.closing or self.half_open:
            return False
        try:
            await self.ws.send(text)
        except ConnectionClosed:
            self.closing = True
            return False
        return True

    async def _write(self, events: list[dict[str, Any]], *, reply: bool) -> None:
        book = self.server.faults
        for ev in events:
            if not await self._send_raw(_dumps(ev)):
                return
            self.session.record_sent(ev)
            self.server.notify_sent(ev)
            delta_types = LIVE_DELTA_TYPES if reply else _NO_DELTAS
            for f in book.match_server_event(self.index, ev, delta_types=delta_types):
                await self._execute_locked(f)
                if self.closing:
                    return

    async def _close(self, code: int | None, reason: str = "") -> None:
        if self.closing and self.ws.close_code is not None:
            return
        self.closing = True
        self.session.closed_code = code
        if code is None or code == 1006:
            self.ws.transport.abort()
            return
        try:
            await self.ws.close(code, reason)
        except ConnectionClosed:
            pass

    # ------------------------------------------------------------ faults
    async def execute(self, fault: Fault) -> None:
        """Carry out ``fault`` now (takes the write lock)."""
        async with self._lock:
            await self._execute_locked(fault)

    async def _execute_locked(self, fault: Fault) -> None:
        if self.closing:
            return
        kind, sess = fault.kind, self.session
        log.debug("fault %s on Live session %d", kind.value, self.index)
        if kind is FaultKind.CLOSE:
            await self._close(fault.close_code, fault.close_reason)
        elif kind is FaultKind.TCP_RESET:
            linger_reset(self.ws)
            await self._close(None)
        elif kind is FaultKind.MALFORMED_JSON:
            text = fault.payload if isinstance(fault.payload, str) else '{"type":"session.output_audio.delta","delta":'
            if await self._send_raw(text):
                sess.faulty_sent.append(text)
        elif kind in (FaultKind.UNKNOWN_EVENT, FaultKind.MALFORMED_EVENT):
            if fault.payload is not None:
                payload = fault.payload
            elif kind is FaultKind.UNKNOWN_EVENT:
                payload = {"type": "fake.unknown_event", "event_id": "event_injected", "detail": "injected"}
            else:
                payload = {"type": "session.output_transcript.delta", "event_id": "event_injected"}
            text = payload if isinstance(payload, str) else _dumps(payload)
            if await self._send_raw(text):
                sess.faulty_sent.append(text)
        elif kind is FaultKind.OVERSIZED_MESSAGE:
            head = '{"type":"session.output_audio.delta","delta":"'
            fill = max(0, fault.size_bytes - len(head) - 2)
            text = head + "A" * (fill - fill % 4) + '"}'
            if await self._send_raw(text):
                sess.faulty_sent.append(f"<oversized message of {len(text)} bytes>")
        elif kind is FaultKind.HALF_OPEN:
            self.half_open = True
            self.ws.transport.pause_reading()
            keepalive = getattr(self.ws, "keepalive_task", None)
            if keepalive is not None:
                keepalive.cancel()  # a half-open peer answers no pings either
        elif kind is FaultKind.SESSION_EXPIRED:
            sess.close("expired")
            await self._write(sess.events_to_send(), reply=False)
            await self._close(1000, "session expired")
        elif kind is FaultKind.ERROR_EVENT:
            sess.error(fault.error_code, fault.error_message, type_=fault.error_type)
            await self._write(sess.events_to_send(), reply=False)
            if fault.close_after:
                await self._close(fault.close_code, fault.error_code)
        else:  # handshake kinds reach an open connection only through IMMEDIATE: nothing to do
            log.debug("fault %s ignored on an open connection", kind.value)


class FakeOpenAILiveServer:
    """A websockets server on 127.0.0.1 speaking the OpenAI Live protocol.

    Attributes tests use: ``url`` (the full endpoint), ``base_url`` (for
    ``AsyncOpenAI(base_url=...)``), ``websocket_base_url`` (for
    ``AsyncOpenAI(websocket_base_url=...)``), ``auth_headers``, ``sessions`` (newest last),
    ``session``, ``received``/``sent``/``errors`` (across sessions), ``faults``
    (``faults.fired``), ``handshakes``.
    """

    def __init__(self, config: FakeOpenAILiveConfig | None = None, **overrides: Any) -> None:
        base = config or FakeOpenAILiveConfig()
        self.config = dataclasses.replace(base, **overrides) if overrides else base
        for f in self.config.faults:
            _check_supported(f)
        self.faults = FaultBook(self.config.faults, max_fired=self.config.max_recorded_events)
        self.sessions: list[FakeLiveSession] = []
        self.connections: list[_LiveConnection] = []
        # what the handshake learned, until the handler takes it (a connection that dies first takes it along)
        self._handshakes: weakref.WeakKeyDictionary[ServerConnection, tuple[int, dict[str, str]]] = (
            weakref.WeakKeyDictionary())
        self.handshakes = 0
        self.port: int | None = None
        self._server: Server | None = None
        self._stopping = asyncio.Event()
        self._next_index = 0
        self._sent_waiters = EventWaiters()
        self._recv_waiters = EventWaiters()

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> "FakeOpenAILiveServer":
        """Bind and start serving. Idempotent."""
        if self._server is not None:
            return self
        self._stopping = asyncio.Event()
        cfg = self.config
        self._server = await ws_serve(
            self._handler, cfg.host, cfg.port,
            process_request=self._process_request,
            max_size=cfg.max_message_bytes,
            open_timeout=cfg.open_timeout_s,
            close_timeout=cfg.close_timeout_s,
            ping_interval=None,
            compression=None,
            server_header="voiceengine-fake-openai-live",
            logger=wire_logger("voiceengine.testing.openai_live.wire"),
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close every connection, cancel every task, release the port. Idempotent."""
        if self._server is None:
            return
        self._stopping.set()
        for conn in list(self.connections):
            if conn.half_open:
                conn.ws.transport.abort()  # it would not answer a close handshake
        server, self._server = self._server, None
        server.close()
        await server.wait_closed()
        self._sent_waiters.cancel_all()
        self._recv_waiters.cancel_all()

    async def __aenter__(self) -> "FakeOpenAILiveServer":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _origin(self, scheme: str) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"{scheme}://{self.config.host}:{self.port}"

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/v1/live/sessions``: the full endpoint, used as given."""
        return self._origin("ws") + self.config.path

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` for ``AsyncOpenAI(base_url=...)``."""
        return self._origin("http") + self._api_root

    @property
    def websocket_base_url(self) -> str:
        """``ws://127.0.0.1:PORT/v1`` for ``AsyncOpenAI(websocket_base_url=...)``."""
        return self._origin("ws") + self._api_root

    @property
    def _api_root(self) -> str:
        path = self.config.path
        return path[: -len("/live/sessions")] if path.endswith("/live/sessions") else path

    @property
    def auth_headers(self) -> dict[str, str]:
        """Headers that pass the auth check (the first configured key, or a dummy)."""
        key = self.config.api_keys[0] if self.config.api_keys else "sk-test-fake"
        return {"Authorization": f"Bearer {key}"}

    # ------------------------------------------------------------ faults and views
    def inject(self, fault: Fault) -> None:
        """Arm a fault; ``IMMEDIATE`` acts now on the newest live session (or ``session_index``)."""
        if not isinstance(fault, Fault):
            raise TypeError("inject() takes a Fault")
        _check_supported(fault)
        if fault.trigger is Trigger.IMMEDIATE and not fault.is_handshake:
            live = [c for c in self.connections if not c.closing
                    and (fault.session_index is None or c.index == fault.session_index)]
            if live:
                conn = live[-1]
                self.faults.record_fired(conn.index, fault)
                conn.spawn(conn.execute(fault))
                if fault.times == 1:
                    return
        self.faults.add(fault)

    @property
    def session(self) -> FakeLiveSession:
        """The newest session (LookupError before any)."""
        if not self.sessions:
            raise LookupError("no session yet")
        return self.sessions[-1]

    @property
    def received(self) -> list[dict[str, Any]]:
        return [e for s in self.sessions for e in s.received]

    @property
    def sent(self) -> list[dict[str, Any]]:
        return [e for s in self.sessions for e in s.sent]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [e for s in self.sessions for e in s.errors]

    async def wait_for(self, predicate: EventPredicate, timeout: float = 5.0, *,
                       include_past: bool = True) -> dict[str, Any]:
        """The first sent server event matching ``predicate``; TimeoutError after ``timeout`` s."""
        return await self._sent_waiters.wait(self.sent if include_past else [], predicate, timeout)

    async def wait_for_received(self, predicate: EventPredicate, timeout: float = 5.0, *,
                                include_past: bool = True) -> dict[str, Any]:
        """Like :meth:`wait_for`, over the client events received."""
        return await self._recv_waiters.wait(self.received if include_past else [], predicate, timeout)

    def notify_sent(self, event: dict[str, Any]) -> None:
        """A connection sent ``event``: wake the :meth:`wait_for` callers it matches."""
        self._sent_waiters.wake(event)

    def notify_received(self, session: FakeLiveSession) -> None:
        """``session`` handled a client event: wake the :meth:`wait_for_received` callers it matches."""
        if session.received:
            self._recv_waiters.wake(session.received[-1])

    # ------------------------------------------------------------ handshake
    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        index = self._next_index
        self._next_index += 1
        path, _, query = request.path.partition("?")
        if path != self.config.path:
            return json_response(connection, 404, _error_body("not_found", "Not found."))
        if query:
            return json_response(connection, 400, _error_body(
                "unknown_parameter", "Live takes no query parameters: send the model in session.start, "
                "not as ?model=."))
        fault = self.faults.match_handshake(index)
        if fault is not None and fault.kind is FaultKind.REJECT_HANDSHAKE:
            code, msg = _HTTP_ERRORS.get(fault.status_code, ("error", "Request refused."))
            return json_response(connection, fault.status_code, _error_body(code, msg))
        if fault is not None and fault.kind is FaultKind.HANDSHAKE_TIMEOUT:
            refusal = await hold_handshake(connection, fault, self._stopping)
            if refusal is not None:
                return refusal
        auth = request.headers.get("Authorization", "")
        key = auth[7:].strip() if auth.startswith("Bearer ") else ""
        if not key or (self.config.api_keys is not None and key not in self.config.api_keys):
            return json_response(connection, 401, _error_body(*_HTTP_ERRORS[401]))
        headers = {k: ("***" if k.lower() in _SECRET_HEADERS else v) for k, v in request.headers.raw_items()}
        self._handshakes[connection] = (index, headers)
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        index, headers = self._handshakes.pop(ws)
        session = FakeLiveSession(self.config, index=index)
        session.request_headers = headers
        self.sessions.append(session)
        if len(self.sessions) > self.config.max_recorded_sessions:
            del self.sessions[0]
        conn = _LiveConnection(self, ws, session)
        self.connections.append(conn)
        try:
            await conn.run()
        finally:
            self.connections.remove(conn)


async def serve_openai_live_async(port: int = 8766, host: str = "127.0.0.1", *,
                                  config: FakeOpenAILiveConfig | None = None,
                                  ready: Callable[[FakeOpenAILiveServer], None] | None = None) -> None:
    """Run a fake Live server until cancelled (``ready`` is called once it listens)."""
    cfg = dataclasses.replace(config or FakeOpenAILiveConfig(), host=host, port=port)
    async with FakeOpenAILiveServer(cfg) as server:
        if ready is not None:
            ready(server)
        await asyncio.Event().wait()


def serve_openai_live(port: int = 8766, host: str = "127.0.0.1", *,
                      config: FakeOpenAILiveConfig | None = None) -> None:
    """Blocking entry point (for a CLI): serve a fake Live server until Ctrl-C."""

    def announce(server: FakeOpenAILiveServer) -> None:
        print(f"fake OpenAI Live server listening on {server.url} (Ctrl-C to stop)", flush=True)

    try:
        asyncio.run(serve_openai_live_async(port, host, config=config, ready=announce))
    except KeyboardInterrupt:
        pass
