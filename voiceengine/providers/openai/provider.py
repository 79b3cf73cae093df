"""The OpenAI Realtime (GA) provider: a binding of its codec, session and transport to the runtime.

:class:`OpenAIProvider` is a :class:`~voiceengine.providers.runtime.ProviderRuntime` over a
:class:`~voiceengine.providers.websocket.WebSocketTransport` and one sans-I/O
:class:`~voiceengine.providers.openai.session.RealtimeSession` per connection. Each public
method hands the call to the session (which validates and encodes) through the runtime's
``_control``; the runtime owns the tasks, the bounded outbound queue, reconnects, the
audio backlog, recycling and restore (docs/reliability.md).

Reconnects: after a reconnectable loss (close 1001, 1005, 1006, 1011, 1012, 1013, 1015;
1009 from our ``max_size``; ``session_expired``; a handshake timeout or retryable status;
a keepalive timeout) a fresh ``RealtimeSession`` replays the session config (``start()``
plus every ``update_session`` so far), the conversation (the items of
:meth:`~OpenAIProvider.set_replay_source` when set, else the provider's own
:attr:`~OpenAIProvider.conversation`, taken once per outage; Realtime sessions cannot be
resumed) and the input audio buffered meanwhile (``reconnect_audio_buffer_ms``), then
CONNECTION_STATE ``restored`` with ``restored_by="replay"``. The provider gives up
(``gave_up``) after ``config.max_reconnect_attempts`` consecutive attempts that did not
yield a connection lasting ``stable_after_s``; it never reconnects after a fatal error
(``invalid_api_key``, a 401/403 handshake, close 1008, ...): ``failed``. Sessions are
recycled ``recycle_margin_s`` before the session limit (planned reconnect).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from ...clock import Clock
from ..runtime import BackoffPolicy, ProviderRuntime, RuntimeSettings
from ..types import AudioEncoding, AudioFormat, InterruptResult, MessageType, ProviderCapabilities
from ..websocket import WebSocketTransport
from .config import VOICES, OpenAIConfig
from .connection import open_transport
from .session import RealtimeSession

__all__ = ["OpenAIProvider"]

#: backlog audio is replayed in appends of at most this much audio (fewer, bigger frames)
REPLAY_CHUNK_MS = 500

_FORMATS = {
    "audio/pcm": AudioFormat(sample_rate=24000, encoding=AudioEncoding.PCM16),
    "audio/pcma": AudioFormat(sample_rate=8000, encoding=AudioEncoding.PCMA),
    "audio/pcmu": AudioFormat(sample_rate=8000, encoding=AudioEncoding.PCMU),
}


class OpenAIProvider(ProviderRuntime[RealtimeSession]):
    """The OpenAI Realtime (GA) provider.

    ``OpenAIProvider(config, *, reconnect_delays=None, stable_after_s=10.0,
    send_timeout_s=None, clock=None)``; the keyword options are described on
    :class:`~voiceengine.providers.runtime.ProviderRuntime`. ``send_audio`` takes PCM16
    24 kHz mono (any buffer) and never waits.
    """

    name = "openai"
    config_class = OpenAIConfig
    config: OpenAIConfig

    def __init__(
        self,
        config: OpenAIConfig,
        *,
        reconnect_delays: BackoffPolicy | None = None,
        stable_after_s: float = 10.0,
        send_timeout_s: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(config, OpenAIConfig):
            raise TypeError(f"{type(self).__name__} needs an OpenAIConfig, got {type(config).__name__}")
        settings = RuntimeSettings(
            reconnect=config.reconnect, max_queue_frames=config.max_queue_messages,
            backlog_bytes=config.reconnect_audio_buffer_ms * config.input_bytes_per_ms, audio_align=2,
            replay_chunk_bytes=REPLAY_CHUNK_MS * config.input_bytes_per_ms, recycle=config.recycle,
            session_limit_s=config.effective_session_limit_s, recycle_margin_s=config.recycle_margin_s,
            max_inbound_bytes=config.max_size_bytes,
        )
        super().__init__(config, settings, reconnect_delays=reconnect_delays, stable_after_s=stable_after_s,
                         send_timeout_s=send_timeout_s, clock=clock)
        self._session_options: dict[str, Any] = {}

    # ------------------------------------------------------------ the binding
    async def open_transport(self) -> WebSocketTransport:
        return await open_transport(self.config)

    def new_session(self, *, resume_handle: str | None) -> RealtimeSession:
        # drop_duplicate_audio: audio deltas carry no raw event, so downstream consumers
        # (the engine dedupes by raw["event_id"]) cannot spot a delta delivered twice
        return RealtimeSession(self.config, provider_name=self.name, drop_duplicate_audio=True,
                               replay_options=self._session_options)

    # ------------------------------------------------------------ the verbs
    async def commit_audio(self) -> None:
        await self._control(lambda s: s.commit_audio())

    async def clear_audio(self) -> None:
        await self._control(lambda s: s.clear_audio())

    async def send_text(self, text: str, *, role: str = "user", respond: bool = True) -> str:
        result: str = await self._control(lambda s: s.send_text(text, role=role, respond=respond))
        self.conversation.add_message(role, text, entry_id=result)
        return result

    async def add_item(self, item: Mapping[str, Any], *, previous_item_id: str | None = None) -> str:
        result: str = await self._control(lambda s: s.add_item(item, previous_item_id=previous_item_id))
        self.conversation.add_item({**item, "id": result}, previous_id=previous_item_id)
        return result

    async def send_message(self, message_type: MessageType | str, data: Mapping[str, Any] | None = None) -> str:
        result: str = await self._control(lambda s: s.send_raw(message_type, data))
        return result

    async def create_response(self, **options: Any) -> None:
        """Ask for a response; the session queues it while another one is active."""
        await self._control(lambda s: s.create_response(**options))

    async def cancel_response(self) -> bool:
        result: bool = await self._control(lambda s: s.cancel_response())
        return result

    async def truncate(self, item_id: str, audio_end_ms: int, *, content_index: int = 0) -> None:
        await self._control(lambda s: s.truncate(item_id, audio_end_ms, content_index=content_index))

    async def interrupt(self, *, played_ms: int | None = None, item_id: str | None = None) -> InterruptResult:
        """Barge-in: cancel the active response (unless the server already does) and cut the
        current item (or ``item_id``) at ``played_ms``, clamped to the audio received;
        0 ms deletes it. ``None`` = everything received was heard."""
        result: InterruptResult = await self._control(lambda s: s.interrupt(played_ms=played_ms, item_id=item_id))
        return result

    async def send_function_result(self, call_id: str, output: Any, *, respond: bool = True) -> str:
        result: str = await self._control(lambda s: s.send_function_result(call_id, output, respond=respond))
        text = output if isinstance(output, str) else json.dumps(output, separators=(",", ":"))
        self.conversation.add_function_output(call_id, text, entry_id=result)
        return result

    async def update_session(self, **options: Any) -> None:
        """Update session settings; they are also re-applied to every reconnected session."""
        await self._control(lambda s: s.update_session(**options))
        self._session_options.update(options)

    # ---------------------------------------------------------------- info
    @property
    def response_active(self) -> bool:
        return bool(self._session is not None and self._session.response_active)

    def get_audio_format(self) -> tuple[AudioFormat, AudioFormat]:
        return _FORMATS[self.config.input_audio_format], _FORMATS[self.config.output_audio_format]

    def get_capabilities(self) -> ProviderCapabilities:
        input_format, output_format = self.get_audio_format()
        return ProviderCapabilities(
            name=self.name, input_format=input_format, output_format=output_format,
            server_vad=True, semantic_vad=True, manual_turns=True, input_transcription=True,
            text_output=True, audio_output=True, function_calling=True, truncation=True,
            item_deletion=True, out_of_band_responses=True, per_response_instructions=True,
            session_update=True, server_interruption=True, voices=VOICES,
            max_session_s=self.config.effective_session_limit_s,
            # the voice is fixed once the session produced audio: not mutable mid-session
            client_cancel=True, manual_commit=True, silent_context=True, mutable_instructions=True,
            mutable_tools=True, mutable_voice=False, session_resumption=False, item_positioning=True,
            held_replies=True,
        )
