"""The beta dialect of the Realtime API (``OpenAI-Beta: realtime=v1``), for legacy Azure.

Same interface as the GA :class:`~.protocol.RealtimeCodec`; differences on the wire:
flat session config (``input_audio_format: "pcm16"``, ``input_audio_transcription``,
``turn_detection``, ``modalities``, ``max_response_output_tokens``, ``temperature``),
assistant content parts named ``text``/``audio`` instead of ``output_text``/``output_audio``,
and server events ``response.audio.delta``, ``response.audio_transcript.*``,
``response.text.*``, ``conversation.item.created`` (decoded to the same normalized events).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from .decoders import BETA_DECODERS, Decoder
from .protocol import RealtimeCodec, check_response_options, normalize_tools, turn_detection_payload

__all__ = ["BetaCodec", "BETA_HEADERS"]

BETA_HEADERS: Mapping[str, str] = MappingProxyType({"OpenAI-Beta": "realtime=v1"})
_FORMATS = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}
_CONTENT_TYPES = {"output_text": "text", "output_audio": "audio"}


def _tool_choice(value: Any) -> Any:
    # beta only knows the string form; {"type": "function", "name": n} becomes n
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        return value["name"]
    return value


class BetaCodec(RealtimeCodec):
    """Encoder/decoder of the beta dialect. ``headers`` = ``{"OpenAI-Beta": "realtime=v1"}``."""

    name = "beta"
    headers = BETA_HEADERS
    decoders: Mapping[str, Decoder] = BETA_DECODERS
    audio_delta_type = "response.audio.delta"

    def session_payload(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        session: dict[str, Any] = {}
        if "output_modalities" in settings:
            modalities = list(settings["output_modalities"])
            # beta audio responses are ["audio", "text"]: audio alone is rejected
            session["modalities"] = ["audio", "text"] if "audio" in modalities else modalities
        for name in ("instructions", "voice", "temperature", "speed"):
            if name in settings:
                session[name] = settings[name]
        if "input_audio_format" in settings:
            session["input_audio_format"] = _FORMATS[settings["input_audio_format"]]
        if "output_audio_format" in settings:
            session["output_audio_format"] = _FORMATS[settings["output_audio_format"]]
        if "transcription_model" in settings:
            model = settings["transcription_model"]
            session["input_audio_transcription"] = {"model": model} if model is not None else None
        if "noise_reduction" in settings:
            nr = settings["noise_reduction"]
            session["input_audio_noise_reduction"] = {"type": nr} if isinstance(nr, str) else (dict(nr) if nr else None)
        if "turn_detection" in settings:
            td = settings["turn_detection"]
            session["turn_detection"] = turn_detection_payload(td)
        if "tools" in settings:
            session["tools"] = normalize_tools(settings["tools"])
        if "tool_choice" in settings:
            session["tool_choice"] = _tool_choice(settings["tool_choice"])
        if "max_output_tokens" in settings:
            session["max_response_output_tokens"] = settings["max_output_tokens"]
        return session

    def item_payload(self, item: Mapping[str, Any]) -> dict[str, Any]:
        payload = dict(item)
        content = payload.get("content")
        if isinstance(content, list):
            payload["content"] = [
                {**part, "type": _CONTENT_TYPES.get(str(part.get("type")), part.get("type"))}
                if isinstance(part, Mapping) else part
                for part in content
            ]
        return payload

    def response_payload(self, options: Mapping[str, Any]) -> dict[str, Any]:
        check_response_options(options)
        response: dict[str, Any] = {}
        for name in ("instructions", "conversation", "voice", "temperature"):
            if name in options:
                response[name] = options[name]
        if "output_modalities" in options:
            modalities = list(options["output_modalities"])
            response["modalities"] = ["audio", "text"] if "audio" in modalities else modalities
        if "max_output_tokens" in options:
            response["max_response_output_tokens"] = options["max_output_tokens"]
        if "output_audio_format" in options:
            response["output_audio_format"] = _FORMATS[options["output_audio_format"]]
        if "tool_choice" in options:
            response["tool_choice"] = _tool_choice(options["tool_choice"])
        if "metadata" in options:
            response["metadata"] = dict(options["metadata"])
        if "input" in options:
            response["input"] = [self.item_payload(item) for item in options["input"]]
        if "tools" in options:
            response["tools"] = normalize_tools(options["tools"])
        return response
