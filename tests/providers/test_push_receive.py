"""The inbound fast path: the WebSocket transport hands each message to the runtime from its
read callback (``push_to``), and gives back to ``receive()`` whatever it does not push.

Wire checks go through a loopback websockets server that sends exactly what a test scripts
(fragmented messages, invalid UTF-8, closes), so the client parses real frames.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection, serve

from voiceengine.providers.interfaces import Frame, PushTransport, TransportClosed
from voiceengine.providers.websocket import WebSocketTransport, open_transport

WAIT_S = 5.0


@dataclass
class _Settings:
    max_size_bytes: int = 2**20
    ping_interval_s: float | None = None
    ping_timeout_s: float | None = None
    open_timeout_s: float = 5.0
    close_timeout_s: float = 1.0
    is_loopback: bool = True


class _Script:
    """A loopback server running ``script(ws)`` on each connection; ``go`` releases it."""

    def __init__(self, script: Callable[[ServerConnection, asyncio.Event], Awaitable[None]]) -> None:
        self.script = script
        self.go = asyncio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        await self.script(ws, self.go)
        await ws.wait_closed()


class _Sink:
    def __init__(self) -> None:
        self.messages: list[Frame] = []
        self.arrived = asyncio.Event()

    def __call__(self, frame: Frame) -> None:
        self.messages.append(frame)
        self.arrived.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT_S):
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()


async def _with_transport(script: Callable[[ServerConnection, asyncio.Event], Awaitable[None]],
                          body: Callable[[WebSocketTransport, _Script], Awaitable[None]]) -> None:
    server_script = _Script(script)
    async with serve(server_script.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        transport = await open_transport(f"ws://127.0.0.1:{port}", [], _Settings(),
                                         wire_logger_name="voiceengine.tests.push")
        try:
            assert isinstance(transport, PushTransport)
            await body(transport, server_script)
        finally:
            await transport.close()


async def test_whole_messages_are_pushed_in_order_and_a_fragmented_one_goes_to_receive() -> None:
    async def script(ws: ServerConnection, go: asyncio.Event) -> None:
        await go.wait()
        await ws.send("first")
        await ws.send(b"\x00binary\xff")
        await ws.send(["frag", "mented"])  # one text message in three frames
        await ws.send("after")

    async def body(transport: WebSocketTransport, server: _Script) -> None:
        sink = _Sink()
        ended = transport.push_to(sink)
        assert ended is not None
        server.go.set()
        async with asyncio.timeout(WAIT_S):
            await ended  # the fragmented message stopped pushing
        assert sink.messages == ["first", b"\x00binary\xff"]
        assert await transport.receive() == "fragmented"
        # "after" may already be queued behind it: then receive() takes it too, in order
        again = transport.push_to(sink)
        if again is None:
            assert await transport.receive() == "after"
            again = transport.push_to(sink)
        else:
            await sink.wait_for(3)
            assert sink.messages[2] == "after"
        assert again is not None and not again.done()

    await _with_transport(script, body)


async def test_messages_queued_before_pushing_are_received_first() -> None:
    async def script(ws: ServerConnection, go: asyncio.Event) -> None:
        await ws.send("early")
        await go.wait()
        await ws.send("late")

    async def body(transport: WebSocketTransport, server: _Script) -> None:
        sink = _Sink()
        async with asyncio.timeout(WAIT_S):
            while not len(transport.connection.recv_messages.frames):
                await asyncio.sleep(0.005)  # "early" is queued for receive()
        assert transport.push_to(sink) is None  # order: receive() must take it first
        assert await transport.receive() == "early"
        assert transport.push_to(sink) is not None
        server.go.set()
        await sink.wait_for(1)
        assert sink.messages == ["late"]

    await _with_transport(script, body)


async def test_invalid_utf8_stops_pushing_and_receive_fails_the_connection_with_1007() -> None:
    async def script(ws: ServerConnection, go: asyncio.Event) -> None:
        await go.wait()
        await ws.send("fine")
        await ws.send(b"\xff\xfe not utf-8", text=True)
        await ws.send("never delivered")

    async def body(transport: WebSocketTransport, server: _Script) -> None:
        sink = _Sink()
        ended = transport.push_to(sink)
        assert ended is not None
        server.go.set()
        async with asyncio.timeout(WAIT_S):
            await ended
        assert sink.messages == ["fine"]
        with pytest.raises(TransportClosed) as caught:
            await transport.receive()
        assert caught.value.info.code == 1007
        assert caught.value.info.local
        assert transport.push_to(sink) is None  # closed: receive() reports it
        assert sink.messages == ["fine"]

    await _with_transport(script, body)


async def test_the_close_ends_pushing_and_receive_reports_it() -> None:
    async def script(ws: ServerConnection, go: asyncio.Event) -> None:
        await go.wait()
        await ws.send("last words")
        await ws.close(1011, "server hiccup")

    async def body(transport: WebSocketTransport, server: _Script) -> None:
        sink = _Sink()
        ended = transport.push_to(sink)
        assert ended is not None
        server.go.set()
        async with asyncio.timeout(WAIT_S):
            await ended
        assert sink.messages == ["last words"]
        with pytest.raises(TransportClosed) as caught:
            await transport.receive()
        assert (caught.value.info.code, caught.value.info.reason) == (1011, "server hiccup")
        assert transport.push_to(sink) is None

    await _with_transport(script, body)


async def test_stop_push_leaves_later_messages_to_receive() -> None:
    async def script(ws: ServerConnection, go: asyncio.Event) -> None:
        await go.wait()
        await ws.send("after the stop")

    async def body(transport: WebSocketTransport, server: _Script) -> None:
        sink = _Sink()
        ended = transport.push_to(sink)
        assert ended is not None
        transport.stop_push()
        assert ended.done()
        transport.stop_push()  # idempotent
        server.go.set()
        async with asyncio.timeout(WAIT_S):
            assert await transport.receive() == "after the stop"
        assert sink.messages == []

    await _with_transport(script, body)
