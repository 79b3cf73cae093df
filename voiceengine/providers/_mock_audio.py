"""Mock audio (private to :mod:`voiceengine.providers.mock`): speech synthesis, input, outages.

:func:`synthesize_speech` makes deterministic, speech-like PCM16 (a harmonic tone burst
per word); :class:`_MockAudioInput` takes the app's input audio and runs the energy VAD
that stands in for the server's turn detection (speech started/stopped, commit, reply).
It also simulates lost connections (``inject_disconnect``) with the OpenAI provider's
continuity contract: replayed items, a bounded input-audio backlog, exact accounting.
"""

from __future__ import annotations

import array
import asyncio
import collections
import functools
import logging
import math
import sys
import zlib
from typing import TYPE_CHECKING, Any, Mapping

from ..exceptions import AudioFormatError
from .types import ConnectionState, ErrorInfo, EventType, ProviderEvent, ReplaySource, TurnDetection

if TYPE_CHECKING:
    from ._mock_responses import _Resp
    from .base import AudioLedger
    from .mock import MockConfig

log = logging.getLogger("voiceengine.providers.mock")

SAMPLE_RATE = 24000
_BYTES_PER_MS = SAMPLE_RATE * 2 // 1000  # 48: 24 kHz mono PCM16
_VAD_FRAME_BYTES = 20 * _BYTES_PER_MS
_MIN_COMMIT_BYTES = 100 * _BYTES_PER_MS  # the service refuses commits under 100 ms


@functools.lru_cache(maxsize=1024)
def _word_audio(word: str, seed: int, ms_per_char: float, gap_ms: float) -> bytes:
    n = int(SAMPLE_RATE * max(80.0, len(word) * ms_per_char) / 1000)
    gap = int(SAMPLE_RATE * gap_ms / 1000)
    # crc32, not hash(): str hashes change between processes (PYTHONHASHSEED)
    h = zlib.crc32(f"{seed}:{word.lower()}".encode())
    f0 = 100.0 + h % 140  # a voice-like fundamental, per word
    w = 2.0 * math.pi * f0 / SAMPLE_RATE
    glide = ((h >> 8) % 21 - 10) / 100.0 / max(n, 1)  # a little intonation
    amp = 0.3 * 32767 / 1.75
    samples = array.array("h", bytes(2 * (n + gap)))
    sin = math.sin
    for i in range(n):
        phase = w * i * (1.0 + glide * i)
        env = sin(math.pi * i / n)
        samples[i] = int(amp * env * (sin(phase) + 0.5 * sin(2 * phase) + 0.25 * sin(3 * phase)))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def synthesize_speech(text: str, *, seed: int = 0, ms_per_char: float = 60.0, gap_ms: float = 40.0) -> bytes:
    """Deterministic speech-like PCM16 (24 kHz mono) for ``text``: one tone burst per word."""
    return b"".join(_word_audio(w, seed, ms_per_char, gap_ms) for w in text.split())


def _pcm_view(audio: Any) -> memoryview:
    if isinstance(audio, str):
        raise TypeError("audio must be a bytes-like PCM16 buffer, not str")
    try:
        view = memoryview(audio)
    except TypeError:
        raise TypeError(f"audio must be a bytes-like PCM16 buffer, got {type(audio).__name__}") from None
    if view.format not in ("B", "b", "c", "h", "<h") or not view.c_contiguous:
        raise TypeError(f"audio must be C-contiguous int16/bytes data, got format {view.format!r}")
    view = view.cast("B")
    if len(view) % 2:
        raise AudioFormatError(f"PCM16 audio needs an even number of bytes, got {len(view)}")
    return view


class _MockAudioInput:
    """Input audio, the energy VAD and simulated outages of
    :class:`~voiceengine.providers.mock.MockProvider` (a mixin; ``MockProvider`` sets up the
    state and provides what is declared below)."""

    config: MockConfig
    audio_ledger: AudioLedger
    _state: ConnectionState
    _backlog: collections.deque[bytes]
    _backlog_bytes: int
    _outage_dropped: int
    _replay_source: ReplaySource | None
    _queue: collections.deque[Mapping[str, Any]]
    _playing: Any
    _connections: int
    session_id: str | None
    _session: dict[str, Any]
    _conv: list[str]
    _active: _Resp | None
    _user_turns: int
    _timeline_bytes: int
    _buffer_bytes: int
    _vad_carry: bytes
    _vad_speaking: bool
    _vad_item: str | None
    _vad_last_voice_ms: int

    if TYPE_CHECKING:  # implemented by MockProvider
        def _require_connected(self) -> None: ...
        def _new_id(self, prefix: str) -> str: ...
        def _record(self, kind: str, name: str, args: Mapping[str, Any] | None = None,
                    event: ProviderEvent | None = None) -> None: ...
        def _ev(self, event_type: EventType, data: Any = None, *, item_id: str | None = None,
                response_id: str | None = None, error: ErrorInfo | None = None) -> None: ...
        def _error(self, code: str, message: str, *, request_type: str | None = None, param: str | None = None,
                   fatal: bool = False) -> ProviderEvent: ...
        def _stop_active(self) -> _Resp | None: ...
        def _emit_cancelled(self, resp: _Resp, reason: str) -> None: ...
        def _request_response(self, options: Mapping[str, Any]) -> None: ...
        def _set_state(self, state: ConnectionState, *, phase: str = "", reason: str = "", attempt: int = 0,
                       close_code: int | None = None, **details: Any) -> None: ...
        async def _cancel_tasks(self) -> None: ...
        async def _tick(self) -> None: ...
        def _info(self, resp: _Resp, status: str, reason: str | None = None) -> Any: ...
        def _reset_session(self) -> None: ...
        def _session_dict(self) -> dict[str, Any]: ...
        def _add(self, item: Mapping[str, Any], previous_item_id: str | None, *, check: bool = True) -> str | None: ...
        def _start_next(self) -> None: ...

    async def send_audio(self, audio: Any) -> None:
        """Append PCM16 24 kHz mono; runs the energy VAD when turn detection is on.

        While reconnecting (:meth:`MockProvider.inject_disconnect`) the audio goes to a
        bounded backlog instead (``reconnect_audio_buffer_ms``, oldest dropped), replayed
        into the restored session. Every byte is accounted in :attr:`audio_ledger`.
        """
        view = _pcm_view(audio)
        if self._state is ConnectionState.RECONNECTING:
            self._record("call", "send_audio", {"bytes": len(view), "backlog": True})
            self.audio_ledger.captured(len(view))
            self._backlog_add(bytes(view))
            return
        self._require_connected()
        self._record("call", "send_audio", {"bytes": len(view)})
        self.audio_ledger.captured(len(view))
        self.audio_ledger.sent(len(view))
        self._feed(view)

    # -------------------------------------------------------- outage backlog
    def _backlog_add(self, pcm: bytes) -> None:
        backlog = self._backlog
        backlog.append(pcm)
        self._backlog_bytes += len(pcm)
        limit = self.config.reconnect_audio_buffer_ms * _BYTES_PER_MS
        excess = self._backlog_bytes - limit
        while excess > 0:
            # the newest speech matters most: drop the OLDEST audio, counted as dropped
            head = backlog[0]
            cut = min(len(head), excess)
            if cut == len(head):
                backlog.popleft()
            else:
                backlog[0] = head[cut:]
            self._backlog_bytes -= cut
            self._outage_dropped += cut
            self.audio_ledger.dropped(cut)
            excess -= cut

    def _backlog_take(self) -> list[bytes]:
        chunks = list(self._backlog)
        self._backlog.clear()
        self._backlog_bytes = 0
        return chunks

    def _backlog_drop(self) -> int:
        """Drop the whole backlog (gave up, failed, disconnected); returns the bytes dropped."""
        n = sum(len(c) for c in self._backlog_take())
        if n:
            self.audio_ledger.dropped(n)
            self._outage_dropped += n
        return n

    def _audio_pending_bytes(self) -> int:
        return self._backlog_bytes

    def _feed(self, view: Any) -> None:
        """Input audio reaching the (mock) server: the buffer and the VAD."""
        self._buffer_bytes += len(view)
        if self._session["turn_detection"] is None:
            self._timeline_bytes += len(view)
            return
        data = self._vad_carry + bytes(view) if self._vad_carry else view
        usable = len(data) - len(data) % _VAD_FRAME_BYTES
        threshold = self.config.vad_threshold_dbfs
        for start in range(0, usable, _VAD_FRAME_BYTES):
            frame = array.array("h", bytes(data[start:start + _VAD_FRAME_BYTES]))
            if sys.byteorder == "big":
                frame.byteswap()
            energy = sum(x * x for x in frame) / len(frame)
            voiced = energy > 0 and 10 * math.log10(energy / (32768.0 * 32768.0)) > threshold
            self._timeline_bytes += _VAD_FRAME_BYTES
            self._vad_frame(voiced, self._timeline_bytes // _BYTES_PER_MS)
        self._vad_carry = bytes(data[usable:])  # counted on the timeline once its frame completes

    # ------------------------------------------------------------ continuity
    async def inject_disconnect(
        self, reason: str = "injected disconnect", *, close_code: int = 1006, reconnect: bool = False,
        downtime_ms: float = 0.0, resume: asyncio.Event | None = None, failed_attempts: int = 0,
    ) -> None:
        """Simulate a lost connection, with the OpenAI provider's continuity contract.

        The active response is lost: reported once as RESPONSE_DONE ``failed`` /
        ``connection_lost`` (never re-requested; queued requests are dropped). Without
        ``reconnect`` the state becomes ERROR (``failed``). With it: the replay source
        (:meth:`set_replay_source`) is called once, CONNECTION_STATE ``reconnecting`` (attempt
        1..n), then the outage lasts ``downtime_ms`` and until ``resume`` is set (audio sent
        meanwhile goes to the bounded backlog); ``failed_attempts`` attempts fail first and
        after ``max_reconnect_attempts`` failures the mock gives up (``gave_up``, backlog
        dropped). On success a fresh session: SESSION_CREATED, SESSION_UPDATED (config plus
        every ``update_session`` so far), each replayed item re-created with its id
        (ITEM_ADDED/ITEM_DONE), the backlog audio, then ``restored`` with the
        :class:`ConnectionChange` details.
        """
        self._record("call", "inject_disconnect", {"reason": reason, "close_code": close_code,
                                                    "reconnect": reconnect, "downtime_ms": downtime_ms,
                                                    "failed_attempts": failed_attempts})
        self._require_connected()
        if downtime_ms < 0 or failed_attempts < 0:
            raise ValueError("downtime_ms and failed_attempts must be >= 0")
        lost = self._stop_active()
        self._queue.clear()
        self._playing = None
        await self._cancel_tasks()
        if lost is not None:
            # a response cut by the loss ends here; asking again is the app's call (a
            # duplicate reply is worse than none)
            self._ev(EventType.RESPONSE_DONE, self._info(lost, "failed", "connection_lost"), response_id=lost.id)
        if not reconnect:
            self._set_state(ConnectionState.ERROR, phase="failed", reason=reason, close_code=close_code)
            return
        items = self._replay_snapshot()
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._outage_dropped = 0
        limit = self.config.max_reconnect_attempts
        attempt = 0
        while True:
            if attempt >= limit:
                self._backlog_drop()
                self._set_state(ConnectionState.ERROR, phase="gave_up", attempt=attempt,
                                reason=f"{reason}: {attempt} reconnect attempt(s) failed" if attempt else reason,
                                dropped_audio_bytes=self._outage_dropped,
                                downtime_ms=(loop.time() - started) * 1000.0)
                return
            attempt += 1
            self._set_state(ConnectionState.RECONNECTING, phase="reconnecting", attempt=attempt,
                            reason=reason if attempt == 1 else f"attempt {attempt - 1} failed",
                            close_code=close_code if attempt == 1 else None)
            if attempt == 1:
                if downtime_ms:
                    await asyncio.sleep(downtime_ms / 1000.0)
                if resume is not None:
                    await resume.wait()
            await self._tick()
            if self._state is not ConnectionState.RECONNECTING:
                return  # disconnect() (or another fault) ended the outage meanwhile
            if attempt > failed_attempts:
                break
        self._restore(items, reason, attempt, (loop.time() - started) * 1000.0)

    def _replay_snapshot(self) -> list[Mapping[str, Any]]:
        """The replay source's items, taken once per outage (when the connection is lost)."""
        source = self._replay_source
        if source is None:
            return []
        try:
            return [dict(item) for item in source()]
        except Exception:
            log.exception("mock: the replay source raised; restoring an empty conversation")
            return []

    def _restore(self, items: list[Mapping[str, Any]], reason: str, attempt: int, downtime_ms: float) -> None:
        # synchronous from here to "restored": no app call can interleave with the replay
        self._connections += 1
        self._reset_session()
        self.session_id = f"sess_mock{self.config.seed}_{self._connections}"
        self._ev(EventType.SESSION_CREATED, {"session": self._session_dict()})
        self._ev(EventType.SESSION_UPDATED, {"session": self._session_dict()})
        replayed = 0
        for item in items:
            if not isinstance(item.get("type"), str):
                self._error("invalid_value", "a replayed item has no 'type'", param="item.type",
                            request_type="conversation.item.create")
                continue
            if self._add(item, None, check=False) is not None:
                replayed += 1
        audio = 0
        for chunk in self._backlog_take():
            self._feed(memoryview(chunk))
            self.audio_ledger.replayed(len(chunk))
            audio += len(chunk)
        self._set_state(ConnectionState.CONNECTED, phase="restored", reason=reason, attempt=attempt,
                        replayed_items=replayed, replayed_audio_bytes=audio,
                        dropped_audio_bytes=self._outage_dropped, downtime_ms=downtime_ms)
        self._start_next()

    def _vad_option(self, name: str, default: Any) -> Any:
        td = self._session["turn_detection"]
        if isinstance(td, TurnDetection):  # the neutral setting, read under its OpenAI names
            value = {"silence_duration_ms": td.silence_ms, "prefix_padding_ms": td.prefix_ms,
                     "threshold": td.threshold, "interrupt_response": td.interrupt_on_speech,
                     "create_response": td.auto_response}.get(name)
            return default if value is None else value
        return td.get(name, default) if isinstance(td, Mapping) else default

    def _vad_frame(self, voiced: bool, end_ms: int) -> None:
        if voiced:
            if not self._vad_speaking:
                self._vad_speaking = True
                self._vad_item = self._new_id("item")
                buffer_start = end_ms - self._buffer_bytes // _BYTES_PER_MS
                start_ms = max(buffer_start, end_ms - 20 - int(self._vad_option("prefix_padding_ms",
                                                                                self.config.vad_prefix_ms)))
                self._ev(EventType.SPEECH_STARTED, {"audio_start_ms": max(0, start_ms)}, item_id=self._vad_item)
                if self._active is not None and self._vad_option("interrupt_response", True):
                    resp = self._stop_active()
                    if resp is not None:
                        self._emit_cancelled(resp, "turn_detected")
            self._vad_last_voice_ms = end_ms
        elif self._vad_speaking and end_ms - self._vad_last_voice_ms >= int(
                self._vad_option("silence_duration_ms", self.config.vad_silence_ms)):
            self._vad_speaking = False
            item_id, self._vad_item = self._vad_item, None
            self._ev(EventType.SPEECH_STOPPED, {"audio_end_ms": self._vad_last_voice_ms}, item_id=item_id)
            self._commit(item_id)
            if self._vad_option("create_response", True):
                self._request_response({})

    def _commit(self, item_id: str | None = None) -> str:
        item_id = item_id or self._new_id("item")
        prev = self._conv[-1] if self._conv else None
        self._buffer_bytes = 0
        self._ev(EventType.INPUT_COMMITTED, {"previous_item_id": prev}, item_id=item_id)
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed", "content": [{"type": "input_audio", "transcript": None}]}
        self._conv.append(item_id)
        self._ev(EventType.ITEM_ADDED, {**item, "previous_item_id": prev}, item_id=item_id)
        self._ev(EventType.ITEM_DONE, {**item, "previous_item_id": prev}, item_id=item_id)
        scripts = self.config.input_transcripts
        if scripts:
            self._ev(EventType.INPUT_TRANSCRIPT, scripts[self._user_turns % len(scripts)], item_id=item_id)
        self._user_turns += 1
        return item_id

    async def commit_audio(self) -> None:
        self._require_connected()
        self._record("call", "commit_audio")
        if self._buffer_bytes < _MIN_COMMIT_BYTES:
            self._error("input_audio_buffer_commit_empty",
                        f"buffer too small: {self._buffer_bytes // _BYTES_PER_MS} ms, need at least 100 ms",
                        request_type="input_audio_buffer.commit")
            return
        item_id, self._vad_item, self._vad_speaking = self._vad_item, None, False
        self._commit(item_id)

    async def clear_audio(self) -> None:
        self._require_connected()
        self._record("call", "clear_audio")
        self._buffer_bytes = 0
        self._vad_carry = b""
        self._vad_speaking, self._vad_item = False, None
        self._ev(EventType.INPUT_CLEARED)
