"""The outbound writer: coalesced writes, the transport's fast path, backpressure, failures.

Wire checks go through a loopback websockets server, so every frame the fast path builds
is parsed by websockets' own reader (masking, lengths, opcodes, UTF-8).
"""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

import pytest
from websockets.asyncio.server import ServerConnection, serve

from voiceengine.providers.backlog import OutboundAudio
from voiceengine.providers.base import AudioLedger
from voiceengine.providers.interfaces import BatchTransport, CloseInfo, Frame, Transport, TransportClosed
from voiceengine.providers import runtime as runtime_module
from voiceengine.providers.runtime import OutboundQueue, OutboundWriter

from tests.providers.websocket_loopback import EDGE_LENGTHS, open_loopback


class _Recorder:
    """A loopback server that records every message it receives, in order."""

    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.arrived = asyncio.Event()
        self.pings = 0

    async def handler(self, ws: ServerConnection) -> None:
        async for message in ws:
            self.messages.append(message)
            self.arrived.set()

    async def wait_for(self, count: int) -> None:
        while len(self.messages) < count:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 5)


def _messages() -> list[Frame]:
    out: list[Frame] = []
    for n in EDGE_LENGTHS:
        out.append(("é" * n)[:n] if n < 1000 else "x" * n)  # text, multi-byte UTF-8 included
        out.append(bytes(range(256)) * (n // 256) + bytes(range(n % 256)))  # binary
    return out


async def test_send_nowait_writes_every_message_byte_exact_in_one_socket_write() -> None:
    recorder = _Recorder()
    async with serve(recorder.handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        transport = await open_loopback(f"ws://127.0.0.1:{port}")
        try:
            socket_transport = transport.connection.transport
            writes: list[int] = []
            real_write = socket_transport.write

            def counting_write(data: Any) -> None:
                writes.append(len(data))
                real_write(data)

            socket_transport.write = counting_write  # type: ignore[method-assign]
            sent = _messages()
            assert transport.send_nowait(sent) is True
            assert len(writes) == 1  # every message in one write
            await transport.send("after")  # websockets' own send still agrees with our framing
            await recorder.wait_for(len(sent) + 1)
        finally:
            await transport.close()
    assert recorder.messages == [*sent, "after"]


async def test_send_nowait_declines_when_not_open_and_send_raises_closed() -> None:
    recorder = _Recorder()
    async with serve(recorder.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        transport = await open_loopback(f"ws://127.0.0.1:{port}")
        await transport.close()
        assert transport.send_nowait(["late"]) is False
        with pytest.raises(TransportClosed):
            await transport.send("late")
    assert recorder.messages == []


async def test_send_nowait_declines_while_writing_is_paused() -> None:
    recorder = _Recorder()
    async with serve(recorder.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        transport = await open_loopback(f"ws://127.0.0.1:{port}")
        try:
            transport.connection.pause_writing()  # as asyncio does above the high-water mark
            assert transport.send_nowait(["held"]) is False
            transport.connection.resume_writing()
            assert transport.send_nowait(["now"]) is True
            await recorder.wait_for(1)
        finally:
            await transport.close()
    assert recorder.messages == ["now"]


async def test_keepalive_pings_are_answered_between_coalesced_writes() -> None:
    recorder = _Recorder()
    async with serve(recorder.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        transport = await open_loopback(f"ws://127.0.0.1:{port}", ping_interval_s=0.01, ping_timeout_s=5.0)
        try:
            connection = transport.connection
            sent: list[Frame] = []
            for n in range(40):
                batch: list[Frame] = [f"m{n}-{i}" * 50 for i in range(3)]
                assert transport.send_nowait(batch) is True
                sent += batch
                pong = await connection.ping()  # a ping between our writes, answered
                await asyncio.wait_for(pong, 5)
                await asyncio.sleep(0.002)
            await recorder.wait_for(len(sent))
            assert connection.latency > 0  # the keepalive task's (or our) pings got pongs
            assert connection.keepalive_task is not None and not connection.keepalive_task.done()
        finally:
            await transport.close()
    assert recorder.messages == sent


# ------------------------------------------------------------------ the writer, fake transports
class _FakeTransport:
    """Records what was written; ``batch_ok`` False declines the fast path (flow control)."""

    def __init__(self) -> None:
        self.batches: list[list[Frame]] = []
        self.sent: list[Frame] = []
        self.batch_ok = True
        self.batch_error: Exception | None = None
        self.send_gate = asyncio.Event()
        self.send_gate.set()
        self.fail_send_at: int | None = None  # raise TransportClosed on this send (0-based)
        self.aborted = False

    def send_nowait(self, frames: Sequence[Frame], /) -> bool:
        if self.batch_error is not None:
            raise self.batch_error
        if not self.batch_ok:
            return False
        self.batches.append(list(frames))
        return True

    async def send(self, frame: Frame, /) -> None:
        await self.send_gate.wait()
        if self.fail_send_at is not None and len(self.sent) == self.fail_send_at:
            raise TransportClosed(CloseInfo(code=1006))
        self.sent.append(frame)

    async def receive(self) -> Frame:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass

    def abort(self) -> None:
        self.aborted = True

    def close_info(self) -> CloseInfo:
        return CloseInfo(code=1006)


class _NoBatchTransport(_FakeTransport):
    send_nowait = None  # type: ignore[assignment]


def _audio(n: int, *, replay: bool = False) -> OutboundAudio:
    return OutboundAudio(f"audio-{n}", bytes([n]) * 960, replay=replay)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _writer(transport: Transport, queue: OutboundQueue, ledger: AudioLedger) -> OutboundWriter:
    return OutboundWriter(transport, queue, ledger=ledger, stats={"messages_sent": 0}, name="test")


async def test_fake_transport_shapes() -> None:
    assert isinstance(_FakeTransport(), BatchTransport)
    assert not isinstance(_NoBatchTransport(), BatchTransport)
    assert isinstance(_NoBatchTransport(), Transport)


async def test_frames_ready_in_one_iteration_go_out_in_one_batch_in_order() -> None:
    transport, queue, ledger = _FakeTransport(), OutboundQueue(64), AudioLedger()
    writer = _writer(transport, queue, ledger)
    queue.put("config")
    queue.put_audio(_audio(1))
    barrier = queue.put_barrier()
    queue.put_audio(_audio(2, replay=True))
    queue.put("commit")
    await _settle()
    assert transport.batches == [["config", "audio-1", "audio-2", "commit"]]
    assert barrier.done() and not barrier.cancelled()
    assert (ledger.sent_bytes, ledger.replayed_bytes, queue.queued_audio, len(queue)) == (960, 960, 0, 0)
    queue.put_audio(_audio(3))  # a later put: its own write, in the next loop iteration
    await _settle()
    assert transport.batches[1:] == [["audio-3"]]
    await asyncio.gather(writer.stop(), return_exceptions=True)


async def test_flow_control_falls_back_to_awaited_sends_and_the_queue_bound_holds() -> None:
    transport, queue, ledger = _FakeTransport(), OutboundQueue(4), AudioLedger()
    writer = _writer(transport, queue, ledger)
    transport.batch_ok = False  # paused writing
    transport.send_gate.clear()  # the peer does not read
    for n in range(6):
        queue.put_audio(_audio(n))
    await _settle()
    assert queue.full  # the senders see it (send_audio raises LimitExceeded, _control waits)
    assert queue.writing is not None and ledger.sent_bytes == 0
    assert queue.queued_audio == 6 * 960  # in the queue or being written: pending
    transport.batch_ok = True
    transport.send_gate.set()
    await _settle()
    assert transport.sent == [f"audio-{n}" for n in range(6)]
    assert (ledger.sent_bytes, queue.queued_audio, len(queue)) == (6 * 960, 0, 0)
    assert queue.space.is_set()
    queue.put_audio(_audio(6))  # drained: back to the fast path
    await _settle()
    assert transport.batches == [["audio-6"]]
    await asyncio.gather(writer.stop(), return_exceptions=True)


async def test_failed_batch_write_leaves_every_item_pending_in_order() -> None:
    transport, queue, ledger = _FakeTransport(), OutboundQueue(64), AudioLedger()
    writer = _writer(transport, queue, ledger)
    transport.batch_error = OSError("broken pipe")
    queue.put_audio(_audio(1))
    barrier = queue.put_barrier()
    queue.put("frame")
    queue.put_audio(_audio(2, replay=True))
    await _settle()
    assert transport.aborted  # the reader sees the loss and reconnects
    assert (ledger.sent_bytes, ledger.replayed_bytes) == (0, 0)
    assert queue.queued_audio == 2 * 960
    leftovers = queue.take_leftovers()
    assert [item.text for item in leftovers] == ["audio-1", "audio-2"]
    assert barrier.cancelled()
    assert queue.queued_audio == 0
    queue.put("after the failure")  # nothing more is written on a failed connection
    await _settle()
    assert transport.batches == [] and transport.sent == []
    await asyncio.gather(writer.stop(), return_exceptions=True)


async def test_send_failing_mid_stream_counts_only_what_was_written() -> None:
    transport, queue, ledger = _NoBatchTransport(), OutboundQueue(64), AudioLedger()
    writer = _writer(transport, queue, ledger)
    transport.fail_send_at = 2
    for n in range(5):
        queue.put_audio(_audio(n))
    await _settle()
    assert transport.sent == ["audio-0", "audio-1"]
    assert ledger.sent_bytes == 2 * 960
    leftovers = queue.take_leftovers()
    assert [item.text for item in leftovers] == ["audio-2", "audio-3", "audio-4"]
    assert ledger.sent_bytes + sum(item.nbytes for item in leftovers) == 5 * 960
    assert queue.queued_audio == 0
    await asyncio.gather(writer.stop(), return_exceptions=True)


async def test_stop_writes_nothing_more_and_ends_the_task() -> None:
    transport, queue, ledger = _FakeTransport(), OutboundQueue(64), AudioLedger()
    writer = _writer(transport, queue, ledger)
    queue.put_audio(_audio(1))
    task = writer.stop()  # before the scheduled callback runs
    await asyncio.gather(task, return_exceptions=True)
    await _settle()
    assert task.done() and transport.batches == [] and ledger.sent_bytes == 0
    assert [item.text for item in queue.take_leftovers()] == ["audio-1"]


class _FrozenLoopTime:
    """The writer's burst clock and the running loop's, stopped (``advance`` moves them): the
    burst gap without timing."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        loop = asyncio.get_running_loop()
        self.now = loop.time()
        monkeypatch.setattr(loop, "time", lambda: self.now)
        monkeypatch.setattr(runtime_module, "_burst_clock", lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def test_write_now_writes_what_is_queued_in_the_callers_step(monkeypatch: pytest.MonkeyPatch) -> None:
    _FrozenLoopTime(monkeypatch)
    transport, queue, ledger = _FakeTransport(), OutboundQueue(64), AudioLedger()
    writer = _writer(transport, queue, ledger)
    queue.put_audio(_audio(1), wake=False)
    queue.put_audio(_audio(2), wake=False)
    writer.write_now()
    assert transport.batches == [["audio-1", "audio-2"]]  # before any loop iteration
    assert (ledger.sent_bytes, queue.queued_audio, len(queue)) == (2 * 960, 0, 0)
    await _settle()
    assert transport.batches == [["audio-1", "audio-2"]]
    await asyncio.gather(writer.stop(), return_exceptions=True)


async def test_write_now_takes_what_an_earlier_wake_scheduled_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    _FrozenLoopTime(monkeypatch)
    transport, queue, ledger = _FakeTransport(), OutboundQueue(64), AudioLedger()
    writer = _writer(transport, queue, ledger)
    queue.put("config")  # woke the writer: a write is scheduled for the next iteration
    queue.put_audio(_audio(1), wake=False)
    writer.write_now()
    assert transport.batches == [["config", "audio-1"]]  # both, in order, before any iteration
    await _settle()  # the scheduled write finds nothing to write
    assert transport.batches == [["config", "audio-1"]] and ledger.sent_bytes == 960
    await asyncio.gather(writer.stop(), return_exceptions=True)


async def test_frames_closer_than_the_burst_gap_share_the_next_write(monkeypatch: pytest.MonkeyPatch) -> None:
    from voiceengine.providers.runtime import _BURST_GAP_S

    clock = _FrozenLoopTime(monkeypatch)
    transport, queue, ledger = _FakeTransport(), OutboundQueue(64), AudioLedger()
    writer = _writer(transport, queue, ledger)
    for n in range(4):  # an app pushing a buffer as fast as it can
        queue.put_audio(_audio(n), wake=False)
        writer.write_now()
        clock.advance(_BURST_GAP_S / 10)
    assert transport.batches == [["audio-0"]]  # the first one at once
    await _settle()
    assert transport.batches == [["audio-0"], ["audio-1", "audio-2", "audio-3"]]  # the rest together
    clock.advance(_BURST_GAP_S)  # a live frame: written at once again
    queue.put_audio(_audio(4), wake=False)
    writer.write_now()
    assert transport.batches[-1] == ["audio-4"]
    assert (ledger.sent_bytes, queue.queued_audio) == (5 * 960, 0)
    await asyncio.gather(writer.stop(), return_exceptions=True)


async def test_write_now_leaves_flow_control_to_the_writers_task(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _FrozenLoopTime(monkeypatch)
    transport, queue, ledger = _FakeTransport(), OutboundQueue(64), AudioLedger()
    writer = _writer(transport, queue, ledger)
    transport.batch_ok = False  # paused writing: the fast path declines
    queue.put_audio(_audio(1), wake=False)
    writer.write_now()
    assert transport.batches == [] and queue.queued_audio == 960  # declined: still pending, in place
    await _settle()
    assert transport.sent == ["audio-1"] and ledger.sent_bytes == 960  # the task's awaited send took it
    transport.batch_ok = True
    clock.advance(1.0)
    queue.put_audio(_audio(2), wake=False)
    writer.write_now()  # the queue drained: the fast path again
    assert transport.batches == [["audio-2"]]
    await asyncio.gather(writer.stop(), return_exceptions=True)


async def test_write_now_after_stop_writes_nothing() -> None:
    transport, queue, ledger = _FakeTransport(), OutboundQueue(64), AudioLedger()
    writer = _writer(transport, queue, ledger)
    await asyncio.gather(writer.stop(), return_exceptions=True)
    queue.put_audio(_audio(1), wake=False)
    writer.write_now()
    assert transport.batches == [] and [item.text for item in queue.take_leftovers()] == ["audio-1"]


# ------------------------------------------------------------------ write_audio_now: the live frame
async def test_a_live_frame_is_written_at_once_without_the_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _FrozenLoopTime(monkeypatch)
    transport, queue, ledger = _FakeTransport(), OutboundQueue(64), AudioLedger()
    stats = {"messages_sent": 0}
    writer = OutboundWriter(transport, queue, ledger=ledger, stats=stats, name="test")
    for n in range(3):
        assert writer.write_audio_now(f"audio-{n}", 960) is True
        clock.advance(0.02)
    assert transport.batches == [["audio-0"], ["audio-1"], ["audio-2"]]
    assert (ledger.sent_bytes, stats["messages_sent"], queue.queued_audio, len(queue)) == (3 * 960, 3, 0, 0)
    await asyncio.gather(writer.stop(), return_exceptions=True)


async def test_a_live_frame_is_not_written_past_what_is_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    _FrozenLoopTime(monkeypatch)
    transport, queue, ledger = _FakeTransport(), OutboundQueue(64), AudioLedger()
    writer = _writer(transport, queue, ledger)
    queue.put("config")
    assert writer.write_audio_now("audio-1", 960) is False  # the caller queues it behind
    assert transport.batches == [] and ledger.sent_bytes == 0
    await asyncio.gather(writer.stop(), return_exceptions=True)


async def test_a_frame_right_after_a_write_is_a_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    from voiceengine.providers.runtime import _BURST_GAP_S

    clock = _FrozenLoopTime(monkeypatch)
    transport, queue, ledger = _FakeTransport(), OutboundQueue(64), AudioLedger()
    writer = _writer(transport, queue, ledger)
    assert writer.write_audio_now("audio-0", 960) is True
    clock.advance(_BURST_GAP_S / 10)
    assert writer.write_audio_now("audio-1", 960) is False  # queued by the caller: the next write
    clock.advance(_BURST_GAP_S)
    assert writer.write_audio_now("audio-2", 960) is True
    assert transport.batches == [["audio-0"], ["audio-2"]] and ledger.sent_bytes == 2 * 960
    await asyncio.gather(writer.stop(), return_exceptions=True)


async def test_a_declined_live_frame_hands_over_to_the_writers_task(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _FrozenLoopTime(monkeypatch)
    transport, queue, ledger = _FakeTransport(), OutboundQueue(64), AudioLedger()
    writer = _writer(transport, queue, ledger)
    transport.batch_ok = False  # flow control
    assert writer.write_audio_now("audio-1", 960) is False
    queue.put_audio(_audio(1), wake=False)  # what the caller does with it
    writer.write_now()
    assert transport.batches == [] and ledger.sent_bytes == 0
    await _settle()
    assert transport.sent == ["audio-1"] and ledger.sent_bytes == 960  # the task's awaited send
    transport.batch_ok = True
    clock.advance(1.0)
    assert writer.write_audio_now("audio-2", 960) is True  # drained: at once again
    assert transport.batches == [["audio-2"]] and ledger.sent_bytes == 2 * 960
    await asyncio.gather(writer.stop(), return_exceptions=True)


async def test_a_live_frame_whose_write_fails_is_left_to_the_caller() -> None:
    transport, queue, ledger = _FakeTransport(), OutboundQueue(64), AudioLedger()
    writer = _writer(transport, queue, ledger)
    transport.batch_error = OSError("broken pipe")
    assert writer.write_audio_now("audio-1", 960) is False
    assert transport.aborted and ledger.sent_bytes == 0  # the reader sees the loss and reconnects
    queue.put_audio(_audio(1), wake=False)  # the caller queues it: the teardown finds it
    writer.write_now()
    assert [item.text for item in queue.take_leftovers()] == ["audio-1"]
    assert writer.write_audio_now("audio-2", 960) is False  # a failed writer writes nothing more
    await asyncio.gather(writer.stop(), return_exceptions=True)
