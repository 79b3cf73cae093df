"""RingBuffer storage: starts small, grows on demand up to the capacity, shrinks back when drained."""

from __future__ import annotations

import pytest

from voiceengine._audio.ring import INITIAL_STORAGE, RingBuffer
from voiceengine.exceptions import InvalidState, LimitExceeded


def _pattern(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def test_storage_starts_small_and_is_never_above_capacity() -> None:
    assert RingBuffer(10_000_000).storage_bytes == INITIAL_STORAGE
    assert RingBuffer(100).storage_bytes == 100


@pytest.mark.parametrize("first_read", [0, 2, INITIAL_STORAGE - 2, INITIAL_STORAGE // 2 + 6])
def test_growth_keeps_content_and_order_across_wraparound(first_read: int) -> None:
    r = RingBuffer(1 << 20, overflow="raise")
    expected = bytearray()
    r.write(_pattern(INITIAL_STORAGE, 1))
    expected += _pattern(INITIAL_STORAGE, 1)
    assert r.read(first_read) == bytes(expected[:first_read])
    del expected[:first_read]
    # the next writes wrap the 4 KiB storage, then force it to double several times
    for size, seed in ((first_read + 2, 2), (6000, 3), (30_000, 4), (100_002, 5)):
        data = _pattern(size, seed)
        assert r.write(data) == size
        expected += data
    assert r.storage_bytes > INITIAL_STORAGE
    assert r.available == len(expected)
    assert r.peek(len(expected)) == bytes(expected)
    assert r.read(len(expected)) == bytes(expected)


def test_growth_doubles_and_stops_at_capacity() -> None:
    r = RingBuffer(50_000, overflow="drop_oldest")
    r.write(bytes(INITIAL_STORAGE + 2))
    assert r.storage_bytes == 2 * INITIAL_STORAGE
    r.write(bytes(60_000))  # overflows: storage is the capacity, never more
    assert r.storage_bytes == 50_000 and r.available == 50_000


def test_capacity_limit_raises_the_same_error_and_stores_nothing() -> None:
    r = RingBuffer(20_000, overflow="raise")
    r.write(bytes(12_000))
    with pytest.raises(LimitExceeded) as ei:
        r.write(bytes(10_000))
    assert ei.value.limit == 8_000 and ei.value.size == 10_000
    assert r.available == 12_000 and r.overruns == 1


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest"])
def test_overflow_policies_unchanged_on_grown_storage(overflow: str) -> None:
    r = RingBuffer(10_000, overflow=overflow)
    first, second = _pattern(8_000, 1), _pattern(4_000, 2)
    r.write(first)
    r.write(second)
    kept = (first + second)[-10_000:] if overflow == "drop_oldest" else (first + second)[:10_000]
    assert r.read(20_000) == kept
    assert r.total_dropped == 2_000


def test_shrink_after_drain_gives_storage_back() -> None:
    r = RingBuffer(1 << 22)
    r.write(bytes(300_000))
    grown = r.storage_bytes
    assert grown >= 300_000
    assert r.shrink() == 0 and r.storage_bytes == grown  # nothing unread may be lost
    r.read(300_000)
    assert r.shrink() == grown - INITIAL_STORAGE
    assert r.storage_bytes == INITIAL_STORAGE
    assert r.shrink() == 0


def test_shrink_keeps_unread_bytes_in_order() -> None:
    r = RingBuffer(1 << 20)
    data = _pattern(200_000, 9)
    r.write(data)
    r.read(190_000)  # 10 000 left, wrapped or not: must survive the move
    r.shrink()
    assert r.storage_bytes == 16_384
    assert r.read(20_000) == data[190_000:]
    r.write(_pattern(5_000, 3))  # and the ring keeps working after the move
    assert r.read(5_000) == _pattern(5_000, 3)


def test_clear_then_shrink() -> None:
    r = RingBuffer(1 << 20, prebuffer_bytes=1000)
    r.write(bytes(500_000))
    assert r.clear() == 500_000
    r.shrink()
    assert r.storage_bytes == INITIAL_STORAGE and r.prebuffering


def test_copies_handed_out_stay_valid_across_growth_and_shrink() -> None:
    # the ring exports no view of its storage: what it hands out are copies that
    # storage moves (growth, shrink) cannot touch
    r = RingBuffer(1 << 20)
    with pytest.raises(TypeError):
        memoryview(r)  # type: ignore[arg-type]
    r.write(_pattern(3_000, 1))
    peeked = r.peek(3_000)
    read = r.read(1_000)
    out = bytearray(1_000)
    r.read_into(out)
    r.write(bytes(500_000))  # grows: storage moves
    r.read(600_000)
    r.shrink()  # and moves again
    assert peeked == _pattern(3_000, 1)
    assert read == _pattern(3_000, 1)[:1_000]
    assert bytes(out) == _pattern(3_000, 1)[1_000:2_000]


def test_write_from_a_view_of_the_ring_output_while_growing() -> None:
    # a producer may feed back bytes it read (a loopback): the source is a copy, so the
    # storage move inside that very write cannot invalidate it
    r = RingBuffer(1 << 20)
    r.write(_pattern(4_000, 5))
    back = memoryview(r.peek(4_000))
    assert r.write(back) == 4_000  # 8 000 unread: storage grows during this write
    assert r.read(8_000) == _pattern(4_000, 5) * 2


def test_shrink_on_an_uninitialised_ring_is_a_typed_error() -> None:
    r = RingBuffer.__new__(RingBuffer)
    with pytest.raises(InvalidState):
        r.shrink()
