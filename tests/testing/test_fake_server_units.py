"""Sans-I/O parts of the fake server: synthesis, G.711, VAD, session logic, fault matching."""

from __future__ import annotations

import base64
import json

import pytest

from voiceengine.testing import EnergyVad, FakeServerConfig, FakeSession, Fault, FaultKind, Trigger
from voiceengine.testing.audio import alaw_decode, alaw_encode, synthesize, ulaw_decode, ulaw_encode
from voiceengine.testing.faults import FaultBook
from voiceengine.testing.vad import VadEventKind, threshold_to_dbfs


def test_synthesis_is_deterministic_and_word_aligned() -> None:
    a, b = synthesize("alpha beta"), synthesize("alpha beta")
    assert a.pcm == b.pcm and len(a.pcm) > 0 and len(a.pcm) % 2 == 0
    assert a.word_offsets[0] == 0 and a.words == ("alpha", "beta")
    assert synthesize("alpha gamma").pcm != a.pcm
    assert synthesize("").pcm == b""
    with pytest.raises(ValueError):
        synthesize("x", 11025)


@pytest.mark.parametrize("enc,dec", [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_g711_round_trip_is_close(enc, dec) -> None:
    pcm = synthesize("tone").pcm
    back = dec(enc(pcm))
    assert len(back) == len(pcm)
    worst = max(abs(int.from_bytes(pcm[i:i + 2], "little", signed=True) -
                    int.from_bytes(back[i:i + 2], "little", signed=True)) for i in range(0, len(pcm), 2))
    assert worst < 1100  # G.711 step size at the loudest segment


@pytest.mark.parametrize("split", [1, 7, 480, 4801])
def test_vad_events_do_not_depend_on_chunking(split: int) -> None:
    audio = bytes(48 * 500) + synthesize("speech here").pcm + bytes(48 * 700)
    whole = EnergyVad(silence_duration_ms=200, prefix_padding_ms=300).process(audio)
    vad = EnergyVad(silence_duration_ms=200, prefix_padding_ms=300)
    parts = [e for i in range(0, len(audio), split) for e in vad.process(audio[i:i + split])]
    assert parts == whole
    assert [e.kind for e in whole] == [VadEventKind.SPEECH_STARTED, VadEventKind.SPEECH_STOPPED]
    assert whole[0].ms == 500 - 300  # onset minus prefix padding
    assert whole[1].ms > whole[0].ms
    assert threshold_to_dbfs(0.5) == -40.0


def _session(**kw) -> FakeSession:
    s = FakeSession(FakeServerConfig(**kw), index=7)
    s.start()
    assert s.events_to_send()[0]["type"] == "session.created"
    return s


def _drain_responses(s: FakeSession) -> None:
    for rid in s.take_new_responses():
        while s.advance(rid) is not None:
            pass


def test_session_sans_io_manual_turn() -> None:
    s = _session(turn_detection=None, responses=["Fine thanks."])
    s.receive(json.dumps({"type": "input_audio_buffer.append",
                          "audio": base64.b64encode(bytes(48 * 200)).decode()}))
    s.receive(json.dumps({"type": "input_audio_buffer.commit"}))
    s.receive(json.dumps({"type": "response.create", "event_id": "e1"}))
    assert s.response_active
    s.receive(json.dumps({"type": "response.create", "event_id": "e2"}))
    _drain_responses(s)
    out = s.events_to_send()
    errs = [e for e in out if e["type"] == "error"]
    assert [(e["error"]["code"], e["error"]["event_id"]) for e in errs] == \
        [("conversation_already_has_active_response", "e2")]
    assert out[-1]["type"] == "response.done" and not s.response_active
    item = out[-1]["response"]["output"][0]["id"]
    assert s.audio_sent_by_item[item] == synthesize("Fine thanks.").pcm
    assert s.items[0]["role"] == "user" and s.items[1]["role"] == "assistant"
    assert all(e["event_id"].startswith("event_0007") for e in out)


def test_session_bounds_history_and_records() -> None:
    s = _session(turn_detection=None, max_history_items=3, max_recorded_events=5)
    for i in range(10):
        s.receive(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": str(i)}]}}))
    assert len(s.items) == 3 and len(s.received) == 5
    s.receive(b"\x00binary")
    assert s.events_to_send()[-1]["error"]["message"].startswith("Binary frames")


def test_fault_validation_and_book_counting() -> None:
    with pytest.raises(ValueError):
        Fault(kind=FaultKind.CLOSE, close_code=1005)
    with pytest.raises(ValueError):
        Fault(kind=FaultKind.REJECT_HANDSHAKE, status_code=200)
    with pytest.raises(ValueError):
        Fault(kind=FaultKind.STALL, count=0)
    book = FaultBook((Fault(kind=FaultKind.CLOSE, trigger=Trigger.AFTER_SERVER_EVENTS, event_type="x", count=2,
                            times=None),))
    hits = [bool(book.match_server_event(0, {"type": t})) for t in ("x", "y", "x", "x", "x")]
    assert hits == [False, False, True, False, True]
    assert len(book.pending) == 1  # times=None never exhausts
    book.add(Fault(kind=FaultKind.REJECT_HANDSHAKE, status_code=429, times=2))
    assert [book.match_handshake(i) is not None for i in range(3)] == [True, True, False]


@pytest.mark.parametrize("retain", [True, False])
def test_item_audio_retention_changes_retrieve_but_not_truncate_bounds(retain: bool) -> None:
    s = _session(turn_detection=None, responses=["Fine thanks."], retain_item_audio=retain)
    user_pcm = synthesize("hello there").pcm
    s.receive(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(user_pcm).decode()}))
    s.receive(json.dumps({"type": "input_audio_buffer.commit"}))
    s.receive(json.dumps({"type": "response.create"}))
    _drain_responses(s)
    out = s.events_to_send()
    user_item, reply_item = s.items[0]["id"], out[-1]["response"]["output"][0]["id"]
    reply_pcm = synthesize("Fine thanks.").pcm
    assert s.audio_sent_by_item == ({reply_item: reply_pcm} if retain else {})
    reply_ms = len(reply_pcm) // 48

    # the truncate bound is the audio sent, whether or not its bytes were kept
    s.receive(json.dumps({"type": "conversation.item.truncate", "item_id": reply_item, "content_index": 0,
                          "audio_end_ms": reply_ms + 1}))
    assert s.events_to_send()[-1]["error"]["param"] == "audio_end_ms"
    s.receive(json.dumps({"type": "conversation.item.truncate", "item_id": reply_item, "content_index": 0,
                          "audio_end_ms": reply_ms}))
    assert s.events_to_send()[-1]["type"] == "conversation.item.truncated"

    for item_id, pcm in ((user_item, user_pcm), (reply_item, reply_pcm)):
        s.receive(json.dumps({"type": "conversation.item.retrieve", "item_id": item_id}))
        got = s.events_to_send()[-1]
        assert got["type"] == "conversation.item.retrieved"
        content = got["item"]["content"][0]
        if retain:
            assert base64.b64decode(content["audio"]) == pcm
        else:
            assert "audio" not in content
