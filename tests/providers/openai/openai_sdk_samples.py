"""Minimal valid server events built from the openai SDK's pydantic models (test helper).

Not a test module (no ``test_`` prefix): imported by the protocol/session tests.
"""

from __future__ import annotations

import base64
import enum
import inspect
import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel

try:
    from typing_extensions import Literal as _TELiteral
except ImportError:  # pragma: no cover
    _TELiteral = typing.Literal

PCM = bytes(range(0, 200, 2)) * 2  # 200 bytes, even, not silence

_OVERRIDES: dict[str, dict[str, Any]] = {
    # values a generic "x" would not satisfy semantically
    "response.output_audio.delta": {"delta": base64.b64encode(PCM).decode()},
    "response.audio.delta": {"delta": base64.b64encode(PCM).decode()},
    "error": {"error": {"type": "invalid_request_error", "code": "x", "message": "m"}},
}


def _value(annotation: Any, name: str, depth: int) -> Any:
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is typing.Annotated:
        return _value(args[0], name, depth)
    if origin in (typing.Literal, _TELiteral):
        return args[0]
    if origin is typing.Union or (origin is not None and str(origin) == "types.UnionType"):
        members = [a for a in args if a is not type(None)]
        # prefer a model (gives realistic objects), else the first member
        for member in members:
            if inspect.isclass(member) and issubclass(member, BaseModel):
                return build(member, depth + 1)
        return _value(members[0], name, depth)
    if origin in (list, typing.List):
        return []
    if origin in (dict, typing.Dict):
        return {}
    if inspect.isclass(annotation):
        if issubclass(annotation, BaseModel):
            return build(annotation, depth + 1)
        if issubclass(annotation, bool):
            return False
        if issubclass(annotation, int):
            return 1
        if issubclass(annotation, float):
            return 0.5
        if issubclass(annotation, str):
            return f"{name}_1"
        if issubclass(annotation, enum.Enum):
            return next(iter(annotation)).value
    if annotation is object or annotation is Any:
        return {}
    return f"{name}_1"


def build(model: type[BaseModel], depth: int = 0) -> dict[str, Any]:
    """A dict with every required field of ``model`` filled with a plausible value."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        if field.is_required() or name in ("type", "id", "item_id", "response_id"):
            out[key] = _value(field.annotation, name, depth)
    return out


def server_event_models(union: Any) -> list[type[BaseModel]]:
    return list(get_args(get_args(union)[0]))


def wire_type(model: type[BaseModel]) -> str:
    return get_args(model.model_fields["type"].annotation)[0]


def sample(model: type[BaseModel]) -> dict[str, Any]:
    """A minimal *valid* instance of ``model`` as a wire dict (validated by pydantic)."""
    data = build(model)
    data.update(_OVERRIDES.get(data["type"], {}))
    model.model_validate(data)  # the sample itself must be valid per the SDK
    return data


__all__ = ["PCM", "build", "sample", "server_event_models", "wire_type"]
