"""The Gemini Live provider: its config, wire codec, sans-I/O session, transport and the
binding to the provider runtime.

``GeminiProvider`` is imported on first use so that ``import voiceengine.providers.gemini``
(e.g. for :class:`GeminiConfig`) does not import ``websockets``.
"""

from __future__ import annotations

from typing import Any

from .config import GeminiConfig
from .session import GeminiSession

# GeminiProvider is reached through __getattr__ (lazily), so it is not listed here
__all__ = ["GeminiConfig", "GeminiSession"]


def __getattr__(name: str) -> Any:
    if name == "GeminiProvider":
        from .provider import GeminiProvider

        return GeminiProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
