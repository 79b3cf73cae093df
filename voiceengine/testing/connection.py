"""The asyncio shell around one :class:`FakeSession`: reading, paced writing, fault execution.

One reader loop (the websockets handler), one writer task draining the session's outbox,
one pacing task per response, a watchdog for session expiry and a watcher for the socket
closing. Every task is owned by the connection and cancelled when it ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Any, Callable, Coroutine

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .config import FakeServerConfig
from .faults import Fault, FaultBook, FaultKind, Trigger
from .session import FakeSession
from .wsserver import ConnectionTasks, linger_reset, peek_type

#: the server's hooks: an event was sent to the client / a client event was handled
SentHook = Callable[[FakeSession, dict[str, Any]], None]
ReceivedHook = Callable[[FakeSession], None]

__all__ = ["FakeConnection"]

log = logging.getLogger("voiceengine.testing.server")

_INTERRUPT_TYPES = frozenset({"response.cancel", "conversation.item.truncate"})
_MUTATORS = frozenset({FaultKind.DUPLICATE_EVENT, FaultKind.OUT_OF_ORDER, FaultKind.BAD_BASE64_AUDIO})


_BLOCKING = frozenset({FaultKind.CLOSE, FaultKind.TCP_RESET, FaultKind.SESSION_EXPIRED, FaultKind.HALF_OPEN})


def _blocks(fault: Fault) -> bool:
    """True when ``fault`` keeps the client message that triggered it from being handled."""
    return fault.kind in _BLOCKING or (fault.kind is FaultKind.ERROR_EVENT and fault.close_after)


def _dumps(ev: Any) -> str:
    return json.dumps(ev, separators=(",", ":"))


class FakeConnection:
    """Owns the tasks of one WebSocket connection of the fake server."""

    def __init__(self, ws: ServerConnection, session: FakeSession, *, config: FakeServerConfig,
                 faults: FaultBook, on_sent: SentHook, on_received: ReceivedHook, auth_ok: bool) -> None:
        self.ws = ws
        self.config = config
        self.faults = faults
        self._on_sent = on_sent
        self._on_received = on_received
        self.session = session
        self.auth_ok = auth_ok
        self.index = session.index
        self._tasks = ConnectionTasks(log, "fake server")
        self._wake = asyncio.Event()
        self._write_ok = asyncio.Event()
        self._write_ok.set()
        self._closed = asyncio.Event()
        self.closing = False
        self.stalled = False
        self.half_open = False
        self._mutators: list[Fault] = []
        self._pending: deque[dict[str, Any]] = deque()
        self._stalled_in: deque[str | bytes] = deque()  # client messages held by a stall
        self._draining = False  # handling what a stall held: new messages queue behind it

    # ------------------------------------------------------------ task ownership
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start a task this connection owns."""
        return self._tasks.spawn(coro)

    def abort(self) -> None:
        """Drop the TCP connection at once (no close frame; the peer normally sees a FIN)."""
        self.closing = True
        self._closed.set()
        self._write_ok.set()
        self.ws.transport.abort()

    def reset(self) -> None:
        """Abort the TCP connection with an RST instead of a FIN."""
        linger_reset(self.ws)
        self.abort()

    # ------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Serve the connection until it closes."""
        book, idx = self.faults, self.index
        try:
            self.spawn(self._watch_closed())
            if not self.auth_ok:
                self.session.error("invalid_api_key", "Incorrect API key provided.", type_="invalid_request_error")
                await self._drain_now()
                await self._close(self.config.auth_close_code, "invalid_api_key")
                return
            for f in book.match_simple(idx, Trigger.ON_CONNECT) + book.match_simple(idx, Trigger.BEFORE_SESSION_CREATED):
                await self.execute(f)
            if self.closing:
                return
            self.session.start()
            self.spawn(self._writer())
            self._wake.set()
            for f in book.match_simple(idx, Trigger.IMMEDIATE):
                self.spawn(self.execute(f))
            if self.config.max_session_s is not None:
                self.spawn(self._watchdog())
            async for message in self.ws:
                if self.closing:
                    break
                await self._on_message(message)
        except ConnectionClosed:
            pass
        finally:
            self.closing = True
            self._closed.set()
            while self._stalled_in:  # read but never handled: the connection ended first
                self.session.record_ignored(self._stalled_in.popleft())
            if self.session.closed_code is None and self.ws.close_code is not None:
                self.session.closed_code = self.ws.close_code
            await self._tasks.cancel()

    async def _watch_closed(self) -> None:
        await self.ws.wait_closed()
        self.closing = True
        self._closed.set()
        self._write_ok.set()

    async def _watchdog(self) -> None:
        poll = self.config.expiry_poll_s
        while not self.closing:
            if self.session.expired():
                await self.execute(Fault(kind=FaultKind.SESSION_EXPIRED, label="max_session_s"))
                return
            await asyncio.sleep(poll)

    # ------------------------------------------------------------ inbound
    async def _on_message(self, message: str | bytes, *, held: bool = False) -> None:
        book, idx, sess = self.faults, self.index, self.session
        if not held and (self.stalled or self._draining):
            # a stalled server keeps reading (the socket stays healthy, pings are answered)
            # but handles nothing until the stall ends: like a busy server, it delays client
            # messages, it does not lose them
            self._stalled_in.append(message)
            return
        etype = peek_type(message)
        if etype is not None:
            fired = book.match_client_event(idx, etype)
            if etype in _INTERRUPT_TYPES and sess.active_responses:
                fired += book.match_simple(idx, Trigger.DURING_INTERRUPT)
            if any(_blocks(f) for f in fired):
                # recorded first: the close handshake below may outlive the client's wait
                sess.record_ignored(message)
                for f in fired:
                    await self.execute(f)
                return
            for f in fired:
                await self.execute(f)
            if self.closing:
                sess.record_ignored(message)  # it arrived, but the connection went away meanwhile
                return
            if self.stalled:  # a stall fired on this very message: handled when it ends
                if held:
                    self._stalled_in.appendleft(message)
                else:
                    self._stalled_in.append(message)
                return
        before = sess.interrupts
        sess.receive(message)
        self._on_received(sess)
        if sess.interrupts > before:
            for f in book.match_simple(idx, Trigger.DURING_INTERRUPT):
                await self.execute(f)
        for rid in sess.take_new_responses():
            self.spawn(self._pace(rid))
        self._wake.set()

    async def _pace(self, response_id: str) -> None:
        pace = self.config.pace_s_per_ms
        while not self.closing:
            await self._write_ok.wait()
            ms = self.session.advance(response_id)
            self._wake.set()
            if ms is None:
                return
            await asyncio.sleep(ms * pace)

    # ------------------------------------------------------------ outbound
    async def _writer(self) -> None:
        while not self.closing:
            await self._wake.wait()
            self._wake.clear()
            self._pending.extend(self.session.events_to_send())
            while self._pending and not self.closing:
                await self._write_ok.wait()
                if self.closing:
                    return
                if not self._pending:
                    break
                await self._send_event(self._pending.popleft())
                self._pending.extend(self.session.events_to_send())

    def _next_ready(self) -> dict[str, Any] | None:
        """Take the event queued right behind the one being sent (``None``: none is ready)."""
        self._pending.extend(self.session.events_to_send())
        return self._pending.popleft() if self._pending else None

    async def _drain_now(self) -> None:
        for ev in self.session.events_to_send():
            await self._send_event(ev)

    async def _send_raw(self, text: str) -> bool:
        if self.closing:
            return False
        try:
            await self.ws.send(text)
        except ConnectionClosed:
            self.closing = True
            return False
        return True

    async def _send_valid(self, ev: dict[str, Any]) -> None:
        if await self._send_raw(_dumps(ev)):
            self.session.record_sent(ev)
            self._on_sent(self.session, ev)

    async def _send_event(self, ev: dict[str, Any]) -> None:
        for m in list(self._mutators):
            if m.kind is FaultKind.BAD_BASE64_AUDIO and ev.get("type") == "response.output_audio.delta":
                self._mutators.remove(m)
                bad = dict(ev, delta="!!not*base64@@" + "=" * 3)
                text = _dumps(bad)
                if await self._send_raw(text):
                    self.session.faulty_sent.append(text)
                await self._after(ev)
                return
            if m.kind is FaultKind.OUT_OF_ORDER:
                later = self._next_ready()
                if later is None:
                    # Nothing is ready behind it: holding it back until the server next
                    # speaks would withhold it for good when the client is waiting for it
                    # (a reply's last event, response.done). It goes out as is; the fault
                    # stays armed for the next two events that are ready together.
                    continue
                self._mutators.remove(m)
                await self._send_valid(later)
                await self._send_valid(ev)
                await self._after(later)
                await self._after(ev)
                return
            if m.kind is FaultKind.DUPLICATE_EVENT and m.target_type in (None, ev.get("type")):
                self._mutators.remove(m)
                await self._send_valid(ev)
                await self._send_valid(ev)
                await self._after(ev)
                return
        await self._send_valid(ev)
        await self._after(ev)

    async def _after(self, ev: dict[str, Any]) -> None:
        if ev.get("type") == "response.created":
            self.faults.reset_response_counters(self.index)
        for f in self.faults.match_server_event(self.index, ev):
            await self.execute(f)

    async def _close(self, code: int | None, reason: str = "") -> None:
        if self.closing and self.ws.close_code is not None:
            return
        self.closing = True
        self._write_ok.set()
        self.session.closed_code = code
        if code is None or code == 1006:
            self.abort()
            return
        try:
            await self.ws.close(code, reason)
        except ConnectionClosed:
            pass
        self._closed.set()

    # ------------------------------------------------------------ faults
    async def execute(self, fault: Fault) -> None:
        """Carry out one fault on this connection now."""
        if self.closing:
            return
        kind, sess = fault.kind, self.session
        log.debug("fault %s on session %d", kind.value, self.index)
        if kind in _MUTATORS:
            self._mutators.append(fault)
        elif kind is FaultKind.CLOSE:
            await self._close(fault.close_code, fault.close_reason)
        elif kind is FaultKind.TCP_RESET:
            self.session.closed_code = 1006
            self.reset()
        elif kind is FaultKind.MALFORMED_JSON:
            text = fault.payload if isinstance(fault.payload, str) else '{"type":"response.output_audio.delta","event_id":'
            if await self._send_raw(text):
                sess.faulty_sent.append(text)
        elif kind in (FaultKind.UNKNOWN_EVENT, FaultKind.MALFORMED_EVENT):
            if fault.payload is not None:
                ev = fault.payload
            elif kind is FaultKind.UNKNOWN_EVENT:
                ev = {"type": "fake.unknown_event", "event_id": sess.new_id("event"), "detail": "injected"}
            else:
                ev = {"type": "response.output_audio.delta", "event_id": sess.new_id("event")}
            text = ev if isinstance(ev, str) else _dumps(ev)
            if await self._send_raw(text):
                sess.faulty_sent.append(text)
        elif kind is FaultKind.OVERSIZED_MESSAGE:
            head = ('{"type":"response.output_audio.delta","event_id":"%s","response_id":"resp_oversized",'
                    '"item_id":"item_oversized","output_index":0,"content_index":0,"delta":"' % sess.new_id("event"))
            fill = max(0, fault.size_bytes - len(head) - 2)
            text = head + "A" * (fill - fill % 4) + '"}'
            if await self._send_raw(text):
                sess.faulty_sent.append(f"<oversized message of {len(text)} bytes>")
        elif kind is FaultKind.STALL:
            self.stalled = True
            self._hold_writes(fault.duration_s, unstall=True)
        elif kind is FaultKind.DELAY:
            self._hold_writes(fault.duration_s if fault.duration_s is not None else 1.0, unstall=False)
        elif kind is FaultKind.HALF_OPEN:
            self.half_open = True
            self.stalled = True
            self._write_ok.clear()
            self.ws.transport.pause_reading()
            keepalive = getattr(self.ws, "keepalive_task", None)
            if keepalive is not None:
                keepalive.cancel()  # a half-open peer does not answer or send pings either
        elif kind is FaultKind.SESSION_EXPIRED:
            sess.error("session_expired", "Your session hit the maximum duration of 60 minutes.",
                       type_="invalid_request_error")
            await self._drain_now()
            await self._close(1001, "session expired")
        elif kind is FaultKind.RATE_LIMITS:
            limits = fault.payload if isinstance(fault.payload, list) else [
                {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                {"name": "tokens", "limit": 40000, "remaining": 39000, "reset_seconds": 1.5},
            ]
            sess.emit("rate_limits.updated", rate_limits=limits)
            self._wake.set()
        elif kind is FaultKind.ERROR_EVENT:
            sess.error(fault.error_code, fault.error_message, type_=fault.error_type)
            await self._drain_now()
            if fault.close_after:
                await self._close(fault.close_code, fault.error_code)
        else:  # handshake kinds arrive here only through IMMEDIATE on a live session: nothing to do
            log.debug("fault %s ignored on an open connection", kind.value)

    async def _unstall(self) -> None:
        """Handle the messages the stall held, in order; new ones queue behind them meanwhile."""
        self.stalled = False
        self._draining = True
        try:
            while self._stalled_in and not self.closing and not self.stalled:
                await self._on_message(self._stalled_in.popleft(), held=True)
        finally:
            self._draining = False

    def _hold_writes(self, duration_s: float | None, *, unstall: bool) -> None:
        self._write_ok.clear()
        if duration_s is None:
            return

        async def release() -> None:
            await asyncio.sleep(duration_s)
            if not self.half_open:
                self._write_ok.set()
                self._wake.set()
                if unstall:
                    await self._unstall()

        self.spawn(release())
