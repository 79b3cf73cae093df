"""Inbound half of :class:`~.session.RealtimeSession`: state updates per normalized event.

Each handler takes the session, the decoded event and the parsed wire message, updates
the session's bookkeeping and returns the events to hand to the application (possibly
none: a duplicate, a deferred function call; or more: a synthesized FUNCTION_CALL).
Split from session.py only to keep files small; these are the session's own methods.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping

from ..types import ErrorInfo, EventType, FunctionCall, ProviderEvent, TurnDetection
from .errors import SESSION_EXPIRED
from .protocol import turn_detection_payload

if TYPE_CHECKING:
    from .session import RealtimeSession

__all__ = ["HANDLERS", "check_audio_limits"]

_log = logging.getLogger("voiceengine.providers.openai.session")

#: output audio bytes per second by format (PCM16 24 kHz; G.711 8 kHz)
BYTES_PER_SECOND = {"audio/pcm": 48000, "audio/pcmu": 8000, "audio/pcma": 8000}


def on_session_created(self: RealtimeSession, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
    self.session_id = self._ctx.session_id = event.session_id
    self._created = True
    return [event]


def on_session_updated(self: RealtimeSession, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
    self.session_ready = True
    return [event]


def on_error(self: RealtimeSession, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
    info = event.error
    if info is None:
        return [event]
    if info.code == SESSION_EXPIRED:
        self.expiring = True
    if info.request_type == "response.create" and info.event_id == self._inflight:
        self._inflight = None  # our request failed: free the gate
        self._release()
    if info.fatal:
        _log.warning("fatal provider error %s (request %s)", info.code, info.request_type)
    return [event]


def on_response_started(self: RealtimeSession, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
    response_id = event.response_id
    if response_id is not None:
        self._active.add(response_id)
        if self._cancel_on_create:
            self._cancelled.add(response_id)
    if self._inflight is not None:
        self._inflight = None
        self._cancel_on_create = False
    return [event]


def on_response_done(self: RealtimeSession, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
    self._active.discard(event.response_id)  # type: ignore[arg-type]
    self._response_audio.pop(event.response_id, None)  # type: ignore[arg-type]
    if not self._active:
        self._cancel_sent = self._server_cancelling = False
    self._release()
    return [event]


def on_speech_started(self: RealtimeSession, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
    td = self.settings().get("turn_detection")
    if isinstance(td, TurnDetection):
        td = turn_detection_payload(td)
    interrupts = isinstance(td, str) or (isinstance(td, Mapping) and td.get("interrupt_response", True)
                                         and td.get("type") in ("server_vad", "semantic_vad"))
    if interrupts and self._active:
        self._server_cancelling = True
    return [event]


def on_item_added(self: RealtimeSession, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
    item_id = event.item_id
    if item_id is not None:
        if item_id in self._added:
            self.duplicates += 1  # conversation.item.created after .added for the same item
            return []
        self._added.add(item_id)
        self._confirmed.add(item_id)
    return [event]


def on_item_deleted(self: RealtimeSession, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
    item_id = event.item_id
    if item_id is not None:
        self._confirmed.discard(item_id)
        self._added.discard(item_id)
        self._audio.pop(item_id, None)
        if self._current is not None and self._current[0] == item_id:
            self._current = None
    return [event]


def on_output_item_added(self: RealtimeSession, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
    item = event.data
    if event.item_id is not None:
        self._confirmed.add(event.item_id)
        if item.get("type") == "function_call" and isinstance(item.get("name"), str):
            self._call_names.put(event.item_id, item["name"])
    return [event]


def on_function_call(self: RealtimeSession, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
    call: FunctionCall = event.data
    if call.call_id in self._calls_done:
        self.duplicates += 1
        return []
    if not call.name:
        name = self._call_names.get(call.item_id or "")
        if name is None:  # beta without output_item.added: wait for output_item.done
            self._deferred_calls.put(call.item_id or "", call)
            return []
        event = _with_call(event, call, name)
    self._calls_done.add(call.call_id)
    self._call_names.pop(call.item_id or "", None)
    return [event]


def on_output_item_done(self: RealtimeSession, event: ProviderEvent, msg: Any) -> list[ProviderEvent]:
    item = event.data
    if item.get("type") != "function_call" or item.get("status") == "incomplete":
        return [event]
    call_id, name = item.get("call_id"), item.get("name")
    deferred = self._deferred_calls.pop(event.item_id or "", None)
    if not isinstance(call_id, str) or call_id in self._calls_done or not isinstance(name, str):
        return [event]
    arguments = item.get("arguments")
    call = FunctionCall(name=name, call_id=call_id,
                        arguments=arguments if isinstance(arguments, str) else (deferred.arguments if deferred else ""),
                        item_id=event.item_id, response_id=event.response_id)
    self._calls_done.add(call_id)
    self._call_names.pop(event.item_id or "", None)
    synthesized = ProviderEvent(type=EventType.FUNCTION_CALL, data=call, provider=event.provider,
                                session_id=event.session_id, item_id=event.item_id,
                                response_id=event.response_id, raw=event.raw)
    return [synthesized, event]


def _with_call(event: ProviderEvent, call: FunctionCall, name: str) -> ProviderEvent:
    named = FunctionCall(name=name, call_id=call.call_id, arguments=call.arguments, item_id=call.item_id,
                         response_id=call.response_id)
    return ProviderEvent(type=event.type, data=named, timestamp=event.timestamp, provider=event.provider,
                         session_id=event.session_id, item_id=event.item_id, response_id=event.response_id,
                         raw=event.raw)


def _limit_error(self: RealtimeSession, message: str, code: str, event: ProviderEvent) -> ProviderEvent:
    # The peer's data broke the limit: a client-side verdict on a remote cause.
    info = ErrorInfo(message=message, code=code, type="client_error", remote=True)
    return ProviderEvent(type=EventType.ERROR, provider=self.provider_name, session_id=self.session_id,
                         error=info, item_id=event.item_id, response_id=event.response_id)

def check_audio_limits(self: RealtimeSession, event: ProviderEvent) -> list[ProviderEvent] | None:
    """Enforce ``max_audio_delta_bytes`` and ``max_response_audio_s``; the events to
    return instead of ``event`` when it is refused, else ``None``."""
    n_bytes = len(event.data)
    if n_bytes > self.config.max_audio_delta_bytes:
        self.limit_drops += 1
        return [_limit_error(
            self, f"audio delta of {n_bytes} bytes exceeds max_audio_delta_bytes "
            f"({self.config.max_audio_delta_bytes}); dropped", "audio_delta_too_large", event)]
    response_id = event.response_id
    if response_id is None:
        return None
    tracked = self._response_audio
    received = tracked.get(response_id)
    total = n_bytes if received is None else received + n_bytes
    limit = self.config.max_response_audio_s * BYTES_PER_SECOND[self.config.output_audio_format]
    if total <= limit:
        if received is None:
            tracked.put(response_id, total)  # a new response: enforce the bound
        else:
            tracked[response_id] = total
        return None
    # Over the limit: cancel it, and drop this and every later delta of it.
    self.limit_drops += 1
    if not self.cancel_response():
        self._mark_cancelled()
    self._cancelled.add(response_id)
    return [_limit_error(
        self, f"response {response_id} exceeded max_response_audio_s ({self.config.max_response_audio_s:g} s); "
        "cancelled", "response_audio_limit", event)]


HANDLERS: dict[EventType, Any] = {
    EventType.SESSION_CREATED: on_session_created,
    EventType.SESSION_UPDATED: on_session_updated,
    EventType.ERROR: on_error,
    EventType.RESPONSE_STARTED: on_response_started,
    EventType.RESPONSE_DONE: on_response_done,
    EventType.SPEECH_STARTED: on_speech_started,
    EventType.ITEM_ADDED: on_item_added,
    EventType.ITEM_DELETED: on_item_deleted,
    EventType.OUTPUT_ITEM_ADDED: on_output_item_added,
    EventType.OUTPUT_ITEM_DONE: on_output_item_done,
    EventType.FUNCTION_CALL: on_function_call,
}
