"""The browser console: :class:`BrowserHandler` serves the page's WebSocket (``/browser``).

The page (``static/console.html``) speaks a small protocol:

page -> server
    ``{"type": "hello", "sampleRate": 48000, "outputSampleRate": 48000}`` first (its capture
    and playback rates); then binary frames of PCM16 mono at ``sampleRate`` (the microphone);
    ``{"type": "played", "positionMs": x}``: the playback worklet consumed the reply stream up
    to ``x`` ms (played, or dropped by a ``clear``); ``{"type": "text", "text": "..."}``: a typed
    user message; ``{"type": "interrupt"}``: the stop button; ``{"type": "bye"}``.
server -> page
    ``{"type": "ready", "callId", "inputSampleRate", "outputSampleRate"}``; binary frames of
    PCM16 mono at ``outputSampleRate`` (the reply, paced in real time by the engine);
    ``{"type": "clear"}`` (barge-in: drop what is queued); ``{"type": "transcript", "role",
    "text", "final"}``; ``{"type": "event", "name", "detail"}`` (the event log);
    ``{"type": "turn", ...}`` (the engine's latencies of a finished turn).

As with Twilio, the played reports drive the heard position (:class:`BrowserSink`), so a
barge-in truncates the reply at what the user actually heard.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any, Callable, Mapping
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..exceptions import ConfigurationError
from ..metrics import TurnMetrics
from ..providers.types import ConnectionChange, EventType, InterruptResult, ProviderEvent, ResponseInfo
from .calls import BadFrame, Call, CallConnection, CallHost, CloseCode, ListenerPosition, Outcome, TransportKind

__all__ = ["BrowserHandler", "BrowserSink"]

log = logging.getLogger("voiceengine.transports.browser")

#: one binary frame holds at most this much audio (the page sends 20 ms)
MAX_FRAME_MS = 1000

_FORWARDED = (
    EventType.SPEECH_STARTED, EventType.SPEECH_STOPPED, EventType.RESPONSE_STARTED, EventType.RESPONSE_DONE,
    EventType.INTERRUPTED, EventType.PLAYBACK_STARTED, EventType.PLAYBACK_STOPPED, EventType.CONNECTION_STATE,
    EventType.ERROR, EventType.TRANSCRIPT_DELTA, EventType.TRANSCRIPT_DONE, EventType.INPUT_TRANSCRIPT,
    EventType.METRICS, EventType.FUNCTION_CALL,
)


class BrowserSink:
    """The engine's sink for one page: PCM16 frames out, the page's played reports in."""

    channels = 1

    def __init__(self, ws: ServerConnection, sample_rate: int, on_sent: Callable[[float], None] | None = None) -> None:
        self._ws = ws
        self.sample_rate = sample_rate
        self._bytes_per_ms = sample_rate * 2 / 1000.0
        self._on_sent = on_sent
        self.position = ListenerPosition()

    async def write(self, pcm: bytes) -> None:
        if not pcm:
            return
        ms = len(pcm) / self._bytes_per_ms
        self.position.sent(ms)
        try:
            await self._ws.send(pcm)
        except ConnectionClosed:
            return
        if self._on_sent is not None:
            self._on_sent(ms / 1000.0)

    def acknowledge(self, position_ms: float) -> None:
        self.position.heard(position_ms)

    def unheard_ms(self) -> float:
        """Audio sent to the page that its playback worklet has not consumed yet."""
        return self.position.unheard_ms

    async def clear(self) -> None:
        self.position.clear()
        try:
            await self._ws.send('{"type":"clear"}')
        except ConnectionClosed:
            pass


def _rate(hello: Mapping[str, Any], key: str) -> int:
    value = hello.get(key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 8000 <= value <= 192000:
        raise BadFrame(f"hello: {key!r} must be an integer in 8000..192000", code="browser_bad_hello",
                       close_code=CloseCode.INVALID_PAYLOAD)
    return value


def _json(frame: str) -> dict[str, Any]:
    try:
        msg = json.loads(frame)
    except ValueError:
        raise BadFrame("text frame is not JSON", code="browser_invalid_json", close_code=CloseCode.INVALID_PAYLOAD) from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise BadFrame("text frame is not a JSON object with a 'type'", code="browser_invalid_json",
                       close_code=CloseCode.INVALID_PAYLOAD)
    return msg


def describe(event: ProviderEvent) -> dict[str, Any]:
    """An engine event as the page shows it (never audio, never raw provider frames)."""
    data = event.data
    if event.type in (EventType.TRANSCRIPT_DELTA, EventType.TRANSCRIPT_DONE, EventType.INPUT_TRANSCRIPT):
        role = "user" if event.type is EventType.INPUT_TRANSCRIPT else "assistant"
        return {"type": "transcript", "role": role, "text": data if isinstance(data, str) else "",
                "final": event.type is not EventType.TRANSCRIPT_DELTA, "itemId": event.item_id}
    if event.type is EventType.METRICS and isinstance(data, TurnMetrics):
        return {"type": "turn", "index": data.index, "status": data.status,
                "firstAudioReceivedMs": data.first_audio_received_ms,
                "firstAudioPlayedMs": data.first_audio_played_ms,
                "interruptLatencyMs": data.interrupt_latency_ms, "truncatedAtMs": data.truncated_at_ms}
    detail = ""
    if isinstance(data, InterruptResult):
        detail = f"{data.action} at {data.audio_end_ms} ms"
    elif isinstance(data, ResponseInfo):
        detail = data.status or ""
    elif isinstance(data, ConnectionChange):
        detail = f"{data.phase} {data.reason}".strip()
    elif event.type is EventType.ERROR and event.error is not None:
        detail = f"{event.error.code}: {event.error.message}"[:200]
    elif event.type is EventType.FUNCTION_CALL:
        detail = str(getattr(data, "name", ""))
    return {"type": "event", "name": event.type.value, "detail": detail}


class BrowserHandler:
    """A websockets connection handler for the console page: one engine per page session.

    ``idle_timeout_s`` bounds the wait for ``hello`` and for any frame afterwards (a live
    page streams the microphone continuously). ``warnings_per_call``: as for Twilio.
    """

    def __init__(self, host: CallHost, *, idle_timeout_s: float = 15.0, warnings_per_call: int = 5) -> None:
        if not isinstance(host, CallHost):
            raise TypeError("host must be a CallHost")
        if idle_timeout_s <= 0 or warnings_per_call < 0:
            raise ConfigurationError("idle_timeout_s > 0 and warnings_per_call >= 0 required")
        self.host = host
        self.idle_timeout_s = idle_timeout_s
        self.warnings_per_call = warnings_per_call

    async def __call__(self, ws: ServerConnection) -> None:
        await _PageSession(self, ws).run()


class _PageSession:
    """One page's connection: its protocol state; :class:`CallConnection` runs its call."""

    def __init__(self, handler: BrowserHandler, ws: ServerConnection) -> None:
        self.host = handler.host
        self.ws = ws
        self.connection = CallConnection(handler.host, ws, TransportKind.BROWSER, log=log, label="page session",
                                         idle_timeout_s=handler.idle_timeout_s,
                                         warnings_per_call=handler.warnings_per_call)
        self.sink: BrowserSink | None = None
        self.input_rate = 0
        self._forwarder: asyncio.Task[None] | None = None

    async def run(self) -> None:
        await self.connection.run(self._frame, peer_gone_reason="page closed", before_end=self._stop_forwarding)

    async def _stop_forwarding(self) -> None:
        if self._forwarder is not None:
            self._forwarder.cancel()
            await asyncio.gather(self._forwarder, return_exceptions=True)

    async def _frame(self, frame: str | bytes) -> Outcome:
        call = self.connection.call
        if isinstance(frame, bytes):
            if call is None:
                raise BadFrame("audio before hello", code="browser_audio_before_hello", close_code=CloseCode.POLICY)
            return await self._audio(call, frame)
        msg = _json(frame)
        kind = msg["type"]
        if kind == "hello":
            return await self._hello(msg)
        if call is None or self.sink is None:
            raise BadFrame(f"{kind!r} before hello", code="browser_before_hello", close_code=CloseCode.POLICY)
        if kind == "played":
            position = msg.get("positionMs")
            if not isinstance(position, (int, float)) or isinstance(position, bool) or position < 0:
                raise BadFrame("played: 'positionMs' must be a number >= 0", code="browser_bad_played")
            self.sink.acknowledge(float(position))
            return None
        if kind == "text":
            text = msg.get("text")
            if not isinstance(text, str) or not text.strip() or len(text) > 4000:
                raise BadFrame("text: 'text' must be a non-empty string (<= 4000 chars)", code="browser_bad_text")
            return await self.connection.request(call.engine.send_text(text))
        if kind == "interrupt":
            return await self.connection.request(call.engine.interrupt())
        if kind == "bye":
            return CloseCode.NORMAL, "bye"
        raise BadFrame(f"unknown message type {kind[:40]!r}", code="browser_unknown_type")

    async def _hello(self, hello: Mapping[str, Any]) -> Outcome:
        if self.connection.call is not None:
            raise BadFrame("a second hello", code="browser_second_hello", close_code=CloseCode.POLICY)
        self.input_rate = _rate(hello, "sampleRate")
        output_rate = _rate(hello, "outputSampleRate")
        request_path = self.ws.request.path if self.ws.request is not None else ""
        call_id = f"page_{uuid.uuid4().hex[:16]}"
        info = self.connection.call_info(call_id=call_id, stream_id=call_id,
                                         parameters=dict(parse_qsl(urlsplit(request_path).query)))
        self.sink = BrowserSink(self.ws, output_rate, on_sent=lambda s: self.host.observer.audio_out(info, s))
        refused = await self.connection.start(info, self.sink)
        if refused is not None or self.connection.call is None:
            return refused
        stream = self.connection.call.engine.events.stream(_FORWARDED, maxsize=512)
        self._forwarder = asyncio.create_task(self._forward(stream), name=f"voiceengine-page-{call_id}")
        await self.ws.send(json.dumps({"type": "ready", "callId": call_id, "inputSampleRate": self.input_rate,
                                       "outputSampleRate": output_rate}))
        return None

    async def _forward(self, stream: Any) -> None:
        async with stream:
            async for event in stream:
                try:
                    await self.ws.send(json.dumps(describe(event)))
                except ConnectionClosed:
                    return

    async def _audio(self, call: Call, frame: bytes) -> Outcome:
        if len(frame) % 2:
            raise BadFrame("audio frame with an odd byte count (PCM16 expected)", code="browser_bad_audio")
        if len(frame) > self.input_rate * 2 * MAX_FRAME_MS // 1000:
            raise BadFrame(f"audio frame longer than {MAX_FRAME_MS} ms", code="browser_bad_audio")
        if not frame:
            return None
        self.host.observer.audio_in(call.info, len(frame) / (2 * self.input_rate))
        return await self.connection.request(call.engine.send_audio(frame, sample_rate=self.input_rate))
