"""Conversation items -> ``conversation.item.create`` wire items (private).

Used by :meth:`voiceengine.state.ConversationState.snapshot` to replay a conversation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from .state import ConversationItem


def replay_items(
    items: Iterable[ConversationItem], *, include_ids: bool,
) -> tuple[tuple[dict[str, Any], ...], tuple[str, ...], tuple[str, ...]]:
    """The wire items, their ids and the ids of the items skipped (nothing replayable)."""
    wire: list[dict[str, Any]] = []
    ids: list[str] = []
    skipped: list[str] = []
    for item in items:
        entry = _wire_item(item)
        if entry is None:
            skipped.append(item.id)
            continue
        if include_ids:
            entry = {"id": item.id, **entry}
        wire.append(entry)
        ids.append(item.id)
    return tuple(wire), tuple(ids), tuple(skipped)


def _wire_item(item: ConversationItem) -> dict[str, Any] | None:
    if item.type == "function_call":
        if item.name is None or item.status == "in_progress" and not item.arguments:
            return None
        entry: dict[str, Any] = {"type": "function_call", "name": item.name, "arguments": item.arguments or ""}
        if item.call_id:
            entry["call_id"] = item.call_id
        return entry
    if item.type == "function_call_output":
        if not item.call_id:
            return None
        return {"type": "function_call_output", "call_id": item.call_id, "output": item.output or ""}
    if item.type != "message":
        return None
    if item.role == "assistant":
        text = item.heard_transcript if item.has_audio and item.transcript is not None else item.text
        if item.text and item.has_audio and not text:
            text = item.text
        if not text:
            return None
        return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    if item.role in ("user", "system"):
        pieces = [p for p in (item.text, item.transcript) if p]
        if item.role == "system":
            pieces = [item.text] if item.text else []
        if not pieces:
            return None
        return {"type": "message", "role": item.role,
                "content": [{"type": "input_text", "text": piece} for piece in pieces]}
    return None
