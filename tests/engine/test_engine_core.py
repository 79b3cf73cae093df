"""The engine suite, parametrized over providers: mock, and OpenAI against the fake server."""

from __future__ import annotations

import asyncio

import pytest

from enginekit import PROVIDERS, Recorder, fast_config, make_provider, silence, voiced
from voiceengine.audio import resample
from voiceengine.engine import Transcript, VoiceEngine, VoiceEngineConfig
from voiceengine.exceptions import AudioFormatError, ConfigurationError, InvalidState
from voiceengine.providers.types import EventType, FunctionCall, ResponseInfo

pytestmark = pytest.mark.parametrize("kind", PROVIDERS)


async def test_text_turn_plays_every_byte_received(kind: str) -> None:
    async with make_provider(kind, responses=["Hello from the engine test."]) as (provider, server):
        played: list[bytes] = []
        async with VoiceEngine(provider, fast_config()) as engine:
            rec = Recorder(engine)
            engine.on_audio_response = played.append
            await engine.send_text("hi there")
            turn = (await rec.wait(EventType.METRICS)).data
            deltas = b"".join(e.data for e in rec.of(EventType.AUDIO_DELTA))
            assert deltas and b"".join(played) == deltas  # 24 kHz sink: passthrough, sample-exact
            m = engine.metrics
            assert m.bytes_received == len(deltas) == m.bytes_played
            assert turn.first_audio_received_ms is not None and turn.first_audio_played_ms is not None
            assert turn.status == "completed" and not turn.interrupted
            kinds = [e.type for e in rec.events]
            for t in (EventType.TURN_STARTED, EventType.PLAYBACK_STARTED, EventType.PLAYBACK_STOPPED,
                      EventType.RESPONSE_DONE):
                assert t in kinds
            roles = [i.role for i in engine.state.items]
            assert roles[:2] == ["user", "assistant"]
        if server is not None:
            assert server.errors == []
            sent = b"".join(server.sessions[0].audio_sent_by_item.values())
            assert sent == deltas


async def test_audio_turn_at_48k_stereo_is_resampled_and_framed(kind: str) -> None:
    async with make_provider(kind) as (provider, server):
        async with VoiceEngine(provider, fast_config()) as engine:
            rec = Recorder(engine)
            utterance = voiced(48000, 600, channels=2) + silence(48000, 900, channels=2)
            step = 48000 * 2 * 2 * 7 // 1000  # 7 ms pieces: awkward on purpose
            for off in range(0, len(utterance), step):
                await engine.send_audio(utterance[off:off + step], sample_rate=48000, channels=2)
            await rec.wait(EventType.SPEECH_STOPPED, past=True)
            await rec.wait(EventType.METRICS, past=True)
            m = engine.metrics
            assert m.frames_sent == m.bytes_sent // 960  # 20 ms frames at 24 kHz mono
            assert abs(m.bytes_sent - 1500 * 48) <= 960 + 2 * 48 * 10
            assert m.input_resampler_delay_ms > 0
            assert m.bytes_played == m.bytes_received > 0
        if server is not None:
            assert server.errors == []


async def test_interrupt_truncates_at_played_position(kind: str) -> None:
    # The fake server paces its reply in real time (about 7 s of audio), so the response is
    # still active on the server when the cancel arrives, however loaded the machine. Unpaced,
    # it sent response.done within milliseconds; a client that had not read it yet then
    # (rightly) cancelled, and the server (rightly) answered response_cancel_not_active.
    async with make_provider(kind, responses=["This is a rather long answer " * 4],
                             server_config={"speed": 1.0}) as (provider, server):
        cfg = VoiceEngineConfig(playback_speed=20.0, prebuffer_ms=0, playback_tick_ms=5)
        played = bytearray()
        async with VoiceEngine(provider, cfg) as engine:
            rec = Recorder(engine)
            engine.on_audio_response = played.extend
            await engine.send_text("talk to me")
            await rec.wait(EventType.PLAYBACK_STARTED)
            while len(played) < 48 * 300:
                await asyncio.sleep(0.005)
            result = await engine.interrupt()
            assert result.action == "truncated"
            assert abs(result.audio_end_ms - len(played) // 48) <= 20
            n_after = len(played)
            await asyncio.sleep(0.05)
            assert len(played) == n_after  # silent at once
            ev = await rec.wait(EventType.INTERRUPTED, past=True)
            assert ev.data == result
            assert engine.metrics.interrupts == 1 and engine.metrics.last_turn.interrupted
        if server is not None:
            await asyncio.sleep(0.05)
            # response_cancel_not_active is the benign race of a reply that ended on the
            # server while our cancel was in flight (a loaded machine makes it likely)
            assert [e for e in server.errors if e["error"].get("code") != "response_cancel_not_active"] == []
            truncs = [e for e in server.received if e["type"] == "conversation.item.truncate"]
            assert truncs and truncs[0]["audio_end_ms"] == result.audio_end_ms
            done = [e["response"]["status"] for e in server.sent if e["type"] == "response.done"]
            assert done == ["cancelled"]  # the cancel met the response while it was active


async def test_callbacks_as_attributes_and_decorators(kind: str) -> None:
    async with make_provider(kind, responses=["Callbacks work."]) as (provider, server):
        async with VoiceEngine(provider, fast_config()) as engine:
            rec = Recorder(engine)
            seen: dict[str, list] = {"text": [], "tr": [], "done": []}
            engine.on_text_response = seen["text"].append

            @engine.on_transcript
            def _tr(t: Transcript) -> None:
                seen["tr"].append(t)

            @engine.on_response_done
            async def _done(info: ResponseInfo) -> None:
                seen["done"].append(info)

            await engine.send_text("hello")
            await rec.wait(EventType.METRICS)
            await asyncio.sleep(0.01)
            assert "".join(seen["text"]).strip() == "Callbacks work."
            finals = [t for t in seen["tr"] if t.final and t.role == "assistant"]
            assert finals and finals[0].text.strip() == "Callbacks work."
            assert seen["done"] and seen["done"][0].status == "completed"


async def test_function_call_round_trip(kind: str) -> None:
    if kind == "mock":
        responses = [{"function_call": {"name": "get_time", "arguments": {"tz": "UTC"}}}, "It is noon."]
    else:
        from voiceengine.testing import FunctionCallScript, ScriptedResponse

        responses = [ScriptedResponse(function_calls=(FunctionCallScript(name="get_time", arguments={"tz": "UTC"}),)),
                     ScriptedResponse(text="It is noon.")]
    async with make_provider(kind, responses=responses) as (provider, server):
        async with VoiceEngine(provider, fast_config()) as engine:
            rec = Recorder(engine)
            calls: list[FunctionCall] = []

            @engine.on_function_call
            def _call(call: FunctionCall) -> dict:
                calls.append(call)
                return {"time": "12:00"}

            await engine.send_text("what time is it")
            await rec.wait(EventType.TRANSCRIPT_DONE, lambda e: "noon" in e.data)
            assert calls and calls[0].name == "get_time" and calls[0].parsed_arguments() == {"tz": "UTC"}
            outputs = [i for i in engine.state.items if i.type == "function_call_output"]
            assert outputs and "12:00" in (outputs[0].output or "")


async def test_bad_input_is_refused_at_the_boundary(kind: str) -> None:
    async with make_provider(kind) as (provider, server):
        engine = VoiceEngine(provider, fast_config())
        with pytest.raises(InvalidState):
            await engine.send_audio(b"\x00\x00")
        async with engine:
            with pytest.raises(AudioFormatError):
                await engine.send_audio(b"\x00\x00", sample_rate=4000)
            with pytest.raises(AudioFormatError):
                await engine.send_audio(b"\x00\x00", channels=3)
        await engine.close()
    with pytest.raises(ConfigurationError):
        VoiceEngineConfig(frame_ms=0)
