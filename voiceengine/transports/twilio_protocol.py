"""The Twilio Media Streams wire protocol, sans I/O: JSON text in, typed events out; and back.

Inbound (Twilio -> us), one JSON object per text frame, keyed by ``event``: ``connected``,
``start`` (``streamSid``, ``callSid``, ``mediaFormat`` audio/x-mulaw 8000 Hz mono,
``customParameters``), ``media`` (``track``, ``chunk``, ``timestamp``, ``payload`` = base64
mu-law), ``mark`` (the echo of a mark we sent, once the audio before it has played),
``dtmf`` (``digit``), ``stop``. Outbound: ``media`` (``media.payload``), ``mark``
(``mark.name``), ``clear`` (drop the audio Twilio still holds; it then echoes the marks of
the dropped audio).

:func:`decode` raises :class:`~voiceengine.transports.calls.BadFrame` for a frame that breaks
the protocol: with a close code when the call cannot go on (not JSON: 1007; not the
format we speak: 1003), without one when the frame alone is dropped (bad base64, an unknown
event: the stream goes on).
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .calls import BadFrame, CloseCode

__all__ = [
    "Connected", "Start", "Media", "Mark", "Dtmf", "Stop", "TwilioEvent",
    "decode", "encode_media", "encode_mark", "encode_clear",
    "MULAW_RATE", "MAX_MEDIA_BYTES",
]

MULAW_RATE = 8000

#: one media payload is 20 ms (160 bytes); anything beyond this is not a phone stream
MAX_MEDIA_BYTES = 8000


@dataclass(frozen=True, slots=True, kw_only=True)
class Connected:
    protocol: str = ""
    version: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str = ""
    tracks: tuple[str, ...] = ("inbound",)
    custom_parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Media:
    track: str
    chunk: int
    timestamp_ms: int
    payload: bytes  # mu-law 8 kHz


@dataclass(frozen=True, slots=True, kw_only=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Dtmf:
    digit: str
    track: str = "inbound_track"


@dataclass(frozen=True, slots=True, kw_only=True)
class Stop:
    call_sid: str = ""


TwilioEvent = Connected | Start | Media | Mark | Dtmf | Stop

_DTMF_DIGITS = frozenset("0123456789*#ABCD")


def _obj(msg: Mapping[str, Any], key: str, event: str) -> Mapping[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise BadFrame(f"{event} event without a {key!r} object", code="twilio_bad_event", close_code=CloseCode.INVALID_PAYLOAD)
    return value


def _str(obj: Mapping[str, Any], key: str, event: str, *, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str) or (default is None and not value):
        raise BadFrame(f"{event} event: {key!r} must be a non-empty string", code="twilio_bad_event",
                       close_code=CloseCode.INVALID_PAYLOAD)
    return value


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key, 0)
    try:  # Twilio sends chunk and timestamp as decimal strings
        return int(value)
    except (TypeError, ValueError):
        raise BadFrame(f"media event: {key!r} is not a number", code="twilio_bad_media") from None


def _connected(msg: Mapping[str, Any]) -> Connected:
    protocol, version = msg.get("protocol", ""), msg.get("version", "")
    return Connected(protocol=protocol if isinstance(protocol, str) else "",
                     version=version if isinstance(version, str) else "")


def _start(msg: Mapping[str, Any]) -> Start:
    start = _obj(msg, "start", "start")
    fmt = start.get("mediaFormat", {"encoding": "audio/x-mulaw", "sampleRate": MULAW_RATE, "channels": 1})
    if not isinstance(fmt, dict):
        raise BadFrame("start event: 'mediaFormat' must be an object", code="twilio_bad_event",
                       close_code=CloseCode.INVALID_PAYLOAD)
    if (fmt.get("encoding"), fmt.get("sampleRate"), fmt.get("channels", 1)) != ("audio/x-mulaw", MULAW_RATE, 1):
        raise BadFrame(f"unsupported media format {fmt.get('encoding')!r} {fmt.get('sampleRate')!r} Hz "
                       f"{fmt.get('channels', 1)!r} ch (audio/x-mulaw 8000 Hz mono only)",
                       code="twilio_bad_format", close_code=CloseCode.UNSUPPORTED_DATA)
    params = start.get("customParameters", {})
    if not isinstance(params, dict):
        raise BadFrame("start event: 'customParameters' must be an object", code="twilio_bad_event",
                       close_code=CloseCode.INVALID_PAYLOAD)
    tracks = start.get("tracks", ["inbound"])
    if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
        raise BadFrame("start event: 'tracks' must be a list of strings", code="twilio_bad_event",
                       close_code=CloseCode.INVALID_PAYLOAD)
    stream_sid = msg.get("streamSid") or start.get("streamSid")
    return Start(
        stream_sid=_str({"streamSid": stream_sid}, "streamSid", "start"),
        call_sid=_str(start, "callSid", "start"),
        account_sid=_str(start, "accountSid", "start", default=""),
        tracks=tuple(tracks),
        custom_parameters={str(k): v if isinstance(v, str) else json.dumps(v) for k, v in params.items()},
    )


def _media(msg: Mapping[str, Any]) -> Media:
    media = msg.get("media")
    if not isinstance(media, dict):
        raise BadFrame("media event without a 'media' object", code="twilio_bad_media")
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise BadFrame("media event without a string 'payload'", code="twilio_bad_media")
    if len(payload) > MAX_MEDIA_BYTES * 4 // 3 + 4:
        raise BadFrame(f"media payload over {MAX_MEDIA_BYTES} bytes", code="twilio_bad_media")
    try:
        audio = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        raise BadFrame("media payload is not valid base64", code="twilio_bad_media") from None
    track = media.get("track", "inbound")
    return Media(track=track if isinstance(track, str) else "inbound", chunk=_int(media, "chunk"),
                 timestamp_ms=_int(media, "timestamp"), payload=audio)


def _mark(msg: Mapping[str, Any]) -> Mark:
    mark = msg.get("mark")
    name = mark.get("name") if isinstance(mark, dict) else None
    if not isinstance(name, str):
        raise BadFrame("mark event without a string 'mark.name'", code="twilio_bad_mark")
    return Mark(name=name)


def _dtmf(msg: Mapping[str, Any]) -> Dtmf:
    dtmf = msg.get("dtmf")
    digit = dtmf.get("digit") if isinstance(dtmf, dict) else None
    if not isinstance(digit, str) or digit not in _DTMF_DIGITS:
        raise BadFrame("dtmf event without a valid 'dtmf.digit'", code="twilio_bad_dtmf")
    track = dtmf.get("track", "inbound_track") if isinstance(dtmf, dict) else "inbound_track"
    return Dtmf(digit=digit, track=track if isinstance(track, str) else "inbound_track")


def _stop(msg: Mapping[str, Any]) -> Stop:
    stop = msg.get("stop")
    call_sid = stop.get("callSid", "") if isinstance(stop, dict) else ""
    return Stop(call_sid=call_sid if isinstance(call_sid, str) else "")


_DECODERS: dict[str, Callable[[Mapping[str, Any]], TwilioEvent]] = {
    "connected": _connected,
    "start": _start,
    "media": _media,
    "mark": _mark,
    "dtmf": _dtmf,
    "stop": _stop,
}


def decode(frame: str | bytes) -> TwilioEvent:
    """One inbound frame -> its event. Raises :class:`BadFrame` (see the module docstring)."""
    if not isinstance(frame, str):
        raise BadFrame("binary frame (Media Streams sends JSON text)", code="twilio_binary_frame",
                       close_code=CloseCode.UNSUPPORTED_DATA)
    try:
        msg = json.loads(frame)
    except ValueError:
        raise BadFrame("frame is not JSON", code="twilio_invalid_json", close_code=CloseCode.INVALID_PAYLOAD) from None
    if not isinstance(msg, dict):
        raise BadFrame("frame is not a JSON object", code="twilio_invalid_json", close_code=CloseCode.INVALID_PAYLOAD)
    event = msg.get("event")
    decoder = _DECODERS.get(event) if isinstance(event, str) else None
    if decoder is None:
        shown = event if isinstance(event, str) and len(event) <= 40 else type(event).__name__
        raise BadFrame(f"unknown event {shown!r} dropped", code="twilio_unknown_event")
    return decoder(msg)


def encode_media(stream_sid: str, mulaw: bytes) -> str:
    payload = binascii.b2a_base64(mulaw, newline=False).decode("ascii")
    return json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}},
                      separators=(",", ":"))


def encode_mark(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}, separators=(",", ":"))


def encode_clear(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid}, separators=(",", ":"))
