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
import inspect
import logging
import time
from dataclasses import dataclass, replace
from numbers import Integral
from typing import Any, Awaitable, Callable, Protocol, runtime_checkable

from ._bounded import BoundedSet
from .engine_config import VoiceEngineConfig
from .events import EventBus
from .exceptions import AudioFormatError, InvalidState
from .injection import ContextInjector, ContextItem
from .metrics import EngineMetrics, MetricsCollector
from .pipeline import (
    InputPipeline, ItemTrack, Playback, PlaybackCut, Transcript, _aiter, _Callback, _guard, _maybe_await,
    pcm16_decoder,
)
from .providers.base import BaseProvider
from .providers.registry import create as create_provider
from .providers.types import (
    AudioAccounting, AudioFormat, ConnectionChange, ErrorInfo, EventType, FunctionCall, GenerationDone, InterruptResult,
    MessageType, ProviderEvent, ResponseInfo, ServerInterrupted, Usage,
)
from .state import ConversationState

__all__ = ["VoiceEngine", "VoiceEngineConfig", "Transcript"]

log = logging.getLogger("voiceengine.engine")


class VoiceEngine:
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
        self._audio_sink = self._provider.audio_sink()  # (fixed per provider: asked once)
        self.events = EventBus(queue_size=self.config.event_queue_size)
        # the conversation is the provider's record (provider.conversation); the state reads
        # it and adds the turns, their timing and who is speaking
        self.state = ConversationState()
        self.state.attach(self._provider.conversation)
        self._metrics = MetricsCollector()
        # the provider refused to stop the service's own replies (its turn-taking is fixed at
        # setup: Gemini Live, OpenAI Live); set per attached provider by _own_replies
        self.injector = ContextInjector(lambda: self._provider, emit=self._on_injector_event,
                                        auto_response=self._service_replies())
        self._retired_injections = {"injected": 0, "expired": 0}
        self._sink = sink
        self._own_sink = False
        self._input: InputPipeline | None = None
        self._playback: Playback | None = None
        self._decode_output: Callable[[Any], bytes] | None = None  # G.711 -> PCM16, set per provider
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

    def _service_replies(self) -> bool:
        """Whether the *service* starts the reply at the end of a user turn.

        By default (``config.auto_response=None``) the engine asks for every reply itself
        under server VAD: the service's own reply would start before NEXT_TURN context
        could go in (see :meth:`_own_replies`). ``auto_response=True`` leaves it to the
        service (one round trip sooner; NEXT_TURN context may then land after the reply
        started); ``False`` also means the engine replies.

        A service that cannot be told to hold its reply (``capabilities.held_replies`` false:
        OpenAI Live, Gemini Live) always replies by itself; NEXT_TURN context then goes in
        as soon as the user's turn is seen, which may be after the reply started.
        """
        if not self._provider.get_capabilities().held_replies:
            return True
        if self.config.auto_response is not None:
            return self.config.auto_response
        return False

    async def _own_replies(self, provider: BaseProvider) -> None:
        """Under server VAD with the engine replying, tell the service not to reply by
        itself at the end of a turn (``auto_response=False`` in its turn detection): the
        engine sends NEXT_TURN context on INPUT_COMMITTED, then asks for the reply."""
        settings = provider.config.turn_detection_settings
        if settings.manual or not settings.auto_response or self._service_replies():
            return
        await provider.update_session(turn_detection=replace(settings, auto_response=False))

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
        # injectors are replaced on disconnect: the counts of earlier ones are kept
        m.context_injected = self._retired_injections["injected"] + self.injector.stats["injected"]
        m.context_expired = self._retired_injections["expired"] + self.injector.stats["expired"]
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
        try:
            await self._own_replies(provider)
        except BaseException:
            self._detach(provider)
            await provider.disconnect()
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
        if (old_input is None or old_input.provider_rate != in_fmt.sample_rate
                or old_input.encoding is not in_fmt.encoding):
            self._input = InputPipeline(provider_rate=in_fmt.sample_rate, frame_ms=cfg.frame_ms,
                                        encoding=in_fmt.encoding)
            if old_input is not None:
                # a partial frame of the old rate: resample it into the new pipeline, never lose it
                rest = b"".join(bytes(f) for f in self._flush_input(old_input, encode=False))
                if rest:
                    carried = self._input.push(rest, old_input.provider_rate, 1)
        # G.711 output is decoded to PCM16 as it arrives: playback, the bus, the state and
        # the metrics all see PCM16 at the provider's output rate
        self._decode_output = pcm16_decoder(out_fmt.encoding)
        self.state.output_format = AudioFormat(sample_rate=out_fmt.sample_rate, channels=out_fmt.channels)
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
        for name in self._retired_injections:
            self._retired_injections[name] += old.stats[name]
        new = ContextInjector(lambda: self._provider, emit=self._on_injector_event,
                              auto_response=self._service_replies())
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

        The old provider's record (``provider.conversation``, read through
        :meth:`ConversationState.snapshot`) is re-created on the new provider as items with
        their original roles (``add_item``: each provider encodes them for its service),
        never folded into instructions; the state then reads the new provider's record.
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
        self._audio_sink = new.audio_sink()
        self.injector.auto_response = self._service_replies()
        self.state.clear()
        self.state.attach(new.conversation)
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
        """Send app audio (PCM16, any rate 8k-192k, mono/stereo); returns frames sent.

        ``sample_rate``/``channels`` ``None`` take ``config.input_sample_rate`` (else the
        provider's rate) and ``config.input_channels``; any other value outside 8000..192000
        Hz or 1..2 channels (``0`` included) raises
        :class:`~voiceengine.exceptions.AudioFormatError` and nothing is sent.

        The input is a *byte stream*: a buffer that ends mid-sample (an odd byte count)
        is not an error here; the odd byte is carried and completed by the next call (the
        resampler works the same way). So one stray byte from the app shifts every sample
        that follows by a byte (loud noise) until another stray byte re-aligns it.
        ``provider.send_audio`` instead refuses such a buffer with ``AudioFormatError``,
        since a provider frame must be whole samples. A half sample still held when the
        input ends (``disconnect()``) is dropped and counted in
        ``metrics.audio_unsent_bytes``.
        """
        if sample_rate is not None or channels is not None:  # (None: the defaults, nothing to check)
            _check_input_format(sample_rate, channels)
        if not self._connected:
            raise InvalidState("send_audio() before connect()")
        if not self._ready.is_set():
            await self._ready.wait()  # a provider switch is in progress
            if not self._connected:
                raise InvalidState("the engine disconnected while send_audio() waited for a provider switch")
        pipeline = self._input
        if pipeline is None:  # (what _input_pipeline() checks, inlined: once per frame)
            raise InvalidState("the engine is not connected")
        rate = sample_rate if sample_rate is not None else (self.config.input_sample_rate or pipeline.provider_rate)
        ch = channels if channels is not None else self.config.input_channels
        frames = pipeline.push(audio, rate, ch)
        if not frames:
            return 0
        sink = self._audio_sink
        if sink is None:
            return await self._send_frames(frames)
        # :meth:`_send_frames` through the provider's synchronous sink (here, not in a helper:
        # one call less per live frame): nothing awaits, so no provider switch or disconnect
        # can come between the frames
        metrics = self._metrics
        count = len(frames)
        sent = 0
        for frame in frames:  # (a live call has one: no enumerate per call)
            sent += 1
            try:
                sink(frame, sent < count)
            except BaseException:
                self._unsent(frames[sent - 1:])
                raise
            metrics.sent(frame.nbytes)
        return count

    async def _send_frames(self, frames: list[memoryview], *, wait: bool = True) -> int:
        metrics, ready = self._metrics, self._ready
        for index, frame in enumerate(frames):
            if wait and not ready.is_set():
                # a switch started while these frames were being sent: the rest goes to
                # the new provider rather than to one that is disconnecting
                await ready.wait()
            if wait and not self._connected:
                self._unsent(frames[index:])
                raise InvalidState("the engine disconnected while sending audio")
            try:
                await self._provider.send_audio(frame)
            except BaseException:
                self._unsent(frames[index:])
                raise
            metrics.sent(frame.nbytes)
        return len(frames)

    def _input_pipeline(self) -> InputPipeline:
        if self._input is None:  # built by connect(); gone after disconnect()
            raise InvalidState("the engine is not connected")
        return self._input

    def _flush_input(self, pipeline: InputPipeline, *, encode: bool = True) -> list[memoryview]:
        """The pipeline's remainder; a half sample it had to drop is counted as unsent."""
        before = pipeline.dropped_bytes
        frames = pipeline.flush(encode=encode)
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
        if self._playback is None or not self._connected:
            raise InvalidState("interrupt() while not connected")
        return await self._tell_provider(self._stop_playback(time.perf_counter()))

    def _stop_playback(self, t0: float) -> _Barge:
        """The local half of a barge-in, done at once (no await): flush playback, note what
        was heard, drop the rest of every reply involved, close the turn's metrics.

        Done synchronously so that events already received behind the trigger (the end of
        the user's speech, the next reply starting) cannot run first: the cut is what was
        heard when the user spoke, and only the replies playing then are dropped."""
        playback = self._playback
        if playback is None:
            raise InvalidState("no playback to stop while not connected")
        cut = playback.stop_now(unheard_ms=_sink_unheard_ms(self._sink))
        sink_clear = getattr(self._sink, "clear", None)
        clearing = sink_clear() if callable(sink_clear) else None
        latency = time.perf_counter() - t0
        responses = {t.response_id for t in (cut.heard, *cut.unheard) if t is not None and t.response_id}
        if self._response_id is not None:
            responses.add(self._response_id)
        for response_id in responses:
            self._dropped_responses.add(response_id)
        target: ItemTrack | None = cut.heard
        if target is not None:
            played_ms, unheard = cut.played_ms, cut.unheard
        else:  # nothing of this reply was heard yet: its first item goes at 0 ms
            target = cut.unheard[0] if cut.unheard else None
            played_ms, unheard = 0, cut.unheard[1:]
        self._metrics.interrupted(latency, played_ms if target is not None and played_ms > 0 else None)
        turn = self._metrics.finish_turn("interrupted")
        if turn is not None:
            self._emit(EventType.METRICS, turn)
        return _Barge(target=target, played_ms=played_ms, unheard=unheard, responses=frozenset(responses),
                      sink_clearing=clearing)

    async def _tell_provider(self, barge: _Barge) -> InterruptResult:
        """The wire half of a barge-in: the item under the read head is cut at its played ms
        (truncated, or deleted at 0 ms) and the reply cancelled; items of which nothing was
        heard are deleted where the service can delete items (``capabilities.item_deletion``),
        else left as the service keeps them. Never a truncation at a positive time of audio
        nobody heard. A reply that started after the barge-in is not cancelled."""
        await _maybe_await(barge.sink_clearing)
        provider = self._provider
        target = barge.target
        item_id = target.item_id if target is not None else None
        if self._response_id is not None and self._response_id not in barge.responses:
            result = await self._cut_without_cancel(item_id, barge.played_ms)
        else:
            result = await provider.interrupt(item_id=item_id, played_ms=barge.played_ms)
        if barge.unheard and provider.get_capabilities().item_deletion:
            for track in barge.unheard:
                if track.item_id is not None and track.item_id != result.item_id:
                    await provider.send_message(MessageType.CONVERSATION_ITEM_DELETE, {"item_id": track.item_id})
        self._emit(EventType.INTERRUPTED, result, item_id=result.item_id, response_id=result.response_id)
        return result

    async def _cut_without_cancel(self, item_id: str | None, played_ms: int) -> InterruptResult:
        """Cut the heard item when the reply it belonged to is over and a new one is
        running (the service cancelled the old one itself): ``interrupt()`` would cancel
        the new reply."""
        caps = self._provider.get_capabilities()
        if item_id is not None and played_ms > 0 and caps.truncation:
            await self._provider.truncate(item_id, played_ms)
            return InterruptResult(item_id=item_id, played_ms=played_ms, audio_end_ms=played_ms, action="truncated")
        if item_id is not None and played_ms == 0 and caps.item_deletion:
            await self._provider.send_message(MessageType.CONVERSATION_ITEM_DELETE, {"item_id": item_id})
            return InterruptResult(item_id=item_id, played_ms=0, action="deleted")
        return InterruptResult(item_id=item_id, played_ms=played_ms)

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
        if event.raw is not None and self.state.is_duplicate(event):  # (no raw message, no event id to match)
            self._metrics.duplicate_events += 1  # a server event delivered twice: handle it once
            return
        playback, pcm = None, None
        if etype is EventType.AUDIO_DELTA:
            if event.response_id in self._dropped_responses or event.response_id in self._oob_responses:
                return  # late audio of an interrupted (or out-of-band) response: never played
            if self._decode_output is not None and event.data is not None:
                # G.711 from the service: PCM16 from here on (what the bus documents)
                event = replace(event, data=self._decode_output(event.data))
            pcm = event.data
            if pcm is not None:
                playback = self._playback
                if playback is not None:
                    self._metrics.received(event.response_id, len(pcm))
        self.state.fold(event)  # the duplicate check above was the state's own
        self.events.emit(event)
        self.injector.observe(event)
        handler = _HANDLERS.get(etype)
        if handler is not None:
            handler(self, event)
        if playback is not None and pcm is not None and event.response_id not in self._dropped_responses:
            # last: unpaced playback may play the delta from this step (Playback.write), and
            # whoever hears it then finds the state, the bus and the metrics already past it
            # (and a barge-in one of them started is not played over)
            if playback.write(event.item_id, event.response_id, pcm) < len(pcm):
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
        if result is None:
            return
        if self._provider.get_capabilities().per_response_instructions:
            # the reply is asked for through the injector: PER_RESPONSE context rides on it
            await self._provider.send_function_result(call.call_id, result, respond=False)
            await self.injector.create_response()
        else:
            # nothing can ride on a reply request: the result asks for the reply itself (a
            # Gemini toolResponse the model goes on from; sent silent, it would get no reply)
            await self._provider.send_function_result(call.call_id, result, respond=True)

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

    def _deliver_audio(self, pcm: bytes) -> Awaitable[Any] | None:
        """Playback's ``deliver``: the sink's awaitable for playback to await, if any (a plain
        function, not a coroutine: it runs once per played chunk)."""
        handler = self.__dict__.get(_ON_AUDIO_RESPONSE)  # (what _fire looks up, by its stored key)
        if handler is not None:
            self._call_back("on_audio_response", handler, pcm)
        sink = self._sink
        if sink is None:
            return None
        result = sink.write(pcm)
        return result if result is not None and inspect.isawaitable(result) else None

    # ------------------------------------------------------------------ helpers
    def _fire(self, name: str, value: Any) -> None:
        handler = _Callback.current(self, name)
        if handler is not None:
            self._call_back(name, handler, value)

    def _call_back(self, name: str, handler: Callable[[Any], Any], value: Any) -> None:
        try:
            result = handler(value)
        except Exception:
            log.exception("%s callback raised", name)
            return
        if result is not None and inspect.isawaitable(result):
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

    def __repr__(self) -> str:
        return f"<VoiceEngine provider={self._provider.name!r} connected={self._connected}>"


_ON_AUDIO_RESPONSE = _Callback.storage_key("on_audio_response")

_HANDLERS: dict[EventType, Callable[[VoiceEngine, ProviderEvent], None]] = {
    EventType.RESPONSE_STARTED: VoiceEngine._h_response_started,
    EventType.RESPONSE_DONE: VoiceEngine._h_response_done,
    EventType.SPEECH_STARTED: VoiceEngine._h_speech_started,
    EventType.SPEECH_STOPPED: VoiceEngine._h_speech_stopped,
    EventType.INPUT_COMMITTED: VoiceEngine._h_committed,
    EventType.TEXT_DELTA: VoiceEngine._h_text,
    EventType.TRANSCRIPT_DELTA: VoiceEngine._h_transcript,
    EventType.TRANSCRIPT_DONE: VoiceEngine._h_transcript,
    EventType.INPUT_TRANSCRIPT: VoiceEngine._h_transcript,
    EventType.FUNCTION_CALL: VoiceEngine._h_function_call,
    EventType.ERROR: VoiceEngine._h_error,
    EventType.CONNECTION_STATE: VoiceEngine._h_connection,
    EventType.SERVER_INTERRUPTED: VoiceEngine._h_server_interrupted,
    EventType.GENERATION_DONE: VoiceEngine._h_generation_done,
    EventType.USAGE: VoiceEngine._h_usage,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Barge:
    """A barge-in between its local half (playback stopped) and its wire half."""

    target: ItemTrack | None
    played_ms: int
    unheard: tuple[ItemTrack, ...]
    responses: frozenset[str]
    sink_clearing: Any


def _check_input_format(sample_rate: int | None, channels: int | None) -> None:
    """``None`` means "the default"; anything else must be a real rate and channel count."""
    if sample_rate is not None and not (
            (type(sample_rate) is int  # the common case first: the Integral check is an ABC lookup
             or (not isinstance(sample_rate, bool) and isinstance(sample_rate, Integral)))
            and 8000 <= sample_rate <= 192000):
        raise AudioFormatError(f"sample_rate must be an int in 8000..192000 Hz or None, got {sample_rate!r}")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 2)):
        raise AudioFormatError(f"channels must be 1, 2 or None, got {channels!r}")


@runtime_checkable
class _RemotePlayoutSink(Protocol):
    """A sink with its own playout buffer (a phone network's, a browser's)."""

    def unheard_ms(self) -> float: ...


def _sink_unheard_ms(sink: object) -> float:
    """What a sink with its own (remote) playout buffer holds unheard: ``sink.unheard_ms()``."""
    if not isinstance(sink, _RemotePlayoutSink):
        return 0.0
    value = float(sink.unheard_ms())
    return value if value > 0 else 0.0


def _acc_sum(a: AudioAccounting, b: AudioAccounting, sign: int = 1) -> AudioAccounting:
    return AudioAccounting(
        captured_bytes=a.captured_bytes + sign * b.captured_bytes, sent_bytes=a.sent_bytes + sign * b.sent_bytes,
        replayed_bytes=a.replayed_bytes + sign * b.replayed_bytes,
        dropped_bytes=a.dropped_bytes + sign * b.dropped_bytes, pending_bytes=a.pending_bytes + sign * b.pending_bytes,
    )
