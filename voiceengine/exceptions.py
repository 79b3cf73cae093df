"""The exceptions voiceengine raises, one tree rooted at :class:`VoiceEngineError`.

::

    VoiceEngineError                      every error the library raises on purpose
     ├── ConfigurationError (ValueError)  a config value is out of range or inconsistent
     ├── AudioFormatError (ValueError)    a buffer is not valid PCM16 for the call
     │                                    (odd byte count, wrong rate/channels, big-endian)
     ├── InvalidState (RuntimeError)      the call does not fit the object's state
     │                                    (send before connect, use after close, ...)
     ├── LimitExceeded                    a bound was hit (message size, queue, buffer)
     └── ProviderError                    the provider failed; ``code``, ``retryable``,
          │                               ``fatal`` say what to do about it
          ├── ConnectionFailed            transport failure: handshake refused (with
          │                               ``status_code``), timeout, reset, closed
          └── ProtocolError               a protocol rule was broken; whose fault:
               ├── LocalProtocolError     we (or the app through raw access) sent
               │                          something the protocol forbids
               └── RemoteProtocolError    the server sent something malformed

Wrong *types* of arguments (a float64 array where PCM16 is expected, a str where a
buffer is expected) raise the builtin :class:`TypeError`, as Python code does.
Builtin ``ConnectionError`` is deliberately not shadowed.
"""

from __future__ import annotations

__all__ = [
    "VoiceEngineError",
    "ConfigurationError",
    "AudioFormatError",
    "InvalidState",
    "LimitExceeded",
    "ProviderError",
    "ConnectionFailed",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
]


class VoiceEngineError(Exception):
    """Base class of every error voiceengine raises on purpose."""


class ConfigurationError(VoiceEngineError, ValueError):
    """A configuration value is invalid or inconsistent."""


class AudioFormatError(VoiceEngineError, ValueError):
    """A buffer is not valid audio for the call (byte count, rate, channels, byte order)."""


class InvalidState(VoiceEngineError, RuntimeError):
    """The operation does not fit the current state (not connected, closed, ...)."""


class LimitExceeded(VoiceEngineError):
    """A configured bound was reached; the offending data was refused, nothing else lost."""

    def __init__(self, message: str, *, limit: int | None = None, size: int | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.size = size


class ProviderError(VoiceEngineError):
    """The provider reported or caused a failure.

    ``code`` is the provider's error code (e.g. ``"invalid_api_key"``) when known.
    ``retryable`` says whether retrying the same operation/connection may succeed;
    ``fatal`` means the session cannot continue and must not be retried.
    ``event_id`` is the id of the client event the error answers, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = False,
        fatal: bool = False,
        event_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.fatal = fatal
        self.event_id = event_id

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, code={self.code!r}, "
            f"retryable={self.retryable}, fatal={self.fatal})"
        )


class ConnectionFailed(ProviderError):
    """The transport failed: handshake refused, timed out, reset or closed."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = True,
        fatal: bool = False,
        status_code: int | None = None,
        close_code: int | None = None,
        event_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code, retryable=retryable, fatal=fatal, event_id=event_id)
        self.status_code = status_code
        self.close_code = close_code


class ProtocolError(ProviderError):
    """A protocol rule was broken. See the subclasses for whose fault it was."""


class LocalProtocolError(ProtocolError):
    """We (or the application, through raw access) broke the protocol."""


class RemoteProtocolError(ProtocolError):
    """The server sent something malformed or out of protocol."""
