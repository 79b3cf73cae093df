"""A Twilio Media Streams client for the tests: it plays Twilio's side of a call.

It sends ``connected``/``start``/``media`` (mu-law 8 kHz, 20 ms frames)/``dtmf``/``stop``
and models Twilio's playout buffer for the marks: a mark is echoed ``echo_delay_s`` after it
arrived (as if the audio before it took that long to play), or never while ``hold_marks()``
is in force; ``clear`` empties the buffer and echoes every pending mark at once, as Twilio
does. ``heard_ms`` is what this caller has heard: the reply audio before the last mark echoed
as played (marks echoed because of a clear do not count).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from voiceengine.audio import ulaw_decode, ulaw_encode

FRAME_BYTES = 160  # 20 ms of mu-law at 8 kHz


def tone_pcm8k(ms: int, *, hz: float = 440.0, amplitude: float = 0.5) -> bytes:
    """A loud tone (PCM16 8 kHz): the fake server's energy VAD hears it as speech."""
    n = 8 * ms
    peak = int(32767 * amplitude)
    return b"".join(int(peak * math.sin(2 * math.pi * hz * i / 8000)).to_bytes(2, "little", signed=True)
                    for i in range(n))


def silence_pcm8k(ms: int) -> bytes:
    return bytes(16 * ms)


@dataclass
class Received:
    media: list[bytes] = field(default_factory=list)        # mu-law payloads in order
    media_at: list[float] = field(default_factory=list)     # perf_counter at arrival
    marks: list[str] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)       # perf_counter of each clear
    media_before_clear: list[int] = field(default_factory=list)  # len(media) when each clear arrived
    other: list[dict[str, Any]] = field(default_factory=list)


class TwilioCallClient:
    def __init__(self, url: str, *, stream_sid: str = "MZ0001", call_sid: str = "CA0001",
                 parameters: dict[str, str] | None = None, echo_delay_s: float = 0.0) -> None:
        self.url = url
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.parameters = parameters or {}
        self.echo_delay_s = echo_delay_s
        self.ws: ClientConnection | None = None
        self.received = Received()
        self.received_ms = 0.0           # reply audio received
        self.heard_ms = 0.0              # reply audio whose mark was echoed as played
        self.close_code: int | None = None
        self.close_reason = ""
        self._seq = 0
        self._chunk = 0
        self._timestamp_ms = 0
        self._holding = False
        self._pending: list[tuple[str, float, asyncio.TimerHandle | None]] = []
        self._reader: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._media_event = asyncio.Event()
        self._mark_tasks: set[asyncio.Future[None]] = set()

    # ------------------------------------------------------------ lifecycle
    async def connect(self) -> "TwilioCallClient":
        self.ws = await websockets.connect(self.url, max_size=2**20, open_timeout=10)
        self._reader = asyncio.create_task(self._read(), name="twilio-test-client")
        return self

    async def start(self, *, media_format: dict[str, Any] | None = None) -> None:
        await self.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send_json({
            "event": "start", "sequenceNumber": self._next_seq(), "streamSid": self.stream_sid,
            "start": {"accountSid": "AC0001", "streamSid": self.stream_sid, "callSid": self.call_sid,
                      "tracks": ["inbound"], "customParameters": self.parameters,
                      "mediaFormat": media_format or {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                                      "channels": 1}},
        })

    async def __aenter__(self) -> "TwilioCallClient":
        await self.connect()
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for _, _, handle in self._pending:
            if handle is not None:
                handle.cancel()
        self._pending.clear()
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        await asyncio.gather(*self._mark_tasks, return_exceptions=True)

    # ------------------------------------------------------------ sending
    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    async def send_json(self, msg: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(msg))

    async def send_raw(self, frame: str | bytes) -> None:
        assert self.ws is not None
        await self.ws.send(frame)

    async def send_audio(self, pcm8k: bytes, *, pace: float = 0.0) -> None:
        """PCM16 8 kHz -> mu-law media frames of 20 ms (``pace``: x real time, 0 = as fast as possible)."""
        mulaw = ulaw_encode(pcm8k)
        for off in range(0, len(mulaw), FRAME_BYTES):
            self._chunk += 1
            await self.send_json({
                "event": "media", "sequenceNumber": self._next_seq(), "streamSid": self.stream_sid,
                "media": {"track": "inbound", "chunk": str(self._chunk), "timestamp": str(self._timestamp_ms),
                          "payload": base64.b64encode(mulaw[off:off + FRAME_BYTES]).decode()},
            })
            self._timestamp_ms += 20
            if pace:
                await asyncio.sleep(0.02 / pace)

    async def send_dtmf(self, digit: str) -> None:
        await self.send_json({"event": "dtmf", "sequenceNumber": self._next_seq(), "streamSid": self.stream_sid,
                              "dtmf": {"track": "inbound_track", "digit": digit}})

    async def stop(self) -> None:
        await self.send_json({"event": "stop", "sequenceNumber": self._next_seq(), "streamSid": self.stream_sid,
                              "stop": {"accountSid": "AC0001", "callSid": self.call_sid}})

    # ------------------------------------------------------------ marks
    def hold_marks(self) -> None:
        """Twilio's buffer stalls: no mark is echoed as played from now on."""
        self._holding = True
        for i, (name, pos, handle) in enumerate(self._pending):
            if handle is not None:
                handle.cancel()
                self._pending[i] = (name, pos, None)

    def _echo_played(self, name: str, position_ms: float) -> None:
        self._pending = [p for p in self._pending if p[0] != name]
        self.heard_ms = max(self.heard_ms, position_ms)
        self._send_mark_soon(name)

    def _send_mark_soon(self, name: str) -> None:
        if self.ws is not None and not self._closed.is_set():
            task = asyncio.ensure_future(self._send_mark(name))
            self._mark_tasks.add(task)
            task.add_done_callback(self._mark_tasks.discard)

    async def _send_mark(self, name: str) -> None:
        try:
            await self.send_json({"event": "mark", "sequenceNumber": self._next_seq(), "streamSid": self.stream_sid,
                                  "mark": {"name": name}})
        except websockets.ConnectionClosed:
            pass

    # ------------------------------------------------------------ receiving
    async def _read(self) -> None:
        assert self.ws is not None
        loop = asyncio.get_running_loop()
        try:
            async for frame in self.ws:
                msg = json.loads(frame)
                event = msg.get("event")
                if event == "media":
                    payload = base64.b64decode(msg["media"]["payload"])
                    self.received.media.append(payload)
                    self.received.media_at.append(time.perf_counter())
                    self.received_ms += len(payload) / 8.0
                    self._media_event.set()
                elif event == "mark":
                    name = msg["mark"]["name"]
                    self.received.marks.append(name)
                    position = self.received_ms
                    if self._holding:
                        self._pending.append((name, position, None))
                    elif self.echo_delay_s > 0:
                        handle = loop.call_later(self.echo_delay_s, self._echo_played, name, position)
                        self._pending.append((name, position, handle))
                    else:
                        self._echo_played(name, position)
                elif event == "clear":
                    self.received.clears.append(time.perf_counter())
                    self.received.media_before_clear.append(len(self.received.media))
                    pending, self._pending = self._pending, []
                    for name, _, handle in pending:  # dropped audio: echoed, never heard
                        if handle is not None:
                            handle.cancel()
                        self._send_mark_soon(name)
                else:
                    self.received.other.append(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            try:
                rcvd = self.ws.protocol.close_rcvd if self.ws is not None else None
                if rcvd is not None:
                    self.close_code, self.close_reason = rcvd.code, rcvd.reason
            finally:
                self._closed.set()

    async def wait_closed(self, timeout: float = 10.0) -> int | None:
        await asyncio.wait_for(self._closed.wait(), timeout)
        return self.close_code

    async def wait_media_ms(self, ms: float, timeout: float = 15.0) -> None:
        """Until at least ``ms`` of reply audio arrived."""
        deadline = time.monotonic() + timeout
        while self.received_ms < ms:
            self._media_event.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"only {self.received_ms:.0f} of {ms:.0f} ms of reply audio arrived")
            try:
                await asyncio.wait_for(self._media_event.wait(), remaining)
            except TimeoutError:
                pass

    def reply_pcm8k(self) -> bytes:
        return ulaw_decode(b"".join(self.received.media))
