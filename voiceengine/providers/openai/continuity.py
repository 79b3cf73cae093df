# mypy: disable-error-code="misc"
# (why: the mixin methods annotate ``self: RealtimeShell`` to type the shell attributes they use;
# mypy flags that self-type as not a supertype of the mixin, which is intended here)
"""Session continuity of the OpenAI provider: outages, restore, audio backlog, recycling.

A mixin of :class:`~voiceengine.providers.openai.shell.RealtimeShell` (split out only to
keep files small; it uses the shell's attributes). What it guarantees (docs/reliability.md):

* An *outage* starts when a usable connection is lost (or a planned recycle begins) and
  ends with ``restored`` or a terminal phase. The replay source is called once per outage
  and its items are held across failed attempts.
* Restore order on the fresh session: ``session.update`` (config + every
  ``update_session``), the replayed items (``conversation.item.create``, original ids and
  roles), the backlogged input audio, then the ``restored`` CONNECTION_STATE.
* Audio accounting: every byte ``send_audio`` accepted is *captured*, then exactly one of
  sent / replayed / dropped; until then it is pending (outbound queue or backlog).
* A response that dies with the connection is reported once as a synthetic RESPONSE_DONE
  (``status="failed"``, ``reason="connection_lost"``); it is never re-requested.
* Recycle: ``recycle_margin_s`` before the session limit (on ``self.clock``), once no
  response is requested/active/queued and the user is not mid-utterance, a planned close
  (1000) and the same restore path with ``planned=True``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..types import ConnectionState, EventType, ProviderEvent, ResponseInfo
from .backlog import AudioBacklog, OutboundAudio
from .protocol import pcm_bytes

if TYPE_CHECKING:
    from .connection import ClientConnection
    from .shell import RealtimeShell
    from .session import RealtimeSession

__all__ = ["ContinuityMixin", "REPLAY_CHUNK_MS"]

log = logging.getLogger("voiceengine.providers.openai")

#: backlog audio is replayed in appends of at most this much audio (fewer, bigger frames)
REPLAY_CHUNK_MS = 500


@dataclass(slots=True, kw_only=True)
class _Outage:
    started_at: float  # on the provider's clock
    dropped_at_start: int  # ledger.dropped_bytes when it began
    planned: bool = False
    replayed_audio: int = 0  # backlog bytes handed to the current restoring connection


class ContinuityMixin:
    """Outage bookkeeping, backlog, restore and recycle for :class:`RealtimeShell`."""

    def _init_continuity(self: RealtimeShell) -> None:
        config = self.config
        self._backlog = AudioBacklog(config.reconnect_audio_buffer_ms * config.input_bytes_per_ms, align=2)
        self._replay_chunk = REPLAY_CHUNK_MS * config.input_bytes_per_ms
        self._queued_audio = 0  # bytes of OutboundAudio in the outbound queue or being written
        self._writing: OutboundAudio | None = None
        self._buffering = False  # send_audio goes to the backlog while not ready
        self._outage: _Outage | None = None
        self._replay_items: list[Any] | None = None
        self._recycler: asyncio.Task[None] | None = None
        self._recycling = False
        self._speaking = False  # between SPEECH_STARTED and the commit
        self._activity = asyncio.Event()  # set after every message handled / control call
        self._replayed_count = 0

    # ---------------------------------------------------------------- accounting
    def _audio_pending_bytes(self: RealtimeShell) -> int:
        return self._backlog.nbytes + self._queued_audio

    def _buffer_audio(self: RealtimeShell, audio: Any) -> None:
        """``send_audio`` while no session is usable: keep it in the bounded backlog."""
        view = pcm_bytes(audio)  # validate at the boundary, as when connected
        n = len(view)
        if not n:
            return
        self.audio_ledger.captured(n)
        dropped = self._backlog.push(bytes(view))
        if dropped:
            self.audio_ledger.dropped(dropped)

    def _queue_audio(self: RealtimeShell, session: RealtimeSession, pcm: bytes, *, replay: bool) -> None:
        text = session.encode_audio(pcm)
        if text is None or self._outq is None:
            return
        self._queued_audio += len(pcm)
        self._outq.put_nowait(OutboundAudio(text, pcm, replay=replay))

    def _recover_audio(self: RealtimeShell, leftovers: list[OutboundAudio], *, keep: bool) -> None:
        """Audio not written when its connection ended: back to the backlog front, or dropped."""
        n = sum(item.nbytes for item in leftovers)
        if not n:
            return
        self._queued_audio -= n
        if keep:
            dropped = self._backlog.push_front([item.pcm for item in leftovers])
        else:
            dropped = n
        if dropped:
            self.audio_ledger.dropped(dropped)

    def _drop_backlog(self: RealtimeShell) -> None:
        dropped = self._backlog.clear()
        if dropped:
            self.audio_ledger.dropped(dropped)

    # ------------------------------------------------------------------- outage
    def _begin_outage(self: RealtimeShell, *, planned: bool = False) -> None:
        """The current connection stopped being usable: buffer audio from now on."""
        self._buffering = True
        if self._outage is None:
            self._outage = _Outage(started_at=self.clock.monotonic(), dropped_at_start=self.audio_ledger.dropped_bytes,
                                   planned=planned)

    def _take_replay_items(self: RealtimeShell) -> None:
        """Call the replay source once per outage; its items are held until a restore."""
        if self._replay_items is not None:
            return
        self._replay_items = []
        source = self._replay_source
        if source is None:
            return
        try:
            self._replay_items = [dict(item) for item in source()]
        except Exception as exc:
            log.exception("openai: replay source raised")
            self._emit_error(f"replay source raised {type(exc).__name__}", code="replay_failed")

    def _end_outage(self: RealtimeShell) -> None:
        """No restore will come (terminal, disconnect): whatever is pending is dropped."""
        self._buffering = False
        self._outage = None
        self._replay_items = None
        self._drop_backlog()

    def _report_lost_responses(self: RealtimeShell, session: RealtimeSession) -> None:
        for response_id in session.lost_responses():
            info = ResponseInfo(response_id=response_id, status="failed", reason="connection_lost")
            self._emit(ProviderEvent(type=EventType.RESPONSE_DONE, data=info, provider=self.name,
                                     session_id=self.session_id, response_id=response_id))

    # ------------------------------------------------------------------ restore
    def _restore_into(self: RealtimeShell, session: RealtimeSession) -> None:
        """On ``session.created`` of a reconnected session: replay items, then the backlog."""
        outage = self._outage
        if outage is not None:
            outage.replayed_audio = 0
        replayed = 0
        for item in self._replay_items or ():
            try:
                session.add_item(item)
                replayed += 1
            except (TypeError, ValueError) as exc:  # one bad item must not block the rest
                self._emit_error(f"replay item refused: {exc}", code="replay_failed")
        self._replayed_count = replayed
        self._flush()
        self._drain_backlog(session)

    def _drain_backlog(self: RealtimeShell, session: RealtimeSession) -> None:
        for pcm in self._backlog.drain(max_chunk=self._replay_chunk):
            self._queue_audio(session, pcm, replay=True)
            if self._outage is not None:
                self._outage.replayed_audio += len(pcm)

    def _restored(self: RealtimeShell) -> None:
        """Everything replayed was written: the session is usable again."""
        session = self._session
        if session is not None:
            self._drain_backlog(session)  # audio that arrived since session.created
        outage, self._outage = self._outage, None
        self._replay_items = None
        self._buffering = False
        self._ready.set()
        self.stats["reconnects"] += 1
        planned = outage.planned if outage else False
        now = self.clock.monotonic()
        self._set_state(
            ConnectionState.CONNECTED, phase="restored",
            reason="session recycled" if planned else "session restored", attempt=self._failures,
            planned=planned, replayed_items=self._replayed_count,
            replayed_audio_bytes=outage.replayed_audio if outage else 0,
            dropped_audio_bytes=self.audio_ledger.dropped_bytes - outage.dropped_at_start if outage else 0,
            downtime_ms=(now - outage.started_at) * 1000.0 if outage else None,
        )

    # ------------------------------------------------------------------ recycle
    def _start_recycler(self: RealtimeShell) -> None:
        if not (self.config.recycle and self.config.reconnect) or self._ws is None or self._tearing_down:
            return
        if self._recycler is not None:  # never two (the old one would be unowned)
            self._recycler.cancel()
        self._recycler = asyncio.create_task(self._recycle_when_due(self._ws, self._ready_at),
                                             name="voiceengine-openai-recycler")

    async def _stop_recycler(self: RealtimeShell) -> None:
        """Cancel and await the recycler, if any (teardown: no task may outlive it)."""
        recycler, self._recycler = self._recycler, None
        if recycler is not None and recycler is not asyncio.current_task():
            recycler.cancel()
            await asyncio.shield(asyncio.gather(recycler, return_exceptions=True))

    def _idle(self: RealtimeShell) -> bool:
        session = self._session
        return session is None or (session.idle and not self._speaking)

    def _note_speech(self: RealtimeShell, event: ProviderEvent) -> None:
        if event.type is EventType.SPEECH_STARTED:
            self._speaking = True
        elif event.type in (EventType.INPUT_COMMITTED, EventType.INPUT_CLEARED):
            self._speaking = False

    def _recycle_reason(self: RealtimeShell) -> str:
        return f"session recycle before the {self.config.effective_session_limit_s:g} s limit"

    async def _recycle_when_due(self: RealtimeShell, ws: ClientConnection, ready_at: float) -> None:
        """Planned reconnect ``recycle_margin_s`` before the session limit, when idle."""
        config = self.config
        due = ready_at + config.effective_session_limit_s - config.recycle_margin_s
        await self.clock.sleep(max(0.0, due - self.clock.monotonic()))
        while not self._idle():  # never cut a reply or the user's utterance
            self._activity.clear()
            await self._activity.wait()
        if ws is not self._ws or self._closing or self._outq is None:
            return
        log.info("openai: %s", self._recycle_reason())
        self._recycling = True
        self._ready.clear()  # control calls wait for the restore; audio goes to the backlog
        self._begin_outage(planned=True)
        # What is queued goes out first (bounded in real time: a dead peer must not hold us).
        barrier: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outq.put_nowait(barrier)
        await asyncio.wait([barrier], timeout=self.send_timeout_s)
        try:
            await ws.close(1000, "session recycle")  # the reader sees it and reconnects
        except Exception:
            ws.transport.abort()
