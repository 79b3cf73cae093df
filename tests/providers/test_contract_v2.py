"""Contract v2: neutral turn detection, new event payloads, capabilities, request_reply,
interrupt(item_id=...), and the provider-owned ConversationRecord."""

from __future__ import annotations

import json

import pytest

from voiceengine.exceptions import ConfigurationError, InvalidState
from voiceengine.providers.conversation import ConversationRecord, EntryKind
from voiceengine.providers.mock import MockConfig, MockProvider
from voiceengine.providers.openai.config import OpenAIConfig
from voiceengine.providers.openai.codecs import make_codec
from voiceengine.providers.openai.protocol import turn_detection_payload
from voiceengine.providers.types import (
    ConnectionChange,
    ConnectionState,
    Eagerness,
    EventType as E,
    FunctionCall,
    ProviderCapabilities,
    ProviderEvent,
    RestoreMethod,
    SessionExpiring,
    ToolCallCancelled,
    TurnDetection,
    TurnDetectionMode,
    Usage,
)


# ------------------------------------------------------------------ turn detection
@pytest.mark.parametrize("alias, mode", [
    ("server_vad", TurnDetectionMode.SERVER_VAD), ("semantic_vad", TurnDetectionMode.SEMANTIC_VAD),
    (None, TurnDetectionMode.MANUAL), ("manual", TurnDetectionMode.MANUAL),
])
def test_turn_detection_aliases(alias: str | None, mode: TurnDetectionMode) -> None:
    assert TurnDetection.coerce(alias).mode is mode


def test_turn_detection_from_openai_mapping() -> None:
    td = TurnDetection.coerce({"type": "server_vad", "silence_duration_ms": 700, "prefix_padding_ms": 200,
                               "threshold": 0.6, "interrupt_response": False, "create_response": False})
    assert (td.silence_ms, td.prefix_ms, td.threshold) == (700, 200, 0.6)
    assert not td.interrupt_on_speech and not td.auto_response


@pytest.mark.parametrize("bad, exc", [
    ("vad", ValueError), (3, TypeError), ({"type": "push_to_talk"}, ValueError),
    ({"type": "server_vad", "silence_duration_ms": -1}, ValueError),
    ({"type": "server_vad", "threshold": 1.5}, ValueError),
])
def test_turn_detection_refuses_bad_values(bad: object, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        TurnDetection.coerce(bad)  # type: ignore[arg-type]


def test_config_keeps_aliases_and_stores_manual_as_none() -> None:
    assert MockConfig(turn_detection="semantic_vad").turn_detection == "semantic_vad"
    assert MockConfig(turn_detection=TurnDetection(mode=TurnDetectionMode.MANUAL)).turn_detection is None
    assert MockConfig(turn_detection="manual").turn_detection is None
    neutral = TurnDetection(silence_ms=300)
    config = MockConfig(turn_detection=neutral)
    assert config.turn_detection is neutral and config.turn_detection_settings.silence_ms == 300
    with pytest.raises(ConfigurationError):
        MockConfig(turn_detection="vad")


def test_openai_encodes_the_neutral_setting() -> None:
    td = TurnDetection(silence_ms=400, prefix_ms=100, threshold=0.3, interrupt_on_speech=False, auto_response=False)
    assert turn_detection_payload(td) == {"type": "server_vad", "silence_duration_ms": 400, "prefix_padding_ms": 100,
                                          "threshold": 0.3, "interrupt_response": False, "create_response": False}
    semantic = TurnDetection(mode=TurnDetectionMode.SEMANTIC_VAD, eagerness=Eagerness.HIGH, silence_ms=400)
    assert turn_detection_payload(semantic) == {"type": "semantic_vad", "eagerness": "high"}
    assert turn_detection_payload(TurnDetection(mode=TurnDetectionMode.MANUAL)) is None
    for codec in ("ga", "beta"):
        text = make_codec(codec).session_update({"turn_detection": td}, "e1")
        assert '"silence_duration_ms":400' in text, codec


# ------------------------------------------------------------------ payloads
def test_usage_increments_and_running_totals() -> None:
    first = Usage(input_audio_tokens=10, output_audio_tokens=5, response_id="r1")
    assert first.input_tokens == 10 and first.total_tokens == 15
    total = first.plus(Usage(input_text_tokens=2, output_text_tokens=1))
    assert (total.input_tokens, total.output_tokens, total.response_id) == (12, 6, None)
    running_1 = Usage(input_audio_tokens=10)
    running_2 = Usage(input_audio_tokens=25, output_audio_tokens=7)
    assert running_2.since(running_1) == Usage(input_audio_tokens=15, output_audio_tokens=7)
    # a new service session counts from zero again: the increment is the new total
    assert Usage(input_audio_tokens=4).since(running_2) == Usage(input_audio_tokens=4)
    with pytest.raises(ValueError):
        Usage(input_text_tokens=-1)


def test_small_payloads_validate() -> None:
    assert SessionExpiring(time_left_ms=50_000).time_left_ms == 50_000
    with pytest.raises(ValueError):
        SessionExpiring(time_left_ms=-5)
    assert ToolCallCancelled(call_ids=["a", "b"]).call_ids == ("a", "b")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ToolCallCancelled(call_ids=(1,))  # type: ignore[arg-type]
    change = ConnectionChange(state=ConnectionState.CONNECTED, previous=ConnectionState.RECONNECTING,
                              phase="restored", restored_by=RestoreMethod.REPLAY)
    assert change.restored_by == "replay"


def test_capability_flags_default_off_and_set_by_providers() -> None:
    mock = MockProvider().get_capabilities()
    assert mock.client_cancel and mock.truncation and mock.manual_commit and mock.silent_context
    assert not mock.session_resumption
    openai = OpenAIConfig(api_key="k", url="ws://127.0.0.1:9")
    from voiceengine.providers.openai.provider import OpenAIProvider

    caps = OpenAIProvider(openai).get_capabilities()
    assert caps.item_positioning and caps.mutable_instructions and not caps.mutable_voice
    bare = ProviderCapabilities(name="x", input_format=caps.input_format, output_format=caps.output_format)
    assert not (bare.client_cancel or bare.silent_context or bare.session_resumption or bare.item_positioning)


# ------------------------------------------------------------------ request_reply / interrupt
async def test_request_reply_queues_without_waiting_and_checks_instructions() -> None:
    provider = MockProvider(MockConfig(turn_detection=None))
    await provider.connect()
    try:
        await provider.request_reply(instructions="Be brief.")
        assert provider.calls("create_response")[-1].args == {"instructions": "Be brief."}
        with pytest.raises(TypeError):
            await provider.request_reply(instructions=3)  # type: ignore[arg-type]
        await provider.wait_idle()
    finally:
        await provider.disconnect()


async def test_request_reply_refuses_instructions_without_the_capability() -> None:
    class NoInstructions(MockProvider):
        def get_capabilities(self) -> ProviderCapabilities:
            import dataclasses

            return dataclasses.replace(super().get_capabilities(), per_response_instructions=False)

    provider = NoInstructions(MockConfig(turn_detection=None))
    await provider.connect()
    try:
        with pytest.raises(InvalidState):
            await provider.request_reply(instructions="x")
        assert not provider.calls("create_response")
    finally:
        await provider.disconnect()


async def test_mock_interrupt_cuts_the_named_item() -> None:
    provider = MockProvider(MockConfig(turn_detection=None, responses=("One two three four five.", "Six seven.")))
    await provider.connect()
    try:
        await provider.send_text("hi")
        await provider.wait_idle()
        first = [e.item_id for e in provider.emitted(E.AUDIO_DELTA)][-1]
        assert first is not None
        result = await provider.interrupt(item_id=first, played_ms=120)
        assert (result.item_id, result.action, result.audio_end_ms) == (first, "truncated", 120)
        assert provider.conversation.get(first) is not None
        assert provider.conversation.get(first).heard_ms == 120  # type: ignore[union-attr]
    finally:
        await provider.disconnect()


# ------------------------------------------------------------------ ConversationRecord
def ev(kind: E, data: object = None, **kw: object) -> ProviderEvent:
    return ProviderEvent(type=kind, data=data, **kw)  # type: ignore[arg-type]


def msg(item_id: str, role: str, parts: list[dict[str, object]], **extra: object) -> dict[str, object]:
    return {"id": item_id, "type": "message", "role": role, "content": parts, **extra}


def test_record_folds_openai_shaped_events_in_order() -> None:
    rec = ConversationRecord()
    rec.apply(ev(E.ITEM_ADDED, msg("u1", "user", [{"type": "input_audio", "transcript": None}]), item_id="u1"))
    rec.apply(ev(E.INPUT_TRANSCRIPT, "What time is it?", item_id="u1"))
    rec.apply(ev(E.ITEM_ADDED, msg("a1", "assistant", [], status="in_progress"), item_id="a1"))
    rec.apply(ev(E.TRANSCRIPT_DELTA, "It is ", item_id="a1"))
    rec.apply(ev(E.AUDIO_DELTA, bytes(48 * 500), item_id="a1"))
    rec.apply(ev(E.TRANSCRIPT_DELTA, "noon now.", item_id="a1"))
    rec.apply(ev(E.AUDIO_DELTA, bytes(48 * 500), item_id="a1"))
    rec.apply(ev(E.ITEM_TRUNCATED, {"content_index": 0, "audio_end_ms": 500}, item_id="a1"))
    rec.apply(ev(E.TRANSCRIPT_DELTA, "ignored: unknown item", item_id="oob_item"))
    user, assistant = rec.entries
    assert (user.role, user.content_text) == ("user", "What time is it?")
    assert assistant.audio_ms == pytest.approx(1000.0) and assistant.heard_ms == 500
    assert assistant.transcript == "It is noon now." and assistant.content_text == "It is"  # half of it, cut at a word
    assert len(rec) == 2 and "oob_item" not in rec


def test_record_positions_items_and_removes_deleted_ones() -> None:
    rec = ConversationRecord()
    rec.add_message("user", "first", entry_id="m1")
    rec.add_message("user", "third", entry_id="m3")
    rec.add_item({"id": "m2", "type": "message", "role": "system", "content": [{"type": "input_text", "text": "s"}]},
                 previous_id="m1")
    assert [e.id for e in rec] == ["m1", "m2", "m3"]
    rec.apply(ev(E.ITEM_DELETED, item_id="m2"))
    assert [e.id for e in rec] == ["m1", "m3"]


def test_record_calls_outputs_and_cancellation() -> None:
    rec = ConversationRecord()
    rec.apply(ev(E.FUNCTION_CALL, FunctionCall(name="clock", call_id="c1", arguments="{}", item_id="f1")))
    rec.apply(ev(E.FUNCTION_CALL, FunctionCall(name="weather", call_id="c2", arguments="{}")))
    rec.add_function_output("c1", json.dumps({"time": "12:00"}))
    kinds = [(e.kind, e.call_id) for e in rec]
    assert kinds == [(EntryKind.FUNCTION_CALL, "c1"), (EntryKind.FUNCTION_CALL, "c2"),
                     (EntryKind.FUNCTION_CALL_OUTPUT, "c1")]
    assert rec.entries[1].synthetic_id and not rec.entries[0].synthetic_id
    rec.apply(ev(E.TOOL_CALL_CANCELLED, ToolCallCancelled(call_ids=("c2",))))
    assert [e.call_id for e in rec] == ["c1", "c1"]


def test_record_without_item_ids_opens_one_entry_per_turn() -> None:
    rec = ConversationRecord()
    rec.apply(ev(E.INPUT_TRANSCRIPT_DELTA, "Hel"))
    rec.apply(ev(E.INPUT_TRANSCRIPT, "Hello"))
    rec.apply(ev(E.TRANSCRIPT_DELTA, "Hi "))
    rec.apply(ev(E.TRANSCRIPT_DELTA, "there"))
    rec.apply(ev(E.GENERATION_DONE))
    rec.apply(ev(E.INPUT_TRANSCRIPT, "Again"))
    rec.apply(ev(E.TRANSCRIPT_DELTA, "Sure, I"))
    rec.apply(ev(E.SERVER_INTERRUPTED))
    got = [(e.role, e.content_text, e.status, e.synthetic_id) for e in rec]
    assert got == [("user", "Hello", "completed", True), ("assistant", "Hi there", "completed", True),
                   ("user", "Again", "completed", True), ("assistant", "Sure, I", "incomplete", True)]


def test_record_replayed_text_copy_does_not_replace_audio_entry() -> None:
    rec = ConversationRecord()
    rec.apply(ev(E.ITEM_ADDED, msg("a1", "assistant", [{"type": "output_audio", "transcript": "Long answer"}]),
                 item_id="a1"))
    replayed = msg("a1", "assistant", [{"type": "output_text", "text": "Long answer"}])
    rec.apply(ev(E.ITEM_ADDED, replayed, item_id="a1"))
    (entry,) = rec.entries
    assert entry.has_audio and entry.text is None and entry.transcript == "Long answer"


def test_record_is_bounded() -> None:
    rec = ConversationRecord(max_entries=3)
    for i in range(10):
        rec.add_message("user", f"m{i}", entry_id=f"m{i}")
    assert [e.text for e in rec] == ["m7", "m8", "m9"] and rec.dropped == 7
    with pytest.raises(ValueError):
        ConversationRecord(max_entries=0)
    with pytest.raises(ValueError):
        rec.add_message("robot", "x")


async def test_provider_folds_what_it_emits_and_sends() -> None:
    provider = MockProvider(MockConfig(turn_detection=None, responses=("Fine, thanks.",)))
    await provider.connect()
    try:
        await provider.send_text("How are you?")
        await provider.wait_idle()
        roles = [(e.role, e.content_text) for e in provider.conversation]
        assert roles == [("user", "How are you?"), ("assistant", "Fine, thanks.")]
    finally:
        await provider.disconnect()
