"""Front doors: phone calls (Twilio Media Streams), the browser console page, ``serve``.

::

    from voiceengine import VoiceEngineConfig
    from voiceengine.transports import CallHost, EngineFactory, ServeConfig, serve

    host = CallHost(EngineFactory(provider="openai", config=VoiceEngineConfig(instructions="Be brief.")))
    asyncio.run(serve(host, ServeConfig(port=8080)))

:class:`TwilioMediaStreamHandler` and :class:`BrowserHandler` are websockets connection
handlers: use them inside your own server as well. See docs/deploy.md.
"""

from .browser import BrowserHandler, BrowserSink
from .calls import (
    BadFrame,
    Call,
    CallHost,
    CallInfo,
    CallObserver,
    CallRefused,
    CloseCode,
    EngineFactory,
    ListenerPosition,
    TransportKind,
)
from .server import ServeConfig, VoiceServer, serve
from .twilio import TwilioMediaStreamHandler, TwilioSink

__all__ = [
    "BadFrame",
    "BrowserHandler",
    "BrowserSink",
    "Call",
    "CallHost",
    "CallInfo",
    "CallObserver",
    "CallRefused",
    "CloseCode",
    "EngineFactory",
    "ListenerPosition",
    "ServeConfig",
    "TransportKind",
    "TwilioMediaStreamHandler",
    "TwilioSink",
    "VoiceServer",
    "serve",
]
