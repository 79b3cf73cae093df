"""Gemini Live wire helpers for the fake server: key spellings, durations, mime types.

The Live API is proto3 JSON, whose parsers accept both the lowerCamelCase JSON name and
the original snake_case field name; google-genai writes ``setup`` in camelCase and later
frames with snake_case top-level keys. The fake server reads every frame through
:func:`camel_keys`, which spells every field the camelCase way, and writes camelCase.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

__all__ = [
    "OPAQUE_FIELDS",
    "FrameError",
    "camel",
    "camel_keys",
    "duration_text",
    "pcm_rate",
    "b64encode",
    "b64decode",
]

#: fields whose value is user data (a ``google.protobuf.Struct`` or a JSON schema whose
#: ``properties`` keys are user names): their keys are kept as written
OPAQUE_FIELDS = frozenset({"args", "response", "parameters", "parametersJsonSchema", "responseJsonSchema",
                           "labels", "properties"})

_SNAKE = re.compile(r"_([a-z0-9])")


class FrameError(ValueError):
    """A client frame the server cannot accept; ``close_code`` is what the server closes with."""

    def __init__(self, message: str, close_code: int = 1007) -> None:
        super().__init__(message)
        self.close_code = close_code


def camel(name: str) -> str:
    """``realtime_input`` -> ``realtimeInput``; camelCase names are returned unchanged."""
    return _SNAKE.sub(lambda m: m.group(1).upper(), name)


def camel_keys(value: Any) -> Any:
    """``value`` with every dict key spelled in camelCase, at every level, except inside
    :data:`OPAQUE_FIELDS`. Two spellings of one field in one object are a client error."""
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise FrameError("object keys must be strings")
        name = camel(key)
        if name in out:
            raise FrameError(f"field {name!r} given twice (as {key!r} and in another spelling)")
        out[name] = item if name in OPAQUE_FIELDS else camel_keys(item)
    return out


def duration_text(seconds: float) -> str:
    """A ``google.protobuf.Duration`` in JSON: ``50s``, ``1.500s``."""
    if seconds < 0:
        raise ValueError("a duration is never negative here")
    whole = int(seconds)
    frac = round((seconds - whole) * 1000)
    if frac == 1000:
        whole, frac = whole + 1, 0
    return f"{whole}s" if frac == 0 else f"{whole}.{frac:03d}s"


def pcm_rate(mime_type: str) -> int:
    """The sample rate of an ``audio/pcm;rate=16000`` mime type (16000 when not given)."""
    kind, _, params = mime_type.partition(";")
    if kind.strip().lower() not in ("audio/pcm", "audio/l16"):
        raise FrameError(f"unsupported audio mime type {mime_type!r}: send audio/pcm;rate=16000")
    rate = 16000
    for param in params.split(";"):
        name, _, val = param.partition("=")
        if name.strip().lower() == "rate":
            try:
                rate = int(val.strip())
            except ValueError:
                raise FrameError(f"bad rate in mime type {mime_type!r}") from None
    if rate not in (8000, 16000, 24000, 48000):
        raise FrameError(f"unsupported input sample rate {rate}")
    return rate


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: Any) -> bytes:
    """Standard or URL-safe base64 (proto3 JSON accepts both) -> bytes."""
    if not isinstance(text, str):
        raise FrameError("bytes fields must be base64 strings")
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FrameError("invalid base64 in a bytes field") from None
