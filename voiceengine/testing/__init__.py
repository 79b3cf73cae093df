"""Local fake servers with fault injection, for your own tests: OpenAI Realtime (GA)
(:class:`FakeRealtimeServer`) and OpenAI Live (:class:`FakeOpenAILiveServer`, see
``docs/openai_live.md``).

::

    from voiceengine.testing import FakeRealtimeServer, FakeServerConfig, Fault, FaultKind, Trigger

    async with FakeRealtimeServer(FakeServerConfig(responses=["Hi there."])) as server:
        ...  # connect to server.url with server.auth_headers

See ``docs/fake_server.md``.
"""

from .audio import SynthParams, synthesize
from .config import (
    AuthFailureMode,
    FakeServerConfig,
    FunctionCallScript,
    ResponseContext,
    ScriptedResponse,
)
from .connection import FakeConnection
from .faults import Fault, FaultKind, Trigger
from .openai_live import FakeOpenAILiveConfig, FakeOpenAILiveServer
from .gemini import FakeGeminiConfig, FakeGeminiLiveServer
from .server import FakeRealtimeServer, serve, serve_async
from .session import FakeSession
from .vad import EnergyVad

__all__ = [
    "AuthFailureMode",
    "EnergyVad",
    "FakeConnection",
    "FakeOpenAILiveConfig",
    "FakeOpenAILiveServer",
    "FakeGeminiConfig",
    "FakeGeminiLiveServer",
    "FakeRealtimeServer",
    "FakeServerConfig",
    "FakeSession",
    "Fault",
    "FaultKind",
    "FunctionCallScript",
    "ResponseContext",
    "ScriptedResponse",
    "SynthParams",
    "Trigger",
    "serve",
    "serve_async",
    "synthesize",
]
