# mypy: disable-error-code="misc"
# (why: as in continuity.py, the mixin methods annotate ``self: RealtimeShell`` to type the
# shell attributes they use; mypy flags that self-type as not a supertype of the mixin)
"""The outbound half of :class:`~voiceengine.providers.openai.shell.RealtimeShell`.

A mixin split out of the shell along the reader/writer seam (only to keep files small;
it uses the shell's attributes): the writer task, the outbound queue and the control-call
path that fills it.

Outbound queue: every public method calls the session, then moves
``session.data_to_send()`` into the queue in the same synchronous step (``_control``), so
wire order is call order. The queue is bounded by ``config.max_queue_messages``: audio is
refused with ``LimitExceeded`` when it is full, control calls wait for room up to
``send_timeout_s``. Messages the session produces on its own while reading (e.g. a gated
``response.create`` released by ``response.done``) are never refused, so the queue may
exceed its bound by the few messages of one step (bounded: the session only answers the
server with what the client already queued, or one ``response.cancel``).

Items in the queue: JSON texts, :class:`~.backlog.OutboundAudio` (input audio, counted
pending until written; moved back to the backlog if the connection dies first) and
barrier futures (resolved when everything queued before them was written).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable

from ...exceptions import InvalidState, LimitExceeded
from ..types import ConnectionState
from .backlog import OutboundAudio
from .connection import ConnectionClosed

if TYPE_CHECKING:
    from .connection import ClientConnection
    from .session import RealtimeSession
    from .shell import RealtimeShell

__all__ = ["OutboundMixin"]

log = logging.getLogger("voiceengine.providers.openai")


class OutboundMixin:
    """Writer task, outbound queue and control calls for :class:`RealtimeShell`."""

    # Set by RealtimeShell.__init__ / _init_continuity; declared here so the mixin's
    # assignments type-check against the shell's declarations.
    _session: RealtimeSession | None
    _ws: ClientConnection | None
    _outq: asyncio.Queue[str | OutboundAudio | asyncio.Future[None]] | None
    _writing: OutboundAudio | None

    # ---------------------------------------------------------------- writer
    async def _write_loop(self: RealtimeShell, ws: ClientConnection,
                          queue: asyncio.Queue[str | OutboundAudio | asyncio.Future[None]]) -> None:
        ledger = self.audio_ledger
        try:
            while True:
                item = await queue.get()
                if queue.qsize() < self._max_queue:
                    self._space.set()
                if isinstance(item, asyncio.Future):
                    if not item.done():
                        item.set_result(None)
                    continue
                if isinstance(item, OutboundAudio):
                    # Until send() returns it counts as pending; if the connection dies
                    # first, _drop_connection moves it back to the backlog.
                    self._writing = item
                    await ws.send(item.text)
                    self._writing = None
                    self._queued_audio -= item.nbytes
                    if item.replay:
                        ledger.replayed(item.nbytes)
                    else:
                        ledger.sent(item.nbytes)
                else:
                    await ws.send(item)
                self.stats["messages_sent"] += 1
        except ConnectionClosed:
            return  # the reader sees the close and decides what happens next
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("openai: writer failed; closing the connection")
            ws.transport.abort()  # the reader then sees 1006 and reconnects

    def _flush(self: RealtimeShell) -> None:
        session, queue = self._session, self._outq
        if session is None or queue is None:
            return
        for text in session.data_to_send():
            queue.put_nowait(text)

    def _after_sent(self: RealtimeShell, callback: Callable[[bool], None], arg: bool) -> None:
        """Call ``callback(arg)`` once everything queued so far has been written."""
        queue = self._outq
        if queue is None:  # the connection is gone: nothing more will be written, never call back
            return
        barrier: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ws = self._ws
        called = False

        def done(fut: asyncio.Future[None] | None = None) -> None:
            # A resolved barrier's done callback runs one loop iteration later: the reader
            # may begin tearing the connection down in between. _settle_after_sent() then
            # runs it first (everything was written: the set-up did happen); after that
            # point, and for a cancelled barrier, it never runs (it would revive a dead
            # connection: emit `restored`, start a recycler nothing owns).
            nonlocal called
            if called or barrier.cancelled() or not barrier.done():
                return
            called = True
            self._after_sent_pending.discard(done)
            if ws is self._ws and not self._closing and not self._tearing_down:
                callback(arg)

        self._after_sent_pending.add(done)
        barrier.add_done_callback(done)
        queue.put_nowait(barrier)

    def _settle_after_sent(self: RealtimeShell) -> None:
        """Teardown begins: run the callbacks whose barrier was already written, forget the rest."""
        pending = list(self._after_sent_pending)
        self._after_sent_pending.clear()
        for done in pending:
            done()

    def _drop_connection(self: RealtimeShell, *, keep_audio: bool) -> None:
        """Forget the connection; unwritten audio goes back to the backlog (or is dropped)."""
        self._ready.clear()
        self._conn_ready = False
        queue, self._outq = self._outq, None
        self._ws = None
        self._session = None  # its state (active response, items) died with the connection
        leftovers: list[OutboundAudio] = []
        if self._writing is not None:  # taken by the writer, not (known to be) written
            leftovers.append(self._writing)
            self._writing = None
        if queue is not None:
            while not queue.empty():
                item = queue.get_nowait()
                if isinstance(item, OutboundAudio):
                    leftovers.append(item)
                elif isinstance(item, asyncio.Future) and not item.done():
                    item.cancel()
        self._recover_audio(leftovers, keep=keep_audio)
        self._space.set()  # wake senders so they re-check the (new) state

    # ------------------------------------------------------------- sending
    def _usable_session(self: RealtimeShell) -> RealtimeSession:
        if self._ready.is_set() and self._session is not None and self._outq is not None:
            return self._session
        raise InvalidState(f"openai provider is {self._state.value}; call connect() first")

    async def _control(self: RealtimeShell, call: Callable[[RealtimeSession], Any]) -> Any:
        """Run a session call once connected and the queue has room, then flush it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.send_timeout_s
        while True:
            if not self._ready.is_set():
                if self._state not in (ConnectionState.RECONNECTING, ConnectionState.CONNECTED):
                    raise InvalidState(f"openai provider is {self._state.value}; call connect() first")
                try:  # a reconnect is in progress: wait for it, bounded
                    async with asyncio.timeout_at(deadline):
                        await self._ready.wait()
                except TimeoutError:
                    raise InvalidState("openai provider is still reconnecting") from None
                continue
            queue = self._outq
            if queue is None or queue.qsize() < self._max_queue:
                break  # (no queue: over for good; _usable_session says so)
            self._space.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._space.wait()
            except TimeoutError:
                raise LimitExceeded(
                    f"outbound queue full for {self.send_timeout_s} s", limit=self._max_queue
                ) from None
        session = self._usable_session()
        result = call(session)
        self._flush()
        self._activity.set()
        return result
