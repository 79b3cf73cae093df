"""google-genai as the oracle of the Gemini wire (a test dependency only)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

genai = pytest.importorskip("google.genai")
from google.genai import _common, _live_converters, live, types  # noqa: E402

_SNAKE = re.compile(r"_([a-z0-9])")
_OPAQUE = {"args", "response", "parametersJsonSchema"}


def camel_keys(value: Any) -> Any:
    """Both JSON spellings folded into camelCase (user data inside ``_OPAQUE`` kept as is)."""
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        name = _SNAKE.sub(lambda m: m.group(1).upper(), key)
        out[name] = item if name in _OPAQUE else camel_keys(item)
    return out


def validate_client_frame(text: str) -> dict[str, Any]:
    """``text`` parsed and validated as a LiveClientMessage (extra fields forbidden).

    This SDK's ``LiveClientSetup`` lacks ``realtimeInputConfig`` although the SDK's own
    connect() sends it (``_LiveConnectConfig_to_mldev``): that member is validated on its
    own, as the SDK's ``RealtimeInputConfig``.
    """
    frame = json.loads(text)
    assert isinstance(frame, dict) and len(frame) == 1, frame
    setup = frame.get("setup")
    if isinstance(setup, dict) and "realtimeInputConfig" in setup:
        types.RealtimeInputConfig.model_validate(setup["realtimeInputConfig"])
        frame = {"setup": {k: v for k, v in setup.items() if k != "realtimeInputConfig"}}
    types.LiveClientMessage.model_validate_json(json.dumps(frame))
    return frame


async def sdk_setup(model: str, config: Any) -> dict[str, Any]:
    """The setup frame google-genai's connect() sends for ``config`` (camelCase keys)."""
    api = genai.Client(api_key="oracle-key")._api_client
    params = await live._t_live_connect_config(api, config)
    request = _common.convert_to_dict(_live_converters._LiveConnectParameters_to_mldev(
        api_client=api, from_object=types.LiveConnectParameters(model=model, config=params).model_dump(exclude_none=True)))
    del request["config"]
    return camel_keys(_common.encode_unserializable_types(request))


def validate_server_frame(frame: dict[str, Any]) -> Any:
    return types.LiveServerMessage.model_validate_json(json.dumps(frame))
