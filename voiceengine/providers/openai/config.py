"""Configuration of the OpenAI Realtime provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ...exceptions import ConfigurationError
from ...secrets import SecretHeaders
from ..base import ProviderConfig
from ..endpoint import check_connection_limits, check_endpoint, is_loopback_url

__all__ = ["OpenAIConfig", "VOICES", "DEFAULT_URL", "DEFAULT_MODEL"]

DEFAULT_URL = "wss://api.openai.com/v1/realtime"
DEFAULT_MODEL = "gpt-realtime"
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
_AUDIO_FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAIConfig(ProviderConfig):
    """Settings of :class:`~voiceengine.providers.openai.OpenAIProvider`.

    ``codec`` is ``"ga"`` (default, today's Realtime API) or ``"beta"`` (header
    ``OpenAI-Beta: realtime=v1``; legacy Azure deployments). ``url`` may point at a
    :class:`~voiceengine.testing.FakeRealtimeServer`; plain ``ws://`` is only accepted
    for loopback hosts. ``max_size_bytes`` bounds one inbound message (a whole reply's
    audio can arrive in one ``response.output_audio.done``-adjacent burst: keep it MiB-sized,
    never unlimited).

    Continuity and limits (see docs/reliability.md):

    * ``reconnect_audio_buffer_ms`` (3000): input audio kept while the connection is being
      restored; the oldest is dropped beyond it (0 keeps nothing).
    * ``session_limit_s`` (None = :attr:`effective_session_limit_s`: 3600, or 1800 with
      ``azure_deployment``), ``recycle_margin_s`` (120), ``recycle`` (True): a planned
      reconnect ``recycle_margin_s`` before the server's session limit.
    * ``max_audio_delta_bytes`` (1 MiB decoded): a bigger audio delta is dropped.
    * ``max_response_audio_s`` (600): a response with more audio is cancelled.

    ``extra_headers`` is kept as a :class:`~voiceengine.secrets.SecretHeaders`: credential
    headers (``X-Api-Key``, ``Authorization``, ``Cookie``, ...) are masked in the repr and
    make the config refuse pickling, like ``api_key``.
    """

    url: str = DEFAULT_URL
    model: str = DEFAULT_MODEL
    voice: str | None = "marin"
    codec: str = "ga"
    input_audio_format: str = "audio/pcm"
    output_audio_format: str = "audio/pcm"
    noise_reduction: str | None = None  # "near_field" | "far_field" | None
    max_output_tokens: int | str | None = None
    extra_headers: Mapping[str, str] | None = None
    azure_deployment: str | None = None  # Azure: sends api-key header, deployment query
    max_size_bytes: int = 16 * 1024 * 1024
    max_queue_messages: int = 1024
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    open_timeout_s: float = 10.0
    reconnect: bool = True
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0
    session_limit_s: float | None = None
    recycle_margin_s: float = 120.0
    recycle: bool = True
    reconnect_audio_buffer_ms: int = 3000
    max_audio_delta_bytes: int = 1024 * 1024
    max_response_audio_s: float = 600.0
    allow_insecure: bool = False

    def __post_init__(self) -> None:
        ProviderConfig.__post_init__(self)
        if self.extra_headers is not None:
            try:
                object.__setattr__(self, "extra_headers", SecretHeaders(self.extra_headers))
            except TypeError as exc:  # the message names the header, never its value
                raise ConfigurationError(f"extra_headers: {exc}") from None
        if self.codec not in ("ga", "beta"):
            raise ConfigurationError(f"codec must be 'ga' or 'beta', got {self.codec!r}")
        check_endpoint(self.url, has_key=bool(self.key), allow_insecure=self.allow_insecure)
        if self.voice is not None and self.voice not in VOICES:
            raise ConfigurationError(f"voice must be one of {VOICES}, got {self.voice!r}")
        for name in ("input_audio_format", "output_audio_format"):
            if getattr(self, name) not in _AUDIO_FORMATS:
                raise ConfigurationError(f"{name} must be one of {_AUDIO_FORMATS}")
        check_connection_limits(max_size_bytes=self.max_size_bytes, max_queue_messages=self.max_queue_messages,
                                backoff_initial_s=self.backoff_initial_s, backoff_max_s=self.backoff_max_s,
                                reconnect_audio_buffer_ms=self.reconnect_audio_buffer_ms)
        if self.session_limit_s is not None and not self.session_limit_s > 0:
            raise ConfigurationError("session_limit_s must be > 0 or None")
        if not 0 <= self.recycle_margin_s < self.effective_session_limit_s:
            raise ConfigurationError("recycle_margin_s must be >= 0 and below the session limit")
        if self.max_audio_delta_bytes < 2 or not self.max_response_audio_s > 0:
            raise ConfigurationError("max_audio_delta_bytes must be >= 2 and max_response_audio_s > 0")

    @property
    def effective_session_limit_s(self) -> float:
        """The session limit in force: ``session_limit_s``, else 3600 s (1800 s on Azure)."""
        if self.session_limit_s is not None:
            return float(self.session_limit_s)
        return 1800.0 if self.azure_deployment else 3600.0

    @property
    def input_bytes_per_ms(self) -> int:
        """Input audio bytes per millisecond (PCM16 24 kHz: 48; G.711 8 kHz: 8)."""
        return 48 if self.input_audio_format == "audio/pcm" else 8

    @property
    def is_loopback(self) -> bool:
        return is_loopback_url(self.url)

    def replace(self, **changes: Any) -> "OpenAIConfig":
        import dataclasses

        return dataclasses.replace(self, **changes)
