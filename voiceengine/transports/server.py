"""``serve``: one process serving phone calls, the browser page and the operational endpoints.

Routes (one port): WebSocket ``/twilio`` (:class:`TwilioMediaStreamHandler`) and
``/browser`` (:class:`BrowserHandler`); HTTP ``GET /`` (the console page and its scripts),
``/healthz`` (the process is alive), ``/readyz`` (it accepts calls: 503 while draining or
full), ``/metrics`` (Prometheus text format). Plain HTTP is answered in the WebSocket
handshake hook, so no web framework is needed.

SIGTERM (and SIGINT) drains: ``/readyz`` turns 503 and new calls are refused with 503,
running calls go on until they end or ``drain_timeout_s`` passes; the rest are closed
with 1001 (going away), then the process exits. ``--workers N`` is in
:mod:`voiceengine.transports.workers`.
"""

from __future__ import annotations

import asyncio
import http
import logging
import signal
import socket
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Protocol
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve as ws_serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ..exceptions import ConfigurationError
from .browser import BrowserHandler
from .calls import CallHost, CallObserver, CloseCode
from .twilio import TwilioMediaStreamHandler

__all__ = ["ServeConfig", "VoiceServer", "serve"]

log = logging.getLogger("voiceengine.transports.server")

_STATIC = {
    "/": ("console.html", "text/html; charset=utf-8"),
    "/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/worklets.js": ("worklets.js", "text/javascript; charset=utf-8"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeConfig:
    """Where and how to serve. ``host`` defaults to loopback: expose it on purpose.

    ``drain_timeout_s`` bounds how long running calls may go on after SIGTERM;
    ``max_message_bytes`` bounds one inbound WebSocket message (a Twilio frame is ~250 B,
    a page's audio frame ~4 KiB); ``console``: serve the console page at ``GET /``;
    ``metrics``: serve ``/metrics`` (needs prometheus_client).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    drain_timeout_s: float = 30.0
    max_message_bytes: int = 1 << 20
    open_timeout_s: float = 10.0
    console: bool = True
    metrics: bool = True
    reuse_port: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigurationError("port must be in 0..65535")
        if self.drain_timeout_s < 0 or self.max_message_bytes < 1024 or self.open_timeout_s <= 0:
            raise ConfigurationError("drain_timeout_s >= 0, max_message_bytes >= 1024, open_timeout_s > 0 required")


METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsSource(Protocol):
    def render(self) -> bytes: ...


def _prometheus_observer(host: CallHost) -> MetricsSource:
    """The host's PrometheusMetrics (installed in place of the default no-op observer)."""
    try:  # the serve extra is optional: only /metrics needs it
        from .metrics import PrometheusMetrics
    except ImportError:
        raise ConfigurationError("/metrics needs prometheus_client: pip install 'voiceengine[serve]' "
                                 "(or ServeConfig(metrics=False))") from None
    if type(host.observer) is CallObserver and not host.calls:
        host.observer = PrometheusMetrics()  # the host's default observer does nothing
    if not isinstance(host.observer, PrometheusMetrics):
        raise ConfigurationError("ServeConfig(metrics=True) needs CallHost(observer=PrometheusMetrics()) "
                                 "(or metrics=False)")
    return host.observer


def _response(status: int, body: bytes, content_type: str) -> Response:
    reason = http.HTTPStatus(status).phrase
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store")])
    return Response(status, reason, headers, body)


def _text(status: int, text: str) -> Response:
    return _response(status, (text + "\n").encode(), "text/plain; charset=utf-8")


class VoiceServer:
    """The routes above over one listening socket. ``start()``, ``drain()``, ``stop()``.

    ``host`` runs the calls; the handlers are built on it unless given. Pass ``sock`` to
    serve an already bound socket (pre-forked workers, SO_REUSEPORT groups).
    """

    def __init__(self, host: CallHost, config: ServeConfig | None = None, *,
                 twilio: TwilioMediaStreamHandler | None = None, browser: BrowserHandler | None = None,
                 sock: socket.socket | None = None) -> None:
        self.config = config or ServeConfig()
        self.host = host
        self.metrics = _prometheus_observer(host) if self.config.metrics else None
        self.twilio = twilio or TwilioMediaStreamHandler(host)
        self.browser = browser or BrowserHandler(host)
        if self.twilio.host is not host or self.browser.host is not host:
            raise ConfigurationError("the handlers must run on the server's CallHost")
        self._sock = sock
        self._server: Server | None = None
        self._static: dict[str, bytes] = {}

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    async def start(self) -> "VoiceServer":
        if self._server is not None:
            return self
        cfg = self.config
        # a socket the supervisor bound already (serve --workers) replaces host and port
        host, port = (None, None) if self._sock is not None else (cfg.host, cfg.port)
        self._server = await ws_serve(self._route, host, port, sock=self._sock, reuse_port=cfg.reuse_port,
                                      process_request=self._process_request, max_size=cfg.max_message_bytes,
                                      open_timeout=cfg.open_timeout_s, compression=None,
                                      server_header="voiceengine", ping_interval=20.0, ping_timeout=20.0)
        return self

    async def drain(self) -> None:
        """Refuse new calls, let running ones end (bounded), then close what is left."""
        if not await self.host.drain(self.config.drain_timeout_s):
            log.warning("drain: %d call(s) still running after %.0f s; closing them", len(self.host.calls),
                        self.config.drain_timeout_s)
        await self.stop()

    async def stop(self) -> None:
        """Close every connection (1001) and the listening socket. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self.host.start_draining()
        server.close(close_connections=True, code=CloseCode.GOING_AWAY, reason="server shutting down")
        await server.wait_closed()

    async def __aenter__(self) -> "VoiceServer":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------- routing
    async def _route(self, ws: ServerConnection) -> None:
        path = urlsplit(ws.request.path).path if ws.request is not None else ""
        if path == "/twilio":
            await self.twilio(ws)
        elif path == "/browser":
            await self.browser(ws)
        else:  # _process_request answered every other path before the upgrade
            await ws.close(CloseCode.POLICY, "unknown path")

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path in ("/twilio", "/browser"):
            refusal = self.host.refusal()
            if refusal is not None:
                return _text(503, refusal)
            return None  # the WebSocket handshake goes on
        if path == "/healthz":
            return _text(200, "ok")
        if path == "/readyz":
            refusal = self.host.refusal()
            return _text(503, refusal) if refusal else _text(200, "ready")
        if path == "/metrics" and self.metrics is not None:
            return _response(200, self.metrics.render(), METRICS_CONTENT_TYPE)
        if path in _STATIC and self.config.console:
            name, content_type = _STATIC[path]
            return _response(200, self._static_file(name), content_type)
        return _text(404, "not found")

    def _static_file(self, name: str) -> bytes:
        body = self._static.get(name)
        if body is None:
            body = resources.files("voiceengine.transports").joinpath("static", name).read_bytes()
            self._static[name] = body
        return body


async def serve(host: CallHost, config: ServeConfig | None = None, *,
                ready: Callable[[VoiceServer], None] | None = None, stop: asyncio.Event | None = None,
                sock: socket.socket | None = None, handle_signals: bool = True) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set), then drain and return.

    ``ready(server)`` is called once listening (``server.port`` is the bound port).
    ``handle_signals=False`` leaves the process's signal handlers alone (call it from your
    own app and set ``stop`` yourself).
    """
    server = VoiceServer(host, config, sock=sock)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if handle_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, stop.set)
                installed.append(signum)
            except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
                pass
    try:
        async with server:
            if ready is not None:
                ready(server)
            await stop.wait()
            log.info("draining: %d call(s) running", len(host.calls))
            await server.drain()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
