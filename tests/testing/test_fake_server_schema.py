"""Every event the fake server sends validates against openai-python's GA RealtimeServerEvent."""

from __future__ import annotations

import pydantic
import pytest

from fakeserver_helpers import LONG_REPLY, connect, speech
from voiceengine.testing import (
    FakeRealtimeServer,
    FakeServerConfig,
    Fault,
    FaultKind,
    FunctionCallScript,
    ScriptedResponse,
)
from voiceengine.testing.audio import synthesize

realtime = pytest.importorskip("openai.types.realtime")
ADAPTER = pydantic.TypeAdapter(realtime.RealtimeServerEvent)


async def test_every_sent_event_validates_against_the_sdk() -> None:
    script = [
        ScriptedResponse(text="Hello there."),
        ScriptedResponse(text="Let me check.", function_calls=(FunctionCallScript(name="lookup", arguments={"q": 1}),)),
        "After the tool.",
        LONG_REPLY,
        "Short text answer.",
    ]
    cfg = FakeServerConfig(speed=5.0, responses=script, cycle_responses=False)
    async with FakeRealtimeServer(cfg) as srv:
        async with connect(srv) as c:
            await c.send("session.update", session={
                "type": "realtime", "instructions": "hi",
                "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}, "output": {"voice": "cedar"}},
            })
            await c.until("session.updated")
            await c.append(speech("hello bot"))                       # VAD turn -> response 1
            done = (await c.until("response.done"))[-1]["response"]
            item = done["output"][0]["id"]
            await c.send("conversation.item.truncate", item_id=item, content_index=0, audio_end_ms=100)
            await c.send("conversation.item.retrieve", item_id=item)
            await c.until("conversation.item.retrieved")
            await c.send("input_audio_buffer.commit")                 # error: empty
            await c.send("response.create")                           # response 2: message + function call
            calls = [e for e in await c.until("response.done") if e["type"] == "response.function_call_arguments.done"]
            await c.send("conversation.item.create", item={"type": "function_call_output",
                                                           "call_id": calls[0]["call_id"], "output": "42"})
            await c.send("response.create")                           # response 3
            await c.until("response.done")
            await c.send("response.create")                           # response 4: long, barged in
            await c.until("response.output_audio.delta")
            await c.send("response.create")                           # error: active
            await c.append(synthesize("stop please").pcm + bytes(48 * 600))
            await c.until("input_audio_buffer.committed")
            await c.send("response.cancel")                           # may race the auto response: fine
            await c.send("response.create", response={"conversation": "none", "output_modalities": ["text"],
                                                      "metadata": {"k": "v"}})
            await srv.wait_for(lambda e: e["type"] == "response.output_text.done")
            await c.send("conversation.item.delete", item_id=item)
            await c.send("input_audio_buffer.clear")
            await c.until("input_audio_buffer.cleared")
            await c.send("no.such.event")
            srv.inject(Fault(kind=FaultKind.RATE_LIMITS))
            await c.until("rate_limits.updated")
            srv.inject(Fault(kind=FaultKind.SESSION_EXPIRED))
            await c.until("error")
            while True:
                try:
                    await c.recv()
                except Exception:
                    break
        sent = srv.sent
        seen = {e["type"] for e in sent}
        for ev in sent:
            ADAPTER.validate_python(ev)
    expected = {
        "session.created", "session.updated", "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped", "input_audio_buffer.committed", "conversation.item.added",
        "conversation.item.done", "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed", "response.created", "response.output_item.added",
        "response.content_part.added", "response.output_audio.delta", "response.output_audio_transcript.delta",
        "response.output_audio.done", "response.output_audio_transcript.done", "response.content_part.done",
        "response.output_item.done", "response.done", "conversation.item.truncated", "conversation.item.retrieved",
        "response.function_call_arguments.delta", "response.function_call_arguments.done", "error",
        "conversation.item.deleted", "input_audio_buffer.cleared", "rate_limits.updated",
        "response.output_text.delta", "response.output_text.done",
    }
    assert expected <= seen, expected - seen
    assert any(e["type"] == "error" and e["error"]["code"] == "session_expired" for e in sent)
