"""Scripted responses of the fake server: the GA event sequence, one step at a time (sans-I/O).

A response is a generator that emits events through its session and yields how many
milliseconds of output the step carried; the I/O shell sleeps ``ms * pace`` between steps,
which is how audio goes out faster than real time but still streamed. Cancelling closes
the generator and finishes the response with ``response.done`` (status ``cancelled``).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from typing import Any, Generator, Iterator, Mapping, Protocol

from .audio import alaw_encode, bytes_per_ms, synthesize, ulaw_encode
from .config import FakeServerConfig, ScriptedResponse

__all__ = ["ResponseRun", "ResponseSession", "response_steps", "finish_cancelled", "audio_for_text"]

log = logging.getLogger("voiceengine.testing.responses")


@dataclass(slots=True, kw_only=True)
class ResponseRun:
    """State of one response in flight."""

    id: str
    out_of_band: bool
    modalities: tuple[str, ...]
    output_format: dict[str, Any]
    voice: Any
    metadata: Any
    script: ScriptedResponse
    conversation_id: str | None
    output: list[dict[str, Any]] = field(default_factory=list)
    # The item being streamed: for closing it out on cancel.
    current: dict[str, Any] | None = None
    output_ms: int = 0
    steps: Generator[int, None, None] | None = None

    def shell(self, status: str) -> dict[str, Any]:
        """The response object as the wire carries it."""
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": None,
            "output": [dict(i) for i in self.output],
            "conversation_id": self.conversation_id,
            "output_modalities": list(self.modalities),
            "max_output_tokens": "inf",
            "audio": {"output": {"format": dict(self.output_format), "voice": self.voice}},
            "usage": None,
            "metadata": self.metadata,
        }


class ResponseSession(Protocol):
    """What a response needs of its session (the fake server's ``FakeSession``): ids, the
    outgoing event queue, the conversation items and the accounting a response updates."""

    config: FakeServerConfig
    function_calls: dict[str, dict[str, Any]]

    def new_id(self, prefix: str) -> str: ...
    def emit(self, type_: str, **fields: Any) -> dict[str, Any]: ...
    def emit_audio_delta(self, base: Mapping[str, Any], b64: str, nbytes: int) -> None: ...
    def has_item(self, item_id: str) -> bool: ...
    def previous_of(self, item_id: str) -> str | None: ...
    def insert_item(self, item: dict[str, Any], previous_item_id: str | None) -> str | None: ...
    def update_item(self, item: dict[str, Any]) -> None: ...
    def record_audio_out(self, item_id: str, piece: bytes) -> None: ...
    def context_chars(self) -> int: ...
    def input_audio_ms_total(self) -> int: ...
    def finish_response(self, run: ResponseRun, response: dict[str, Any]) -> None: ...


def audio_for_text(text: str, output_format: dict[str, Any], session: ResponseSession) -> tuple[bytes, tuple[int, ...], tuple[str, ...]]:
    """Reply audio in the session's output format, word offsets in *output* bytes, and words."""
    ftype = output_format.get("type", "audio/pcm")
    rate = 24000 if ftype == "audio/pcm" else 8000
    syn = synthesize(text, rate, session.config.synth)
    if ftype == "audio/pcm":
        return syn.pcm, syn.word_offsets, syn.words
    enc = ulaw_encode if ftype == "audio/pcmu" else alaw_encode
    # G.711 is one byte per sample: halve PCM16 offsets.
    return enc(syn.pcm), tuple(o // 2 for o in syn.word_offsets), syn.words


def _base(run: ResponseRun, item_id: str, output_index: int) -> dict[str, Any]:
    return {"response_id": run.id, "item_id": item_id, "output_index": output_index}


def _message_steps(session: ResponseSession, run: ResponseRun, output_index: int) -> Iterator[int]:
    item_id = session.new_id("item")
    audio_mode = "audio" in run.modalities
    item: dict[str, Any] = {
        "id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
        "status": "in_progress", "content": [],
    }
    run.output.append(item)
    run.current = {"item": item, "output_index": output_index, "part": False, "text": "", "audio": audio_mode}
    session.emit("response.output_item.added", response_id=run.id, output_index=output_index, item=dict(item))
    if not run.out_of_band:
        prev = session.insert_item(item, None)
        session.emit("conversation.item.added", previous_item_id=prev, item=dict(item))
    base = _base(run, item_id, output_index)
    part = {"type": "audio", "transcript": ""} if audio_mode else {"type": "text", "text": ""}
    session.emit("response.content_part.added", **base, content_index=0, part=part)
    run.current["part"] = True
    yield 0
    words = run.script.text.split()
    if audio_mode:
        pcm, offsets, words_t = audio_for_text(run.script.text, run.output_format, session)
        bpm = bytes_per_ms(run.output_format.get("type", "audio/pcm"))
        chunk = bpm * session.config.chunk_ms
        w = 0
        for start in range(0, len(pcm), chunk):
            end = min(len(pcm), start + chunk)
            while w < len(words_t) and offsets[w] < end:
                delta = words_t[w] if w == 0 else " " + words_t[w]
                run.current["text"] += delta
                session.emit("response.output_audio_transcript.delta", **base, content_index=0, delta=delta)
                w += 1
            piece = pcm[start:end]
            session.record_audio_out(item_id, piece)
            session.emit_audio_delta(base, base64.b64encode(piece).decode("ascii"), len(piece))
            ms = len(piece) // bpm
            run.output_ms += ms
            yield ms
        transcript = " ".join(words)
        session.emit("response.output_audio.done", **base, content_index=0)
        session.emit("response.output_audio_transcript.done", **base, content_index=0, transcript=transcript)
        final_part = {"type": "audio", "transcript": transcript}
        content = [{"type": "output_audio", "transcript": transcript}]
    else:
        for i, word in enumerate(words):
            delta = word if i == 0 else " " + word
            run.current["text"] += delta
            session.emit("response.output_text.delta", **base, content_index=0, delta=delta)
            ms = max(10, session.config.synth.ms_per_char * len(word))
            run.output_ms += ms
            yield ms
        text = " ".join(words)
        session.emit("response.output_text.done", **base, content_index=0, text=text)
        final_part = {"type": "text", "text": text}
        content = [{"type": "output_text", "text": text}]
    session.emit("response.content_part.done", **base, content_index=0, part=final_part)
    item["status"] = "completed"
    item["content"] = content
    run.current = None
    session.emit("response.output_item.done", response_id=run.id, output_index=output_index, item=dict(item))
    if not run.out_of_band:
        session.update_item(item)
        session.emit("conversation.item.done", previous_item_id=session.previous_of(item_id), item=dict(item))
    yield 0


def _function_steps(session: ResponseSession, run: ResponseRun, output_index: int, fc: Any) -> Iterator[int]:
    item_id = session.new_id("item")
    call_id = fc.call_id or session.new_id("call")
    args = fc.arguments_json
    item: dict[str, Any] = {
        "id": item_id, "object": "realtime.item", "type": "function_call", "status": "in_progress",
        "name": fc.name, "call_id": call_id, "arguments": "",
    }
    run.output.append(item)
    run.current = {"item": item, "output_index": output_index, "part": False, "text": "", "audio": False}
    session.emit("response.output_item.added", response_id=run.id, output_index=output_index, item=dict(item))
    if not run.out_of_band:
        prev = session.insert_item(item, None)
        session.emit("conversation.item.added", previous_item_id=prev, item=dict(item))
    yield 0
    base = _base(run, item_id, output_index)
    n = max(1, min(3, len(args)))
    size = -(-len(args) // n) if args else 0
    pieces = [args[i:i + size] for i in range(0, len(args), size)] if args else [""]
    for piece in pieces:
        item["arguments"] += piece
        session.emit("response.function_call_arguments.delta", **base, call_id=call_id, delta=piece)
        yield 10
    session.emit("response.function_call_arguments.done", **base, call_id=call_id, name=fc.name, arguments=args)
    item["status"] = "completed"
    run.current = None
    session.function_calls[call_id] = {"name": fc.name, "arguments": args, "item_id": item_id, "response_id": run.id}
    session.emit("response.output_item.done", response_id=run.id, output_index=output_index, item=dict(item))
    if not run.out_of_band:
        session.update_item(item)
        session.emit("conversation.item.done", previous_item_id=session.previous_of(item_id), item=dict(item))
    yield 0


def _usage(run: ResponseRun, session: ResponseSession) -> dict[str, Any]:
    # Deterministic, plausible figures: ~4 chars per text token, ~50 ms per audio token.
    text_out = sum(len(str(i.get("arguments", ""))) for i in run.output) // 4 + len(run.script.text) // 4
    audio_out = run.output_ms // 50
    text_in = session.context_chars() // 4
    audio_in = session.input_audio_ms_total() // 50
    return {
        "total_tokens": text_out + audio_out + text_in + audio_in,
        "input_tokens": text_in + audio_in,
        "output_tokens": text_out + audio_out,
        "input_token_details": {"text_tokens": text_in, "audio_tokens": audio_in, "cached_tokens": 0},
        "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
    }


def response_steps(session: ResponseSession, run: ResponseRun) -> Generator[int, None, None]:
    """The whole response after ``response.created``: yields output ms per step."""
    index = 0
    if run.script.text:
        yield from _message_steps(session, run, index)
        index += 1
    for fc in run.script.function_calls:
        yield from _function_steps(session, run, index, fc)
        index += 1
    resp = run.shell("completed")
    resp["status_details"] = None
    resp["usage"] = _usage(run, session)
    session.finish_response(run, resp)


def finish_cancelled(session: ResponseSession, run: ResponseRun, reason: str, close_items: bool) -> None:
    """Close out a cancelled response: the open item (when ``close_items``) then response.done."""
    cur = run.current
    if cur is not None:
        item = cur["item"]
        item["status"] = "incomplete"
        base = _base(run, item["id"], cur["output_index"])
        if close_items:
            if item["type"] == "message" and cur["part"]:
                text = cur["text"]
                if cur["audio"]:
                    session.emit("response.output_audio.done", **base, content_index=0)
                    session.emit("response.output_audio_transcript.done", **base, content_index=0, transcript=text)
                    part = {"type": "audio", "transcript": text}
                    item["content"] = [{"type": "output_audio", "transcript": text}]
                else:
                    session.emit("response.output_text.done", **base, content_index=0, text=text)
                    part = {"type": "text", "text": text}
                    item["content"] = [{"type": "output_text", "text": text}]
                session.emit("response.content_part.done", **base, content_index=0, part=part)
            session.emit("response.output_item.done", response_id=run.id, output_index=cur["output_index"], item=dict(item))
        if not run.out_of_band and session.has_item(item["id"]):
            session.update_item(item)
            if close_items:
                session.emit("conversation.item.done", previous_item_id=session.previous_of(item["id"]), item=dict(item))
        run.current = None
    resp = run.shell("cancelled")
    resp["status_details"] = {"type": "cancelled", "reason": reason}
    resp["usage"] = _usage(run, session)
    session.finish_response(run, resp)
