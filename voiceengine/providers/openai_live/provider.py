"""The OpenAI Live provider: a binding of its codec, session and transport to the runtime.

:class:`OpenAILiveProvider` is a :class:`~voiceengine.providers.runtime.ProviderRuntime`
over a :class:`~voiceengine.providers.websocket.WebSocketTransport` (opened by :mod:`.transport`) and one sans-I/O :class:`~.session.LiveSession`
per connection. The runtime owns the tasks, the bounded outbound queue, reconnects, the
audio backlog and restore; the session owns every protocol decision (docs/openai_live.md).

What Live cannot do, and what the verbs do instead (``get_capabilities`` says so):

* no truncation, no client cancel: :meth:`interrupt` ends the reply locally (the engine
  flushes playback) and sends nothing; the service stops by itself when it hears the user.
  :meth:`cancel_response` and :meth:`truncate` raise ``InvalidState``.
* no manual commit: the service owns turn-taking; :meth:`commit_audio` / :meth:`clear_audio`
  raise ``InvalidState``.
* silent context: :meth:`add_item` (a user/system message) -> ``session.thinking.append``;
  :meth:`append_instructions` (trusted developer text) -> ``session.instructions.append``;
  :meth:`speak` -> ``session.commentary.append``.
* immutable session: ``update_session`` accepts only ``instructions`` that *extend* the
  current ones (the extension goes out as ``session.instructions.append``); anything else
  raises ``InvalidState`` (it needs a new session).
* typed turns and tool results go through Responses delegation (needs ``tools``).

Restore: Live has no resumption handle. A fresh session's ``session.start`` carries the
neutral conversation as its text ``input`` history; ``session.closed`` with ``expired`` or
``connection_lost`` and every reconnectable close restore this way.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Mapping

from ...clock import Clock
from ...exceptions import InvalidState
from ..runtime import BackoffPolicy, ProviderRuntime, RuntimeSettings
from ..types import (
    AudioEncoding,
    AudioFormat,
    EventType,
    InterruptResult,
    MessageType,
    ProviderCapabilities,
    ProviderEvent,
    ToolCallCancelled,
)
from ..openai.config import VOICES  # the same built-in voices (custom ones pass through)
from ..websocket import WebSocketTransport
from .config import OpenAILiveConfig
from .session import PROVIDER_NAME, LiveSession
from .transport import open_live_transport

__all__ = ["OpenAILiveProvider"]


def _item_text(content: Any) -> str:
    """The text of a message item's content (a string, or parts with ``text``/``transcript``)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, (list, tuple)):
        return ""
    pieces = []
    for part in content:
        if isinstance(part, Mapping):
            value = part.get("text") if isinstance(part.get("text"), str) else part.get("transcript")
            if isinstance(value, str):
                pieces.append(value)
    return "".join(pieces)


#: backlog audio is replayed in appends of at most this much audio
REPLAY_CHUNK_MS = 500


class OpenAILiveProvider(ProviderRuntime[LiveSession]):
    """The OpenAI Live provider (``/v1/live/sessions``).

    ``OpenAILiveProvider(config, *, reconnect_delays=None, stable_after_s=10.0,
    send_timeout_s=None, clock=None)``; the keyword options are the runtime's.
    ``send_audio`` takes PCM16 mono at ``config.sample_rate`` (any buffer), never waits,
    and should be fed continuously, silence included: Live's timeline moves only with audio.
    """

    name = PROVIDER_NAME
    config_class = OpenAILiveConfig
    config: OpenAILiveConfig

    def __init__(
        self,
        config: OpenAILiveConfig,
        *,
        reconnect_delays: BackoffPolicy | None = None,
        stable_after_s: float = 10.0,
        send_timeout_s: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(config, OpenAILiveConfig):
            raise TypeError(f"{type(self).__name__} needs an OpenAILiveConfig, got {type(config).__name__}")
        bytes_per_ms = config.bytes_per_ms
        settings = RuntimeSettings(
            reconnect=config.reconnect, max_queue_frames=config.max_queue_messages,
            backlog_bytes=config.reconnect_audio_buffer_ms * bytes_per_ms, audio_align=2,
            replay_chunk_bytes=REPLAY_CHUNK_MS * bytes_per_ms, recycle=config.session_limit_s is not None,
            session_limit_s=config.session_limit_s,
            recycle_margin_s=config.recycle_margin_s if config.session_limit_s is not None else 0.0,
            max_inbound_bytes=config.max_size_bytes,
        )
        super().__init__(config, settings, reconnect_delays=reconnect_delays, stable_after_s=stable_after_s,
                         send_timeout_s=send_timeout_s, clock=clock)
        self._context_ids = itertools.count(1)
        self._last_session: LiveSession | None = None  # the runtime forgets a lost one; we ask it what it owed

    # ------------------------------------------------------------ the binding
    async def open_transport(self) -> WebSocketTransport:
        return await open_live_transport(self.config)

    def new_session(self, *, resume_handle: str | None) -> LiveSession:
        previous = self._last_session
        if previous is not None and previous.open_calls:
            # a fresh session cannot take these results: the app must not wait for them
            self._emit(ProviderEvent(type=EventType.TOOL_CALL_CANCELLED, provider=self.name,
                                     session_id=previous.session_id,
                                     data=ToolCallCancelled(call_ids=previous.open_calls)))
        session = LiveSession(self.config, history=self.conversation.replayable(), clock=self.clock.monotonic)
        self._last_session = session
        return session

    def _deliver(self, events: list[ProviderEvent]) -> None:
        for event in events:
            self._observe(event)
            self._emit(event)

    # ------------------------------------------------------------ audio
    async def send_audio(self, audio: Any) -> None:
        """Enqueue input audio (see the runtime); then run the timeline inference, since the
        timeline moves only with the audio sent."""
        await super().send_audio(audio)
        session = self._session
        if session is not None and session.ready:
            self._deliver(session.tick())

    async def commit_audio(self) -> None:
        raise InvalidState("OpenAI Live owns turn-taking: there is no manual commit")

    async def clear_audio(self) -> None:
        raise InvalidState("OpenAI Live owns turn-taking: there is no input buffer to clear")

    # ------------------------------------------------------------ text and context
    async def send_text(self, text: str, *, role: str = "user", respond: bool = True) -> str:
        """A typed user turn (Responses delegation: needs ``tools``); ``role="system"`` text
        is silent context (``session.thinking.append``)."""
        if not isinstance(text, str):
            raise TypeError("text must be a str")
        if role == "user":
            event_id: str = await self._control(lambda s: s.send_user_text(text, respond=respond))
            self._added(event_id, {"type": "message", "role": "user",
                                   "content": [{"type": "input_text", "text": text}]})
            return event_id
        if role in ("system", "developer"):
            return await self._context("thinking", text, role="system")
        raise InvalidState(f"OpenAI Live takes user text or silent system context, not role {role!r}")

    async def add_item(self, item: Mapping[str, Any], *, previous_item_id: str | None = None) -> str:
        """A message item becomes silent context (``session.thinking.append``): Live has no
        conversation items. A user or system message goes as its text; an assistant message
        (a conversation handed over by ``switch_provider``) as "Earlier, the assistant said: ...".
        ``previous_item_id`` cannot be honoured and raises."""
        if previous_item_id is not None:
            raise InvalidState("OpenAI Live cannot position items (no previous_item_id)")
        if item.get("type", "message") != "message":
            raise InvalidState(f"OpenAI Live takes message items only, not {item.get('type')!r}")
        text = _item_text(item.get("content"))
        if not text:
            raise InvalidState("OpenAI Live context needs text")
        role = item.get("role", "user")
        if role == "assistant":
            event_id: str = await self._control(
                lambda s: s.send_context("thinking", f"Earlier, the assistant said: {text}"))
            self._added(event_id, {"type": "message", "role": "assistant",
                                   "content": [{"type": "output_text", "text": text}]})
            return event_id
        return await self._context("thinking", text, role="user" if role == "user" else "system")

    async def append_instructions(self, text: str) -> str:
        """Trusted developer instructions, kept through compaction (``session.instructions.append``).
        Never pass untrusted text (transcripts, tool output) here."""
        if not isinstance(text, str) or not text:
            raise TypeError("text must be a non-empty str")
        return await self._context("instructions", text, role="system")

    async def speak(self, text: str) -> str:
        """Context the model says to the user (``session.commentary.append``)."""
        if not isinstance(text, str) or not text:
            raise TypeError("text must be a non-empty str")
        return await self._context("commentary", text, role=None)

    async def _context(self, kind: str, text: str, *, role: str | None) -> str:
        event_id: str = await self._control(lambda s: s.send_context(kind, text))
        if role is not None:
            self._added(event_id, {"type": "message", "role": role,
                                   "content": [{"type": "input_text", "text": text}]})
        return event_id

    def _added(self, item_id: str, item: Mapping[str, Any]) -> None:
        """Live echoes no item for what the client adds (Realtime sends
        ``conversation.item.added``/``done``): say it ourselves, so the conversation record and
        the engine's state hold it like any other item."""
        session = self._session
        full = {**item, "id": item_id, "status": "completed"}
        self._deliver([ProviderEvent(type=kind, data=full, item_id=item_id, provider=self.name,
                                     session_id=session.session_id if session is not None else None)
                       for kind in (EventType.ITEM_ADDED, EventType.ITEM_DONE)])

    async def send_message(self, message_type: MessageType | str, data: Mapping[str, Any] | None = None) -> str:
        raise InvalidState("OpenAI Live speaks no Realtime client events; use the provider's verbs")

    # ------------------------------------------------------------ replies and tools
    async def create_response(self, **options: Any) -> None:
        """Ask the Responses backend to continue (``response.create``; needs ``tools``).
        Spoken turns never need it: the service answers by itself."""
        if options:
            raise InvalidState(f"OpenAI Live takes no per-reply options ({', '.join(sorted(options))})")
        if not self.config.tools:
            raise InvalidState("OpenAI Live replies by itself; response.create needs Responses delegation (tools)")
        await self._control(lambda s: s.request_backend_reply())

    async def request_reply(self, *, instructions: str | None = None) -> None:
        """Live owns turn-taking: a reply follows the user's turn by itself. With
        ``instructions`` (silent context) the service is told what to do next."""
        if instructions is not None:
            await self._context("thinking", instructions, role=None)
        elif self.config.tools:
            await self.create_response()

    async def cancel_response(self) -> bool:
        raise InvalidState("OpenAI Live has no client cancel: the service stops when it hears the user")

    async def truncate(self, item_id: str, audio_end_ms: int, *, content_index: int = 0) -> None:
        raise InvalidState("OpenAI Live has no truncation")

    async def interrupt(self, *, item_id: str | None = None, played_ms: int | None = None) -> InterruptResult:
        """Barge-in: end the reply locally (nothing on the wire; the service stops by itself
        when it hears the user). ``played_ms`` is recorded as what was heard of it."""
        session = self._session
        if session is None or not session.reply_active:
            return InterruptResult(item_id=item_id, played_ms=played_ms)
        reply_item, response_id = session.reply_ids
        events = session.interrupt()
        heard = played_ms
        if heard is not None:
            events.insert(0, ProviderEvent(type=EventType.ITEM_TRUNCATED, provider=self.name,
                                           session_id=session.session_id, item_id=item_id or reply_item,
                                           data={"content_index": 0, "audio_end_ms": int(heard)}))
        self._deliver(events)
        return InterruptResult(item_id=item_id or reply_item, played_ms=played_ms, audio_end_ms=heard,
                               action="none", cancelled_response=False, response_id=response_id)

    async def send_function_result(self, call_id: str, output: Any, *, respond: bool = True) -> str:
        """The ``function_call_output``. With ``respond`` the round's one ``response.create``
        goes out once every call of the round has its result; without, a later
        :meth:`create_response` asks for it (sent as soon as the round is complete)."""
        text = output if isinstance(output, str) else json.dumps(output, separators=(",", ":"))
        await self._control(lambda s: s.send_function_result(call_id, text, respond=respond))
        entry_id = f"live_output_{next(self._context_ids)}"
        self._added(entry_id, {"type": "function_call_output", "call_id": call_id, "output": text})
        return entry_id

    async def update_session(self, **options: Any) -> None:
        """Live's session is immutable: only ``instructions`` that extend the current ones are
        accepted (the extension is appended with ``session.instructions.append``)."""
        unknown = set(options) - {"instructions"}
        if unknown:
            raise InvalidState(f"OpenAI Live cannot change {', '.join(sorted(unknown))} after start")
        new = options.get("instructions")
        current = self.config.instructions or ""
        if not isinstance(new, str) or not new.startswith(current):
            raise InvalidState("OpenAI Live instructions are immutable; only an extension can be appended")
        extension = new[len(current):].strip()
        if extension:
            await self.append_instructions(extension)
            self.config = self.config.replace(instructions=new)  # a restored session starts with them

    # ---------------------------------------------------------------- info
    @property
    def response_active(self) -> bool:
        session = self._session
        return bool(session is not None and session.reply_active)

    def get_audio_format(self) -> tuple[AudioFormat, AudioFormat]:
        fmt = AudioFormat(sample_rate=self.config.sample_rate, encoding=AudioEncoding.PCM16)
        return fmt, fmt

    def get_capabilities(self) -> ProviderCapabilities:
        fmt, _ = self.get_audio_format()
        return ProviderCapabilities(
            name=self.name, input_format=fmt, output_format=fmt, server_vad=True, semantic_vad=False,
            manual_turns=False, input_transcription=True, text_output=False, audio_output=True,
            function_calling=bool(self.config.tools), truncation=False, item_deletion=False,
            out_of_band_responses=False, per_response_instructions=False, session_update=False,
            server_interruption=True, voices=VOICES, max_session_s=self.config.session_limit_s,
            client_cancel=False, manual_commit=False, silent_context=True, mutable_instructions=False,
            mutable_tools=False, mutable_voice=False, session_resumption=False, item_positioning=False,
        )
