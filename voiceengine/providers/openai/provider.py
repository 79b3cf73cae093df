"""The OpenAI Realtime (GA) provider: the public API over :class:`.shell.RealtimeShell`.

Each method hands the call to the connection's sans-I/O
:class:`~voiceengine.providers.openai.session.RealtimeSession` (which validates and
encodes) and queues what the session produced for the writer task; see :mod:`.shell` for
the I/O model (one reader task, one writer task, bounded outbound queue).

Reconnects: after a close with a code in
:data:`~voiceengine.providers.openai.connection.RECONNECTABLE_CLOSE_CODES` (or after a
``session_expired`` error), a fresh ``RealtimeSession`` replays the session config
(``start()`` plus every ``update_session`` so far) and ``_replay_items_on_reconnect``
replays the items given by :meth:`~OpenAIProvider.set_replay_source`. Delays come from
``reconnect_delays`` (a replaceable policy, :func:`.connection.backoff` by default). The
provider gives up after ``config.max_reconnect_attempts`` consecutive attempts that did
not yield a connection lasting ``stable_after_s``; it never reconnects after a fatal
error (``invalid_api_key``, a 401/403 handshake, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from ...exceptions import LimitExceeded
from ..types import (
    AudioEncoding,
    AudioFormat,
    ConnectionState,
    InterruptResult,
    MessageType,
    ProviderCapabilities,
)
from .config import VOICES, OpenAIConfig
from .shell import RealtimeShell, ReplaySource

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
    send_timeout_s=None)``; the keyword options are described on :class:`.shell.RealtimeShell`.
    """

    name = "openai"
    config_class = OpenAIConfig

    async def send_audio(self, audio: Any) -> None:
        """Enqueue PCM16 audio at 24 kHz mono (any buffer). Never waits.

        Raises :class:`~voiceengine.exceptions.LimitExceeded` when the outbound queue is
        full (the network is not keeping up), ``AudioFormatError``/``TypeError`` for bad
        buffers, ``InvalidState`` when not connected. While reconnecting the audio is
        dropped and counted in ``stats["audio_bytes_dropped"]``.
        """
        if not self._ready.is_set() and self._state is ConnectionState.RECONNECTING:
            self._audio_while_disconnected(audio)
            return
        session = self._usable_session()
        queue = self._outq
        if queue is not None and queue.qsize() >= self._max_queue:
            raise LimitExceeded(
                f"outbound queue full ({self._max_queue} messages): audio refused", limit=self._max_queue,
                size=queue.qsize(),
            )
        session.append_audio(audio)
        self._flush()

    def _audio_while_disconnected(self, audio: Any) -> None:
        """Hook: audio sent while reconnecting. Dropped and counted here."""
        try:
            size = memoryview(audio).nbytes
        except TypeError:
            raise TypeError(f"audio must be a PCM16 buffer, got {type(audio).__name__}") from None
        self.stats["audio_bytes_dropped"] += size

    async def commit_audio(self) -> None:
        await self._control(lambda s: s.commit_audio())

    async def clear_audio(self) -> None:
        await self._control(lambda s: s.clear_audio())

    async def send_text(self, text: str, *, role: str = "user", respond: bool = True) -> str:
        result: str = await self._control(lambda s: s.send_text(text, role=role, respond=respond))
        return result

    async def add_item(self, item: Mapping[str, Any], *, previous_item_id: str | None = None) -> str:
        result: str = await self._control(lambda s: s.add_item(item, previous_item_id=previous_item_id))
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
            max_session_s=self.config.session_limit_s,
        )
