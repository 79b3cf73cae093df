"""Classification of OpenAI Realtime error codes.

The server reports failures as ``error`` events (``error.code``, ``error.type``,
``error.message``, ``error.event_id`` = the client event it answers). What to do about
one depends on the code, so the decision lives in one table here instead of being
scattered over the provider:

- fatal: the account or key is unusable; never retry, never reconnect.
- benign: an expected race of a correct client (cancelling a response the server just
  finished, committing an empty buffer, a response.create racing a server-VAD response);
  still emitted as ERROR (``benign=True``) so nothing is silently dropped.
- retryable: a transient server-side failure; retrying/reconnecting may succeed.
- session_expired: the session hit its time limit (60 min; Azure 30); the connection
  closes next (1001) and a *new* session is needed: retryable, not fatal.
"""

from __future__ import annotations

import enum
from typing import Any, Mapping

from ...exceptions import LocalProtocolError, ProviderError, RemoteProtocolError
from ..types import ErrorInfo

__all__ = [
    "ErrorClass",
    "FATAL_CODES",
    "BENIGN_CODES",
    "RETRYABLE_CODES",
    "SESSION_EXPIRED",
    "MALFORMED_EVENT",
    "classify",
    "error_info",
    "malformed_info",
    "to_exception",
]

SESSION_EXPIRED = "session_expired"
#: code of the ERROR events this package makes for malformed server messages
MALFORMED_EVENT = "malformed_event"

FATAL_CODES = frozenset(
    {"invalid_api_key", "insufficient_quota", "account_deactivated", "billing_hard_limit_reached"}
)
BENIGN_CODES = frozenset(
    {"response_cancel_not_active", "conversation_already_has_active_response", "input_audio_buffer_commit_empty"}
)
RETRYABLE_CODES = frozenset(
    {
        "server_error",
        "internal_error",
        "rate_limit_exceeded",
        "service_unavailable",
        "overloaded",
        "server_overloaded",
        "timeout",
        "upstream_error",
    }
)
# error.type values that mean "transient, server side" even with an unknown code
_RETRYABLE_TYPES = frozenset({"server_error", "rate_limit_error", "service_unavailable_error"})


class ErrorClass(str, enum.Enum):
    FATAL = "fatal"
    BENIGN = "benign"
    RETRYABLE = "retryable"
    SESSION_EXPIRED = "session_expired"
    CLIENT = "client"  # our request was invalid (invalid_request_error & co): a local bug
    MALFORMED = "malformed"  # the server sent something we cannot decode
    UNKNOWN = "unknown"


def classify(code: str | None, error_type: str | None = None) -> ErrorClass:
    """Classify an error by its ``code`` (and ``type`` when the code says nothing)."""
    if code in FATAL_CODES:
        return ErrorClass.FATAL
    if code in BENIGN_CODES:
        return ErrorClass.BENIGN
    if code == SESSION_EXPIRED:
        return ErrorClass.SESSION_EXPIRED
    if code == MALFORMED_EVENT:
        return ErrorClass.MALFORMED
    if code in RETRYABLE_CODES or error_type in _RETRYABLE_TYPES:
        return ErrorClass.RETRYABLE
    if error_type == "invalid_request_error":
        return ErrorClass.CLIENT
    return ErrorClass.UNKNOWN


def _opt_str(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) else None


def error_info(
    payload: Mapping[str, Any], *, event_id: str | None = None, request_type: str | None = None
) -> ErrorInfo:
    """An :class:`ErrorInfo` for a server ``error`` object (``message``/``code``/``type``...).

    Ill-typed optional members are ignored (an error about an error helps nobody);
    ``event_id`` overrides the payload's when given.
    """
    code = _opt_str(payload, "code")
    error_type = _opt_str(payload, "type")
    message = _opt_str(payload, "message") or (code or "unknown error")
    kind = classify(code, error_type)
    return ErrorInfo(
        message=message,
        code=code,
        type=error_type,
        param=_opt_str(payload, "param"),
        event_id=event_id if event_id is not None else _opt_str(payload, "event_id"),
        request_type=request_type,
        retryable=kind in (ErrorClass.RETRYABLE, ErrorClass.SESSION_EXPIRED),
        fatal=kind is ErrorClass.FATAL,
        benign=kind is ErrorClass.BENIGN,
        remote=True,
    )


def malformed_info(message: str) -> ErrorInfo:
    """The :class:`ErrorInfo` of a server message we could not decode (remote's fault)."""
    return ErrorInfo(message=message, code=MALFORMED_EVENT, type="remote_protocol_error", remote=True)


def to_exception(info: ErrorInfo) -> ProviderError:
    """The exception matching ``info`` (for a shell that raises instead of emitting)."""
    kind = classify(info.code, info.type)
    if kind is ErrorClass.MALFORMED:
        return RemoteProtocolError(info.message, code=info.code, event_id=info.event_id)
    if kind is ErrorClass.CLIENT:
        return LocalProtocolError(info.message, code=info.code, event_id=info.event_id)
    return ProviderError(
        info.message, code=info.code, retryable=info.retryable, fatal=info.fatal, event_id=info.event_id
    )
