"""Sans-I/O codec of the OpenAI Realtime API: typed requests -> JSON text, JSON text -> events.

No sockets, no asyncio, no websockets here (see :mod:`.session` for the state machine
and ``connection.py`` for the transport). Two codecs share one interface:

- :class:`RealtimeCodec` speaks GA (default): ``session.type = "realtime"``, nested
  ``audio.input``/``audio.output`` config, ``response.output_audio.delta`` & co.
- :class:`~.beta.BetaCodec` speaks the beta dialect (header ``OpenAI-Beta: realtime=v1``,
  ``pcm16``, ``response.audio.delta``) for legacy Azure deployments.

Decoding is a table from wire ``type`` to a decoder (:mod:`.decoders`); unknown types
become UNKNOWN events, malformed messages become ERROR events with
``code="malformed_event"`` (a remote protocol error). :meth:`RealtimeCodec.decode`
never raises.

Audio appends are built from a string template around a base64 encoding of the
caller's buffer (pybase64 when installed, else :func:`binascii.b2a_base64`): the PCM is
read in place, never copied into an intermediate Python object.
"""

from __future__ import annotations

import json
import logging
import os
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple, Sequence

from ..._audio.pcm import g711_view, pcm16_view
from ..base64_audio import b64encode
from ..types import EventType, ProviderEvent, TurnDetection
from .config import VOICES, OpenAIConfig
from .decoders import GA_DECODERS, DecodeContext, Decoder, MalformedEvent, unknown
from .errors import malformed_info
from .fastdecode import decode_audio_delta

__all__ = [
    "RealtimeCodec",
    "Decoded",
    "DecodeContext",
    "pcm_bytes",
    "g711_bytes",
    "b64encode",
    "new_item_id",
    "settings_from_config",
    "SESSION_OPTIONS",
    "RESPONSE_OPTIONS",
    "MAX_ID_LENGTH",
]

log = logging.getLogger("voiceengine.providers.openai.protocol")

MAX_ID_LENGTH = 32  # the service rejects longer client-chosen item ids

#: option names accepted by update_session()/settings (normalized, provider-neutral)
SESSION_OPTIONS = frozenset(
    {
        "instructions", "voice", "turn_detection", "transcription_model", "noise_reduction", "tools",
        "tool_choice", "output_modalities", "max_output_tokens", "temperature", "input_audio_format",
        "output_audio_format", "speed",
    }
)
#: option names accepted by create_response()
RESPONSE_OPTIONS = frozenset(
    {
        "instructions", "output_modalities", "conversation", "input", "tools", "tool_choice", "metadata",
        "max_output_tokens", "voice", "output_audio_format", "temperature",
    }
)
_TURN_DETECTION = ("server_vad", "semantic_vad")


def check_response_options(options: Mapping[str, Any]) -> None:
    """Refuse option names ``response.create`` does not know (both codecs)."""
    unknown_names = set(options) - RESPONSE_OPTIONS
    if unknown_names:
        raise TypeError(f"unknown response option(s): {sorted(unknown_names)}; known: {sorted(RESPONSE_OPTIONS)}")
_AUDIO_FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")


# ------------------------------------------------------------------ PCM intake
#: ``buf`` validated as PCM16, viewed as bytes without copying: the audio core's intake,
#: so the wire accepts exactly the buffers every other audio entry point accepts.
pcm_bytes = pcm16_view
#: the same for G.711 input (``audio/pcmu``/``audio/pcma``): one byte per sample, any count
g711_bytes = g711_view


# the append template: only the event id and the base64 vary (module constants: an
# f-string over globals builds the ~6.5 kB text in one allocation)
_APPEND_HEAD = '{"type":"input_audio_buffer.append","event_id":"'
_APPEND_MID = '","audio":"'
_APPEND_TAIL = '"}'


def new_item_id() -> str:
    """A client-side item id: ``item_`` + 26 hex digits (31 chars, under the 32 limit)."""
    return "item_" + os.urandom(13).hex()


def _dumps(obj: Any) -> str:
    # ensure_ascii: a lone surrogate in app text becomes an escape, not a UTF-8 crash in
    # the writer task; allow_nan=False: NaN is not JSON and the service would reject it
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


# ------------------------------------------------------------------ settings
def settings_from_config(config: OpenAIConfig) -> dict[str, Any]:
    """The normalized session settings a config asks for (input of ``session_update``)."""
    settings: dict[str, Any] = {
        "output_modalities": list(config.output_modalities),
        "turn_detection": config.turn_detection,
        "input_audio_format": config.input_audio_format,
        "output_audio_format": config.output_audio_format,
    }
    for name in ("instructions", "voice", "transcription_model", "noise_reduction", "max_output_tokens",
                 "temperature"):
        value = getattr(config, name)
        if value is not None:
            settings[name] = value
    if config.tools:
        settings["tools"] = [dict(tool) for tool in config.tools]
    return settings


def validate_session_options(options: Mapping[str, Any]) -> None:
    """Check normalized session options; TypeError for unknown names, ValueError for bad values."""
    unknown_names = set(options) - SESSION_OPTIONS
    if unknown_names:
        raise TypeError(f"unknown session option(s): {sorted(unknown_names)}; known: {sorted(SESSION_OPTIONS)}")
    td = options.get("turn_detection")
    if isinstance(td, str) and td not in _TURN_DETECTION:
        raise ValueError(f"turn_detection must be one of {_TURN_DETECTION}, a mapping, a TurnDetection or None, "
                         f"got {td!r}")
    if td is not None and not isinstance(td, (str, Mapping, TurnDetection)):
        raise TypeError("turn_detection must be a str, a mapping, a TurnDetection or None")
    voice = options.get("voice")
    if voice is not None and voice not in VOICES:
        raise ValueError(f"voice must be one of {VOICES}, got {voice!r}")
    for name in ("input_audio_format", "output_audio_format"):
        if name in options and options[name] not in _AUDIO_FORMATS:
            raise ValueError(f"{name} must be one of {_AUDIO_FORMATS}")
    if "output_modalities" in options:
        modalities = list(options["output_modalities"])
        if not modalities or any(m not in ("audio", "text") for m in modalities):
            raise ValueError(f"output_modalities must be ['audio'] or ['text'], got {modalities!r}")


def normalize_tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Realtime function tools; Chat Completions style ``{"function": {...}}`` is flattened."""
    out = []
    for tool in tools:
        if not isinstance(tool, Mapping):
            raise TypeError(f"a tool must be a mapping, got {type(tool).__name__}")
        tool = dict(tool)
        inner = tool.pop("function", None)
        if isinstance(inner, Mapping):
            tool.update(inner)
        tool.setdefault("type", "function")
        out.append(tool)
    return out


def _audio_format(name: str) -> dict[str, Any]:
    return {"type": "audio/pcm", "rate": 24000} if name == "audio/pcm" else {"type": name}


def turn_detection_payload(value: Any) -> Any:
    """The wire ``turn_detection`` for any spelling of the setting (``None``: manual).

    A neutral :class:`TurnDetection` maps ``silence_ms`` -> ``silence_duration_ms``,
    ``prefix_ms`` -> ``prefix_padding_ms``, ``threshold``, ``eagerness`` (semantic VAD only),
    ``interrupt_on_speech`` -> ``interrupt_response``, ``auto_response`` ->
    ``create_response``; ``sensitivity`` has no Realtime equivalent and is not sent.
    """
    if value is None:
        return None
    if isinstance(value, TurnDetection):
        if value.manual:
            return None
        payload: dict[str, Any] = {"type": value.mode.value}
        if value.mode.value == "server_vad":
            for name, wire in (("silence_ms", "silence_duration_ms"), ("prefix_ms", "prefix_padding_ms"),
                               ("threshold", "threshold")):
                if getattr(value, name) is not None:
                    payload[wire] = getattr(value, name)
        elif value.eagerness is not None:
            payload["eagerness"] = value.eagerness.value
        if not value.interrupt_on_speech:
            payload["interrupt_response"] = False
        if not value.auto_response:
            payload["create_response"] = False
        return payload
    return {"type": value} if isinstance(value, str) else dict(value)


class Decoded(NamedTuple):
    """What :meth:`RealtimeCodec.decode` returns: the wire type (``None`` when the message
    was not a JSON object with a string ``type``), the normalized event, and the parsed
    message (``None`` when malformed) for the session's bookkeeping."""

    wire_type: str | None
    event: ProviderEvent
    message: dict[str, Any] | None


_new_tuple = tuple.__new__


# ------------------------------------------------------------------ the GA codec
class RealtimeCodec:
    """The GA dialect. Encoders return one JSON text frame; ``decode`` never raises.

    ``headers`` are the extra handshake headers of the dialect (never ``Authorization``:
    the shell adds it).
    """

    name = "ga"
    headers: Mapping[str, str] = MappingProxyType({})
    decoders: Mapping[str, Decoder] = GA_DECODERS
    audio_delta_type = "response.output_audio.delta"

    def __init__(self, *, output_audio_format: str = "audio/pcm") -> None:
        self.output_audio_format = output_audio_format
        self.sample_width = 2 if output_audio_format == "audio/pcm" else 1

    # ---------------------------------------------------------------- encode
    def encode(self, wire_type: str, event_id: str, fields: Mapping[str, Any] | None = None) -> str:
        """Generic client event ``{"type", "event_id", **fields}`` as JSON text."""
        message: dict[str, Any] = {"type": wire_type, "event_id": event_id}
        if fields:
            message.update(fields)
            message["type"], message["event_id"] = wire_type, event_id
        return _dumps(message)

    def input_audio_buffer_append(self, pcm: Any, event_id: str) -> str:
        """``input_audio_buffer.append`` for any PCM16 buffer (validated, not copied).

        ``event_id`` must be JSON-safe (ours are ``[A-Za-z0-9_]``); it is not escaped.
        """
        if type(pcm) is not bytes or len(pcm) & 1:  # bytes of even length: nothing to check
            pcm = pcm_bytes(pcm)
        return f"{_APPEND_HEAD}{event_id}{_APPEND_MID}{b64encode(pcm)}{_APPEND_TAIL}"

    def append_pcm(self, view: Any, event_id: str) -> str:
        """Like :meth:`input_audio_buffer_append` for a buffer already checked by :func:`pcm_bytes`."""
        return f"{_APPEND_HEAD}{event_id}{_APPEND_MID}{b64encode(view)}{_APPEND_TAIL}"

    def session_payload(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The GA ``session`` object for normalized settings (only the keys present)."""
        session: dict[str, Any] = {"type": "realtime"}
        if "output_modalities" in settings:
            session["output_modalities"] = list(settings["output_modalities"])
        if "instructions" in settings:
            session["instructions"] = settings["instructions"]
        audio_in: dict[str, Any] = {}
        audio_out: dict[str, Any] = {}
        if "input_audio_format" in settings:
            audio_in["format"] = _audio_format(settings["input_audio_format"])
        if "transcription_model" in settings:
            model = settings["transcription_model"]
            audio_in["transcription"] = {"model": model} if model is not None else None
        if "noise_reduction" in settings:
            nr = settings["noise_reduction"]
            audio_in["noise_reduction"] = {"type": nr} if isinstance(nr, str) else (dict(nr) if nr else None)
        if "turn_detection" in settings:
            audio_in["turn_detection"] = turn_detection_payload(settings["turn_detection"])
        if "output_audio_format" in settings:
            audio_out["format"] = _audio_format(settings["output_audio_format"])
        if "voice" in settings:
            audio_out["voice"] = settings["voice"]
        if "speed" in settings:
            audio_out["speed"] = settings["speed"]
        if audio_in or audio_out:
            session["audio"] = {}
            if audio_in:
                session["audio"]["input"] = audio_in
            if audio_out:
                session["audio"]["output"] = audio_out
        if "tools" in settings:
            session["tools"] = normalize_tools(settings["tools"])
        if "tool_choice" in settings:
            session["tool_choice"] = settings["tool_choice"]
        if "max_output_tokens" in settings:
            session["max_output_tokens"] = settings["max_output_tokens"]
        # GA sessions have no temperature: it is dropped here (the beta codec sends it)
        return session

    def session_update(self, settings: Mapping[str, Any], event_id: str) -> str:
        return self.encode("session.update", event_id, {"session": self.session_payload(settings)})

    def item_payload(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The wire item for ``conversation.item.create`` (GA: as given)."""
        return dict(item)

    def conversation_item_create(
        self, item: Mapping[str, Any], event_id: str, *, previous_item_id: str | None = None
    ) -> str:
        fields: dict[str, Any] = {"item": self.item_payload(item)}
        if previous_item_id is not None:
            fields["previous_item_id"] = previous_item_id
        return self.encode("conversation.item.create", event_id, fields)

    def conversation_item_truncate(self, item_id: str, audio_end_ms: int, event_id: str, *,
                                   content_index: int = 0) -> str:
        return self.encode("conversation.item.truncate", event_id,
                           {"item_id": item_id, "content_index": content_index, "audio_end_ms": audio_end_ms})

    def conversation_item_delete(self, item_id: str, event_id: str) -> str:
        return self.encode("conversation.item.delete", event_id, {"item_id": item_id})

    def conversation_item_retrieve(self, item_id: str, event_id: str) -> str:
        return self.encode("conversation.item.retrieve", event_id, {"item_id": item_id})

    def response_payload(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The GA ``response`` object of ``response.create`` for normalized options."""
        check_response_options(options)
        response: dict[str, Any] = {}
        for name in ("instructions", "conversation", "tool_choice", "max_output_tokens"):
            if name in options:
                response[name] = options[name]
        if "output_modalities" in options:
            response["output_modalities"] = list(options["output_modalities"])
        if "metadata" in options:
            response["metadata"] = dict(options["metadata"])
        if "input" in options:
            response["input"] = [self.item_payload(item) for item in options["input"]]
        if "tools" in options:
            response["tools"] = normalize_tools(options["tools"])
        output: dict[str, Any] = {}
        if "voice" in options:
            output["voice"] = options["voice"]
        if "output_audio_format" in options:
            output["format"] = _audio_format(options["output_audio_format"])
        if output:
            response["audio"] = {"output": output}
        return response

    def response_create(self, event_id: str, options: Mapping[str, Any] | None = None) -> str:
        payload = self.response_payload(options or {})
        return self.encode("response.create", event_id, {"response": payload} if payload else None)

    # ---------------------------------------------------------------- decode
    def decode(self, message: str | bytes | bytearray | memoryview, ctx: DecodeContext) -> Decoded:
        """One server frame -> :class:`Decoded`. Never raises: anything malformed is an ERROR."""
        fast = decode_audio_delta(message, self.audio_delta_type, ctx)  # the bulk of inbound bytes
        if fast is not None:
            # built as the tuple it is: a NamedTuple's __new__ is a Python call, once per delta here
            return _new_tuple(Decoded, (self.audio_delta_type, fast[0], fast[1]))
        return self.decode_general(message, ctx)

    def decode_general(self, message: str | bytes | bytearray | memoryview, ctx: DecodeContext) -> Decoded:
        """:meth:`decode` for a frame the audio-delta fast path did not take
        (:func:`~.fastdecode.decode_audio_delta` returned ``None``). Never raises."""
        if not isinstance(message, str):
            size = len(message) if isinstance(message, (bytes, bytearray)) else -1
            return self._malformed(ctx, None, f"unexpected binary frame ({size} bytes); the service sends text")
        try:
            msg = json.loads(message)
        except (ValueError, RecursionError) as exc:
            return self._malformed(ctx, None, f"invalid JSON: {type(exc).__name__}")
        if type(msg) is not dict:
            return self._malformed(ctx, None, f"expected a JSON object, got {type(msg).__name__}")
        wire_type = msg.get("type")
        if type(wire_type) is not str:
            return self._malformed(ctx, None, "message has no string 'type'")
        decoder = self.decoders.get(wire_type, unknown)
        try:
            return Decoded(wire_type, decoder(msg, ctx), msg)
        except MalformedEvent as exc:
            return self._malformed(ctx, wire_type, f"{wire_type}: {exc}")
        except Exception as exc:  # a decoder bug must not kill the receive loop
            log.exception("decoder for %s failed", wire_type)
            return self._malformed(ctx, wire_type, f"{wire_type}: {type(exc).__name__}")

    @staticmethod
    def _malformed(ctx: DecodeContext, wire_type: str | None, text: str) -> Decoded:
        log.debug("malformed server message: %s", text)
        event = ProviderEvent(type=EventType.ERROR, provider=ctx.provider, session_id=ctx.session_id,
                              error=malformed_info(text))
        return Decoded(wire_type, event, None)
