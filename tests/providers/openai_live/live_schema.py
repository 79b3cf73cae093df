"""Strict checks against openai-python's Live types: validate, then refuse unknown keys.

openai-python's models accept extra keys (``extra="allow"``) and keep them in
``__pydantic_extra__``; a check that only validates would miss a misspelt field. These
helpers walk the validated model and fail on any extra key, at any depth.
"""

from __future__ import annotations

from typing import Any, Mapping

import pydantic
import pytest

live = pytest.importorskip("openai.types.live")
responses = pytest.importorskip("openai.types.responses")

SERVER = pydantic.TypeAdapter(live.ServerEvent)
CLIENT = pydantic.TypeAdapter(live.ClientEvent)
STREAM = pydantic.TypeAdapter(responses.ResponseStreamEvent)


def unknown_keys(value: Any, path: str = "$") -> list[str]:
    """Paths of keys the models did not declare, anywhere under ``value``."""
    found: list[str] = []
    if isinstance(value, pydantic.BaseModel):
        extra = value.__pydantic_extra__ or {}
        found += [f"{path}.{k}" for k in extra]
        for name in type(value).model_fields:
            found += unknown_keys(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found += unknown_keys(v, f"{path}[{i}]")
    return found


def check_server_event(event: Mapping[str, Any]) -> Any:
    """Validate one server event (and a nested Responses stream event) with no unknown keys."""
    model = SERVER.validate_python(dict(event))
    assert type(model).__name__ != "dict"
    extra = unknown_keys(model)
    assert not extra, f"{event.get('type')}: unknown keys {extra}"
    if event.get("type") == "response.event":
        nested = STREAM.validate_python(event["event"])
        extra = unknown_keys(nested)
        assert not extra, f"response.event/{event['event'].get('type')}: unknown keys {extra}"
    return model


def check_client_event(event: Mapping[str, Any]) -> Any:
    """Validate one client event with no unknown keys."""
    model = CLIENT.validate_python(dict(event))
    extra = unknown_keys(model)
    assert not extra, f"{event.get('type')}: unknown keys {extra}"
    return model
