"""Mock responses (private to :mod:`voiceengine.providers.mock`): playing scripted replies.

One response at a time (later requests are queued), emitted in the Realtime API's GA event
order; cancellation, truncation and barge-in follow the OpenAI provider's client-side rules.
"""

from __future__ import annotations

import asyncio
import collections
import random
from typing import TYPE_CHECKING, Any, Mapping

from ..exceptions import ConfigurationError, LimitExceeded
from ._mock_audio import _BYTES_PER_MS, _MockAudioInput, _word_audio
from .types import ConnectionState, EventType, FunctionCall, InterruptResult, ResponseInfo

_RESPONSE_KEYS = frozenset(("instructions", "output_modalities", "conversation", "input", "tools", "tool_choice",
                            "metadata", "voice", "temperature", "max_output_tokens", "audio", "prompt"))


class _Out:
    __slots__ = ("id", "kind", "audio_bytes", "done", "deleted", "in_conv", "prev", "item")

    def __init__(self, item_id: str, kind: str, in_conv: bool, prev: str | None, item: dict[str, Any]) -> None:
        self.id, self.kind, self.in_conv, self.prev, self.item = item_id, kind, in_conv, prev, item
        self.audio_bytes = 0
        self.done = False
        self.deleted = False


class _Resp:
    __slots__ = ("id", "options", "items", "task", "audio", "in_conv")

    def __init__(self, response_id: str, options: Mapping[str, Any], audio: bool) -> None:
        self.id = response_id
        self.options = options
        self.items: list[_Out] = []
        self.task: asyncio.Task[None] | None = None
        self.audio = audio
        self.in_conv = options.get("conversation", "auto") != "none"


class _MockResponses(_MockAudioInput):
    """Responses, truncation and barge-in of :class:`~voiceengine.providers.mock.MockProvider`
    (a mixin; ``MockProvider`` sets up the state and provides what is declared below)."""

    _state: ConnectionState
    _rng: random.Random
    _responses_made: int
    _queue: collections.deque[Mapping[str, Any]]
    _playing: _Out | None
    _conv_audio_ms: dict[str, int]

    if TYPE_CHECKING:  # implemented by MockProvider
        async def _tick(self) -> None: ...
        def _spawn(self, coro: Any) -> asyncio.Task[Any]: ...
        def _delete(self, item_id: str) -> None: ...

    @property
    def response_active(self) -> bool:
        return self._active is not None or bool(self._queue)

    async def create_response(self, **options: Any) -> None:
        """Start a response now, or queue it behind the active one (never two at once)."""
        unknown = set(options) - _RESPONSE_KEYS
        if unknown:
            raise ConfigurationError(f"unknown response option(s): {', '.join(sorted(unknown))}")
        self._require_connected()
        self._record("call", "create_response", dict(options))
        self._request_response(options)

    def _request_response(self, options: Mapping[str, Any]) -> None:
        if self._active is None:
            self._start_response(options)
            return
        if len(self._queue) >= self.config.max_queued_responses:
            raise LimitExceeded("too many queued responses", limit=self.config.max_queued_responses,
                                size=len(self._queue) + 1)
        self._queue.append(options)

    def _start_response(self, options: Mapping[str, Any]) -> None:
        modalities = options.get("output_modalities") or self._session["output_modalities"]
        resp = _Resp(self._new_id("resp"), options, audio="audio" in modalities)
        self._active = resp
        resp.task = self._spawn(self._run_response(resp))

    def _start_next(self) -> None:
        if self._active is None and self._queue and self._state is ConnectionState.CONNECTED:
            self._start_response(self._queue.popleft())

    def _stop_active(self) -> _Resp | None:
        """Stop the active response at once (nothing more of it is emitted); no events."""
        resp, self._active = self._active, None
        if resp is not None and resp.task is not None:
            resp.task.cancel()
        return resp

    def _emit_cancelled(self, resp: _Resp, reason: str) -> None:
        for out in resp.items:
            if out.done or out.deleted:
                continue
            if out.in_conv and out.kind == "message" and out.id not in self._conv_audio_ms:
                self._conv_audio_ms[out.id] = out.audio_bytes // _BYTES_PER_MS
            item = {**out.item, "status": "incomplete"}
            self._ev(EventType.OUTPUT_ITEM_DONE, item, item_id=out.id, response_id=resp.id)
            if out.in_conv and out.id in self._conv:
                self._ev(EventType.ITEM_DONE, {**item, "previous_item_id": out.prev}, item_id=out.id,
                         response_id=resp.id)
        self._ev(EventType.RESPONSE_DONE, self._info(resp, "cancelled", reason), response_id=resp.id)
        self._start_next()

    def _info(self, resp: _Resp, status: str, reason: str | None = None) -> ResponseInfo:
        out_tokens = sum(len(str(o.item.get("arguments", ""))) // 4 + o.audio_bytes // 2400 for o in resp.items)
        return ResponseInfo(
            response_id=resp.id, status=status, reason=reason,
            usage=None if status == "in_progress" else {"input_tokens": 0, "output_tokens": out_tokens,
                                                        "total_tokens": out_tokens},
            output_item_ids=tuple(o.id for o in resp.items),
            conversation="none" if not resp.in_conv else "auto",
            metadata=resp.options.get("metadata"),
        )

    async def _run_response(self, resp: _Resp) -> None:
        entry: Mapping[str, Any] = self.config.responses[self._responses_made % len(self.config.responses)]  # type: ignore[assignment]
        self._responses_made += 1
        fail = self._rng.random() < self.config.error_rate  # drawn every time: same sequence per seed
        await self._tick()
        self._ev(EventType.RESPONSE_STARTED, self._info(resp, "in_progress"), response_id=resp.id)
        if fail:
            await self._tick()
            self._error("server_error", "The mock server had an error while processing your request (injected)")
            self._finish(resp, "failed")
            return
        if "text" in entry:
            await self._run_message(resp, entry["text"])
        if "function_call" in entry:
            await self._run_function_call(resp, entry["function_call"])
        await self._tick()
        self._finish(resp, "completed")

    def _finish(self, resp: _Resp, status: str) -> None:
        if self._active is not resp:  # cancelled meanwhile: its end was already reported
            return
        self._active = None
        self._ev(EventType.RESPONSE_DONE, self._info(resp, status), response_id=resp.id)
        self._start_next()

    async def _open_item(self, resp: _Resp, item: dict[str, Any], kind: str) -> _Out:
        prev = self._conv[-1] if self._conv else None
        out = _Out(item["id"], kind, resp.in_conv, prev, item)
        resp.items.append(out)
        await self._tick()
        self._ev(EventType.OUTPUT_ITEM_ADDED, dict(item), item_id=out.id, response_id=resp.id)
        if resp.in_conv:
            self._conv.append(out.id)
            await self._tick()
            self._ev(EventType.ITEM_ADDED, {**item, "previous_item_id": prev}, item_id=out.id, response_id=resp.id)
        return out

    async def _close_item(self, resp: _Resp, out: _Out, item: dict[str, Any]) -> None:
        out.item = item
        await self._tick()
        self._ev(EventType.OUTPUT_ITEM_DONE, dict(item), item_id=out.id, response_id=resp.id)
        if resp.in_conv and out.id in self._conv:
            await self._tick()
            self._ev(EventType.ITEM_DONE, {**item, "previous_item_id": out.prev}, item_id=out.id, response_id=resp.id)
        out.done = True

    async def _run_message(self, resp: _Resp, text: str) -> None:
        base = {"id": self._new_id("item"), "object": "realtime.item", "type": "message", "role": "assistant"}
        out = await self._open_item(resp, {**base, "status": "in_progress", "content": []}, "message")
        if resp.audio and resp.in_conv:
            self._playing = out
        words = text.split()
        full = " ".join(words)
        cfg = self.config
        ids: dict[str, Any] = {"item_id": out.id, "response_id": resp.id}
        part_kind = "audio" if resp.audio else "text"
        await self._tick()
        self._ev(EventType.CONTENT_PART_ADDED, {"type": part_kind, "transcript" if resp.audio else "text": ""}, **ids)
        for index, word in enumerate(words):
            delta = word if index == 0 else " " + word
            await self._tick()
            if not resp.audio:
                self._ev(EventType.TEXT_DELTA, delta, **ids)
                continue
            self._ev(EventType.TRANSCRIPT_DELTA, delta, **ids)
            pcm = _word_audio(word, cfg.seed, cfg.audio_ms_per_char, cfg.word_gap_ms)
            await self._tick()
            out.audio_bytes += len(pcm)
            self._ev(EventType.AUDIO_DELTA, pcm, **ids)
        await self._tick()
        if resp.audio:
            self._ev(EventType.AUDIO_DONE, None, **ids)
            await self._tick()
            self._ev(EventType.TRANSCRIPT_DONE, full, **ids)
            content = {"type": "output_audio", "transcript": full}
            part = {"type": "audio", "transcript": full}
        else:
            self._ev(EventType.TEXT_DONE, full, **ids)
            content = {"type": "output_text", "text": full}
            part = {"type": "text", "text": full}
        await self._tick()
        self._ev(EventType.CONTENT_PART_DONE, part, **ids)
        if resp.in_conv:
            self._conv_audio_ms[out.id] = out.audio_bytes // _BYTES_PER_MS
        await self._close_item(resp, out, {**base, "status": "completed", "content": [content]})

    async def _run_function_call(self, resp: _Resp, call: Mapping[str, str]) -> None:
        call_id = self._new_id("call")
        base = {"id": self._new_id("item"), "object": "realtime.item", "type": "function_call",
                "name": call["name"], "call_id": call_id}
        out = await self._open_item(resp, {**base, "status": "in_progress", "arguments": ""}, "function_call")
        ids: dict[str, Any] = {"item_id": out.id, "response_id": resp.id}
        await self._tick()
        self._ev(EventType.FUNCTION_CALL_ARGUMENTS_DELTA, call["arguments"], **ids)
        await self._tick()
        self._ev(EventType.FUNCTION_CALL, FunctionCall(name=call["name"], call_id=call_id, arguments=call["arguments"],
                                                       item_id=out.id, response_id=resp.id), **ids)
        await self._close_item(resp, out, {**base, "status": "completed", "arguments": call["arguments"]})

    async def cancel_response(self) -> bool:
        """Cancel the active response (and drop queued requests); whether there was any."""
        self._require_connected()
        self._record("call", "cancel_response")
        had_queue = bool(self._queue)
        self._queue.clear()
        resp = self._stop_active()
        if resp is not None:
            self._emit_cancelled(resp, "client_cancelled")
        return resp is not None or had_queue

    # ------------------------------------------------------------ truncation
    def _audio_ms_sent(self, item_id: str) -> int | None:
        if self._playing is not None and self._playing.id == item_id:
            return self._playing.audio_bytes // _BYTES_PER_MS
        return self._conv_audio_ms.get(item_id)

    async def truncate(self, item_id: str, audio_end_ms: int, *, content_index: int = 0) -> None:
        """``conversation.item.truncate``; the server's errors (unknown item, 0 ms, beyond the
        audio sent) come back as ERROR events, as on the wire."""
        if isinstance(audio_end_ms, bool) or not isinstance(audio_end_ms, int) or audio_end_ms < 0:
            raise ValueError(f"audio_end_ms must be an int >= 0, got {audio_end_ms!r}")
        self._require_connected()
        self._record("call", "truncate", {"item_id": item_id, "audio_end_ms": audio_end_ms,
                                          "content_index": content_index})
        sent = self._audio_ms_sent(item_id) if item_id in self._conv else None
        if sent is None:
            self._error("invalid_value", f"item {item_id} is not an assistant audio item in the conversation",
                        param="item_id", request_type="conversation.item.truncate")
        elif audio_end_ms == 0 or audio_end_ms > sent:
            self._error("invalid_value", f"audio_end_ms {audio_end_ms} is outside (0, {sent}] ms of audio",
                        param="audio_end_ms", request_type="conversation.item.truncate")
        else:
            self._truncated(item_id, audio_end_ms, content_index)

    def _truncated(self, item_id: str, audio_end_ms: int, content_index: int = 0) -> None:
        self._conv_audio_ms[item_id] = audio_end_ms
        if self._playing is not None and self._playing.id == item_id:
            self._playing = None
        self._ev(EventType.ITEM_TRUNCATED, {"content_index": content_index, "audio_end_ms": audio_end_ms},
                 item_id=item_id)

    async def interrupt(self, *, item_id: str | None = None, played_ms: int | None = None) -> InterruptResult:
        """Barge-in, with the OpenAI provider's rules (see the module docstring); ``item_id``
        names the item being heard (default: the one whose audio was sent last)."""
        if played_ms is not None and (isinstance(played_ms, bool) or not isinstance(played_ms, int) or played_ms < 0):
            raise ValueError(f"played_ms must be an int >= 0 or None, got {played_ms!r}")
        if item_id is not None and not isinstance(item_id, str):
            raise TypeError("item_id must be a str or None")
        self._require_connected()
        self._record("call", "interrupt", {"played_ms": played_ms} if item_id is None
                     else {"played_ms": played_ms, "item_id": item_id})
        playing = self._playing
        cut_id = item_id if item_id is not None else (playing.id if playing is not None else None)
        received = self._audio_ms_sent(cut_id) if cut_id is not None and cut_id in self._conv else None
        resp = self._stop_active()  # first: no delta of the cancelled response gets out after this
        action, end_ms = "none", None
        if cut_id is not None and received is not None:
            end_ms = received if played_ms is None else min(played_ms, received)
            if end_ms > 0:
                self._truncated(cut_id, end_ms)
                action = "truncated"
            else:
                self._delete(cut_id)
                action = "deleted"
        if resp is not None:
            self._emit_cancelled(resp, "client_cancelled")
        return InterruptResult(item_id=cut_id, played_ms=played_ms,
                               audio_end_ms=end_ms, action=action, cancelled_response=resp is not None,
                               response_id=resp.id if resp is not None else None)
