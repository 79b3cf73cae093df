"""The inbound fast path: the WebSocket transport hands each message to the runtime from its
read callback (``push_to``), and gives back to ``receive()`` whatever it does not push.

Wire checks go through a loopback websockets server that sends exactly what a test scripts
(fragmented messages, invalid UTF-8, closes), so the client parses real frames.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection, serve

from voiceengine.providers.interfaces import Frame, PushTransport, TransportClosed
from voiceengine.providers.websocket import WebSocketTransport

from tests.providers.websocket_loopback import EDGE_LENGTHS, open_loopback, self_signed

WAIT_S = 5.0


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


async def _push_until_stopped(transport: WebSocketTransport, server: _Script) -> _Sink:
    """Push into a fresh sink, release the server's script, wait until pushing stops."""
    sink = _Sink()
    ended = transport.push_to(sink)
    assert ended is not None
    server.go.set()
    async with asyncio.timeout(WAIT_S):
        await ended
    return sink


async def _with_transport(script: Callable[[ServerConnection, asyncio.Event], Awaitable[None]],
                          body: Callable[[WebSocketTransport, _Script], Awaitable[None]]) -> None:
    server_script = _Script(script)
    async with serve(server_script.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        transport = await open_loopback(f"ws://127.0.0.1:{port}")
        try:
            assert isinstance(transport, PushTransport)
            await body(transport, server_script)
        finally:
            server_script.go.set()  # a script still waiting ends, so the server can close
            await transport.close()


async def test_whole_messages_are_pushed_in_order_and_a_fragmented_one_goes_to_receive() -> None:
    async def script(ws: ServerConnection, go: asyncio.Event) -> None:
        await go.wait()
        await ws.send("first")
        await ws.send(b"\x00binary\xff")
        await ws.send(["frag", "mented"])  # one text message in three frames
        await ws.send("after")

    async def body(transport: WebSocketTransport, server: _Script) -> None:
        sink = await _push_until_stopped(transport, server)  # the fragmented message stopped it
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
        sink = await _push_until_stopped(transport, server)
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
        sink = await _push_until_stopped(transport, server)
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


# ------------------------------------------------------------ the read path's own framing
# Server frames are fed straight into the client connection, split at every awkward place,
# as the socket could deliver them; the server stays quiet meanwhile. "read" feeds them as
# asyncio's socket read does (the connection is a buffered protocol: get_buffer, the bytes
# written into the buffer it returned, buffer_updated); "data_received" as a plain protocol.


def _feed(connection: Any, chunk: bytes, how: str = "read") -> None:
    if how == "data_received":
        connection.data_received(chunk)
        return
    buffer = connection.get_buffer(-1)
    assert len(buffer) >= len(chunk)
    buffer[:len(chunk)] = chunk
    connection.buffer_updated(len(chunk))


def _server_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = False) -> bytes:
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        header = bytes((first, mask_bit | n))
    elif n < 65536:
        header = bytes((first, mask_bit | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, mask_bit | 127)) + n.to_bytes(8, "big")
    if mask:
        key = b"\x01\x02\x03\x04"
        return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + payload


def _splits(stream: bytes, pattern: tuple[int, ...]) -> list[bytes]:
    out, pos, i = [], 0, 0
    while pos < len(stream):
        step = pattern[i % len(pattern)]
        out.append(stream[pos:pos + step])
        pos += step
        i += 1
    return out


async def _quiet(ws: ServerConnection, go: asyncio.Event) -> None:
    await go.wait()


def _edge_messages() -> list[Frame]:
    messages: list[Frame] = []
    for n in EDGE_LENGTHS:
        messages.append(("é" * (n // 2) + "x" * (n % 2)))  # multi-byte UTF-8 across every split
        messages.append(bytes(i % 251 for i in range(n)))
    return messages


def _stream_of(messages: list[Frame]) -> bytes:
    return b"".join(_server_frame(0x1, m.encode()) if isinstance(m, str) else _server_frame(0x2, m)
                    for m in messages)


@pytest.mark.parametrize("how", ["read", "data_received"])
@pytest.mark.parametrize("pattern", [(1,), (2, 3), (7, 125, 1), (4096,), (200_000,)],
                         ids=["bytewise", "2-3", "7-125-1", "4k", "200k"])
async def test_pushed_messages_survive_any_split_of_the_stream(pattern: tuple[int, ...], how: str) -> None:
    messages = _edge_messages()
    stream = _stream_of(messages)

    async def body(transport: WebSocketTransport, server: _Script) -> None:
        sink = _Sink()
        ended = transport.push_to(sink)
        assert ended is not None
        connection = transport.connection
        assert connection._framing is True  # the read path frames the stream itself
        for chunk in _splits(stream, pattern):
            _feed(connection, chunk, how)
        assert sink.messages == messages
        assert not ended.done()
        assert connection._framing is True and not connection._pending

    await _with_transport(_quiet, body)


async def test_connections_sharing_the_read_buffer_keep_their_own_streams() -> None:
    """Reads of two connections alternate through the one buffer, each leaving an
    incomplete frame behind: what one left must not be what the other's read wrote."""
    first_messages, second_messages = _edge_messages(), _edge_messages()[::-1]
    first_chunks = _splits(_stream_of(first_messages), (7, 300, 1))
    second_chunks = _splits(_stream_of(second_messages), (300, 5))

    async def body(first: WebSocketTransport, server: _Script) -> None:
        async def second_body(second: WebSocketTransport, _: _Script) -> None:
            assert first.connection.get_buffer(-1) is second.connection.get_buffer(-1)  # one per thread
            sinks = (_Sink(), _Sink())
            assert first.push_to(sinks[0]) is not None and second.push_to(sinks[1]) is not None
            for index in range(max(len(first_chunks), len(second_chunks))):
                if index < len(first_chunks):
                    _feed(first.connection, first_chunks[index])
                if index < len(second_chunks):
                    _feed(second.connection, second_chunks[index])
            assert sinks[0].messages == first_messages and sinks[1].messages == second_messages

        await _with_transport(_quiet, second_body)

    await _with_transport(_quiet, body)


async def test_a_read_while_another_is_being_framed_gets_a_buffer_of_its_own() -> None:
    """A sink that drives another connection's read from inside its callback."""
    inner_stream = _stream_of(["inner é", b"\x01\x02"])

    async def body(outer: WebSocketTransport, server: _Script) -> None:
        async def inner_body(inner: WebSocketTransport, _: _Script) -> None:
            inner_sink = _Sink()
            assert inner.push_to(inner_sink) is not None
            outer_sink = _Sink()
            shared = inner.connection.get_buffer(-1)  # between reads: the thread's buffer

            def outer_push(frame: Frame) -> None:
                outer_sink(frame)
                if len(outer_sink.messages) == 1:
                    buffer = inner.connection.get_buffer(-1)
                    assert buffer is not shared  # it still holds the rest of the outer read
                    buffer[:len(inner_stream)] = inner_stream
                    inner.connection.buffer_updated(len(inner_stream))

            assert outer.push_to(outer_push) is not None
            _feed(outer.connection, _stream_of(["outer one", "outer two"]) + b"\x81")
            _feed(outer.connection, b"\x05three")
            assert outer_sink.messages == ["outer one", "outer two", "three"]
            assert inner_sink.messages == ["inner é", b"\x01\x02"]

        await _with_transport(_quiet, inner_body)

    await _with_transport(_quiet, body)


@pytest.mark.parametrize("pattern", [(1,), (3, 200), (200_000,)], ids=["bytewise", "3-200", "200k"])
async def test_without_a_sink_every_message_waits_for_receive_in_order(pattern: tuple[int, ...]) -> None:
    messages = _edge_messages()
    stream = _stream_of(messages)

    async def body(transport: WebSocketTransport, server: _Script) -> None:
        for chunk in _splits(stream, pattern):
            _feed(transport.connection, chunk)
        async with asyncio.timeout(WAIT_S):
            received = [await transport.receive() for _ in messages]
        assert received == messages

    await _with_transport(_quiet, body)


async def test_a_fragmented_message_with_a_ping_inside_keeps_its_place() -> None:
    stream = b"".join((
        _server_frame(0x1, b"before"),
        _server_frame(0x1, b"frag", fin=False),
        _server_frame(0x9, b"ping!"),  # control frames may come between fragments
        _server_frame(0x0, b"men", fin=False),
        _server_frame(0x0, b"ted"),
        _server_frame(0x2, b"\x00after"),
    ))

    async def body(transport: WebSocketTransport, server: _Script) -> None:
        sink = _Sink()
        ended = transport.push_to(sink)
        assert ended is not None
        for chunk in _splits(stream, (5,)):
            _feed(transport.connection, chunk)
        assert ended.done() and sink.messages == ["before"]
        async with asyncio.timeout(WAIT_S):
            assert await transport.receive() == "fragmented"
            assert await transport.receive() == b"\x00after"  # queued behind it, in order
        assert transport.push_to(sink) is not None  # nothing queued: pushing again

    await _with_transport(_quiet, body)


@pytest.mark.parametrize(("frame", "code"), [
    (_server_frame(0x1, b"masked by a server", mask=True), 1002),
    (_server_frame(0x1, b"reserved bit", rsv=0x40), 1002),
    (_server_frame(0x2, bytes(2**20 + 1)), 1009),
], ids=["masked", "rsv", "too-big"])
async def test_frames_websockets_must_refuse_fail_the_connection_as_it_would(frame: bytes, code: int) -> None:
    async def body(transport: WebSocketTransport, server: _Script) -> None:
        sink = _Sink()
        assert transport.push_to(sink) is not None
        connection = transport.connection
        _feed(connection, _server_frame(0x1, b"fine") + frame[:3])
        for at in range(3, len(frame), 100_000):
            _feed(connection, frame[at:at + 100_000])
        _feed(connection, _server_frame(0x1, b"never"))
        assert sink.messages == ["fine"]
        with pytest.raises(TransportClosed) as caught:
            async with asyncio.timeout(WAIT_S):
                await transport.receive()
        assert caught.value.info.code == code and caught.value.info.local

    await _with_transport(_quiet, body)


async def test_frames_in_the_same_segment_as_the_handshake_response_are_not_lost() -> None:
    """A server that writes its 101 response and its first messages in one write."""
    import base64
    import hashlib

    async def serve_raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        response = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        writer.write(response + _server_frame(0x1, b"hello") + _server_frame(0x1, b"wor"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(_server_frame(0x1, b"ld"))
        await writer.drain()
        try:
            await reader.read()  # until the client closes
        finally:
            writer.close()

    server = await asyncio.start_server(serve_raw, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        transport = await open_loopback(f"ws://127.0.0.1:{port}")
        try:
            got: list[Frame] = []
            sink = _Sink()
            async with asyncio.timeout(WAIT_S):
                while len(got) + len(sink.messages) < 3:
                    if transport.push_to(sink) is None:
                        got.append(await transport.receive())
                    else:
                        await sink.wait_for(3 - len(got))
                        transport.stop_push()
            assert got + sink.messages == ["hello", "wor", "ld"]
        finally:
            await transport.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_messages_over_tls_are_pushed_whole_and_in_order(tmp_path: Path) -> None:
    """wss:// (the real services): asyncio's TLS layer reads into the same buffered protocol."""
    messages = _edge_messages() * 3
    server_context, cert = self_signed(tmp_path)

    async def handler(ws: ServerConnection) -> None:
        for message in messages:
            await ws.send(message)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, ssl=server_context) as server:
        port = server.sockets[0].getsockname()[1]
        transport = await open_loopback(f"wss://127.0.0.1:{port}", tls=ssl.create_default_context(cafile=cert))
        try:
            got: list[Frame] = []
            sink = _Sink()
            async with asyncio.timeout(WAIT_S):
                while len(got) + len(sink.messages) < len(messages):
                    if transport.push_to(sink) is None:
                        got.append(await transport.receive())  # queued before pushing began
                    else:
                        await sink.wait_for(len(messages) - len(got))
            assert got + sink.messages == messages
            assert sink.messages  # the fast path took part
        finally:
            await transport.close()
