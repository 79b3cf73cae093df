"""OpenAILiveConfig: the endpoint used as given, loopback-only ws://, rates, inference knobs, secrets."""

from __future__ import annotations

import pickle

import pytest

from voiceengine.exceptions import ConfigurationError
from voiceengine.providers.openai_live import DEFAULT_URL, OpenAILiveConfig


def test_defaults() -> None:
    cfg = OpenAILiveConfig(api_key="sk-secret-1")
    assert cfg.url == DEFAULT_URL == "wss://api.openai.com/v1/live/sessions"
    assert cfg.sample_rate == 24000 and cfg.bytes_per_ms == 48
    assert (cfg.user_turn_gap_ms, cfg.reply_end_gap_ms, cfg.reply_end_quiet_s) == (800, 800, 2.0)


def test_sixteen_khz_is_selectable_and_others_are_not() -> None:
    assert OpenAILiveConfig(sample_rate=16000).bytes_per_ms == 32
    with pytest.raises(ConfigurationError):
        OpenAILiveConfig(sample_rate=48000)


@pytest.mark.parametrize("url", ["wss://api.openai.com/v1/live/sessions?model=gpt-live-1", "https://x/v1/live/sessions"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        OpenAILiveConfig(url=url)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.3.4.5"])
def test_ws_with_a_key_only_on_loopback(host: str) -> None:
    cfg = OpenAILiveConfig(api_key="sk-x", url=f"ws://{host}:9/v1/live/sessions")
    assert cfg.is_loopback


def test_ws_to_a_remote_host() -> None:
    with pytest.raises(ConfigurationError, match="in clear") as info:
        OpenAILiveConfig(api_key="sk-never-shown", url="ws://example.com/v1/live/sessions")
    assert "sk-never-shown" not in str(info.value)
    with pytest.raises(ConfigurationError):
        OpenAILiveConfig(url="ws://example.com/v1/live/sessions")
    assert OpenAILiveConfig(url="ws://example.com/v1/live/sessions", allow_insecure=True).url.startswith("ws://")


@pytest.mark.parametrize("changes", [
    {"turn_detection": None}, {"output_modalities": ("text",)}, {"temperature": 0.7},
    {"tools": [{"type": "web_search"}]}, {"tools": [{"type": "function"}]}, {"user_turn_gap_ms": -1},
    {"reply_end_gap_ms": 1.5}, {"reply_end_quiet_s": 0}, {"idle_output_max_dbfs": 3.0}, {"model": ""},
    {"backend_model": ""}, {"voice": ""}, {"max_history_messages": 129}, {"acknowledgement_delay_ms": -5},
])
def test_bad_values_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        OpenAILiveConfig(**changes)  # type: ignore[arg-type]


def test_key_never_shows_and_is_not_picklable() -> None:
    cfg = OpenAILiveConfig(api_key="sk-live-very-secret")
    assert "sk-live-very-secret" not in repr(cfg) and "sk-live-very-secret" not in str(cfg)
    assert cfg.key == "sk-live-very-secret"
    with pytest.raises(Exception):
        pickle.dumps(cfg)
