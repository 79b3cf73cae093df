"""OpenAI Live (``/v1/live/sessions``): config, wire codec, sans-I/O session, provider.

``OpenAILiveProvider`` is imported lazily so that ``import voiceengine.providers.openai_live``
(e.g. for :class:`OpenAILiveConfig`) does not import ``websockets``. See docs/openai_live.md
for the protocol facts and how reply ends and user speech are inferred.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import DEFAULT_BACKEND_MODEL, DEFAULT_MODEL, DEFAULT_URL, OpenAILiveConfig
from .session import PROVIDER_NAME, RESTORABLE_CLOSE_REASONS, LiveSession

if TYPE_CHECKING:
    from .provider import OpenAILiveProvider

__all__ = [
    "DEFAULT_BACKEND_MODEL",
    "DEFAULT_MODEL",
    "DEFAULT_URL",
    "LiveSession",
    "OpenAILiveConfig",
    "OpenAILiveProvider",
    "PROVIDER_NAME",
    "RESTORABLE_CLOSE_REASONS",
]


def __getattr__(name: str) -> Any:
    if name == "OpenAILiveProvider":
        from .provider import OpenAILiveProvider

        return OpenAILiveProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
