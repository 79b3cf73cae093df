"""OpenAI Live (``/v1/live/sessions``): config, wire codec and sans-I/O session.

See docs/openai_live.md for the protocol facts and how reply ends and user speech are inferred.
"""

from .config import DEFAULT_BACKEND_MODEL, DEFAULT_MODEL, DEFAULT_URL, OpenAILiveConfig
from .session import PROVIDER_NAME, RESTORABLE_CLOSE_REASONS, LiveSession

__all__ = [
    "DEFAULT_BACKEND_MODEL",
    "DEFAULT_MODEL",
    "DEFAULT_URL",
    "LiveSession",
    "OpenAILiveConfig",
    "PROVIDER_NAME",
    "RESTORABLE_CLOSE_REASONS",
]
