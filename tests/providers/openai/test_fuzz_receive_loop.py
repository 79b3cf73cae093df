"""Malformed frames through the real receive loop of a connected OpenAIProvider.

A tiny websockets server on 127.0.0.1 sends session.created, then a long stream of
frames every one of which must become exactly one ERROR (malformed_event) or UNKNOWN
event (text garbage, binary frames, unknown types, known types whose mutation the codec
refuses), then one valid event. The provider must stay CONNECTED (no connection-state
change at all), emit one ERROR/UNKNOWN per frame in order, then the valid event, and a
send afterwards must reach the server.
"""

from __future__ import annotations

import asyncio
import json
import random

from test_fuzz_decode import SAMPLES, _frame
from websockets.asyncio.server import ServerConnection, serve

from voiceengine.providers import ConnectionState, EventType, ProviderEvent
from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider
from voiceengine.providers.openai.decoders import DecodeContext
from voiceengine.providers.openai.protocol import RealtimeCodec

N_FRAMES = 100_000
SEED = 20250506


def _frames() -> tuple[list[str | bytes], list[EventType]]:
    """Frames whose outcome does not depend on session state, and the event kind of each."""
    rng = random.Random(SEED)
    codec = RealtimeCodec()
    frames: list[str | bytes] = []
    kinds: list[EventType] = []
    while len(frames) < N_FRAMES:
        cls, _msg, frame = _frame(rng)
        if isinstance(frame, str) and len(frame) > 20_000:
            continue  # keep the run short; huge frames are covered by test_fuzz_decode
        event = codec.decode(frame, DecodeContext()).event
        if cls == "known" and not (event.error is not None and event.error.code == "malformed_event"):
            continue  # an acceptable known event would change session state
        frames.append(frame)
        kinds.append(event.type)
    return frames, kinds


async def test_fuzz_receive_loop_survives_malformed_frames() -> None:
    frames, kinds = _frames()
    assert set(kinds) == {EventType.ERROR, EventType.UNKNOWN}
    go = asyncio.Event()
    received: list[dict] = []

    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps({**SAMPLES["session.created"], "session": {"id": "sess_fuzz", "type": "realtime"}}))
        async for raw in ws:
            msg = json.loads(raw)
            received.append(msg)
            if msg["type"] == "session.update":
                await ws.send(json.dumps({"type": "session.updated", "event_id": "e0",
                                          "session": {"id": "sess_fuzz", "type": "realtime"}}))
                await go.wait()
                for frame in frames:
                    await ws.send(frame)
                await ws.send(json.dumps(SAMPLES["response.output_text.delta"]))

    events: list[ProviderEvent] = []
    done = asyncio.Event()

    def on_event(event: ProviderEvent) -> None:
        events.append(event)
        if event.type is EventType.TEXT_DELTA:
            done.set()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        config = OpenAIConfig(api_key="sk-fuzz-0000000000000000", url=f"ws://127.0.0.1:{port}/v1/realtime",
                              turn_detection=None, connect_timeout_s=10.0)
        provider = OpenAIProvider(config)
        provider.on_event("*", on_event)
        await provider.connect()
        try:
            assert provider.state is ConnectionState.CONNECTED
            async with asyncio.timeout(10):  # connect() returns once session.update is sent
                while not any(e.type is EventType.SESSION_UPDATED for e in events):
                    await asyncio.sleep(0.01)
            mark = len(events)
            go.set()
            async with asyncio.timeout(110):
                await done.wait()
            tail = events[mark:]
            assert [e.type for e in tail[:-1]] == kinds  # one ERROR/UNKNOWN per frame, in order
            assert all(e.error is not None and e.error.code == "malformed_event"
                       for e in tail[:-1] if e.type is EventType.ERROR)
            assert tail[-1].type is EventType.TEXT_DELTA
            assert provider.state is ConnectionState.CONNECTED
            assert not [e for e in tail if e.type is EventType.CONNECTION_STATE]
            await provider.send_text("still here", respond=False)
            async with asyncio.timeout(10):
                while not any(m["type"] == "conversation.item.create" for m in received):
                    await asyncio.sleep(0.01)
            print(f"fuzz receive loop: {len(frames)} frames -> "
                  f"{sum(k is EventType.ERROR for k in kinds)} ERROR, {sum(k is EventType.UNKNOWN for k in kinds)} "
                  "UNKNOWN, then the valid event and a send")
        finally:
            await provider.disconnect()
