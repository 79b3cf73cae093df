"""GeminiSession, sans-I/O: its frames driven through the fake server's own sans-I/O session
(no sockets), and hand-written frames for the edges."""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gemini_sdk_oracle import validate_client_frame
from voiceengine.exceptions import AudioFormatError, InvalidState
from voiceengine.providers.conversation import ConversationRecord, EntryKind
from voiceengine.providers.gemini import GeminiConfig, GeminiSession
from voiceengine.providers.gemini.codec import encode_audio
from voiceengine.providers.types import (
    EventType, FunctionCall, GenerationDone, ProviderEvent, ResponseInfo, ServerInterrupted, SessionExpiring,
    ToolCallCancelled, Usage,
)
from voiceengine.testing.audio import synthesize
from voiceengine.testing.gemini import FakeGeminiConfig, FakeGeminiSession, HandleStore, ToolCallScript


class Loop:
    """Our session and the fake server's session wired back to back, no I/O."""

    def __init__(self, config: GeminiConfig | None = None, *, server_config: FakeGeminiConfig | None = None,
                 handles: HandleStore | None = None, **session_kwargs: Any) -> None:
        self.client = GeminiSession(config or GeminiConfig(api_key="k", url="ws://127.0.0.1:1/ws"), **session_kwargs)
        self.tools: deque[ToolCallScript] = deque()
        self.handles = handles or HandleStore(16)
        self.server = FakeGeminiSession(server_config or FakeGeminiConfig(), index=0, handles=self.handles,
                                        tool_scripts=self.tools)
        self.events: list[ProviderEvent] = []
        self.sent: list[str] = []
        self.record = ConversationRecord()

    def pump(self) -> list[ProviderEvent]:
        """Deliver every client frame, run every reply to its end, deliver every server frame."""
        new: list[ProviderEvent] = []
        for _ in range(10_000):
            frames = self.client.data_to_send()
            for frame in frames:
                validate_client_frame(frame)
                self.sent.append(frame)
                kind, body = self.server.parse(frame)
                self.server.handle(kind, body)
                if kind == "setup":
                    self.server.announce()
            for gen in self.server.take_new_generations():
                while self.server.advance(gen) is not None:
                    pass
            out = list(self.server.outbox)
            self.server.outbox.clear()
            for frame in out:
                events = self.client.receive(json.dumps(frame))
                for event in events:
                    self.record.apply(event)
                new += events
            if not frames and not out:
                self.events += new
                return new
        raise AssertionError("the loop never settled")

    def audio(self, pcm: bytes) -> None:
        frame = self.client.encode_audio(pcm)
        assert frame is not None
        kind, body = self.server.parse(frame)
        self.server.handle(kind, body)


def types_of(events: list[ProviderEvent]) -> list[EventType]:
    return [e.type for e in events]


def test_setup_first_and_requests_held_until_setup_complete() -> None:
    loop = Loop()
    loop.client.start()
    loop.client.send_text("early")
    setup, *rest = loop.client.data_to_send()
    assert json.loads(setup)["setup"]["model"] == "models/gemini-live-2.5-flash-preview" and rest == []
    assert not loop.client.ready
    events = loop.client.receive('{"setupComplete": {"sessionId": "abc"}}')
    assert types_of(events) == [EventType.SESSION_CREATED] and loop.client.ready
    assert loop.client.session_id == "abc" and events[0].data == {"session_id": "abc", "resumed": False}
    assert [json.loads(f) for f in loop.client.data_to_send()] == [
        {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "early"}]}], "turnComplete": True}}]


def test_spoken_turn_events_audio_and_record() -> None:
    loop = Loop()
    loop.client.start()
    loop.pump()
    pcm = synthesize("hello there", 16000).pcm
    loop.audio(pcm)
    loop.client.end_audio_stream()
    assert not loop.client.idle and loop.client.lost_responses() == [None]
    events = loop.pump()
    order = [t for t in types_of(events) if t not in (EventType.AUDIO_DELTA, EventType.TRANSCRIPT_DELTA)]
    # the fake transcribes the turn whole, marked finished: the user's turn ends before the reply
    assert order == [EventType.INPUT_TRANSCRIPT_DELTA, EventType.SPEECH_STOPPED, EventType.INPUT_COMMITTED,
                     EventType.INPUT_TRANSCRIPT, EventType.RESPONSE_STARTED,
                     EventType.ITEM_ADDED, EventType.AUDIO_DONE, EventType.GENERATION_DONE, EventType.USAGE,
                     EventType.TRANSCRIPT_DONE, EventType.ITEM_DONE, EventType.RESPONSE_DONE]
    heard = f"user turn 1 lasting {len(pcm) // 32} milliseconds"
    reply = f"You said {heard}"
    audio = b"".join(e.data for e in events if e.type is EventType.AUDIO_DELTA)
    assert audio == synthesize(reply, 24000).pcm
    rid = events[4].response_id
    assert rid and all(e.response_id == rid for e in events[4:] if e.type is not EventType.USAGE or e.response_id)
    done = events[-1].data
    assert isinstance(done, ResponseInfo) and done.status == "completed" and done.output_item_ids == (events[5].item_id,)
    assert next(e for e in events if e.type is EventType.TRANSCRIPT_DONE).data == reply
    assert isinstance(next(e for e in events if e.type is EventType.GENERATION_DONE).data, GenerationDone)
    assert loop.client.idle and loop.client.lost_responses() == []
    entries = [(e.role, e.content_text) for e in loop.record.entries]
    assert entries == [("user", heard), ("assistant", reply)]
    assert loop.record.entries[1].audio_ms == pytest.approx(len(audio) / 48)


def test_text_turn_and_ids_unique_per_connection() -> None:
    first, second = Loop(), Loop()
    ids = []
    for loop in (first, second):
        loop.client.start()
        loop.pump()
        loop.client.send_text("hi")
        events = loop.pump()
        ids.append({e.response_id for e in events if e.response_id} | {e.item_id for e in events if e.item_id})
        assert next(e for e in events if e.type is EventType.TRANSCRIPT_DONE).data == "You said hi"
    assert ids[0] and ids[1] and not ids[0] & ids[1]  # a reconnect never reuses a synthesized id


def test_server_interrupted_ends_the_reply_cancelled() -> None:
    loop = Loop()
    loop.client.start()
    loop.pump()
    head = [
        {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000",
                                                                   "data": "AAAAAA=="}}]}}},
        {"serverContent": {"outputTranscription": {"text": "Once upon"}}},
        {"serverContent": {"interrupted": True}},
        {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000",
                                                                   "data": "AAAAAA=="}}]}}},
        {"serverContent": {"turnComplete": True}},
    ]
    events = [e for frame in head for e in loop.client.receive(json.dumps(frame))]
    kinds = types_of(events)
    cut = events[kinds.index(EventType.SERVER_INTERRUPTED)]
    assert isinstance(cut.data, ServerInterrupted) and cut.data.response_id == events[0].response_id
    dones = [e.data for e in events if e.type is EventType.RESPONSE_DONE]
    assert [(d.status, d.reason) for d in dones] == [("cancelled", "turn_detected"), ("completed", None)]
    assert dones[0].response_id != dones[1].response_id  # output after the cut is a new reply
    assert kinds.count(EventType.GENERATION_DONE) == 0


def test_tool_call_round_trip_and_cancellation() -> None:
    loop = Loop()
    loop.client.start()
    loop.pump()
    loop.tools.append(ToolCallScript(name="get_weather", args={"city": "Paris"}, call_id="call-1"))
    loop.client.send_text("weather?")
    events = loop.pump()
    (call_event,) = [e for e in events if e.type is EventType.FUNCTION_CALL]
    call = call_event.data
    assert isinstance(call, FunctionCall) and (call.name, call.call_id) == ("get_weather", "call-1")
    assert call.parsed_arguments() == {"city": "Paris"}
    assert loop.client.pending_calls == {"call-1": "get_weather"} and not loop.client.idle
    loop.client.send_function_result("call-1", '{"temperature": 21}')
    events = loop.pump()
    assert json.loads(loop.sent[-1]) == {"toolResponse": {"functionResponses": [
        {"id": "call-1", "name": "get_weather", "response": {"temperature": 21}}]}}
    assert next(e for e in events if e.type is EventType.TRANSCRIPT_DONE).data == 'The tool returned {"temperature":21}'
    with pytest.raises(InvalidState):
        loop.client.send_function_result("call-1", "again")  # answered already: the name is forgotten
    cancelled = loop.client.receive('{"toolCall": {"functionCalls": [{"id": "c9", "name": "f"}]}}')
    cancelled += loop.client.receive('{"toolCallCancellation": {"ids": ["c9"]}}')
    assert cancelled[-1].data == ToolCallCancelled(call_ids=("c9",)) and loop.client.pending_calls == {}
    with pytest.raises(InvalidState, match="withdrawn"):
        loop.client.send_function_result("c9", "too late")


@pytest.mark.parametrize(("output", "respond", "expected"), [
    ("plain text", True, {"id": "c", "name": "f", "response": {"output": "plain text"}}),
    ("[1, 2]", True, {"id": "c", "name": "f", "response": {"output": "[1, 2]"}}),
    ({"a": 1}, False, {"id": "c", "name": "f", "response": {"a": 1}, "scheduling": "SILENT"}),
    (42, True, {"id": "c", "name": "f", "response": {"output": "42"}}),
])
def test_function_result_shapes(output: Any, respond: bool, expected: dict[str, Any]) -> None:
    session = GeminiSession(GeminiConfig(api_key="k"))
    session.receive('{"setupComplete": {}}')
    session.receive('{"toolCall": {"functionCalls": [{"id": "c", "name": "f"}]}}')
    session.send_function_result("c", output, respond=respond)
    (frame,) = session.data_to_send()
    assert validate_client_frame(frame) == {"toolResponse": {"functionResponses": [expected]}}
    assert session.idle is (not respond)


def test_usage_running_totals_become_increments() -> None:
    session = GeminiSession(GeminiConfig(api_key="k"))
    reports = [{"promptTokenCount": 30, "responseTokenCount": 70,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 10}, {"modality": "AUDIO", "tokenCount": 20}],
                "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 70}]},
               {"promptTokenCount": 45, "responseTokenCount": 100,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 15}, {"modality": "AUDIO", "tokenCount": 30}],
                "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 100}]}]
    usages = [session.receive(json.dumps({"usageMetadata": r}))[0].data for r in reports]
    assert usages[0] == Usage(input_text_tokens=10, input_audio_tokens=20, output_audio_tokens=70)
    assert usages[1] == Usage(input_text_tokens=5, input_audio_tokens=10, output_audio_tokens=30)
    assert usages[0].plus(usages[1]).total_tokens == 145


def test_go_away_and_resumption_handles() -> None:
    session = GeminiSession(GeminiConfig(api_key="k"), resumption_handle="old")
    session.start()
    assert json.loads(session.data_to_send()[0])["setup"]["sessionResumption"] == {"handle": "old"}
    # not set up (yet): were the connection lost now, the handle counts as refused
    assert session.resumption_handle is None and not session.resumed
    session.receive('{"setupComplete": {}}')
    assert session.resumed and session.resumption_handle == "old"
    session.receive('{"sessionResumptionUpdate": {"newHandle": "h1", "resumable": true}}')
    session.receive('{"sessionResumptionUpdate": {"newHandle": "h2", "resumable": false}}')
    session.receive('{"sessionResumptionUpdate": {"resumable": true}}')
    assert session.resumption_handle == "h1"  # only a resumable handle replaces the last one
    (expiring,) = session.receive('{"goAway": {"timeLeft": "9.5s"}}')
    assert expiring.type is EventType.SESSION_EXPIRING and session.expiring
    assert expiring.data == SessionExpiring(time_left_ms=9500, reason="go_away")
    with pytest.raises(ValueError):
        GeminiSession(GeminiConfig(api_key="k", session_resumption=False), resumption_handle="h")


def test_replay_as_initial_history_then_resumption_of_the_server_state() -> None:
    source = Loop()
    source.client.start()
    source.pump()
    source.tools.append(ToolCallScript(name="lookup", args={"q": "x"}, call_id="c1"))
    source.record.add_message("user", "look it up")  # what the provider records for a text it sends
    source.client.send_text("look it up")
    source.pump()
    source.record.add_function_output("c1", '{"found": true}')
    source.client.send_function_result("c1", '{"found": true}')
    source.pump()
    entries = source.record.replayable()
    assert [e.kind for e in entries] == [EntryKind.MESSAGE, EntryKind.FUNCTION_CALL, EntryKind.FUNCTION_CALL_OUTPUT,
                                         EntryKind.MESSAGE]
    fresh = Loop(replay_history=True)
    fresh.client.start()
    for entry in entries:
        fresh.client.replay_entry(entry)
    (only_setup,) = fresh.client.data_to_send()  # nothing but setup before setupComplete
    fresh.sent.append(only_setup)
    kind, body = fresh.server.parse(only_setup)
    fresh.server.handle(kind, body)
    fresh.server.announce()
    fresh.pump()
    setup = json.loads(fresh.sent[0])["setup"]
    assert setup["historyConfig"] == {"initialHistoryInClientContent": True}
    history = json.loads(fresh.sent[1])["clientContent"]
    assert history["turnComplete"] is True
    assert [t["role"] for t in history["turns"]] == ["user", "model", "user", "model"]
    assert history["turns"][2]["parts"][0]["functionResponse"] == {"id": "c1", "name": "lookup",
                                                                   "response": {"found": True}}
    assert not [e for e in fresh.events if e.type is EventType.RESPONSE_STARTED]  # history asks for no reply
    assert list(fresh.server.history)[0] == ("user", "look it up")


def test_replay_without_initial_history_is_silent_context() -> None:
    session = GeminiSession(GeminiConfig(api_key="k"))
    record = ConversationRecord()
    record.add_message("user", "earlier")
    session.receive('{"setupComplete": {}}')
    session.replay_entry(record.entries[0])
    (frame,) = session.data_to_send()
    assert validate_client_frame(frame)["clientContent"]["turnComplete"] is False
    with pytest.raises(TypeError):
        session.replay_entry("not an entry")  # type: ignore[arg-type]


def test_manual_turns_and_request_reply() -> None:
    manual = GeminiSession(GeminiConfig(api_key="k", turn_detection=None))
    manual.receive('{"setupComplete": {}}')
    manual.request_reply()
    assert [json.loads(f) for f in manual.data_to_send()] == [{"realtimeInput": {"activityStart": {}}},
                                                                {"realtimeInput": {"activityEnd": {}}}]
    with pytest.raises(InvalidState):
        manual.end_audio_stream()
    auto = GeminiSession(GeminiConfig(api_key="k"))
    auto.receive('{"setupComplete": {}}')
    auto.request_reply()
    assert [json.loads(f) for f in auto.data_to_send()] == [{"realtimeInput": {"audioStreamEnd": True}}]
    with pytest.raises(InvalidState):
        auto.activity_start()
    with pytest.raises(AudioFormatError):
        auto.encode_audio(b"\x00\x01\x02")
    assert auto.encode_audio(b"") is None


def test_the_end_of_the_user_turn_is_reported_once_by_whichever_signal_comes_first() -> None:
    """SPEECH_STOPPED + INPUT_COMMITTED (what starts the engine's latency clock, and tells
    the runtime the user stopped speaking) at ACTIVITY_END, at inputTranscription.finished,
    or before the reply when the service reported only the start; once per turn."""
    session = GeminiSession(GeminiConfig(api_key="k"))
    ended = [EventType.SPEECH_STOPPED, EventType.INPUT_COMMITTED]
    start = '{"voiceActivity": {"voiceActivityType": "ACTIVITY_START"}}'
    end = '{"voiceActivity": {"voiceActivityType": "ACTIVITY_END"}}'
    finished = '{"serverContent": {"inputTranscription": {"text": " there", "finished": true}}}'
    audio = '{"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm", "data": "AAAA"}}]}}}'
    done = '{"serverContent": {"generationComplete": true, "turnComplete": true}}'
    # 1. ACTIVITY_END, then the transcription's end: reported at the first only
    assert types_of(session.receive(start)) == [EventType.SPEECH_STARTED]
    assert types_of(session.receive('{"serverContent": {"inputTranscription": {"text": "hi"}}}')) == [
        EventType.INPUT_TRANSCRIPT_DELTA]
    assert types_of(session.receive(end)) == ended
    events = session.receive(finished)
    assert types_of(events) == [EventType.INPUT_TRANSCRIPT_DELTA, EventType.INPUT_TRANSCRIPT]
    assert events[-1].data == "hi there"
    assert EventType.SPEECH_STOPPED not in types_of(session.receive(audio) + session.receive(done))
    # 2. only the transcription says the turn is over (snake_case, as proto JSON allows)
    events = session.receive('{"server_content": {"input_transcription": {"text": "next", "finished": true}}}')
    assert types_of(events) == [EventType.INPUT_TRANSCRIPT_DELTA, *ended, EventType.INPUT_TRANSCRIPT]
    session.receive(audio)
    session.receive(done)
    # 3. the start without an end: the turn ends just before the reply starts
    session.receive(start)
    assert types_of(session.receive(audio))[:3] == [*ended, EventType.RESPONSE_STARTED]
    session.receive(done)
    # 4. no signal at all: nothing is made up
    assert not set(ended) & set(types_of(session.receive(audio) + session.receive(done)))
    # a turn answered by a tool call: the next turn is reported again
    assert types_of(session.receive(end)) == ended
    session.receive('{"toolCall": {"functionCalls": [{"id": "c1", "name": "f"}]}}')
    assert types_of(session.receive(end)) == ended
    assert session.receive(end) == []  # the same turn again: reported once


def test_speech_signals_unknown_and_malformed_frames() -> None:
    session = GeminiSession(GeminiConfig(api_key="k"))
    assert types_of(session.receive('{"voiceActivity": {"voiceActivityType": "ACTIVITY_START"}}')) == [
        EventType.SPEECH_STARTED]
    (unknown,) = session.receive('{"brandNewThing": {"a": 1}}')
    assert unknown.type is EventType.UNKNOWN and unknown.raw == {"brandNewThing": {"a": 1}}
    (error,) = session.receive("{not json")
    assert error.type is EventType.ERROR and error.error is not None and error.error.remote
    assert error.error.code == "malformed_frame"
    (odd,) = [e for e in session.receive(
        '{"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm", "data": "AAAA"}}]}}}')
        if e.type is EventType.ERROR]
    assert odd.error is not None and odd.error.code == "audio_refused"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([
    '{"setupComplete": {}}', '{"serverContent": {"outputTranscription": {"text": "a"}}}',
    '{"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm", "data": "AAAA"}}]}}}',
    '{"serverContent": {"generationComplete": true}}', '{"serverContent": {"turnComplete": true}}',
    '{"serverContent": {"interrupted": true}}', '{"serverContent": {"inputTranscription": {"text": "u"}}}',
    '{"toolCall": {"functionCalls": [{"id": "c", "name": "f"}]}}', '{"toolCallCancellation": {"ids": ["c"]}}',
    '{"usageMetadata": {"promptTokenCount": 3}}', '{"goAway": {"timeLeft": "1s"}}', "garbage", "{}",
]), max_size=40))
def test_any_frame_sequence_keeps_one_end_per_reply(frames: list[str]) -> None:
    session = GeminiSession(GeminiConfig(api_key="k"))
    events = [e for f in frames for e in session.receive(f)]
    started = [e.response_id for e in events if e.type is EventType.RESPONSE_STARTED]
    done = [e.response_id for e in events if e.type is EventType.RESPONSE_DONE]
    assert len(set(done)) == len(done) and set(done) <= set(started)
    open_ids = set(started) - set(done)
    assert len(open_ids) <= 1 and (session.generating == bool(open_ids))


def test_transparent_resumption_keeps_written_audio_the_handle_lacks() -> None:
    config = GeminiConfig(api_key="k", transparent_resumption=True)
    session = GeminiSession(config)
    session.start()
    (setup,) = session.data_to_send()  # message 0
    assert json.loads(setup)["setup"]["sessionResumption"] == {"transparent": True}
    session.receive('{"setupComplete": {}}')
    a, b, c = b"\x01\x00" * 80, b"\x02\x00" * 80, b"\x03\x00" * 80
    frames = [session.encode_audio(a), session.encode_audio(b)]  # messages 1, 2
    session.send_text("x")
    frames += session.data_to_send()  # message 3
    frames.append(session.encode_audio(c))  # message 4
    assert all(validate_client_frame(f) for f in frames if f)
    assert session.unconsumed_audio(len(a) + len(b) + len(c)) == [a, b, c]
    session.receive('{"sessionResumptionUpdate": {"newHandle": "h", "resumable": true, '
                    '"lastConsumedClientMessageIndex": "2"}}')
    assert session.unconsumed_audio(len(a) + len(b) + len(c)) == [c]  # a and b are in the handle's state
    assert session.unconsumed_audio(len(a) + len(b)) == []  # c was never written: the runtime re-sends it
    resumed = GeminiSession(config, resumption_handle="h", resend_audio=[c])
    resumed.start()
    assert json.loads(resumed.data_to_send()[0])["setup"]["sessionResumption"] == {"handle": "h",
                                                                                   "transparent": True}
    assert resumed.data_to_send() == []  # nothing before setupComplete
    resumed.receive('{"setupComplete": {}}')
    (again,) = resumed.data_to_send()
    assert json.loads(again) == json.loads(encode_audio(c))
    assert resumed.unconsumed_audio(0) == [c]  # kept until a handle of this connection includes it


def test_plain_resumption_keeps_nothing() -> None:
    session = GeminiSession(GeminiConfig(api_key="k"))
    session.receive('{"setupComplete": {}}')
    session.encode_audio(b"\x00\x00" * 10)
    assert session.unconsumed_audio(10**6) == []
    assert GeminiSession(GeminiConfig(api_key="k"), resend_audio=[b"\x00\x00"]).data_to_send() == []


def test_audio_stream_end_awaits_a_reply_only_for_audio_this_connection_carried() -> None:
    loop = Loop()
    loop.client.start()
    loop.pump()
    loop.client.end_audio_stream()  # a fresh connection (after a loss): none of the turn's audio came here
    assert loop.client.idle and loop.client.lost_responses() == []
    assert loop.pump() == []  # and the service does not answer audioStreamEnd alone
    loop.audio(synthesize("hello there", 16000).pcm)
    loop.client.end_audio_stream()
    assert not loop.client.idle and loop.client.lost_responses() == [None]
    assert types_of(loop.pump())[-1] is EventType.RESPONSE_DONE and loop.client.idle
    loop.client.end_audio_stream()  # that stream ended already: nothing new to answer
    assert loop.client.idle and loop.pump() == []


def test_audio_re_sent_by_transparent_resumption_is_a_turn_to_answer() -> None:
    config = GeminiConfig(api_key="k", transparent_resumption=True)
    resumed = GeminiSession(config, resumption_handle="h", resend_audio=[b"\x00\x00" * 160])
    resumed.start()
    resumed.receive('{"setupComplete": {}}')
    _, again = resumed.data_to_send()  # (the runtime flushes once set up, before any request)
    assert "audio" in json.loads(again)["realtimeInput"]
    resumed.end_audio_stream()
    assert not resumed.idle and resumed.lost_responses() == [None]
    assert [json.loads(f) for f in resumed.data_to_send()] == [{"realtimeInput": {"audioStreamEnd": True}}]


def test_request_reply_completes_a_text_turn_sent_without_one() -> None:
    loop = Loop()
    loop.client.start()
    loop.pump()
    loop.client.send_text("answer this later", respond=False)
    assert not loop.pump()  # context only: no reply
    loop.client.request_reply()  # what the engine does after send_text(respond=False)
    events = loop.pump()
    assert json.loads(loop.sent[-1]) == {"clientContent": {"turns": [], "turnComplete": True}}
    assert next(e for e in events if e.type is EventType.TRANSCRIPT_DONE).data == "You said answer this later"
    loop.audio(synthesize("and now speech", 16000).pcm)
    loop.client.request_reply()  # speech is the newest input: end the audio stream
    assert json.loads(loop.client.data_to_send()[-1]) == {"realtimeInput": {"audioStreamEnd": True}}
