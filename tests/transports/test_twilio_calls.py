"""Calls through ``serve``'s ``/twilio`` with a Twilio-protocol client and the fake Realtime server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from twilio_client import TwilioCallClient, silence_pcm8k, tone_pcm8k
from voiceengine.audio import resample, ulaw_decode, ulaw_encode
from voiceengine.testing import FakeRealtimeServer, ScriptedResponse
from voiceengine.transports import Call

from transport_helpers import eventually, openai_factory, with_responses

pytestmark = pytest.mark.timeout(90)


async def _until(predicate: Any, timeout: float, what: str) -> None:
    assert await eventually(predicate, timeout=timeout), f"timed out after {timeout} s waiting for {what}"


def _expected_reply_mulaw(fake: FakeRealtimeServer, session_index: int = -1) -> bytes:
    """What the caller must hear: the fake server's reply audio (24 kHz) at 8 kHz, mu-law."""
    session = fake.sessions[session_index]
    audio = b"".join(session.audio_sent_by_item.values())
    return ulaw_encode(resample(audio, 24000, 8000))


async def test_call_audio_both_ways_with_marks_and_parameters(fake: FakeRealtimeServer, serve_with: Any) -> None:
    seen: list[Call] = []
    served = await serve_with(openai_factory(fake), on_call=seen.append)
    async with TwilioCallClient(served.twilio_url, parameters={"customer": "c-42", "lang": "fr"}) as client:
        await client.send_audio(tone_pcm8k(600) + silence_pcm8k(900))
        done = await fake.wait_for(lambda e: e["type"] == "response.done", timeout=20)
        assert done["response"]["status"] == "completed"
        expected = _expected_reply_mulaw(fake)
        await client.wait_media_ms(len(expected) / 8.0)
        await _until(lambda: client.heard_ms >= client.received_ms, 10, "every mark echoed")
        # every media frame is followed by its mark, each naming the position at its end
        assert len(client.received.marks) == len(client.received.media)
        got = b"".join(client.received.media)
        assert got == expected  # mu-law 8 kHz, exactly the reply resampled once
        sink = next(iter(served.host.calls)).engine._sink
        await _until(lambda: sink.unheard_ms() < 0.01, 10, "the server to see every echo")
        assert sink.position.heard_ms == pytest.approx(client.received_ms, abs=0.01)
        await client.stop()
        assert await client.wait_closed() == 1000
    # the server heard the caller: 1.5 s of 8 kHz audio arrive as 24 kHz PCM16 (48 bytes/ms)
    heard_ms = fake.input_audio_bytes / 48.0
    assert 1500 - 25 <= heard_ms <= 1500 + 25
    assert seen and seen[0].info.parameters == {"customer": "c-42", "lang": "fr"}
    assert seen[0].info.call_id == "CA0001" and seen[0].info.stream_id == "MZ0001"


async def test_stop_closes_the_provider_session(fake: FakeRealtimeServer, serve_with: Any) -> None:
    served = await serve_with(openai_factory(fake))
    async with TwilioCallClient(served.twilio_url) as client:
        await fake.wait_for_session(timeout=10)
        await _until(lambda: len(fake.connections) == 1, 10, "the provider session")
        await client.stop()
        await _until(lambda: not fake.connections, 5, "the provider session to close")
        assert await client.wait_closed() == 1000
    assert not served.host.calls


async def test_socket_closed_without_stop_ends_call_and_provider_session(
        fake: FakeRealtimeServer, serve_with: Any) -> None:
    served = await serve_with(openai_factory(fake))
    client = TwilioCallClient(served.twilio_url)
    await client.connect()
    await client.start()
    await client.send_audio(tone_pcm8k(100))
    await _until(lambda: len(fake.connections) == 1 and served.host.calls, 10, "the call")
    assert client.ws is not None
    client.ws.transport.abort()  # no stop, no close frame: the peer vanished
    await client.close()
    await _until(lambda: not fake.connections and not served.host.calls, 5, "call and provider session to end")


async def test_dtmf_digits_reach_the_app(fake: FakeRealtimeServer, serve_with: Any) -> None:
    from voiceengine.transports import TwilioMediaStreamHandler

    digits: list[tuple[str, str]] = []
    served = await serve_with(openai_factory(fake))
    served.server.twilio = TwilioMediaStreamHandler(served.host, on_dtmf=lambda call, d: digits.append(
        (call.info.call_id, d)))
    async with TwilioCallClient(served.twilio_url, call_sid="CA77") as client:
        for digit in "12#":
            await client.send_dtmf(digit)
        await _until(lambda: len(digits) == 3, 10, "three digits")
        await client.stop()
    assert digits == [("CA77", "1"), ("CA77", "2"), ("CA77", "#")]


async def test_barge_in_clears_and_truncates_at_what_the_caller_heard(
        fake: FakeRealtimeServer, serve_with: Any) -> None:
    long_reply = " ".join(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"] * 3)
    with_responses(fake, [ScriptedResponse(text=long_reply)])
    served = await serve_with(openai_factory(fake))
    # Twilio's playout buffer holds 300 ms: the caller hears each frame that much after it arrived
    async with TwilioCallClient(served.twilio_url, echo_delay_s=0.3) as client:
        await client.send_audio(tone_pcm8k(500) + silence_pcm8k(900))
        await client.wait_media_ms(1200, timeout=20)
        engine = next(iter(served.host.calls)).engine
        await _until(lambda: client.heard_ms >= 600, 10, "600 ms heard")
        client.hold_marks()  # freeze what was heard, so the check below is exact
        heard, received = client.heard_ms, client.received_ms
        assert received - heard >= 100  # audio sent is ahead of audio heard
        await client.send_audio(tone_pcm8k(300))  # the caller talks over the reply
        await _until(lambda: client.received.clears, 10, "clear")
        truncate = await fake.wait_for_received(lambda e: e["type"] == "conversation.item.truncate", timeout=10)
        # truncated at what the caller heard (marks), not at what was sent. The engine counts
        # the few ms inside its output resampler (24 -> 8 kHz) as played, and floors to whole ms
        resampler_ms = engine.metrics.output_resampler_delay_ms
        assert 0 < resampler_ms < 10
        assert heard - 1 <= truncate["audio_end_ms"] <= heard + resampler_ms + 1
        assert truncate["audio_end_ms"] < received - 50
        # nothing of the interrupted reply is sent after the clear
        await asyncio.sleep(0.2)
        assert len(client.received.media) == client.received.media_before_clear[0]
        await client.stop()
    assert fake.session.truncations[-1]["audio_end_ms"] == truncate["audio_end_ms"]


@pytest.mark.parametrize(("frame", "code"), [
    ("this is not json", 1007),
    (b"\x00\x01binary", 1003),
    ('["an", "array"]', 1007),
])
async def test_malformed_frames_close_with_a_clear_code(fake: FakeRealtimeServer, serve_with: Any,
                                                        frame: str | bytes, code: int) -> None:
    served = await serve_with(openai_factory(fake))
    async with TwilioCallClient(served.twilio_url) as client:
        await client.send_raw(frame)
        assert await client.wait_closed() == code
        assert client.close_reason
    await _until(lambda: not served.host.calls and not fake.connections, 5, "the call to end")
    await _next_call_works(fake, served)


async def test_media_before_start_is_a_policy_close(fake: FakeRealtimeServer, serve_with: Any) -> None:
    served = await serve_with(openai_factory(fake))
    client = TwilioCallClient(served.twilio_url)
    await client.connect()
    try:
        await client.send_audio(tone_pcm8k(20))
        assert await client.wait_closed() == 1008
        assert "before start" in client.close_reason
    finally:
        await client.close()
    await _next_call_works(fake, served)


async def test_unsupported_media_format_is_refused(fake: FakeRealtimeServer, serve_with: Any) -> None:
    served = await serve_with(openai_factory(fake))
    client = TwilioCallClient(served.twilio_url)
    await client.connect()
    try:
        await client.start(media_format={"encoding": "audio/x-l16", "sampleRate": 16000, "channels": 1})
        assert await client.wait_closed() == 1003
        assert "unsupported media format" in client.close_reason
    finally:
        await client.close()
    assert not fake.connections  # no provider session was opened for it


@pytest.mark.parametrize("bad", [
    {"event": "media", "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": "%%%not base64"}},
    {"event": "media", "media": {"track": "inbound", "payload": 12}},
    {"event": "surprise", "what": "unknown event"},
    {"event": "mark", "mark": {"name": "not-ours"}},
])
async def test_bad_frames_are_dropped_with_a_warning_and_the_call_goes_on(
        fake: FakeRealtimeServer, serve_with: Any, caplog: pytest.LogCaptureFixture, bad: dict[str, Any]) -> None:
    served = await serve_with(openai_factory(fake))
    caplog.set_level(logging.WARNING, logger="voiceengine.transports")
    async with TwilioCallClient(served.twilio_url) as client:
        await client.send_json(bad)
        await client.send_audio(tone_pcm8k(400) + silence_pcm8k(800))
        await fake.wait_for(lambda e: e["type"] == "response.done", timeout=20)  # the call still works
        await client.stop()
        assert await client.wait_closed() == 1000
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "dropped" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]


async def test_a_silent_stream_is_closed_after_the_idle_timeout(fake: FakeRealtimeServer, serve_with: Any) -> None:
    from voiceengine.transports import TwilioMediaStreamHandler

    served = await serve_with(openai_factory(fake))
    served.server.twilio = TwilioMediaStreamHandler(served.host, idle_timeout_s=0.3)
    async with TwilioCallClient(served.twilio_url) as client:
        assert await client.wait_closed() == 4408
    await _until(lambda: not served.host.calls and not fake.connections, 5, "the call to end")


async def test_a_second_start_is_a_policy_close(fake: FakeRealtimeServer, serve_with: Any) -> None:
    served = await serve_with(openai_factory(fake))
    async with TwilioCallClient(served.twilio_url) as client:
        await client.start()
        assert await client.wait_closed() == 1008
    await _until(lambda: not served.host.calls and not fake.connections, 5, "the call to end")


async def _next_call_works(fake: FakeRealtimeServer, served: Any) -> None:
    responses_before = sum(1 for e in fake.sent if e["type"] == "response.done")
    async with TwilioCallClient(served.twilio_url, call_sid="CA-next") as client:
        await client.send_audio(tone_pcm8k(400) + silence_pcm8k(800))
        await fake.wait_for(lambda e: e["type"] == "response.done" and
                            sum(1 for x in fake.sent if x["type"] == "response.done") > responses_before, timeout=20)
        await client.wait_media_ms(100)
        await client.stop()
        assert await client.wait_closed() == 1000


def test_decoded_reply_is_pcm16_8k() -> None:
    pcm = tone_pcm8k(20)
    assert len(ulaw_decode(ulaw_encode(pcm))) == len(pcm) == 320


async def test_fifty_concurrent_calls_hear_only_their_own_replies(serve_with: Any) -> None:
    from voiceengine import VoiceEngineConfig
    from voiceengine.testing import FakeServerConfig, ResponseContext
    from voiceengine.transports import CallInfo, EngineFactory

    calls = 50
    words = ["apple", "river", "stone", "cloud", "maple", "ember", "frost", "lunar", "north", "pearl"]

    def reply(ctx: ResponseContext) -> str:
        # the call's number came in through its instructions, picked from customParameters
        n = int(ctx.instructions.rsplit(" ", 1)[1])
        return f"{words[n % 10]} {words[n // 10]}"

    def config(info: CallInfo) -> VoiceEngineConfig:
        return VoiceEngineConfig(api_key="sk-test-fake", url=fake.url,
                                 instructions=f"caller {int(info.parameters['n'])}")

    async with FakeRealtimeServer(FakeServerConfig(responses=reply, speed=20.0)) as fake:
        served = await serve_with(EngineFactory(provider="openai", config=config))
        clients = [TwilioCallClient(served.twilio_url, stream_sid=f"MZ{n:03d}", call_sid=f"CA{n:03d}",
                                    parameters={"n": str(n)}) for n in range(calls)]

        async def place(client: TwilioCallClient) -> None:
            await client.connect()
            await client.start()
            await client.send_audio(tone_pcm8k(300) + silence_pcm8k(800), pace=4.0)

        await asyncio.gather(*(place(c) for c in clients))
        try:
            await _until(lambda: sum(1 for e in fake.sent if e["type"] == "response.done") >= calls, 60,
                         "every call's reply")
            by_instructions = {s.session["instructions"]: s for s in fake.sessions}
            for n, client in enumerate(clients):
                session = by_instructions[f"caller {n}"]
                expected = ulaw_encode(resample(b"".join(session.audio_sent_by_item.values()), 24000, 8000))
                await client.wait_media_ms(len(expected) / 8.0, timeout=30)
                assert b"".join(client.received.media) == expected, f"call {n} heard another reply"
            assert served.host.calls_total == calls
        finally:
            for client in clients:
                await client.stop()
            await asyncio.gather(*(c.close() for c in clients))
        await _until(lambda: not served.host.calls and not fake.connections, 10, "every call to end")
