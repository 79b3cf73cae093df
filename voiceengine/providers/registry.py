"""Explicit provider registry: ``create("openai" | "openai-live" | "gemini" | "mock", config)``.

Only voiceengine's own providers are registered, lazily, by import path; third-party
providers call :func:`register` themselves. Importing a module never registers anything.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any, Callable

from ..exceptions import ConfigurationError
from .base import BaseProvider, ProviderConfig

__all__ = ["register", "create", "available", "config_class"]

ProviderFactory = Callable[[Any], BaseProvider]

_lock = threading.Lock()
_factories: dict[str, ProviderFactory | str] = {
    "openai": "voiceengine.providers.openai:OpenAIProvider",
    "openai-live": "voiceengine.providers.openai_live.provider:OpenAILiveProvider",
    "gemini": "voiceengine.providers.gemini:GeminiProvider",
    "mock": "voiceengine.providers.mock:MockProvider",
}


def register(name: str, factory: ProviderFactory, *, replace: bool = False) -> None:
    """Register ``factory(config) -> BaseProvider`` under ``name``."""
    if not name or not isinstance(name, str):
        raise ConfigurationError("provider name must be a non-empty str")
    if not callable(factory):
        raise TypeError("factory must be callable")
    with _lock:
        if name in _factories and not replace:
            raise ConfigurationError(f"provider {name!r} is already registered (pass replace=True)")
        _factories[name] = factory


def available() -> list[str]:
    with _lock:
        return sorted(_factories)


def _resolve(name: str) -> ProviderFactory:
    with _lock:
        factory = _factories.get(name)
    if factory is None:
        raise ConfigurationError(f"unknown provider {name!r}; available: {', '.join(available())}")
    if isinstance(factory, str):
        module_name, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
    return factory


def config_class(name: str) -> type[ProviderConfig] | None:
    """The config class of the provider registered as ``name`` (None for a factory that
    declares none). Raises :class:`ConfigurationError` for an unknown name."""
    cls = getattr(_resolve(name), "config_class", None)
    return cls if isinstance(cls, type) and issubclass(cls, ProviderConfig) else None


def create(name: str, config: ProviderConfig | None = None, **config_fields: Any) -> BaseProvider:
    """Build the provider registered as ``name``.

    With ``config=None`` the provider's own config class is built from ``config_fields``.
    """
    factory = _resolve(name)
    if config is None:
        config_cls = getattr(factory, "config_class", None)
        if config_cls is None:
            raise ConfigurationError(f"provider {name!r} needs an explicit config")
        config = config_cls(**config_fields)
    elif config_fields:
        raise ConfigurationError("pass either a config or config fields, not both")
    return factory(config)
