"""voiceengine: low-latency, interruptible voice conversations with realtime AI providers.

Start with :class:`VoiceEngine` (see README.md and docs/engine.md). The audio core lives in
:mod:`voiceengine.audio`, providers in :mod:`voiceengine.providers`, the fake Realtime
server for tests in :mod:`voiceengine.testing`.
"""

from typing import TYPE_CHECKING

from .audio import (
    AudioDeviceError,
    Chunker,
    Microphone,
    Resampler,
    RingBuffer,
    Speaker,
    WavSink,
    WavSource,
    resample,
)
from .engine import Transcript, VoiceEngine, VoiceEngineConfig
from .events import EventBus, EventStream, Subscription
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
from .injection import ContextInjector, ContextItem, InjectionMode, InjectionRecord, InjectionTiming
from .metrics import EngineMetrics, TurnMetrics
from .providers import (
    AudioEncoding,
    AudioFormat,
    BaseProvider,
    ConnectionChange,
    ConnectionState,
    ErrorInfo,
    EventType,
    FunctionCall,
    InterruptResult,
    MessageType,
    ProviderCapabilities,
    ProviderConfig,
    ProviderEvent,
    ResponseInfo,
)
from .providers.mock import MockConfig, MockProvider
from .providers.gemini import GeminiConfig
from .providers.openai import OpenAIConfig
from .providers.openai_live import OpenAILiveConfig

if TYPE_CHECKING:
    # Loaded on first use by __getattr__ below (they import websockets); imported here only
    # so that type checkers see the classes rather than ``object``. Not a cycle: the
    # import-graph test counts these edges too.
    from .providers.gemini.provider import GeminiProvider
    from .providers.openai.provider import OpenAIProvider
    from .providers.openai_live.provider import OpenAILiveProvider
from .secrets import Secret
from .state import ConversationItem, ConversationSnapshot, ConversationState, Turn

__version__ = "0.1.0"

__all__ = [
    # engine
    "VoiceEngine", "VoiceEngineConfig", "Transcript", "EngineMetrics", "TurnMetrics",
    "EventBus", "EventStream", "Subscription",
    "ConversationState", "ConversationItem", "ConversationSnapshot", "Turn",
    "ContextInjector", "ContextItem", "InjectionMode", "InjectionRecord", "InjectionTiming",
    # audio
    "Resampler", "resample", "Chunker", "RingBuffer", "WavSource", "WavSink", "Microphone",
    "Speaker", "AudioDeviceError",
    # providers
    "BaseProvider", "ProviderConfig", "ProviderEvent", "ProviderCapabilities", "EventType",
    "MessageType", "ConnectionState", "ConnectionChange", "AudioEncoding", "AudioFormat",
    "ErrorInfo", "FunctionCall", "InterruptResult", "ResponseInfo",
    "MockProvider", "MockConfig", "OpenAIProvider", "OpenAIConfig", "OpenAILiveProvider", "OpenAILiveConfig",
    "GeminiProvider", "GeminiConfig",
    "Secret",
    # errors
    "VoiceEngineError", "ConfigurationError", "AudioFormatError", "InvalidState", "LimitExceeded",
    "ProviderError", "ConnectionFailed", "ProtocolError", "LocalProtocolError", "RemoteProtocolError",
    "__version__",
]


def __getattr__(name: str) -> object:
    # The providers import websockets; keep `import voiceengine` light until it is used.
    if name == "OpenAIProvider":
        from .providers.openai import OpenAIProvider as provider

        return provider
    if name == "OpenAILiveProvider":
        from .providers.openai_live.provider import OpenAILiveProvider as live_provider

        return live_provider
    if name == "GeminiProvider":
        from .providers.gemini import GeminiProvider as gemini

        return gemini
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# Scrub keys from every voiceengine.* / websockets.* logger that importing created, even
# before the first Secret exists (Secret re-scans when it is created).
from .secrets import install_scrubbing_filter as _install_scrubbing_filter  # noqa: E402

_install_scrubbing_filter()
