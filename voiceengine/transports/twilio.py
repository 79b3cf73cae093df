"""Phone calls: :class:`TwilioMediaStreamHandler` serves Twilio Media Streams WebSockets.

Caller audio: ``media`` payload -> mu-law decode (audio core) -> PCM16 8 kHz ->
``engine.send_audio(sample_rate=8000)``, which resamples to the provider's rate. Reply audio:
the engine's playback clock (real time, 20 ms ticks) resamples to 8 kHz -> :class:`TwilioSink`
-> mu-law encode -> ``media`` + a ``mark`` naming the stream position at the end of that
audio. Twilio echoes a mark once the audio before it has played, so the sink knows what the
caller has *heard*; the engine subtracts the unheard rest (:meth:`TwilioSink.unheard_ms`) at a
barge-in, then calls :meth:`TwilioSink.clear`, which sends ``clear`` at once.

Use it in your own websockets server::

    host = CallHost(EngineFactory(provider="openai", config=VoiceEngineConfig(instructions="...")))
    twilio = TwilioMediaStreamHandler(host, on_dtmf=lambda call, digit: ...)
    async with websockets.asyncio.server.serve(twilio, "0.0.0.0", 8080):
        ...
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..audio import ulaw_decode, ulaw_encode
from ..exceptions import ConfigurationError
from .calls import Call, CallConnection, CallHost, CloseCode, ListenerPosition, Outcome, TransportKind, call_hook
from .twilio_protocol import (
    MULAW_RATE,
    Connected,
    Dtmf,
    Mark,
    Media,
    Start,
    Stop,
    decode,
    encode_clear,
    encode_mark,
    encode_media,
)

__all__ = ["TwilioMediaStreamHandler", "TwilioSink"]

log = logging.getLogger("voiceengine.transports.twilio")

_MARK_PREFIX = "ve:"
_BYTES_PER_MS = MULAW_RATE * 2 / 1000.0  # PCM16 at 8 kHz

DtmfHook = Callable[[Call, str], "Awaitable[None] | None"]


class TwilioSink:
    """The engine's sink for one Twilio stream (PCM16 8 kHz mono in, ``media`` + ``mark`` out)."""

    sample_rate = MULAW_RATE
    channels = 1

    def __init__(self, ws: ServerConnection, stream_sid: str, on_sent: Callable[[float], None] | None = None) -> None:
        self._ws = ws
        self._stream_sid = stream_sid
        self._on_sent = on_sent
        self.position = ListenerPosition()

    async def write(self, pcm: bytes) -> None:
        if not pcm:
            return
        ms = len(pcm) / _BYTES_PER_MS
        end = self.position.sent(ms)
        try:
            await self._ws.send(encode_media(self._stream_sid, ulaw_encode(pcm)))
            await self._ws.send(encode_mark(self._stream_sid, f"{_MARK_PREFIX}{end:.3f}"))
        except ConnectionClosed:
            return  # the call is ending; the handler closes the engine
        if self._on_sent is not None:
            self._on_sent(ms / 1000.0)

    def acknowledge(self, name: str) -> bool:
        """A ``mark`` echo: the caller heard everything up to its position. False: not ours."""
        if not name.startswith(_MARK_PREFIX):
            return False
        try:
            position = float(name[len(_MARK_PREFIX):])
        except ValueError:
            return False
        self.position.heard(position)
        return True

    def unheard_ms(self) -> float:
        """Audio sent to Twilio whose mark has not come back: still in Twilio's buffer."""
        return self.position.unheard_ms

    async def clear(self) -> None:
        """Barge-in: Twilio drops what it holds (its marks come back; they change nothing)."""
        self.position.clear()
        try:
            await self._ws.send(encode_clear(self._stream_sid))
        except ConnectionClosed:
            pass


class TwilioMediaStreamHandler:
    """A websockets connection handler for Twilio Media Streams: one call per connection.

    ``host`` builds and tracks the calls (:class:`CallHost`). ``on_dtmf(call, digit)`` gets
    each keypad digit. ``idle_timeout_s``: a stream sends 50 frames a second, so a stream
    silent this long is dead and is closed (code 4408). ``warnings_per_call`` bounds the
    warnings logged for dropped frames of one call (the rest are counted and summed up once
    at the end of the call).
    """

    def __init__(self, host: CallHost, *, on_dtmf: DtmfHook | None = None, idle_timeout_s: float = 10.0,
                 warnings_per_call: int = 5) -> None:
        if not isinstance(host, CallHost):
            raise TypeError("host must be a CallHost")
        if idle_timeout_s <= 0 or warnings_per_call < 0:
            raise ConfigurationError("idle_timeout_s > 0 and warnings_per_call >= 0 required")
        self.host = host
        self.on_dtmf = on_dtmf
        self.idle_timeout_s = idle_timeout_s
        self.warnings_per_call = warnings_per_call

    async def __call__(self, ws: ServerConnection) -> None:
        await _TwilioStream(self, ws).run()


class _TwilioStream:
    """One Media Streams connection: its protocol state; :class:`CallConnection` runs its call."""

    def __init__(self, handler: TwilioMediaStreamHandler, ws: ServerConnection) -> None:
        self.handler = handler
        self.host = handler.host
        self.ws = ws
        self.connection = CallConnection(handler.host, ws, TransportKind.TWILIO, log=log, label="twilio stream",
                                         idle_timeout_s=handler.idle_timeout_s,
                                         warnings_per_call=handler.warnings_per_call)
        self.sink: TwilioSink | None = None

    async def run(self) -> None:
        await self.connection.run(self._frame, peer_gone_reason="closed without stop")

    async def _frame(self, frame: str | bytes) -> Outcome:
        event = decode(frame)
        call = self.connection.call
        if isinstance(event, Media):
            return await self._media(event)
        if isinstance(event, Mark):
            if self.sink is None or not self.sink.acknowledge(event.name):
                self.connection.drop(f"mark {event.name[:40]!r} is not one of ours")
            return None
        if isinstance(event, Start):
            return await self._start(event)
        if isinstance(event, Dtmf):
            if call is None:
                self.connection.drop("dtmf before start")
                return None
            await call_hook(self.handler.on_dtmf, call, event.digit)
            return None
        if isinstance(event, Stop):
            return CloseCode.NORMAL, "stop"
        if isinstance(event, Connected):
            return None
        raise TypeError(f"unhandled Twilio event {type(event).__name__}")  # decode() returns the types above

    async def _start(self, start: Start) -> Outcome:
        if self.connection.call is not None:
            self.host.observer.error(TransportKind.TWILIO, "twilio_second_start")
            return CloseCode.POLICY, "a second start on one stream"
        info = self.connection.call_info(call_id=start.call_sid, stream_id=start.stream_sid,
                                         parameters=start.custom_parameters)
        self.sink = TwilioSink(self.ws, start.stream_sid,
                               on_sent=lambda seconds: self.host.observer.audio_out(info, seconds))
        return await self.connection.start(info, self.sink)

    async def _media(self, media: Media) -> Outcome:
        call = self.connection.call
        if call is None:
            self.host.observer.error(TransportKind.TWILIO, "twilio_media_before_start")
            return CloseCode.POLICY, "media before start"
        if media.track not in ("inbound", "inbound_track") or not media.payload:
            return None  # both_tracks streams also carry our own audio back: not the caller
        self.host.observer.audio_in(call.info, len(media.payload) / MULAW_RATE)
        return await self.connection.request(
            call.engine.send_audio(ulaw_decode(media.payload), sample_rate=MULAW_RATE))
