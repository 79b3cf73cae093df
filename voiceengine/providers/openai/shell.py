"""The asyncio machinery under :class:`~voiceengine.providers.openai.OpenAIProvider`.

:class:`RealtimeShell` moves text frames between a WebSocket (:mod:`.connection`) and a
sans-I/O :class:`~voiceengine.providers.openai.session.RealtimeSession`, which owns every
protocol decision (encoding, response gating, truncation, error matching). The shell owns
tasks, queues, timeouts and reconnects, nothing else.

Tasks (all owned, all cancelled and awaited by ``disconnect()``):

* the *reader* (``_supervise``): reads messages, feeds the session, emits its events, and
  on a reconnectable close runs the reconnect loop (one connection at a time);
* the *writer* (``_write_loop``, one per connection): drains the outbound queue to the
  socket, so no public method ever waits on the network.

The outbound queue, the writer and the control-call path live in :mod:`.outbound`.
Continuity (outages, restore, audio backlog, recycling) lives in :mod:`.continuity`;
the close-code table and guarantees are in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ...clock import SYSTEM_CLOCK, Clock
from ...exceptions import ConnectionFailed, InvalidState, LimitExceeded
from ..base import BaseProvider
from ..types import ConnectionState, ErrorInfo, EventType, ProviderEvent, ReplaySource
from .backlog import OutboundAudio
from .config import OpenAIConfig
from .continuity import ContinuityMixin
from .outbound import OutboundMixin
from .connection import (
    BackoffPolicy,
    ClientConnection,
    CloseInfo,
    ConnectionClosed,
    backoff,
    close_info,
    open_connection,
)

if TYPE_CHECKING:
    from .session import RealtimeSession

__all__ = ["RealtimeShell", "ReplaySource"]  # ReplaySource: re-exported for compatibility

log = logging.getLogger("voiceengine.providers.openai")

#: slack over ``close_timeout_s`` before the transport is aborted: websockets' own close
#: timeout does not cover a write buffer that a half-open peer never drains
_CLOSE_SLACK_S = 0.05


@dataclass(slots=True, kw_only=True)
class _Outcome:
    """How one connection ended, as the reader saw it."""

    close: CloseInfo
    ready: bool = False  # session.created arrived
    uptime_s: float = 0.0  # since ready
    fatal: ErrorInfo | None = None
    expired: bool = False  # session_expired was received
    timeout: bool = False  # no session.created in time
    planned: bool = False  # we closed it to recycle the session
    planned_reason: str = ""

    @property
    def too_big(self) -> bool:
        """websockets closed it (1009) because an inbound message exceeded max_size."""
        return self.close.code == 1009 and self.close.local

    @property
    def reconnectable(self) -> bool:
        if self.fatal is not None:
            return False
        return self.planned or self.close.reconnectable or self.too_big or self.expired or self.timeout

    def describe(self) -> str:
        if self.planned:
            return self.planned_reason
        if self.fatal is not None:
            return f"fatal error {self.fatal.code}"
        if self.timeout:
            return "no session.created in time"
        text = f"closed with code {self.close.code}"
        if self.close.reason:
            text += f" ({self.close.reason})"
        return text + (" after session_expired" if self.expired else "")


class RealtimeShell(OutboundMixin, ContinuityMixin, BaseProvider):
    """Connection lifecycle, reader/writer tasks, reconnects and the outbound queue.

    ``reconnect_delays`` replaces the backoff policy (``config -> iterator of delays``);
    ``stable_after_s`` is how long a connection must last for its reconnect counter to
    reset; ``send_timeout_s`` bounds how long control calls wait for queue space or for a
    reconnect in progress (default ``config.connect_timeout_s``); ``clock`` runs the long
    timers (backoff sleeps, the stable-connection timer, session recycling; default
    :data:`~voiceengine.clock.SYSTEM_CLOCK`, a :class:`~voiceengine.clock.VirtualClock` in tests).
    """

    config: OpenAIConfig

    def __init__(
        self,
        config: OpenAIConfig,
        *,
        reconnect_delays: BackoffPolicy | None = None,
        stable_after_s: float = 10.0,
        send_timeout_s: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(config, OpenAIConfig):
            raise TypeError(f"{type(self).__name__} needs an OpenAIConfig, got {type(config).__name__}")
        super().__init__(config)
        self.reconnect_delays: BackoffPolicy = reconnect_delays or backoff
        self.stable_after_s = stable_after_s
        self.send_timeout_s = config.connect_timeout_s if send_timeout_s is None else send_timeout_s
        self.clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self._max_queue = config.max_queue_messages
        self._session: RealtimeSession | None = None
        self._ws: ClientConnection | None = None
        self._outq: asyncio.Queue[str | OutboundAudio | asyncio.Future[None]] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._connect_waiter: asyncio.Future[None] | None = None
        self._space = asyncio.Event()  # set when the queue has room or the connection changed
        # set while a session is usable, and once the provider is over for good (so waiters
        # wake and see the state); cleared while connecting or restoring
        self._ready = asyncio.Event()
        self._closing = False
        self._failures = 0  # consecutive reconnect attempts without a stable connection
        self._conn_ready = False
        # set once the current connection's teardown has begun: a write-barrier callback
        # (session set-up / restored) that fires after that point must not revive it
        self._tearing_down = False
        self._after_sent_pending: set[Callable[..., None]] = set()  # see OutboundMixin._after_sent
        self._ready_at = 0.0
        self._fatal: ErrorInfo | None = None
        self._expired = False
        self._session_options: dict[str, Any] = {}
        #: counters for diagnostics (audio figures: :attr:`audio_accounting`)
        self.stats: dict[str, int] = {
            "messages_sent": 0, "messages_received": 0, "connections": 0, "reconnects": 0,
        }
        self._init_continuity()

    # ------------------------------------------------------------- lifecycle
    async def connect(self) -> None:
        """Open the socket, wait for ``session.created`` and for ``session.update`` to be sent.

        Raises :class:`ConnectionFailed` (``status_code`` for a refused handshake,
        ``fatal``/``retryable`` set) on handshake failure or when the session is not set
        up within ``config.connect_timeout_s``. A no-op when already connected. Cancelling
        it leaves nothing running (no task, no socket).
        """
        if self._reader is not None and not self._reader.done():
            if self._state is ConnectionState.CONNECTED:
                return
            raise InvalidState(f"connect() while {self._state.value}")
        if self._state is ConnectionState.CONNECTING:
            raise InvalidState("connect() is already in progress")
        await self._teardown()  # leftovers of a previous connection that ended by itself
        self._end_outage()
        self._closing = False
        self._fatal = None
        self._failures = 0
        self._set_state(ConnectionState.CONNECTING, phase="connecting")
        try:
            ws = await open_connection(self.config)
        except BaseException as exc:
            if not self._closing:
                failed = isinstance(exc, ConnectionFailed)
                self._set_state(ConnectionState.ERROR if failed else ConnectionState.DISCONNECTED, phase="failed",
                                reason=exc.message if isinstance(exc, ConnectionFailed) else "cancelled")
            raise
        if self._closing:  # disconnect() was called during the handshake
            await self._close_socket(ws)
            raise ConnectionFailed("disconnect() called during connect()", code="closed", retryable=False)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._connect_waiter = waiter
        self._reader = asyncio.create_task(self._supervise(ws), name="voiceengine-openai-reader")
        try:
            done, _ = await asyncio.wait([waiter], timeout=self.config.connect_timeout_s)
            if not done:
                raise ConnectionFailed(
                    f"session not ready within {self.config.connect_timeout_s} s", code="timeout", retryable=True
                )
            waiter.result()
        except BaseException as exc:
            await self._teardown()
            if self._closing:
                pass  # disconnect() won the race: the state is CLOSED already
            elif isinstance(exc, ConnectionFailed):
                self._set_state(ConnectionState.ERROR, phase="failed", reason=exc.message)
            else:
                self._set_state(ConnectionState.DISCONNECTED, phase="failed", reason=type(exc).__name__)
            raise
        finally:
            self._connect_waiter = None
            if not waiter.done():
                waiter.cancel()

    async def disconnect(self) -> None:
        """Close the session: nothing more is sent, the socket is closed within
        ``close_timeout_s`` (+0.1 s) even if the peer never answers, every task is cancelled
        and awaited, pending input audio is counted dropped, ``events()`` ends. Idempotent.
        """
        self._closing = True
        await self._teardown()
        self._end_outage()
        self._ready.set()  # wake control calls waiting for a restore: they see CLOSED
        if self._state is not ConnectionState.CLOSED:
            self._set_state(ConnectionState.CLOSED, phase="closed", reason="disconnect() called")
        self._close_event_streams()
        await self._cancel_handler_tasks()

    async def _teardown(self) -> None:
        """Stop the writer (so nothing more is sent), close the socket, stop the reader."""
        waiter = self._connect_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionFailed("disconnect() called during connect()", code="closed",
                                                  retryable=False))
        self._tearing_down = True
        writer, reader, recycler, ws = self._writer, self._reader, self._recycler, self._ws
        current = asyncio.current_task()
        tasks = [t for t in (writer, recycler, reader) if t is not None and t is not current]
        for task in tasks:
            task.cancel()
        try:
            if ws is not None:
                await self._close_socket(ws)
        finally:
            # Even when cancelled itself, wait for the tasks it cancelled: none may outlive it.
            if tasks:
                await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
            # a recycler started while we awaited (cannot happen with _tearing_down set, but
            # a leaked task is worse than this check): cancel and await it too
            await self._stop_recycler()
        self._writer = self._reader = None
        self._drop_connection(keep_audio=False)

    async def _close_socket(self, ws: ClientConnection) -> None:
        # websockets bounds the closing handshake by close_timeout, but not a write buffer
        # that a half-open peer never drains: abort just after the timeout in every case.
        try:
            async with asyncio.timeout(self.config.close_timeout_s + _CLOSE_SLACK_S):
                await ws.close()
        except asyncio.CancelledError:
            ws.transport.abort()
            raise
        except Exception:
            ws.transport.abort()

    # ---------------------------------------------------------------- reader
    async def _supervise(self, ws: ClientConnection) -> None:
        """The reader task: serve connections one after the other, reconnecting as allowed."""
        first = True
        current: ClientConnection | None = ws
        try:
            while current is not None:
                outcome = await self._serve(current, reconnected=not first)
                if self._closing:
                    return
                if first and not outcome.ready:
                    self._end_outage()
                    self._fail_connect(outcome)
                    return
                first = False
                if outcome.ready and outcome.uptime_s >= self.stable_after_s:
                    self._failures = 0
                if outcome.too_big:
                    self._emit_error(f"a server message exceeded max_size_bytes ({self.config.max_size_bytes})",
                                     code="message_too_big", remote=True)
                if not outcome.reconnectable or not self.config.reconnect:
                    self._finish(outcome)
                    return
                self._take_replay_items()
                current = await self._reopen(outcome)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours: never leave the provider silently dead
            log.exception("openai: reader failed")
            self._emit_error(f"reader failed: {type(exc).__name__}", code="internal_error")
            self._terminal(ConnectionState.ERROR, phase="failed", reason="internal error")

    async def _serve(self, ws: ClientConnection, *, reconnected: bool) -> _Outcome:
        """Run one connection until it ends; the writer lives exactly as long."""
        session = self._new_session()
        self._ws, self._session = ws, session
        self._tearing_down = False
        self._outq = asyncio.Queue()
        self._conn_ready = False
        self._expired = False
        self._speaking = False
        self._space.set()
        self.stats["connections"] += 1
        session.start()
        if self._session_options:
            session.update_session(**self._session_options)
        self._flush()
        self._writer = asyncio.create_task(self._write_loop(ws, self._outq), name="voiceengine-openai-writer")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.connect_timeout_s
        outcome = _Outcome(close=CloseInfo(code=None))
        try:
            while True:
                try:
                    if self._conn_ready:
                        message = await ws.recv()
                    else:
                        async with asyncio.timeout_at(deadline):
                            message = await ws.recv()
                except ConnectionClosed as exc:
                    outcome.close = close_info(ws, exc)
                    break
                except TimeoutError:
                    outcome.timeout = True
                    break
                self.stats["messages_received"] += 1
                self._handle_message(session, message, reconnected=reconnected)
                if self._fatal is not None:
                    outcome.fatal = self._fatal
                    break
        finally:
            # A set-up whose barrier was written happened: let it complete now, before the
            # loss is handled. From here on no barrier callback may set this connection up
            # (or emit `restored`): its recycler would be started after we collected it.
            self._settle_after_sent()
            self._tearing_down = True
            was_ready = self._ready.is_set() or self._outage is not None
            self._ready.clear()  # from now on control calls wait and audio is buffered
            if not self._closing and was_ready:
                self._begin_outage()
            writer, recycler = self._writer, self._recycler
            self._writer = self._recycler = None
            for task in (writer, recycler):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (writer, recycler) if t is not None), return_exceptions=True)
            await self._close_socket(ws)
            await self._stop_recycler()  # defensive: nothing may have started one meanwhile
            outcome.ready = self._conn_ready
            outcome.uptime_s = self.clock.monotonic() - self._ready_at if self._conn_ready else 0.0
            outcome.expired = self._expired
            outcome.planned, self._recycling = self._recycling, False
            outcome.planned_reason = self._recycle_reason()
            if outcome.close.code is None:
                outcome.close = close_info(ws)
            if not self._closing:
                self._report_lost_responses(session)
            self._drop_connection(keep_audio=not self._closing and self._buffering)
        return outcome

    def _handle_message(self, session: RealtimeSession, message: str | bytes, *, reconnected: bool) -> None:
        try:
            events = session.receive(message)
        except Exception as exc:  # the session promises not to raise; guard anyway
            log.exception("openai: session.receive raised")
            self._emit_error(f"could not process a server message: {type(exc).__name__}", code="internal_error")
            return
        for event in events:
            try:
                self._observe(session, event, reconnected=reconnected)
            except Exception:
                log.exception("openai: failed to process %s", event.type.name)
            self._emit(event)
        self._flush()
        self._activity.set()

    def _observe(self, session: RealtimeSession, event: ProviderEvent, *, reconnected: bool) -> None:
        """Shell-side reactions to a few events (readiness, fatal errors, expiry, speech)."""
        if event.type is EventType.SESSION_CREATED and not self._conn_ready:
            self._conn_ready = True
            self._ready_at = self.clock.monotonic()
            self.session_id = session.session_id or event.session_id
            if reconnected:
                self._restore_into(session)
            self._after_sent(self._session_set_up, reconnected)
        elif event.type is EventType.ERROR and event.error is not None:
            if event.error.fatal:
                self._fatal = event.error
            elif event.error.code == "session_expired":
                self._expired = True
        else:
            self._note_speech(event)

    def _session_set_up(self, reconnected: bool) -> None:
        if self._tearing_down:  # the connection is being torn down: it is not usable any more
            return
        if reconnected:
            self._restored()
        else:
            self._ready.set()
            self._set_state(ConnectionState.CONNECTED, phase="connected")
        self._start_recycler()
        waiter = self._connect_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail_connect(self, outcome: _Outcome) -> None:
        waiter = self._connect_waiter
        if waiter is None or waiter.done():
            return
        if outcome.fatal is not None:
            exc = ConnectionFailed(
                f"session refused: {outcome.fatal.code}: {outcome.fatal.message}", code=outcome.fatal.code,
                retryable=False, fatal=True, event_id=outcome.fatal.event_id,
            )
        else:
            # retryable iff the same loss after set-up would reconnect (the close-code table
            # in docs/reliability.md): 1008, 4000-4999, a server-sent 1009 are not
            exc = ConnectionFailed(f"session not set up: {outcome.describe()}", code="closed" if not outcome.timeout
                                   else "timeout", retryable=outcome.reconnectable, close_code=outcome.close.code)
        waiter.set_exception(exc)

    async def _reopen(self, outcome: _Outcome) -> ClientConnection | None:
        """Reconnect attempts until one handshake succeeds; ``None`` when giving up."""
        reason = outcome.describe()
        planned = outcome.planned
        delays: Iterator[float] = self.reconnect_delays(self.config)
        while True:
            self._failures += 1
            if self._failures > self.config.max_reconnect_attempts:
                self._terminal(ConnectionState.ERROR, phase="gave_up", reason=reason,
                               attempt=self._failures - 1, close_code=outcome.close.code)
                return None
            self._set_state(ConnectionState.RECONNECTING, phase="reconnecting", reason=reason,
                            attempt=self._failures, close_code=outcome.close.code, planned=planned)
            await self.clock.sleep(max(0.0, next(delays)))
            try:
                return await open_connection(self.config)
            except ConnectionFailed as exc:
                if exc.fatal:  # 401/403/other 4xx, a redirect: retrying cannot help
                    self._terminal(ConnectionState.ERROR, phase="failed", reason=exc.message,
                                   attempt=self._failures)
                    return None
                reason = exc.message

    def _finish(self, outcome: _Outcome) -> None:
        if outcome.fatal is not None:
            self._terminal(ConnectionState.ERROR, phase="failed", reason=f"fatal error: {outcome.fatal.code}")
        elif outcome.close.code == 1000:
            self._terminal(ConnectionState.CLOSED, phase="closed", reason=outcome.describe(), close_code=1000)
        else:
            self._terminal(ConnectionState.ERROR, phase="failed", reason=outcome.describe(),
                           close_code=outcome.close.code)

    def _terminal(self, state: ConnectionState, **change: Any) -> None:
        """The connection is over for good: say so, then end ``events()`` iterators."""
        self._end_outage()  # pending audio is dropped (counted) before the final event
        self._set_state(state, **change)
        waiter = self._connect_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionFailed(f"session not set up: {change.get('reason', '')}", code="closed"))
        self._ready.set()  # wake control calls waiting for a restore: they see the state
        self._close_event_streams()

    def _emit_error(self, message: str, *, code: str, fatal: bool = False, remote: bool = False) -> None:
        info = ErrorInfo(message=message, code=code, type="client_error", fatal=fatal, remote=remote)
        self._emit(ProviderEvent(type=EventType.ERROR, error=info, provider=self.name, session_id=self.session_id))

    # ------------------------------------------------------------- sending
    def _new_session(self) -> RealtimeSession:
        from .session import RealtimeSession  # deferred: keeps this module importable alone

        # drop_duplicate_audio: audio deltas carry no raw event, so downstream consumers
        # (the engine dedupes by raw["event_id"]) cannot spot a delta delivered twice
        return RealtimeSession(self.config, provider_name=self.name, drop_duplicate_audio=True)
