"""A local fake Gemini Live server with fault injection, for your own tests.

::

    from voiceengine.testing import FakeGeminiLiveServer

    async with FakeGeminiLiveServer(tls=True) as server:
        ...  # server.url + server.auth_headers, or server.base_url + server.ssl_context

See ``docs/gemini.md``.
"""

from .config import FakeGeminiConfig, GeminiReplyContext, ToolCallScript
from .server import FakeGeminiLiveServer, serve_gemini, serve_gemini_async
from .session import FakeGeminiSession, HandleStore

__all__ = [
    "FakeGeminiConfig",
    "FakeGeminiLiveServer",
    "FakeGeminiSession",
    "GeminiReplyContext",
    "HandleStore",
    "ToolCallScript",
    "serve_gemini",
    "serve_gemini_async",
]
