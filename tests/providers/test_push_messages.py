"""The inbound walk over a read's frames, compiled (``voiceengine._audio.wsframe.push_messages``):
which frames it hands to the sink, where it stops, and what it leaves to the caller.

The transport-level behaviour (splits of the stream, fragments, refusals, closes) is in
``test_push_receive.py``, through a real server; here the function itself, frame by frame.
"""

from __future__ import annotations

from typing import Callable

import pytest

from voiceengine._audio.wsframe import push_messages

MAX = 1 << 20


def server_frame(payload: bytes, *, opcode: int = 0x1, fin: bool = True, rsv: int = 0, masked: bool = False,
                 width: int | None = None) -> bytes:
    """One server frame; ``width`` forces the length encoding (0: 7-bit, 2: 16-bit, 8: 64-bit)."""
    n = len(payload)
    if width is None:
        width = 0 if n < 126 else 2 if n < 65536 else 8
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    mask_bit = 0x80 if masked else 0
    if width == 0:
        head += bytes([mask_bit | n])
    elif width == 2:
        head += bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + n.to_bytes(8, "big")
    if masked:
        head += b"\0\0\0\0"  # a zero key: the payload as it is
    return head + payload


class Conn:
    def __init__(self, stop_after: int | None = None) -> None:
        self.messages: list[str | bytes] = []
        self._stop_after = stop_after
        self.sink: Callable[[str | bytes], None] | None = self._take

    def _take(self, message: str | bytes) -> None:
        self.messages.append(message)
        if self._stop_after is not None and len(self.messages) >= self._stop_after:
            self.sink = None  # a sink that ends pushing from its own call


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_text_and_binary_messages_of_every_length_encoding_reach_the_sink_in_order(kind: type) -> None:
    texts = ["a", "é" * 100, "x" * 125, "y" * 126, "z" * 65535, "w" * 65536]
    stream = b"".join(server_frame(t.encode()) for t in texts) + server_frame(b"\x00\xff", opcode=0x2)
    stream += server_frame(b"short", width=8)  # a 64-bit length for a small payload is legal
    conn = Conn()
    pos = push_messages(kind(stream), 0, MAX, conn)
    assert pos == len(stream)
    assert conn.messages == [*texts, b"\x00\xff", "short"]
    assert [type(m) for m in conn.messages[-2:]] == [bytes, str]


def test_it_starts_at_pos_and_an_empty_message_is_a_message() -> None:
    stream = b"junk" + server_frame(b"") + server_frame(b"{}")
    conn = Conn()
    assert push_messages(stream, 4, MAX, conn) == len(stream)
    assert conn.messages == ["", "{}"]


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 130])
def test_an_incomplete_frame_is_left_where_it_starts(cut: int) -> None:
    whole = server_frame(b"k" * 200)
    first = server_frame(b"first")
    conn = Conn()
    assert push_messages(first + whole[:cut], 0, MAX, conn) == len(first)
    assert conn.messages == ["first"]


@pytest.mark.parametrize("frame", [
    server_frame(b"masked", masked=True),
    server_frame(b"rsv1", rsv=0x40),
    server_frame(b"rsv3", rsv=0x10),
    server_frame(b"fragment", fin=False),
    server_frame(b"continuation", opcode=0x0),
    server_frame(b"ping", opcode=0x9),
    server_frame(b"close", opcode=0x8),
    server_frame(b"\xff\xfe not utf-8"),
    server_frame(b"o" * 101),  # over max_size below
    bytes([0x81, 127]) + (1 << 63).to_bytes(8, "big"),  # a length no buffer could hold
], ids=["masked", "rsv1", "rsv3", "not-fin", "continuation", "ping", "close", "bad-utf8", "oversize", "2^63"])
def test_a_frame_the_caller_must_judge_stops_the_walk_before_it(frame: bytes) -> None:
    before, after = server_frame(b"before"), server_frame(b"after")
    stream = before + frame + after
    conn = Conn()
    assert push_messages(stream, 0, 100, conn) == len(before)
    assert conn.messages == ["before"]


def test_a_message_at_exactly_max_size_is_taken() -> None:
    conn = Conn()
    stream = server_frame(b"m" * 100)
    assert push_messages(stream, 0, 100, conn) == len(stream)


def test_the_walk_stops_when_the_sink_goes_away_even_from_its_own_call() -> None:
    stream = b"".join(server_frame(f"m{i}".encode()) for i in range(4))
    conn = Conn(stop_after=2)
    pos = push_messages(stream, 0, MAX, conn)
    assert conn.messages == ["m0", "m1"]
    assert stream[pos:] == server_frame(b"m2") + server_frame(b"m3")  # left for the caller, in order
    conn.sink = None
    assert push_messages(stream, pos, MAX, conn) == pos


def test_an_error_from_the_sink_propagates_and_the_buffer_is_released() -> None:
    data = bytearray(server_frame(b"boom"))

    class Failing:
        def sink(self, message: str | bytes) -> None:
            raise RuntimeError("sink failed")

    with pytest.raises(RuntimeError, match="sink failed"):
        push_messages(data, 0, MAX, Failing())
    data += b"x"  # raises BufferError if the walk still held an export of the buffer


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="pos"):
        push_messages(b"", -1, MAX, Conn())
    with pytest.raises(TypeError):
        push_messages("not bytes", 0, MAX, Conn())  # type: ignore[arg-type]
    assert push_messages(b"\x81", 0, MAX, Conn()) == 0  # one byte is not a header yet
    assert push_messages(b"", 5, MAX, Conn()) == 5


def test_end_bounds_the_walk_as_if_the_buffer_ended_there() -> None:
    first, second = server_frame(b"one"), server_frame(b"two")
    buffer = bytearray(first + second + b"\0" * 64)  # a read buffer: more room than data
    conn = Conn()
    assert push_messages(buffer, 0, MAX, conn, len(first) + 2) == len(first)  # the second frame cut short
    assert conn.messages == ["one"]
    assert push_messages(buffer, len(first), MAX, conn, len(first + second)) == len(first + second)
    assert conn.messages == ["one", "two"]
    with pytest.raises(ValueError, match="past the buffer"):
        push_messages(buffer, 0, MAX, conn, len(buffer) + 1)
