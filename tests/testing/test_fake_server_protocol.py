"""The fake server's GA protocol rules, observed by a raw websockets client over loopback."""

from __future__ import annotations

import base64
import json

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from fakeserver_helpers import LONG_REPLY, connect, speech
from voiceengine.testing import (
    AuthFailureMode,
    FakeRealtimeServer,
    FakeServerConfig,
    FunctionCallScript,
    ScriptedResponse,
)
from voiceengine.testing.audio import synthesize

GA_ORDER = [
    "response.created", "response.output_item.added", "conversation.item.added",
    "response.content_part.added",
]
GA_TAIL = [
    "response.output_audio.done", "response.output_audio_transcript.done", "response.content_part.done",
    "response.output_item.done", "conversation.item.done", "response.done",
]


def _collapse(types: list[str]) -> list[str]:
    return [t for t in types if t not in ("response.output_audio.delta", "response.output_audio_transcript.delta")]


# ------------------------------------------------------------------ handshake
async def test_auth_error_event_mode_sends_invalid_api_key_then_closes() -> None:
    async with FakeRealtimeServer(FakeServerConfig(api_keys=("good",))) as srv:
        async with connect(srv, wait_created=False, additional_headers={"Authorization": "Bearer bad"}) as c:
            ev = await c.recv()
            assert ev["type"] == "error" and ev["error"]["code"] == "invalid_api_key"
            with pytest.raises(websockets.ConnectionClosed):
                await c.recv()
            assert c.ws.close_code == 1008
        assert srv.sessions[0].request_headers["Authorization"] == "Bearer ***"


async def test_auth_http_401_mode_rejects_handshake() -> None:
    async with FakeRealtimeServer(FakeServerConfig(api_keys=("good",), auth_failure=AuthFailureMode.HTTP_401)) as srv:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(srv.url, additional_headers={"Authorization": "Bearer bad"}):
                pass
        assert info.value.response.status_code == 401
        assert json.loads(info.value.response.body)["error"]["code"] == "invalid_api_key"
        with pytest.raises(InvalidStatus):  # no header at all
            async with websockets.connect(srv.url):
                pass
        async with connect(srv, additional_headers={"Authorization": "Bearer good"}) as c:
            assert c.events[0]["session"]["type"] == "realtime"


async def test_wrong_path_is_404_and_model_query_is_reported(server: FakeRealtimeServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(server.url.replace("/v1/realtime", "/v1/other"),
                                      additional_headers=server.auth_headers):
            pass
    assert info.value.response.status_code == 404
    async with websockets.connect(server.url + "?model=gpt-realtime-mini", additional_headers=server.auth_headers) as ws:
        created = json.loads(await ws.recv())
    assert created["session"]["model"] == "gpt-realtime-mini"
    assert created["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}


# ------------------------------------------------------------------ session.update
async def test_session_update_round_trip_and_validation(server: FakeRealtimeServer) -> None:
    async with connect(server) as c:
        await c.send("session.update", session={
            "type": "realtime", "instructions": "be brief", "output_modalities": ["text"],
            "audio": {"input": {"turn_detection": None, "transcription": {"model": "whisper-1"}},
                      "output": {"voice": "cedar"}},
        })
        ev = await c.recv()
        assert ev["type"] == "session.updated"
        s = ev["session"]
        assert s["instructions"] == "be brief" and s["output_modalities"] == ["text"]
        assert s["audio"]["input"]["turn_detection"] is None and s["audio"]["output"]["voice"] == "cedar"
        cases = [
            ({"instructions": "x"}, "missing_required_parameter", "session.type"),
            ({"type": "transcription"}, "invalid_value", "session.type"),
            ({"type": "realtime", "audio": {"input": {"format": {"type": "audio/wav"}}}},
             "invalid_value", "session.audio.input.format.type"),
            ({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
             "invalid_value", "session.audio.input.format.rate"),
            ({"type": "realtime", "input_audio_format": "pcm16"}, "unknown_parameter", "session.input_audio_format"),
        ]
        for session, code, param in cases:
            eid = await c.send("session.update", session=session)
            err = await c.recv()
            assert err["type"] == "error", session
            assert (err["error"]["code"], err["error"]["param"], err["error"]["event_id"]) == (code, param, eid)


async def test_unknown_event_type_and_bad_json_are_errors(server: FakeRealtimeServer) -> None:
    async with connect(server) as c:
        eid = await c.send("response.audio.delta")
        err = await c.recv()
        assert err["error"]["type"] == "invalid_request_error" and err["error"]["param"] == "type"
        assert err["error"]["event_id"] == eid
        await c.ws.send("{not json")
        err = await c.recv()
        assert err["type"] == "error" and err["error"]["code"] == "invalid_json"


# ------------------------------------------------------------------ VAD turn
async def test_vad_turn_produces_full_ga_response_sequence() -> None:
    cfg = FakeServerConfig(speed=float("inf"), responses=["Hello there friend."], input_transcripts=["hi bot"])
    async with FakeRealtimeServer(cfg) as srv:
        async with connect(srv) as c:
            await c.send("session.update", session={"type": "realtime",
                                                   "audio": {"input": {"transcription": {"model": "whisper-1"}}}})
            await c.until("session.updated")
            await c.append(speech("one two three"))
            evs = await c.until("response.done")
        types = [e["type"] for e in evs]
        started = evs[types.index("input_audio_buffer.speech_started")]
        stopped = evs[types.index("input_audio_buffer.speech_stopped")]
        assert started["item_id"] == stopped["item_id"]
        assert 0 <= started["audio_start_ms"] < stopped["audio_end_ms"]
        assert types[types.index("input_audio_buffer.speech_stopped") + 1] == "input_audio_buffer.committed"
        done = evs[types.index("conversation.item.input_audio_transcription.completed")]
        assert done["transcript"] == "hi bot" and done["item_id"] == started["item_id"]
        resp = _collapse(types[types.index("response.created"):])
        assert resp == GA_ORDER + GA_TAIL
        final = evs[-1]["response"]
        assert final["status"] == "completed" and final["usage"]["total_tokens"] > 0
        item_id = final["output"][0]["id"]
        deltas = b"".join(base64.b64decode(e["delta"]) for e in evs if e["type"] == "response.output_audio.delta")
        assert deltas == srv.session.audio_sent_by_item[item_id] == synthesize("Hello there friend.").pcm
        transcript = "".join(e["delta"] for e in evs if e["type"] == "response.output_audio_transcript.delta")
        assert transcript == "Hello there friend." == final["output"][0]["content"][0]["transcript"]


async def test_server_vad_barge_in_cancels_with_turn_detected() -> None:
    cfg = FakeServerConfig(speed=1.0, responses=[LONG_REPLY])
    async with FakeRealtimeServer(cfg) as srv:
        async with connect(srv) as c:
            await c.append(speech("first turn"))
            await c.until("response.output_audio.delta")
            await c.append(synthesize("interrupting you").pcm)
            evs = await c.until("response.done")
        types = [e["type"] for e in evs]
        assert "input_audio_buffer.speech_started" in types
        assert types.index("input_audio_buffer.speech_started") < types.index("response.done")
        done = evs[-1]["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
        assert done["output"][0]["status"] == "incomplete"


async def test_manual_mode_is_silent_until_commit_and_create(manual_server: FakeRealtimeServer) -> None:
    async with connect(manual_server) as c:
        await c.append(speech("manual turn"))
        eid = await c.send("input_audio_buffer.commit")
        committed = await c.recv()
        assert committed["type"] == "input_audio_buffer.committed"  # no VAD events came first
        assert [e["type"] for e in await c.until("conversation.item.done")] == ["conversation.item.added",
                                                                               "conversation.item.done"]
        await c.send("response.create")
        evs = await c.until("response.done")
        assert evs[0]["type"] == "response.created" and evs[-1]["response"]["status"] == "completed"
        assert eid.startswith("evt_client")
        assert not manual_server.errors


async def test_commit_empty_and_bad_base64_errors(manual_server: FakeRealtimeServer) -> None:
    async with connect(manual_server) as c:
        await c.append(bytes(48 * 50))  # 50 ms
        eid = await c.send("input_audio_buffer.commit")
        err = await c.recv()
        assert err["error"]["code"] == "input_audio_buffer_commit_empty" and err["error"]["event_id"] == eid
        eid = await c.send("input_audio_buffer.append", audio="@@not base64@@")
        err = await c.recv()
        assert err["error"]["param"] == "audio" and err["error"]["event_id"] == eid
        await c.send("input_audio_buffer.clear")
        assert (await c.recv())["type"] == "input_audio_buffer.cleared"


async def test_active_response_and_cancel_rules() -> None:
    cfg = FakeServerConfig(speed=1.0, turn_detection=None, responses=[LONG_REPLY])
    async with FakeRealtimeServer(cfg) as srv, connect(srv) as c:
        eid = await c.send("response.cancel")
        err = await c.recv()
        assert err["error"]["code"] == "response_cancel_not_active" and err["error"]["event_id"] == eid
        await c.send("response.create")
        await c.until("response.output_audio.delta")
        eid = await c.send("response.create")
        cancel_eid = await c.send("response.cancel")
        evs = await c.until("response.done")
        errs = [e for e in evs if e["type"] == "error"]
        assert [e["error"]["code"] for e in errs] == ["conversation_already_has_active_response"]
        assert errs[0]["error"]["event_id"] == eid and cancel_eid != eid
        assert evs[-1]["response"]["status_details"]["reason"] == "client_cancelled"
        # The gate reopens once the response is done.
        await c.send("response.create")
        assert (await c.until("response.created"))[-1]["type"] == "response.created"


async def test_truncate_rules_retrieve_and_delete(manual_server: FakeRealtimeServer) -> None:
    async with connect(manual_server) as c:
        await c.send("response.create")
        evs = await c.until("response.done")
        item_id = evs[-1]["response"]["output"][0]["id"]
        sent_ms = len(manual_server.session.audio_sent_by_item[item_id]) // 48
        for end_ms in (0, sent_ms + 1):
            eid = await c.send("conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=end_ms)
            err = await c.recv()
            assert err["error"]["param"] == "audio_end_ms" and err["error"]["event_id"] == eid
        await c.send("conversation.item.truncate", item_id="item_nope", content_index=0, audio_end_ms=10)
        assert (await c.recv())["error"]["param"] == "item_id"
        await c.send("conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=200)
        ev = await c.recv()
        assert ev == {**ev, "type": "conversation.item.truncated", "item_id": item_id, "audio_end_ms": 200}
        await c.send("conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=300)
        assert (await c.recv())["type"] == "error"  # beyond the truncated length now
        await c.send("conversation.item.retrieve", item_id=item_id)
        got = await c.recv()
        assert got["type"] == "conversation.item.retrieved"
        assert base64.b64decode(got["item"]["content"][0]["audio"]) == \
            manual_server.session.audio_sent_by_item[item_id][: 200 * 48]
        assert got["item"]["content"][0]["transcript"] == ""
        await c.send("conversation.item.delete", item_id=item_id)
        deleted = await c.recv()
        assert (deleted["type"], deleted["item_id"]) == ("conversation.item.deleted", item_id)
        await c.send("conversation.item.delete", item_id=item_id)
        assert (await c.recv())["type"] == "error"


async def test_item_create_previous_item_id(manual_server: FakeRealtimeServer) -> None:
    async with connect(manual_server) as c:
        msg = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
        await c.send("conversation.item.create", item={**msg, "id": "item_a"})
        added = (await c.until("conversation.item.done"))[0]
        assert added["previous_item_id"] is None and added["item"]["id"] == "item_a"
        await c.send("conversation.item.create", item={**msg, "id": "item_b"}, previous_item_id="root")
        assert (await c.until("conversation.item.done"))[0]["previous_item_id"] is None
        await c.send("conversation.item.create", item={**msg, "id": "item_c"}, previous_item_id="item_b")
        assert (await c.until("conversation.item.done"))[0]["previous_item_id"] == "item_b"
        eid = await c.send("conversation.item.create", item=msg, previous_item_id="item_missing")
        err = await c.recv()
        assert err["error"]["param"] == "previous_item_id" and err["error"]["event_id"] == eid
        assert [i["id"] for i in manual_server.session.items] == ["item_b", "item_c", "item_a"]


async def test_function_call_script_round_trip() -> None:
    cfg = FakeServerConfig(speed=float("inf"), turn_detection=None, responses=[
        ScriptedResponse(function_calls=(FunctionCallScript(name="get_weather", arguments={"city": "Paris"},
                                                            call_id="call_1"),)),
    ], cycle_responses=False)
    async with FakeRealtimeServer(cfg) as srv:
        async with connect(srv) as c:
            await c.send("conversation.item.create", item={"type": "message", "role": "user",
                                                           "content": [{"type": "input_text", "text": "weather?"}]})
            await c.until("conversation.item.done")
            await c.send("response.create")
            evs = await c.until("response.done")
            types = [e["type"] for e in evs]
            assert "response.function_call_arguments.delta" in types
            args_done = evs[types.index("response.function_call_arguments.done")]
            assert (args_done["name"], args_done["call_id"]) == ("get_weather", "call_1")
            assert json.loads(args_done["arguments"]) == {"city": "Paris"}
            assert "".join(e["delta"] for e in evs if e["type"] == "response.function_call_arguments.delta") \
                == args_done["arguments"]
            assert evs[-1]["response"]["output"][0]["type"] == "function_call"
            await c.send("conversation.item.create", item={"type": "function_call_output", "call_id": "call_1",
                                                           "output": "sunny"})
            await c.until("conversation.item.done")
            await c.send("response.create")
            evs = await c.until("response.done")
            text = evs[-1]["response"]["output"][0]["content"][0]["transcript"]
            assert text == "The tool returned sunny"
        assert srv.session.function_outputs == {"call_1": "sunny"}
        assert srv.session.function_calls["call_1"]["name"] == "get_weather"


async def test_out_of_band_text_response_stays_out_of_conversation(manual_server: FakeRealtimeServer) -> None:
    async with connect(manual_server) as c:
        await c.send("response.create", response={
            "conversation": "none", "output_modalities": ["text"], "metadata": {"topic": "summary"},
            "instructions": "summarise",
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "abc"}]}],
        })
        evs = await c.until("response.done")
        types = [e["type"] for e in evs]
        assert "conversation.item.added" not in types and "response.output_audio.delta" not in types
        done = evs[-1]["response"]
        assert done["conversation_id"] is None and done["metadata"] == {"topic": "summary"}
        assert done["output"][0]["content"][0] == {"type": "output_text", "text": "You said abc"}
        assert "".join(e["delta"] for e in evs if e["type"] == "response.output_text.delta") == "You said abc"
        assert manual_server.session.items == ()
        await c.send("response.create", response={"conversation": "elsewhere"})
        assert (await c.recv())["error"]["param"] == "response.conversation"
