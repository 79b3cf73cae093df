"""The provider-neutral runtime: every provider's tasks, queues, reconnects and continuity.

:class:`ProviderRuntime` moves frames between a :class:`~.interfaces.Transport` and a
sans-I/O :class:`~.interfaces.ProtocolSession` (one per connection), which owns every
protocol decision. A provider is a short binding: it subclasses the runtime, says how to
open its transport (:meth:`ProviderRuntime.open_transport`) and how to make a session
(:meth:`ProviderRuntime.new_session`), and turns its public verbs into session calls with
:meth:`ProviderRuntime._control`. docs/provider_interface.md walks through one.

Tasks (all owned, all cancelled and awaited by ``disconnect()``):

* the *reader* (``_supervise``): reads frames, feeds the session, emits its events, and
  on a reconnectable loss runs the reconnect loop (one connection at a time); with a
  :class:`~.interfaces.PushTransport` the transport hands it each message from its read
  callback instead (the task only waits, and receives what the transport does not push);
* the *writer* (:class:`OutboundWriter`, one per connection): drains the
  :class:`OutboundQueue` to the transport, so no public method ever waits on the network;
  a loop callback that writes every ready frame in one socket write, and a task only
  while flow control makes writes wait (or for a transport without ``send_nowait``);
* the *recycler*: a planned reconnect before the service's session limit, once idle; or
  the *handover* (:meth:`ProviderRuntime.handover`) a binding starts when the service
  announces the end of the connection (Gemini's ``goAway``): one task slot, never both.

Continuity (docs/reliability.md):

* An *outage* (:class:`Outage`) starts when a usable connection is lost (or a planned
  recycle begins) and ends with ``restored`` or a terminal phase. The conversation to
  restore is taken once per outage: the engine's replay source when one is set, else the
  provider's own :class:`~.conversation.ConversationRecord`, and held across failed attempts.
* Restore order on the fresh session: its set-up frames, then either nothing (the service
  resumed the old session from its handle: ``restored_by=RESUMPTION``) or the replayed
  entries (``restored_by=REPLAY``), then the backlogged input audio, then the ``restored``
  CONNECTION_STATE once all of it was written.
* Audio accounting: every byte ``send_audio`` accepted is *captured*, then exactly one of
  sent / replayed / dropped; until then it is pending (outbound queue or
  :class:`~.backlog.AudioBacklog`).
* A reply that dies with the connection is reported once as a synthetic RESPONSE_DONE
  (``status="failed"``, ``reason="connection_lost"``); it is never re-requested.
* The first ``connect()`` retries transient handshake failures (``ConnectionFailed`` with
  ``retryable``) with the reconnect backoff, up to ``max_reconnect_attempts``; fatal ones
  raise at once.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Protocol, TypeVar

from .._audio.pcm import g711_view, pcm16_view
from ..clock import SYSTEM_CLOCK, Clock
from ..exceptions import ConnectionFailed, InvalidState, LimitExceeded
from .backlog import AudioBacklog, OutboundAudio
from .base import AudioLedger, BaseProvider, ProviderConfig
from .conversation import ConversationEntry, entries_from_items
from .interfaces import BatchTransport, CloseInfo, Frame, ProtocolSession, PushTransport, Transport, TransportClosed
from .types import ConnectionState, ErrorInfo, EventType, ProviderEvent, ResponseInfo, RestoreMethod

__all__ = [
    "ProviderRuntime",
    "RuntimeSettings",
    "BackoffPolicy",
    "backoff",
    "ReconnectPolicy",
    "OutboundQueue",
    "OutboundWriter",
    "Outage",
]

log = logging.getLogger("voiceengine.providers.runtime")
_AUDIO_DELTA = EventType.AUDIO_DELTA

S = TypeVar("S", bound=ProtocolSession)
T = TypeVar("T")


class BackoffSettings(Protocol):
    @property
    def backoff_initial_s(self) -> float: ...

    @property
    def backoff_max_s(self) -> float: ...


#: A reconnect policy: called once per reconnect episode with the provider's config,
#: yields the delay (seconds) before each attempt. Replace it on a provider
#: (``provider.reconnect_delays = ...``), e.g. ``lambda config: itertools.repeat(0.0)`` in tests.
BackoffPolicy = Callable[[Any], Iterator[float]]


def backoff(config: BackoffSettings, *, factor: float = 2.0,
            rng: Callable[[], float] = random.random) -> Iterator[float]:
    """Jittered exponential backoff ("full jitter"), as websockets' ``backoff`` does.

    The first delay is a random fraction of ``backoff_initial_s`` (so that many clients
    dropped by the same server restart do not reconnect in lockstep); then each delay is
    drawn uniformly in ``[cap/2, cap]`` where ``cap`` doubles up to ``backoff_max_s``.
    """
    yield rng() * config.backoff_initial_s
    cap = config.backoff_initial_s
    while True:
        cap = min(cap * factor, config.backoff_max_s)
        yield cap / 2 + rng() * cap / 2


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeSettings:
    """What the runtime needs from a provider's config (the binding fills it in).

    ``backlog_bytes``: input audio kept while a session is being restored (oldest dropped
    beyond it); ``audio_align``: bytes per input sample frame; ``replay_chunk_bytes``: the
    largest audio frame a backlog replay sends; ``session_limit_s``: the service's session
    limit (``None``: none), recycled ``recycle_margin_s`` before it when ``recycle``;
    ``max_queue_frames``: the outbound queue bound; ``max_inbound_bytes``: the transport's
    inbound frame limit (for the error message when it trips).
    """

    reconnect: bool = True
    max_queue_frames: int = 1024
    backlog_bytes: int = 0
    audio_align: int = 2
    replay_chunk_bytes: int = 24000
    recycle: bool = False
    session_limit_s: float | None = None
    recycle_margin_s: float = 0.0
    max_inbound_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_queue_frames < 1 or self.backlog_bytes < 0 or self.audio_align < 1:
            raise ValueError("max_queue_frames must be >= 1, backlog_bytes >= 0 and audio_align >= 1")
        if self.replay_chunk_bytes < self.audio_align:
            raise ValueError("replay_chunk_bytes must hold at least one sample frame")
        if self.session_limit_s is not None and not 0 <= self.recycle_margin_s < self.session_limit_s:
            raise ValueError("recycle_margin_s must be >= 0 and below session_limit_s")


class ReconnectPolicy:
    """Consecutive failed attempts and the delays between them.

    An attempt counts as failed until a connection lasts ``stable_after_s``; beyond
    ``max_attempts`` consecutive failures the provider gives up. ``delays`` is the
    :data:`BackoffPolicy`, called once per episode.
    """

    __slots__ = ("delays", "stable_after_s", "max_attempts", "failures", "_episode")

    def __init__(self, delays: BackoffPolicy, *, stable_after_s: float, max_attempts: int) -> None:
        self.delays = delays
        self.stable_after_s = stable_after_s
        self.max_attempts = max_attempts
        self.failures = 0
        self._episode: Iterator[float] | None = None

    def begin_episode(self, config: Any) -> None:
        self._episode = self.delays(config)

    def next_attempt(self) -> bool:
        """Count one more attempt; whether it is still allowed."""
        self.failures += 1
        return self.failures <= self.max_attempts

    def next_delay(self) -> float:
        if self._episode is None:
            raise RuntimeError("begin_episode() first")
        return max(0.0, next(self._episode))

    def connection_lasted(self, uptime_s: float) -> None:
        if uptime_s >= self.stable_after_s:
            self.failures = 0

    def reset(self) -> None:
        self.failures = 0
        self._episode = None


#: what the outbound queue holds: frames, input audio, barriers
_Outbound = Frame | OutboundAudio | asyncio.Future[None]

#: Input frames closer together than this are a burst, written together (OutboundWriter.write_now);
#: live frames are frame_ms (>= 1 ms) apart.
_BURST_GAP_S = 0.0005
#: the writer's clock for that gap (only its own timestamps are compared): the C function
#: itself, not the loop's time() method, once per frame
_burst_clock: Callable[[], float] = time.monotonic


class OutboundQueue:
    """The frames waiting for the writer of one connection.

    Items: frames, :class:`~.backlog.OutboundAudio` (input audio, pending until written;
    moved back to the backlog if the connection dies first) and barrier futures (resolved
    when everything queued before them was written). Bounded by ``max_frames`` for the
    callers that ask (:attr:`full`); frames the session produces on its own while reading
    are never refused, so it may exceed the bound by the few frames of one step.

    ``wake`` (set by the writer) is called after every put: the writer schedules itself.
    """

    __slots__ = ("max_frames", "space", "queued_audio", "writing", "wake", "_items")

    def __init__(self, max_frames: int) -> None:
        self.max_frames = max_frames
        #: set when there is room (or the connection changed): senders waiting re-check
        self.space = asyncio.Event()
        self.space.set()
        #: bytes of input audio queued or being written
        self.queued_audio = 0
        #: the audio item taken by the writer and not (known to be) written
        self.writing: OutboundAudio | None = None
        self.wake: Callable[[], None] = _no_wake
        self._items: collections.deque[_Outbound] = collections.deque()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.max_frames

    def put(self, frame: Frame) -> None:
        self._items.append(frame)
        self.wake()

    def put_audio(self, item: OutboundAudio, *, wake: bool = True) -> None:
        """``wake=False``: the caller has the writer write at once (:meth:`OutboundWriter.write_now`)."""
        self.queued_audio += item.nbytes
        self._items.append(item)
        if wake:
            self.wake()

    def put_barrier(self) -> asyncio.Future[None]:
        barrier: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._items.append(barrier)
        self.wake()
        return barrier

    def pop(self) -> _Outbound | None:
        """The oldest item (``None``: empty)."""
        items = self._items
        if not items:
            return None
        item = items.popleft()
        if len(items) < self.max_frames:
            self.space.set()
        return item

    def pop_all(self) -> list[_Outbound]:
        """Every item, oldest first (the queue is then empty)."""
        items = list(self._items)
        self._items.clear()
        self.space.set()
        return items

    def push_front(self, items: list[_Outbound]) -> None:
        """Put items taken by :meth:`pop_all` and not written back at the front, in order."""
        self._items.extendleft(reversed(items))

    def written(self, nbytes: int) -> None:
        """``nbytes`` of queued input audio were written (the item being written included)."""
        self.writing = None
        self.queued_audio -= nbytes

    def take_leftovers(self) -> list[OutboundAudio]:
        """Empty the queue (the connection is gone): the audio not written, oldest first;
        barriers are cancelled (what they wait for will never be written)."""
        leftovers: list[OutboundAudio] = []
        if self.writing is not None:
            leftovers.append(self.writing)
            self.writing = None
        for item in self._items:
            if isinstance(item, OutboundAudio):
                leftovers.append(item)
            elif isinstance(item, asyncio.Future) and not item.done():
                item.cancel()
        self._items.clear()
        self.queued_audio -= sum(item.nbytes for item in leftovers)
        self.space.set()
        return leftovers


def _no_wake() -> None:
    """The wake hook of a queue no writer serves (yet)."""


class OutboundWriter:
    """Drains one connection's :class:`OutboundQueue` to its transport, in order.

    Fast path (a :class:`~.interfaces.BatchTransport`): every put schedules one loop
    callback (``call_soon``, so the frame goes out in the next loop iteration, as a woken
    writer task's would, with no task switch); it takes every item queued by then and
    writes their frames with one ``send_nowait`` (one socket write), then resolves the
    barriers among them. Nothing waits for more: no added latency, only what is ready.
    A live input frame with nothing queued before it skips the queue altogether
    (:meth:`write_audio_now`); :meth:`write_now` writes what is queued from the caller's step.
    When the transport declines (flow control, closing) or has no fast path, the
    writer's task writes item by item with the awaited ``send`` (which waits for the
    drain, so the queue fills and :attr:`OutboundQueue.full` pushes back on senders)
    until the queue is empty, then hands back to the callback.

    Ledger: audio counts as written (sent / replayed) once its write returned; the items
    of a write that failed go back to the queue front, so the connection's teardown finds
    them (:meth:`OutboundQueue.take_leftovers`) and the audio is recovered or dropped.
    """

    __slots__ = ("transport", "queue", "name", "_ledger", "_stats", "_batch", "_loop", "_scheduled", "_slow",
                 "_task", "_waiter", "_stopped", "_written_at")

    def __init__(self, transport: Transport, queue: OutboundQueue, *, ledger: AudioLedger, stats: dict[str, int],
                 name: str) -> None:
        self.transport = transport
        self.queue = queue
        self.name = name
        self._ledger = ledger
        self._stats = stats
        self._batch = transport.send_nowait if isinstance(transport, BatchTransport) else None
        self._loop = asyncio.get_running_loop()
        self._scheduled = False
        self._written_at = -math.inf  # _burst_clock() at the last write that went out at once
        #: the task writes (flow control, or no fast path); the callback stands aside
        self._slow = self._batch is None
        self._waiter: asyncio.Future[None] | None = None
        self._stopped = False
        self._task = self._loop.create_task(self._write_slowly(), name=f"voiceengine-{name}-writer")
        queue.wake = self.wake
        if len(queue):
            self.wake()

    def wake(self) -> None:
        """Something was queued: write it in the next loop iteration."""
        if self._stopped or self._scheduled:
            return
        if self._slow:
            self._wake_task()
            return
        self._scheduled = True
        self._loop.call_soon(self._drain)

    def write_now(self) -> None:
        """Write what is queued now, from the caller's step: a live frame (the previous one
        went out at least ``_BURST_GAP_S`` ago) reaches the socket without waiting for the
        next loop iteration. Calls closer together than that are a burst (an app pushing a
        file, or catching up): then this is :meth:`wake`, and the burst shares the next
        iteration's write. Whatever is queued goes too, in order (a write an earlier
        :meth:`wake` scheduled then finds the queue empty)."""
        if self._stopped:
            return
        now = _burst_clock()
        if self._slow or now - self._written_at < _BURST_GAP_S:
            self.wake()
            return
        self._written_at = now
        self._drain()

    def write_audio_now(self, frame: Frame, nbytes: int) -> bool:
        """Write one input-audio frame (``nbytes`` of audio) at once, from the caller's
        step, when nothing is queued before it and it is not part of a burst (see
        :meth:`write_now`); whether it was written. ``False``: nothing was written, the
        caller queues the frame as usual. The live case, one frame per 20 ms: no queue
        round trip, and the frame is written the moment its write returns, so there is
        nothing to keep for a re-send."""
        batch = self._batch
        if self._stopped or self._slow or batch is None or len(self.queue):
            return False
        now = _burst_clock()
        if now - self._written_at < _BURST_GAP_S:
            return False
        try:
            written = batch((frame,))
        except Exception:
            self._fail()  # the caller queues the frame: the teardown recovers it
            return False
        if not written:  # flow control or closing: the task takes over, as in _drain
            self._slow = True
            self._wake_task()
            return False
        self._written_at = now
        self._stats["messages_sent"] += 1
        self._ledger.sent(nbytes)
        return True

    def stop(self) -> asyncio.Task[None]:
        """Write nothing more; returns the writer's task (cancelled) to await."""
        self._stopped = True
        self.queue.wake = _no_wake
        self._task.cancel()
        return self._task

    def _wake_task(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _drain(self) -> None:
        self._scheduled = False
        batch = self._batch
        if self._stopped or self._slow or batch is None:
            return
        queue = self.queue
        items = queue.pop_all()
        frames = [item.text if isinstance(item, OutboundAudio) else item for item in items
                  if not isinstance(item, asyncio.Future)]
        try:
            written = batch(frames) if frames else True
        except Exception:
            queue.push_front(items)  # nothing of this write is known written
            self._fail()
            return
        if not written:
            queue.push_front(items)
            self._slow = True
            self._wake_task()
            return
        sent = audio_sent = audio_replayed = 0
        for item in items:
            if isinstance(item, OutboundAudio):
                if item.replay:
                    audio_replayed += item.nbytes
                else:
                    audio_sent += item.nbytes
            elif isinstance(item, asyncio.Future):
                if not item.done():
                    item.set_result(None)
                continue
            sent += 1
        self._stats["messages_sent"] += sent
        if audio_sent or audio_replayed:  # once per write, not per frame
            self._audio_written(audio_sent, audio_replayed)

    async def _write_slowly(self) -> None:
        queue, transport = self.queue, self.transport
        try:
            while True:
                item = queue.pop() if self._slow else None
                if item is None:
                    if self._batch is not None:
                        self._slow = False  # empty: the next put goes the fast way again
                    self._waiter = self._loop.create_future()
                    await self._waiter
                    continue
                if isinstance(item, asyncio.Future):
                    if not item.done():
                        item.set_result(None)
                    continue
                if isinstance(item, OutboundAudio):
                    # Until send() returns it counts as pending; if the connection dies
                    # first, the teardown moves it back to the backlog.
                    queue.writing = item
                    await transport.send(item.text)
                    if item.replay:
                        self._audio_written(0, item.nbytes)
                    else:
                        self._audio_written(item.nbytes, 0)
                else:
                    await transport.send(item)
                self._stats["messages_sent"] += 1
        except TransportClosed:
            self._stopped = True  # the reader sees the close and decides what happens next
        except asyncio.CancelledError:
            raise
        except Exception:
            self._fail()

    def _audio_written(self, sent: int, replayed: int) -> None:
        """Input audio whose write returned: off the queue's books, into the ledger as sent
        (first time) or replayed (from the backlog)."""
        self.queue.written(sent + replayed)
        if sent:
            self._ledger.sent(sent)
        if replayed:
            self._ledger.replayed(replayed)

    def _fail(self) -> None:
        log.exception("%s: writer failed; dropping the connection", self.name)
        self._stopped = True
        self.transport.abort()  # the reader then sees 1006 and reconnects


@dataclass(slots=True, kw_only=True)
class Outage:
    """From the loss of a usable session (or a planned recycle) to restored / terminal."""

    started_at: float  # on the provider's clock
    dropped_at_start: int  # ledger.dropped_bytes when it began
    planned: bool = False
    replayed_audio: int = 0  # backlog bytes handed to the current restoring connection
    #: the conversation to replay, taken once per outage (None: not taken yet)
    entries: list[ConversationEntry] | None = None
    resume_handle: str | None = None
    #: why a planned handover began (``None``: a loss, or a recycle: the default wording)
    reason: str | None = None


@dataclass(slots=True, kw_only=True)
class _Outcome:
    """How one connection ended, as the reader saw it."""

    close: CloseInfo = field(default_factory=lambda: CloseInfo(code=None))
    ready: bool = False
    uptime_s: float = 0.0
    fatal: ErrorInfo | None = None
    expired: bool = False  # the service announced the end of the session
    timeout: bool = False  # not set up in time
    planned: bool = False  # we closed it to recycle the session
    planned_reason: str = ""

    @property
    def too_big(self) -> bool:
        """The transport closed it (1009) because an inbound frame exceeded its limit."""
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
            return "session not set up in time"
        text = f"closed with code {self.close.code}"
        if self.close.reason:
            text += f" ({self.close.reason})"
        return text + (" after the session expired" if self.expired else "")


class ProviderRuntime(BaseProvider, Generic[S]):
    """The runtime (see the module docstring). A provider subclasses it and implements
    :meth:`open_transport`, :meth:`new_session` and its public verbs.

    ``reconnect_delays`` replaces the backoff policy (``config -> iterator of delays``);
    ``stable_after_s`` is how long a connection must last for its reconnect counter to
    reset; ``send_timeout_s`` bounds how long control calls wait for queue space or for a
    restore in progress (default ``config.connect_timeout_s``); ``clock`` runs the long
    timers (backoff sleeps, the stable-connection timer, recycling; default
    :data:`~voiceengine.clock.SYSTEM_CLOCK`, a :class:`~voiceengine.clock.VirtualClock` in tests).
    """

    def __init__(
        self,
        config: ProviderConfig,
        settings: RuntimeSettings,
        *,
        reconnect_delays: BackoffPolicy | None = None,
        stable_after_s: float = 10.0,
        send_timeout_s: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(config)
        self.settings = settings
        self.policy = ReconnectPolicy(reconnect_delays or backoff, stable_after_s=stable_after_s,
                                      max_attempts=config.max_reconnect_attempts)
        self.send_timeout_s = config.connect_timeout_s if send_timeout_s is None else send_timeout_s
        self.clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self._session: S | None = None
        self._transport: Transport | None = None
        self._outq: OutboundQueue | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: OutboundWriter | None = None
        #: the input check of the live connection (see _serve)
        self._live_input_view: Callable[[Any], bytes | bytearray | memoryview] = pcm16_view
        self._recycler: asyncio.Task[None] | None = None
        self._retry_sleep: asyncio.Future[None] | None = None
        self._connect_waiter: asyncio.Future[None] | None = None
        # set while a session is usable, and once the provider is over for good (so waiters
        # wake and see the state); cleared while connecting or restoring
        self._ready = asyncio.Event()
        self._closing = False
        self._conn_ready = False
        # set once the current connection's teardown has begun: a write-barrier callback
        # (session set-up / restored) that fires after that point must not revive it
        self._tearing_down = False
        self._after_sent_pending: set[Callable[..., None]] = set()
        self._ready_at = 0.0
        self._fatal: ErrorInfo | None = None
        self._backlog = AudioBacklog(settings.backlog_bytes, align=settings.audio_align)
        self._buffering = False  # send_audio goes to the backlog while not ready
        self._outage: Outage | None = None
        # why the current connection is being closed on purpose (a recycle or a handover);
        # None while it is not: its close then is a loss
        self._planned_reason: str | None = None
        self._speaking = False  # between SPEECH_STARTED and the commit
        self._activity = asyncio.Event()  # set after every frame handled / control call
        self._replayed_count = 0
        self._restored_by: RestoreMethod | None = None
        #: counters for diagnostics (audio figures: :attr:`audio_accounting`)
        self.stats: dict[str, int] = {
            "messages_sent": 0, "messages_received": 0, "connections": 0, "reconnects": 0,
        }

    # ------------------------------------------------------------- the binding
    @abc.abstractmethod
    async def open_transport(self) -> Transport:
        """Open one connection (handshake done) or raise :class:`ConnectionFailed` with
        ``fatal``/``retryable`` set. Must not leave anything open when it raises."""

    @abc.abstractmethod
    def new_session(self, *, resume_handle: str | None) -> S:
        """A fresh protocol session for a new connection. ``resume_handle`` is the last
        handle the previous session gave (services with server-side resumption)."""

    # ------------------------------------------------------------- policy knobs
    @property
    def reconnect_delays(self) -> BackoffPolicy:
        return self.policy.delays

    @reconnect_delays.setter
    def reconnect_delays(self, policy: BackoffPolicy) -> None:
        self.policy.delays = policy

    @property
    def stable_after_s(self) -> float:
        return self.policy.stable_after_s

    @stable_after_s.setter
    def stable_after_s(self, seconds: float) -> None:
        self.policy.stable_after_s = seconds

    @property
    def session(self) -> S | None:
        """The protocol session of the current connection (read-only use)."""
        return self._session

    @property
    def response_active(self) -> bool:
        session = self._session
        return bool(session is not None and not session.idle)

    # ------------------------------------------------------------- lifecycle
    async def connect(self) -> None:
        """Open a connection and wait until the session is set up and its set-up frames sent.

        Transient handshake failures are retried with the reconnect backoff up to
        ``config.max_reconnect_attempts`` times; then, or at once for a fatal one, raises
        :class:`ConnectionFailed` (``status_code`` for a refused handshake). Also raises it
        when the session is not set up within ``config.connect_timeout_s``. A no-op when
        already connected. Cancelling it leaves nothing running (no task, no socket).
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
        self.policy.reset()
        self._set_state(ConnectionState.CONNECTING, phase="connecting")
        try:
            transport = await self._open_first()
        except BaseException as exc:
            if not self._closing:
                failed = isinstance(exc, ConnectionFailed)
                self._set_state(ConnectionState.ERROR if failed else ConnectionState.DISCONNECTED, phase="failed",
                                reason=exc.message if isinstance(exc, ConnectionFailed) else "cancelled")
            raise
        if self._closing:  # disconnect() was called during the handshake
            await transport.close()
            raise ConnectionFailed("disconnect() called during connect()", code="closed", retryable=False)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._connect_waiter = waiter
        self._reader = asyncio.create_task(self._supervise(transport), name=f"voiceengine-{self.name}-reader")
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

    async def _open_first(self) -> Transport:
        """The first connection: transient handshake failures retried like a reconnect."""
        attempt = 0
        while True:
            try:
                return await self.open_transport()
            except ConnectionFailed as exc:
                if exc.fatal or not exc.retryable or attempt >= self.policy.max_attempts or self._closing:
                    raise
                if attempt == 0:
                    self.policy.begin_episode(self.config)
                attempt += 1
                reason = exc.message
            log.info("%s: first connect attempt failed (%s); retry %d", self.name, reason, attempt)
            self._set_state(ConnectionState.CONNECTING, phase="connecting", reason=reason, attempt=attempt)
            await self._sleep_unless_closed(self.policy.next_delay())

    async def _sleep_unless_closed(self, seconds: float) -> None:
        """A backoff sleep of ``connect()`` that ``disconnect()`` cuts short."""
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        self._retry_sleep = sleeper
        try:
            await sleeper
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._closing and current is not None and not current.cancelling():
                raise ConnectionFailed("disconnect() called during connect()", code="closed",
                                       retryable=False) from None
            raise
        finally:
            self._retry_sleep = None
            if not sleeper.done():
                sleeper.cancel()
        if self._closing:
            raise ConnectionFailed("disconnect() called during connect()", code="closed", retryable=False)

    async def disconnect(self) -> None:
        """Close the session: nothing more is sent, the transport is closed within
        ``close_timeout_s`` even if the peer never answers, every task is cancelled and
        awaited, pending input audio is counted dropped, ``events()`` ends. Idempotent.
        """
        self._closing = True
        sleeper = self._retry_sleep
        if sleeper is not None and not sleeper.done():
            sleeper.cancel()
        await self._teardown()
        self._end_outage()
        self._ready.set()  # wake control calls waiting for a restore: they see CLOSED
        if self._state is not ConnectionState.CLOSED:
            self._set_state(ConnectionState.CLOSED, phase="closed", reason="disconnect() called")
        self._close_event_streams()
        await self._cancel_handler_tasks()

    async def _teardown(self) -> None:
        """Stop the writer (so nothing more is sent), close the transport, stop the reader."""
        waiter = self._connect_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionFailed("disconnect() called during connect()", code="closed",
                                                  retryable=False))
        self._tearing_down = True
        writer, reader, recycler, transport = self._writer, self._reader, self._recycler, self._transport
        writer_task = writer.stop() if writer is not None else None
        current = asyncio.current_task()
        tasks = [t for t in (writer_task, recycler, reader) if t is not None and t is not current]
        for task in tasks:
            task.cancel()
        try:
            if transport is not None:
                await transport.close()
        finally:
            # Even when cancelled itself, wait for the tasks it cancelled: none may outlive it.
            if tasks:
                await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
            await self._stop_recycler()
        self._writer = self._reader = None
        self._drop_connection(keep_audio=False)

    # ---------------------------------------------------------------- reader
    async def _supervise(self, transport: Transport) -> None:
        """The reader task: serve connections one after the other, reconnecting as allowed."""
        first = True
        current: Transport | None = transport
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
                if outcome.ready:
                    self.policy.connection_lasted(outcome.uptime_s)
                if outcome.too_big:
                    limit = self.settings.max_inbound_bytes
                    self._emit_error(f"a server message exceeded the inbound size limit ({limit} bytes)",
                                     code="message_too_big", remote=True)
                if not outcome.reconnectable or not self.settings.reconnect:
                    self._finish(outcome)
                    return
                self._take_replay_entries()
                current = await self._reopen(outcome)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours: never leave the provider silently dead
            log.exception("%s: reader failed", self.name)
            self._emit_error(f"reader failed: {type(exc).__name__}", code="internal_error")
            self._terminal(ConnectionState.ERROR, phase="failed", reason="internal error")

    async def _serve(self, transport: Transport, *, reconnected: bool) -> _Outcome:
        """Run one connection until it ends; the writer lives exactly as long."""
        outage = self._outage
        session = self.new_session(resume_handle=outage.resume_handle if outage is not None else None)
        queue = OutboundQueue(self.settings.max_queue_frames)
        self._transport, self._session, self._outq = transport, session, queue
        self._live_input_view = self._input_checker()  # (the format is the config's: once per connection)
        self._tearing_down = False
        self._conn_ready = False
        self._speaking = False
        self.stats["connections"] += 1
        session.start()
        self._flush()
        self._writer = OutboundWriter(transport, queue, ledger=self.audio_ledger, stats=self.stats, name=self.name)
        deadline = asyncio.get_running_loop().time() + self.config.connect_timeout_s
        outcome = _Outcome()
        pusher = transport if isinstance(transport, PushTransport) else None
        try:
            while self._fatal is None:
                if pusher is not None:
                    if await self._receive_pushed(pusher, session, reconnected=reconnected, deadline=deadline):
                        outcome.timeout = True
                        break
                    if self._fatal is not None:
                        break
                try:
                    if self._conn_ready:
                        frame = await transport.receive()
                    else:
                        async with asyncio.timeout_at(deadline):
                            frame = await transport.receive()
                except TransportClosed as exc:
                    outcome.close = exc.info
                    break
                except TimeoutError:
                    outcome.timeout = True
                    break
                self._handle_frame(session, frame, reconnected=reconnected)
            outcome.fatal = self._fatal
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
            writer_task = writer.stop() if writer is not None else None
            if recycler is not None:
                recycler.cancel()
            await asyncio.gather(*(t for t in (writer_task, recycler) if t is not None), return_exceptions=True)
            await transport.close()
            await self._stop_recycler()  # defensive: nothing may have started one meanwhile
            outcome.ready = self._conn_ready
            outcome.uptime_s = self.clock.monotonic() - self._ready_at if self._conn_ready else 0.0
            outcome.expired = session.expiring
            outcome.planned = self._planned_reason is not None
            outcome.planned_reason, self._planned_reason = self._planned_reason or "", None
            if outcome.close.code is None:
                outcome.close = transport.close_info()
            if self._outage is not None:
                self._outage.resume_handle = session.resumption_handle
            if not self._closing:
                self._report_lost_responses(session)
            self._drop_connection(keep_audio=not self._closing and self._buffering)
        return outcome

    async def _receive_pushed(self, transport: PushTransport, session: S, *, reconnected: bool,
                              deadline: float) -> bool:
        """Let ``transport`` hand its messages straight to :meth:`_handle_frame` (from its read
        callback: no wake-up of this task per message) until it stops pushing; then
        :meth:`_serve` receives what stopped it (a message only ``receive()`` takes, or the
        close). Returns ``True`` when the session was not set up by ``deadline``."""
        failure: list[Exception] = []

        def on_message(frame: Frame) -> None:
            try:
                self._handle_frame(session, frame, reconnected=reconnected)
            except Exception as exc:  # a bug of ours: raised from here, as from the receive loop
                failure.append(exc)
                transport.stop_push()
                return
            if self._fatal is not None:
                transport.stop_push()

        ended = transport.push_to(on_message)
        if ended is None:
            return False
        loop = asyncio.get_running_loop()
        try:
            while not ended.done():
                if self._conn_ready:
                    await ended
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return True
                await asyncio.wait((ended,), timeout=remaining)
        finally:
            transport.stop_push()
        if failure:
            raise failure[0]
        return False

    def _handle_frame(self, session: S, frame: Frame, *, reconnected: bool) -> None:
        self.stats["messages_received"] += 1
        try:
            events = session.receive(frame)
        except Exception as exc:  # the session promises not to raise; guard anyway
            log.exception("%s: session.receive raised", self.name)
            self._emit_error(f"could not process a server message: {type(exc).__name__}", code="internal_error")
            return
        if not self._conn_ready and session.ready:
            self._conn_ready = True
            self._ready_at = self.clock.monotonic()
            self.session_id = session.session_id
            if reconnected:
                self._restore_into(session)
            self._after_sent(self._session_set_up, reconnected)
        for event in events:
            if event.type is not _AUDIO_DELTA:  # (the one event _observe never reacts to, once per delta)
                self._observe(event)
            self._emit(event)
        self._flush()
        self._activity.set()

    def _observe(self, event: ProviderEvent) -> None:
        """Runtime-side reactions to a few events (fatal errors, the user speaking)."""
        kind = event.type
        if kind is EventType.ERROR:
            if event.error is not None and event.error.fatal:
                self._fatal = event.error
        elif kind is EventType.SPEECH_STARTED:
            self._speaking = True
        elif kind in (EventType.INPUT_COMMITTED, EventType.INPUT_CLEARED):
            self._speaking = False

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

    async def _reopen(self, outcome: _Outcome) -> Transport | None:
        """Reconnect attempts until one handshake succeeds; ``None`` when giving up."""
        reason = outcome.describe()
        planned = outcome.planned
        policy = self.policy
        policy.begin_episode(self.config)
        while True:
            if not policy.next_attempt():
                self._terminal(ConnectionState.ERROR, phase="gave_up", reason=reason,
                               attempt=policy.failures - 1, close_code=outcome.close.code)
                return None
            self._set_state(ConnectionState.RECONNECTING, phase="reconnecting", reason=reason,
                            attempt=policy.failures, close_code=outcome.close.code, planned=planned)
            await self.clock.sleep(policy.next_delay())
            try:
                return await self.open_transport()
            except ConnectionFailed as exc:
                if exc.fatal:  # 401/403/other 4xx, a redirect: retrying cannot help
                    self._terminal(ConnectionState.ERROR, phase="failed", reason=exc.message,
                                   attempt=policy.failures)
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

    # ---------------------------------------------------------------- writer
    def _flush(self) -> None:
        session, queue = self._session, self._outq
        if session is None or queue is None:
            return
        for frame in session.data_to_send():
            queue.put(frame)

    def _after_sent(self, callback: Callable[[bool], None], arg: bool) -> None:
        """Call ``callback(arg)`` once everything queued so far has been written."""
        queue = self._outq
        if queue is None:  # the connection is gone: nothing more will be written, never call back
            return
        barrier = queue.put_barrier()
        transport = self._transport
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
            if transport is self._transport and not self._closing and not self._tearing_down:
                callback(arg)

        self._after_sent_pending.add(done)
        barrier.add_done_callback(done)

    def _settle_after_sent(self) -> None:
        """Teardown begins: run the callbacks whose barrier was already written, forget the rest."""
        pending = list(self._after_sent_pending)
        self._after_sent_pending.clear()
        for done in pending:
            done()

    def _drop_connection(self, *, keep_audio: bool) -> None:
        """Forget the connection; unwritten audio goes back to the backlog (or is dropped)."""
        self._ready.clear()
        self._conn_ready = False
        queue, self._outq = self._outq, None
        self._transport = None
        self._session = None  # its state (active replies, items) died with the connection
        if queue is not None:
            self._recover_audio(queue.take_leftovers(), keep=keep_audio)

    # ------------------------------------------------------------- sending
    def _usable_session(self) -> S:
        if self._ready.is_set() and self._session is not None and self._outq is not None:
            return self._session
        raise self._not_usable()

    def _not_usable(self) -> InvalidState:
        return InvalidState(f"{self.name} provider is {self._state.value}; call connect() first")

    async def _control(self, call: Callable[[S], T]) -> T:
        """Run a session call once connected and the queue has room, then flush it.

        Waits (up to ``send_timeout_s``) for a restore in progress and for queue space;
        raises :class:`InvalidState` when not connected, :class:`LimitExceeded` when the
        queue stays full.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.send_timeout_s
        while True:
            if not self._ready.is_set():
                if self._state not in (ConnectionState.RECONNECTING, ConnectionState.CONNECTED):
                    raise InvalidState(f"{self.name} provider is {self._state.value}; call connect() first")
                try:  # a reconnect is in progress: wait for it, bounded
                    async with asyncio.timeout_at(deadline):
                        await self._ready.wait()
                except TimeoutError:
                    raise InvalidState(f"{self.name} provider is still reconnecting") from None
                continue
            queue = self._outq
            if queue is None or not queue.full:
                break  # (no queue: over for good; _usable_session says so)
            queue.space.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await queue.space.wait()
            except TimeoutError:
                raise LimitExceeded(
                    f"outbound queue full for {self.send_timeout_s} s", limit=queue.max_frames
                ) from None
        session = self._usable_session()
        result = call(session)
        self._flush()
        self._activity.set()
        return result

    async def send_audio(self, audio: Any) -> None:
        """Enqueue input audio (any buffer) in the provider's input format (PCM16, or G.711
        bytes when the provider declares it) at its input rate. Never waits: this is
        :meth:`send_audio_nowait`, which :meth:`audio_sink` hands to the engine.

        Raises :class:`~voiceengine.exceptions.LimitExceeded` when the outbound queue is
        full (the network is not keeping up; the audio is not taken), ``AudioFormatError``/
        ``TypeError`` for bad buffers (for PCM16 an odd byte count included: one stray byte
        would shift every later sample), ``InvalidState`` when not connected. While the session
        is being restored the audio is kept in a bounded backlog (oldest dropped first) and
        sent after the restore; see :attr:`audio_accounting`.

        Written in the next loop iteration, with whatever else is queued by then (frames
        sent one after another in one step share a socket write).
        """
        self.send_audio_nowait(audio, more=True)

    def audio_sink(self) -> Callable[[Any, bool], None] | None:
        # A subclass that extends send_audio (work after the enqueue) must be awaited.
        return self.send_audio_nowait if type(self).send_audio is ProviderRuntime.send_audio else None

    def send_audio_nowait(self, audio: Any, more: bool = False) -> None:
        """:meth:`send_audio` without the coroutine (same effect, same errors).

        The frame is written at once, with whatever is queued before it (a frame per
        call, the live case, costs no wake-up of the writer and no extra loop iteration,
        and reaches the socket sooner), unless ``more`` says another one follows in the
        same step, or the previous one went out less than 0.5 ms before (a burst, see
        :meth:`OutboundWriter.write_now`): then it waits for the last frame of the step or
        the next loop iteration's write, so such frames share one socket write.
        """
        # while reconnecting the backlog takes it, whatever the outage bookkeeping says
        ready = self._ready.is_set()
        if not ready and (self._buffering or self._state is ConnectionState.RECONNECTING):
            self._buffer_audio(audio)
            return
        session, queue = self._session, self._outq
        if not ready or session is None or queue is None:
            raise self._not_usable()  # (what _usable_session() checks, inlined: once per frame)
        if queue.full:
            raise LimitExceeded(
                f"outbound queue full ({queue.max_frames} messages): audio refused", limit=queue.max_frames,
                size=len(queue),
            )
        view = self._live_input_view(audio)  # validate before anything is counted
        nbytes = len(view)
        if not nbytes:
            return
        self._flush()  # keep wire order = call order
        text = session.encode_audio(view)
        if text is None:
            return
        self.audio_ledger.captured(nbytes)
        # A queued frame keeps a copy of its audio until written, so a lost connection can
        # re-send it; one written at once needs none (no copy on the live path).
        writer = self._writer
        if more or writer is None:  # the next iteration's write takes it
            queue.put_audio(OutboundAudio(text, bytes(view)))
        elif not writer.write_audio_now(text, nbytes):  # behind what is ahead of it, a burst, flow control
            queue.put_audio(OutboundAudio(text, bytes(view)), wake=False)
            writer.write_now()

    # ---------------------------------------------------------- audio accounting
    def _audio_pending_bytes(self) -> int:
        queue = self._outq
        return self._backlog.nbytes + (queue.queued_audio if queue is not None else 0)

    def _input_view(self, audio: Any) -> bytes | bytearray | memoryview:
        """``audio`` as bytes, checked for whole samples of the input encoding."""
        return self._input_checker()(audio)

    def _input_checker(self) -> Callable[[Any], bytes | bytearray | memoryview]:
        return g711_view if self.get_audio_format()[0].bytes_per_sample == 1 else pcm16_view

    def _buffer_audio(self, audio: Any) -> None:
        """``send_audio`` while no session is usable: keep it in the bounded backlog."""
        view = self._input_view(audio)  # validate at the boundary, as when connected
        n = len(view)
        if not n:
            return
        self.audio_ledger.captured(n)
        dropped = self._backlog.push(bytes(view))
        if dropped:
            self.audio_ledger.dropped(dropped)

    def _queue_audio(self, session: S, pcm: bytes, *, replay: bool) -> None:
        frame = session.encode_audio(pcm)
        if frame is None or self._outq is None:
            return
        self._outq.put_audio(OutboundAudio(frame, pcm, replay=replay))

    def _recover_audio(self, leftovers: list[OutboundAudio], *, keep: bool) -> None:
        """Audio not written when its connection ended: back to the backlog front, or dropped."""
        n = sum(item.nbytes for item in leftovers)
        if not n:
            return
        dropped = self._backlog.push_front([item.pcm for item in leftovers]) if keep else n
        if dropped:
            self.audio_ledger.dropped(dropped)

    def _drop_backlog(self) -> None:
        dropped = self._backlog.clear()
        if dropped:
            self.audio_ledger.dropped(dropped)

    # ------------------------------------------------------------------- outage
    def _begin_outage(self, *, planned: bool = False, reason: str | None = None) -> None:
        """The current connection stopped being usable: buffer audio from now on."""
        self._buffering = True
        if self._outage is None:
            self._outage = Outage(started_at=self.clock.monotonic(), dropped_at_start=self.audio_ledger.dropped_bytes,
                                  planned=planned, reason=reason)

    def _take_replay_entries(self) -> None:
        """Take the conversation to restore, once per outage: the replay source's items when
        one is set (the engine), else the provider's own record."""
        outage = self._outage
        if outage is None or outage.entries is not None:
            return
        outage.entries = []
        source = self._replay_source
        if source is None:
            outage.entries = list(self.conversation.replayable())
            return
        try:
            outage.entries = entries_from_items(source())
        except Exception as exc:
            log.exception("%s: replay source raised", self.name)
            self._emit_error(f"replay source raised {type(exc).__name__}", code="replay_failed")

    def _end_outage(self) -> None:
        """No restore will come (terminal, disconnect): whatever is pending is dropped."""
        self._buffering = False
        self._outage = None
        self._drop_backlog()
        self._backlog.resize(self.settings.backlog_bytes)  # empty: nothing to drop

    def _report_lost_responses(self, session: S) -> None:
        for response_id in session.lost_responses():
            info = ResponseInfo(response_id=response_id, status="failed", reason="connection_lost")
            self._emit(ProviderEvent(type=EventType.RESPONSE_DONE, data=info, provider=self.name,
                                     session_id=self.session_id, response_id=response_id))

    # ------------------------------------------------------------------ restore
    def _restore_into(self, session: S) -> None:
        """The reconnected session is set up: resumed, or replay the conversation; then the backlog."""
        outage = self._outage
        if outage is not None:
            outage.replayed_audio = 0
        replayed = 0
        if session.resumed:
            self._restored_by = RestoreMethod.RESUMPTION
        else:
            self._restored_by = RestoreMethod.REPLAY
            for entry in (outage.entries or ()) if outage is not None else ():
                try:
                    session.replay_entry(entry)
                    replayed += 1
                except (TypeError, ValueError) as exc:  # one bad entry must not block the rest
                    self._emit_error(f"replay item refused: {exc}", code="replay_failed")
        self._replayed_count = replayed
        self._flush()
        self._drain_backlog(session)

    def _drain_backlog(self, session: S) -> None:
        for pcm in self._backlog.drain(max_chunk=self.settings.replay_chunk_bytes):
            self._queue_audio(session, pcm, replay=True)
            if self._outage is not None:
                self._outage.replayed_audio += len(pcm)

    def _restored(self) -> None:
        """Everything replayed was written: the session is usable again."""
        session = self._session
        if session is not None:
            self._drain_backlog(session)  # audio that arrived since the session was set up
        outage, self._outage = self._outage, None
        self._buffering = False
        self._backlog.resize(self.settings.backlog_bytes)  # drained: nothing to drop
        self._ready.set()
        self.stats["reconnects"] += 1
        planned = outage.planned if outage else False
        reason = outage.reason if outage is not None and outage.reason else \
            "session recycled" if planned else "session restored"
        now = self.clock.monotonic()
        self._set_state(
            ConnectionState.CONNECTED, phase="restored", reason=reason, attempt=self.policy.failures,
            planned=planned, replayed_items=self._replayed_count,
            replayed_audio_bytes=outage.replayed_audio if outage else 0,
            dropped_audio_bytes=self.audio_ledger.dropped_bytes - outage.dropped_at_start if outage else 0,
            downtime_ms=(now - outage.started_at) * 1000.0 if outage else None,
            restored_by=self._restored_by,
        )

    # ------------------------------------------------------------------ recycle
    def _start_recycler(self) -> None:
        settings = self.settings
        if not (settings.recycle and settings.reconnect) or settings.session_limit_s is None \
                or self._transport is None or self._tearing_down:
            return
        if self._recycler is not None:  # never two (the old one would be unowned)
            self._recycler.cancel()
        recycle = self._recycle_when_due(self._transport, self._ready_at, settings.session_limit_s)
        self._recycler = asyncio.create_task(recycle, name=f"voiceengine-{self.name}-recycler")

    async def _stop_recycler(self) -> None:
        """Cancel and await the recycler, if any (teardown: no task may outlive it)."""
        recycler, self._recycler = self._recycler, None
        if recycler is not None and recycler is not asyncio.current_task():
            recycler.cancel()
            await asyncio.shield(asyncio.gather(recycler, return_exceptions=True))

    def _idle(self) -> bool:
        session = self._session
        return session is None or (session.idle and not self._speaking)

    def _recycle_reason(self) -> str:
        limit = self.settings.session_limit_s
        return f"session recycle before the {limit:g} s limit" if limit is not None else "session recycle"

    async def _recycle_when_due(self, transport: Transport, ready_at: float, limit_s: float) -> None:
        """Planned reconnect ``recycle_margin_s`` before the session limit, when idle."""
        settings = self.settings
        due = ready_at + limit_s - settings.recycle_margin_s
        await self.clock.sleep(max(0.0, due - self.clock.monotonic()))
        while not self._idle():  # never cut a reply or the user's utterance
            self._activity.clear()
            await self._activity.wait()
        if not self._begin_handover(transport, self._recycle_reason(), announced=None, hold_audio_bytes=0):
            return
        log.info("%s: %s", self.name, self._recycle_reason())
        await self._close_for_handover(transport, "session recycle", drained=None, deadline_s=None)

    # ----------------------------------------------------------------- handover
    def handover(self, reason: str, *, drained: Callable[[S], bool] | None = None, deadline_s: float | None = None,
                 hold_audio_bytes: int = 0) -> bool:
        """Move the session to a new connection, on purpose, starting now.

        From now on input audio is held (accounted, in the backlog, which may hold
        ``hold_audio_bytes`` more than usual until the restore) and control calls wait; the
        current connection keeps being read (a reply in flight is still delivered) until
        ``drained(session)`` is true or ``deadline_s`` seconds (provider clock) passed, then what
        was queued is written and it is closed. Its close, whatever the code and whoever
        closes first, is the handover: one reconnect, ``planned=True``, ``reason``; the
        session is restored by its resumption handle or by replay, then the held audio is
        sent. Returns ``False`` (nothing done) when no usable connection is up, a handover
        or recycle is already under way, or reconnecting is off.
        """
        if not isinstance(reason, str) or not reason:
            raise ValueError("reason must be a non-empty str")
        if deadline_s is not None and not deadline_s >= 0:
            raise ValueError("deadline_s must be >= 0 or None")
        if type(hold_audio_bytes) is not int or hold_audio_bytes < 0:
            raise ValueError("hold_audio_bytes must be an int >= 0")
        transport = self._transport
        if transport is None or not self._ready.is_set() or not self._begin_handover(
                transport, reason, announced=reason, hold_audio_bytes=hold_audio_bytes):
            return False
        log.info("%s: handover (%s)", self.name, reason)
        if self._recycler is not None:  # its job is done by this handover (never two tasks)
            self._recycler.cancel()
        self._recycler = asyncio.create_task(
            self._close_for_handover(transport, reason, drained=drained, deadline_s=deadline_s),
            name=f"voiceengine-{self.name}-handover")
        return True

    def _begin_handover(self, transport: Transport, reason: str, *, announced: str | None,
                        hold_audio_bytes: int) -> bool:
        """From now on the connection is on its way out: audio is held, control calls wait."""
        if transport is not self._transport or self._closing or self._tearing_down or self._outq is None \
                or self._planned_reason is not None or self._outage is not None or not self.settings.reconnect:
            return False
        self._planned_reason = reason
        self._ready.clear()  # control calls wait for the restore; audio goes to the backlog
        self._begin_outage(planned=True, reason=announced)
        if hold_audio_bytes:
            self._backlog.resize(self.settings.backlog_bytes + hold_audio_bytes)
        if announced is not None:
            # the planned move starts now; the connection still delivers until it is closed
            self._set_state(self._state, phase="handover", reason=announced, planned=True)
        return True

    async def _close_for_handover(self, transport: Transport, close_reason: str, *,
                                  drained: Callable[[S], bool] | None, deadline_s: float | None) -> None:
        if drained is not None:
            await self._wait_drained(drained, deadline_s)
        queue = self._outq
        if transport is not self._transport or self._closing or queue is None:
            return
        # What is queued goes out first (bounded in real time: a dead peer must not hold us).
        barrier = queue.put_barrier()
        await asyncio.wait([barrier], timeout=self.send_timeout_s)
        await transport.close(1000, close_reason)  # the reader sees it and reconnects

    async def _wait_drained(self, drained: Callable[[S], bool], deadline_s: float | None) -> None:
        """Until ``drained(session)`` (re-checked after every frame) or ``deadline_s`` passed."""
        deadline = None if deadline_s is None else asyncio.ensure_future(self.clock.sleep(deadline_s))
        try:
            while True:
                session = self._session
                if session is None or drained(session) or (deadline is not None and deadline.done()):
                    return
                self._activity.clear()
                activity = asyncio.ensure_future(self._activity.wait())
                try:
                    await asyncio.wait([activity] if deadline is None else [activity, deadline],
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    activity.cancel()
                    await asyncio.gather(activity, return_exceptions=True)
        finally:
            if deadline is not None:
                deadline.cancel()
                await asyncio.gather(deadline, return_exceptions=True)
