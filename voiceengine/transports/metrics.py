"""Prometheus metrics of the calls a server runs (the ``serve`` extra: ``prometheus_client``).

:class:`PrometheusMetrics` is a :class:`~voiceengine.transports.calls.CallObserver`. Every
metric carries a ``transport`` label (``twilio``, ``browser``):

============================================  ========= ====================================
``voiceengine_active_calls``                  gauge     calls running now
``voiceengine_calls_total``                   counter   calls started
``voiceengine_calls_refused_total``           counter   by ``reason``: draining, full,
                                                        provider_unavailable
``voiceengine_audio_in_seconds_total``        counter   caller audio received
``voiceengine_audio_out_seconds_total``       counter   reply audio sent
``voiceengine_first_audio_latency_seconds``   histogram end of user speech -> first reply
                                                        audio sent to the caller
``voiceengine_interrupt_latency_seconds``     histogram barge-in -> playback stopped and
                                                        the player told to clear
``voiceengine_reconnects_total``              counter   provider reconnect attempts
``voiceengine_errors_total``                  counter   by ``code``: provider error codes
                                                        and the transports' own
                                                        (``twilio_invalid_json``, ...)
============================================  ========= ====================================

This module needs ``prometheus_client`` (the ``serve`` extra); the handlers do not: the
server imports it only when it serves ``/metrics``.

Several worker processes (``serve --workers N``): prometheus_client's multiprocess mode.
The supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` (a fresh directory unless already set)
before the workers start; each worker writes its figures there and ``/metrics`` on any
worker reports the sum over all of them (the gauge as ``livesum``: live workers only).
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from ..metrics import TurnMetrics
from .calls import CallInfo, CallObserver, TransportKind
from .metrics_dir import multiprocess_dir

__all__ = ["PrometheusMetrics", "mark_process_dead"]

_LATENCY_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_INTERRUPT_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
#: error codes come from the service: labels beyond this many distinct codes read "other"
MAX_ERROR_CODES = 64


def mark_process_dead(pid: int) -> None:
    """Forget a dead worker's live gauges (multiprocess mode; nothing otherwise)."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]  # unannotated upstream


class PrometheusMetrics(CallObserver):
    """The server's metrics in their own registry (``render()`` gives the text format)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        labels = ("transport",)
        self.active_calls_gauge = Gauge("voiceengine_active_calls", "Calls running now", labels, registry=r,
                                  multiprocess_mode="livesum")
        self.calls_counter = Counter("voiceengine_calls", "Calls started", labels, registry=r)
        self.refused_counter = Counter("voiceengine_calls_refused", "Calls refused before they started",
                               ("transport", "reason"), registry=r)
        self.audio_in_counter = Counter("voiceengine_audio_in_seconds", "Caller audio received (seconds)", labels,
                                registry=r)
        self.audio_out_counter = Counter("voiceengine_audio_out_seconds", "Reply audio sent (seconds)", labels,
                                 registry=r)
        self.first_audio_histogram = Histogram("voiceengine_first_audio_latency_seconds",
                                     "End of user speech to first reply audio sent", labels, registry=r,
                                     buckets=_LATENCY_BUCKETS_S)
        self.interrupt_histogram = Histogram("voiceengine_interrupt_latency_seconds",
                                   "Barge-in to playback stopped and the player told to clear", labels,
                                   registry=r, buckets=_INTERRUPT_BUCKETS_S)
        self.reconnects_counter = Counter("voiceengine_reconnects", "Provider reconnect attempts", labels, registry=r)
        self.errors_counter = Counter("voiceengine_errors", "Errors by code", ("transport", "code"), registry=r)
        self._codes: set[str] = set()
        self._lock = threading.Lock()

    # ----------------------------------------------------------- CallObserver
    def call_started(self, info: CallInfo) -> None:
        self.calls_counter.labels(info.transport.value).inc()
        self.active_calls_gauge.labels(info.transport.value).inc()

    def call_ended(self, info: CallInfo, reason: str) -> None:
        self.active_calls_gauge.labels(info.transport.value).dec()

    def call_refused(self, transport: TransportKind, reason: str) -> None:
        self.refused_counter.labels(transport.value, reason).inc()

    def audio_in(self, info: CallInfo, seconds: float) -> None:
        self.audio_in_counter.labels(info.transport.value).inc(seconds)

    def audio_out(self, info: CallInfo, seconds: float) -> None:
        self.audio_out_counter.labels(info.transport.value).inc(seconds)

    def turn(self, info: CallInfo, metrics: TurnMetrics) -> None:
        if metrics.first_audio_played_ms is not None:
            self.first_audio_histogram.labels(info.transport.value).observe(metrics.first_audio_played_ms / 1000.0)
        if metrics.interrupt_latency_ms is not None:
            self.interrupt_histogram.labels(info.transport.value).observe(metrics.interrupt_latency_ms / 1000.0)

    def reconnect(self, info: CallInfo) -> None:
        self.reconnects_counter.labels(info.transport.value).inc()

    def error(self, transport: TransportKind, code: str) -> None:
        with self._lock:
            if code not in self._codes:
                if len(self._codes) >= MAX_ERROR_CODES:
                    code = "other"
                else:
                    self._codes.add(code)
        self.errors_counter.labels(transport.value, code).inc()

    # ------------------------------------------------------------- exposition
    def render(self) -> bytes:
        """The text exposition format: this process's figures, or every worker's (multiprocess)."""
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=path)  # type: ignore[no-untyped-call]  # unannotated upstream
        return generate_latest(merged)
