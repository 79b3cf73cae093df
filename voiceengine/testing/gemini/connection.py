"""The asyncio shell around one :class:`FakeGeminiSession`: reading, paced writing, faults.

One reader loop (the websockets handler), one writer task draining the session's outbox,
one pacing task per reply, a timer for ``goAway``. Every task is owned by the connection
and cancelled when it ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Any, Callable, Coroutine, Mapping

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..faults import Fault, FaultBook, FaultKind, Trigger
from ..wsserver import ConnectionTasks, linger_reset
from .config import FakeGeminiConfig
from .session import FakeGeminiSession, frame_kind
from .wire import FrameError

__all__ = ["FakeGeminiConnection"]

log = logging.getLogger("voiceengine.testing.gemini")

_BLOCKING = frozenset({FaultKind.CLOSE, FaultKind.TCP_RESET, FaultKind.HALF_OPEN})
_MUTATORS = frozenset({FaultKind.DUPLICATE_EVENT, FaultKind.BAD_BASE64_AUDIO})

FrameHook = Callable[[FakeGeminiSession, Mapping[str, Any]], None]


def _dumps(frame: Any) -> str:
    return json.dumps(frame, separators=(",", ":"))


class FakeGeminiConnection:
    """Owns the tasks of one WebSocket connection of the fake Gemini Live server."""

    def __init__(self, ws: ServerConnection, session: FakeGeminiSession, *, config: FakeGeminiConfig,
                 faults: FaultBook, on_sent: FrameHook, on_received: FrameHook,
                 on_closing: Callable[[int], None]) -> None:
        self.ws = ws
        self.session = session
        self.config = config
        self.faults = faults
        self.index = session.index
        self._on_sent = on_sent
        self._on_received = on_received
        self._on_closing = on_closing
        self._tasks = ConnectionTasks(log, "fake Gemini server")
        self._wake = asyncio.Event()
        self._write_ok = asyncio.Event()
        self._write_ok.set()
        self.closing = False
        self.stalled = False
        self.half_open = False
        #: set once ``setupComplete`` went out: IMMEDIATE faults and goAway act from then on
        self.ready = asyncio.Event()
        self._mutators: list[Fault] = []
        self._held_in: deque[str | bytes] = deque()  # client frames held by a stall
        self._draining = False

    # ------------------------------------------------------------ task ownership
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start a task this connection owns."""
        return self._tasks.spawn(coro)

    def abort(self) -> None:
        """Drop the TCP connection at once (no close frame)."""
        self.closing = True
        self._write_ok.set()
        self.ws.transport.abort()

    def reset(self) -> None:
        """Abort with an RST (SO_LINGER 0) instead of a FIN."""
        linger_reset(self.ws)
        self.abort()

    # ------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Serve the connection until it closes."""
        try:
            self.spawn(self._watch_closed())
            self.spawn(self._writer())
            for fault in self.faults.match_simple(self.index, Trigger.ON_CONNECT):
                await self.execute(fault)
            async for message in self.ws:
                if self.closing:
                    break
                await self._on_message(message)
        except ConnectionClosed:
            pass
        finally:
            self.closing = True
            self._on_closing(self.index)  # at once: a resumption may arrive before the tasks are gone
            while self._held_in:  # read but never handled: the connection ended first
                self.session.record_ignored(self._held_in.popleft())
            if self.session.closed_code is None and self.ws.close_code is not None:
                self.session.closed_code = self.ws.close_code
            await self._tasks.cancel()

    async def _watch_closed(self) -> None:
        await self.ws.wait_closed()
        self.closing = True
        self._write_ok.set()
        self._wake.set()

    # ------------------------------------------------------------ inbound
    async def _on_message(self, message: str | bytes, *, held: bool = False) -> None:
        sess = self.session
        if not held and (self.stalled or self._draining):
            self._held_in.append(message)  # a stalled server delays client frames, never loses them
            return
        try:
            kind, body = sess.parse(message)
        except FrameError as exc:
            sess.record_ignored(message)
            await self.close(exc.close_code, str(exc))
            return
        fired = self.faults.match_client_event(self.index, kind)
        if any(f.kind in _BLOCKING for f in fired):
            sess.record_ignored(message)
            for fault in fired:
                await self.execute(fault)
            return
        for fault in fired:
            await self.execute(fault)
        if self.closing:
            sess.record_ignored(message)
            return
        if self.stalled:  # a stall fired on this very frame: handled when it ends
            (self._held_in.appendleft if held else self._held_in.append)(message)
            return
        interrupts = sess.interrupts
        try:
            sess.handle(kind, body)
        except FrameError as exc:
            sess.record_ignored(message)
            await self.close(exc.close_code, str(exc))
            return
        self._on_received(sess, {kind: body})
        if kind == "setup":
            await self._setup_done()
        if sess.interrupts > interrupts:
            for fault in self.faults.match_simple(self.index, Trigger.DURING_INTERRUPT):
                await self.execute(fault)
        for gen_id in sess.take_new_generations():
            self.spawn(self._pace(gen_id))
        self._wake.set()

    async def _setup_done(self) -> None:
        for fault in self.faults.match_simple(self.index, Trigger.BEFORE_SESSION_CREATED):
            await self.execute(fault)
        if self.closing:
            return
        self.session.announce()
        self._wake.set()
        self.ready.set()
        for fault in self.faults.match_simple(self.index, Trigger.IMMEDIATE):
            self.spawn(self.execute(fault))
        if self.config.go_away_after_s is not None:
            self.spawn(self._go_away_later(self.config.go_away_after_s))

    async def _pace(self, gen_id: int) -> None:
        pace = self.config.pace_s_per_ms
        while not self.closing:
            await self._write_ok.wait()
            ms = self.session.advance(gen_id)
            self._wake.set()
            if ms is None:
                return
            await asyncio.sleep(ms * pace)

    # ------------------------------------------------------------ outbound
    async def _writer(self) -> None:
        outbox = self.session.outbox
        while not self.closing:
            await self._wake.wait()
            self._wake.clear()
            while outbox and not self.closing:
                await self._write_ok.wait()
                if self.closing or not outbox:
                    break
                await self._send_frame(outbox.popleft())

    async def _send_raw(self, text: str) -> bool:
        if self.closing:
            return False
        try:
            await self.ws.send(text)
        except ConnectionClosed:
            self.closing = True
            return False
        return True

    async def _send_valid(self, frame: dict[str, Any]) -> None:
        if await self._send_raw(_dumps(frame)):
            self.session.record_sent(frame)
            self._on_sent(self.session, frame)

    async def _send_faulty(self, text: str) -> None:
        if await self._send_raw(text):
            self.session.faulty_sent.append(text)

    async def _send_frame(self, frame: dict[str, Any]) -> None:
        kind = frame_kind(frame)
        for m in list(self._mutators):
            if m.kind is FaultKind.BAD_BASE64_AUDIO and kind == "modelTurn":
                self._mutators.remove(m)
                part = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": "!!not*base64@@==="}}
                await self._send_faulty(_dumps({"serverContent": {"modelTurn": {"parts": [part]}}}))
                await self._after(kind)
                return
            if m.kind is FaultKind.DUPLICATE_EVENT and m.target_type in (None, kind):
                self._mutators.remove(m)
                await self._send_valid(frame)
                await self._send_valid(frame)
                await self._after(kind)
                return
        await self._send_valid(frame)
        await self._after(kind)

    async def _after(self, kind: str) -> None:
        for fault in self.faults.match_server_event(self.index, {"type": kind}):
            await self.execute(fault)

    async def close(self, code: int | None, reason: str = "") -> None:
        """Close with ``code`` (None or 1006: drop the TCP connection without a close frame)."""
        if self.closing and self.ws.close_code is not None:
            return
        self.closing = True
        self._write_ok.set()
        self.session.closed_code = code
        if code is None or code == 1006:
            self.abort()
            return
        try:
            await self.ws.close(code, reason[:120])  # a close reason fits in 123 bytes
        except ConnectionClosed:
            pass

    # ------------------------------------------------------------ goAway
    async def go_away(self, time_left_s: float) -> None:
        """Send ``goAway{timeLeft}``, then close (``go_away_close_code``) when the time is up."""
        if self.closing:
            return
        self.session.go_away(time_left_s)
        self._wake.set()
        self.spawn(self._close_later(time_left_s))

    async def _go_away_later(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        await self.go_away(self.config.go_away_time_left_s)

    async def _close_later(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self.close(self.config.go_away_close_code, self.config.go_away_close_reason)

    # ------------------------------------------------------------ faults
    async def execute(self, fault: Fault) -> None:
        """Carry out one fault on this connection now."""
        if self.closing:
            return
        kind = fault.kind
        log.debug("fault %s on Gemini session %d", kind.value, self.index)
        if kind in _MUTATORS:
            self._mutators.append(fault)
        elif kind is FaultKind.CLOSE:
            await self.close(fault.close_code, fault.close_reason)
        elif kind is FaultKind.TCP_RESET:
            self.session.closed_code = 1006
            self.reset()
        elif kind is FaultKind.MALFORMED_JSON:
            await self._send_faulty(fault.payload if isinstance(fault.payload, str) else '{"serverContent":{"modelTurn":')
        elif kind is FaultKind.UNKNOWN_EVENT:
            payload = fault.payload if fault.payload is not None else {"fakeUnknownMessage": {"detail": "injected"}}
            await self._send_faulty(payload if isinstance(payload, str) else _dumps(payload))
        elif kind is FaultKind.MALFORMED_EVENT:
            payload = fault.payload if fault.payload is not None else {"toolCall": {"functionCalls": "not-a-list"}}
            await self._send_faulty(payload if isinstance(payload, str) else _dumps(payload))
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
            left = fault.duration_s if fault.duration_s is not None else self.config.go_away_time_left_s
            await self.go_away(left)
        else:  # handshake kinds act at the upgrade; on an open connection there is nothing to do
            log.debug("fault %s ignored on an open connection", kind.value)

    async def _unstall(self) -> None:
        self.stalled = False
        self._draining = True
        try:
            while self._held_in and not self.closing and not self.stalled:
                await self._on_message(self._held_in.popleft(), held=True)
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
