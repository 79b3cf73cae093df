"""``FakeGeminiLiveServer``: a local Gemini Live (BidiGenerateContent) server for tests.

::

    async with FakeGeminiLiveServer() as server:
        async with websockets.connect(server.url, additional_headers=server.auth_headers) as ws:
            ...

    async with FakeGeminiLiveServer(tls=True) as server:   # what google-genai's client needs
        client = genai.Client(api_key="key", http_options=HttpOptions(
            base_url=server.base_url, async_client_args={"ssl": server.ssl_context}))

Binds 127.0.0.1 on a free port by default. See ``docs/gemini.md``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import ssl
import weakref
from collections import deque
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve as ws_serve
from websockets.http11 import Request, Response

from ..faults import Fault, FaultBook, FaultKind, Trigger
from ..wsserver import EventPredicate, EventWaiters, hold_handshake, json_response, wire_logger
from .config import VERSIONS, FakeGeminiConfig, ToolCallScript, gemini_fault
from .connection import FakeGeminiConnection
from .session import INVALID_KEY, FakeGeminiSession, HandleStore
from .tls import SelfSignedTls

__all__ = ["FakeGeminiLiveServer", "serve_gemini", "serve_gemini_async"]

log = logging.getLogger("voiceengine.testing.gemini")


_PATH = re.compile(r"^/+ws/google\.ai\.generativelanguage\.(?P<version>v1|v1beta|v1alpha)\."
                   r"GenerativeService\.(?P<method>BidiGenerateContent|BidiGenerateContentConstrained)$")
_SECRET_HEADERS = frozenset({"x-goog-api-key", "authorization"})
_NO_IDENTITY = ("Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.")
_HTTP_ERRORS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request is missing required authentication credential."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "An internal error has occurred."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
}


def _mask(value: str) -> str:
    """``Token auth_tokens/x`` -> ``Token ***`` (the scheme stays visible), else ``***``."""
    scheme, _, token = value.partition(" ")
    return f"{scheme} ***" if token else "***"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Handshake:
    index: int
    version: str
    auth_error: str | None
    headers: dict[str, str]


class FakeGeminiLiveServer:
    """A websockets server on 127.0.0.1 speaking the Gemini Live protocol.

    Attributes tests use: ``url``, ``base_url``, ``ssl_context``, ``port``, ``auth_headers``,
    ``sessions`` (:class:`FakeGeminiSession`, newest last), ``received``/``sent`` (across
    sessions), ``faults`` (the :class:`~voiceengine.testing.faults.FaultBook`), ``handles``
    (the :class:`HandleStore`), ``connections`` (live ones), ``handshakes``.
    """

    def __init__(self, config: FakeGeminiConfig | None = None, **overrides: Any) -> None:
        base = config or FakeGeminiConfig()
        self.config = dataclasses.replace(base, **overrides) if overrides else base
        self.faults = FaultBook(self.config.faults, max_fired=self.config.max_recorded_frames)
        self.handles = HandleStore(self.config.max_handles, refuse_all=self.config.refuse_all_handles,
                                   refuse_while_open=self.config.refuse_handles_while_open)
        self.tool_scripts: deque[ToolCallScript] = deque()
        self.sessions: list[FakeGeminiSession] = []
        self.connections: list[FakeGeminiConnection] = []
        # what the handshake learned, until the handler takes it (a connection that dies first takes it along)
        self._handshakes: weakref.WeakKeyDictionary[ServerConnection, _Handshake] = weakref.WeakKeyDictionary()
        self.handshakes = 0
        self.port: int | None = None
        self._tls: SelfSignedTls | None = None
        self._server: Server | None = None
        self._stopping = asyncio.Event()
        self._sent_waiters = EventWaiters()
        self._recv_waiters = EventWaiters()
        self._next_index = 0

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> "FakeGeminiLiveServer":
        """Bind and start serving. Idempotent."""
        if self._server is not None:
            return self
        cfg = self.config
        self._stopping = asyncio.Event()
        if cfg.tls and self._tls is None:
            self._tls = SelfSignedTls.create()
        self._server = await ws_serve(
            self._handler, cfg.host, cfg.port,
            process_request=self._process_request,
            ssl=self._tls.server_context if self._tls is not None else None,
            max_size=cfg.max_message_bytes,
            open_timeout=cfg.open_timeout_s,
            close_timeout=cfg.close_timeout_s,
            ping_interval=None,
            compression=None,
            server_header="voiceengine-fake-gemini-live",
            logger=wire_logger("voiceengine.testing.gemini.wire"),
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
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

    async def __aenter__(self) -> "FakeGeminiLiveServer":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ addresses
    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT`` (``http://`` without TLS): what ``HttpOptions(base_url=)`` takes."""
        if self.port is None:
            raise RuntimeError("server not started")
        return f"{'https' if self.config.tls else 'http'}://{self.config.host}:{self.port}"

    def url_for(self, version: str = "v1beta", *, constrained: bool = False) -> str:
        """The full WebSocket URL of ``version``; ``constrained`` is the ephemeral-token method."""
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS}")
        if self.port is None:
            raise RuntimeError("server not started")
        method = "BidiGenerateContentConstrained" if constrained else "BidiGenerateContent"
        scheme = "wss" if self.config.tls else "ws"
        return (f"{scheme}://{self.config.host}:{self.port}/ws/google.ai.generativelanguage."
                f"{version}.GenerativeService.{method}")

    @property
    def url(self) -> str:
        """The full WebSocket URL a provider takes (v1beta, API-key method)."""
        return self.url_for()

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context that trusts this server's certificate (None without TLS)."""
        return self._tls.client_context if self._tls is not None else None

    @property
    def auth_headers(self) -> dict[str, str]:
        """Headers that pass the server's key check (first configured key, or a dummy)."""
        key = self.config.api_keys[0] if self.config.api_keys else "fake-gemini-key"
        return {"x-goog-api-key": key}

    # ------------------------------------------------------------ scripting and faults
    def script_tool_call(self, name: str, args: Mapping[str, Any] | None = None, *,
                         call_id: str | None = None) -> ToolCallScript:
        """Answer the next user turn with this ``toolCall``; the spoken reply follows the ``toolResponse``."""
        script = ToolCallScript(name=name, args=dict(args or {}), call_id=call_id)
        self.tool_scripts.append(script)
        return script

    def refuse_handles(self, count: int = 1) -> None:
        """Refuse the next ``count`` resumption attempts (the connection closes 1011)."""
        if count < 1:
            raise ValueError("count must be >= 1")
        self.handles.refusals += count

    def inject(self, fault: Fault) -> None:
        """Arm a fault (kinds: :data:`~voiceengine.testing.gemini.config.SUPPORTED_FAULT_KINDS`;
        event types name Gemini frames, see :func:`~voiceengine.testing.gemini.config.gemini_fault`).
        ``IMMEDIATE`` faults act now on the newest ready connection, else after the next setupComplete."""
        fault = gemini_fault(fault)
        if fault.trigger is Trigger.IMMEDIATE and not fault.is_handshake:
            live = self._live(fault.session_index)
            if live is not None:
                self.faults.record_fired(live.index, fault)
                live.spawn(live.execute(fault))
                if fault.times == 1:
                    return
        self.faults.add(fault)

    def go_away(self, time_left_s: float | None = None, *, session_index: int | None = None) -> None:
        """Send ``goAway`` on the newest ready connection now; it closes when the time is up."""
        conn = self._live(session_index)
        if conn is None:
            raise LookupError("no connection past setupComplete to send goAway on")
        left = self.config.go_away_time_left_s if time_left_s is None else time_left_s
        conn.spawn(conn.go_away(left))

    def _live(self, session_index: int | None) -> FakeGeminiConnection | None:
        live = [c for c in self.connections if not c.closing and c.ready.is_set()
                and (session_index is None or c.index == session_index)]
        return live[-1] if live else None

    # ------------------------------------------------------------ views
    @property
    def received(self) -> list[dict[str, Any]]:
        """Client frames handled, across sessions (camelCase keys, oldest first)."""
        return [f for s in self.sessions for f in s.received]

    @property
    def sent(self) -> list[dict[str, Any]]:
        """Well-formed server frames sent, across sessions (oldest first)."""
        return [f for s in self.sessions for f in s.sent]

    @property
    def input_audio_bytes(self) -> int:
        """Input audio bytes handled, across sessions."""
        return sum(s.input_audio_bytes for s in self.sessions)

    @property
    def session(self) -> FakeGeminiSession:
        """The newest session (raises when none connected yet)."""
        if not self.sessions:
            raise LookupError("no session yet")
        return self.sessions[-1]

    # ------------------------------------------------------------ waiting
    async def wait_for(self, predicate: EventPredicate, timeout: float = 5.0, *,
                       include_past: bool = True) -> dict[str, Any]:
        """The first sent server frame matching ``predicate``. Raises ``TimeoutError``."""
        return await self._sent_waiters.wait(self.sent if include_past else [], predicate, timeout)

    async def wait_for_received(self, predicate: EventPredicate, timeout: float = 5.0, *,
                                include_past: bool = True) -> dict[str, Any]:
        """Like :meth:`wait_for`, over client frames the server handled."""
        return await self._recv_waiters.wait(self.received if include_past else [], predicate, timeout)

    def _notify_sent(self, session: FakeGeminiSession, frame: Mapping[str, Any]) -> None:
        if self._sent_waiters:
            self._sent_waiters.wake(dict(frame))

    def _notify_received(self, session: FakeGeminiSession, frame: Mapping[str, Any]) -> None:
        if self._recv_waiters:
            self._recv_waiters.wake(dict(frame))

    # ------------------------------------------------------------ handshake
    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        index = self._next_index
        self._next_index += 1
        parts = urlsplit(request.path)
        match = _PATH.match(parts.path)
        if match is None:
            return self._respond(connection, 404, "NOT_FOUND", f"Method not found: {parts.path}")
        fault = self.faults.match_handshake(index)
        if fault is not None and fault.kind is FaultKind.REJECT_HANDSHAKE:
            status, message = _HTTP_ERRORS.get(fault.status_code, ("UNKNOWN", "Request refused."))
            return self._respond(connection, fault.status_code, status, message)
        if fault is not None and fault.kind is FaultKind.HANDSHAKE_TIMEOUT:
            refusal = await hold_handshake(connection, fault, self._stopping)
            if refusal is not None:
                return refusal
        self._handshakes[connection] = _Handshake(
            index=index, version=match["version"],
            auth_error=self._auth_error(request, parts.query, constrained=match["method"].endswith("Constrained")),
            # never keep a key: headers are stored masked
            headers={k: (_mask(v) if k.lower() in _SECRET_HEADERS else v) for k, v in request.headers.raw_items()})
        return None

    def _auth_error(self, request: Request, query: str, *, constrained: bool) -> str | None:
        if constrained:
            scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
            credential = credential.strip() if scheme == "Token" else ""
        else:
            credential = request.headers.get("x-goog-api-key", "") or parse_qs(query).get("key", [""])[0]
        if not credential:
            return _NO_IDENTITY
        allowed = self.config.api_keys
        if allowed is not None and credential not in allowed:
            return INVALID_KEY
        return None

    @staticmethod
    def _respond(connection: ServerConnection, status: int, code: str, message: str) -> Response:
        return json_response(connection, status, json.dumps({"error": {"code": status, "message": message, "status": code}}))

    async def _handler(self, ws: ServerConnection) -> None:
        shake = self._handshakes.pop(ws)
        session = FakeGeminiSession(self.config, index=shake.index, handles=self.handles,
                                    tool_scripts=self.tool_scripts, auth_error=shake.auth_error,
                                    path_version=shake.version)
        session.request_headers = shake.headers
        self.sessions.append(session)
        if len(self.sessions) > self.config.max_recorded_sessions:
            del self.sessions[0]
        conn = FakeGeminiConnection(ws, session, config=self.config, faults=self.faults,
                                    on_sent=self._notify_sent, on_received=self._notify_received,
                                    on_closing=self.handles.open_sessions.discard)
        self.connections.append(conn)
        self.handles.open_sessions.add(shake.index)
        try:
            await conn.run()
        finally:
            self.handles.open_sessions.discard(shake.index)
            self.connections.remove(conn)


async def serve_gemini_async(port: int = 8766, host: str = "127.0.0.1", *, config: FakeGeminiConfig | None = None,
                             ready: Callable[[FakeGeminiLiveServer], None] | None = None) -> None:
    """Run a fake Gemini Live server until cancelled."""
    cfg = dataclasses.replace(config or FakeGeminiConfig(), host=host, port=port)
    async with FakeGeminiLiveServer(cfg) as server:
        if ready is not None:
            ready(server)
        await asyncio.Event().wait()


def serve_gemini(port: int = 8766, host: str = "127.0.0.1", *, config: FakeGeminiConfig | None = None) -> None:
    """Blocking entry point (``voiceengine fake-server --provider gemini``): serve until Ctrl-C."""
    def announce(server: FakeGeminiLiveServer) -> None:
        print(f"fake Gemini Live server listening on {server.url} (Ctrl-C to stop)", flush=True)

    try:
        asyncio.run(serve_gemini_async(port, host, config=config, ready=announce))
    except KeyboardInterrupt:
        pass
