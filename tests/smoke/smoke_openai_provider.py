"""Smoke test of the OpenAI Realtime provider, runnable as a script.

    python tests/smoke/smoke_openai_provider.py            # against a local FakeRealtimeServer
    OPENAI_API_KEY=sk-... python tests/smoke/smoke_openai_provider.py --live   # the real API

Walks the provider through a text turn, an audio turn (manual commit), a function call
round trip and a barge-in, then disconnects. Prints one ``OK <step>`` line per step and
``SMOKE OK`` at the end; exits 1 on the first failure (2 on bad usage). The live run costs
a few cents of audio tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import struct
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from voiceengine.providers import EventType, ProviderEvent  # noqa: E402
from voiceengine.providers.openai import OpenAIConfig, OpenAIProvider  # noqa: E402
from tests.event_recorder import EventRecorder  # noqa: E402

TOOLS = [{
    "type": "function",
    "name": "get_time",
    "description": "Returns the current time in the given city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]


class Recorder(EventRecorder):
    """Records every event of a provider and waits for a matching one."""

    def __init__(self, provider: OpenAIProvider) -> None:
        super().__init__(provider, wait_timeout=30.0)

def tone(ms: int, hz: float = 220.0, rate: int = 24000, amplitude: float = 0.4) -> bytes:
    n = rate * ms // 1000
    return struct.pack(f"<{n}h", *(int(amplitude * 32767 * math.sin(2 * math.pi * hz * i / rate)) for i in range(n)))


def step(name: str, detail: str = "") -> None:
    print(f"OK {name}" + (f": {detail}" if detail else ""), flush=True)


async def response_done(rec: Recorder, since: int, timeout: float) -> ProviderEvent:
    done = await rec.wait(lambda e: e.type is EventType.RESPONSE_DONE, since=since, timeout=timeout)
    errors = [e for e in rec.of(EventType.ERROR, since) if not (e.error and e.error.benign)]
    if errors:
        raise AssertionError(f"server errors: {[e.error.code for e in errors if e.error]}")
    return done


async def run(config: OpenAIConfig, *, live: bool, timeout: float) -> dict[str, Any]:
    provider = OpenAIProvider(config)
    rec = Recorder(provider)
    report: dict[str, Any] = {}
    try:
        await provider.connect()
        assert provider.is_connected, provider.state
        step("connect", f"session {provider.session_id}")

        # 1. text turn
        mark = rec.mark()
        await provider.send_text("Say hello in three words.")
        await response_done(rec, mark, timeout)
        audio = b"".join(e.data for e in rec.of(EventType.AUDIO_DELTA, mark))
        transcript = "".join(e.data for e in rec.of(EventType.TRANSCRIPT_DELTA, mark))
        assert audio and len(audio) % 2 == 0, "no reply audio"
        report["text_turn_audio"] = audio
        step("text turn", f"{len(audio)} bytes of audio, transcript {transcript!r}")

        # 2. audio turn, manual commit (turn_detection=None)
        mark = rec.mark()
        speech = tone(800)
        for offset in range(0, len(speech), 4800):  # 100 ms chunks
            await provider.send_audio(speech[offset:offset + 4800])
        await provider.commit_audio()
        await provider.create_response()
        await rec.wait(lambda e: e.type is EventType.INPUT_COMMITTED, since=mark, timeout=timeout)
        await response_done(rec, mark, timeout)
        step("audio turn", f"{len(rec.of(EventType.AUDIO_DELTA, mark))} audio deltas")

        # 3. function call round trip
        mark = rec.mark()
        await provider.send_text("What time is it in Paris? Use the get_time tool.")
        call_event = await rec.wait(lambda e: e.type in (EventType.FUNCTION_CALL, EventType.RESPONSE_DONE),
                                    since=mark, timeout=timeout)
        if call_event.type is EventType.FUNCTION_CALL:
            call = call_event.data
            await response_done(rec, mark, timeout)
            mark = rec.mark()
            await provider.send_function_result(call.call_id, {"time": "12:00"})
            await response_done(rec, mark, timeout)
            step("function call", f"{call.name}({call.arguments}) answered")
        elif live:
            step("function call", "skipped: the model answered without calling the tool")
        else:
            raise AssertionError("the fake server did not call the tool")

        # 4. barge-in: interrupt the reply after its first audio delta
        mark = rec.mark()
        await provider.send_text("Count slowly from one to thirty.")
        first = await rec.wait(lambda e: e.type is EventType.AUDIO_DELTA, since=mark, timeout=timeout)
        result = await provider.interrupt(played_ms=40)
        done = await response_done(rec, mark, timeout)
        step("interrupt", f"{result.action} item {first.item_id} at {result.audio_end_ms} ms, "
                          f"response {done.data.status}")
    finally:
        await provider.disconnect()
    assert provider.state.value == "closed"
    step("disconnect")
    return report


async def main_async(args: argparse.Namespace) -> int:
    tools = TOOLS
    if args.live:
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            print("--live needs OPENAI_API_KEY", file=sys.stderr)
            return 2
        config = OpenAIConfig(api_key=key, turn_detection=None, tools=tools, instructions="Be very brief.")
        await run(config, live=True, timeout=args.timeout)
    else:
        from voiceengine.testing import FakeRealtimeServer, FakeServerConfig
        from voiceengine.testing.config import FunctionCallScript, ScriptedResponse

        script = [
            ScriptedResponse(text="Hello there, friend."),
            ScriptedResponse(text="I heard you."),
            ScriptedResponse(function_calls=(FunctionCallScript(name="get_time", arguments={"city": "Paris"}),)),
            ScriptedResponse(text="It is noon in Paris."),
            ScriptedResponse(text=" ".join(["one two three four five six seven eight nine ten"] * 3)),
        ]
        server_config = FakeServerConfig(responses=script, turn_detection=None, speed=float("inf"))
        async with FakeRealtimeServer(server_config) as server:
            config = OpenAIConfig(api_key="sk-smoke-not-a-real-key", url=server.url, turn_detection=None,
                                  tools=tools)
            report = await run(config, live=False, timeout=args.timeout)
            sent = b"".join(server.sessions[0].audio_sent_by_item.get(item, b"")
                            for item in list(server.sessions[0].audio_sent_by_item)[:1])
            assert report["text_turn_audio"] == sent, "reply audio differs from what the server sent"
            step("audio bytes", "equal to what the fake server sent")
            assert not [e for e in server.errors], f"server errors: {server.errors}"
            step("server errors", "none")
    print("SMOKE OK", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", action="store_true", help="talk to the real API (needs OPENAI_API_KEY)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait per step")
    args = parser.parse_args()
    try:
        return asyncio.run(main_async(args))
    except Exception as exc:  # a smoke script reports, it does not dump a traceback
        print(f"SMOKE FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
