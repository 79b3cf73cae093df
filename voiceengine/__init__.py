"""voiceengine: low-latency, interruptible voice conversations with realtime AI providers."""

from .exceptions import (
    AudioFormatError,
    ConfigurationError,
    ConnectionFailed,
    InvalidState,
    LimitExceeded,
    LocalProtocolError,
    ProtocolError,
    ProviderError,
    RemoteProtocolError,
    VoiceEngineError,
)
from .providers import (
    AudioFormat,
    BaseProvider,
    ConnectionState,
    EventType,
    MessageType,
    ProviderCapabilities,
    ProviderConfig,
    ProviderEvent,
)
from .secrets import Secret

__version__ = "0.1.0"

__all__ = [
    "AudioFormatError", "ConfigurationError", "ConnectionFailed", "InvalidState", "LimitExceeded",
    "LocalProtocolError", "ProtocolError", "ProviderError", "RemoteProtocolError", "VoiceEngineError",
    "AudioFormat", "BaseProvider", "ConnectionState", "EventType", "MessageType",
    "ProviderCapabilities", "ProviderConfig", "ProviderEvent", "Secret", "__version__",
]
