"""Provider-event handling for :class:`~voiceengine.engine.VoiceEngine` (a mixin).

:meth:`_EngineHandlers._on_provider_event` routes every provider event to playback, the
conversation state, the event bus and the injector, then to the ``_h_*`` handler for its
type (``_HANDLERS``). The handlers turn provider events into the engine's own events
(TURN_*, METRICS, ...) and app callbacks; the playback callbacks and the callback plumbing
(``_fire``/``_spawn``) live here too, since the handlers are their main users.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ._bounded import BoundedSet
from .pipeline import Transcript, _guard, _maybe_await
from .providers.types import (
    ConnectionChange, ErrorInfo, EventType, FunctionCall, GenerationDone, InterruptResult, ProviderEvent, ResponseInfo, ServerInterrupted,
    Usage,
)

if TYPE_CHECKING:  # annotations only: VoiceEngine owns these objects
    from .engine_config import VoiceEngineConfig
    from .events import EventBus
    from .injection import ContextInjector
    from .metrics import MetricsCollector
    from .pipeline import Playback
    from .providers.base import BaseProvider
    from .state import ConversationState

# the engine's logger: these records come from the engine, wherever its code lives
log = logging.getLogger("voiceengine.engine")


class _EngineHandlers:
    """Event, playback and callback plumbing of :class:`~voiceengine.engine.VoiceEngine`.

    Not usable on its own: the attributes below are set by ``VoiceEngine.__init__``.
    """

    config: VoiceEngineConfig
    events: EventBus
    state: ConversationState
    injector: ContextInjector
    on_function_call: Any  # a pipeline._Callback on VoiceEngine
    _provider: BaseProvider
    _metrics: MetricsCollector
    _playback: Playback | None
    _sink: Any
    _tasks: set[asyncio.Task[Any]]
    _dropped_responses: BoundedSet[str]
    _oob_responses: BoundedSet[str]
    _ended_responses: BoundedSet[str]
    _overflowed_responses: BoundedSet[str]
    _response_id: str | None
    _response_at_loss: str | None
    _callback_tasks: int
    _decode_output: Callable[[Any], bytes] | None

    if TYPE_CHECKING:
        def _stop_playback(self, t0: float) -> Any: ...
        async def _tell_provider(self, barge: Any) -> InterruptResult: ...

    # ------------------------------------------------------------------ events
    def _emit(self, etype: EventType, data: Any = None, **fields: Any) -> None:
        event = ProviderEvent(type=etype, data=data, provider=self._provider.name,
                              session_id=self._provider.session_id, **fields)
        self.events.emit(event)
        self.injector.observe(event)

    def _on_injector_event(self, event: ProviderEvent) -> None:
        self.events.emit(replace(event, provider=self._provider.name, session_id=self._provider.session_id))
        if event.type is EventType.ERROR and event.error is not None:
            self._fire("on_error", event.error)

    def _on_provider_event(self, event: ProviderEvent) -> None:
        etype = event.type
        if self.state.is_duplicate(event):
            self._metrics.duplicate_events += 1  # a server event delivered twice: handle it once
            return
        overflow = False
        if etype is EventType.AUDIO_DELTA:
            if event.response_id in self._dropped_responses or event.response_id in self._oob_responses:
                return  # late audio of an interrupted (or out-of-band) response: never played
            if self._decode_output is not None and event.data is not None:
                # G.711 from the service: PCM16 from here on (what the bus documents)
                event = replace(event, data=self._decode_output(event.data))
            if self._playback is not None and event.data is not None:
                stored = self._playback.write(event.item_id, event.response_id, event.data)
                overflow = stored < len(event.data)
                self._metrics.received(event.response_id, len(event.data))
        self.state.fold(event)  # the duplicate check above was the state's own
        self.events.emit(event)
        self.injector.observe(event)
        handler = _HANDLERS.get(etype)
        if handler is not None:
            handler(self, event)
        if overflow:
            self._playback_overflow(event)

    def _playback_overflow(self, event: ProviderEvent) -> None:
        # the ring keeps what it holds and refuses the rest (drop_newest, counted in the
        # ring's counters); the app hears about it once per response, not once per delta
        key = event.response_id or "<no response>"
        if key in self._overflowed_responses:
            return
        self._overflowed_responses.add(key)
        self._metrics.playback_overflows += 1
        capacity = self._playback.ring.capacity if self._playback is not None else 0
        info = ErrorInfo(message=f"playback buffer full ({capacity} bytes): reply audio dropped",
                         code="playback_overflow", type="client_error", remote=False)
        log.warning("playback buffer overflow in response %s", event.response_id)
        self._emit(EventType.ERROR, info, error=info, response_id=event.response_id, item_id=event.item_id)
        self._fire("on_error", info)

    def _h_response_started(self, event: ProviderEvent) -> None:
        info = event.data if isinstance(event.data, ResponseInfo) else None
        if info is not None and info.conversation == "none":
            self._oob_responses.add(info.response_id or "")
            return
        self._response_id = event.response_id or (info.response_id if info else None)
        self._metrics.response_started(self._response_id)
        self._emit(EventType.TURN_STARTED, {"speaker": "assistant"}, response_id=self._response_id)

    def _h_response_done(self, event: ProviderEvent) -> None:
        info = event.data if isinstance(event.data, ResponseInfo) else ResponseInfo(response_id=event.response_id)
        rid = event.response_id or info.response_id
        if rid is not None:
            if rid in self._ended_responses:
                return  # already ended (e.g. the engine ended it when the connection was lost)
            self._ended_responses.add(rid)
        if info.reason == "connection_lost":
            self._metrics.responses_lost += 1
        self._metrics.response_usage(rid, info.usage)
        self._fire("on_response_done", info)
        if rid in self._oob_responses:
            return
        self._metrics.set_status(info.status)
        if self._playback is not None and rid not in self._dropped_responses:
            self._playback.end_of_stream()
            if not self._playback.audible:
                self._end_assistant_turn()
        if rid == self._response_id:
            self._response_id = None

    def _end_assistant_turn(self) -> None:
        turn = self._metrics.finish_turn()
        self._emit(EventType.TURN_ENDED, {"speaker": "assistant"})
        if turn is not None:
            self._emit(EventType.METRICS, turn)

    def _h_speech_started(self, event: ProviderEvent) -> None:
        t0 = time.perf_counter()
        self._emit(EventType.TURN_STARTED, {"speaker": "user"})
        pb = self._playback
        if self.config.barge_in and pb is not None and (pb.audible or self._response_id is not None):
            self._spawn(self._tell_provider(self._stop_playback(t0)))

    def _h_server_interrupted(self, event: ProviderEvent) -> None:
        """The service cut its reply because the user spoke (services without speech
        events): flush playback at once and drop the rest of that reply; nothing goes on
        the wire (the service cancelled it already)."""
        data = event.data
        response_id = data.response_id if isinstance(data, ServerInterrupted) else None
        response_id = response_id or event.response_id
        if response_id is not None:
            self._dropped_responses.add(response_id)
        if response_id is None or response_id == self._response_id:
            self._response_id = None  # the service will not end it with RESPONSE_DONE
        pb = self._playback
        if pb is None or not (pb.audible or response_id is not None):
            return
        barge = self._stop_playback(time.perf_counter())
        target = barge.target
        result = InterruptResult(item_id=target.item_id if target is not None else None, played_ms=barge.played_ms,
                                 action="none", cancelled_response=True, response_id=response_id)
        self._spawn(_maybe_await(barge.sink_clearing))
        self._emit(EventType.INTERRUPTED, result, item_id=result.item_id, response_id=response_id)

    def _h_generation_done(self, event: ProviderEvent) -> None:
        # all of the reply's audio is here: play out what is queued (a reply shorter than
        # the prebuffer must not wait for the end of the turn)
        data = event.data
        response_id = (data.response_id if isinstance(data, GenerationDone) else None) or event.response_id
        if self._playback is not None and response_id not in self._dropped_responses:
            self._playback.end_of_stream()

    def _h_usage(self, event: ProviderEvent) -> None:
        if isinstance(event.data, Usage):
            self._metrics.usage_reported(event.data)

    def _h_speech_stopped(self, event: ProviderEvent) -> None:
        self._metrics.speech_ended()
        self._emit(EventType.TURN_ENDED, {"speaker": "user"})

    def _h_committed(self, event: ProviderEvent) -> None:
        self._metrics.speech_ended()
        if not self.injector.auto_response and self._provider.config.turn_detection is not None:
            # server VAD without auto responses: the engine sends the turn's response.create
            self._spawn(self.injector.end_of_turn(respond=True))

    def _h_text(self, event: ProviderEvent) -> None:
        if event.response_id not in self._oob_responses and isinstance(event.data, str):
            self._fire("on_text_response", event.data)

    def _h_transcript(self, event: ProviderEvent) -> None:
        if not isinstance(event.data, str) or event.response_id in self._oob_responses:
            return
        if event.type is EventType.TRANSCRIPT_DELTA:
            self._fire("on_text_response", event.data)
        role = "user" if event.type is EventType.INPUT_TRANSCRIPT else "assistant"
        final = event.type is not EventType.TRANSCRIPT_DELTA
        self._fire("on_transcript", Transcript(role=role, text=event.data, final=final, item_id=event.item_id))

    def _h_function_call(self, event: ProviderEvent) -> None:
        if isinstance(event.data, FunctionCall):
            self._spawn(self._run_function(event.data))

    async def _run_function(self, call: FunctionCall) -> None:
        handler = self.on_function_call.handler
        if handler is None:
            return
        try:
            result = await _maybe_await(handler(call))
        except Exception as exc:
            log.warning("on_function_call raised for %s", call.name)
            result = {"error": f"{type(exc).__name__}: {exc}"}
        if result is not None:
            await self._provider.send_function_result(call.call_id, result, respond=False)
            await self.injector.create_response()

    def _h_error(self, event: ProviderEvent) -> None:
        if event.error is not None and not event.error.benign:
            self._fire("on_error", event.error)

    def _h_connection(self, event: ProviderEvent) -> None:
        change = event.data
        if not isinstance(change, ConnectionChange):
            return
        phase = change.phase
        if phase == "reconnecting":
            self._metrics.reconnects += 1
            if change.attempt <= 1:
                self._response_at_loss = self._response_id
        elif phase in ("restored", "gave_up", "failed"):
            if phase == "restored":
                self._metrics.restores += 1
            elif phase == "gave_up":
                self._metrics.gave_up += 1
            self._end_lost_response(change)

    def _end_lost_response(self, change: ConnectionChange) -> None:
        """The provider reports a response cut by the connection loss as RESPONSE_DONE
        failed/connection_lost; should it not have, end it here so the engine never keeps
        waiting for a response that no longer exists (its received audio still plays)."""
        lost = self._response_at_loss if change.phase == "restored" else self._response_id
        self._response_at_loss = None
        if lost is None or lost != self._response_id or lost in self._ended_responses:
            return
        info = ResponseInfo(response_id=lost, status="failed", reason="connection_lost")
        log.info("response %s ended by the connection loss (%s)", lost, change.phase)
        self._on_provider_event(ProviderEvent(
            type=EventType.RESPONSE_DONE, data=info, provider=self._provider.name,
            session_id=self._provider.session_id, response_id=lost,
            raw={"type": "response.done", "synthetic": True, "source": "engine"},
        ))

    # ----------------------------------------------------------------- playback
    def _on_playback_start(self) -> None:
        self._emit(EventType.PLAYBACK_STARTED, {})

    def _on_playback_stop(self, interrupted: bool) -> None:
        self._emit(EventType.PLAYBACK_STOPPED, {"interrupted": interrupted})
        if not interrupted and self._response_id is None:
            self._end_assistant_turn()

    async def _deliver_audio(self, pcm: bytes) -> None:
        self._fire("on_audio_response", pcm)
        sink = self._sink
        if sink is not None:
            await _maybe_await(sink.write(pcm))

    # ------------------------------------------------------------------ helpers
    def _fire(self, name: str, value: Any) -> None:
        handler = getattr(self, name).handler
        if handler is None:
            return
        try:
            result = handler(value)
        except Exception:
            log.exception("%s callback raised", name)
            return
        if inspect.isawaitable(result):
            if self._callback_tasks >= self.config.max_pending_callbacks:
                # a slow async callback (e.g. on every audio delta) must not grow tasks forever
                if inspect.iscoroutine(result):
                    result.close()
                self._metrics.callbacks_dropped += 1
                if self._metrics.callbacks_dropped in (1, 10, 100, 1000, 10000):
                    log.warning("%s: %d async callback call(s) skipped (too many pending)", name,
                                self._metrics.callbacks_dropped)
                return
            self._callback_tasks += 1
            self._spawn(self._run_callback(result, name))

    async def _run_callback(self, awaitable: Awaitable[Any], name: str) -> None:
        try:
            await _guard(awaitable, name)
        finally:
            self._callback_tasks -= 1

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.warning("engine task failed: %s", exc)
            self._fire("on_error", exc)


_HANDLERS: dict[EventType, Callable[[_EngineHandlers, ProviderEvent], None]] = {
    EventType.RESPONSE_STARTED: _EngineHandlers._h_response_started,
    EventType.RESPONSE_DONE: _EngineHandlers._h_response_done,
    EventType.SPEECH_STARTED: _EngineHandlers._h_speech_started,
    EventType.SPEECH_STOPPED: _EngineHandlers._h_speech_stopped,
    EventType.INPUT_COMMITTED: _EngineHandlers._h_committed,
    EventType.TEXT_DELTA: _EngineHandlers._h_text,
    EventType.TRANSCRIPT_DELTA: _EngineHandlers._h_transcript,
    EventType.TRANSCRIPT_DONE: _EngineHandlers._h_transcript,
    EventType.INPUT_TRANSCRIPT: _EngineHandlers._h_transcript,
    EventType.FUNCTION_CALL: _EngineHandlers._h_function_call,
    EventType.ERROR: _EngineHandlers._h_error,
    EventType.CONNECTION_STATE: _EngineHandlers._h_connection,
    EventType.SERVER_INTERRUPTED: _EngineHandlers._h_server_interrupted,
    EventType.GENERATION_DONE: _EngineHandlers._h_generation_done,
    EventType.USAGE: _EngineHandlers._h_usage,
}
