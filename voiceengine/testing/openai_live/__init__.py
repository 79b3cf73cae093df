"""A local fake OpenAI Live (``/v1/live/sessions``) server with fault injection, for tests.

::

    from voiceengine.testing import FakeOpenAILiveServer

    async with FakeOpenAILiveServer() as server:
        ...  # server.url, server.base_url, server.websocket_base_url

See ``docs/openai_live.md``.
"""

from .config import FakeOpenAILiveConfig, LiveReplyContext, default_live_reply, default_live_transcript
from .server import (
    LIVE_DELTA_TYPES,
    SUPPORTED_FAULTS,
    FakeOpenAILiveServer,
    serve_openai_live,
    serve_openai_live_async,
)
from .session import CLOSE_REASONS, FakeLiveSession, LiveClientError

__all__ = [
    "CLOSE_REASONS",
    "FakeLiveSession",
    "FakeOpenAILiveConfig",
    "FakeOpenAILiveServer",
    "LIVE_DELTA_TYPES",
    "LiveClientError",
    "LiveReplyContext",
    "SUPPORTED_FAULTS",
    "default_live_reply",
    "default_live_transcript",
    "serve_openai_live",
    "serve_openai_live_async",
]
