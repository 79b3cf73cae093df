"""What ``voiceengine serve`` runs: a :class:`CallHost` from command-line settings, one or N processes.

The API key comes from the provider's usual environment variable (``OPENAI_API_KEY``;
``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``), read in each worker, never from the command line.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import os
from dataclasses import dataclass
from typing import Any, TextIO

from ..engine import VoiceEngineConfig
from ..exceptions import ConfigurationError
from ..providers import registry
from .calls import CallHost, EngineFactory
from .server import ServeConfig, VoiceServer, serve
from .workers import serve_workers

__all__ = ["ServeCommand", "run"]

log = logging.getLogger("voiceengine.transports.command")

_KEY_ENV = {"openai": ("OPENAI_API_KEY",), "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY")}


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeCommand:
    """The settings of ``voiceengine serve`` (picklable: the workers rebuild the host from it)."""

    provider: str
    url: str | None = None
    instructions: str | None = None
    voice: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    drain_timeout_s: float = 30.0
    metrics: bool = True

    def engine_config(self) -> VoiceEngineConfig:
        fields: dict[str, Any] = {"instructions": self.instructions, "voice": self.voice}
        if self.provider in _KEY_ENV:
            key = next((os.environ[name] for name in _KEY_ENV[self.provider] if os.environ.get(name)), None)
            if key is None and self.url is None:
                names = " or ".join(_KEY_ENV[self.provider])
                raise ConfigurationError(f"{names} is not set (or use --url for a local fake server)")
            fields["api_key"] = key or "local-test-key"
        if self.url is not None:
            if self.provider == "openai":
                fields["url"] = self.url
            else:
                fields["provider_options"] = {"url": self.url}
        return VoiceEngineConfig(**fields)

    def serve_config(self) -> ServeConfig:
        return ServeConfig(host=self.host, port=self.port, drain_timeout_s=self.drain_timeout_s,
                           metrics=self.metrics)

    def check(self) -> None:
        """Fail now, with one clear line, on what would otherwise fail every call."""
        if self.provider not in registry.available():
            raise ConfigurationError(f"provider {self.provider!r} is not available in this build "
                                     f"(available: {', '.join(registry.available())})")
        if self.workers < 1:
            raise ConfigurationError("--workers must be >= 1")
        if self.metrics and importlib.util.find_spec("prometheus_client") is None:
            raise ConfigurationError("/metrics needs prometheus_client: pip install 'voiceengine[serve]'")
        config = self.engine_config()
        registry.create(self.provider, **config.provider_fields(self.provider))  # validates the fields


def build_host(command: ServeCommand) -> CallHost:
    """The worker's CallHost (module level, so a ``functools.partial`` of it pickles)."""
    # with metrics on, VoiceServer installs its PrometheusMetrics as the host's observer
    return CallHost(EngineFactory(provider=command.provider, config=command.engine_config()))


def run(command: ServeCommand, out: TextIO) -> int:
    """Serve until SIGTERM/SIGINT (then drain); returns the exit status."""
    command.check()
    if command.workers == 1:
        def ready(server: VoiceServer) -> None:
            print(f"voiceengine serve: listening on {server.url} (provider {command.provider}, 1 worker, "
                  f"pid {os.getpid()})", file=out, flush=True)

        asyncio.run(serve(build_host(command), command.serve_config(), ready=ready))
        print("voiceengine serve: drained, exiting", file=out, flush=True)
        return 0

    def all_ready(port: int, pids: list[int]) -> None:
        print(f"voiceengine serve: listening on http://{command.host}:{port} (provider {command.provider}, "
              f"{len(pids)} workers, pids {' '.join(map(str, pids))})", file=out, flush=True)

    status = serve_workers(functools.partial(build_host, command), command.serve_config(), command.workers,
                           ready=all_ready, log_level=logging.getLogger().getEffectiveLevel())
    print("voiceengine serve: drained, exiting", file=out, flush=True)
    return status
