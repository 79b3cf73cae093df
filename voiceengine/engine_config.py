"""VoiceEngineConfig: the settings of a :class:`~voiceengine.engine.VoiceEngine`.

Kept apart from the engine so the settings and their validation read on their own;
:mod:`voiceengine.engine` re-exports it. See docs/engine.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields as dataclass_fields
from typing import Any, Mapping, Sequence

from .exceptions import ConfigurationError
from .providers.base import ProviderConfig
from .providers.registry import config_class
from .secrets import Secret, protect_options

__all__ = ["VoiceEngineConfig"]

# turn_detection=None means "off", so "not given" (keep the provider's default) needs its own marker
_UNSET: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class VoiceEngineConfig:
    """Engine settings. Provider fields (``api_key`` .. ``tools``) build the provider's config
    when the provider is given by name and ``provider_config`` is None; ``None`` (``()`` for
    ``tools``) keeps the provider's default. They reach every provider ("openai",
    "openai-live", "gemini", "mock"); ``url`` only one whose config has a ``url`` field (the
    mock has none). ``tools`` use the neutral shape
    ``{"type": "function", "name", "description", "parameters": <JSON schema>}``, which each
    provider converts to its own wire form. ``provider_options`` go to the provider's config
    as given and win over the fields above.

    Audio: ``input_sample_rate``/``input_channels`` are the defaults for :meth:`send_audio`
    (None: the provider's rate, mono); ``frame_ms`` is the size of each audio event sent (20 ms:
    see docs/engine.md for the 20 vs 100 ms benchmark). Output: ``output_sample_rate``/
    ``output_channels`` (None: a given sink's own format, else the provider's);
    ``playback_speed`` 1.0 = real time, N = virtual clock N x real time, None = unpaced;
    ``prebuffer_ms`` of jitter buffer before a reply starts; ``playback_buffer_ms`` capacity.
    ``barge_in``: flush playback and interrupt when the user starts speaking.
    ``auto_response``: whether the service replies by itself at the end of a user turn.
    ``None`` (default) and ``False``: the engine asks for each reply itself once the turn is
    committed, after queued NEXT_TURN context (under server VAD it turns the service's own
    reply off; costs one round trip, see docs/context_injection.md); ``True``: the service
    replies (NEXT_TURN context is then best effort). ``end_silence_ms``: silence appended
    after a finite source (a WAV file) so server VAD sees the end of the utterance.
    ``event_queue_size``: the bus's default stream buffer; ``max_pending_callbacks``: async app
    callbacks (``on_*`` returning awaitables) running at once, beyond which calls are skipped
    and counted in ``EngineMetrics.callbacks_dropped`` (a slow callback must not grow memory).
    """

    provider_config: ProviderConfig | None = None
    api_key: str | Secret | None = None
    instructions: str | None = None
    voice: str | None = None
    turn_detection: Any = _UNSET
    url: str | None = None
    tools: Sequence[Mapping[str, Any]] = ()
    provider_options: Mapping[str, Any] = field(default_factory=dict)
    input_sample_rate: int | None = None
    input_channels: int = 1
    frame_ms: float = 20.0
    output_sample_rate: int | None = None
    output_channels: int | None = None
    playback_speed: float | None = 1.0
    playback_tick_ms: float = 10.0
    prebuffer_ms: int = 60
    playback_buffer_ms: int = 300_000
    barge_in: bool = True
    auto_response: bool | None = None
    end_silence_ms: int = 800
    event_queue_size: int = 1024
    max_pending_callbacks: int = 1024

    def __post_init__(self) -> None:
        if isinstance(self.api_key, str):  # never keep the key in clear (repr, pickle)
            object.__setattr__(self, "api_key", Secret(self.api_key))
        elif self.api_key is not None and not isinstance(self.api_key, Secret):
            raise ConfigurationError("api_key must be a str, a Secret or None")
        if isinstance(self.tools, (str, bytes, Mapping)) or not isinstance(self.tools, Sequence):
            raise ConfigurationError("tools must be a sequence of tool mappings")
        if not all(isinstance(tool, Mapping) for tool in self.tools):
            raise ConfigurationError("each tool must be a mapping")
        object.__setattr__(self, "tools", tuple(dict(tool) for tool in self.tools))
        try:  # credentials in provider options (extra_headers, api_key) are masked too
            object.__setattr__(self, "provider_options", protect_options(self.provider_options))
        except TypeError as exc:  # the message names the header, never its value
            raise ConfigurationError(f"provider_options: {exc}") from None
        if not 1.0 <= self.frame_ms <= 1000.0:
            raise ConfigurationError("frame_ms must be in 1..1000")
        for name in ("input_sample_rate", "output_sample_rate"):
            rate = getattr(self, name)
            if rate is not None and not 8000 <= rate <= 192000:
                raise ConfigurationError(f"{name} must be in 8000..192000 Hz")
        if self.input_channels not in (1, 2) or self.output_channels not in (None, 1, 2):
            raise ConfigurationError("channels must be 1 or 2")
        if self.playback_speed is not None and not self.playback_speed > 0:
            raise ConfigurationError("playback_speed must be > 0 or None")
        if self.prebuffer_ms < 0 or self.end_silence_ms < 0 or self.playback_buffer_ms < 1000:
            raise ConfigurationError("prebuffer_ms, end_silence_ms >= 0 and playback_buffer_ms >= 1000 required")
        if self.event_queue_size < 1 or self.max_pending_callbacks < 1:
            raise ConfigurationError("event_queue_size and max_pending_callbacks must be >= 1")

    def provider_fields(self, name: str) -> dict[str, Any]:
        fields: dict[str, Any] = {k: v for k, v in (("api_key", self.api_key), ("instructions", self.instructions),
                                                    ("voice", self.voice)) if v is not None}
        if self.turn_detection is not _UNSET:
            fields["turn_detection"] = self.turn_detection
        if self.tools:
            fields["tools"] = self.tools
        if self.url is not None and _has_field(name, "url"):
            fields["url"] = self.url
        fields.update(self.provider_options)
        return fields


def _has_field(provider: str, name: str) -> bool:
    """Whether the config class registered for ``provider`` has the field ``name``; a
    factory without a config class answers True (building it then asks for a config)."""
    cls = config_class(provider)
    return cls is None or any(f.name == name for f in dataclass_fields(cls))
