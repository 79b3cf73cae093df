"""The provider contract: :class:`ProviderConfig` and the abstract :class:`BaseProvider`.

A provider turns a realtime voice service into normalized :class:`ProviderEvent`\\ s and
accepts PCM16 audio, text and control requests. Providers never block the event loop:
``send_audio`` enqueues, one task reads, one task writes, and every task a provider starts
is cancelled by :meth:`BaseProvider.disconnect`.

Events reach the application two ways, both fed by :meth:`BaseProvider._emit`:
``on_event(type, handler)`` callbacks (sync or async; a handler that raises is logged and
isolated) and ``async for event in provider.events()`` (a bounded queue per iterator; a
slow iterator loses its oldest events, which are counted in ``dropped_events``, and never
stalls the provider).
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence

from ..exceptions import ConfigurationError, InvalidState
from ..secrets import Secret
from .conversation import ConversationRecord
from .types import (
    AudioAccounting,
    AudioFormat,
    ConnectionChange,
    ConnectionState,
    EventType,
    InterruptResult,
    MessageType,
    ProviderCapabilities,
    ProviderEvent,
    ReplaySource,
    TurnDetection,
    TurnDetectionSetting,
)

__all__ = ["ProviderConfig", "BaseProvider", "AudioLedger", "EventHandler", "EventIterator", "TurnDetection",
           "TurnDetectionSetting"]

log = logging.getLogger("voiceengine.providers")

EventHandler = Callable[[ProviderEvent], "Awaitable[None] | None"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderConfig:
    """Settings every provider understands. Providers subclass it for their own fields.

    ``api_key`` is stored as a :class:`~voiceengine.secrets.Secret` (a plain ``str`` is
    wrapped), so the config's repr, logs and exceptions never show it.
    ``turn_detection`` is a neutral :class:`~voiceengine.providers.types.TurnDetection`,
    or one of its aliases: ``"server_vad"``, ``"semantic_vad"``, an OpenAI-shaped mapping,
    or ``None`` for manual turns (the app commits audio itself). A manual
    ``TurnDetection`` is stored as ``None``, so ``config.turn_detection is None`` always
    means manual; :attr:`turn_detection_settings` gives the neutral form of any spelling.
    """

    api_key: Secret | str | None = None
    instructions: str | None = None
    voice: str | None = None
    turn_detection: TurnDetectionSetting = "server_vad"
    transcription_model: str | None = None
    tools: Sequence[Mapping[str, Any]] = ()
    output_modalities: Sequence[str] = ("audio",)
    temperature: float | None = None
    connect_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    event_queue_size: int = 4096
    max_reconnect_attempts: int = 3
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.api_key, str):
            object.__setattr__(self, "api_key", Secret(self.api_key))
        elif self.api_key is not None and not isinstance(self.api_key, Secret):
            raise ConfigurationError("api_key must be a str, a Secret or None")
        if self.turn_detection == "manual":
            object.__setattr__(self, "turn_detection", None)
        try:
            settings = TurnDetection.coerce(self.turn_detection)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(str(exc)) from None
        if settings.manual:
            object.__setattr__(self, "turn_detection", None)
        modalities = tuple(self.output_modalities)
        if not modalities or any(m not in ("audio", "text") for m in modalities):
            raise ConfigurationError(f"output_modalities must be ['audio'] or ['text'], got {modalities!r}")
        object.__setattr__(self, "output_modalities", modalities)
        object.__setattr__(self, "tools", tuple(dict(t) for t in self.tools))
        for name in ("connect_timeout_s", "close_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"{name} must be > 0")
        if self.event_queue_size < 1:
            raise ConfigurationError("event_queue_size must be >= 1")
        if self.max_reconnect_attempts < 0:
            raise ConfigurationError("max_reconnect_attempts must be >= 0")

    @property
    def turn_detection_settings(self) -> TurnDetection:
        """``turn_detection`` in its neutral form, whatever spelling was given."""
        return TurnDetection.coerce(self.turn_detection)

    @property
    def key(self) -> str | None:
        """The API key in clear, for the transport only."""
        return self.api_key.reveal() if isinstance(self.api_key, Secret) else None


class AudioLedger:
    """Running input-audio counters of a provider (see :class:`AudioAccounting`).

    Providers call :meth:`captured` for every byte ``send_audio`` accepted, then exactly
    one of :meth:`sent`, :meth:`replayed` or :meth:`dropped` once its fate is known;
    until then it is *pending* (:meth:`BaseProvider._audio_pending_bytes`).
    """

    __slots__ = ("captured_bytes", "sent_bytes", "replayed_bytes", "dropped_bytes")

    def __init__(self) -> None:
        self.captured_bytes = 0
        self.sent_bytes = 0
        self.replayed_bytes = 0
        self.dropped_bytes = 0

    def captured(self, n: int) -> None:
        self.captured_bytes += n

    def sent(self, n: int) -> None:
        self.sent_bytes += n

    def replayed(self, n: int) -> None:
        self.replayed_bytes += n

    def dropped(self, n: int) -> None:
        self.dropped_bytes += n

    def snapshot(self, *, pending: int = 0) -> AudioAccounting:
        return AudioAccounting(
            captured_bytes=self.captured_bytes, sent_bytes=self.sent_bytes,
            replayed_bytes=self.replayed_bytes, dropped_bytes=self.dropped_bytes, pending_bytes=pending,
        )


class _Subscriber:
    __slots__ = ("queue", "dropped")

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[ProviderEvent | None] = asyncio.Queue(maxsize=size)
        self.dropped = 0


class EventIterator:
    """Async iterator over a provider's events (see :meth:`BaseProvider.events`)."""

    __slots__ = ("_provider", "_subscriber", "_done")

    def __init__(self, provider: "BaseProvider", subscriber: _Subscriber) -> None:
        self._provider = provider
        self._subscriber = subscriber
        self._done = False

    @property
    def dropped(self) -> int:
        """Events this iterator lost because it fell behind (oldest dropped first)."""
        return self._subscriber.dropped

    def __aiter__(self) -> "EventIterator":
        return self

    async def __anext__(self) -> ProviderEvent:
        if self._done:
            raise StopAsyncIteration
        event = await self._subscriber.queue.get()
        if event is None:
            await self.aclose()
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        self._done = True
        subscribers = self._provider._subscribers
        if self._subscriber in subscribers:
            subscribers.remove(self._subscriber)


class BaseProvider(abc.ABC):
    """Abstract realtime voice provider. See the module docstring for the event model."""

    #: registry name, e.g. ``"openai"``; also stamped on every event as ``provider``
    name: str = "base"

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._state = ConnectionState.DISCONNECTED
        # tuples, replaced on change: _emit iterates them as they are (a handler that adds or
        # removes handlers changes the next event's set, not this one's), with no copy per event
        self._handlers: dict[EventType | None, tuple[EventHandler, ...]] = {}
        self._subscribers: list[_Subscriber] = []
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self.dropped_events = 0
        self.session_id: str | None = None
        self.audio_ledger = AudioLedger()
        self._replay_source: ReplaySource | None = None
        self._conversation: ConversationRecord | None = None

    # ---------------------------------------------------------- conversation
    @property
    def conversation(self) -> ConversationRecord:
        """The conversation as this provider knows it (see
        :mod:`~voiceengine.providers.conversation`): every event it emits and every item
        it sends is folded in, with or without an engine. A provider restores it into a
        fresh session after a reconnect when the service cannot resume the old one."""
        if self._conversation is None:
            output_format = self.get_audio_format()[1]
            self._conversation = ConversationRecord(output_bytes_per_ms=output_format.bytes_per_second / 1000.0)
        return self._conversation

    # ------------------------------------------------------------ continuity
    @property
    def audio_accounting(self) -> AudioAccounting:
        """Where the input audio went so far (see :class:`AudioAccounting`)."""
        return self.audio_ledger.snapshot(pending=self._audio_pending_bytes())

    def _audio_pending_bytes(self) -> int:
        """Input audio still queued or buffered; providers that buffer override this."""
        return 0

    def set_replay_source(self, source: ReplaySource | None) -> None:
        """Give the conversation items to replay into a fresh session after a reconnect.

        ``source()`` must return wire-shaped items (``ConversationState.snapshot().items``:
        original ``id`` and role kept). Providers call it once per outage, when the
        connection is lost, and replay what it returned (even across several failed
        attempts) once a new session is set up. ``None`` replays nothing.
        """
        if source is not None and not callable(source):
            raise TypeError("replay source must be callable or None")
        self._replay_source = source

    # ----------------------------------------------------------------- state
    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def is_connected(self) -> bool:
        return self._state is ConnectionState.CONNECTED

    def _set_state(
        self, state: ConnectionState, *, phase: str = "", reason: str = "", attempt: int = 0,
        close_code: int | None = None, **details: Any,
    ) -> None:
        """Change state and emit CONNECTION_STATE; ``details`` are further
        :class:`ConnectionChange` fields (``planned``, ``replayed_items``, ...)."""
        previous = self._state
        if previous is state and not phase:
            return
        self._state = state
        change = ConnectionChange(
            state=state, previous=previous, phase=phase or state.value, reason=reason,
            attempt=attempt, close_code=close_code, **details,
        )
        log.debug("%s: %s -> %s (%s) %s", self.name, previous.value, state.value, change.phase, reason)
        self._emit(ProviderEvent(type=EventType.CONNECTION_STATE, data=change, provider=self.name,
                                 session_id=self.session_id))

    # ---------------------------------------------------------------- events
    def on_event(self, event_type: EventType | str | None, handler: EventHandler) -> EventHandler:
        """Call ``handler(event)`` for every event of ``event_type`` (``None`` or ``"*"``: all).

        Async handlers run as tasks owned by the provider. Returns ``handler`` so this
        can be used as a decorator factory's result.
        """
        key = None if event_type in (None, "*") else EventType(event_type)
        if not callable(handler):
            raise TypeError("handler must be callable")
        self._handlers[key] = (*self._handlers.get(key, ()), handler)
        return handler

    def remove_event_handler(self, event_type: EventType | str | None, handler: EventHandler) -> bool:
        """Remove a handler; returns whether it was registered."""
        key = None if event_type in (None, "*") else EventType(event_type)
        handlers = list(self._handlers.get(key, ()))
        if handler not in handlers:
            return False
        handlers.remove(handler)
        if handlers:
            self._handlers[key] = tuple(handlers)
        else:
            del self._handlers[key]
        return True

    def events(self) -> "EventIterator":
        """Iterate over events from now on, until the provider is closed.

        The subscription starts when ``events()`` is called, not at the first
        ``__anext__``, so nothing emitted in between is missed. ``aclose()`` (or leaving an
        ``async for`` through ``break``) unsubscribes.
        """
        subscriber = _Subscriber(self.config.event_queue_size)
        self._subscribers.append(subscriber)
        if self._state is ConnectionState.CLOSED:
            subscriber.queue.put_nowait(None)  # nothing more will come: end at once, never hang
        return EventIterator(self, subscriber)

    def _emit(self, event: ProviderEvent) -> None:
        record = self._conversation
        if record is None:
            record = self.conversation  # (made on first use)
        record.apply(event)  # before anyone hears of it: handlers may read the record
        for subscriber in self._subscribers:
            queue = subscriber.queue
            if queue.full():
                queue.get_nowait()
                subscriber.dropped += 1
                self.dropped_events += 1
                if subscriber.dropped in (1, 100, 10000):
                    log.warning("%s: a slow events() consumer dropped %d events", self.name, subscriber.dropped)
            queue.put_nowait(event)
        handlers = self._handlers
        typed = handlers.get(event.type)
        # the handlers registered when the event is emitted, its type's first, then the
        # catch-all ones (one tuple: no per-handler call of a helper, once per audio delta)
        for handler in handlers.get(None, ()) if typed is None else typed + handlers.get(None, ()):
            try:
                result = handler(event)
            except Exception:
                log.exception("%s: event handler %r raised on %s", self.name, handler, event.type.name)
                continue
            if result is not None and inspect.isawaitable(result):  # most handlers are sync: skip the check
                task = asyncio.ensure_future(self._await_handler(handler, result, event))
                self._handler_tasks.add(task)
                task.add_done_callback(self._handler_tasks.discard)

    async def _await_handler(self, handler: EventHandler, awaitable: Awaitable[Any], event: ProviderEvent) -> None:
        try:
            await awaitable
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: async event handler %r raised on %s", self.name, handler, event.type.name)

    def _close_event_streams(self) -> None:
        """End every ``events()`` iterator (called once the provider is closed)."""
        for subscriber in self._subscribers:
            queue = subscriber.queue
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)

    async def _cancel_handler_tasks(self) -> None:
        tasks = [t for t in self._handler_tasks if not t.done() and t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> "BaseProvider":
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the session; returns once the session is ready for audio."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Close the session and cancel every task the provider started. Idempotent."""

    # ----------------------------------------------------------------- audio
    @abc.abstractmethod
    async def send_audio(self, audio: Any) -> None:
        """Enqueue PCM16 audio at the provider's input rate (any buffer). Never blocks on I/O."""

    def audio_sink(self) -> Callable[[Any, bool], None] | None:
        """``sink(audio, more)``, a synchronous callable with exactly :meth:`send_audio`'s
        effect and errors, for a provider whose ``send_audio`` never awaits anything;
        ``None`` (the default): await ``send_audio``. The engine calls it for every input
        frame (no coroutine per frame), with ``more=True`` when another frame follows in
        the same call (the provider may hold this one to write them together). Asked once
        per provider (the engine keeps the answer): it may depend on the provider's class,
        never on its state."""
        return None

    async def commit_audio(self) -> None:
        """Commit the input audio buffer as a user turn (manual turn detection)."""
        raise self._unsupported("committing input audio")

    async def clear_audio(self) -> None:
        """Discard uncommitted input audio."""
        raise self._unsupported("clearing input audio")

    # ------------------------------------------------------ items / responses
    @abc.abstractmethod
    async def send_text(self, text: str, *, role: str = "user", respond: bool = True) -> str:
        """Add a text message item (returns its item id); ``respond`` asks for a reply."""

    async def add_item(self, item: Mapping[str, Any], *, previous_item_id: str | None = None) -> str:
        """Add a raw conversation item (wire shape); returns its item id."""
        raise self._unsupported("raw conversation items")

    async def send_message(self, message_type: MessageType | str, data: Mapping[str, Any] | None = None) -> str:
        """Send a raw client message of ``message_type``; returns its ``event_id``."""
        raise self._unsupported("raw client messages")

    @abc.abstractmethod
    async def create_response(self, **options: Any) -> None:
        """Ask for a response. Queued, never sent while another response is active.

        Options: ``instructions``, ``output_modalities``, ``conversation``
        (``"auto"``/``"none"`` for out-of-band), ``input``, ``tools``, ``tool_choice``,
        ``metadata``.
        """

    async def request_reply(self, *, instructions: str | None = None) -> None:
        """Ask the service for a reply now, on every provider. Never waits for the service
        to acknowledge it (a service that sends no acknowledgement cannot hang the caller):
        it returns once the request is queued. Providers whose service has no explicit
        request (Gemini Live ends the user's turn instead) override this.

        ``instructions`` apply to this reply only where the service allows it
        (``capabilities.per_response_instructions``); elsewhere they raise
        :class:`~voiceengine.exceptions.InvalidState` rather than being dropped.
        """
        if instructions is not None:
            if not isinstance(instructions, str):
                raise TypeError("instructions must be a str or None")
            if not self.get_capabilities().per_response_instructions:
                raise InvalidState(f"{self.name} cannot take per-reply instructions; use update_session()")
            await self.create_response(instructions=instructions)
        else:
            await self.create_response()

    async def cancel_response(self) -> bool:
        """Cancel the active response; returns whether one was active."""
        raise self._unsupported("cancelling a reply")

    async def truncate(self, item_id: str, audio_end_ms: int, *, content_index: int = 0) -> None:
        """Cut an assistant audio item at ``audio_end_ms`` (what the user actually heard)."""
        raise self._unsupported("truncating an item")

    async def interrupt(self, *, item_id: str | None = None, played_ms: int | None = None) -> InterruptResult:
        """Barge-in: cancel the active response and cut the item being heard at ``played_ms``.

        ``item_id`` names the item under the playback read head (``None``: the item whose
        audio arrived last); ``played_ms`` is how much of that item the user heard (from
        the playback buffer's read head); ``None`` means all audio received so far.
        Providers without truncation (``capabilities.truncation`` false) only cancel.
        """
        if played_ms is not None and (type(played_ms) is not int or played_ms < 0):
            raise ValueError(f"played_ms must be an int >= 0 or None, got {played_ms!r}")
        cancelled = await self.cancel_response() if self.get_capabilities().client_cancel else False
        return InterruptResult(item_id=item_id, played_ms=played_ms, action="none", cancelled_response=cancelled)

    async def send_function_result(self, call_id: str, output: Any, *, respond: bool = True) -> str:
        """Send a ``function_call_output`` item (and a response request when ``respond``)."""
        raise self._unsupported("function calls")

    async def update_session(self, **options: Any) -> None:
        """Update session settings (instructions, voice, turn_detection, tools, ...)."""
        raise self._unsupported("session updates")

    def _unsupported(self, what: str) -> InvalidState:
        """The error for a verb this provider's service does not have (see the capabilities);
        never a silent no-op."""
        return InvalidState(f"{self.name}: the service does not support {what}")

    # ------------------------------------------------------------------ info
    @abc.abstractmethod
    def get_audio_format(self) -> tuple[AudioFormat, AudioFormat]:
        """``(input_format, output_format)`` the provider expects and produces."""

    @abc.abstractmethod
    def get_capabilities(self) -> ProviderCapabilities:
        ...

    @property
    @abc.abstractmethod
    def response_active(self) -> bool:
        """Whether a response is in progress (or requested and not yet started)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} state={self._state.value}>"


def coerce_items(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copy wire items into plain dicts (used when replaying a conversation)."""
    return [dict(item) for item in items]
