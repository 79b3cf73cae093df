"""The Gemini Live provider: its config, wire codec and sans-I/O session."""

from __future__ import annotations

from .config import GeminiConfig
from .session import GeminiSession

__all__ = ["GeminiConfig", "GeminiSession"]
