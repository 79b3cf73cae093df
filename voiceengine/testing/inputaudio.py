"""Input audio of a fake session: append/commit/clear and server VAD turns (sans-I/O mixin)."""

from __future__ import annotations

import binascii
import json
from typing import TYPE_CHECKING, Any, Callable

from .audio import alaw_decode, bytes_per_ms, ulaw_decode
from .config import default_transcript
from .sessionconfig import ClientError
from .vad import EnergyVad, VadEventKind, threshold_to_dbfs

__all__ = ["InputAudioMixin", "decode_b64"]


def decode_b64(value: Any, param: str) -> bytes:
    """Strict base64 (no whitespace, no junk) like the service; errors name ``param``."""
    if not isinstance(value, str):
        raise ClientError("invalid_type", f"Invalid type for '{param}': expected a base64 string.", param)
    try:
        return binascii.a2b_base64(value, strict_mode=True) if value else b""
    except (binascii.Error, ValueError):
        raise ClientError("invalid_value", f"Invalid '{param}': not valid base64-encoded audio.", param) from None


class InputAudioMixin:
    """The input side of :class:`~voiceengine.testing.session.FakeSession`."""

    if TYPE_CHECKING:  # provided by FakeSession
        session: dict[str, Any]
        config: Any
        _buffer: bytearray
        _input_bytes_total: int
        _speech_item: str | None
        _speech_start_ms: int
        _vad: EnergyVad | None
        _vad_origin_ms: int
        _turns: int
        _inband: str | None
        interrupts: int
        ignored: Any  # deque of client events that arrived but were never handled
        keep_item_audio: Callable[[str, bytes], None]
        new_id: Callable[[str], str]
        emit: Callable[..., dict[str, Any]]
        cancel: Callable[[str, str], bool]
        insert_item: Callable[[dict[str, Any], str | None], str | None]
        last_item_id: Callable[[], str | None]
        public_item: Callable[..., dict[str, Any]]
        _start_response: Callable[..., str]

    @property
    def input_audio_bytes(self) -> int:
        """Decoded bytes of every ``input_audio_buffer.append`` handled (accepted) so far."""
        return self._input_bytes_total

    @property
    def ignored_audio_bytes(self) -> int:
        """Decoded bytes of the ``input_audio_buffer.append`` messages in ``ignored``."""
        return sum(int(ev.get("audio_bytes", 0)) for ev in self.ignored)

    def record_ignored(self, data: str | bytes) -> None:
        """Note a client message that arrived but was not handled (see ``ignored``); appends
        get an ``audio_bytes`` field (their decoded size, kept even when payloads are not)."""
        try:
            ev = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            ev = None
        if not isinstance(ev, dict):
            ev = {"type": None, "raw_bytes": len(data)}
        elif ev.get("type") == "input_audio_buffer.append":
            audio = ev.get("audio")
            try:
                n = len(binascii.a2b_base64(audio)) if isinstance(audio, str) else 0
            except (binascii.Error, ValueError):
                n = 0
            ev = {**ev, "audio_bytes": n}
            if not self.config.record_audio_payloads:
                ev["audio"] = ""
        self.ignored.append(ev)

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        """The session's current turn detection, or None (manual turns)."""
        td: dict[str, Any] | None = self.session["audio"]["input"].get("turn_detection")
        return td

    def _in_fmt(self) -> str:
        return str(self.session["audio"]["input"]["format"].get("type", "audio/pcm"))

    def _rebuild_vad(self) -> None:
        td = self.turn_detection
        if self._vad is not None and self._vad.speaking and self._speech_item is not None:
            self._speech_item = None
        if td is None:
            self._vad = None
            return
        if td["type"] == "server_vad":
            def pick(key: str, default: float) -> float:
                value = td.get(key)
                return default if value is None else float(value)

            silence = int(pick("silence_duration_ms", 200))
            prefix = int(pick("prefix_padding_ms", 300))
            thr = threshold_to_dbfs(pick("threshold", 0.5))
        else:  # semantic_vad: eagerness stands in for silence duration
            silence = {"low": 800, "medium": 500, "high": 250}.get(td.get("eagerness") or "auto", 500)
            prefix, thr = 300, threshold_to_dbfs(0.5)
        if self.config.vad_threshold_dbfs is not None:
            thr = self.config.vad_threshold_dbfs
        rate = 24000 if self._in_fmt() == "audio/pcm" else 8000
        self._vad = EnergyVad(sample_rate=rate, threshold_dbfs=thr, silence_duration_ms=silence,
                              prefix_padding_ms=prefix, min_speech_ms=self.config.vad_min_speech_ms)
        self._vad_origin_ms = self.input_audio_ms_total()

    # ---------------------------------------------------------------- input audio
    def input_audio_ms_total(self) -> int:
        """Milliseconds of input audio appended during the session."""
        return self._input_bytes_total // bytes_per_ms(self._in_fmt())

    def _buffer_start_ms(self) -> int:
        return (self._input_bytes_total - len(self._buffer)) // bytes_per_ms(self._in_fmt())

    @property
    def input_buffer_ms(self) -> int:
        """Milliseconds of audio in the (uncommitted) input buffer."""
        return len(self._buffer) // bytes_per_ms(self._in_fmt())

    def _on_append(self, ev: dict[str, Any], eid: str | None) -> None:
        if "audio" not in ev:
            raise ClientError("missing_required_parameter", "Missing required parameter: 'audio'.", "audio")
        audio = decode_b64(ev["audio"], "audio")
        fmt = self._in_fmt()
        if fmt == "audio/pcm" and len(audio) % 2:
            raise ClientError("invalid_value", "Invalid 'audio': PCM16 needs an even number of bytes.", "audio")
        bpm = bytes_per_ms(fmt)
        # The same bound with or without server VAD: under VAD the buffer only holds the
        # prefix padding between turns, but speech that never stops would grow it forever.
        # A refused append is not seen by the VAD either; the client commits or clears.
        if (len(self._buffer) + len(audio)) // bpm > self.config.max_input_buffer_ms:
            raise ClientError("input_audio_buffer_too_large",
                              f"The input audio buffer would exceed {self.config.max_input_buffer_ms} ms; "
                              "commit or clear it.", "audio")
        self._buffer.extend(audio)
        self._input_bytes_total += len(audio)
        if self._vad is None:
            return
        pcm = audio if fmt == "audio/pcm" else (ulaw_decode(audio) if fmt == "audio/pcmu" else alaw_decode(audio))
        for vev in self._vad.process(pcm):
            ms = vev.ms + self._vad_origin_ms
            if vev.kind is VadEventKind.SPEECH_STARTED:
                self._speech_start_ms = max(ms, self._buffer_start_ms())
                self._speech_item = self.new_id("item")
                self.emit("input_audio_buffer.speech_started", audio_start_ms=self._speech_start_ms,
                          item_id=self._speech_item)
                td = self.turn_detection or {}
                if self._inband is not None and td.get("interrupt_response", True) is not False:
                    self.interrupts += 1
                    self.cancel(self._inband, "turn_detected")
            else:
                item_id = self._speech_item or self.new_id("item")
                self.emit("input_audio_buffer.speech_stopped", audio_end_ms=ms, item_id=item_id)
                start = max(0, self._speech_start_ms * bpm - (self._input_bytes_total - len(self._buffer)))
                end = max(start, ms * bpm - (self._input_bytes_total - len(self._buffer)))
                segment = bytes(self._buffer[start:end])
                del self._buffer[:end]
                self._speech_item = None
                self._commit(item_id, segment, ms - self._speech_start_ms)
                td = self.turn_detection or {}
                if td.get("create_response", True) is not False and self._inband is None:
                    self._start_response({}, eid=None)
        if not self._vad.speaking:
            # Outside speech only the prefix padding can still matter: keeps memory bounded.
            keep = (self._vad.prefix_padding_ms + 20) * bpm
            if len(self._buffer) > keep:
                del self._buffer[: len(self._buffer) - keep]

    def _on_commit(self, ev: dict[str, Any], eid: str | None) -> None:
        bpm = bytes_per_ms(self._in_fmt())
        have_ms = len(self._buffer) / bpm
        if have_ms < self.config.min_commit_ms:
            raise ClientError(
                "input_audio_buffer_commit_empty",
                f"Error committing input audio buffer: buffer too small. Expected at least "
                f"{self.config.min_commit_ms}ms of audio, but buffer only has {have_ms:.2f}ms of audio.",
            )
        item_id = self._speech_item or self.new_id("item")
        self._speech_item = None
        if self._vad is not None:
            self._vad.reset_state()
        segment = bytes(self._buffer)
        self._buffer.clear()
        self._commit(item_id, segment, int(have_ms))

    def _on_clear(self, ev: dict[str, Any], eid: str | None) -> None:
        self._buffer.clear()
        self._speech_item = None
        if self._vad is not None:
            self._vad.reset_state()
        self.emit("input_audio_buffer.cleared")

    def _commit(self, item_id: str, audio: bytes, audio_ms: int) -> None:
        item: dict[str, Any] = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed", "content": [{"type": "input_audio", "transcript": None}]}
        prev = self.last_item_id()
        self.emit("input_audio_buffer.committed", item_id=item_id, previous_item_id=prev)
        self.insert_item(item, None)
        self.keep_item_audio(item_id, audio)
        self.emit("conversation.item.added", previous_item_id=prev, item=self.public_item(item))
        self.emit("conversation.item.done", previous_item_id=prev, item=self.public_item(item))
        turn = self._turns
        self._turns += 1
        if self.session["audio"]["input"].get("transcription") is None:
            return
        script = self.config.input_transcripts
        if script is None:
            text = default_transcript(turn, audio_ms)
        elif callable(script):
            text = str(script(turn, audio_ms))
        else:
            text = str(script[turn % len(script)]) if len(script) else ""
        for i, word in enumerate(text.split()):
            self.emit("conversation.item.input_audio_transcription.delta", item_id=item_id, content_index=0,
                      delta=word if i == 0 else " " + word)
        item["content"][0]["transcript"] = text
        self.emit("conversation.item.input_audio_transcription.completed", item_id=item_id, content_index=0,
                  transcript=text, usage={"type": "duration", "seconds": audio_ms / 1000.0})

