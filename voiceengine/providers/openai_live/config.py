"""Configuration of the OpenAI Live provider (``/v1/live/sessions``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ...exceptions import ConfigurationError
from ..base import ProviderConfig
from ..endpoint import check_connection_limits, check_endpoint, is_loopback_url

__all__ = ["OpenAILiveConfig", "DEFAULT_URL", "DEFAULT_MODEL", "DEFAULT_BACKEND_MODEL", "SAMPLE_RATES"]

DEFAULT_URL = "wss://api.openai.com/v1/live/sessions"
DEFAULT_MODEL = "gpt-live-1"
DEFAULT_BACKEND_MODEL = "gpt-5-mini"
SAMPLE_RATES = (24000, 16000)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAILiveConfig(ProviderConfig):
    """Settings of :class:`~voiceengine.providers.openai_live.OpenAILiveProvider`.

    Connection: ``url`` is the full endpoint, used as given (Live takes **no** query
    parameters: the model goes in ``session.start``); plain ``ws://`` is accepted only for a
    loopback host (a key never travels in clear; without a key a remote ``ws://`` also needs
    ``allow_insecure``). The key goes in ``Authorization: Bearer``.

    Session (immutable once started; a change needs a new connection): ``model``,
    ``instructions``, ``voice`` (a built-in name), ``sample_rate`` (24000 or 16000, the
    ``audio/pcm`` rate of both directions). ``tools`` (function tools, the usual
    ``{"type": "function", "name", "description", "parameters"}`` shape) run through
    Responses delegation on ``backend_model``, with ``backend_instructions``;
    ``acknowledgement_delay_ms`` passes through to the delegation (None: service default).

    Inference (Live sends no "reply done" and no "user started/stopped" events; see
    docs/openai_live.md): the *session timeline* is the input audio sent, in ms.

    * ``user_turn_gap_ms`` (800): the user's turn ends when the timeline has moved this far
      past the last input-transcript fragment (or when a reply starts).
    * ``reply_end_gap_ms`` (800): a reply ends when the timeline has moved this far past
      the end of its last output (audio or transcript) and no delegated work is outstanding.
    * ``reply_end_quiet_s`` (2.0): the same on the wall clock, for when the app stops
      streaming audio (None: timeline only).
    * ``barge_in_tail_ms`` (200): output arriving within this much timeline after a
      barge-in is the cut reply's tail and is dropped, not a new reply.
    * ``drop_idle_output`` (True) / ``idle_output_max_dbfs`` (-54): outside a reply, output
      frames whose peak is at most this level are the service's idle track and are dropped
      (counted); a louder frame or an output transcript starts a reply.

    Continuity (the runtime's): ``reconnect``, ``backoff_initial_s``/``backoff_max_s``,
    ``reconnect_audio_buffer_ms`` (input audio kept while a session is restored),
    ``session_limit_s`` (None: Live reports ``expires_at`` and ends with ``session.closed``
    ``expired``, which restores; set it to recycle ``recycle_margin_s`` earlier, when idle).
    """

    url: str = DEFAULT_URL
    model: str = DEFAULT_MODEL
    voice: str | None = "marin"
    sample_rate: int = 24000
    backend_model: str = DEFAULT_BACKEND_MODEL
    backend_instructions: str | None = None
    acknowledgement_delay_ms: int | None = None
    user_turn_gap_ms: int = 800
    reply_end_gap_ms: int = 800
    reply_end_quiet_s: float | None = 2.0
    barge_in_tail_ms: int = 200
    drop_idle_output: bool = True
    idle_output_max_dbfs: float = -54.0
    max_size_bytes: int = 16 * 1024 * 1024
    max_history_messages: int = 128
    max_queue_messages: int = 1024
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    open_timeout_s: float = 10.0
    reconnect: bool = True
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0
    reconnect_audio_buffer_ms: int = 3000
    session_limit_s: float | None = None
    recycle_margin_s: float = 120.0
    allow_insecure: bool = False

    def __post_init__(self) -> None:
        ProviderConfig.__post_init__(self)
        parts = check_endpoint(self.url, has_key=bool(self.key), allow_insecure=self.allow_insecure)
        if parts.query:
            raise ConfigurationError("url must carry no query (Live takes the model in session.start, never ?model=)")
        if not self.model or not isinstance(self.model, str):
            raise ConfigurationError("model must be a non-empty str")
        if self.voice is not None and (not isinstance(self.voice, str) or not self.voice):
            raise ConfigurationError("voice must be a non-empty str or None (service default)")
        if self.sample_rate not in SAMPLE_RATES:
            raise ConfigurationError(f"sample_rate must be one of {SAMPLE_RATES}, got {self.sample_rate!r}")
        if not self.backend_model or not isinstance(self.backend_model, str):
            raise ConfigurationError("backend_model must be a non-empty str")
        if self.turn_detection is None:
            raise ConfigurationError("OpenAI Live owns turn-taking: manual turns (turn_detection=None) "
                                     "are not available")
        if tuple(self.output_modalities) != ("audio",):
            raise ConfigurationError("OpenAI Live speaks: output_modalities must be ('audio',)")
        if self.temperature is not None:
            raise ConfigurationError("OpenAI Live takes no temperature")
        for tool in self.tools:
            if tool.get("type", "function") != "function" or not isinstance(tool.get("name"), str) or not tool["name"]:
                raise ConfigurationError("tools must be function tools with a non-empty 'name'")
        for name in ("user_turn_gap_ms", "reply_end_gap_ms", "barge_in_tail_ms"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= 60_000:
                raise ConfigurationError(f"{name} must be an int in 0..60000")
        if self.reply_end_quiet_s is not None and not self.reply_end_quiet_s > 0:
            raise ConfigurationError("reply_end_quiet_s must be > 0 or None")
        if self.acknowledgement_delay_ms is not None and (
                type(self.acknowledgement_delay_ms) is not int or self.acknowledgement_delay_ms < 0):
            raise ConfigurationError("acknowledgement_delay_ms must be an int >= 0 or None")
        if not -120.0 <= self.idle_output_max_dbfs <= 0.0:
            raise ConfigurationError("idle_output_max_dbfs must be in -120..0")
        check_connection_limits(max_size_bytes=self.max_size_bytes, max_queue_messages=self.max_queue_messages,
                                backoff_initial_s=self.backoff_initial_s, backoff_max_s=self.backoff_max_s,
                                reconnect_audio_buffer_ms=self.reconnect_audio_buffer_ms)
        if self.session_limit_s is not None and not 0 <= self.recycle_margin_s < self.session_limit_s:
            raise ConfigurationError("session_limit_s must be > recycle_margin_s >= 0, or None (no recycling)")
        if not 0 <= self.max_history_messages <= 128:
            raise ConfigurationError("max_history_messages must be in 0..128 (the service's limit)")

    @property
    def bytes_per_ms(self) -> int:
        """PCM16 mono bytes per millisecond at ``sample_rate`` (24 kHz: 48, 16 kHz: 32)."""
        return 2 * self.sample_rate // 1000

    @property
    def is_loopback(self) -> bool:
        return is_loopback_url(self.url)

    def replace(self, **changes: Any) -> "OpenAILiveConfig":
        return dataclasses.replace(self, **changes)
