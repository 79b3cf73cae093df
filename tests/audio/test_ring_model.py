"""RingBuffer against a collections.deque model over random operation sequences."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceengine._audio.ring import RingBuffer
from voiceengine.exceptions import LimitExceeded


class Model:
    """Executable specification of RingBuffer's documented semantics."""

    def __init__(self, cap: int, overflow: str, prebuffer: int) -> None:
        self.q: deque[int] = deque()
        self.cap, self.overflow, self.prebuffer = cap, overflow, prebuffer
        self.prebuffering = prebuffer > 0
        self.written = self.read_ = self.dropped = self.overruns = self.underruns = 0
        self.last_real = 0

    def write(self, data: bytes) -> int:
        n, free = len(data), self.cap - len(self.q)
        if n <= free:
            self.q.extend(data)
            self.written += n
            return n
        self.overruns += 1
        if self.overflow == "raise":
            raise LimitExceeded("full")
        self.written += n
        if self.overflow == "drop_newest":
            self.q.extend(data[:free])
            self.dropped += n - free
            return free
        if n >= self.cap:
            self.dropped += len(self.q) + n - self.cap
            self.q = deque(data[n - self.cap :])
            return self.cap
        for _ in range(n - free):
            self.q.popleft()
        self.dropped += n - free
        self.q.extend(data)
        return n

    def read(self, n: int, pad: bool) -> bytes:
        self.last_real = 0
        if n == 0:
            return b""
        k = 0
        if self.prebuffering and len(self.q) >= self.prebuffer:
            self.prebuffering = False
        if not self.prebuffering:
            k = min(n, len(self.q))
        out = bytes(self.q.popleft() for _ in range(k))
        self.read_ += k
        self.last_real = k
        if pad and k < n:
            if not self.prebuffering:
                self.underruns += 1
                self.prebuffering = self.prebuffer > 0
            out += bytes(n - k)
        return out

    def peek(self, n: int) -> bytes:
        return bytes(list(self.q)[:n])

    def clear(self) -> int:
        n = len(self.q)
        self.q.clear()
        self.dropped += n
        self.prebuffering = self.prebuffer > 0
        return n


even = st.integers(0, 40).map(lambda k: 2 * k)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), even),
        st.tuples(st.just("read"), even, st.booleans()),
        st.tuples(st.just("read_into"), even, st.booleans()),
        st.tuples(st.just("peek"), even),
        st.tuples(st.just("clear")),
    ),
    max_size=60,
)


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest", "raise"])
@settings(max_examples=250, deadline=None)
@given(cap=st.integers(1, 32).map(lambda k: 2 * k), pre=st.integers(0, 32), seq=ops)
def test_ring_matches_deque_model(overflow: str, cap: int, pre: int, seq: list[tuple]) -> None:
    pre = min(2 * pre, cap) if pre % 3 == 0 else 0  # prebuffer on in about a third of runs
    ring = RingBuffer(cap, overflow=overflow, prebuffer_bytes=pre)
    model = Model(cap, overflow, pre)
    counter = 0
    for op in seq:
        if op[0] == "write":
            data = bytes((counter + i) % 251 for i in range(op[1]))
            counter += op[1]
            try:
                expected: object = model.write(data)
            except LimitExceeded:
                with pytest.raises(LimitExceeded):
                    ring.write(data)
            else:
                assert ring.write(data) == expected
        elif op[0] == "read":
            assert ring.read(op[1], pad=op[2]) == model.read(op[1], op[2])
        elif op[0] == "read_into":
            out = bytearray(b"\xaa" * op[1])
            got = ring.read_into(out, pad=op[2])
            want = model.read(op[1], op[2])
            assert got == model.last_real
            if op[2]:
                assert bytes(out) == want
            else:
                assert bytes(out[:got]) == want and set(out[got:]) <= {0xAA}
        elif op[0] == "peek":
            assert ring.peek(op[1]) == model.peek(op[1])
        else:
            assert ring.clear() == model.clear()
        assert ring.available == len(model.q) and ring.free == cap - len(model.q)
        assert ring.prebuffering == model.prebuffering
        assert (ring.total_written, ring.total_read, ring.total_dropped) == (model.written, model.read_, model.dropped)
        assert (ring.overruns, ring.underruns) == (model.overruns, model.underruns)
        assert ring.total_written == ring.total_read + ring.total_dropped + ring.available
