"""The OpenAI Realtime (GA) provider: sans-I/O session + asyncio/websockets shell.

``OpenAIProvider`` is imported lazily so that ``import voiceengine.providers.openai``
(e.g. for :class:`OpenAIConfig`) does not import ``websockets``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import OpenAIConfig

if TYPE_CHECKING:
    from .provider import OpenAIProvider

__all__ = ["OpenAIProvider", "OpenAIConfig"]


def __getattr__(name: str) -> Any:
    if name == "OpenAIProvider":
        from .provider import OpenAIProvider

        return OpenAIProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
