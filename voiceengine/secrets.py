"""Holding secrets so they never reach logs, reprs, exceptions, events or pickles."""

from __future__ import annotations

import logging
import re
import threading
import weakref
from typing import Any

__all__ = ["Secret", "SecretScrubbingFilter", "install_scrubbing_filter"]

_MASK = "***"


class Secret:
    """A string that only :meth:`reveal` gives back.

    ``repr``/``str``/``format`` show ``Secret('***')``; pickling refuses, so a config
    holding a key cannot be written to disk or sent to another process by accident.
    Every live secret is registered with :class:`SecretScrubbingFilter` so that a log
    record that still contains it (e.g. a third-party library logging headers) is masked.
    """

    __slots__ = ("_value", "__weakref__")

    def __init__(self, value: "str | Secret") -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError(f"Secret value must be str, got {type(value).__name__}")
        self._value = value
        if value:
            _registry.add(self)

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')" if self._value else "Secret('')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> Any:
        raise TypeError("Secret values cannot be pickled")


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: "weakref.WeakSet[Secret]" = weakref.WeakSet()
        self._pattern: re.Pattern[str] | None = None

    def add(self, secret: Secret) -> None:
        with self._lock:
            self._secrets.add(secret)
            self._pattern = None

    def pattern(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None:
                values = sorted({s.reveal() for s in self._secrets if len(s.reveal()) >= 4}, key=len, reverse=True)
                if not values:
                    return None
                self._pattern = re.compile("|".join(re.escape(v) for v in values))
            return self._pattern


_registry = _Registry()


def scrub(text: str) -> str:
    """Mask every live secret in ``text``."""
    pattern = _registry.pattern()
    if pattern is None:
        return text
    return pattern.sub(_MASK, text)


class SecretScrubbingFilter(logging.Filter):
    """Masks live secrets (and ``Authorization`` header values) in a log record."""

    _AUTH = re.compile(r"(?i)(authorization['\"]?\s*[:=,]\s*['\"]?\s*(?:bearer|basic)\s+)([^\s'\",)]+)")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's business
            return True
        cleaned = self._AUTH.sub(lambda m: m.group(1) + _MASK, scrub(message))
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


_installed: set[str] = set()
_install_lock = threading.Lock()


def install_scrubbing_filter(*logger_names: str) -> None:
    """Attach one :class:`SecretScrubbingFilter` to each named logger (idempotent).

    Logger filters only see records logged on that very logger, not on its children, so
    the defaults name each logger websockets actually logs on.
    """
    names = logger_names or (
        "voiceengine", "websockets", "websockets.client", "websockets.server", "websockets.protocol",
    )
    with _install_lock:
        for name in names:
            if name in _installed:
                continue
            logging.getLogger(name).addFilter(SecretScrubbingFilter())
            _installed.add(name)
