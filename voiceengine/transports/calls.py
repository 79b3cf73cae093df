"""What every front door shares: one engine per call, the set of running calls, drain.

A transport (Twilio Media Streams, the browser page) parses its wire protocol and moves
audio; :class:`CallHost` does the rest the same way for all of them: it builds the call's
:class:`~voiceengine.VoiceEngine` from an :class:`EngineFactory` (with the transport's sink),
connects it, registers the call (so ``/readyz``, drain and the metrics see it), reports to a
:class:`CallObserver`, runs the app's ``on_call`` hook and closes everything when the call
ends. Nothing of one call is shared with another.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import time
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Awaitable, Callable, Mapping, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..engine import VoiceEngine, VoiceEngineConfig
from ..exceptions import ConfigurationError, VoiceEngineError
from ..metrics import TurnMetrics
from ..providers.base import BaseProvider
from ..providers.types import ConnectionChange, EventType, ProviderEvent

__all__ = [
    "TransportKind",
    "CallInfo",
    "Call",
    "CallObserver",
    "EngineFactory",
    "CallHost",
    "ListenerPosition",
    "TransportSink",
    "CallRefused",
    "BadFrame",
    "CloseCode",
    "CallConnection",
]

log = logging.getLogger("voiceengine.transports")


class CallRefused(VoiceEngineError):
    """A call was not admitted: the server is draining or at its call limit."""


class CloseCode(enum.IntEnum):
    """The WebSocket close codes the transports use (RFC 6455 section 7.4.1, plus one private)."""

    NORMAL = 1000            # the call ended (Twilio ``stop``, the page's ``bye``)
    GOING_AWAY = 1001        # the server shuts down and the drain timeout passed
    UNSUPPORTED_DATA = 1003  # a binary frame where JSON is spoken, a media format we do not speak
    INVALID_PAYLOAD = 1007   # not JSON, not an object, a known message with missing/mistyped fields
    POLICY = 1008            # out of order: media before start, a second start or hello
    TRY_AGAIN_LATER = 1013   # draining, at the call limit, the provider unreachable or gone
    IDLE = 4408              # no frame at all for the idle timeout: the peer is gone


class BadFrame(VoiceEngineError, ValueError):
    """A frame from the caller's side broke the transport's protocol (the peer's fault).

    ``close_code`` set: the connection is closed with it (1003 unsupported data, 1007
    invalid payload, 1008 policy) and ``reason``; None: the frame is dropped with a warning.
    ``code`` names the fault for logs and the errors metric.
    """

    def __init__(self, reason: str, *, code: str, close_code: CloseCode | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.close_code = close_code


class TransportKind(enum.Enum):
    """Which front door a call came through."""

    TWILIO = "twilio"
    BROWSER = "browser"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallInfo:
    """What the app knows about a call when its engine is built.

    ``call_id``: Twilio's ``callSid`` or a generated id for a page session; ``stream_id``:
    Twilio's ``streamSid`` (the page session id for the browser); ``parameters``: Twilio's
    ``customParameters`` (from the TwiML ``<Parameter>`` elements) or the page's query string,
    so an app can pick instructions or tools per call; ``remote``: the peer address.
    """

    transport: TransportKind
    call_id: str
    stream_id: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    remote: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters)))


class TransportSink(Protocol):
    """The engine's sink as a transport provides it (see :class:`VoiceEngine`)."""

    @property
    def sample_rate(self) -> int: ...

    def unheard_ms(self) -> float: ...


class ListenerPosition:
    """How much of the audio sent to a remote player has been heard, in milliseconds.

    ``sent(ms)`` when audio leaves for the player; ``heard(position_ms)`` when the player
    acknowledges it played up to a position of the sent stream (a Twilio ``mark`` echo, the
    page's played report); ``clear()`` when the player is told to drop what it holds: the
    dropped audio counts as passed (never heard), so acknowledgements of it that still
    arrive afterwards (Twilio echoes the marks of cleared audio) change nothing.
    """

    __slots__ = ("sent_ms", "heard_ms")

    def __init__(self) -> None:
        self.sent_ms = 0.0
        self.heard_ms = 0.0

    def sent(self, ms: float) -> float:
        """Add ``ms`` of sent audio; returns the stream position at its end."""
        self.sent_ms += ms
        return self.sent_ms

    def heard(self, position_ms: float) -> None:
        if position_ms > self.heard_ms:
            self.heard_ms = min(position_ms, self.sent_ms)

    def clear(self) -> None:
        self.heard_ms = self.sent_ms

    @property
    def unheard_ms(self) -> float:
        return self.sent_ms - self.heard_ms


class CallObserver:
    """Receives every call's lifecycle and figures (the Prometheus metrics implement it).

    The base class ignores everything, so an observer overrides only what it needs.
    ``first_audio_s``: end of user speech -> first reply audio handed to the transport;
    ``interrupt_s``: barge-in trigger -> playback stopped and the player told to clear.
    """

    def call_started(self, info: CallInfo) -> None:
        """A call was admitted and its engine connected."""

    def call_ended(self, info: CallInfo, reason: str) -> None:
        """A call that :meth:`call_started` reported has ended."""

    def call_refused(self, transport: TransportKind, reason: str) -> None:
        """A call was refused before it started (draining, bad start, provider unreachable)."""

    def audio_in(self, info: CallInfo, seconds: float) -> None:
        """Caller audio accepted from the transport."""

    def audio_out(self, info: CallInfo, seconds: float) -> None:
        """Reply audio sent to the transport."""

    def turn(self, info: CallInfo, metrics: TurnMetrics) -> None:
        """An assistant turn ended (latencies in ``metrics``)."""

    def reconnect(self, info: CallInfo) -> None:
        """The call's provider is reconnecting."""

    def error(self, transport: TransportKind, code: str) -> None:
        """An error: a provider error code, or a transport's own (``twilio_bad_frame``, ...)."""


ProviderSpec = str | BaseProvider | Callable[[CallInfo], "str | BaseProvider"]
ConfigSpec = VoiceEngineConfig | Callable[[CallInfo], VoiceEngineConfig]


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineFactory:
    """How to build each call's engine.

    ``provider``: a registered name (``"openai"``, ``"mock"``, ...) or a callable
    ``(CallInfo) -> name | BaseProvider`` (a fresh provider per call: never share an
    instance). ``config``: a :class:`VoiceEngineConfig` or ``(CallInfo) -> VoiceEngineConfig``.
    The transport sets the output format (its sink's rate, mono) and a real-time playback
    clock (``playback_speed=1.0``): the engine's buffer then holds the reply until it is
    due, so a barge-in drops it here instead of in a remote buffer, and the remote player
    only ever holds what its own jitter buffer needs. ``playback_tick_ms`` is the size of
    each audio message sent (default 20 ms, Twilio's frame).
    """

    provider: ProviderSpec = "openai"
    config: ConfigSpec = field(default_factory=VoiceEngineConfig)
    playback_tick_ms: float = 20.0

    def __post_init__(self) -> None:
        if isinstance(self.provider, BaseProvider):
            raise ConfigurationError("EngineFactory needs a provider name or a callable returning a fresh "
                                     "provider per call, not one shared instance")
        if not (isinstance(self.provider, str) or callable(self.provider)):
            raise TypeError("provider must be a registered name or a callable (CallInfo) -> provider")
        if not (isinstance(self.config, VoiceEngineConfig) or callable(self.config)):
            raise TypeError("config must be a VoiceEngineConfig or a callable (CallInfo) -> VoiceEngineConfig")
        if not 5.0 <= self.playback_tick_ms <= 200.0:
            raise ConfigurationError("playback_tick_ms must be in 5..200")

    def build(self, info: CallInfo, sink: TransportSink) -> VoiceEngine:
        provider = self.provider(info) if callable(self.provider) else self.provider
        config = self.config(info) if callable(self.config) else self.config
        if not isinstance(config, VoiceEngineConfig):
            raise TypeError("the config callable must return a VoiceEngineConfig")
        config = replace(config, output_sample_rate=sink.sample_rate, output_channels=1, playback_speed=1.0,
                         playback_tick_ms=self.playback_tick_ms)
        return VoiceEngine(provider, config, sink=sink)


CallHook = Callable[["Call"], "Awaitable[None] | None"]


class Call:
    """A running call: its :class:`CallInfo` and its :class:`VoiceEngine` (connected).

    ``engine`` is the app's to use in ``on_call`` (callbacks, ``inject_context``, ...);
    the transport closes it when the call ends.
    """

    def __init__(self, info: CallInfo, engine: VoiceEngine, observer: CallObserver) -> None:
        self.info = info
        self.engine = engine
        self.started_at = time.monotonic()
        self._observer = observer
        self._end_reason = "ended"
        self._subscription = engine.events.subscribe(
            self._on_event, types=(EventType.METRICS, EventType.CONNECTION_STATE, EventType.ERROR))

    def _on_event(self, event: ProviderEvent) -> None:
        if event.type is EventType.METRICS and isinstance(event.data, TurnMetrics):
            self._observer.turn(self.info, event.data)
        elif event.type is EventType.CONNECTION_STATE and isinstance(event.data, ConnectionChange):
            if event.data.phase == "reconnecting":
                self._observer.reconnect(self.info)
        elif event.type is EventType.ERROR and event.error is not None and not event.error.benign:
            self._observer.error(self.info.transport, event.error.code or "unknown")

    def stop_observing(self) -> None:
        """The call ended: its engine's events no longer reach the observer."""
        self._subscription.unsubscribe()

    def __repr__(self) -> str:
        return f"<Call {self.info.transport.value} {self.info.call_id}>"


class CallHost:
    """Builds, tracks and ends the calls of one process; shared by every transport handler.

    ``on_call(call)`` runs after the engine connected (attach callbacks, inject context);
    ``on_call_end(call)`` after the call ended, before the engine closes. ``max_calls``
    bounds the calls running at once (beyond it a call is refused). ``connect_timeout_s``
    bounds the provider connect; ``close_timeout_s`` the engine's close at the end of a call.
    """

    def __init__(
        self,
        factory: EngineFactory,
        *,
        observer: CallObserver | None = None,
        on_call: CallHook | None = None,
        on_call_end: CallHook | None = None,
        max_calls: int = 1000,
        connect_timeout_s: float = 15.0,
        close_timeout_s: float = 2.0,
    ) -> None:
        if not isinstance(factory, EngineFactory):
            raise TypeError("factory must be an EngineFactory")
        if max_calls < 1 or connect_timeout_s <= 0 or close_timeout_s <= 0:
            raise ConfigurationError("max_calls >= 1, connect_timeout_s > 0 and close_timeout_s > 0 required")
        self.factory = factory
        self.observer = observer or CallObserver()
        self.on_call = on_call
        self.on_call_end = on_call_end
        self.max_calls = max_calls
        self.connect_timeout_s = connect_timeout_s
        self.close_timeout_s = close_timeout_s
        self.calls: set[Call] = set()
        self.calls_total = 0
        self._draining = False
        self._starting = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def accepting(self) -> bool:
        """Whether a new call would be admitted (False while draining or full)."""
        return self.refusal() is None

    @property
    def draining(self) -> bool:
        return self._draining

    def refusal(self) -> str | None:
        """Why a new call would be refused now, or None."""
        if self._draining:
            return "server is draining"
        if len(self.calls) + self._starting >= self.max_calls:
            return f"server is at its limit of {self.max_calls} calls"
        return None

    async def start_call(self, info: CallInfo, sink: TransportSink) -> Call:
        """Build and connect the call's engine, register the call, run ``on_call``.

        Raises what the engine raises (the call is then not registered and the engine is
        closed); the caller closes its connection with a clear code.
        """
        refusal = self.refusal()
        if refusal is not None:
            self.observer.call_refused(info.transport, "draining" if self._draining else "full")
            raise CallRefused(refusal)
        self._starting += 1  # admitted: a drain from now on waits for this call too
        self._idle.clear()
        try:
            engine = self.factory.build(info, sink)
            try:
                await asyncio.wait_for(engine.connect(), self.connect_timeout_s)
            except BaseException:
                self.observer.call_refused(info.transport, "provider_unavailable")
                await self._close_engine(engine)
                raise
            call = Call(info, engine, self.observer)
            self.calls.add(call)
            self.calls_total += 1
        finally:
            self._starting -= 1
            self._update_idle()
        self.observer.call_started(info)
        if self.on_call is not None:
            try:
                result = self.on_call(call)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                await self.end_call(call, "on_call_failed")
                raise
        return call

    async def end_call(self, call: Call, reason: str) -> None:
        """End ``call``: run ``on_call_end``, close its engine (and provider session). Idempotent."""
        if call not in self.calls:
            return
        self.calls.discard(call)
        call.stop_observing()
        try:
            if self.on_call_end is not None:
                try:
                    result = self.on_call_end(call)
                    if inspect.isawaitable(result):
                        await asyncio.wait_for(result, self.close_timeout_s)
                except Exception:
                    log.exception("on_call_end raised for %r", call)
            await self._close_engine(call.engine)
        finally:
            self.observer.call_ended(call.info, reason)
            self._update_idle()

    def _update_idle(self) -> None:
        if not self.calls and not self._starting:
            self._idle.set()

    async def _close_engine(self, engine: VoiceEngine) -> None:
        try:
            await asyncio.wait_for(engine.close(), self.close_timeout_s)
        except TimeoutError:
            log.warning("engine close took longer than %.1f s; abandoned", self.close_timeout_s)
        except Exception as exc:
            log.warning("engine close failed: %s", exc)

    def start_draining(self) -> None:
        """Refuse new calls from now on; running calls go on."""
        self._draining = True

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new calls and wait up to ``timeout_s`` for the running ones to end.

        Returns True when every call ended by itself; the caller ends the rest.
        """
        self.start_draining()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        except TimeoutError:
            return False


async def call_hook(hook: Callable[..., Any] | None, *args: Any) -> None:
    """Run an app hook (sync or async); an exception is logged, never breaks the call."""
    if hook is None:
        return
    try:
        result = hook(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("app hook %s raised", getattr(hook, "__qualname__", hook))


Outcome = tuple[CloseCode, str] | None
"""What a frame handler returns: the close code and reason that end the connection, or None."""
FrameHandler = Callable[[str | bytes], Awaitable[Outcome]]


class CallConnection:
    """One transport connection's call lifecycle, the same for every front door.

    :meth:`run` receives frames under the idle timeout and hands each to the transport's
    frame handler, which parses its protocol and returns an :data:`Outcome`. A
    :class:`BadFrame` it raises is counted as an error; with a close code it ends the
    connection, without one the frame is dropped (a warning for the first
    ``warnings_per_call`` of them, a sum at the end). When the connection ends, the call
    ends (with the close reason) and the socket closes with the close code.
    ``log`` and ``label`` name the transport in the log lines.
    """

    def __init__(self, host: CallHost, ws: ServerConnection, transport: TransportKind, *, log: logging.Logger,
                 label: str, idle_timeout_s: float, warnings_per_call: int) -> None:
        self.host = host
        self.ws = ws
        self.transport = transport
        self.call: Call | None = None
        self.dropped = 0
        self._log = log
        self._label = label
        self._idle_timeout_s = idle_timeout_s
        self._warnings_per_call = warnings_per_call

    @property
    def name(self) -> str:
        """The connection as its log lines name it."""
        return f"{self._label} {self.call.info.stream_id if self.call is not None else '(not started)'}"

    async def run(self, on_frame: FrameHandler, *, peer_gone_reason: str,
                  before_end: Callable[[], Awaitable[None]] | None = None) -> None:
        """Serve frames until an outcome, then end the call (``peer_gone_reason`` when the peer
        closed first); ``before_end`` runs first (the transport stops its own tasks)."""
        close: Outcome = None
        reason = peer_gone_reason
        try:
            close = await self._receive(on_frame)
            reason = close[1]
        except ConnectionClosed:
            pass  # the peer went away: end the call now
        finally:
            if before_end is not None:
                await before_end()
            if self.dropped > self._warnings_per_call:
                self._log.warning("%s: %d frame(s) dropped in total", self.name, self.dropped)
            if self.call is not None:
                await self.host.end_call(self.call, reason)
            if close is not None:
                await self.ws.close(*close)

    async def _receive(self, on_frame: FrameHandler) -> tuple[CloseCode, str]:
        while True:
            try:
                frame = await asyncio.wait_for(self.ws.recv(), self._idle_timeout_s)
            except TimeoutError:
                self._log.warning("%s: no frame for %.0f s; closing", self.name, self._idle_timeout_s)
                return CloseCode.IDLE, f"no frame for {self._idle_timeout_s:.0f} s"
            try:
                outcome = await on_frame(frame)
            except BadFrame as exc:
                self.host.observer.error(self.transport, exc.code)
                if exc.close_code is not None:
                    self._log.warning("%s: %s; closing (%d)", self.name, exc.reason, exc.close_code)
                    return exc.close_code, exc.reason
                self.drop(exc.reason)
                continue
            if outcome is not None:
                return outcome

    def drop(self, reason: str) -> None:
        """A frame is dropped (the call goes on)."""
        self.dropped += 1
        if self.dropped <= self._warnings_per_call:
            self._log.warning("%s: frame dropped: %s", self.name, reason)

    def call_info(self, *, call_id: str, stream_id: str, parameters: Mapping[str, str]) -> CallInfo:
        """This connection's :class:`CallInfo` (the peer address from the socket)."""
        remote = self.ws.remote_address
        return CallInfo(transport=self.transport, call_id=call_id, stream_id=stream_id, parameters=parameters,
                        remote=f"{remote[0]}:{remote[1]}" if remote else None)

    async def start(self, info: CallInfo, sink: TransportSink) -> Outcome:
        """Start the call (:meth:`CallHost.start_call`); a refusal or failure is the outcome."""
        try:
            self.call = await self.host.start_call(info, sink)
        except CallRefused as exc:
            return CloseCode.TRY_AGAIN_LATER, str(exc)
        except Exception as exc:
            self._log.warning("%s %s: the call could not start: %s", self._label, info.stream_id, _brief(exc))
            return CloseCode.TRY_AGAIN_LATER, "provider unavailable"
        return None

    async def request(self, request: Awaitable[object]) -> Outcome:
        """Await an engine request for the call; the provider session gone ends the connection."""
        try:
            await request
        except Exception as exc:
            self._log.warning("%s: the provider session ended: %s", self.name, _brief(exc))
            return CloseCode.TRY_AGAIN_LATER, "provider session ended"
        return None


def _brief(exc: BaseException) -> str:
    """An exception for a log line: its type and the first line of its message, bounded."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
