"""FakeGeminiLiveServer over raw WebSockets: paths, spellings, turns, barge-in, tools, auth."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

import pytest
from websockets.exceptions import InvalidStatus

from gemini_helpers import (
    SETUP, audio_frame, closed_with, connect_raw, content_of, open_session, read_until, reply_audio, speech, transcript,
    turn_complete, validate_all,
)
from voiceengine.testing import FakeGeminiConfig, FakeGeminiLiveServer
from voiceengine.testing.audio import synthesize


@pytest.fixture
async def server() -> AsyncIterator[FakeGeminiLiveServer]:
    async with FakeGeminiLiveServer(speed=float("inf")) as srv:
        yield srv


@pytest.mark.parametrize("version", ["v1", "v1beta", "v1alpha"])
async def test_every_api_version_path_is_served(server: FakeGeminiLiveServer, version: str) -> None:
    ws = await open_session(server, url=server.url_for(version))
    await ws.send(json.dumps({"realtimeInput": {"text": "hi"}}))
    frames = await read_until(ws, turn_complete)
    await ws.close()
    assert transcript(frames) == "You said hi"
    assert server.session.path_version == version
    validate_all(server)


async def test_unknown_path_is_refused_with_404(server: FakeGeminiLiveServer) -> None:
    url = server.url.replace("GenerativeService", "OtherService")
    with pytest.raises(InvalidStatus) as info:
        await connect_raw(server, url=url)
    assert info.value.response.status_code == 404


async def test_snake_case_keys_at_every_level(server: FakeGeminiLiveServer) -> None:
    setup = {"model": "models/m", "generation_config": {"response_modalities": ["AUDIO"]},
             "input_audio_transcription": {}, "output_audio_transcription": {},
             "system_instruction": {"parts": [{"text": "be brief"}]}}
    ws = await open_session(server, setup)
    await ws.send(json.dumps({"client_content": {"turns": [{"role": "user", "parts": [{"text": "snake"}]}],
                                                 "turn_complete": True}}))
    frames = await read_until(ws, turn_complete)
    pcm = speech("hi there", silence_ms=0)
    await ws.send(json.dumps({"realtime_input": {"audio": {"mime_type": "audio/pcm;rate=16000",
                                                           "data": __import__("base64").b64encode(pcm).decode()}}}))
    await ws.send(json.dumps({"realtime_input": {"audio_stream_end": True}}))
    spoken = await read_until(ws, turn_complete)
    await ws.close()
    assert transcript(frames) == "You said snake"
    assert server.session.instructions == "be brief"
    assert content_of(spoken, "inputTranscription") == [
        {"text": f"user turn 2 lasting {len(pcm) // 32} milliseconds", "finished": True}]
    # what the server recorded is in the camelCase spelling, whatever the client wrote
    assert server.session.received[1] == {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "snake"}]}],
                                                            "turnComplete": True}}
    validate_all(server)


async def test_spoken_turn_ends_on_silence_with_24khz_reply(server: FakeGeminiLiveServer) -> None:
    ws = await open_session(server)
    first = json.loads(await ws.recv())
    assert first["sessionResumptionUpdate"]["resumable"] is True
    pcm = speech("good morning", silence_ms=700)  # the energy VAD ends the turn after 500 ms of silence
    for i in range(0, len(pcm), 3200):
        await ws.send(audio_frame(pcm[i:i + 3200]))
    frames = await read_until(ws, turn_complete)
    await ws.close()
    (heard,) = content_of(frames, "inputTranscription")
    assert heard["text"].startswith("user turn 1 lasting ")
    reply = f"You said {heard['text']}"
    assert reply_audio(frames) == synthesize(reply, 24000).pcm
    assert transcript(frames) == reply
    kinds = [next(iter(f["serverContent"])) for f in frames if "serverContent" in f]
    assert kinds.index("generationComplete") < kinds.index("turnComplete")
    assert server.session.input_audio_bytes == len(pcm)
    validate_all(server)


async def test_manual_activity_turn_and_activity_refused_under_vad(server: FakeGeminiLiveServer) -> None:
    setup = {**SETUP, "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}}}
    ws = await open_session(server, setup)
    await ws.send(json.dumps({"realtimeInput": {"activityStart": {}}}))
    await ws.send(audio_frame(bytes(3200)))  # silence: manual mode does not look at the level
    await ws.send(json.dumps({"realtimeInput": {"activityEnd": {}}}))
    frames = await read_until(ws, turn_complete)
    await ws.close()
    assert content_of(frames, "inputTranscription") == [{"text": "user turn 1 lasting 100 milliseconds", "finished": True}]
    auto = await open_session(server)
    await auto.send(json.dumps({"realtimeInput": {"activityStart": {}}}))
    code, reason = await closed_with(auto)
    assert code == 1007 and "activityStart" in reason


async def test_speaking_over_a_reply_interrupts_it_and_cancels_pending_calls() -> None:
    async with FakeGeminiLiveServer(speed=4.0, responses=["one two three four five six seven eight nine ten",
                                                          "short"]) as server:
        ws = await open_session(server)
        await ws.send(json.dumps({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "count"}]}],
                                                    "turnComplete": True}}))
        await read_until(ws, lambda f: "modelTurn" in f.get("serverContent", {}))
        await ws.send(audio_frame(speech("stop", silence_ms=0)))
        cut = await read_until(ws, lambda f: f.get("serverContent", {}).get("interrupted") is True)
        assert not content_of(cut, "generationComplete")
        await ws.send(json.dumps({"realtimeInput": {"audioStreamEnd": True}}))
        frames = await read_until(ws, turn_complete)
        assert transcript(frames).startswith("short")
        # a tool call waiting for its response is withdrawn when the user speaks
        server.script_tool_call("lookup", {"q": 1})
        await ws.send(json.dumps({"realtimeInput": {"text": "look it up"}}))
        (call,) = [f for f in await read_until(ws, lambda f: "toolCall" in f)][-1:]
        await ws.send(audio_frame(speech("never mind", silence_ms=0)))
        (cancel,) = (await read_until(ws, lambda f: "toolCallCancellation" in f))[-1:]
        await ws.close()
    assert cancel["toolCallCancellation"]["ids"] == [call["toolCall"]["functionCalls"][0]["id"]]
    assert server.session.interrupts == 1
    validate_all(server)


async def test_scripted_tool_call_then_spoken_answer(server: FakeGeminiLiveServer) -> None:
    server.script_tool_call("get_time", {"zone": "UTC"}, call_id="call-7")
    ws = await open_session(server)
    await ws.send(json.dumps({"realtimeInput": {"text": "time?"}}))
    frames = await read_until(ws, lambda f: "toolCall" in f)
    assert frames[-1] == {"toolCall": {"functionCalls": [{"id": "call-7", "name": "get_time", "args": {"zone": "UTC"}}]}}
    await ws.send(json.dumps({"tool_response": {"function_responses": [
        {"id": "call-7", "name": "get_time", "response": {"time_now": "noon"}}]}}))
    answer = await read_until(ws, turn_complete)
    await ws.close()
    assert transcript(answer) == 'The tool returned {"time_now":"noon"}'  # user data keys kept as written
    validate_all(server)


async def test_silent_tool_response_gets_no_reply(server: FakeGeminiLiveServer) -> None:
    server.script_tool_call("log_it")
    ws = await open_session(server)
    await ws.send(json.dumps({"realtimeInput": {"text": "log"}}))
    (call,) = (await read_until(ws, lambda f: "toolCall" in f))[-1:]
    call_id = call["toolCall"]["functionCalls"][0]["id"]
    await ws.send(json.dumps({"toolResponse": {"functionResponses": [
        {"id": call_id, "name": "log_it", "response": {}, "scheduling": "SILENT"}]}}))
    await server.wait_for_received(lambda f: "toolResponse" in f)
    await ws.send(json.dumps({"realtimeInput": {"text": "next"}}))
    frames = await read_until(ws, turn_complete)
    await ws.close()
    assert transcript(frames) == "You said next"  # the first reply after the silent response answers "next"


async def test_text_modality_answers_with_text_parts(server: FakeGeminiLiveServer) -> None:
    ws = await open_session(server, {"model": "models/m", "generationConfig": {"responseModalities": ["TEXT"]}})
    await ws.send(json.dumps({"realtimeInput": {"text": "hey"}}))
    frames = await read_until(ws, turn_complete)
    await ws.close()
    text = "".join(p["text"] for t in content_of(frames, "modelTurn") for p in t["parts"])
    assert text == "You said hey" and not reply_audio(frames)
    validate_all(server)


async def test_initial_history_is_not_answered(server: FakeGeminiLiveServer) -> None:
    ws = await open_session(server, {**SETUP, "historyConfig": {"initialHistoryInClientContent": True}})
    await ws.send(json.dumps({"clientContent": {"turns": [
        {"role": "user", "parts": [{"text": "my name is Ada"}]},
        {"role": "model", "parts": [{"text": "Hello Ada"}]}], "turnComplete": True}}))
    await ws.send(json.dumps({"realtimeInput": {"text": "who am I"}}))
    frames = await read_until(ws, turn_complete)
    await ws.close()
    assert transcript(frames) == "You said who am I"  # the only reply: the history asked for none
    assert list(server.session.history)[:2] == [("user", "my name is Ada"), ("model", "Hello Ada")]


@pytest.mark.parametrize(("frame", "needle"), [
    ('{"realtimeInput": {"text": "too early"}}', "first message must be setup"),
])
async def test_frames_before_setup_close_1007(server: FakeGeminiLiveServer, frame: str, needle: str) -> None:
    ws = await connect_raw(server)
    await ws.send(frame)
    code, reason = await closed_with(ws)
    assert code == 1007 and needle in reason


@pytest.mark.parametrize(("frame", "needle"), [
    ("not json", "Invalid JSON"),
    ('{"realtimeInput": {"text": "a"}, "clientContent": {}}', "exactly one field"),
    ('{"bogusField": {}}', 'Unknown name "bogusField"'),
    ('{"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "@@@"}}}', "base64"),
    ('{"realtimeInput": {"audio": {"mimeType": "audio/opus", "data": ""}}}', "mime type"),
    ('{"setup": {"model": "models/again"}}', "only once"),
    ('{"toolResponse": {"functionResponses": [{"name": "x"}]}}', "needs an id"),
])
async def test_protocol_violations_close_1007(server: FakeGeminiLiveServer, frame: str, needle: str) -> None:
    ws = await open_session(server)
    await ws.send(frame)
    code, reason = await closed_with(ws)
    assert code == 1007 and needle in reason
    assert server.session.ignored[-1] == frame


async def test_auth_no_key_closes_1008_wrong_key_1007_and_keys_are_masked() -> None:
    async with FakeGeminiLiveServer(api_keys=("right-key",)) as server:
        no_key = await connect_raw(server, headers={})
        await no_key.send(json.dumps({"setup": SETUP}))
        assert (await closed_with(no_key))[0] == 1008
        wrong = await connect_raw(server, headers={"x-goog-api-key": "wrong-key"})
        await wrong.send(json.dumps({"setup": SETUP}))
        code, reason = await closed_with(wrong)
        assert code == 1007 and reason == "API key not valid. Please pass a valid API key."
        by_query = await open_session(server, url=server.url + "?key=right-key", headers={})
        await by_query.close()
        token = await open_session(server, url=server.url_for("v1alpha", constrained=True),
                                   headers={"Authorization": "Token right-key"})
        await token.close()
        stored = [json.dumps(s.request_headers) for s in server.sessions]
    assert all("right-key" not in s and "wrong-key" not in s for s in stored)
    assert server.sessions[1].request_headers["x-goog-api-key"] == "***"
    assert server.sessions[3].request_headers["Authorization"] == "Token ***"


async def test_unpaced_bookkeeping_is_bounded_and_audio_can_be_elided() -> None:
    config = FakeGeminiConfig(speed=float("inf"), record_audio_payloads=False, max_recorded_frames=5)
    async with FakeGeminiLiveServer(config) as server:
        ws = await open_session(server)
        await ws.send(audio_frame(speech("x", silence_ms=0)))
        await ws.send(json.dumps({"realtimeInput": {"audioStreamEnd": True}}))
        await read_until(ws, turn_complete)
        await ws.close()
        sent = list(server.session.sent)
        received = list(server.session.received)
    assert len(sent) == 5 and len(received) <= 5
    assert all("data" not in json.dumps(f) or "<audio elided>" in json.dumps(f) for f in received)
