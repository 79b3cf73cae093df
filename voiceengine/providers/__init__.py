"""Providers: the contract, the registry, and the built-in providers."""

from .base import BaseProvider, ProviderConfig
from .registry import available, create, register
from .types import (
    AudioAccounting,
    AudioEncoding,
    AudioFormat,
    ConnectionChange,
    ConnectionState,
    ErrorInfo,
    EventType,
    FunctionCall,
    InterruptResult,
    MessageType,
    ProviderCapabilities,
    ProviderEvent,
    ReplaySource,
    ResponseInfo,
)

__all__ = [
    "BaseProvider", "ProviderConfig", "available", "create", "register",
    "AudioEncoding", "AudioFormat", "ConnectionChange", "ConnectionState", "ErrorInfo",
    "EventType", "FunctionCall", "InterruptResult", "MessageType", "ProviderCapabilities",
    "ProviderEvent", "ResponseInfo", "AudioAccounting", "ReplaySource",
]
