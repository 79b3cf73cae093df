"""Sans-I/O pieces: the Twilio codec, the heard position, the factory, the engine's unheard hook."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from voiceengine import VoiceEngineConfig
from voiceengine.exceptions import ConfigurationError
from voiceengine.pipeline import Playback
from voiceengine.providers.mock import MockConfig, MockProvider
from voiceengine.transports import BadFrame, CallInfo, EngineFactory, ListenerPosition, TransportKind
from voiceengine.transports import twilio_protocol as tp


def _start(**start: Any) -> str:
    body = {"accountSid": "AC1", "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound"],
            "customParameters": {"a": "1"}, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                                           "channels": 1}}
    body.update(start)
    return json.dumps({"event": "start", "streamSid": "MZ1", "start": body})


def test_decode_each_event() -> None:
    assert tp.decode('{"event": "connected", "protocol": "Call", "version": "1.0.0"}') == tp.Connected(
        protocol="Call", version="1.0.0")
    start = tp.decode(_start())
    assert isinstance(start, tp.Start)
    assert (start.stream_sid, start.call_sid, dict(start.custom_parameters)) == ("MZ1", "CA1", {"a": "1"})
    payload = base64.b64encode(b"\xff" * 160).decode()
    media = tp.decode(json.dumps({"event": "media", "media": {"track": "inbound", "chunk": "3",
                                                              "timestamp": "40", "payload": payload}}))
    assert media == tp.Media(track="inbound", chunk=3, timestamp_ms=40, payload=b"\xff" * 160)
    assert tp.decode('{"event": "mark", "mark": {"name": "ve:20.000"}}') == tp.Mark(name="ve:20.000")
    assert tp.decode('{"event": "dtmf", "dtmf": {"digit": "#"}}') == tp.Dtmf(digit="#")
    assert tp.decode('{"event": "stop", "stop": {"callSid": "CA1"}}') == tp.Stop(call_sid="CA1")


@pytest.mark.parametrize(("frame", "close_code"), [
    (b"binary", 1003),
    ("{not json", 1007),
    ("[1, 2]", 1007),
    (_start(callSid=""), 1007),
    (_start(mediaFormat={"encoding": "audio/x-mulaw", "sampleRate": 16000, "channels": 1}), 1003),
    (_start(customParameters=["x"]), 1007),
    ('{"event": "media", "media": {"payload": "%%%"}}', None),
    ('{"event": "media", "media": {"payload": "AAAA", "chunk": "x"}}', None),
    ('{"event": "dtmf", "dtmf": {"digit": "12"}}', None),
    ('{"event": "mark", "mark": {}}', None),
    ('{"event": "whatever"}', None),
    ('{"event": 5}', None),
])
def test_decode_refuses_bad_frames_with_the_right_consequence(frame: str | bytes, close_code: int | None) -> None:
    with pytest.raises(BadFrame) as err:
        tp.decode(frame)
    assert err.value.close_code == close_code
    assert err.value.code.startswith("twilio_") and err.value.reason


def test_oversized_media_is_dropped() -> None:
    payload = base64.b64encode(bytes(tp.MAX_MEDIA_BYTES + 3)).decode()
    with pytest.raises(BadFrame) as err:
        tp.decode(json.dumps({"event": "media", "media": {"payload": payload}}))
    assert err.value.close_code is None


def test_encoders_round_trip() -> None:
    media = json.loads(tp.encode_media("MZ1", b"\x01\x02"))
    assert media == {"event": "media", "streamSid": "MZ1", "media": {"payload": "AQI="}}
    assert json.loads(tp.encode_mark("MZ1", "m")) == {"event": "mark", "streamSid": "MZ1", "mark": {"name": "m"}}
    assert json.loads(tp.encode_clear("MZ1")) == {"event": "clear", "streamSid": "MZ1"}


def test_listener_position() -> None:
    pos = ListenerPosition()
    assert pos.sent(20) == 20 and pos.sent(20) == 40
    pos.heard(20)
    assert pos.unheard_ms == 20
    pos.heard(10)              # acknowledgements never move backwards
    pos.heard(1e9)             # nor beyond what was sent
    assert pos.heard_ms == 40 and pos.unheard_ms == 0
    pos.sent(60)
    pos.clear()                # dropped audio counts as passed, never heard
    pos.heard(50)              # a late echo of cleared audio changes nothing
    assert pos.heard_ms == 100 and pos.unheard_ms == 0


def test_engine_factory_checks_and_sets_the_output_format() -> None:
    with pytest.raises(ConfigurationError, match="fresh"):
        EngineFactory(provider=MockProvider(MockConfig()))
    with pytest.raises(ConfigurationError):
        EngineFactory(provider="mock", playback_tick_ms=1)

    class Sink:
        sample_rate = 8000

        def unheard_ms(self) -> float:
            return 0.0

    info = CallInfo(transport=TransportKind.TWILIO, call_id="CA", stream_id="MZ", parameters={"x": "1"})
    engine = EngineFactory(provider="mock", config=VoiceEngineConfig(playback_speed=None)).build(info, Sink())
    assert engine.config.output_sample_rate == 8000 and engine.config.playback_speed == 1.0
    assert engine.config.playback_tick_ms == 20.0
    with pytest.raises(TypeError):
        info.parameters["y"] = "2"  # type: ignore[index]


async def test_playback_stop_now_takes_the_unheard_audio_off_the_read_head() -> None:
    """Regression: a remote player's backlog used to count as heard at barge-in."""
    pb = Playback(in_rate=24000, out_rate=8000, out_channels=1, capacity_ms=5000, prebuffer_ms=0, speed=1.0,
                  tick_ms=10, deliver=lambda pcm: None)
    pb.write("item_1", "resp_1", bytes(48 * 1000))   # 1000 ms received
    pb._read(48 * 800)                              # 800 ms left the ring (sent to the player)
    cut = pb.stop_now(unheard_ms=300.0)             # the player still held 300 ms
    assert cut.heard is not None and cut.heard.item_id == "item_1"
    assert cut.played_ms == 500
    await asyncio.sleep(0)


def test_unheard_larger_than_what_was_played_means_nothing_heard() -> None:
    pb = Playback(in_rate=24000, out_rate=24000, out_channels=1, capacity_ms=5000, prebuffer_ms=0, speed=1.0,
                  tick_ms=10, deliver=lambda pcm: None)
    pb.write("a", "r", bytes(48 * 200))
    pb._read(48 * 200)
    pb.write("b", "r", bytes(48 * 200))
    pb._read(48 * 100)
    cut = pb.stop_now(unheard_ms=250.0)   # the player still holds all of b's 100 ms and 150 ms of a
    assert cut.heard is not None and cut.heard.item_id == "b" and cut.played_ms == 0
