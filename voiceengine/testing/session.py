"""One fake Realtime session: the GA protocol rules, sans-I/O.

Feed client texts to :meth:`FakeSession.receive`; drain server events with
:meth:`FakeSession.events_to_send`; step active responses with :meth:`FakeSession.advance`
(new ones are listed by :meth:`FakeSession.take_new_responses`). No asyncio, no sockets:
the shell in ``server.py`` moves the bytes and does the pacing.
"""

from __future__ import annotations

import binascii
import itertools
import json
import logging
from collections import deque
from typing import Any, Callable, Mapping

from .audio import alaw_decode, bytes_per_ms, ulaw_decode
from .config import FakeServerConfig, ResponseContext, ScriptedResponse, default_response, default_transcript
from .responses import ResponseRun, finish_cancelled, response_steps
from .sessionconfig import ClientError, apply_session_update, default_session, validate_item, validate_response_options
from .vad import EnergyVad, VadEventKind, threshold_to_dbfs

__all__ = ["FakeSession", "ClientError"]

log = logging.getLogger("voiceengine.testing.session")


def decode_b64(value: Any, param: str) -> bytes:
    """Strict base64 (no whitespace, no junk) like the service; errors name ``param``."""
    if not isinstance(value, str):
        raise ClientError("invalid_type", f"Invalid type for '{param}': expected a base64 string.", param)
    try:
        return binascii.a2b_base64(value, strict_mode=True) if value else b""
    except (binascii.Error, ValueError):
        raise ClientError("invalid_value", f"Invalid '{param}': not valid base64-encoded audio.", param) from None


class FakeSession:
    """Per-connection protocol state. Attributes tests use: ``received``, ``sent``, ``errors``,
    ``audio_sent_by_item``, ``items``, ``function_calls``, ``function_outputs``, ``truncations``,
    ``session`` (the GA session object), ``closed_code``.
    """

    def __init__(self, config: FakeServerConfig, *, index: int = 0, model: str | None = None,
                 now: Callable[[], float] | None = None) -> None:
        self.config = config
        self.index = index
        self.clock = now or config.clock
        self.started_at = self.clock()
        self._ids = itertools.count(1)
        self.id = self.new_id("sess")
        self.conversation_id = self.new_id("conv")
        cap = config.max_recorded_events
        self.received: deque[dict[str, Any]] = deque(maxlen=cap)
        self.sent: deque[dict[str, Any]] = deque(maxlen=cap)
        self.errors: deque[dict[str, Any]] = deque(maxlen=cap)
        self.faulty_sent: deque[str] = deque(maxlen=cap)   # raw texts of injected bad messages
        # client messages that arrived but were never handled (a stall, or the message that
        # triggered a fault closing the connection): for exact accounting of what got through
        self.ignored: deque[dict[str, Any]] = deque(maxlen=cap)
        self.request_headers: dict[str, str] = {}
        self.closed_code: int | None = None
        self.finished = False  # the connection is gone (see release_live_state)
        self.session: dict[str, Any] = default_session(config, self.id, model or config.model,
                                                       int(config.wall_clock()))
        self._outbox: list[dict[str, Any]] = []
        self._items: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []
        self._item_audio: dict[str, bytes] = {}         # user input audio, for retrieve
        self._audio_out: dict[str, bytearray] = {}      # assistant audio as sent (retain_item_audio)
        self._audio_out_bytes: dict[str, int] = {}      # its length, kept either way (truncate bounds)
        self.function_calls: dict[str, dict[str, Any]] = {}
        self.function_outputs: dict[str, str] = {}
        self.truncations: list[dict[str, Any]] = []
        self._buffer = bytearray()
        self._input_bytes_total = 0
        self._speech_item: str | None = None
        self._speech_start_ms = 0
        self._vad: EnergyVad | None = None
        self._vad_origin_ms = 0
        self._turns = 0
        self._response_count = 0
        self._runs: dict[str, ResponseRun] = {}
        self._inband: str | None = None
        self._new_runs: list[str] = []
        self.interrupts = 0
        self._rebuild_vad()
        self._handlers: dict[str, Callable[[dict[str, Any], str | None], None]] = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_append,
            "input_audio_buffer.commit": self._on_commit,
            "input_audio_buffer.clear": self._on_clear,
            "conversation.item.create": self._on_item_create,
            "conversation.item.retrieve": self._on_item_retrieve,
            "conversation.item.truncate": self._on_item_truncate,
            "conversation.item.delete": self._on_item_delete,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
        }

    # ---------------------------------------------------------------- plumbing
    def new_id(self, prefix: str) -> str:
        """A deterministic id: prefix, session index, counter."""
        return f"{prefix}_{self.index:04d}{next(self._ids):08d}"

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Queue a server event."""
        ev = {"type": type_, "event_id": self.new_id("event"), **fields}
        self._outbox.append(ev)
        return ev

    def emit_audio_delta(self, base: Mapping[str, Any], b64: str, nbytes: int) -> None:
        """Queue one response.output_audio.delta."""
        self.emit("response.output_audio.delta", **base, content_index=0, delta=b64)

    def error(self, code: str | None, message: str, *, param: str | None = None,
              event_id: str | None = None, type_: str = "invalid_request_error") -> dict[str, Any]:
        """Queue an ``error`` event answering client event ``event_id``."""
        return self.emit("error", error={"type": type_, "code": code, "message": message,
                                          "param": param, "event_id": event_id})

    def events_to_send(self) -> list[dict[str, Any]]:
        """Drain queued server events (in order)."""
        out, self._outbox = self._outbox, []
        return out

    def record_sent(self, event: Mapping[str, Any]) -> None:
        """The shell calls this for each well-formed event actually written."""
        ev = dict(event)
        if not self.config.record_audio_payloads and ev.get("type") == "response.output_audio.delta":
            ev["delta"] = ""
        self.sent.append(ev)
        if ev.get("type") == "error":
            self.errors.append(ev)

    def start(self) -> None:
        """Queue ``session.created``."""
        self.emit("session.created", session=json.loads(json.dumps(self.session)))

    def release_live_state(self) -> None:
        """The connection is gone: drop what only a live session needs.

        The uncommitted input buffer, the VAD, queued events and responses in flight go;
        the records (``received``, ``sent``, ``items``, item audio...) stay for tests to read
        for as long as the server keeps the session (``FakeServerConfig.keep_closed_sessions``).
        """
        self.finished = True
        for run in self._runs.values():
            if run.steps is not None:
                run.steps.close()
                run.steps = None
        self._runs.clear()
        self._new_runs = []
        self._inband = None
        self._buffer = bytearray()
        self._vad = None
        self._speech_item = None
        self._outbox = []

    def expired(self) -> bool:
        """True once the configured maximum session duration has passed on the clock."""
        limit = self.config.max_session_s
        return limit is not None and self.clock() - self.started_at >= limit

    # ---------------------------------------------------------------- inbound
    def receive(self, data: str | bytes) -> None:
        """Handle one client message; protocol violations become ``error`` events."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            self.error("invalid_value", "Binary frames are not supported; send JSON text frames.")
            return
        try:
            ev = json.loads(data)
        except json.JSONDecodeError as exc:
            self.error("invalid_json", f"The client event is not valid JSON: {exc.msg}.")
            return
        if not isinstance(ev, dict):
            self.error("invalid_json", "The client event must be a JSON object.")
            return
        self._record_received(ev)
        raw_eid = ev.get("event_id")
        eid = raw_eid if isinstance(raw_eid, str) else None
        etype = ev.get("type")
        try:
            if raw_eid is not None and eid is None:
                raise ClientError("invalid_type", "Invalid type for 'event_id': expected a string.", "event_id")
            if not isinstance(etype, str):
                raise ClientError("missing_required_parameter", "Missing required parameter: 'type'.", "type")
            handler = self._handlers.get(etype)
            if handler is None:
                raise ClientError(
                    "invalid_value",
                    f"Invalid value: '{etype}'. Supported values are: "
                    + ", ".join(f"'{t}'" for t in self._handlers) + ".",
                    "type",
                )
            handler(ev, eid)
        except ClientError as exc:
            self.error(exc.code, exc.message, param=exc.param, event_id=eid, type_=exc.type)

    def _record_received(self, ev: dict[str, Any]) -> None:
        if not self.config.record_audio_payloads and ev.get("type") == "input_audio_buffer.append":
            ev = {**ev, "audio": ""}
        self.received.append(ev)

    # ---------------------------------------------------------------- session
    def _on_session_update(self, ev: dict[str, Any], eid: str | None) -> None:
        old_td = json.dumps(self.session["audio"]["input"].get("turn_detection"))
        old_fmt = json.dumps(self.session["audio"]["input"]["format"])
        self.session = apply_session_update(self.session, ev.get("session"))
        if json.dumps(self.session["audio"]["input"]["format"]) != old_fmt:
            self._buffer.clear()
        if old_td != json.dumps(self.session["audio"]["input"].get("turn_detection")) or self._vad is None:
            self._rebuild_vad()
        self.emit("session.updated", session=json.loads(json.dumps(self.session)))

    # ---------------------------------------------------------------- conversation
    @property
    def items(self) -> tuple[dict[str, Any], ...]:
        """Conversation items in order (copies)."""
        return tuple(self.public_item(self._items[i], with_audio=False) for i in self._order)

    def has_item(self, item_id: str) -> bool:
        """True when ``item_id`` is in the conversation."""
        return item_id in self._items

    def last_item_id(self) -> str | None:
        """Id of the newest item, or None."""
        return self._order[-1] if self._order else None

    def previous_of(self, item_id: str) -> str | None:
        """Id of the item before ``item_id`` (None at the root or when unknown)."""
        try:
            i = self._order.index(item_id)
        except ValueError:
            return None
        return self._order[i - 1] if i else None

    def insert_item(self, item: dict[str, Any], previous_item_id: str | None) -> str | None:
        """Insert after ``previous_item_id`` (None = at the end, "root" = first); returns the real previous id."""
        if previous_item_id is None:
            prev = self.last_item_id()
            self._order.append(item["id"])
        elif previous_item_id == "root":
            prev = None
            self._order.insert(0, item["id"])
        else:
            pos = self._order.index(previous_item_id)
            prev = previous_item_id
            self._order.insert(pos + 1, item["id"])
        self._items[item["id"]] = item
        while len(self._order) > self.config.max_history_items:
            self._forget(self._order[0])
        return prev

    def update_item(self, item: dict[str, Any]) -> None:
        """Replace the stored copy of an item (when it is still in the conversation)."""
        if item["id"] in self._items:
            self._items[item["id"]] = item

    def _forget(self, item_id: str) -> None:
        self._order.remove(item_id)
        self._items.pop(item_id, None)
        self._item_audio.pop(item_id, None)
        self._audio_out.pop(item_id, None)
        self._audio_out_bytes.pop(item_id, None)

    def public_item(self, item: Mapping[str, Any], *, with_audio: bool = False) -> dict[str, Any]:
        """Wire copy of an item; audio payloads only when ``with_audio`` (retrieve)."""
        out: dict[str, Any] = json.loads(json.dumps(item))
        for c in out.get("content", ()):
            if with_audio and c.get("type") == "input_audio":
                if item["id"] in self._item_audio:
                    c["audio"] = binascii.b2a_base64(self._item_audio[item["id"]], newline=False).decode()
            elif with_audio and c.get("type") == "output_audio" and item["id"] in self._audio_out:
                audio = bytes(self._audio_out[item["id"]])
                cut = self._truncated_at(item["id"])
                if cut is not None:
                    audio = audio[: cut * bytes_per_ms(self._out_fmt())]
                c["audio"] = binascii.b2a_base64(audio, newline=False).decode()
            else:
                c.pop("audio", None)
        return out

    def record_audio_out(self, item_id: str, piece: bytes) -> None:
        """Note audio sent for an assistant item: its length always, its bytes when retained."""
        self._audio_out_bytes[item_id] = self._audio_out_bytes.get(item_id, 0) + len(piece)
        if self.config.retain_item_audio:
            self._audio_out.setdefault(item_id, bytearray()).extend(piece)

    def keep_item_audio(self, item_id: str, audio: bytes) -> None:
        """Keep a user item's input audio for ``conversation.item.retrieve`` (when retained)."""
        if self.config.retain_item_audio:
            self._item_audio[item_id] = audio

    @property
    def audio_sent_by_item(self) -> dict[str, bytes]:
        """Assistant audio exactly as sent (in the output format), per item id.

        Empty when the server runs with ``retain_item_audio=False``.
        """
        return {k: bytes(v) for k, v in self._audio_out.items()}

    def _out_fmt(self) -> str:
        return str(self.session["audio"]["output"]["format"].get("type", "audio/pcm"))

    def _truncated_at(self, item_id: str) -> int | None:
        for t in reversed(self.truncations):
            if t["item_id"] == item_id:
                return int(t["audio_end_ms"])
        return None

    def context_chars(self) -> int:
        """Rough size of the text context, for usage figures."""
        return sum(len(json.dumps(self._items[i].get("content", ""))) for i in self._order)

    def _on_item_create(self, ev: dict[str, Any], eid: str | None) -> None:
        prev = ev.get("previous_item_id")
        if prev is not None and (not isinstance(prev, str) or (prev != "root" and prev not in self._items)):
            raise ClientError("invalid_value", f"Previous item with id '{prev}' does not exist.", "previous_item_id")
        item, audio = validate_item(ev.get("item"), "item")
        if "id" in item:
            if item["id"] in self._items:
                raise ClientError("invalid_value", f"Item with id '{item['id']}' already exists.", "item.id")
        else:
            item["id"] = self.new_id("item")
        if audio is not None:
            self.keep_item_audio(item["id"], audio)
        if item["type"] == "function_call_output":
            self.function_outputs[item["call_id"]] = item["output"]
        real_prev = self.insert_item(item, prev)
        self.emit("conversation.item.added", previous_item_id=real_prev, item=self.public_item(item))
        self.emit("conversation.item.done", previous_item_id=real_prev, item=self.public_item(item))

    def _require_item(self, ev: Mapping[str, Any]) -> str:
        item_id = ev.get("item_id")
        if not isinstance(item_id, str):
            raise ClientError("missing_required_parameter", "Missing required parameter: 'item_id'.", "item_id")
        if item_id not in self._items:
            raise ClientError("item_not_found", f"Item with id '{item_id}' not found.", "item_id")
        return item_id

    def _on_item_retrieve(self, ev: dict[str, Any], eid: str | None) -> None:
        item_id = self._require_item(ev)
        self.emit("conversation.item.retrieved", item=self.public_item(self._items[item_id], with_audio=True))

    def _on_item_delete(self, ev: dict[str, Any], eid: str | None) -> None:
        item_id = self._require_item(ev)
        self._forget(item_id)
        self.emit("conversation.item.deleted", item_id=item_id)

    def _on_item_truncate(self, ev: dict[str, Any], eid: str | None) -> None:
        item_id = self._require_item(ev)
        ci, end_ms = ev.get("content_index"), ev.get("audio_end_ms")
        for name, value in (("content_index", ci), ("audio_end_ms", end_ms)):
            if value is None:
                raise ClientError("missing_required_parameter", f"Missing required parameter: '{name}'.", name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ClientError("invalid_type", f"Invalid type for '{name}': expected an integer.", name)
        if not isinstance(ci, int) or not isinstance(end_ms, int):  # checked just above; narrows the types
            raise ClientError("invalid_type", "content_index and audio_end_ms must be integers.", "audio_end_ms")
        item = self._items[item_id]
        if item.get("type") != "message" or item.get("role") != "assistant":
            raise ClientError("invalid_value", "Only assistant messages can be truncated.", "item_id")
        content = item.get("content") or []
        if not 0 <= ci < max(1, len(content)) or (content and content[ci].get("type") != "output_audio"):
            raise ClientError("invalid_value", f"Content index {ci} is not an audio content part.", "content_index")
        sent_ms = self._audio_out_bytes.get(item_id, 0) // bytes_per_ms(self._out_fmt())
        limit = self._truncated_at(item_id)
        have = sent_ms if limit is None else min(sent_ms, limit)
        if end_ms <= 0:
            raise ClientError("invalid_value", "audio_end_ms must be greater than 0; delete the item instead.",
                              "audio_end_ms")
        if end_ms > have:
            raise ClientError("invalid_value",
                              f"Audio content of {have}ms is already shorter than {end_ms}ms.", "audio_end_ms")
        # Like the real service: the server-side transcript goes, so no unheard text stays in context.
        if content:
            content[ci]["transcript"] = ""
        self.truncations.append({"item_id": item_id, "content_index": ci, "audio_end_ms": end_ms})
        self.emit("conversation.item.truncated", item_id=item_id, content_index=ci, audio_end_ms=end_ms)

    # ---------------------------------------------------------------- responses
    @property
    def response_active(self) -> bool:
        """True while an in-band response is in progress."""
        return self._inband is not None

    @property
    def active_responses(self) -> tuple[str, ...]:
        """Ids of every response in progress (in-band and out-of-band)."""
        return tuple(self._runs)

    def _on_response_create(self, ev: dict[str, Any], eid: str | None) -> None:
        opts = validate_response_options(ev.get("response"))
        if opts.get("conversation", "auto") != "none" and self._inband is not None:
            raise ClientError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self._inband}. "
                "Wait until the response is finished before creating a new one.",
            )
        self._start_response(opts, eid=eid)

    def _on_response_cancel(self, ev: dict[str, Any], eid: str | None) -> None:
        rid = ev.get("response_id")
        if rid is not None and not isinstance(rid, str):
            raise ClientError("invalid_type", "Invalid type for 'response_id': expected a string.", "response_id")
        target = rid if rid is not None else (self._inband or (next(reversed(self._runs)) if self._runs else None))
        if target is None or target not in self._runs:
            raise ClientError("response_cancel_not_active", "Cancellation failed: no active response found.")
        self.cancel(target, "client_cancelled")

    def _script_for(self, ctx: ResponseContext) -> ScriptedResponse:
        script = self.config.responses
        if script is None:
            chosen: Any = default_response(ctx)
        elif callable(script):
            chosen = script(ctx)
        elif ctx.index < len(script) or (self.config.cycle_responses and len(script)):
            chosen = script[ctx.index % len(script)]
        else:
            chosen = default_response(ctx)
        return ScriptedResponse(text=chosen) if isinstance(chosen, str) else chosen

    def _context(self, rid: str, opts: Mapping[str, Any], oob: bool) -> ResponseContext:
        items = list(opts["input"]) if "input" in opts else [self._items[i] for i in self._order]
        user_text = fn_out = None
        for it in reversed(items):
            if it.get("type") == "function_call_output" and user_text is None and fn_out is None:
                fn_out = str(it.get("output", ""))
            if it.get("type") == "message" and it.get("role") == "user":
                for c in it.get("content") or ():
                    user_text = c.get("text") or c.get("transcript") or user_text
                break
        return ResponseContext(
            index=self._response_count, session_index=self.index, response_id=rid,
            instructions=str(opts.get("instructions", self.session.get("instructions") or "")),
            output_modalities=tuple(opts.get("output_modalities") or self.session["output_modalities"]),
            out_of_band=oob, metadata=opts.get("metadata"), last_user_text=user_text,
            last_function_output=fn_out,
            items=tuple(self.public_item(i) if "id" in i else dict(i) for i in items),
        )

    def _start_response(self, opts: Mapping[str, Any], *, eid: str | None) -> str:
        rid = self.new_id("resp")
        oob = opts.get("conversation") == "none"
        ctx = self._context(rid, opts, oob)
        self._response_count += 1
        try:
            script = self._script_for(ctx)
        except Exception:  # a user's script callable failed: a failed response, not a dead server
            log.exception("response script failed")
            script = None
        out = self.session["audio"]["output"]
        voice = (opts.get("audio") or {}).get("output", {}).get("voice", out.get("voice"))
        fmt = (opts.get("audio") or {}).get("output", {}).get("format", out["format"])
        run = ResponseRun(id=rid, out_of_band=oob, modalities=ctx.output_modalities, output_format=dict(fmt),
                          voice=voice, metadata=opts.get("metadata"), script=script or ScriptedResponse(text="x"),
                          conversation_id=None if oob else self.conversation_id)
        self.emit("response.created", response=run.shell("in_progress"))
        if script is None:
            resp = run.shell("failed")
            resp["status_details"] = {"type": "failed", "error": {"type": "server_error", "code": "server_error",
                                                                  "message": "The response script raised."}}
            self.emit("response.done", response=resp)
            return rid
        self._runs[rid] = run
        if not oob:
            self._inband = rid
        run.steps = response_steps(self, run)
        self._new_runs.append(rid)
        return rid

    def take_new_responses(self) -> list[str]:
        """Ids of responses started since the last call (the shell starts a pacing task per id)."""
        out, self._new_runs = self._new_runs, []
        return out

    def advance(self, response_id: str) -> int | None:
        """Run one step of a response; the ms of output it carried, or None when it is over."""
        run = self._runs.get(response_id)
        if run is None or run.steps is None:
            return None
        try:
            return next(run.steps)
        except StopIteration:
            return None

    def finish_response(self, run: ResponseRun, response: dict[str, Any]) -> None:
        """Send response.done and forget the run (called by the step generator and cancel)."""
        self._runs.pop(run.id, None)
        if self._inband == run.id:
            self._inband = None
        self.emit("response.done", response=response)

    def cancel(self, response_id: str, reason: str) -> bool:
        """Cancel a response in progress (``reason``: client_cancelled or turn_detected)."""
        run = self._runs.get(response_id)
        if run is None:
            return False
        if run.steps is not None:
            run.steps.close()
            run.steps = None
        finish_cancelled(self, run, reason, self.config.cancel_closes_items)
        return True

    # ---------------------------------------------------------------- input audio: append/commit/clear, server VAD turns
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
