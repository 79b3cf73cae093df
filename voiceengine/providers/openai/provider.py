"""The OpenAI Realtime (GA) provider: the public API over :class:`.shell.RealtimeShell`.

Each method hands the call to the connection's sans-I/O
:class:`~voiceengine.providers.openai.session.RealtimeSession` (which validates and
encodes) and queues what the session produced for the writer task; see :mod:`.shell` for
the I/O model (one reader task, one writer task, bounded outbound queue).

Reconnects and continuity (docs/reliability.md): after a reconnectable loss (close 1001,
1005, 1006, 1011, 1012, 1013, 1015; 1009 from our ``max_size``; ``session_expired``; a
handshake timeout or retryable status; a keepalive timeout) a fresh ``RealtimeSession``
replays the session config (``start()`` plus every ``update_session`` so far), the items
of :meth:`~OpenAIProvider.set_replay_source` (called once per outage) and the input audio
buffered meanwhile (``reconnect_audio_buffer_ms``), then CONNECTION_STATE ``restored``.
Delays come from ``reconnect_delays`` (:func:`.connection.backoff` by default) slept on
``clock``. The provider gives up (``gave_up``) after ``config.max_reconnect_attempts``
consecutive attempts that did not yield a connection lasting ``stable_after_s``; it never
reconnects after a fatal error (``invalid_api_key``, a 401/403 handshake, close 1008, ...):
``failed``. A response lost with the connection ends with a synthetic RESPONSE_DONE
(``failed``/``connection_lost``) and is not re-requested. Sessions are recycled
``recycle_margin_s`` before the session limit (planned reconnect).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

from ...exceptions import LimitExceeded
from ..types import (
    ReplaySource,
    AudioEncoding,
    AudioFormat,
    ConnectionState,
    InterruptResult,
    MessageType,
    ProviderCapabilities,
)
from .config import VOICES, OpenAIConfig
from .protocol import pcm_bytes
from .shell import RealtimeShell

if TYPE_CHECKING:
    from .session import RealtimeSession

__all__ = ["OpenAIProvider", "ReplaySource"]

_FORMATS = {
    "audio/pcm": AudioFormat(sample_rate=24000, encoding=AudioEncoding.PCM16),
    "audio/pcma": AudioFormat(sample_rate=8000, encoding=AudioEncoding.PCMA),
    "audio/pcmu": AudioFormat(sample_rate=8000, encoding=AudioEncoding.PCMU),
}


class OpenAIProvider(RealtimeShell):
    """The OpenAI Realtime (GA) provider.

    ``OpenAIProvider(config, *, reconnect_delays=None, stable_after_s=10.0,
    send_timeout_s=None, clock=None)``; the keyword options are described on
    :class:`.shell.RealtimeShell`.
    """

    name = "openai"
    config_class = OpenAIConfig

    async def send_audio(self, audio: Any) -> None:
        """Enqueue PCM16 audio at 24 kHz mono (any buffer). Never waits.

        Raises :class:`~voiceengine.exceptions.LimitExceeded` when the outbound queue is
        full (the network is not keeping up; the audio is not taken), ``AudioFormatError``/
        ``TypeError`` for bad buffers, ``InvalidState`` when not connected. While the
        connection is being restored the audio is kept in a bounded backlog
        (``config.reconnect_audio_buffer_ms``, oldest dropped first) and sent after the
        replay; see :attr:`audio_accounting`.
        """
        # while reconnecting the backlog takes it, whatever the outage bookkeeping says
        if not self._ready.is_set() and (self._buffering or self._state is ConnectionState.RECONNECTING):
            self._buffer_audio(audio)
            return
        session = self._usable_session()
        queue = self._outq
        if queue is not None and queue.qsize() >= self._max_queue:
            raise LimitExceeded(
                f"outbound queue full ({self._max_queue} messages): audio refused", limit=self._max_queue,
                size=queue.qsize(),
            )
        view = pcm_bytes(audio)  # validate before anything is counted
        if not len(view):
            return
        self._flush()  # keep wire order = call order
        pcm = bytes(view)  # ours: kept until written, so a lost connection can re-send it
        self.audio_ledger.captured(len(pcm))
        self._queue_audio(session, pcm, replay=False)

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

    @property
    def session(self) -> RealtimeSession | None:
        """The sans-I/O session of the current connection (read-only use)."""
        return self._session

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
        )
