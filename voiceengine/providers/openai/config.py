"""Configuration of the OpenAI Realtime provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

from ...exceptions import ConfigurationError
from ..base import ProviderConfig

__all__ = ["OpenAIConfig", "VOICES", "DEFAULT_URL", "DEFAULT_MODEL"]

DEFAULT_URL = "wss://api.openai.com/v1/realtime"
DEFAULT_MODEL = "gpt-realtime"
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
_AUDIO_FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAIConfig(ProviderConfig):
    """Settings of :class:`~voiceengine.providers.openai.OpenAIProvider`.

    ``codec`` is ``"ga"`` (default, today's Realtime API) or ``"beta"`` (header
    ``OpenAI-Beta: realtime=v1``; legacy Azure deployments). ``url`` may point at a
    :class:`~voiceengine.testing.FakeRealtimeServer`; plain ``ws://`` is only accepted
    for loopback hosts. ``max_size_bytes`` bounds one inbound message (a whole reply's
    audio can arrive in one ``response.output_audio.done``-adjacent burst: keep it MiB-sized,
    never unlimited).
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
    session_limit_s: float = 60 * 60.0
    allow_insecure: bool = False

    def __post_init__(self) -> None:
        ProviderConfig.__post_init__(self)
        if self.codec not in ("ga", "beta"):
            raise ConfigurationError(f"codec must be 'ga' or 'beta', got {self.codec!r}")
        parts = urlsplit(self.url)
        if parts.scheme not in ("ws", "wss"):
            raise ConfigurationError(f"url must be ws:// or wss://, got scheme {parts.scheme!r}")
        if parts.scheme == "ws" and (parts.hostname or "") not in _LOOPBACK and not self.allow_insecure:
            raise ConfigurationError(
                "plain ws:// is only allowed to a loopback host (the key would travel in clear); "
                "use wss:// or set allow_insecure=True"
            )
        if self.voice is not None and self.voice not in VOICES:
            raise ConfigurationError(f"voice must be one of {VOICES}, got {self.voice!r}")
        for name in ("input_audio_format", "output_audio_format"):
            if getattr(self, name) not in _AUDIO_FORMATS:
                raise ConfigurationError(f"{name} must be one of {_AUDIO_FORMATS}")
        if self.max_size_bytes < 1024 or self.max_queue_messages < 1:
            raise ConfigurationError("max_size_bytes must be >= 1024 and max_queue_messages >= 1")
        if self.session_limit_s <= 0 or self.backoff_initial_s <= 0 or self.backoff_max_s < self.backoff_initial_s:
            raise ConfigurationError("session_limit_s, backoff_initial_s must be > 0 and backoff_max_s >= initial")

    @property
    def is_loopback(self) -> bool:
        return (urlsplit(self.url).hostname or "") in _LOOPBACK

    def replace(self, **changes: Any) -> "OpenAIConfig":
        import dataclasses

        return dataclasses.replace(self, **changes)
