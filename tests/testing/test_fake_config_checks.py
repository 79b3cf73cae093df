"""The config checks the three fake servers share (voiceengine.testing.configcheck)."""

from __future__ import annotations

import pickle

import pytest

from voiceengine.testing import FakeServerConfig
from voiceengine.testing.gemini import FakeGeminiConfig
from voiceengine.testing.openai_live import FakeOpenAILiveConfig

CONFIGS = [FakeServerConfig, FakeGeminiConfig, FakeOpenAILiveConfig]


@pytest.mark.parametrize("config_type", CONFIGS)
def test_accepted_keys_never_show_in_repr_and_refuse_pickling(config_type: type) -> None:
    config = config_type(api_keys=("sk-fake-config-canary-1",))
    assert "sk-fake-config-canary-1" not in repr(config)
    assert "sk-fake-config-canary-1" in config.api_keys  # still a membership test
    with pytest.raises(TypeError):
        pickle.dumps(config.api_keys)


@pytest.mark.parametrize("config_type", CONFIGS)
@pytest.mark.parametrize("keys", [(), ("",), ("ok", 3)])
def test_empty_or_blank_keys_are_refused(config_type: type, keys: tuple[object, ...]) -> None:
    with pytest.raises(ValueError, match="api_keys"):
        config_type(api_keys=keys)


@pytest.mark.parametrize("config_type", CONFIGS)
@pytest.mark.parametrize(("field", "value", "message"), [
    ("speed", 0.0, "speed"), ("chunk_ms", 15, "chunk_ms"), ("chunk_ms", 0, "chunk_ms"),
    ("max_message_bytes", 0, "max_message_bytes"), ("max_recorded_sessions", 0, "max_recorded_sessions"),
])
def test_pacing_and_limits_are_checked(config_type: type, field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config_type(**{field: value})


@pytest.mark.parametrize("config_type", CONFIGS)
def test_pace_is_zero_unpaced_and_inverse_of_speed_otherwise(config_type: type) -> None:
    assert config_type(speed=float("inf")).pace_s_per_ms == 0.0
    assert config_type(speed=4.0).pace_s_per_ms == pytest.approx(1 / 4000)
