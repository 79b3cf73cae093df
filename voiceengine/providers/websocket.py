"""The provider-neutral WebSocket transport: the only client-side ``websockets`` import.

Every WebSocket provider (OpenAI Realtime, OpenAI Live, Gemini Live) opens its connection
here and gets a :class:`WebSocketTransport`, the
:class:`~voiceengine.providers.interfaces.Transport` the runtime drives. Providers supply
only the URL, the handshake headers and the name of their wire logger.

Decisions, and why:

* ``max_size`` is always explicit (the config's ``max_size_bytes``): websockets' 1 MiB
  default is too small for a reply's audio, and ``None`` (unlimited) is a memory hazard.
* ``compression=None``: base64 audio barely compresses and deflate costs CPU and memory
  per connection.
* Redirects are refused: websockets >= 14 follows 3xx responses by default, which would
  let a redirect move the connection (and, same-origin, the credential header) to a URL
  nobody configured. :class:`_NoRedirectConnect` turns every 3xx into an error.
* Handshake logging goes to the provider's wire logger, which carries a scrubbing filter:
  websockets logs request headers at DEBUG, and frame dumps would show audio. The key
  never reaches a handler.
* A handshake failure is raised without cause, context or inner frames: those hold the
  request headers (the key, in clear), and error reporters record frame locals.
* Both directions have a fast path beside websockets' own ``send``/``recv``: outbound,
  the messages ready at one moment framed here and written with one socket write
  (:meth:`WebSocketTransport.send_nowait`); inbound, each whole message handed to the
  runtime from the socket's read callback (:meth:`WebSocketTransport.push_to`), with no
  wake-up of a reader task and no queue per message. Whatever the fast paths decline
  (flow control, a closing connection, a fragmented message, invalid UTF-8, control
  frames) stays websockets' business, with its checks and close codes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
from typing import Any, Callable, Protocol, Sequence
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as _ws_connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    ProxyError,
    SecurityError,
)
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from .._audio.wsframe import ClientFramer, push_messages
from ..exceptions import ConnectionFailed
from ..secrets import SecretScrubbingFilter, scrub
from .interfaces import CloseInfo, TransportClosed
from .interfaces import Frame as WireFrame

__all__ = [
    "WebSocketSettings",
    "WebSocketTransport",
    "close_info",
    "handshake_error",
    "open_connection",
    "open_transport",
    "wire_logger",
]

#: Handshake statuses worth retrying; every other refusal is a configuration problem
#: (bad key, no access, unknown model) that retrying cannot fix.
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

log = logging.getLogger("voiceengine.providers.websocket")

_DATA = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.CONT})  # frames whose payload is app data


class WebSocketSettings(Protocol):
    """The connection limits every WebSocket provider config carries."""

    @property
    def max_size_bytes(self) -> int: ...
    @property
    def ping_interval_s(self) -> float | None: ...
    @property
    def ping_timeout_s(self) -> float | None: ...
    @property
    def open_timeout_s(self) -> float: ...
    @property
    def close_timeout_s(self) -> float: ...
    @property
    def is_loopback(self) -> bool: ...


# --------------------------------------------------------------------------- logging


class _WireLogFilter(SecretScrubbingFilter):
    """Scrubs secrets and shortens websockets' frame dumps to opcode + length.

    websockets logs ``"> %s"``/``"< %s"`` with a :class:`Frame` argument whose str shows the
    first bytes of the payload: for ``input_audio_buffer.append`` that is audio.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 1 and isinstance(args[0], Frame) and args[0].opcode in _DATA:
            frame = args[0]
            direction = str(record.msg)[:1]
            record.msg = "%s %s [%d bytes]"
            record.args = (direction, frame.opcode.name, len(frame.data))
        return super().filter(record)


def wire_logger(name: str) -> logging.Logger:
    """The logger ``name`` handed to websockets (with the scrubbing filter attached once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, _WireLogFilter) for f in logger.filters):
        logger.addFilter(_WireLogFilter())
    return logger


# --------------------------------------------------------------------------- connection


_HEAD_END = b"\r\n\r\n"
# RFC 6455 5.2 frame header fields, for the read path's framing (the write path's is
# voiceengine._audio.wsframe)
_OP_BINARY = 0x2  # the highest data opcode (continuation 0x0, text 0x1; control frames are >= 0x8)
_FIN = 0x80
_RSV = 0x70
_OPCODE = 0x0F
_MASK_BIT = 0x80
_LENGTH = 0x7F


#: The receive buffer's size: asyncio's own read size for a plain protocol.
_READ_BUFFER_BYTES = 256 * 1024


class _ReadBuffer:
    """A thread's receive buffer, shared by its connections.

    A plain asyncio protocol gets each read as a fresh ``bytes`` of up to 256 KiB: unless
    the process has raised glibc's dynamic mmap threshold, glibc serves that size with
    ``mmap``, shrinks it with ``mremap`` and frees it with ``munmap``, and the kernel faults
    fresh zeroed pages in for every read (about 8 % of a client's CPU at 50 sessions,
    docs/performance.md). A buffered protocol reads into this one instead. A read is
    framed and every byte that outlives it copied out (messages, frames for websockets, an
    incomplete frame) before the read callback returns, so one buffer serves every
    connection of the thread; ``busy`` covers a read started while another is being framed
    (a sink that drives I/O itself), which gets a buffer of its own.
    """

    __slots__ = ("busy", "view")

    def __init__(self) -> None:
        self.view = memoryview(bytearray(_READ_BUFFER_BYTES))
        self.busy = False


class _ThreadReadBuffers(threading.local):
    def __init__(self) -> None:
        self.buffer = _ReadBuffer()


_read_buffers = _ThreadReadBuffers()


def _max_message_size(protocol: Any) -> int | None:
    """websockets' inbound message limit (its attribute changed name across versions)."""
    size = getattr(protocol, "max_message_size", getattr(protocol, "max_size", None))
    return size if isinstance(size, int) else None


class _PushingConnection(ClientConnection, asyncio.BufferedProtocol):
    """websockets' client connection with an inbound fast path: whole messages handed to a
    callback (``sink``) from the socket's read callback, framed here.

    It is a buffered protocol: the socket is read into the thread's shared buffer
    (:class:`_ReadBuffer`), not into a fresh ``bytes`` per read.

    After the handshake this class delimits the server's frames itself and websockets'
    parser only ever gets whole frames, so it always stands at a frame boundary: a plain
    unfragmented text (valid UTF-8) or binary message goes to the sink while one is set;
    every other frame (control frames, fragments, anything websockets must judge) is
    handed to websockets, exactly as it arrived. A data frame handed over ends pushing
    (:meth:`stop_push`): ``recv()`` must take it, and everything after it, in order.
    Anything out of the ordinary (a masked or oversized frame, reserved bits, a closing
    connection) hands websockets the rest of the stream for good (:attr:`_framing` off),
    so its checks and close codes apply unchanged.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sink: Callable[[str | bytes], None] | None = None
        self.push_ended: asyncio.Future[None] | None = None
        limit = _max_message_size(self.protocol)
        self._max_size = limit or 0
        #: None: the handshake response is not complete yet; then whether we frame (never
        #: without a limit to enforce: websockets keeps the stream)
        self._framing: bool | None = None if limit else False
        self._pending = bytearray()  # an incomplete frame (or the response head so far)
        self._fragmented = False  # websockets is assembling a fragmented message
        self._shared_read = _read_buffers.buffer  # the thread running the loop (it builds us)
        self._read_view = self._shared_read.view

    # ------------------------------------------------------------------ pushing
    def start_push(self, sink: Callable[[str | bytes], None]) -> asyncio.Future[None] | None:
        # Messages already queued for recv() must be received first (order); a closing or
        # closed connection is recv()'s to report.
        # Without our framing (a websockets without the attributes it needs) there is no
        # fast path: recv() takes everything.
        queued = getattr(self.recv_messages, "frames", None)  # (websockets' queue of parsed frames)
        if (not self._framing or self.protocol.state is not State.OPEN or queued is None or len(queued)
                or self._fragmented):
            return None
        self.sink = sink
        self.push_ended = ended = self.loop.create_future()
        return ended

    def stop_push(self) -> None:
        self.sink = None
        ended, self.push_ended = self.push_ended, None
        if ended is not None and not ended.done():
            ended.set_result(None)

    # ------------------------------------------------------------------ reading
    def get_buffer(self, sizehint: int) -> memoryview:
        shared = self._shared_read
        self._read_view = view = (memoryview(bytearray(_READ_BUFFER_BYTES)) if shared.busy
                                  else shared.view)
        return view

    def buffer_updated(self, nbytes: int) -> None:
        shared = self._shared_read
        outer, shared.busy = shared.busy, True
        try:
            if self._framing:
                self._frames_received(self._read_view, nbytes)
            else:
                with self._read_view[:nbytes] as data:
                    self.data_received(data)
        finally:
            shared.busy = outer

    def data_received(self, data: bytes | memoryview) -> None:
        framing = self._framing
        if framing:
            self._frames_received(data, len(data))
        elif framing is None:
            self._head_received(bytes(data))
        else:
            super().data_received(bytes(data))

    def eof_received(self) -> None:
        self._hand_over_stream()
        super().eof_received()

    def _head_received(self, data: bytes) -> None:
        """Until the handshake response is complete: give websockets exactly its head."""
        pending = self._pending
        seen = len(pending)
        pending += data
        end = pending.find(_HEAD_END, max(0, seen - 3))
        if end < 0:
            if len(pending) > 65536:  # no head end in sight: websockets judges the response
                self._hand_over_stream()
            return
        end += len(_HEAD_END)
        head, rest = bytes(pending[:end]), bytes(pending[end:])
        pending.clear()
        super().data_received(head)
        if self.protocol.state is State.OPEN:  # 101: frames follow (a 101 has no body)
            self._framing = True
            if rest:
                self._frames_received(rest, len(rest))
        else:  # refused: the body and everything else are websockets'
            self._framing = False
            if rest:
                super().data_received(rest)

    def _hand_over_stream(self) -> None:
        """From here on websockets parses the raw stream (it stands at a frame boundary)."""
        self._framing = False
        if self._pending:
            rest = bytes(self._pending)
            self._pending.clear()
            super().data_received(rest)

    def _frames_received(self, data: bytes | memoryview, nbytes: int) -> None:
        """Frames ``data[:nbytes]`` (which may be the shared read buffer: nothing keeps a view
        of it). The plain messages go to the sink through the compiled walk
        (:func:`~voiceengine._audio.wsframe.push_messages`); each frame it leaves is judged
        here: incomplete (kept for the next read), refused (the stream handed over), or
        websockets' to take (a control frame, a fragment, invalid UTF-8, a data frame
        while nothing is pushed)."""
        pending = self._pending
        carried = bool(pending)  # an incomplete frame from the last read comes first
        if carried:
            with memoryview(data)[:nbytes] as read:
                pending += read
            buf: bytes | bytearray | memoryview = pending
            size = len(pending)
        else:
            buf, size = data, nbytes
        pos = 0
        hand_over = self.protocol.state is not State.OPEN  # closing: websockets discards the rest
        max_size = self._max_size
        with memoryview(buf) as view:
            while not hand_over and size - pos >= 2:
                if self.sink is not None and not self._fragmented:
                    pos = push_messages(view, pos, max_size, self, size)
                    if size - pos < 2:
                        break
                first, second = view[pos], view[pos + 1]
                length = second & _LENGTH
                start = pos + 2
                if length >= 126:
                    width = 2 if length == 126 else 8
                    if size - start < width:
                        break
                    length = int.from_bytes(view[start:start + width], "big")
                    start += width
                if second & _MASK_BIT or first & _RSV or length > max_size:
                    hand_over = True  # websockets' to refuse: a server never masks, no extensions
                    break
                end = start + length
                if end > size:
                    break  # the rest of this frame is still on its way
                if (first & _OPCODE) <= _OP_BINARY:  # a data frame websockets queues: recv() takes it, in order
                    self.stop_push()
                    self._fragmented = not first & _FIN
                frame = bytes(view[pos:end])
                pos = end
                super().data_received(frame)
                hand_over = self.protocol.state is not State.OPEN
            if not carried and pos < size:
                pending += view[pos:size]  # an incomplete frame waits for the rest
        if carried:  # (after the view of it is released)
            if pos == size:
                self._pending = bytearray()  # not the capacity a large frame left behind
            else:
                del pending[:pos]
        if hand_over:
            self._hand_over_stream()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.stop_push()  # recv() now raises ConnectionClosed with the close frames


# --------------------------------------------------------------------------- handshake


class _NoRedirectConnect(_ws_connect):
    """websockets' ``connect`` with redirect following disabled: a 3xx is an error."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


def _error_code_from_body(body: bytes | bytearray | None) -> str | None:
    """The ``error.code`` of a JSON error body (OpenAI answers 401 with one), if any."""
    if not body:
        return None
    try:
        payload = json.loads(body[:65536])
    except (ValueError, UnicodeDecodeError):
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and len(code) <= 100 else None


def handshake_error(exc: BaseException) -> ConnectionFailed:
    """Map an exception raised while opening the connection to :class:`ConnectionFailed`.

    401/403 (and other 4xx) are fatal: retrying with the same key or URL cannot help.
    408/425/429/5xx, timeouts and socket errors are retryable. Messages are scrubbed.
    """
    if isinstance(exc, ConnectionFailed):
        return exc
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        body_code = _error_code_from_body(exc.response.body)
        if 300 <= status < 400:
            return ConnectionFailed(
                f"handshake refused: HTTP {status} redirect (redirects are not followed)",
                code="redirect_refused", status_code=status, retryable=False, fatal=True,
            )
        retryable = status in _RETRYABLE_STATUS
        return ConnectionFailed(
            f"handshake refused: HTTP {status}" + (f" ({body_code})" if body_code else ""),
            code=body_code or f"http_{status}", status_code=status, retryable=retryable,
            fatal=not retryable,
        )
    if isinstance(exc, TimeoutError):
        return ConnectionFailed("timed out opening the connection", code="timeout", retryable=True)
    if isinstance(exc, InvalidURI):
        return ConnectionFailed(f"invalid URL: {scrub(str(exc))}", code="invalid_url", retryable=False, fatal=True)
    if isinstance(exc, (SecurityError, ProxyError)):
        return ConnectionFailed(f"handshake failed: {scrub(str(exc))}", code="handshake_failed", retryable=False,
                                fatal=True)
    if isinstance(exc, InvalidHandshake):
        return ConnectionFailed(f"handshake failed: {scrub(str(exc))}", code="handshake_failed", retryable=True)
    if isinstance(exc, ConnectionClosed):
        return ConnectionFailed("connection closed during the handshake", code="closed", retryable=True)
    if isinstance(exc, ssl.SSLCertVerificationError):  # the default context verifies: never retry blindly
        return ConnectionFailed(f"TLS certificate verification failed: {scrub(str(exc.verify_message or exc))}",
                                code="tls_verify_failed", retryable=False, fatal=True)
    if isinstance(exc, OSError):
        return ConnectionFailed(f"cannot connect: {type(exc).__name__}: {scrub(str(exc))}", code="os_error",
                                retryable=True)
    return ConnectionFailed(f"cannot connect: {type(exc).__name__}", code="unexpected", retryable=False)


async def open_connection(url: str, headers: list[tuple[str, str]], settings: WebSocketSettings, *,
                          wire_logger_name: str, **overrides: Any) -> ClientConnection:
    """Open the WebSocket (handshake done, keepalive running) or raise :class:`ConnectionFailed`.

    ``overrides`` go to :func:`websockets.asyncio.client.connect` (tests; e.g. ``ssl=``).
    The caller owns the connection and must close it.
    """
    options: dict[str, Any] = dict(
        additional_headers=headers,
        user_agent_header="voiceengine (websockets)",
        compression=None,
        max_size=settings.max_size_bytes,
        ping_interval=settings.ping_interval_s,
        ping_timeout=settings.ping_timeout_s,
        open_timeout=settings.open_timeout_s,
        close_timeout=settings.close_timeout_s,
        logger=wire_logger(wire_logger_name),
        create_connection=_PushingConnection,
    )
    if settings.is_loopback:
        options["proxy"] = None  # a system proxy must not see loopback test traffic
    options.update(overrides)
    try:
        return await _NoRedirectConnect(url, **options)
    except Exception as exc:
        failure = handshake_error(exc)
        log.debug("connect to %s failed: %s", urlsplit(url).netloc, failure.message)
    # Raised outside the ``except`` block, with no cause, no context and no inner frames:
    # the original exception and the frames below this one hold the request headers (the
    # key, in clear), and error reporters record tracebacks with their locals.
    del options, headers
    failure.__cause__ = failure.__context__ = None
    raise failure.with_traceback(None)


# --------------------------------------------------------------------------- closing


def close_info(connection: ClientConnection, exc: BaseException | None = None) -> CloseInfo:
    """The close code/reason received on a closed connection (1006 if the peer sent none).

    ``exc`` is the :class:`ConnectionClosed` raised by ``recv`` when there is one: its
    ``rcvd`` frame is authoritative even before the socket is fully torn down.
    """
    if isinstance(exc, ConnectionClosed):
        # When we started the close (message too big, keepalive timeout, protocol error),
        # our code says what happened; the peer's echo, if any, only repeats it.
        if exc.sent is not None and (exc.rcvd is None or exc.rcvd_then_sent is False):
            return CloseInfo(code=int(exc.sent.code), reason=scrub(exc.sent.reason)[:200], local=True)
        if exc.rcvd is not None:
            return CloseInfo(code=int(exc.rcvd.code), reason=scrub(exc.rcvd.reason)[:200])
        return CloseInfo(code=1006, reason="")
    code = connection.close_code
    reason = connection.close_reason or ""
    return CloseInfo(code=1006 if code is None else int(code), reason=scrub(reason)[:200])


#: slack over ``close_timeout_s`` before the transport is aborted: websockets' own close
#: timeout does not cover a write buffer that a half-open peer never drains
_CLOSE_SLACK_S = 0.05


class WebSocketTransport:
    """One open WebSocket as a :class:`~voiceengine.providers.interfaces.Transport`.

    ``close`` is bounded by ``close_timeout_s`` (+50 ms) even against a peer that never
    drains its socket: then the TCP connection is aborted.

    :meth:`send_nowait` is the runtime's fast path (:class:`~.interfaces.BatchTransport`):
    the messages ready at one moment framed here and written in one ``transport.write``.
    :meth:`push_to` is its inbound one (:class:`~.interfaces.PushTransport`): each message
    handed to a callback from the socket's read callback.
    """

    __slots__ = ("connection", "close_timeout_s", "_framer")

    def __init__(self, connection: ClientConnection, *, close_timeout_s: float) -> None:
        self.connection = connection
        self.close_timeout_s = close_timeout_s
        self._framer = ClientFramer()

    def send_nowait(self, frames: Sequence[WireFrame], /) -> bool:
        """Write ``frames`` (one WebSocket message each, in order) at once, or nothing.

        Returns ``False``, having written nothing, whenever websockets' own :meth:`send`
        must decide: the connection not open (closing, closed: ``send`` raises), writing
        paused by flow control (``send`` waits for the drain), a fragmented message in
        progress, extensions negotiated, or frame logging on (websockets logs each frame
        it sends). Otherwise frames each message as websockets would (FIN, unfragmented,
        masked with a fresh random key from ``os.urandom``), all in one buffer
        (:class:`~voiceengine._audio.wsframe.ClientFramer`), and hands them to the socket in
        a single ``transport.write`` (one ``send()`` syscall instead of one per message).
        Keepalive pings and the closing handshake stay websockets' own: they are written
        between whole messages, never inside one.
        """
        connection = self.connection
        protocol = connection.protocol
        transport = connection.transport
        # No is_closing() check, as in websockets' send: while the protocol is still OPEN a
        # write to a transport that is going down is dropped by asyncio, and the loss is
        # reported by the reader (connection_lost), not by this write.
        if (protocol.state is not State.OPEN or connection.paused
                or connection.send_in_progress is not None or protocol.expect_continuation_frame
                or protocol.extensions or protocol.debug):
            return False
        transport.write(self._framer.frame(frames))
        return True

    def push_to(self, sink: Callable[[WireFrame], None], /) -> asyncio.Future[None] | None:
        """Hand every message to ``sink`` as it arrives, until the returned future is done.

        ``None`` (nothing changed): :meth:`receive` first, messages are waiting for it or
        the connection is closing. The future is done when pushing stopped:
        :meth:`stop_push`, the connection lost, or a message that only :meth:`receive` can
        take (a fragmented message, a text message that is not UTF-8); :meth:`receive`
        then returns it or raises :class:`TransportClosed`.
        """
        connection = self.connection
        if not isinstance(connection, _PushingConnection):
            return None
        return connection.start_push(sink)

    def stop_push(self) -> None:
        """Stop pushing (idempotent): later messages wait for :meth:`receive`."""
        connection = self.connection
        if isinstance(connection, _PushingConnection):
            connection.stop_push()

    async def send(self, frame: WireFrame) -> None:
        try:
            await self.connection.send(frame)
        except ConnectionClosed as exc:
            raise TransportClosed(close_info(self.connection, exc)) from None

    async def receive(self) -> WireFrame:
        try:
            return await self.connection.recv()
        except ConnectionClosed as exc:
            raise TransportClosed(close_info(self.connection, exc)) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            async with asyncio.timeout(self.close_timeout_s + _CLOSE_SLACK_S):
                await self.connection.close(code, reason)
        except asyncio.CancelledError:
            self.abort()
            raise
        except Exception:
            self.abort()

    def abort(self) -> None:
        self.connection.transport.abort()

    def close_info(self) -> CloseInfo:
        return close_info(self.connection)


async def open_transport(url: str, headers: list[tuple[str, str]], settings: WebSocketSettings, *,
                         wire_logger_name: str, **overrides: Any) -> WebSocketTransport:
    """:func:`open_connection` wrapped as the runtime's transport."""
    try:
        connection = await open_connection(url, headers, settings, wire_logger_name=wire_logger_name, **overrides)
    finally:
        del headers  # a raised failure's traceback must not reach the key through this frame
    return WebSocketTransport(connection, close_timeout_s=settings.close_timeout_s)
