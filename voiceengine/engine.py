"""VoiceEngine: the facade apps embed (audio pipeline + provider + EventBus + state + injector).

::

    async with VoiceEngine("openai", VoiceEngineConfig(api_key=key)) as engine:
        engine.on_transcript = lambda t: print(t.role, t.text)
        await engine.start_listening()        # microphone -> provider; replies -> speaker

Every provider event is re-emitted on :attr:`VoiceEngine.events` and folded into
:attr:`VoiceEngine.state`; the engine adds its own events (LISTENING_*, TURN_*, PLAYBACK_*,
INTERRUPTED, CONTEXT_*, PROVIDER_SWITCHED, METRICS). See docs/engine.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any, Mapping

from ._bounded import BoundedSet
from ._engine_handlers import _EngineHandlers
from .engine_config import VoiceEngineConfig
from .events import EventBus
from .exceptions import InvalidState
from .injection import ContextInjector, ContextItem
from .metrics import EngineMetrics, MetricsCollector
from .pipeline import InputPipeline, Playback, Transcript, _aiter, _Callback, _maybe_await
from .providers.base import BaseProvider
from .providers.registry import create as create_provider
from .providers.types import AudioAccounting, EventType, InterruptResult
from .state import ConversationState

__all__ = ["VoiceEngine", "VoiceEngineConfig", "Transcript"]

log = logging.getLogger("voiceengine.engine")


class VoiceEngine(_EngineHandlers):
    """A realtime voice conversation: see the module docstring and docs/engine.md.

    ``provider``: ``"openai"``, ``"mock"`` (any registered name) or a :class:`BaseProvider`.
    ``sink``: where reply audio goes besides :attr:`on_audio_response`: an object with
    ``write(pcm)`` (sync or async; optional ``sample_rate``, ``channels``, ``clear()``,
    ``close()``/``aclose()``, and ``unheard_ms()``: audio it took that the listener has not
    heard yet, e.g. held in a phone network's playout buffer, so a barge-in truncates at
    what was actually heard), e.g. :class:`~voiceengine.audio.WavSink` or
    :class:`~voiceengine.audio.Speaker`.
    """

    on_audio_response = _Callback()  #: f(pcm: bytes) with played audio at the output rate
    on_text_response = _Callback()  #: f(text: str) per assistant text/transcript delta
    on_transcript = _Callback()  #: f(Transcript) for user and assistant transcripts
    on_function_call = _Callback()  #: f(FunctionCall) -> result or None (result is sent back)
    on_response_done = _Callback()  #: f(ResponseInfo)
    on_error = _Callback()  #: f(ErrorInfo | Exception)

    def __init__(self, provider: str | BaseProvider = "openai", config: VoiceEngineConfig | None = None,
                 *, sink: Any = None) -> None:
        self.config = config or VoiceEngineConfig()
        self._provider = self._resolve(provider)
        self.events = EventBus(queue_size=self.config.event_queue_size)
        self.state = ConversationState()
        self._metrics = MetricsCollector()
        self.injector = ContextInjector(lambda: self._provider, emit=self._on_injector_event,
                                        auto_response=self._auto_response(self._provider))
        self._sink = sink
        self._own_sink = False
        self._input: InputPipeline | None = None
        self._playback: Playback | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ready = asyncio.Event()
        self._connected = False
        self._closed = False
        # bounded id sets: only recent responses/events can still be referred to
        self._dropped_responses: BoundedSet[str] = BoundedSet(256)
        self._oob_responses: BoundedSet[str] = BoundedSet(256)
        self._ended_responses: BoundedSet[str] = BoundedSet(256)
        self._overflowed_responses: BoundedSet[str] = BoundedSet(64)
        self._response_id: str | None = None
        self._response_at_loss: str | None = None
        self._callback_tasks = 0
        self._barge_in_at: float | None = None
        # input audio accounting: providers already left behind, plus where the current one
        # stood when the engine took it (an app may have used it before)
        self._retired_audio = AudioAccounting()
        self._audio_base = self._provider.audio_accounting

    # ---------------------------------------------------------------- provider
    def _resolve(self, provider: str | BaseProvider) -> BaseProvider:
        if isinstance(provider, BaseProvider):
            return provider
        if not isinstance(provider, str):
            raise TypeError("provider must be a registered name or a BaseProvider instance")
        if self.config.provider_config is not None:
            return create_provider(provider, self.config.provider_config)
        return create_provider(provider, **self.config.provider_fields(provider))

    def _auto_response(self, provider: BaseProvider) -> bool:
        if self.config.auto_response is not None:
            return self.config.auto_response
        td = provider.config.turn_detection
        if isinstance(td, Mapping):
            return bool(td.get("create_response", True))
        return td is not None

    @property
    def provider(self) -> BaseProvider:
        return self._provider

    @property
    def metrics(self) -> EngineMetrics:
        """A frozen snapshot of the engine's counters and latencies."""
        m = self._metrics
        if self._playback is not None:
            ring = self._playback.ring
            m.ring_overruns, m.ring_dropped = ring.overruns, ring.total_dropped
            m.engine_underruns = self._playback.underruns
            m.output_delay_ms = float(self._playback.resampler.delay_ms)
        if self._input is not None:
            m.input_delay_ms = self._input.delay_ms
        m.context_injected = self.injector.stats["injected"]
        m.context_expired = self.injector.stats["expired"]
        m.audio = self.audio_accounting
        return m.snapshot()

    @property
    def audio_accounting(self) -> AudioAccounting:
        """Input audio accounting summed over every provider this engine used."""
        return _acc_sum(self._retired_audio, _acc_sum(self._provider.audio_accounting, self._audio_base, -1))

    @property
    def is_connected(self) -> bool:
        return self._connected

    # --------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> "VoiceEngine":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect the provider and start the playback clock and the injector."""
        if self._closed:
            raise InvalidState("the engine is closed")
        if self._connected:
            return
        await self._attach(self._provider)
        self._build_pipelines()
        await self._open_sink()
        await self.injector.start()
        self._connected = True
        self._ready.set()

    async def _attach(self, provider: BaseProvider) -> None:
        provider.on_event(None, self._on_provider_event)
        # after a reconnect the provider re-creates the conversation from our state, with
        # the original ids and roles (see ConversationState.snapshot)
        provider.set_replay_source(self._replay_items)
        try:
            await provider.connect()
        except BaseException:
            self._detach(provider)
            raise

    def _detach(self, provider: BaseProvider) -> None:
        provider.remove_event_handler(None, self._on_provider_event)
        if provider._replay_source == self._replay_items:
            provider.set_replay_source(None)

    def _replay_items(self) -> tuple[dict[str, Any], ...]:
        return self.state.snapshot().items

    def _build_pipelines(self, *, force: bool = False) -> list[memoryview]:
        """(Re)build the audio paths for the current provider. Returns input frames carried
        over from the previous input pipeline (to send to the new provider)."""
        cfg = self.config
        in_fmt, out_fmt = self._provider.get_audio_format()
        carried: list[memoryview] = []
        old_input = self._input
        if old_input is None or old_input.provider_rate != in_fmt.sample_rate:
            self._input = InputPipeline(provider_rate=in_fmt.sample_rate, frame_ms=cfg.frame_ms)
            if old_input is not None:
                # a partial frame of the old rate: resample it into the new pipeline, never lose it
                rest = b"".join(bytes(f) for f in self._flush_input(old_input))
                if rest:
                    carried = self._input.push(rest, old_input.provider_rate, 1)
        out_rate = cfg.output_sample_rate or getattr(self._sink, "sample_rate", None) or out_fmt.sample_rate
        out_ch = cfg.output_channels or getattr(self._sink, "channels", None) or 1
        if self._playback is not None and self._playback.in_rate == out_fmt.sample_rate and not force:
            return carried
        old = self._playback
        self._playback = Playback(
            in_rate=out_fmt.sample_rate, out_rate=out_rate, out_channels=out_ch,
            capacity_ms=cfg.playback_buffer_ms, prebuffer_ms=cfg.prebuffer_ms, speed=cfg.playback_speed,
            tick_ms=cfg.playback_tick_ms, deliver=self._deliver_audio, on_start=self._on_playback_start,
            on_stop=self._on_playback_stop, on_played=self._metrics.played,
        )
        self._metrics.bytes_per_ms = out_fmt.sample_rate * 2 / 1000.0
        if old is not None:
            self._spawn(old.aclose())
        self._playback.start()
        return carried

    async def disconnect(self) -> None:
        """Stop listening and playback, disconnect the provider. The engine can reconnect."""
        if not self._connected:
            return
        self._connected = False
        self._ready.set()  # wake send_audio() callers waiting on a switch: they see "not connected"
        self._ready.clear()
        await self._teardown()
        if self._input is not None:
            # the last partial frame goes to the provider, which accounts for it (sent or dropped)
            await self._send_rest(self._flush_input(self._input))
        try:
            await self._provider.disconnect()
        finally:
            self._detach(self._provider)
            await self._close_sink()

    async def _teardown(self) -> None:
        await self.stop_listening()
        await self.injector.aclose()
        self.injector = self._new_injector()
        if self._playback is not None:
            await self._playback.aclose()
            self._playback = None
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _send_rest(self, frames: list[memoryview]) -> None:
        try:
            await self._send_frames(frames, wait=False)
        except Exception as exc:  # the provider is gone already: counted, not silent
            log.info("input audio not sent at disconnect: %s", exc)

    def _new_injector(self) -> ContextInjector:
        old = self.injector
        new = ContextInjector(lambda: self._provider, emit=self._on_injector_event,
                              auto_response=self._auto_response(self._provider))
        for item in old.pending:  # queued context survives a reconnect
            new.add(item)
        return new

    async def close(self) -> None:
        """Disconnect and close the event bus. Idempotent."""
        await self.disconnect()
        if not self._closed:
            self._closed = True
            await self.injector.aclose()
            await self.events.aclose()

    async def switch_provider(self, provider: str | BaseProvider) -> BaseProvider:
        """Disconnect the current provider, connect ``provider`` and replay the conversation.

        The conversation (:meth:`ConversationState.snapshot`) is re-created on the new
        provider as items with their original roles, never folded into instructions.
        Returns the old provider (disconnected).
        """
        new = self._resolve(provider)
        old = self._provider
        items = list(self.state.snapshot().items)
        self._ready.clear()
        if self._playback is not None:
            self._playback.stop_now()
        was_connected = self._connected
        if was_connected:
            try:
                await old.disconnect()
            finally:
                self._detach(old)
        else:
            self._detach(old)
        # the old provider's audio is settled (disconnect drops what it still held)
        self._retired_audio = _acc_sum(self._retired_audio, _acc_sum(old.audio_accounting, self._audio_base, -1))
        self._audio_base = new.audio_accounting
        self._provider = new
        self.injector.auto_response = self._auto_response(new)
        self.state.clear()
        self._response_id = self._response_at_loss = None
        if was_connected:
            try:
                await self._attach(new)
                for item in items:
                    # ids belong to the old provider's session: let the new one assign its own
                    # (a reconnect of the *same* provider keeps them, see _attach)
                    await new.add_item({k: v for k, v in item.items() if k != "id"})
            except BaseException:
                # the engine is now disconnected (connect() retries with the new provider);
                # waiting send_audio() calls wake up and raise InvalidState
                self._connected = False
                self._ready.set()
                self._ready.clear()
                await self._teardown()
                self._detach(new)
                raise
            carried = self._build_pipelines()
            self._ready.set()
            if carried:
                await self._send_frames(carried)
        self._metrics.provider_switches += 1
        self._emit(EventType.PROVIDER_SWITCHED, {"from": old.name, "to": new.name, "items": len(items)})
        return old

    # ------------------------------------------------------------------- input
    async def send_audio(self, audio: Any, *, sample_rate: int | None = None, channels: int | None = None) -> int:
        """Send app audio (PCM16, any rate 8k-192k, mono/stereo); returns frames sent."""
        if not self._connected:
            raise InvalidState("send_audio() before connect()")
        if not self._ready.is_set():
            await self._ready.wait()  # a provider switch is in progress
            if not self._connected:
                raise InvalidState("the engine disconnected while send_audio() waited for a provider switch")
        pipeline = self._input_pipeline()
        rate = sample_rate or self.config.input_sample_rate or pipeline.provider_rate
        ch = channels or self.config.input_channels
        frames = pipeline.push(audio, rate, ch)
        return await self._send_frames(frames)

    async def _send_frames(self, frames: list[memoryview], *, wait: bool = True) -> int:
        for index, frame in enumerate(frames):
            if wait and not self._ready.is_set():
                # a switch started while these frames were being sent: the rest goes to
                # the new provider rather than to one that is disconnecting
                await self._ready.wait()
            if wait and not self._connected:
                self._unsent(frames[index:])
                raise InvalidState("the engine disconnected while sending audio")
            try:
                await self._provider.send_audio(frame)
            except BaseException:
                self._unsent(frames[index:])
                raise
            self._metrics.sent(frame.nbytes)
        return len(frames)

    def _input_pipeline(self) -> InputPipeline:
        if self._input is None:  # built by connect(); gone after disconnect()
            raise InvalidState("the engine is not connected")
        return self._input

    def _flush_input(self, pipeline: InputPipeline) -> list[memoryview]:
        """The pipeline's remainder; a half sample it had to drop is counted as unsent."""
        before = pipeline.dropped_bytes
        frames = pipeline.flush()
        self._metrics.audio_unsent_bytes += pipeline.dropped_bytes - before
        return frames

    def _unsent(self, frames: list[memoryview]) -> None:
        """Audio no provider took (the caller gets the exception): counted, never silent."""
        self._metrics.audio_unsent_bytes += sum(f.nbytes for f in frames)

    async def commit(self, *, respond: bool = True) -> None:
        """End the user's turn (manual turn detection): flush, commit, then reply."""
        if self._input is not None:
            await self._send_frames(self._flush_input(self._input))
        self._metrics.speech_ended()
        await self._provider.commit_audio()
        await self.injector.end_of_turn(respond=respond)

    async def send_text(self, text: str, respond: bool = True) -> str:
        """Add a user text message; with ``respond``, ask for a reply. Returns the item id."""
        if not self._connected:
            raise InvalidState("send_text() before connect()")
        item_id = await self._provider.send_text(text, respond=False)
        self._metrics.speech_ended()
        await self.injector.end_of_turn(respond=respond)
        return item_id

    async def create_response(self, **options: Any) -> None:
        """Ask for a reply (gated; PER_RESPONSE context rides along)."""
        await self.injector.create_response(**options)

    async def start_listening(self, source: Any = None) -> None:
        """Stream ``source`` to the provider in the background.

        ``source``: None (the default :class:`~voiceengine.audio.Microphone`; a
        :class:`~voiceengine.audio.Speaker` sink is opened too when none was given), a
        :class:`~voiceengine.audio.WavSource`, or any async iterable of PCM16 buffers
        (with optional ``sample_rate``/``channels`` attributes).
        """
        if not self._connected:
            raise InvalidState("start_listening() before connect()")
        if self._listen_task is not None and not self._listen_task.done():
            raise InvalidState("already listening")
        if source is None:
            from .audio.devices import Microphone, Speaker

            source = Microphone(sample_rate=self._input.provider_rate if self._input else 24000)
            if self._sink is None:
                self._sink = Speaker()
                self._own_sink = True
                self._build_pipelines(force=True)  # the speaker's rate may differ
                await self._open_sink()
        self._listen_task = asyncio.create_task(self._listen(source), name="voiceengine-listen")
        self._emit(EventType.LISTENING_STARTED, {"source": type(source).__name__})

    async def _listen(self, source: Any) -> None:
        rate = getattr(source, "sample_rate", None)
        ch = getattr(source, "channels", None)
        manager = source if hasattr(source, "__aenter__") else None
        try:
            if manager is not None:
                await manager.__aenter__()
            async for buf in _aiter(source):
                await self.send_audio(buf, sample_rate=rate, channels=ch)
            # a finite source ended: close the user's turn
            await self._send_frames(self._flush_input(self._input_pipeline()))
            if self._provider.config.turn_detection is None:
                await self.commit()
            elif self.config.end_silence_ms:
                rate_out = self._input_pipeline().provider_rate
                await self.send_audio(bytes(rate_out * 2 * self.config.end_silence_ms // 1000))
                await self._send_frames(self._flush_input(self._input_pipeline()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("listening stopped: %s", exc)
            self._fire("on_error", exc)
        finally:
            if manager is not None:
                await manager.__aexit__(None, None, None)
            elif hasattr(source, "aclose"):
                await _maybe_await(source.aclose())
            self._emit(EventType.LISTENING_STOPPED, {})

    async def wait_listening(self) -> None:
        """Wait until the current source is exhausted (finite sources)."""
        if self._listen_task is not None:
            await asyncio.shield(self._listen_task)

    async def stop_listening(self) -> None:
        """Stop the source task (what was captured so far stays sent)."""
        task, self._listen_task = self._listen_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # --------------------------------------------------------------- barge-in
    async def interrupt(self) -> InterruptResult:
        """Stop the assistant now: flush playback, cut the item at what was played."""
        return await self._interrupt(time.perf_counter(), "interrupt")

    async def _interrupt(self, t0: float, reason: str) -> InterruptResult:
        if self._playback is None or not self._connected:
            raise InvalidState("interrupt() while not connected")
        track, played_ms, _ = self._playback.stop_now(unheard_ms=_sink_unheard_ms(self._sink))
        sink_clear = getattr(self._sink, "clear", None)
        if callable(sink_clear):
            await _maybe_await(sink_clear())
        latency = time.perf_counter() - t0
        if self._response_id is not None:
            self._dropped_responses.add(self._response_id)
        if track is not None and track.response_id:
            self._dropped_responses.add(track.response_id)
        result = await self._provider.interrupt(played_ms=played_ms)
        self._metrics.interrupted(latency, result.audio_end_ms)
        turn = self._metrics.finish_turn("interrupted")
        self._emit(EventType.INTERRUPTED, result, item_id=result.item_id, response_id=result.response_id)
        if turn is not None:
            self._emit(EventType.METRICS, turn)
        return result

    # ------------------------------------------------------------------ context
    def inject_context(self, content: str | ContextItem, **fields: Any) -> ContextItem:
        """Queue context for the conversation (see :class:`~voiceengine.injection.ContextItem`)."""
        if isinstance(content, ContextItem):
            if fields:
                content = replace(content, **fields)
            return self.injector.add(content)
        return self.injector.inject(content, **fields)

    # --------------------------------------------------------------------- sink
    async def _open_sink(self) -> None:
        start = getattr(self._sink, "start", None)
        if self._own_sink and callable(start):
            await _maybe_await(start())

    async def _close_sink(self) -> None:
        sink, own = self._sink, self._own_sink
        if sink is None or not own:
            return
        self._sink, self._own_sink = None, False
        closer = getattr(sink, "aclose", None) or getattr(sink, "close", None)
        if callable(closer):
            await _maybe_await(closer())

    def __repr__(self) -> str:
        return f"<VoiceEngine provider={self._provider.name!r} connected={self._connected}>"


def _sink_unheard_ms(sink: Any) -> float:
    """What a sink with its own (remote) playout buffer holds unheard: ``sink.unheard_ms()``."""
    unheard = getattr(sink, "unheard_ms", None)
    if not callable(unheard):
        return 0.0
    value = float(unheard())
    return value if value > 0 else 0.0


def _acc_sum(a: AudioAccounting, b: AudioAccounting, sign: int = 1) -> AudioAccounting:
    return AudioAccounting(
        captured_bytes=a.captured_bytes + sign * b.captured_bytes, sent_bytes=a.sent_bytes + sign * b.sent_bytes,
        replayed_bytes=a.replayed_bytes + sign * b.replayed_bytes,
        dropped_bytes=a.dropped_bytes + sign * b.dropped_bytes, pending_bytes=a.pending_bytes + sign * b.pending_bytes,
    )
