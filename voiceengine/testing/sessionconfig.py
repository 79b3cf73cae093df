"""Validation of client payloads (session config, items, response options) for the fake server.

Strict the way the GA service is: unknown parameters are refused (``unknown_parameter``),
so beta-shaped payloads (``input_audio_format``, top-level ``voice``...) fail here as they
do on the real endpoint. Each failure is a :class:`ClientError` naming the ``param``.
"""

from __future__ import annotations

import binascii
import copy
from typing import Any, Mapping

__all__ = ["ClientError", "default_session", "apply_session_update", "validate_item", "validate_response_options"]

_SESSION_KEYS = frozenset({
    "type", "audio", "include", "instructions", "max_output_tokens", "model", "output_modalities",
    "parallel_tool_calls", "prompt", "reasoning", "tool_choice", "tools", "tracing", "truncation",
})
_INPUT_KEYS = frozenset({"format", "noise_reduction", "transcription", "turn_detection"})
_OUTPUT_KEYS = frozenset({"format", "speed", "voice"})
_FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")
_SERVER_VAD_KEYS = frozenset({"type", "create_response", "idle_timeout_ms", "interrupt_response",
                              "prefix_padding_ms", "silence_duration_ms", "threshold"})
_SEMANTIC_VAD_KEYS = frozenset({"type", "create_response", "eagerness", "interrupt_response"})
_RESPONSE_KEYS = frozenset({"audio", "conversation", "input", "instructions", "max_output_tokens", "metadata",
                            "output_modalities", "parallel_tool_calls", "prompt", "reasoning", "tool_choice",
                            "tools"})
_CONTENT_TYPES = {
    "user": ("input_text", "input_audio", "input_image"),
    "system": ("input_text",),
    "assistant": ("output_text", "output_audio"),
}


class ClientError(Exception):
    """A client event broke a rule; becomes an ``error`` event echoing the client's event_id."""

    def __init__(self, code: str | None, message: str, param: str | None = None,
                 type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.type = type_


def _unknown(keys: Any, allowed: frozenset[str], prefix: str) -> None:
    for k in keys:
        if k not in allowed:
            raise ClientError("unknown_parameter", f"Unknown parameter: '{prefix}.{k}'.", f"{prefix}.{k}")


def _need_dict(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ClientError("invalid_type", f"Invalid type for '{param}': expected an object.", param)
    return value


def _turn_detection_defaults(td: Mapping[str, Any]) -> dict[str, Any]:
    if td["type"] == "server_vad":
        base: dict[str, Any] = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                "silence_duration_ms": 200, "idle_timeout_ms": None,
                                "create_response": True, "interrupt_response": True}
    else:
        base = {"type": "semantic_vad", "eagerness": "auto", "create_response": True, "interrupt_response": True}
    base.update({k: v for k, v in td.items()})
    return base


def default_session(config: Any, session_id: str, model: str, now_s: int) -> dict[str, Any]:
    """The GA session object ``session.created`` reports."""
    td = config.turn_detection
    expires = now_s + int(config.max_session_s) if config.max_session_s is not None else now_s + 3600
    return {
        "type": "realtime", "object": "realtime.session", "id": session_id, "model": model,
        "output_modalities": ["audio"], "instructions": config.instructions, "tools": [],
        "tool_choice": "auto", "max_output_tokens": "inf", "tracing": None, "truncation": "auto",
        "prompt": None, "expires_at": expires, "include": None,
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": None,
                      "noise_reduction": None,
                      "turn_detection": None if td is None else _turn_detection_defaults(td)},
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": config.voice, "speed": 1.0},
        },
    }


def _check_format(fmt: Any, param: str) -> dict[str, Any]:
    fmt = _need_dict(fmt, param)
    _unknown(fmt, frozenset({"type", "rate"}), param)
    ftype = fmt.get("type")
    if ftype not in _FORMATS:
        raise ClientError("invalid_value", f"Invalid value: '{ftype}'. Supported values are: 'audio/pcm', "
                          "'audio/pcmu', and 'audio/pcma'.", f"{param}.type")
    if ftype == "audio/pcm":
        rate = fmt.get("rate", 24000)
        if rate != 24000:
            raise ClientError("invalid_value", f"Invalid value: {rate}. Supported values are: 24000.", f"{param}.rate")
        return {"type": ftype, "rate": 24000}
    if "rate" in fmt:
        raise ClientError("unknown_parameter", f"Unknown parameter: '{param}.rate'.", f"{param}.rate")
    return {"type": ftype}


def _check_turn_detection(td: Any, param: str) -> dict[str, Any] | None:
    if td is None:
        return None
    td = _need_dict(td, param)
    kind = td.get("type")
    if kind == "server_vad":
        _unknown(td, _SERVER_VAD_KEYS, param)
        thr = td.get("threshold")
        if thr is not None and (not isinstance(thr, (int, float)) or not 0.0 <= thr <= 1.0):
            raise ClientError("decimal_above_max_value" if isinstance(thr, (int, float)) and thr > 1 else
                              "invalid_value", "threshold must be between 0 and 1.", f"{param}.threshold")
        for key in ("prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms"):
            v = td.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ClientError("invalid_value", f"{key} must be a non-negative integer.", f"{param}.{key}")
    elif kind == "semantic_vad":
        _unknown(td, _SEMANTIC_VAD_KEYS, param)
        if td.get("eagerness", "auto") not in ("low", "medium", "high", "auto"):
            raise ClientError("invalid_value", "Invalid eagerness.", f"{param}.eagerness")
    else:
        raise ClientError("invalid_value", f"Invalid value: '{kind}'. Supported values are: 'server_vad' and "
                          "'semantic_vad'.", f"{param}.type")
    return _turn_detection_defaults(td)


def _check_modalities(mods: Any, param: str) -> list[str]:
    if mods not in (["audio"], ["text"]):
        raise ClientError("invalid_value", "output_modalities must be ['audio'] or ['text'].", param)
    return list(mods)


def apply_session_update(current: Mapping[str, Any], update: Any) -> dict[str, Any]:
    """Validate ``update`` (the client's ``session`` object) and merge it into a copy of ``current``."""
    if update is None:
        raise ClientError("missing_required_parameter", "Missing required parameter: 'session'.", "session")
    upd = _need_dict(update, "session")
    if "type" not in upd:
        raise ClientError("missing_required_parameter", "Missing required parameter: 'session.type'.", "session.type")
    if upd["type"] != "realtime":
        raise ClientError("invalid_value", f"Invalid value: '{upd['type']}'. Supported values are: 'realtime'.",
                          "session.type")
    _unknown(upd, _SESSION_KEYS, "session")
    new = copy.deepcopy(dict(current))
    for key, value in upd.items():
        if key == "audio":
            audio = _need_dict(value, "session.audio")
            _unknown(audio, frozenset({"input", "output"}), "session.audio")
            if "input" in audio:
                inp = _need_dict(audio["input"], "session.audio.input")
                _unknown(inp, _INPUT_KEYS, "session.audio.input")
                tgt = new["audio"]["input"]
                if "format" in inp:
                    tgt["format"] = _check_format(inp["format"], "session.audio.input.format")
                if "turn_detection" in inp:
                    tgt["turn_detection"] = _check_turn_detection(inp["turn_detection"],
                                                                  "session.audio.input.turn_detection")
                if "transcription" in inp:
                    tr = inp["transcription"]
                    if tr is not None:
                        _need_dict(tr, "session.audio.input.transcription")
                    tgt["transcription"] = tr
                if "noise_reduction" in inp:
                    tgt["noise_reduction"] = inp["noise_reduction"]
            if "output" in audio:
                out = _need_dict(audio["output"], "session.audio.output")
                _unknown(out, _OUTPUT_KEYS, "session.audio.output")
                tgt = new["audio"]["output"]
                if "format" in out:
                    tgt["format"] = _check_format(out["format"], "session.audio.output.format")
                if "voice" in out:
                    if not isinstance(out["voice"], (str, dict)):
                        raise ClientError("invalid_type", "voice must be a string.", "session.audio.output.voice")
                    tgt["voice"] = out["voice"]
                if "speed" in out:
                    sp = out["speed"]
                    if not isinstance(sp, (int, float)) or not 0.25 <= sp <= 1.5:
                        raise ClientError("invalid_value", "speed must be between 0.25 and 1.5.",
                                          "session.audio.output.speed")
                    tgt["speed"] = float(sp)
        elif key == "output_modalities":
            new[key] = _check_modalities(value, "session.output_modalities")
        elif key == "instructions":
            if not isinstance(value, str):
                raise ClientError("invalid_type", "instructions must be a string.", "session.instructions")
            new[key] = value
        elif key == "tools":
            if not isinstance(value, list):
                raise ClientError("invalid_type", "tools must be an array.", "session.tools")
            new[key] = copy.deepcopy(value)
        else:
            new[key] = copy.deepcopy(value)
    return new


def validate_item(item: Any, param: str) -> tuple[dict[str, Any], bytes | None]:
    """Check a client item; returns the stored form and decoded input audio (if any)."""
    if item is None:
        raise ClientError("missing_required_parameter", f"Missing required parameter: '{param}'.", param)
    item = copy.deepcopy(_need_dict(item, param))
    kind = item.get("type")
    audio: bytes | None = None
    if "id" in item and not isinstance(item["id"], str):
        raise ClientError("invalid_type", f"Invalid type for '{param}.id': expected a string.", f"{param}.id")
    if kind == "message":
        role = item.get("role")
        if role not in _CONTENT_TYPES:
            raise ClientError("invalid_value", f"Invalid value: '{role}'. Supported values are: 'user', "
                              "'assistant', and 'system'.", f"{param}.role")
        content = item.get("content")
        if not isinstance(content, list):
            raise ClientError("missing_required_parameter", f"Missing required parameter: '{param}.content'.",
                              f"{param}.content")
        for i, c in enumerate(content):
            p = f"{param}.content[{i}]"
            c = _need_dict(c, p)
            if c.get("type") not in _CONTENT_TYPES[role]:
                raise ClientError("invalid_value", f"Invalid value: '{c.get('type')}' for a {role} message.",
                                  f"{p}.type")
            if c["type"] in ("input_text", "output_text") and not isinstance(c.get("text"), str):
                raise ClientError("missing_required_parameter", f"Missing required parameter: '{p}.text'.",
                                  f"{p}.text")
            if c["type"] == "input_audio":
                raw = c.get("audio")
                if not isinstance(raw, str):
                    raise ClientError("missing_required_parameter", f"Missing required parameter: '{p}.audio'.",
                                      f"{p}.audio")
                try:
                    audio = binascii.a2b_base64(raw, strict_mode=True) if raw else b""
                except (binascii.Error, ValueError):
                    raise ClientError("invalid_value", f"Invalid '{p}.audio': not valid base64.", f"{p}.audio") from None
                c.pop("audio", None)
                c.setdefault("transcript", None)
    elif kind == "function_call":
        for key in ("name", "arguments"):
            if not isinstance(item.get(key), str):
                raise ClientError("missing_required_parameter", f"Missing required parameter: '{param}.{key}'.",
                                  f"{param}.{key}")
    elif kind == "function_call_output":
        for key in ("call_id", "output"):
            if not isinstance(item.get(key), str):
                raise ClientError("missing_required_parameter", f"Missing required parameter: '{param}.{key}'.",
                                  f"{param}.{key}")
    else:
        raise ClientError("invalid_value", f"Invalid value: '{kind}'. Supported values are: 'message', "
                          "'function_call', and 'function_call_output'.", f"{param}.type")
    item.setdefault("object", "realtime.item")
    item.setdefault("status", "completed")
    return item, audio


def validate_response_options(raw: Any) -> dict[str, Any]:
    """Check ``response.create``'s ``response`` object; returns a normalised copy."""
    if raw is None:
        return {}
    opts = copy.deepcopy(_need_dict(raw, "response"))
    _unknown(opts, _RESPONSE_KEYS, "response")
    conv = opts.get("conversation", "auto")
    if conv not in ("auto", "none"):
        raise ClientError("invalid_value", f"Invalid value: '{conv}'. Supported values are: 'auto' and 'none'.",
                          "response.conversation")
    if "output_modalities" in opts:
        opts["output_modalities"] = _check_modalities(opts["output_modalities"], "response.output_modalities")
    if "instructions" in opts and not isinstance(opts["instructions"], str):
        raise ClientError("invalid_type", "instructions must be a string.", "response.instructions")
    if "metadata" in opts and opts["metadata"] is not None:
        md = _need_dict(opts["metadata"], "response.metadata")
        if len(md) > 16 or not all(isinstance(k, str) and isinstance(v, str) for k, v in md.items()):
            raise ClientError("invalid_value", "metadata: at most 16 string pairs.", "response.metadata")
    if "tools" in opts and not isinstance(opts["tools"], list):
        raise ClientError("invalid_type", "tools must be an array.", "response.tools")
    if "input" in opts:
        if not isinstance(opts["input"], list):
            raise ClientError("invalid_type", "input must be an array.", "response.input")
        items = []
        for i, it in enumerate(opts["input"]):
            if isinstance(it, dict) and it.get("type") == "item_reference":
                items.append(dict(it))
                continue
            items.append(validate_item(it, f"response.input[{i}]")[0])
        opts["input"] = items
    if "audio" in opts:
        audio = _need_dict(opts["audio"], "response.audio")
        out = _need_dict(audio.get("output", {}), "response.audio.output")
        if "format" in out:
            out["format"] = _check_format(out["format"], "response.audio.output.format")
    return opts
