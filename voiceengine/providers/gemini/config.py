"""Configuration of the Gemini Live provider.

Wire facts (google-genai ``live.py``): the API-key endpoint is
``wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent``
with the key in the ``x-goog-api-key`` header; an ephemeral token (``auth_tokens/...``) goes
to the ``v1alpha`` ``BidiGenerateContentConstrained`` method as ``Authorization: Token <token>``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ...exceptions import ConfigurationError
from ..base import ProviderConfig
from ..endpoint import check_connection_limits, check_endpoint, is_loopback_url

__all__ = [
    "GeminiConfig",
    "DEFAULT_URL",
    "EPHEMERAL_URL",
    "DEFAULT_MODEL",
    "INPUT_SAMPLE_RATE",
    "OUTPUT_SAMPLE_RATE",
    "EPHEMERAL_TOKEN_PREFIX",
]

_HOST = "wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage"
DEFAULT_URL = f"{_HOST}.v1beta.GenerativeService.BidiGenerateContent"
EPHEMERAL_URL = f"{_HOST}.v1alpha.GenerativeService.BidiGenerateContentConstrained"
DEFAULT_MODEL = "gemini-live-2.5-flash-preview"
EPHEMERAL_TOKEN_PREFIX = "auth_tokens/"  # nosec B105: the name prefix of a token, not a secret
#: Gemini Live takes PCM16 mono 16 kHz and answers with PCM16 mono 24 kHz
INPUT_SAMPLE_RATE = 16000
OUTPUT_SAMPLE_RATE = 24000


def function_declaration(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A neutral tool (``{"type": "function", "name", "description", "parameters"}``, the
    shape ``OpenAIConfig`` takes) as a Gemini ``functionDeclaration``; the JSON schema goes
    to ``parametersJsonSchema`` unchanged. Raises ConfigurationError for anything else."""
    if not isinstance(tool, Mapping):
        raise ConfigurationError(f"a tool must be a mapping, got {type(tool).__name__}")
    if tool.get("type", "function") != "function":
        raise ConfigurationError(f"only function tools are supported, got type {tool.get('type')!r}")
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigurationError("a function tool needs a non-empty name")
    unknown = set(tool) - {"type", "name", "description", "parameters"}
    if unknown:
        raise ConfigurationError(f"unknown function tool fields {sorted(unknown)} in tool {name!r}")
    declaration: dict[str, Any] = {"name": name}
    description = tool.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise ConfigurationError(f"tool {name!r}: description must be a str")
        declaration["description"] = description
    parameters = tool.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, Mapping):
            raise ConfigurationError(f"tool {name!r}: parameters must be a JSON schema object")
        declaration["parametersJsonSchema"] = dict(parameters)
    return declaration


@dataclass(frozen=True, slots=True, kw_only=True)
class GeminiConfig(ProviderConfig):
    """Settings of :class:`~voiceengine.providers.gemini.GeminiProvider`.

    ``url`` is the full WebSocket URL (default: Google's API-key endpoint; with an ephemeral
    token ``auth_tokens/...`` and the default URL, the ``v1alpha`` constrained method is
    used). Plain ``ws://`` is accepted only for loopback hosts (the fake server).

    Turn detection (``turn_detection``, the neutral setting): ``server_vad`` and
    ``semantic_vad`` both map to Gemini's automatic activity detection (Gemini has no
    semantic VAD) with ``silence_ms``/``prefix_ms`` and ``sensitivity`` (low/high) for the
    end and start of speech; ``None``/manual disables it (the app marks activity);
    ``interrupt_on_speech=False`` sends ``activityHandling: NO_INTERRUPTION``.
    ``transcription_model`` is ignored (Gemini has no choice of transcription model).

    Limits (Gemini: a connection lasts about 10 minutes and ends with ``goAway``; a session
    holds 15 minutes of audio without context-window compression):
    ``connection_limit_s`` (600) with ``recycle_margin_s`` (30) plans a resumption before
    the connection ends when no ``goAway`` came; ``session_limit_s`` (900; ``None`` when
    ``context_window_compression`` is on) bounds the session.

    ``goAway``: the reply in flight is played to its end on the old connection (input audio
    is held meanwhile), then the old connection is closed and the session resumed on a new
    one (docs/gemini.md, "Resumption"). ``go_away_margin_s`` (3): the old connection is
    closed at the latest this long before ``timeLeft`` runs out, cutting a reply still in
    flight; ``go_away_max_drain_s`` (30): the longest the reply is waited for, also when
    ``goAway`` gives no ``timeLeft`` (up to that much input audio is held on top of
    ``reconnect_audio_buffer_ms``).

    ``transparent_resumption`` (Vertex AI only: the Gemini Developer API refuses it) asks the
    service for ``lastConsumedClientMessageIndex``; input audio written but not yet in the
    state of the newest handle is then sent again on the resumed connection, so even an
    unexpected close loses none. Without it, audio sent after the service's last handle may
    be missing from a resumed session (it is counted as sent).

    Keepalive: Gemini's pongs have been seen to take 8-30 s (python-genai #2935 "1011
    keepalive ping timeout"), so the ping timeout defaults to 60 s, not websockets' 20 s.
    """

    url: str = DEFAULT_URL
    model: str = DEFAULT_MODEL
    voice: str | None = None
    language_code: str | None = None
    input_transcription: bool = True
    output_transcription: bool = True
    session_resumption: bool = True
    transparent_resumption: bool = False
    context_window_compression: bool = False
    compression_trigger_tokens: int | None = None
    compression_target_tokens: int | None = None
    max_size_bytes: int = 16 * 1024 * 1024
    max_queue_messages: int = 1024
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 60.0
    open_timeout_s: float = 10.0
    reconnect: bool = True
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0
    connection_limit_s: float = 600.0
    session_limit_s: float | None = 900.0
    recycle_margin_s: float = 30.0
    recycle: bool = True
    reconnect_audio_buffer_ms: int = 3000
    go_away_margin_s: float = 3.0
    go_away_max_drain_s: float = 30.0
    max_audio_delta_bytes: int = 1024 * 1024
    allow_insecure: bool = False

    def __post_init__(self) -> None:
        ProviderConfig.__post_init__(self)
        parts = check_endpoint(self.url, has_key=bool(self.key), allow_insecure=self.allow_insecure)
        if parts.query and "key=" in parts.query:
            raise ConfigurationError("do not put the API key in the url: give api_key (sent as x-goog-api-key)")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigurationError("model must be a non-empty str")
        if self.voice is not None and (not isinstance(self.voice, str) or not self.voice):
            raise ConfigurationError("voice must be a non-empty str or None")
        for tool in self.tools:
            function_declaration(tool)
        for name in ("compression_trigger_tokens", "compression_target_tokens"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 1):
                raise ConfigurationError(f"{name} must be an int >= 1 or None")
        if self.transparent_resumption and not self.session_resumption:
            raise ConfigurationError("transparent_resumption needs session_resumption=True")
        check_connection_limits(max_size_bytes=self.max_size_bytes, max_queue_messages=self.max_queue_messages,
                                backoff_initial_s=self.backoff_initial_s, backoff_max_s=self.backoff_max_s,
                                reconnect_audio_buffer_ms=self.reconnect_audio_buffer_ms)
        for name in ("ping_interval_s", "ping_timeout_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigurationError(f"{name} must be > 0 or None")
        if not self.open_timeout_s > 0:
            raise ConfigurationError("open_timeout_s must be > 0")
        if not self.connection_limit_s > 0:
            raise ConfigurationError("connection_limit_s must be > 0")
        if self.session_limit_s is not None and not self.session_limit_s > 0:
            raise ConfigurationError("session_limit_s must be > 0 or None")
        if not 0 <= self.recycle_margin_s < self.connection_limit_s:
            raise ConfigurationError("recycle_margin_s must be >= 0 and below connection_limit_s")
        if not self.go_away_margin_s >= 0 or not self.go_away_max_drain_s >= 0:
            raise ConfigurationError("go_away_margin_s and go_away_max_drain_s must be >= 0")
        if self.max_audio_delta_bytes < 2:
            raise ConfigurationError("max_audio_delta_bytes must be >= 2")

    # ------------------------------------------------------------ derived
    @property
    def ephemeral(self) -> bool:
        """The credential is an ephemeral token (``auth_tokens/...``), not an API key."""
        key = self.key
        return key is not None and key.startswith(EPHEMERAL_TOKEN_PREFIX)

    @property
    def effective_url(self) -> str:
        """The URL connected to: ``url``, or the constrained method for an ephemeral token
        when ``url`` was left at its default."""
        return EPHEMERAL_URL if self.ephemeral and self.url == DEFAULT_URL else self.url

    @property
    def effective_session_limit_s(self) -> float | None:
        """The session limit in force: ``None`` (unbounded) with context-window compression."""
        return None if self.context_window_compression else self.session_limit_s

    @property
    def model_name(self) -> str:
        """``models/<model>``, as the setup frame names it."""
        return self.model if self.model.startswith("models/") else f"models/{self.model}"

    @property
    def function_declarations(self) -> list[dict[str, Any]]:
        return [function_declaration(tool) for tool in self.tools]

    @property
    def is_loopback(self) -> bool:
        return is_loopback_url(self.url)

    def auth_headers(self) -> dict[str, str]:
        """The credential header, for the transport only (never logged: see ``secrets``)."""
        key = self.key
        if not key:
            return {}
        if self.ephemeral:
            return {"Authorization": f"Token {key}"}
        return {"x-goog-api-key": key}

    def replace(self, **changes: Any) -> "GeminiConfig":
        return dataclasses.replace(self, **changes)
