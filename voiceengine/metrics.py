"""Engine metrics: per-turn latencies and running counters, snapshotted as frozen dataclasses.

Clocks: every duration is measured on ``time.perf_counter()`` in the event-loop thread at
the moment the engine sees the thing happen (an event arriving, audio handed to the sink).
"End of user speech" is the SPEECH_STOPPED event (server VAD) or the app's commit / text
send (manual turns), whichever comes first for the turn.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from ._bounded import BoundedSet
from .providers.types import AudioAccounting, Usage

__all__ = ["TurnMetrics", "EngineMetrics", "MetricsCollector"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnMetrics:
    """Latencies of one assistant turn (milliseconds; ``None`` when it did not happen).

    ``first_audio_received_ms``: end of user speech -> first audio delta received.
    ``first_audio_played_ms``: end of user speech -> first audio handed to the sink.
    ``interrupt_latency_ms``: barge-in trigger (SPEECH_STARTED or ``interrupt()``) -> local
    playback silent (ring flushed, sink told to drop its queue).
    """

    index: int
    response_id: str | None
    status: str
    first_audio_received_ms: float | None
    first_audio_played_ms: float | None
    audio_received_ms: float
    audio_played_ms: float
    interrupted: bool
    interrupt_latency_ms: float | None
    truncated_at_ms: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineMetrics:
    """A snapshot of :attr:`VoiceEngine.metrics`. Byte counts are provider-rate PCM16.

    ``audio_*_bytes``: where the input audio went (``provider.audio_accounting`` summed over
    every provider the engine used, e.g. across :meth:`~VoiceEngine.switch_provider`).
    ``reconnects`` counts ``reconnecting`` phases (attempts), ``restores`` sessions restored,
    ``gave_up`` outages the provider gave up on, ``responses_lost`` responses ended by a lost
    connection. ``duplicate_events``: server events seen twice (same event id), dropped.
    ``playback_overflows``: responses whose audio overflowed the playback buffer (one ERROR
    each). ``callbacks_dropped``: async app callbacks skipped because too many were pending.
    ``usage``: running :class:`~voiceengine.providers.types.Usage` totals (see
    :meth:`MetricsCollector.usage_reported`).
    """

    turns: int
    interrupts: int
    bytes_sent: int
    frames_sent: int
    bytes_received: int
    deltas_received: int
    bytes_played: int
    playback_underruns: int
    playback_overruns: int
    playback_dropped_bytes: int
    input_resampler_delay_ms: float
    output_resampler_delay_ms: float
    reconnects: int
    provider_switches: int
    context_injected: int
    context_expired: int
    first_audio_received_ms_p50: float | None
    first_audio_played_ms_p50: float | None
    interrupt_latency_ms_p50: float | None
    last_turn: TurnMetrics | None
    # input audio accounting, summed over every provider the engine used (provider-rate
    # bytes): captured == sent + replayed + dropped + pending at every moment
    audio_captured_bytes: int = 0
    audio_sent_bytes: int = 0
    audio_replayed_bytes: int = 0
    audio_dropped_bytes: int = 0
    audio_pending_bytes: int = 0
    #: input audio the engine accepted but no provider took (it raised; the caller was told)
    audio_unsent_bytes: int = 0
    restores: int = 0
    gave_up: int = 0
    responses_lost: int = 0
    duplicate_events: int = 0
    playback_overflows: int = 0
    callbacks_dropped: int = 0
    #: running usage totals of the conversation (every provider the engine used): tokens by
    #: direction and modality, and seconds for services that bill by time
    usage: Usage = Usage()

    @property
    def audio_balanced(self) -> bool:
        """``captured == sent + replayed + dropped + pending`` (always true)."""
        return self.audio_captured_bytes == (self.audio_sent_bytes + self.audio_replayed_bytes
                                             + self.audio_dropped_bytes + self.audio_pending_bytes)


def _p50(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


class _Turn:
    __slots__ = ("response_id", "first_rx", "first_play", "rx_bytes", "play_bytes", "interrupted",
                 "interrupt_ms", "truncated_at_ms", "status", "speech_end")

    def __init__(self, response_id: str | None, speech_end: float | None) -> None:
        self.response_id = response_id
        self.speech_end = speech_end
        self.first_rx: float | None = None
        self.first_play: float | None = None
        self.rx_bytes = 0
        self.play_bytes = 0
        self.interrupted = False
        self.interrupt_ms: float | None = None
        self.truncated_at_ms: int | None = None
        self.status = "in_progress"


class MetricsCollector:
    """Mutable counters owned by the engine; :meth:`snapshot` freezes them.

    ``bytes_per_ms`` converts provider-rate byte counts to milliseconds of audio.
    Only the last ``history`` turns are kept (bounded memory in long sessions).
    """

    def __init__(self, *, history: int = 256, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.bytes_per_ms = 48.0  # 24 kHz mono PCM16 until the engine says otherwise
        self.bytes_sent = 0
        self.frames_sent = 0
        self.bytes_received = 0
        self.deltas_received = 0
        self.bytes_played = 0
        self.engine_underruns = 0
        self.reconnects = 0
        self.provider_switches = 0
        self.interrupts = 0
        self.context_injected = 0
        self.context_expired = 0
        self.input_delay_ms = 0.0
        self.output_delay_ms = 0.0
        self.ring_underruns = 0
        self.ring_overruns = 0
        self.ring_dropped = 0
        self.audio = AudioAccounting()  # set by the engine before each snapshot
        self.audio_unsent_bytes = 0
        self.restores = 0
        self.gave_up = 0
        self.responses_lost = 0
        self.duplicate_events = 0
        self.playback_overflows = 0
        self.callbacks_dropped = 0
        self.usage = Usage()
        # responses whose usage was counted, by source: a provider that reports USAGE and
        # also puts usage on RESPONSE_DONE must not be counted twice
        self._usage_events: BoundedSet[str] = BoundedSet(1024)
        self._usage_done: BoundedSet[str] = BoundedSet(1024)
        self._speech_end: float | None = None
        self._current: _Turn | None = None
        self.turns: deque[TurnMetrics] = deque(maxlen=history)
        self._count = 0

    # ---------------------------------------------------------------- input side
    def speech_ended(self) -> None:
        """End of the user's speech (first call per turn wins)."""
        if self._speech_end is None:
            self._speech_end = self.clock()

    def sent(self, nbytes: int) -> None:
        self.bytes_sent += nbytes
        self.frames_sent += 1

    # --------------------------------------------------------------- output side
    def _turn(self, response_id: str | None) -> _Turn:
        cur = self._current
        if cur is None or (response_id is not None and cur.response_id not in (None, response_id)):
            if cur is not None:
                self.finish_turn()
            cur = self._current = _Turn(response_id, self._speech_end)
            self._speech_end = None
        elif cur.response_id is None:
            cur.response_id = response_id
        return cur

    def response_started(self, response_id: str | None) -> None:
        self._turn(response_id)

    def received(self, response_id: str | None, nbytes: int) -> None:
        self.bytes_received += nbytes
        self.deltas_received += 1
        turn = self._current
        if turn is None or turn.response_id is None or turn.response_id != response_id:
            turn = self._turn(response_id)  # (the turn's own delta, the common case, skips the call)
        if turn.first_rx is None:
            turn.first_rx = self.clock()
        turn.rx_bytes += nbytes

    def played(self, nbytes: int) -> None:
        self.bytes_played += nbytes
        turn = self._current
        if turn is not None:
            if turn.first_play is None and nbytes:
                turn.first_play = self.clock()
            turn.play_bytes += nbytes

    def interrupted(self, latency_s: float, truncated_at_ms: int | None) -> None:
        self.interrupts += 1
        turn = self._current
        if turn is not None:
            turn.interrupted = True
            turn.interrupt_ms = latency_s * 1000.0
            turn.truncated_at_ms = truncated_at_ms

    def finish_turn(self, status: str | None = None) -> TurnMetrics | None:
        """Close the current turn (playback drained or interrupted); returns its metrics."""
        turn, self._current = self._current, None
        if turn is None:
            return None
        if status:
            turn.status = status
        start = turn.speech_end

        def since(t: float | None) -> float | None:
            return None if t is None or start is None else max(0.0, (t - start) * 1000.0)

        self._count += 1
        result = TurnMetrics(
            index=self._count, response_id=turn.response_id, status=turn.status,
            first_audio_received_ms=since(turn.first_rx), first_audio_played_ms=since(turn.first_play),
            audio_received_ms=turn.rx_bytes / self.bytes_per_ms, audio_played_ms=turn.play_bytes / self.bytes_per_ms,
            interrupted=turn.interrupted, interrupt_latency_ms=turn.interrupt_ms, truncated_at_ms=turn.truncated_at_ms,
        )
        self.turns.append(result)
        return result

    def usage_reported(self, usage: Usage) -> None:
        """A USAGE event (an increment): added, unless RESPONSE_DONE counted that response."""
        rid = usage.response_id
        if rid is not None:
            if rid in self._usage_done:
                return
            self._usage_events.add(rid)
        self.usage = self.usage.plus(usage)

    def response_usage(self, response_id: str | None, usage: Mapping[str, Any] | None) -> None:
        """The usage a RESPONSE_DONE carries (OpenAI Realtime shape), for providers that do
        not report USAGE for that response."""
        if not isinstance(usage, Mapping) or (response_id is not None and response_id in self._usage_events):
            return
        increment = usage_from_realtime(usage)
        if increment is None:
            return
        if response_id is not None:
            if response_id in self._usage_done:
                return
            self._usage_done.add(response_id)
        self.usage = self.usage.plus(increment)

    def set_status(self, status: str) -> None:
        if self._current is not None:
            self._current.status = status

    # ------------------------------------------------------------------ snapshot
    def snapshot(self) -> EngineMetrics:
        turns = list(self.turns)
        return EngineMetrics(
            turns=self._count, interrupts=self.interrupts, bytes_sent=self.bytes_sent, frames_sent=self.frames_sent,
            bytes_received=self.bytes_received, deltas_received=self.deltas_received, bytes_played=self.bytes_played,
            playback_underruns=self.engine_underruns + self.ring_underruns, playback_overruns=self.ring_overruns,
            playback_dropped_bytes=self.ring_dropped, input_resampler_delay_ms=self.input_delay_ms,
            output_resampler_delay_ms=self.output_delay_ms, reconnects=self.reconnects,
            provider_switches=self.provider_switches, context_injected=self.context_injected,
            context_expired=self.context_expired,
            first_audio_received_ms_p50=_p50(t.first_audio_received_ms for t in turns),
            first_audio_played_ms_p50=_p50(t.first_audio_played_ms for t in turns),
            interrupt_latency_ms_p50=_p50(t.interrupt_latency_ms for t in turns),
            last_turn=turns[-1] if turns else None,
            audio_captured_bytes=self.audio.captured_bytes, audio_sent_bytes=self.audio.sent_bytes,
            audio_replayed_bytes=self.audio.replayed_bytes, audio_dropped_bytes=self.audio.dropped_bytes,
            audio_pending_bytes=self.audio.pending_bytes, audio_unsent_bytes=self.audio_unsent_bytes,
            restores=self.restores, gave_up=self.gave_up, responses_lost=self.responses_lost,
            duplicate_events=self.duplicate_events, playback_overflows=self.playback_overflows,
            callbacks_dropped=self.callbacks_dropped, usage=self.usage,
        )


def usage_from_realtime(usage: Mapping[str, Any]) -> Usage | None:
    """A :class:`Usage` from a Realtime ``response.usage`` object (token details by
    modality); ``None`` when it carries no well-formed counts."""
    details_in = usage.get("input_token_details")
    details_out = usage.get("output_token_details")
    if not isinstance(details_in, Mapping) and not isinstance(details_out, Mapping):
        return None

    def count(details: Any, name: str) -> int:
        value = details.get(name) if isinstance(details, Mapping) else None
        return value if type(value) is int and value >= 0 else 0

    return Usage(input_text_tokens=count(details_in, "text_tokens"), input_audio_tokens=count(details_in, "audio_tokens"),
                 input_cached_tokens=count(details_in, "cached_tokens"),
                 output_text_tokens=count(details_out, "text_tokens"),
                 output_audio_tokens=count(details_out, "audio_tokens"))
