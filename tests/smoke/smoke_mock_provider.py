"""Smoke test of the whole provider interface on the MockProvider, runnable as a script.

    python tests/smoke/smoke_mock_provider.py

Goes through every BaseProvider method (connect, audio in with server VAD, manual commit,
text turns, raw messages, response requests, cancel, truncate, interrupt, function calls,
session updates, events() and on_event, capabilities, disconnect) and checks the GA event
order of a spoken reply. Prints ``OK <step>`` lines and ``SMOKE OK``; exits 1 on failure.
"""

from __future__ import annotations

import asyncio
import math
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from voiceengine.exceptions import InvalidState  # noqa: E402
from voiceengine.providers import (  # noqa: E402
    ConnectionState, EventType, MessageType, ProviderEvent, create,
)
from tests.event_recorder import EventRecorder  # noqa: E402

GA_ORDER = [
    EventType.RESPONSE_STARTED, EventType.OUTPUT_ITEM_ADDED, EventType.ITEM_ADDED, EventType.CONTENT_PART_ADDED,
    EventType.AUDIO_DONE, EventType.TRANSCRIPT_DONE, EventType.CONTENT_PART_DONE, EventType.OUTPUT_ITEM_DONE,
    EventType.ITEM_DONE, EventType.RESPONSE_DONE,
]


class Recorder(EventRecorder):
    """Every event of a provider, with a waiter (subscribed before connect: nothing missed)."""

    def types(self, since: int = 0) -> list[EventType]:
        return [e.type for e in self.events[since:]]


def tone(ms: int, hz: float = 200.0, amplitude: float = 0.5) -> bytes:
    n = 24 * ms
    return struct.pack(f"<{n}h", *(int(amplitude * 32767 * math.sin(2 * math.pi * hz * i / 24000)) for i in range(n)))


def step(name: str, detail: str = "") -> None:
    print(f"OK {name}" + (f": {detail}" if detail else ""), flush=True)


def is_done(event: ProviderEvent) -> bool:
    return event.type is EventType.RESPONSE_DONE


async def main_async() -> int:
    provider = create(
        "mock", seed=7, latency_ms=0,
        responses=("Hello from the mock provider.", {"function_call": {"name": "get_time",
                                                                      "arguments": {"city": "Paris"}}},
                   "It is noon.", "Raw response.", "Queued response.", " ".join(["counting"] * 20)),
    )
    rec = Recorder(provider)
    caps = provider.get_capabilities()
    in_fmt, out_fmt = provider.get_audio_format()
    assert in_fmt.sample_rate == out_fmt.sample_rate == 24000, (in_fmt, out_fmt)
    step("capabilities", f"{caps.name}: in {in_fmt.sample_rate} Hz, out {out_fmt.sample_rate} Hz")
    try:
        await provider.send_text("too early")
        raise AssertionError("send_text before connect did not raise")
    except InvalidState:
        step("not connected", "InvalidState before connect()")

    async with provider:
        assert provider.state is ConnectionState.CONNECTED
        step("connect", f"session {provider.session_id}")

        # events() iterator sees a whole text turn, in the GA order
        mark = rec.mark()
        seen: list[ProviderEvent] = []
        started = asyncio.Event()

        async def consume() -> None:
            stream = provider.events()
            iterator = stream.__aiter__()
            first = asyncio.ensure_future(iterator.__anext__())
            started.set()
            event = await first
            while True:
                seen.append(event)
                if event.type is EventType.RESPONSE_DONE:
                    return
                event = await iterator.__anext__()

        consumer = asyncio.create_task(consume())
        await started.wait()
        await asyncio.sleep(0)  # let the iterator subscribe
        await provider.send_text("Hi!")
        await asyncio.wait_for(consumer, 10)
        types = rec.types(mark)
        order = [t for t in types[types.index(EventType.RESPONSE_STARTED):] if t in GA_ORDER]
        expected = [t for t in GA_ORDER if t in order]
        assert order == expected, order
        audio = b"".join(e.data for e in rec.events[mark:] if e.type is EventType.AUDIO_DELTA)
        assert audio and len(audio) % 2 == 0
        assert any(e.type is EventType.RESPONSE_DONE for e in seen)
        step("text turn", f"{len(audio)} bytes of audio, GA order, events() saw {len(seen)} events")

        # audio in: server VAD detects speech, commits and answers
        mark = rec.mark()
        for chunk in (tone(600), bytes(24 * 2 * 800)):
            for offset in range(0, len(chunk), 4800):
                await provider.send_audio(chunk[offset:offset + 4800])
        await rec.wait(lambda e: e.type is EventType.SPEECH_STARTED, mark)
        await rec.wait(lambda e: e.type is EventType.INPUT_COMMITTED, mark)
        call_event = await rec.wait(lambda e: e.type is EventType.FUNCTION_CALL, mark)
        await rec.wait(is_done, mark)
        step("audio turn", "speech started, committed, reply requested")

        # function call round trip
        call = call_event.data
        mark = rec.mark()
        await provider.send_function_result(call.call_id, {"time": "12:00"})
        await rec.wait(is_done, mark)
        step("function call", f"{call.name}({call.arguments}) answered")

        # manual commit + raw messages + response request
        await provider.update_session(turn_detection=None, instructions="Be brief.")
        mark = rec.mark()
        await provider.send_audio(tone(300))
        await provider.commit_audio()
        await provider.send_audio(tone(100))
        await provider.clear_audio()
        item_id = await provider.add_item({"type": "message", "role": "user",
                                           "content": [{"type": "input_text", "text": "raw item"}]})
        event_id = await provider.send_message(MessageType.RESPONSE_CREATE, {})
        await provider.create_response()  # queued behind the active one, never concurrent
        await rec.wait(is_done, mark)
        step("manual turn", f"commit, clear, item {item_id}, raw event {event_id}")

        await provider.wait_idle()  # type: ignore[attr-defined]
        done = [e for e in rec.events[mark:] if is_done(e)]
        assert len(done) == 2, f"expected 2 responses, got {len(done)}"

        # barge-in: interrupt the reply after its first audio delta
        mark = rec.mark()
        await provider.send_text("Count for me.")
        first = await rec.wait(lambda e: e.type is EventType.AUDIO_DELTA, mark)
        result = await provider.interrupt(played_ms=30)
        done_event = await rec.wait(is_done, mark)
        assert done_event.data.status == "cancelled", done_event.data
        step("interrupt", f"{result.action} {first.item_id} at {result.audio_end_ms} ms, response cancelled")

        # cancel with nothing active is a no-op
        cancelled = await provider.cancel_response()
        assert cancelled is False
        step("cancel", "cancel with nothing active -> False")
        errors = [e for e in rec.events if e.type is EventType.ERROR and e.error and not e.error.benign]
        assert not errors, [e.error for e in errors]
        step("errors", "no non-benign errors")

    assert provider.state is ConnectionState.CLOSED
    await provider.disconnect()  # idempotent
    step("disconnect", "closed, idempotent")
    print("SMOKE OK", flush=True)
    return 0


def main() -> int:
    try:
        return asyncio.run(main_async())
    except Exception as exc:
        print(f"SMOKE FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
