"""The outbound fast path's compiled framing (``voiceengine._audio.wsframe.ClientFramer``):
its frames parsed by websockets' own parser as a server parses them, every header form,
text with multi-byte UTF-8, keys drawn a block at a time and each used once."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest
from websockets.frames import Frame, Opcode

from voiceengine._audio.wsframe import ClientFramer

from tests.providers.websocket_loopback import EDGE_LENGTHS

KEY_BLOCK = 1024


def _parse(stream: bytes) -> list[tuple[Opcode, bytes, bytes]]:
    """(opcode, unmasked payload, mask key) of each frame, read the way a server reads them."""
    pos = 0
    out: list[tuple[Opcode, bytes, bytes]] = []

    def read_exact(n: int) -> Generator[None, None, bytes]:
        nonlocal pos
        if pos + n > len(stream):
            raise AssertionError("the stream ends inside a frame")
        chunk = stream[pos:pos + n]
        pos += n
        return chunk
        yield  # a generator, as websockets' parser expects

    while pos < len(stream):
        header_at = pos
        parser = Frame.parse(read_exact, mask=True, max_size=None, extensions=None)
        try:
            next(parser)
        except StopIteration as done:
            frame: Frame = done.value
        else:  # pragma: no cover - read_exact never suspends
            raise AssertionError("the parser wanted more data")
        assert frame.fin and not (frame.rsv1 or frame.rsv2 or frame.rsv3)
        second = stream[header_at + 1]
        header = 2 + (2 if second & 0x7F == 126 else 8 if second & 0x7F == 127 else 0)
        out.append((frame.opcode, frame.data, stream[header_at + header:header_at + header + 4]))
    return out


def _messages() -> list[str | bytes]:
    messages: list[str | bytes] = []
    for n in EDGE_LENGTHS:
        messages.append("x" * n)  # ASCII: read from the str's storage
        messages.append(("é" * n)[: max(0, n // 2)])  # multi-byte UTF-8
        messages.append(bytes(i % 251 for i in range(n)))
        messages.append(bytes(range(n % 13)))  # lengths that end inside an 8-byte word
    return messages


def test_every_message_comes_out_as_one_masked_fin_frame_a_server_can_read() -> None:
    messages = _messages()
    frames = _parse(ClientFramer().frame(messages))
    assert len(frames) == len(messages)
    for message, (opcode, payload, _) in zip(messages, frames):
        if isinstance(message, str):
            assert opcode is Opcode.TEXT and payload.decode() == message
        else:
            assert opcode is Opcode.BINARY and payload == message


@pytest.mark.parametrize("container", [list, tuple])
def test_one_write_of_several_messages_keeps_their_order(container: type) -> None:
    messages = [f"message {i}" for i in range(40)]
    frames = _parse(ClientFramer().frame(container(messages)))
    assert [payload.decode() for _, payload, _ in frames] == messages


def test_keys_come_from_urandom_a_block_at_a_time_and_each_is_used_once() -> None:
    blocks: list[bytes] = []

    def recording_urandom(n: int) -> bytes:
        blocks.append(os.urandom(n))
        return blocks[-1]

    framer = ClientFramer(recording_urandom)
    keys: list[bytes] = []
    for size in (1, 3, 255, 1, 300):  # 560 frames: three blocks of 256 keys
        keys += [key for _, _, key in _parse(framer.frame([b"a"] * size))]
    assert len(blocks) == 3 and all(len(block) == KEY_BLOCK for block in blocks)
    pool = b"".join(blocks)
    assert keys == [pool[i:i + 4] for i in range(0, 4 * len(keys), 4)]  # in order, none twice


def test_an_empty_write_is_empty_and_takes_no_key() -> None:
    calls: list[int] = []
    framer = ClientFramer(lambda n: calls.append(n) or os.urandom(n))
    assert framer.frame([]) == b""
    assert calls == []


@pytest.mark.parametrize("message", [bytearray(b"ab"), memoryview(b"ab"), 3, None])
def test_anything_but_str_or_bytes_is_a_type_error_and_nothing_is_framed(message: object) -> None:
    with pytest.raises(TypeError, match="str or bytes"):
        ClientFramer().frame(["fine", message])


def test_a_str_that_is_not_encodable_is_refused() -> None:
    with pytest.raises(UnicodeEncodeError):
        ClientFramer().frame(["lone surrogate \ud800"])


def test_a_urandom_that_returns_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="expected 1024"):
        ClientFramer(lambda n: b"short").frame(["x"])
