"""Input frames' event ids name themselves (their own prefix and count: nothing is stored per
frame), and errors still name the request: the last ``max_pending`` appends, each once."""

from __future__ import annotations

import json

from voiceengine.providers.openai.config import OpenAIConfig
from voiceengine.providers.openai.session import RealtimeSession


def _error_for(session: RealtimeSession, event_id: str) -> str | None:
    events = session.receive(json.dumps({"type": "error", "event_id": "srv", "error": {
        "type": "invalid_request_error", "code": "x", "message": "m", "event_id": event_id}}))
    return events[0].error.request_type


def _sent_ids(session: RealtimeSession) -> list[tuple[str, str]]:
    return [(m["type"], m["event_id"]) for m in map(json.loads, session.data_to_send())]


def test_errors_resolve_audio_appends_and_other_requests_interleaved() -> None:
    session = RealtimeSession(OpenAIConfig(api_key="k", turn_detection=None), max_pending=64)
    for turn in range(3):
        for _ in range(5):
            session.append_audio(b"\x00\x00" * 10)
        session.commit_audio()
    sent = _sent_ids(session)
    appends = [eid for kind, eid in sent if kind == "input_audio_buffer.append"]
    commits = [eid for kind, eid in sent if kind == "input_audio_buffer.commit"]
    assert len(appends) == 15 and len(commits) == 3
    assert session.pending_requests == 18
    # first, middle (splits a run) and last of a run, and a commit between runs
    for eid in (appends[5], appends[7], appends[9], appends[14]):
        assert _error_for(session, eid) == "input_audio_buffer.append"
    assert _error_for(session, commits[1]) == "input_audio_buffer.commit"
    assert session.pending_requests == 13
    assert _error_for(session, appends[7]) is None  # resolved once, like a dict pop
    assert _error_for(session, appends[6]) == "input_audio_buffer.append"  # its run neighbours survive
    assert _error_for(session, appends[8]) == "input_audio_buffer.append"
    assert _error_for(session, "not_ours_1") is None


def test_audio_append_ids_stay_bounded_oldest_forgotten() -> None:
    session = RealtimeSession(OpenAIConfig(api_key="k", turn_detection=None), max_pending=100)
    for i in range(1000):
        session.append_audio(b"\x00\x00")
        if i % 7 == 0:
            session.commit_audio()  # breaks the runs
    sent = _sent_ids(session)
    appends = [eid for kind, eid in sent if kind == "input_audio_buffer.append"]
    commits = [eid for kind, eid in sent if kind == "input_audio_buffer.commit"]
    assert len(commits) == 143 and session.pending_requests == 100 + 100  # both windows full
    assert _error_for(session, appends[-101]) is None  # beyond the window: forgotten
    assert _error_for(session, appends[-100]) == "input_audio_buffer.append"


def test_append_ids_are_their_own_form_and_survive_a_reconnect_unresolvable() -> None:
    session = RealtimeSession(OpenAIConfig(api_key="k", turn_detection=None), max_pending=8)
    session.append_audio(b"\x00\x00")
    session.commit_audio()
    (_, first), (_, commit) = _sent_ids(session)
    assert first.endswith("_a1") and not commit.split("_")[-1].startswith("a")
    session.reset_for_reconnect()  # the old connection's requests are not this one's
    assert session.pending_requests == 0 and _error_for(session, first) is None
    session.append_audio(b"\x00\x00")
    (_, second), = _sent_ids(session)
    assert second.endswith("_a2") and second != first  # the count goes on: ids never repeat
    assert session.pending_requests == 1 and _error_for(session, second) == "input_audio_buffer.append"
    assert session.pending_requests == 0


def test_malformed_append_ids_from_the_server_name_nothing() -> None:
    session = RealtimeSession(OpenAIConfig(api_key="k", turn_detection=None), max_pending=8)
    session.append_audio(b"\x00\x00")
    ((_, eid),) = _sent_ids(session)
    prefix = eid[:-1]
    for bogus in ("", "x", "0", "2", "-1", "\u0661", "9" * 5000, " 1"):
        assert _error_for(session, prefix + bogus) is None, bogus
    assert session.pending_requests == 1 and _error_for(session, eid) == "input_audio_buffer.append"
