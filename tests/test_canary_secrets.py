"""Canary: a random API key goes through the whole stack at DEBUG and must appear 0 times.

Every logger (root, every ``voiceengine.*``, ``websockets.*`` and ``asyncio``) is at DEBUG
with a handler that keeps each record fully formatted (message, exc_info traceback,
stack_info) plus the record's attribute dict (what a JSON formatter would dump). Then the
key must not occur -- raw, base64 (every alignment, std and urlsafe), hex or URL-encoded --
in any of: those records; repr/str of configs, provider, engine, every ProviderEvent
(and each of its fields, ``raw`` included); every exception raised (str, repr, the whole
``__cause__``/``__context__`` chain, the formatted traceback, and the traceback with the
frames' locals, which is what error reporters capture); the pickles of all of these
(pickling a :class:`~voiceengine.secrets.Secret` itself must refuse).

Scenarios: happy path (provider and engine), handshake 401, reconnect after a 1006 close,
fatal ``invalid_api_key`` error event, exceptions raised by provider/engine methods, Azure
mode (``api-key`` header). Transport rules (plain ``ws://`` refused off loopback, TLS with
the default verified context) are in test_canary_transport.py; redirects are refused in
tests/providers/openai/test_provider_reconnect.py::test_redirects_are_refused.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import math
import os
import pickle
import secrets
import traceback
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import websockets

import voiceengine
from voiceengine.engine import VoiceEngine, VoiceEngineConfig
from voiceengine.exceptions import ConfigurationError, ConnectionFailed, VoiceEngineError
from voiceengine.providers import ConnectionState, EventType, ProviderEvent
from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider
from voiceengine.providers.openai.connection import build_headers
from voiceengine.secrets import Secret, SecretHeaders, SecretScrubbingFilter
from voiceengine.testing import AuthFailureMode, FakeRealtimeServer, FakeServerConfig, Fault, FaultKind

from tests.event_recorder import EventRecorder

WAIT_S = 10.0
_NAMESPACES = ("voiceengine", "websockets", "asyncio")


def encoded_forms(key: str) -> dict[str, bytes]:
    """The key as it could show up once encoded: a hit on any of these is a leak."""
    raw = key.encode()
    forms = {"raw": raw, "hex": binascii.hexlify(raw), "url": quote(key, safe="").encode(),
             "url_plus": quote_plus(key).encode()}
    for pad in range(3):  # base64 of a longer text containing the key: every alignment
        for name, enc in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
            text = enc(b"\0" * pad + raw)
            skip = (pad * 8 + 5) // 6 + (1 if pad else 0)  # chars that depend on the padding
            core = text.rstrip(b"=")[skip:-2]
            forms[f"{name}@{pad}"] = core
    return forms


class Evidence:
    """Everything that could carry the key, gathered as text and bytes."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.items: list[tuple[str, bytes]] = []
        self.records: list[logging.LogRecord] = []

    def text(self, where: str, value: Any) -> None:
        self.items.append((where, (value if isinstance(value, str) else repr(value)).encode("utf-8", "replace")))

    def obj(self, where: str, value: Any) -> None:
        """repr, str, each dataclass field, and the pickle (if it pickles at all)."""
        self.text(f"repr({where})", repr(value))
        self.text(f"str({where})", str(value))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                self.text(f"{where}.{f.name}", repr(getattr(value, f.name)))
        self.pickle(where, value)

    def pickle(self, where: str, value: Any) -> None:
        try:
            blob = pickle.dumps(value)
        except TypeError as exc:  # e.g. it holds a Secret: refusing is the safe outcome
            self.text(f"pickle error of {where}", exc)
            return
        except (pickle.PicklingError, AttributeError) as exc:  # unpicklable for other reasons
            self.text(f"pickle error of {where}", exc)
            return
        self.items.append((f"pickle({where})", blob))

    def event(self, event: ProviderEvent) -> None:
        self.obj(f"event {event.type.name}", event)
        for name in ("data", "error", "raw"):
            value = getattr(event, name)
            if value is not None:
                self.obj(f"event {event.type.name}.{name}", value)

    def exception(self, where: str, exc: BaseException, *, frame_locals: bool = False) -> None:
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:  # the whole chain
            seen.add(id(current))
            self.text(f"str({where})", str(current))
            self.text(f"repr({where})", repr(current))
            self.text(f"args({where})", repr(current.args))
            self.text(f"vars({where})", repr(getattr(current, "__dict__", {})))
            self.pickle(where, current)
            current = current.__cause__ or current.__context__
        self.text(f"traceback({where})", "".join(traceback.format_exception(exc)))
        if frame_locals:
            self.frame_locals(where, exc)

    def frame_locals(self, where: str, exc: BaseException) -> None:
        """What an error reporter captures: the locals of every library frame (the test's
        own frames hold the key on purpose and are left out)."""
        te: traceback.TracebackException | None = traceback.TracebackException.from_exception(
            exc, capture_locals=True)
        seen_te: set[int] = set()
        while te is not None and id(te) not in seen_te:
            seen_te.add(id(te))
            for frame in te.stack:
                if frame.locals and _is_library(frame.filename):
                    self.text(f"locals of {frame.filename}:{frame.lineno} ({where})", frame.locals)
            te = te.__cause__ or te.__context__

    def hits(self) -> list[str]:
        for record in self.records:
            self.text(f"log {record.name}", getattr(record, "formatted", ""))
            self.text(f"log {record.name} attrs", {k: v for k, v in vars(record).items() if k != "formatted"})
        found = []
        unique: dict[bytes, str] = {}
        for form, needle in encoded_forms(self.key).items():
            unique.setdefault(needle, form)  # e.g. URL-encoding leaves a sk-... key unchanged
        for needle, form in unique.items():
            for where, blob in self.items:
                if needle and needle in blob:
                    found.append(f"{form} in {where}: ...{_around(blob, needle)}...")
        return found

    def assert_clean(self) -> None:
        assert self.items or self.records, "nothing collected: the test is blind"
        found = self.hits()
        assert found == [], "canary key leaked:\n" + "\n".join(found)


# The installed packages' own directories: a checkout folder that happens to be called
# "voiceengine" (what `git clone` picks) must not make the test's own frames library code.
_LIBRARY_DIRS = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (voiceengine, websockets))


def _is_library(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_LIBRARY_DIRS)


def _around(blob: bytes, needle: bytes) -> str:
    i = blob.find(needle)
    return blob[max(0, i - 60): i + len(needle) + 20].decode("utf-8", "replace")


class _Capture(logging.Handler):
    """Formats each record the way a file handler would, keeping the result on the record."""

    def __init__(self, sink: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(funcName)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        record.formatted = self.format(record)  # includes exc_info traceback and stack_info
        self.sink.append(record)


@pytest.fixture
def canary() -> str:
    return "sk-canary-" + secrets.token_hex(24)


@pytest.fixture
def evidence(canary: str) -> Iterator[Evidence]:
    """Every logger at DEBUG into one capturing handler, restored afterwards."""
    ev = Evidence(canary)
    handler = _Capture(ev.records)
    manager = logging.root.manager
    for name in _NAMESPACES + ("websockets.client", "websockets.server", "voiceengine.providers.openai.wire"):
        logging.getLogger(name)  # make sure the main ones exist so they are listed below
    loggers = [logging.root] + [lg for name, lg in list(manager.loggerDict.items())
                                if isinstance(lg, logging.Logger)]
    saved = [(lg, lg.level, lg.disabled) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.disabled = False
        if lg is logging.root or not lg.propagate:  # records that never reach root: catch them here
            lg.addHandler(handler)
    try:
        yield ev
    finally:
        for lg, level, disabled in saved:
            lg.setLevel(level)
            lg.disabled = disabled
            lg.removeHandler(handler)


def _server(canary: str, **fields: Any) -> FakeRealtimeServer:
    options: dict[str, Any] = dict(turn_detection=None, speed=math.inf, responses=["Fine."], api_keys=(canary,))
    options.update(fields)
    return FakeRealtimeServer(FakeServerConfig(**options))


def _provider(url: str, canary: str, **fields: Any) -> OpenAIProvider:
    config = OpenAIConfig(api_key=canary, url=url, turn_detection=None, connect_timeout_s=WAIT_S, **fields)
    return OpenAIProvider(config, reconnect_delays=lambda _config: iter([0.0] * 100))


class _Events(EventRecorder):
    def __init__(self, provider: OpenAIProvider) -> None:
        super().__init__(provider, wait_timeout=WAIT_S)


def _phase(name: str) -> Any:
    return lambda e: e.type is EventType.CONNECTION_STATE and getattr(e.data, "phase", None) == name


def _collect_provider(ev: Evidence, provider: OpenAIProvider, events: _Events) -> None:
    ev.obj("provider", provider)
    ev.obj("config", provider.config)
    ev.text("config.api_key", provider.config.api_key)
    ev.text("provider.__dict__", getattr(provider, "__dict__", {}))
    for event in events.events:
        ev.event(event)


def _assert_handshake_logged(ev: Evidence, header: str) -> None:
    """The handshake headers must have been logged, or the canary proves nothing."""
    assert any(header.lower() in r.formatted.lower() for r in ev.records), f"{header} never logged: blind test"


def test_secret_refuses_pickle_and_masks_repr(canary: str, evidence: Evidence) -> None:
    secret = Secret(canary)
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        pickle.dumps({"nested": [secret]})
    assert secret.reveal() == canary
    evidence.text("f-string", f"{secret} {secret!r} {secret!s} {secret:>40}")
    evidence.text("formatting", "%s %r" % (secret, secret))
    evidence.obj("secret", secret)
    logging.getLogger("voiceengine.canary").debug("secret %s %r", secret, secret)
    evidence.assert_clean()


def test_scrubbing_filter_masks_message_args_and_tracebacks(canary: str, evidence: Evidence) -> None:
    """A record that does contain the key (a library logging headers) is masked by the filter."""
    logger = logging.getLogger("voiceengine.canary.filtered")
    scrubber = SecretScrubbingFilter()
    logger.addFilter(scrubber)
    secret = Secret(canary)  # live: registered for scrubbing
    try:
        logger.debug("headers %s", {"Authorization": f"Bearer {canary}"})
        logger.debug(f"inline {canary}")
        logger.debug("basic %s", "Authorization: Basic " + base64.b64encode(b"u:" + canary.encode()).decode())
        try:
            raise RuntimeError(f"failed with {canary}")
        except RuntimeError:
            logger.debug("with exc_info", exc_info=True)
            logger.debug("with stack", stack_info=True, extra={"key_in_extra": canary})
    finally:
        logger.removeFilter(scrubber)
    assert secret.reveal() == canary
    assert len([r for r in evidence.records if r.name == logger.name]) == 5
    evidence.assert_clean()
    evidence.assert_clean()


async def test_happy_path_provider(canary: str, evidence: Evidence) -> None:
    async with _server(canary) as server:
        provider = _provider(server.url, canary)
        events = _Events(provider)
        await provider.connect()
        await provider.send_audio(b"\1\0" * 4800)
        await provider.send_text("hello")
        await events.wait(lambda e: e.type is EventType.RESPONSE_DONE)
        _collect_provider(evidence, provider, events)
        await provider.disconnect()
        _collect_provider(evidence, provider, events)
        assert server.errors == []
    _assert_handshake_logged(evidence, "Authorization")
    evidence.assert_clean()


async def test_handshake_401(canary: str, evidence: Evidence) -> None:
    async with _server("sk-someone-else-0000", auth_failure=AuthFailureMode.HTTP_401) as server:
        provider = _provider(server.url, canary)
        events = _Events(provider)
        with pytest.raises(ConnectionFailed) as info:
            await provider.connect()
        await provider.disconnect()
        assert info.value.status_code == 401 and info.value.fatal
        evidence.exception("connect 401", info.value)
        _collect_provider(evidence, provider, events)
    _assert_handshake_logged(evidence, "Authorization")
    evidence.assert_clean()


async def test_reconnect_after_1006(canary: str, evidence: Evidence) -> None:
    async with _server(canary) as server:
        provider = _provider(server.url, canary)
        events = _Events(provider)
        await provider.connect()
        server.inject(Fault(kind=FaultKind.CLOSE, close_code=1006))
        await events.wait(_phase("restored"))
        await provider.send_text("again")
        await events.wait(lambda e: e.type is EventType.RESPONSE_DONE)
        await provider.disconnect()
        assert server.handshakes == 2
        _collect_provider(evidence, provider, events)
    evidence.assert_clean()


async def test_fatal_invalid_api_key_event(canary: str, evidence: Evidence) -> None:
    async with _server("sk-someone-else-0000", auth_failure=AuthFailureMode.ERROR_EVENT) as server:
        provider = _provider(server.url, canary)
        events = _Events(provider)
        try:
            await provider.connect()
        except VoiceEngineError as exc:  # connect may fail or the session fails right after
            evidence.exception("connect invalid_api_key", exc)
        await events.wait(lambda e: e.type is EventType.ERROR and e.error is not None
                          and e.error.code == "invalid_api_key")
        await events.wait(lambda e: e.type is EventType.CONNECTION_STATE
                          and e.data.state in (ConnectionState.ERROR, ConnectionState.CLOSED))
        await provider.disconnect()
        _collect_provider(evidence, provider, events)
    evidence.assert_clean()


async def test_exceptions_from_provider_methods(canary: str, evidence: Evidence) -> None:
    async with _server(canary) as server:
        provider = _provider(server.url, canary)
        events = _Events(provider)
        raised: list[BaseException] = []
        try:
            await provider.send_text("too early")
        except VoiceEngineError as exc:
            raised.append(exc)
        await provider.connect()
        for call in (lambda: provider.send_audio(b"\1"), lambda: provider.send_audio("not audio"),
                     lambda: provider.update_session(voice="no-such-voice"),
                     lambda: provider.send_function_result("", None)):
            try:
                await call()
            except (VoiceEngineError, TypeError, ValueError) as exc:
                raised.append(exc)
        await provider.disconnect()
        try:
            await provider.send_text("too late")
        except VoiceEngineError as exc:
            raised.append(exc)
        assert len(raised) >= 4, raised
        for n, exc in enumerate(raised):
            evidence.exception(f"raised {n}", exc)
        _collect_provider(evidence, provider, events)
    evidence.assert_clean()


async def test_engine_happy_path_and_errors(canary: str, evidence: Evidence) -> None:
    async with _server(canary) as server:
        config = VoiceEngineConfig(api_key=canary, url=server.url, turn_detection=None, playback_speed=None,
                                   provider_options={"connect_timeout_s": WAIT_S})
        engine = VoiceEngine("openai", config)
        events = _Events(engine.provider)
        bus_events: list[ProviderEvent] = []
        engine.events.subscribe(bus_events.append)  # engine-level events too (turns, playback, metrics)
        async with engine:
            await engine.send_text("hello")
            await events.wait(lambda e: e.type is EventType.RESPONSE_DONE)
            server.inject(Fault(kind=FaultKind.CLOSE, close_code=1006))
            await events.wait(_phase("restored"))
            for n, call in enumerate((lambda: engine.send_audio("not audio"), lambda: engine.send_text(""))):
                try:
                    await call()
                except (VoiceEngineError, TypeError, ValueError) as exc:
                    evidence.exception(f"engine call {n}", exc)
            evidence.obj("engine", engine)
            evidence.obj("engine.config.provider_config", engine.provider.config)
            evidence.obj("engine.metrics", engine.metrics)
            evidence.obj("engine.state.snapshot()", engine.state.snapshot())
        try:
            await engine.send_text("after close")
        except VoiceEngineError as exc:
            evidence.exception("engine after close", exc)
        _collect_provider(evidence, engine.provider, events)
        assert bus_events
        for event in bus_events:
            evidence.event(event)
    _assert_handshake_logged(evidence, "Authorization")
    evidence.assert_clean()


async def test_azure_mode_api_key_header(canary: str, evidence: Evidence) -> None:
    # The fake server only knows bearer auth: the api-key header is refused with the fatal
    # invalid_api_key error event, which exercises the failure path in Azure mode too.
    async with _server(canary, path="/openai/realtime") as server:
        url = server.url + "?api-version=2025-04-01-preview"
        provider = _provider(url, canary, azure_deployment="gpt-realtime-dep")
        events = _Events(provider)
        try:
            await provider.connect()
        except VoiceEngineError as exc:
            evidence.exception("azure connect", exc)
        await events.wait(lambda e: e.type is EventType.CONNECTION_STATE
                          and e.data.state in (ConnectionState.ERROR, ConnectionState.CLOSED, ConnectionState.CONNECTED))
        await provider.disconnect()
        _collect_provider(evidence, provider, events)
    _assert_handshake_logged(evidence, "api-key")
    evidence.assert_clean()


def test_engine_config_holds_the_key_as_a_secret(canary: str, evidence: Evidence) -> None:
    config = VoiceEngineConfig(api_key=canary, url="ws://127.0.0.1:9/v1/realtime")
    evidence.obj("VoiceEngineConfig", config)
    evidence.assert_clean()


async def test_handshake_401_traceback_locals(canary: str, evidence: Evidence) -> None:
    async with _server("sk-someone-else-0000", auth_failure=AuthFailureMode.HTTP_401) as server:
        provider = _provider(server.url, canary)
        with pytest.raises(ConnectionFailed) as info:
            await provider.connect()
        await provider.disconnect()
    evidence.frame_locals("connect 401", info.value)
    evidence.text("marker", "nothing")  # the locals may be all there is to check
    evidence.assert_clean()


def test_library_frames_are_told_by_the_package_directory(tmp_path: Any) -> None:
    """Only the installed packages' files are library code, whatever the checkout is called."""
    assert _is_library(voiceengine.__file__)
    assert _is_library(websockets.__file__)
    assert not _is_library(__file__)
    assert not _is_library(str(tmp_path / "voiceengine" / "tests" / "test_canary_secrets.py"))


# header name -> how its value embeds the key
_CREDENTIAL_HEADERS = {
    "X-Api-Key": "{}", "Authorization": "Bearer {}", "Proxy-Authorization": "Basic {}",
    "X-Auth-Token": "{}", "Cookie": "session={}", "X-Client-Secret": "{}", "X-Password": "{}",
    "X-Whatever": "Bearer {}",  # a neutral name, but the value says what it is
}


@pytest.mark.parametrize("header", sorted(_CREDENTIAL_HEADERS))
def test_extra_headers_credentials_are_masked(canary: str, evidence: Evidence, header: str) -> None:
    value = _CREDENTIAL_HEADERS[header].format(canary)
    config = OpenAIConfig(url="ws://127.0.0.1:9/v1/realtime", extra_headers={header: value, "X-Trace": "t-1"})
    evidence.obj("OpenAIConfig", config)
    evidence.obj("OpenAIConfig.extra_headers", config.extra_headers)
    with pytest.raises(TypeError):
        pickle.dumps(config)
    assert "'X-Trace': 't-1'" in repr(config)  # the harmless ones stay readable
    assert config.extra_headers is not None and config.extra_headers[header] == value
    if header.lower() not in ("authorization", "api-key"):  # those two the provider replaces
        assert dict(build_headers(config))[header] == value  # still sent as given
    evidence.assert_clean()


def test_extra_headers_without_credentials_stay_plain() -> None:
    config = OpenAIConfig(url="ws://127.0.0.1:9/v1/realtime", extra_headers={"X-Trace": "t-1"})
    assert isinstance(config.extra_headers, SecretHeaders)
    copy = pickle.loads(pickle.dumps(config.extra_headers))
    assert dict(copy) == {"X-Trace": "t-1"}
    assert config == OpenAIConfig(url="ws://127.0.0.1:9/v1/realtime", extra_headers={"X-Trace": "t-1"})


def test_extra_headers_bad_value_error_does_not_echo(canary: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        OpenAIConfig(url="ws://127.0.0.1:9/v1/realtime", extra_headers={"X-Api-Key": canary.encode()})  # type: ignore[dict-item]
    assert "X-Api-Key" in str(info.value) and canary not in str(info.value)


def test_engine_config_provider_options_mask_credentials(canary: str, evidence: Evidence) -> None:
    config = VoiceEngineConfig(url="ws://127.0.0.1:9/v1/realtime", provider_options={
        "extra_headers": {"X-Api-Key": canary, "X-Trace": "t-1"}, "api_key": canary})
    evidence.obj("VoiceEngineConfig", config)
    with pytest.raises(TypeError):
        pickle.dumps(config)
    provider_config = OpenAIConfig(**config.provider_fields("openai"))  # what the engine builds
    evidence.obj("OpenAIConfig", provider_config)
    assert provider_config.key == canary
    assert dict(build_headers(provider_config))["X-Api-Key"] == canary
    evidence.assert_clean()


def test_fake_server_config_masks_api_keys(canary: str, evidence: Evidence) -> None:
    config = FakeServerConfig(api_keys=(canary, canary + "-2"))
    evidence.obj("FakeServerConfig", config)
    with pytest.raises(TypeError):
        pickle.dumps(config)
    assert canary in config.api_keys and config.api_keys is not None and config.api_keys[0] == canary
    evidence.assert_clean()


async def test_extra_header_credential_through_the_handshake(canary: str, evidence: Evidence) -> None:
    """A credential in extra_headers crosses the handshake (logged at DEBUG) and leaks nowhere."""
    async with _server(canary) as server:
        provider = _provider(server.url, canary, extra_headers={"X-Custom-Token": canary})
        events = _Events(provider)
        await provider.connect()
        await provider.send_text("hello")
        await events.wait(lambda e: e.type is EventType.RESPONSE_DONE)
        await provider.disconnect()
        _collect_provider(evidence, provider, events)
    _assert_handshake_logged(evidence, "x-custom-token")
    evidence.assert_clean()


def test_evidence_finds_every_encoded_form(canary: str) -> None:
    """The detector itself: each encoding of the key, embedded at any offset, is a hit."""
    raw = canary.encode()
    samples = {
        "raw": b"x" + raw + b"y",
        "hex": b"0x" + binascii.hexlify(raw),
        "b64@0": base64.b64encode(raw),
        "b64@1": base64.b64encode(b"a" + raw),
        "b64@2": base64.b64encode(b"ab" + raw + b"c"),
        "b64url@2": base64.urlsafe_b64encode(b"u:" + raw),
    }
    for name, blob in samples.items():
        ev = Evidence(canary)
        ev.items.append((name, blob))
        assert ev.hits(), f"{name} not detected"
    clean = Evidence(canary)
    clean.items.append(("other", base64.b64encode(b"sk-canary-" + b"0" * 48)))
    assert clean.hits() == []
