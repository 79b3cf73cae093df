"""The Gemini Live provider: a short binding of the Gemini session and transport to the
provider runtime (:mod:`voiceengine.providers.runtime`, which owns tasks, the outbound queue,
reconnects, the audio backlog and its ledger, recycling and restore).

What is Gemini's own:

* ``connect()`` returns once ``setupComplete`` arrived (the session is ready then).
* Resumption: every setup asks for handles (``sessionResumption``); the newest resumable
  one is kept. After a loss (a reconnectable close, or the end announced by ``goAway``) the
  next connection presents it and nothing is replayed (``restored_by=RESUMPTION``). A
  handle that was refused, or none at all, means a fresh session into which the neutral
  conversation is replayed as initial history (``restored_by=REPLAY``).
* ``goAway``: SESSION_EXPIRING is emitted and a runtime handover
  (:meth:`~voiceengine.providers.runtime.ProviderRuntime.handover`, reason ``go_away``)
  begins: input audio is held from then on, the reply in flight is still received and
  played to its end, and once it ended and a fresh handle came (at the latest
  ``go_away_margin_s`` before ``timeLeft`` runs out) the old connection is closed and the
  session resumed on a new one. Break before make: the live service was reported to refuse
  a resume while the old socket is still open (close 1011; docs/gemini.md).
* No item ids, no truncate, no client cancel: barge-in is the service's
  (SERVER_INTERRUPTED); :meth:`GeminiProvider.interrupt` and :meth:`GeminiProvider.truncate`
  send nothing and only note what was heard for a later replay.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any, Mapping

from ...clock import Clock
from ...exceptions import ConfigurationError, InvalidState
from ..conversation import ConversationEntry, EntryKind
from ..interfaces import Transport
from ..runtime import BackoffPolicy, ProviderRuntime, RuntimeSettings
from ..types import (
    AudioEncoding,
    AudioFormat,
    EventType,
    InterruptResult,
    MessageType,
    ProviderCapabilities,
    ProviderEvent,
    SessionExpiring,
)
from .codec import CLIENT_FIELDS
from .config import INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE, GeminiConfig
from .connection import open_transport
from .session import GeminiSession

__all__ = ["GeminiProvider"]

_INPUT = AudioFormat(sample_rate=INPUT_SAMPLE_RATE, encoding=AudioEncoding.PCM16)
_OUTPUT = AudioFormat(sample_rate=OUTPUT_SAMPLE_RATE, encoding=AudioEncoding.PCM16)
_MUTABLE = frozenset({"instructions", "tools"})


class GeminiProvider(ProviderRuntime[GeminiSession]):
    """The Gemini Live provider.

    ``GeminiProvider(config, *, reconnect_delays=None, stable_after_s=10.0,
    send_timeout_s=None, clock=None, transport_options=None)``; ``transport_options`` go to
    :func:`websockets.asyncio.client.connect` (tests: ``{"ssl": server.ssl_context}``).
    """

    name = "gemini"
    config_class = GeminiConfig

    def __init__(self, config: GeminiConfig, *, reconnect_delays: BackoffPolicy | None = None,
                 stable_after_s: float = 10.0, send_timeout_s: float | None = None, clock: Clock | None = None,
                 transport_options: Mapping[str, Any] | None = None) -> None:
        if not isinstance(config, GeminiConfig):
            raise ConfigurationError(f"GeminiProvider needs a GeminiConfig, got {type(config).__name__}")
        settings = RuntimeSettings(
            reconnect=config.reconnect, max_queue_frames=config.max_queue_messages,
            backlog_bytes=config.reconnect_audio_buffer_ms * _INPUT.bytes_per_second // 1000,
            audio_align=_INPUT.bytes_per_frame, replay_chunk_bytes=_INPUT.bytes_per_second // 10,
            recycle=config.recycle, session_limit_s=config.connection_limit_s,
            recycle_margin_s=config.recycle_margin_s, max_inbound_bytes=config.max_size_bytes,
        )
        super().__init__(config, settings, reconnect_delays=reconnect_delays, stable_after_s=stable_after_s,
                         send_timeout_s=send_timeout_s, clock=clock)
        self.config: GeminiConfig = config
        #: the settings the next connection's setup carries (instructions/tools updated in place)
        self.live_config: GeminiConfig = config
        self._transport_options = dict(transport_options or {})
        self._last_session: GeminiSession | None = None
        self._item_prefix = f"gmc{os.urandom(3).hex()}_"  # ids of items the client added
        self._item_ids = itertools.count(1)
        self._written_at_start = 0  # input audio the runtime had written when that session began
        self.on_event(EventType.SESSION_EXPIRING, self._on_go_away)

    # ------------------------------------------------------------ the binding
    async def open_transport(self) -> Transport:
        return await open_transport(self.live_config, **self._transport_options)

    def new_session(self, *, resume_handle: str | None) -> GeminiSession:
        config = self.live_config
        handle = resume_handle if config.session_resumption else None
        # a fresh session after others: the runtime replays the conversation into it, as
        # initial history (asks for no reply); a first session has nothing to replay
        replay = handle is None and len(self.conversation) > 0
        ledger = self.audio_ledger
        written = ledger.sent_bytes + ledger.replayed_bytes
        previous = self._last_session
        resend: list[bytes] = []
        if handle is not None and previous is not None and previous.resumption_handle == handle:
            # transparent resumption: what the old connection wrote after the handle's state
            resend = previous.unconsumed_audio(written - self._written_at_start)
        session = GeminiSession(config, resumption_handle=handle, replay_history=replay, resend_audio=resend,
                                provider_name=self.name)
        self._last_session, self._written_at_start = session, written
        return session

    # ------------------------------------------------------------ goAway handover
    def _on_go_away(self, event: ProviderEvent) -> None:
        """Hand the session over to a new connection once the reply in flight has ended."""
        notice = event.data
        config = self.config
        drain_s = config.go_away_max_drain_s
        if isinstance(notice, SessionExpiring) and notice.time_left_ms is not None:
            drain_s = min(drain_s, max(0.0, notice.time_left_ms / 1000 - config.go_away_margin_s))
        self.handover("go_away", drained=lambda session: session.handover_ready, deadline_s=drain_s,
                      hold_audio_bytes=int(drain_s * _INPUT.bytes_per_second))

    # ------------------------------------------------------------ input
    async def commit_audio(self) -> None:
        """End the user's turn: ``activityEnd`` (manual turns) or ``audioStreamEnd``; the
        service then replies (Gemini has no commit without a reply)."""
        await self._control(lambda s: s.request_reply())

    async def clear_audio(self) -> None:
        raise InvalidState("Gemini Live cannot discard input audio it has received")

    async def send_text(self, text: str, *, role: str = "user", respond: bool = True) -> str:
        """A text turn (``clientContent``). ``role`` ``user`` or ``assistant`` (sent as the
        model's turn); ``system`` text is sent as user context marked ``[system]``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if role not in ("user", "assistant", "system"):
            raise ValueError(f"role must be user, assistant or system, got {role!r}")
        if role == "user":
            await self._control(lambda s: s.send_text(text, respond=respond))
        else:
            wire_role, wire_text = ("model", text) if role == "assistant" else ("user", f"[system] {text}")
            await self._control(lambda s: s.add_turn(wire_role, wire_text, turn_complete=respond))
        part = {"type": "output_text" if role == "assistant" else "input_text", "text": text}
        return self._local_item({"type": "message", "role": role, "content": [part]})

    async def add_item(self, item: Mapping[str, Any], *, previous_item_id: str | None = None) -> str:
        """A conversation item (OpenAI Realtime shape) as context; Gemini cannot position it."""
        if previous_item_id is not None:
            raise InvalidState("Gemini Live cannot insert an item after another (no item ids)")
        probe = type(self.conversation)(max_entries=1)
        entry_id = probe.add_item(item)
        entry = probe.get(entry_id) if entry_id is not None else None
        if entry is None:
            raise ValueError(f"item type {item.get('type')!r} cannot be sent to Gemini Live")
        await self._control(lambda s: s.add_entry(entry))
        return self._local_item({k: v for k, v in item.items() if k not in ("id", "previous_item_id")})

    async def send_message(self, message_type: MessageType | str, data: Mapping[str, Any] | None = None) -> str:
        """Raw access: a Gemini client field (``clientContent``, ``realtimeInput``,
        ``toolResponse``, ``contextUpdate``) with its body, sent as given; of the OpenAI
        kinds only commit and response.create map (both end the user's turn)."""
        kind = message_type.value if isinstance(message_type, MessageType) else str(message_type)
        if kind in (MessageType.INPUT_AUDIO_BUFFER_COMMIT.value, MessageType.RESPONSE_CREATE.value):
            await self._control(lambda s: s.request_reply())
            return kind
        if kind not in CLIENT_FIELDS:
            raise InvalidState(f"Gemini Live has no {kind!r} message; raw kinds: {sorted(CLIENT_FIELDS)}")
        body = dict(data or {})
        await self._control(lambda s: s.send_raw(kind, body))
        return kind

    # ------------------------------------------------------------ replies
    async def create_response(self, **options: Any) -> None:
        """Ask for a reply: ends the user's turn (Gemini replies to a finished turn).
        Gemini takes no per-reply options; any given raise :class:`InvalidState`."""
        if options:
            raise InvalidState(f"Gemini Live takes no per-reply options (got {sorted(options)})")
        await self._control(lambda s: s.request_reply())

    async def cancel_response(self) -> bool:
        raise InvalidState("Gemini Live has no client-side cancel: the service stops its reply when the user "
                           "speaks (capabilities.client_cancel is False)")

    async def truncate(self, item_id: str, audio_end_ms: int, *, content_index: int = 0) -> None:
        """Sends nothing (Gemini has no truncate); notes what was heard of ``item_id`` so a
        later replay carries only that."""
        if type(audio_end_ms) is not int or audio_end_ms < 0:
            raise ValueError("audio_end_ms must be an int >= 0")
        self._note_heard(item_id, audio_end_ms)

    async def interrupt(self, *, item_id: str | None = None, played_ms: int | None = None) -> InterruptResult:
        """Barge-in on Gemini: the service cuts its reply itself (SERVER_INTERRUPTED) when the
        user speaks; nothing is sent. What was heard is noted for a later replay."""
        session = self.session
        reply_item = item_id
        if reply_item is None and session is not None:
            reply_item = session.current_item_id
        if reply_item is not None and played_ms is not None:
            self._note_heard(reply_item, max(0, int(played_ms)))
        return InterruptResult(item_id=reply_item, played_ms=played_ms, action="none", cancelled_response=False,
                               response_id=session.current_response_id if session is not None else None)

    def _note_heard(self, item_id: str, heard_ms: int) -> None:
        if item_id in self.conversation:
            self.conversation.apply(ProviderEvent(type=EventType.ITEM_TRUNCATED, item_id=item_id, provider=self.name,
                                                  data={"content_index": 0, "audio_end_ms": heard_ms}))

    # ------------------------------------------------------------ tools
    async def send_function_result(self, call_id: str, output: Any, *, respond: bool = True) -> str:
        """``toolResponse`` for ``call_id`` (the function name is remembered from the call);
        ``respond=False`` sends scheduling ``SILENT``."""
        def answer(session: GeminiSession) -> None:
            # decided against the session that sends it: a call made on a connection that a
            # handover replaced is unknown to the resumed one (its toolResponse would be dropped)
            earlier = self._earlier_call(call_id, session)
            if earlier is not None:
                session.send_function_exchange(earlier, output, respond=respond)
            else:
                session.send_function_result(call_id, output, name=self._call_name(call_id, session),
                                             respond=respond)

        await self._control(answer)
        text = output if isinstance(output, str) else json.dumps(output, separators=(",", ":"))
        return self._local_item({"type": "function_call_output", "call_id": call_id, "output": text})

    def _local_item(self, item: dict[str, Any]) -> str:
        """Gemini echoes nothing of what the client adds: say it here, as the item events a
        service with items would send (the record, the engine's state and apps see it)."""
        item_id = f"{self._item_prefix}{next(self._item_ids)}"
        item = {**item, "id": item_id, "status": "completed"}
        for kind in (EventType.ITEM_ADDED, EventType.ITEM_DONE):
            self._emit(ProviderEvent(type=kind, data=item, item_id=item_id, provider=self.name,
                                     session_id=self.session_id))
        return item_id

    def _earlier_call(self, call_id: str, session: GeminiSession) -> ConversationEntry | None:
        """The call, when it came on an earlier connection than ``session``'s (the resumed
        or replayed session does not know it: a ``toolResponse`` would be dropped)."""
        if call_id in session.pending_calls:
            return None
        for entry in reversed(self.conversation.entries):
            if entry.kind is EntryKind.FUNCTION_CALL and entry.call_id == call_id and entry.name:
                return None if session.saw_call(call_id) else entry
        return None

    def _call_name(self, call_id: str, session: GeminiSession) -> str | None:
        if call_id in session.pending_calls:
            return session.pending_calls[call_id]
        for entry in reversed(self.conversation.entries):  # a call made on an earlier connection
            if entry.kind is EntryKind.FUNCTION_CALL and entry.call_id == call_id:
                return entry.name
        return None

    # ------------------------------------------------------------ session settings
    async def update_session(self, **options: Any) -> None:
        """``instructions`` and ``tools`` change in place (``contextUpdate``) and carry over to
        every later connection. Other settings (voice, turn detection, ...) are fixed by the
        setup: pass them in :class:`GeminiConfig` (raises :class:`InvalidState`)."""
        fixed = sorted(set(options) - _MUTABLE)
        if fixed:
            raise InvalidState(f"Gemini Live fixes {fixed} at setup: set them in GeminiConfig")
        if not options:
            return
        new_config = self.live_config.replace(**options)  # validates the tools
        instructions = new_config.instructions or "" if "instructions" in options else None
        tools = list(new_config.tools) if "tools" in options else None
        await self._control(lambda s: s.update_context(instructions=instructions, tools=tools))
        self.live_config = new_config

    # ------------------------------------------------------------ info
    def get_audio_format(self) -> tuple[AudioFormat, AudioFormat]:
        """16 kHz PCM16 mono in, 24 kHz PCM16 mono out."""
        return _INPUT, _OUTPUT

    def get_capabilities(self) -> ProviderCapabilities:
        config = self.live_config
        return ProviderCapabilities(
            name=self.name, input_format=_INPUT, output_format=_OUTPUT,
            server_vad=True, semantic_vad=False, manual_turns=True, input_transcription=config.input_transcription,
            text_output=True, audio_output=True, function_calling=True, truncation=False, item_deletion=False,
            out_of_band_responses=False, per_response_instructions=False, session_update=True,
            server_interruption=True, voices=(), max_session_s=config.effective_session_limit_s,
            client_cancel=False, manual_commit=True, silent_context=True, mutable_instructions=True,
            mutable_tools=True, mutable_voice=False, session_resumption=config.session_resumption,
            item_positioning=False,
        )
