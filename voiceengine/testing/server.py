"""``FakeRealtimeServer``: a local OpenAI Realtime (GA) server for tests, with fault injection.

::

    async with FakeRealtimeServer(FakeServerConfig(responses=["Hello there."])) as server:
        async with websockets.connect(server.url, additional_headers=server.auth_headers) as ws:
            ...
        await server.wait_for(lambda ev: ev["type"] == "response.done")

Binds 127.0.0.1 on a free port by default. See ``docs/fake_server.md``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import weakref
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve as ws_serve
from websockets.http11 import Request, Response

from .config import AuthFailureMode, FakeServerConfig
from .connection import FakeConnection
from .faults import Fault, FaultBook, FaultKind, Trigger
from .session import FakeSession
from .wsserver import EventPredicate, EventWaiters, hold_handshake, json_response, wire_logger

__all__ = ["FakeRealtimeServer", "serve"]

log = logging.getLogger("voiceengine.testing.server")


def _error_body(code: str, message: str, type_: str = "invalid_request_error") -> str:
    return json.dumps({"error": {"message": message, "type": type_, "code": code, "param": None}})


_HTTP_ERRORS = {
    401: ("invalid_api_key", "Incorrect API key provided."),
    403: ("unsupported_country_region_territory", "Country, region, or territory not supported."),
    429: ("rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", "The server had an error while processing your request."),
    503: ("service_unavailable", "The engine is currently overloaded, please try again later."),
}



#: request headers that carry a key (OpenAI's bearer token, Azure's api-key)
_SECRET_HEADERS = frozenset({"authorization", "api-key"})


def _mask_header(value: str) -> str:
    """``Bearer sk-...`` -> ``Bearer ***`` (the scheme stays visible to tests), else ``***``."""
    scheme, _, token = value.partition(" ")
    return f"{scheme} ***" if token else "***"



class FakeRealtimeServer:
    """A websockets server on 127.0.0.1 speaking the OpenAI Realtime GA protocol.

    Attributes tests use: ``url``, ``port``, ``auth_headers``, ``sessions`` (list of
    :class:`FakeSession`, newest last), ``received``/``sent``/``errors`` (across sessions),
    ``faults`` (the :class:`FaultBook`; ``faults.fired`` lists the last
    ``max_recorded_events`` that fired, ``faults.fired_total`` counts them all), ``connections``
    (live :class:`FakeConnection` objects), ``handshakes`` (count of upgrade requests).
    ``on_session``, when set, is called with each new :class:`FakeSession` before it runs
    (``sessions`` keeps only the last ``max_recorded_sessions``; this sees every one).

    A closed session drops its live state at once (:meth:`FakeSession.release_live_state`)
    and stays in ``sessions`` only as ``keep_closed_sessions`` allows. What survives every
    session are counters: ``sessions_started``, ``sessions_closed``, and the byte totals
    ``input_audio_bytes``/``ignored_audio_bytes`` (which include sessions no longer kept).
    """

    def __init__(self, config: FakeServerConfig | None = None, **overrides: Any) -> None:
        base = config or FakeServerConfig()
        self.config = dataclasses.replace(base, **overrides) if overrides else base
        self.faults = FaultBook(self.config.faults, max_fired=self.config.max_recorded_events)
        self.sessions: list[FakeSession] = []
        self.connections: list[FakeConnection] = []
        # what the handshake learned, until the handler takes it (a connection that dies first takes it along)
        self._handshakes: weakref.WeakKeyDictionary[ServerConnection, tuple[int, bool, str | None, dict[str, str]]] = (
            weakref.WeakKeyDictionary())
        self.handshakes = 0
        self.on_session: Callable[[FakeSession], None] | None = None
        self._server: Server | None = None
        self._stopping = asyncio.Event()  # created here: asyncio.Event binds no loop until awaited
        self._sent_waiters = EventWaiters()
        self._recv_waiters = EventWaiters()
        self._next_index = 0
        self.sessions_started = 0
        self.sessions_closed = 0
        # byte totals of the sessions no longer in ``sessions``
        self._dropped_input_audio_bytes = 0
        self._dropped_ignored_audio_bytes = 0
        self.port: int | None = None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> "FakeRealtimeServer":
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
            ping_interval=cfg.ping_interval_s,
            compression=None,
            server_header="voiceengine-fake-realtime",
            logger=wire_logger("voiceengine.testing.wire"),
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close every connection, cancel every task started, release the port. Idempotent."""
        if self._server is None:
            return
        self._stopping.set()
        for conn in list(self.connections):
            if conn.half_open or conn.stalled:
                conn.abort()  # they would not answer a close handshake
        server, self._server = self._server, None
        server.close()
        await server.wait_closed()
        self._sent_waiters.cancel_all()
        self._recv_waiters.cancel_all()

    async def __aenter__(self) -> "FakeRealtimeServer":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """``ws://host:port/v1/realtime`` (append ``?model=`` if you like)."""
        if self.port is None:
            raise RuntimeError("server not started")
        return f"ws://{self.config.host}:{self.port}{self.config.path}"

    @property
    def auth_headers(self) -> dict[str, str]:
        """Headers that pass the server's auth check (first configured key, or a dummy)."""
        key = self.config.api_keys[0] if self.config.api_keys else "sk-test-fake"
        return {"Authorization": f"Bearer {key}"}

    # ------------------------------------------------------------ faults
    def inject(self, fault: Fault) -> None:
        """Arm a fault (see :mod:`voiceengine.testing.faults` for kinds and triggers).

        ``IMMEDIATE`` faults act now on the newest live session (or ``fault.session_index``);
        with no live session they wait for the next ``session.created``.
        """
        if not isinstance(fault, Fault):
            raise TypeError("inject() takes a Fault")
        if fault.trigger is Trigger.IMMEDIATE and not fault.is_handshake:
            live = [c for c in self.connections if not c.closing and c.auth_ok
                    and (fault.session_index is None or c.index == fault.session_index)]
            if live:
                conn = live[-1]
                self.faults.record_fired(conn.index, fault)
                conn.spawn(conn.execute(fault))
                if fault.times == 1:
                    return
        self.faults.add(fault)

    # ------------------------------------------------------------ views
    @property
    def received(self) -> list[dict[str, Any]]:
        """Client events received, across sessions (oldest first)."""
        return [e for s in self.sessions for e in s.received]

    @property
    def sent(self) -> list[dict[str, Any]]:
        """Well-formed server events sent, across sessions (oldest first)."""
        return [e for s in self.sessions for e in s.sent]

    @property
    def errors(self) -> list[dict[str, Any]]:
        """``error`` events sent, across sessions."""
        return [e for s in self.sessions for e in s.errors]

    @property
    def input_audio_bytes(self) -> int:
        """Input audio bytes the server accepted (handled appends), across every session (one
        dropped while still live, past ``max_recorded_sessions``, counts what it had by then)."""
        return self._dropped_input_audio_bytes + sum(s.input_audio_bytes for s in self.sessions)

    @property
    def ignored_audio_bytes(self) -> int:
        """Input audio bytes that arrived but were not handled (stalls, fault triggers),
        across every session (of the ones no longer kept, as far as they were recorded)."""
        return self._dropped_ignored_audio_bytes + sum(s.ignored_audio_bytes for s in self.sessions)

    @property
    def session(self) -> FakeSession:
        """The newest session (raises when none connected yet)."""
        if not self.sessions:
            raise LookupError("no session yet")
        return self.sessions[-1]

    # ------------------------------------------------------------ waiting
    async def wait_for(self, predicate: EventPredicate, timeout: float = 5.0, *,
                       include_past: bool = True) -> dict[str, Any]:
        """The first sent server event matching ``predicate`` (already sent ones count when
        ``include_past``). Raises ``TimeoutError`` after ``timeout`` seconds."""
        return await self._sent_waiters.wait(self.sent if include_past else [], predicate, timeout)

    async def wait_for_received(self, predicate: EventPredicate, timeout: float = 5.0, *,
                                include_past: bool = True) -> dict[str, Any]:
        """Like :meth:`wait_for`, over client events the server received."""
        return await self._recv_waiters.wait(self.received if include_past else [], predicate, timeout)

    async def wait_for_session(self, timeout: float = 5.0) -> FakeSession:
        """Wait until ``session.created`` went out on some connection; returns that session."""
        ev = await self.wait_for(lambda e: e.get("type") == "session.created", timeout)
        for s in self.sessions:
            if s.session["id"] == ev["session"]["id"]:
                return s
        raise LookupError("session vanished")  # pragma: no cover - capped history only

    def _notify_sent(self, session: FakeSession, ev: dict[str, Any]) -> None:
        if self._sent_waiters:
            self._sent_waiters.wake(ev)

    def _notify_received(self, session: FakeSession) -> None:
        if self._recv_waiters and session.received:
            self._recv_waiters.wake(session.received[-1])

    # ------------------------------------------------------------ handshake
    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        index = self._next_index
        self._next_index += 1
        parts = urlsplit(request.path)
        if parts.path != self.config.path:
            return connection.respond(404, _error_body("not_found", "Not found."))
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
        ok = bool(key) and (self.config.api_keys is None or key in self.config.api_keys)
        if not ok and self.config.auth_failure is AuthFailureMode.HTTP_401:
            return json_response(connection, 401, _error_body(*_HTTP_ERRORS[401]))
        model = parse_qs(parts.query).get("model", [None])[0]
        # Never keep the key: headers are stored scrubbed.
        headers = {k: (_mask_header(v) if k.lower() in _SECRET_HEADERS else v) for k, v in request.headers.raw_items()}
        self._handshakes[connection] = (index, ok, model, headers)
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        index, ok, model, headers = self._handshakes.pop(ws)
        session = FakeSession(self.config, index=index, model=model)
        session.request_headers = headers
        if self.on_session is not None:
            self.on_session(session)
        self.sessions.append(session)
        self.sessions_started += 1
        if len(self.sessions) > self.config.max_recorded_sessions:
            self._drop(self.sessions[0])
        conn = FakeConnection(ws, session, config=self.config, faults=self.faults, on_sent=self._notify_sent,
                              on_received=self._notify_received, auth_ok=ok)
        self.connections.append(conn)
        try:
            await conn.run()
        finally:
            self.connections.remove(conn)
            self._retire(session)

    def _retire(self, session: FakeSession) -> None:
        """A session's connection ended: free its live state, keep it only as configured."""
        session.release_live_state()
        self.sessions_closed += 1
        keep = self.config.keep_closed_sessions
        if keep is None:
            return
        closed = [s for s in self.sessions if s.finished]
        for old in closed[: max(0, len(closed) - keep)]:
            self._drop(old)

    def _drop(self, session: FakeSession) -> None:
        self._dropped_input_audio_bytes += session.input_audio_bytes
        self._dropped_ignored_audio_bytes += session.ignored_audio_bytes
        self.sessions.remove(session)


async def serve_async(port: int = 8765, host: str = "127.0.0.1", *, config: FakeServerConfig | None = None,
                      ready: Callable[[FakeRealtimeServer], None] | None = None) -> None:
    """Run a fake server until cancelled."""
    cfg = dataclasses.replace(config or FakeServerConfig(), host=host, port=port)
    async with FakeRealtimeServer(cfg) as server:
        if ready is not None:
            ready(server)
        await asyncio.Event().wait()


def serve(port: int = 8765, host: str = "127.0.0.1", *, config: FakeServerConfig | None = None) -> None:
    """Blocking entry point for ``voiceengine fake-server --port N``: serve until Ctrl-C."""
    def announce(server: FakeRealtimeServer) -> None:
        print(f"fake Realtime server listening on {server.url} (Ctrl-C to stop)", flush=True)

    try:
        asyncio.run(serve_async(port, host, config=config, ready=announce))
    except KeyboardInterrupt:
        pass
