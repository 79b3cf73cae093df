"""Holding secrets so they never reach logs, reprs, exceptions, events or pickles."""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NoReturn

__all__ = [
    "Secret",
    "SecretHeaders",
    "SecretKeys",
    "SecretScrubbingFilter",
    "install_scrubbing_filter",
    "is_credential_name",
    "protect_options",
]

_MASK = "***"


class Secret:
    """A string that only :meth:`reveal` gives back.

    ``repr``/``str``/``format`` show ``Secret('***')``; pickling refuses, so a config
    holding a key cannot be written to disk or sent to another process by accident.
    Every live secret is registered with :class:`SecretScrubbingFilter` so that a log
    record that still contains it (e.g. a third-party library logging headers) is masked;
    creating one attaches that filter to every ``voiceengine.*``/``websockets.*`` logger
    (see :func:`install_scrubbing_filter`).
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
            install_scrubbing_filter()

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


# Parts of a header (or field) name that say its value is a credential: ``X-Api-Key``,
# ``Authorization``, ``Proxy-Authorization``, ``X-Auth-Token``, ``Cookie``, ``X-Client-Secret``...
_CREDENTIAL_NAME = re.compile(r"(?i)key|token|secret|auth|passw|cookie|credential|signature|bearer|jwt")
# A value that announces itself as one, whatever the header is called.
_CREDENTIAL_VALUE = re.compile(r"(?i)^\s*(bearer|basic|token|digest)\s+\S")


def is_credential_name(name: str) -> bool:
    """Whether a header or field called ``name`` holds a credential (by its name alone)."""
    return bool(_CREDENTIAL_NAME.search(name))


def _refuse_pickle(kind: str) -> NoReturn:
    raise TypeError(f"{kind} holding credentials cannot be pickled")


class SecretHeaders(Mapping[str, str]):
    """Read-only HTTP headers whose credential values never show in a repr or a pickle.

    A value counts as a credential when its name does (:func:`is_credential_name`:
    ``X-Api-Key``, ``Authorization``, ``Cookie``, ...) or when it reads like one
    (``Bearer ...``, ``Basic ...``). Those values are kept as :class:`Secret` (so log
    records that still contain them are scrubbed) and shown as ``'***'`` by ``repr``;
    indexing and iteration give the plain strings, for the transport that sends them.
    Pickling refuses while a credential is held, like :class:`Secret`; copying returns
    the same (immutable) object. Names and values must be ``str``; anything else is a
    :class:`TypeError` whose message names the header, never its value.
    """

    __slots__ = ("_values", "_secret_names")

    def __init__(self, headers: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        values: dict[str, str | Secret] = {}
        secret_names: set[str] = set()
        for name, value in pairs:
            if not isinstance(name, str):
                raise TypeError(f"header names must be str, got {type(name).__name__}")
            if isinstance(value, Secret):
                value = value.reveal()
            if not isinstance(value, str):
                raise TypeError(f"header {name!r} must have a str value, got {type(value).__name__}")
            if is_credential_name(name) or _CREDENTIAL_VALUE.match(value):
                values[name] = Secret(value)
                secret_names.add(name)
            else:
                values[name] = value
        self._values = values
        self._secret_names = frozenset(secret_names)

    @property
    def secret_names(self) -> frozenset[str]:
        """The names whose values are masked."""
        return self._secret_names

    def __getitem__(self, name: str) -> str:
        value = self._values[name]
        return value.reveal() if isinstance(value, Secret) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name!r}: {_MASK!r}" if name in self._secret_names else f"{name!r}: {value!r}"
                          for name, value in self._values.items())
        return f"SecretHeaders({{{shown}}})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        if self._secret_names:
            _refuse_pickle("SecretHeaders")
        return (SecretHeaders, (dict(self.items()),))

    def __copy__(self) -> "SecretHeaders":
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> "SecretHeaders":
        return self


class SecretKeys(tuple[str, ...]):
    """A tuple of keys (e.g. the API keys a test server accepts) that never shows them.

    It is a plain ``tuple`` of ``str`` for membership tests and indexing, but ``repr``
    shows only how many keys it holds, each key is registered for log scrubbing (as a
    :class:`Secret`), and pickling refuses.
    """

    _held: tuple[Secret, ...]

    def __new__(cls, keys: Iterable[str]) -> "SecretKeys":
        values = tuple(k.reveal() if isinstance(k, Secret) else k for k in keys)
        for value in values:
            if not isinstance(value, str):
                raise TypeError(f"keys must be str, got {type(value).__name__}")
        self = super().__new__(cls, values)
        self._held = tuple(Secret(v) for v in values)  # registered for scrubbing while we live
        return self

    def __repr__(self) -> str:
        return f"SecretKeys(<{len(self)} masked>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        _refuse_pickle("SecretKeys")

    def __reduce_ex__(self, protocol: Any) -> Any:
        _refuse_pickle("SecretKeys")

    def __copy__(self) -> "SecretKeys":
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> "SecretKeys":
        return self


def protect_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of free-form provider options with the credentials they may carry masked.

    ``extra_headers`` becomes :class:`SecretHeaders` and a ``str`` ``api_key`` a
    :class:`Secret` (both accepted by the provider configs they are handed to); every other
    option is kept as it is.
    """
    protected = dict(options)
    headers = protected.get("extra_headers")
    if isinstance(headers, Mapping) and not isinstance(headers, SecretHeaders):
        protected["extra_headers"] = SecretHeaders(headers)
    if isinstance(protected.get("api_key"), str):
        protected["api_key"] = Secret(protected["api_key"])
    return protected


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


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class SecretScrubbingFilter(logging.Filter):
    """Masks live secrets (and ``Authorization``/``api-key`` header values) in a log record.

    Covers the message (then formatted, ``args`` dropped), the traceback of ``exc_info``
    (formatted into ``exc_text``; ``exc_info`` is dropped when it had to be masked, since
    the exception object itself still holds the secret), ``stack_info`` and string
    ``extra=`` attributes (what a JSON formatter would dump).
    """

    _AUTH = re.compile(
        r"(?i)((?:authorization['\"]?\s*[:=,]\s*['\"]?\s*(?:bearer|basic)\s+)"
        r"|(?:api-key['\"]?\s*[:=,]\s*['\"]?\s*))([^\s'\",)]+)"
    )

    def _clean(self, text: str) -> str:
        return self._AUTH.sub(lambda m: m.group(1) + _MASK, scrub(text))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's business
            return True
        cleaned = self._clean(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_info or record.exc_text:
            self._clean_exception(record)
        if record.stack_info:
            record.stack_info = self._clean(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _RECORD_FIELDS and isinstance(value, str):
                masked = self._clean(value)
                if masked != value:
                    setattr(record, name, masked)
        return True

    def _clean_exception(self, record: logging.LogRecord) -> None:
        text = record.exc_text
        if not text and record.exc_info and record.exc_info[0] is not None:
            # What a handler's Formatter would produce; only kept if something is masked,
            # so a custom formatException still applies to clean records.
            text = logging.Formatter().formatException(record.exc_info)
        if not text:
            return
        masked = self._clean(text)
        if masked != text:
            record.exc_text = masked
            record.exc_info = None


_installed: set[str] = set()
_install_lock = threading.Lock()
_NAMESPACES = ("voiceengine", "websockets")
_scanned_loggers = -1


def _has_scrubber(logger: logging.Logger) -> bool:
    return any(isinstance(f, SecretScrubbingFilter) for f in logger.filters)


def install_scrubbing_filter(*logger_names: str) -> None:
    """Attach one :class:`SecretScrubbingFilter` to each named logger (idempotent).

    Logger filters only see records logged on that very logger, not on its children, so
    without names this attaches to ``voiceengine``, ``websockets`` and every existing
    logger below them. :class:`Secret` calls it whenever a secret is created, so every
    ``voiceengine.*``/``websockets.*`` logger that exists by the time a key is wrapped
    (all of them once the package is imported) scrubs it.
    """
    global _scanned_loggers
    with _install_lock:
        if logger_names:
            names = list(logger_names)
        else:
            loggers = logging.root.manager.loggerDict
            if len(loggers) == _scanned_loggers:  # nothing new since the last scan
                return
            _scanned_loggers = len(loggers)
            names = list(_NAMESPACES) + ["websockets.client", "websockets.server", "websockets.protocol"]
            names += [n for n in list(loggers) if n.startswith(tuple(ns + "." for ns in _NAMESPACES))]
        for name in names:
            if name in _installed:
                continue
            logger = logging.getLogger(name)
            if not _has_scrubber(logger):
                logger.addFilter(SecretScrubbingFilter())
            _installed.add(name)
