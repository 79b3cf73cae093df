"""Checks every WebSocket provider config makes on its endpoint and connection limits.

Plain ``ws://`` is refused except to a loopback host: with a key, the key would travel in
clear (refused even with ``allow_insecure``); without one, only when the caller opts in.
Loopback is decided from the URL alone (``localhost`` or a loopback IP literal), never by a
DNS lookup.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

from ..exceptions import ConfigurationError

__all__ = ["is_loopback_host", "is_loopback_url", "check_endpoint", "check_connection_limits"]


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` or a loopback IP literal (127.0.0.0/8, ::1); never a DNS lookup."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname)


def check_endpoint(url: str, *, has_key: bool, allow_insecure: bool) -> SplitResult:
    """The split ``url`` if it is a ws(s) URL allowed with this key; else ConfigurationError."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ConfigurationError(f"url must be ws:// or wss://, got scheme {parts.scheme!r}")
    if parts.scheme == "ws" and not is_loopback_host(parts.hostname):
        if has_key:
            raise ConfigurationError("plain ws:// with an API key is only allowed to a loopback host "
                                     "(the key would travel in clear); use wss://")
        if not allow_insecure:
            raise ConfigurationError("plain ws:// is only allowed to a loopback host; use wss:// "
                                     "or set allow_insecure=True (without a key)")
    return parts


def check_connection_limits(*, max_size_bytes: int, max_queue_messages: int, backoff_initial_s: float,
                            backoff_max_s: float, reconnect_audio_buffer_ms: int) -> None:
    """The bounds shared by every WebSocket provider: message size, queue, backoff, replay buffer."""
    if max_size_bytes < 1024 or max_queue_messages < 1:
        raise ConfigurationError("max_size_bytes must be >= 1024 and max_queue_messages >= 1")
    if not backoff_initial_s > 0 or backoff_max_s < backoff_initial_s:
        raise ConfigurationError("backoff_initial_s must be > 0 and backoff_max_s >= backoff_initial_s")
    if type(reconnect_audio_buffer_ms) is not int or reconnect_audio_buffer_ms < 0:
        raise ConfigurationError("reconnect_audio_buffer_ms must be an int >= 0")
