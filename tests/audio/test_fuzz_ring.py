"""Fuzz voiceengine._audio.ring: 10^5 calls each of RingBuffer(), write, read, read_into,
peek and clear, under all three overflow policies, with and without prebuffering.

Oracle: a byte-exact Python model of docs/audio_buffers.md (overflow policies,
prebuffering, underruns, counters). After every call the ring's contents (through the
returned bytes), ``available``, ``free``, ``prebuffering`` and all counters must match the
model, and ``total_written == total_read + total_dropped + available``. Errors: the intake
rules, odd sizes -> AudioFormatError, ``"raise"`` -> LimitExceeded (nothing stored),
read/peek ``n``: non-int -> TypeError, negative/odd -> AudioFormatError, > MAX_CAPACITY ->
ValueError, read_into into a read-only buffer -> TypeError.
"""

from __future__ import annotations

import array
import random
from collections.abc import Callable

import numpy as np
from test_fuzz_corpus import N_CALLS, SEED, Entry, Tally, _released, build_pool

from voiceengine._audio.ring import MAX_CAPACITY, RingBuffer
from voiceengine.exceptions import AudioFormatError, ConfigurationError, InvalidState, LimitExceeded

POLICIES = ("drop_oldest", "drop_newest", "raise")
CAPACITIES = (2, 4, 6, 64, 100, 960, 4096, 65_536, 1 << 17)


class Model:
    def __init__(self, cap: int, policy: str, prebuffer: int) -> None:
        self.ring = RingBuffer(cap, overflow=policy, prebuffer_bytes=prebuffer)
        self.cap, self.policy, self.pre = cap, policy, prebuffer
        self.data = bytearray()
        self.prebuffering = prebuffer > 0
        self.written = self.read_total = self.dropped = self.overruns = self.underruns = 0

    @classmethod
    def random(cls, rng: random.Random) -> Model:
        cap = rng.choice(CAPACITIES)
        pre = 0 if rng.random() < 0.4 else 2 * rng.randrange(0, cap // 2 + 1)
        return cls(cap, rng.choice(POLICIES), pre)

    # ------------------------------------------------------------------ model ops
    def write(self, data: bytes) -> int:
        n, free = len(data), self.cap - len(self.data)
        if n == 0:
            return 0
        if n <= free:
            self.data += data
            self.written += n
            return n
        self.overruns += 1
        if self.policy == "raise":
            raise LimitExceeded("model", limit=free, size=n)
        self.written += n
        if self.policy == "drop_newest":
            self.data += data[:free]
            self.dropped += n - free
            return free
        keep = min(n, self.cap)  # newest bytes of this write that are stored
        gone = max(0, len(self.data) - (self.cap - keep))  # oldest unread bytes pushed out
        self.dropped += gone + (n - keep)
        self.data = self.data[gone:] + data[n - keep:]
        return keep

    def take(self, n: int, pad: bool) -> bytes:
        """Consume like ``_read_c``: the real bytes handed out (the caller pads)."""
        if self.prebuffering:
            if len(self.data) >= self.pre:
                self.prebuffering = False
            else:
                return b""  # still filling; padding now is not an underrun
        k = min(len(self.data), n)
        out = bytes(self.data[:k])
        del self.data[:k]
        self.read_total += k
        if pad and k < n and not self.prebuffering:
            self.underruns += 1
            if self.pre:
                self.prebuffering = True
        return out

    def clear(self) -> int:
        n = len(self.data)
        self.data.clear()
        self.dropped += n
        if self.pre:
            self.prebuffering = True
        return n

    # ------------------------------------------------------------------ invariants
    def agrees(self) -> str | None:
        r = self.ring
        got = (r.available, r.free, r.total_written, r.total_read, r.total_dropped, r.overruns, r.underruns,
               r.prebuffering)
        want = (len(self.data), self.cap - len(self.data), self.written, self.read_total, self.dropped,
                self.overruns, self.underruns, self.prebuffering)
        if got != want:
            return f"state {got} != model {want}"
        if r.total_written != r.total_read + r.total_dropped + r.available:
            return "total_written != total_read + total_dropped + available"
        return None


# read/peek sizes: even, odd, zero, negative, huge, and non-ints
SIZES: tuple[tuple[object, type[Exception] | None], ...] = (
    (0, None), (2, None), (4, None), (64, None), (960, None), (4096, None), (70_000, None), (MAX_CAPACITY, None),
    (1, AudioFormatError), (3, AudioFormatError), (-2, AudioFormatError), (-(2**70), AudioFormatError),
    (MAX_CAPACITY + 2, ValueError), (2**64, ValueError), (2.0, TypeError), (True, TypeError), ("2", TypeError),
    (None, TypeError), (np.int64(2), TypeError),
)
SMALL_SIZES = [s for s in SIZES if s[1] is None and s[0] < 100_000]  # type: ignore[operator]


def _targets(n: int) -> list[tuple[Callable[[], object], type[Exception] | None]]:
    """read_into targets of n bytes (n even): every writable kind, and refused ones."""
    h = n // 2
    return [
        (lambda: bytearray(b"\xa5" * n), None),
        (lambda: memoryview(bytearray(b"\xa5" * n)), None),
        (lambda: np.full(h, -23131, dtype="<i2"), None),
        (lambda: np.full(n, 0xA5, dtype=np.uint8), None),
        (lambda: array.array("h", b"\xa5" * n), None),
        (lambda: np.full((h // 2, 2), -23131, dtype="<i2") if h % 2 == 0 else np.full(h, -23131, dtype="<i2"),
         None),
        (lambda: bytearray(b"\xa5" * (n + 1)), AudioFormatError),
        (lambda: b"\xa5" * n, TypeError),
        (lambda: memoryview(bytearray(n)).toreadonly(), TypeError),
        (lambda: np.zeros(h, ">i2"), AudioFormatError),  # refused by format, even when empty
        (lambda: np.zeros(2 * h + 4, "<i2")[::2], AudioFormatError),
        (lambda: np.zeros(h, "<f4"), TypeError),
        (lambda: None, TypeError),
        (lambda: "ab", TypeError),
        (_released, TypeError),
        (lambda: np.zeros((0, 2), "<i2"), None),
    ]


def _run_schedule(seed: int) -> dict[str, Tally]:
    rng = random.Random(seed)
    pool = build_pool(seed)
    tallies = {op: Tally(f"RingBuffer.{op}", seed) for op in ("write", "read", "read_into", "peek", "clear")}
    schedule = [op for op in tallies for _ in range(N_CALLS)]
    rng.shuffle(schedule)
    m = Model.random(rng)
    for op in schedule:
        t = tallies[op]
        t.calls += 1
        if op == "write":
            _write(m, pool[rng.randrange(len(pool))], t)
        elif op == "read":
            _read(m, rng, t)
        elif op == "read_into":
            _read_into(m, rng, t)
        elif op == "peek":
            _peek(m, rng, t)
        else:
            t.ok += 1
            n = m.ring.clear()
            if n != m.clear():
                t.fail("clear: wrong count")
        problem = m.agrees()
        if problem:
            t.fail(f"after {op} ({m.cap}, {m.policy}, pre {m.pre}): {problem}")
            m = Model.random(rng)  # report once, continue on a fresh ring
        if rng.random() < 0.002:
            m = Model.random(rng)
    return tallies


def _write(m: Model, entry: Entry, t: Tally) -> None:
    expected = entry.pcm_error() or (AudioFormatError if len(entry.data) % 2 else None)
    try:
        got = m.ring.write(entry.obj)
    except Exception as exc:  # noqa: BLE001
        t.error(exc)
        if expected is not None and isinstance(exc, expected):
            return
        if expected is None and isinstance(exc, LimitExceeded):
            try:
                m.write(entry.data)
            except LimitExceeded as ref:
                if (exc.limit, exc.size) != (ref.limit, ref.size):
                    t.fail(f"write: LimitExceeded limit/size {(exc.limit, exc.size)} != {(ref.limit, ref.size)}")
                return
        t.fail(f"write({entry.label} len {len(entry.data)}) [{m.cap} {m.policy}]: raised {exc!r}, expected {expected}")
        return
    t.ok += 1
    if expected is not None:
        t.fail(f"write({entry.label}): returned, expected {expected.__name__}")
        return
    try:
        want = m.write(entry.data)
    except LimitExceeded:
        t.fail(f"write({entry.label}) [{m.cap} raise]: stored instead of LimitExceeded")
        return
    if got != want:
        t.fail(f"write({entry.label}) [{m.cap} {m.policy}]: stored {got}, model {want}")


def _read(m: Model, rng: random.Random, t: Tally) -> None:
    n, expected = SIZES[rng.randrange(len(SIZES))] if rng.random() < 0.4 else rng.choice(SMALL_SIZES)
    pad = rng.random() < 0.5 and (not isinstance(n, int) or n < 100_000)  # no 1 GiB of padding
    try:
        out = m.ring.read(n, pad=pad)
    except Exception as exc:  # noqa: BLE001
        t.error(exc)
        if expected is None or not isinstance(exc, expected):
            t.fail(f"read({n!r}, pad={pad}): raised {exc!r}, expected {expected}")
        return
    t.ok += 1
    if expected is not None:
        t.fail(f"read({n!r}): returned, expected {expected.__name__}")
        return
    assert isinstance(n, int)
    if n == 0:
        want = b""
    elif not pad and not m.data:
        want = b""  # nothing stored: no state change, even while prebuffering
    else:
        real = m.take(n, pad)
        want = real + bytes(n - len(real)) if pad else real
    if out != want:
        t.fail(f"read({n}, pad={pad}) [{m.cap} {m.policy} pre {m.pre}]: {len(out)} bytes, model {len(want)}")


def _read_into(m: Model, rng: random.Random, t: Tally) -> None:
    n = 2 * rng.choice((0, 1, 2, 3, 32, 480, 2048, 40_000))
    make, expected = rng.choice(_targets(n))
    out = make()
    pad = rng.random() < 0.6
    try:
        k = m.ring.read_into(out, pad=pad)
    except Exception as exc:  # noqa: BLE001
        t.error(exc)
        if expected is None or not isinstance(exc, expected):
            t.fail(f"read_into({type(out).__name__} {n}, pad={pad}): raised {exc!r}, expected {expected}")
        return
    t.ok += 1
    if expected is not None:
        t.fail(f"read_into({type(out).__name__}): returned, expected {expected.__name__}")
        return
    size = memoryview(out).nbytes  # type: ignore[arg-type]
    real = m.take(size, pad) if size else b""
    after = memoryview(out).cast("B").tobytes() if size else b""  # type: ignore[arg-type]
    want = real + (bytes(size - len(real)) if pad else b"\xa5" * (size - len(real)))
    if k != len(real) or after != want:
        t.fail(f"read_into({type(out).__name__} {size}, pad={pad}) [{m.cap} {m.policy} pre {m.pre}]: "
               f"returned {k}, model {len(real)}, content {'ok' if after == want else 'differs'}")


def _peek(m: Model, rng: random.Random, t: Tally) -> None:
    n, expected = SIZES[rng.randrange(len(SIZES))] if rng.random() < 0.4 else rng.choice(SMALL_SIZES)
    try:
        out = m.ring.peek(n)
    except Exception as exc:  # noqa: BLE001
        t.error(exc)
        if expected is None or not isinstance(exc, expected):
            t.fail(f"peek({n!r}): raised {exc!r}, expected {expected}")
        return
    t.ok += 1
    if expected is not None:
        t.fail(f"peek({n!r}): returned, expected {expected.__name__}")
    elif out != bytes(m.data[:n]):  # type: ignore[misc]
        t.fail(f"peek({n}) [{m.cap}]: wrong bytes")


def test_fuzz_ring_operations() -> None:
    tallies = _run_schedule(SEED + 301)
    for t in tallies.values():
        t.check()
    assert tallies["write"].raised.get("LimitExceeded", 0) > 0


CTOR_CAP: tuple[tuple[object, type[Exception] | None], ...] = (
    (2, None), (4, None), (960, None), (1 << 16, None), (MAX_CAPACITY, None),
    (0, ConfigurationError), (-2, ConfigurationError), (3, ConfigurationError), (MAX_CAPACITY + 2, ConfigurationError),
    (2**64, ConfigurationError), (2.0, TypeError), (True, TypeError), ("4", TypeError), (None, TypeError),
    (np.int64(4), TypeError),
)
CTOR_POLICY: tuple[tuple[object, type[Exception] | None], ...] = (
    ("drop_oldest", None), ("drop_newest", None), ("raise", None), (type("S", (str,), {})("raise"), None),
    ("DROP_OLDEST", ConfigurationError), ("", ConfigurationError), (None, ConfigurationError),
    (b"raise", ConfigurationError), (0, ConfigurationError), ("raise\x00", ConfigurationError),
)
CTOR_PRE: tuple[object, ...] = (0, 2, 4, 960, 1 << 16, MAX_CAPACITY, 3, -2, 2**64, 2.0, True, None, "2")


def test_fuzz_ring_constructor() -> None:
    seed = SEED + 302
    rng = random.Random(seed)
    tally = Tally("RingBuffer()", seed)
    for i in range(N_CALLS):
        cap, e_cap = CTOR_CAP[rng.randrange(len(CTOR_CAP))]
        policy, e_pol = CTOR_POLICY[rng.randrange(len(CTOR_POLICY))]
        pre = 0 if rng.random() < 0.5 else rng.choice(CTOR_PRE)
        allowed = {e for e in (e_cap, e_pol) if e}
        if type(pre) is not int:
            allowed.add(TypeError)
        elif type(cap) is int and not (0 <= pre <= cap and pre % 2 == 0):
            allowed.add(ConfigurationError)
        tally.calls += 1
        done, r = tally.attempt(f"RingBuffer({cap!r}, {policy!r}, {pre!r})", allowed,
                                lambda: RingBuffer(cap, overflow=policy, prebuffer_bytes=pre))
        if not done:
            continue
        if (r.capacity, r.overflow, r.prebuffer_bytes, r.available, r.prebuffering) != (
                cap, str(policy), pre, 0, pre > 0):
            tally.fail(f"RingBuffer({cap!r}, {policy!r}, {pre!r}): wrong initial state")
        elif i % 16 == 0:
            try:
                r.__init__(4)  # type: ignore[misc]
                tally.fail("RingBuffer.__init__ twice accepted")
            except InvalidState:
                pass
    tally.check()


def test_uninitialized_ring_refuses_instead_of_crashing() -> None:
    # regression: RingBuffer.__new__ without __init__ has capacity 0; write() and a padded
    # read() computed `pos % 0` and killed the process with SIGFPE
    bare = RingBuffer.__new__(RingBuffer)
    for call in (lambda: bare.write(b"ab"), lambda: bare.write(np.zeros(4, "<i2")),
                 lambda: bare.read(2, pad=True), lambda: bare.read_into(bytearray(4)),
                 lambda: bare.read_into(bytearray(1 << 17))):
        try:
            call()
        except InvalidState:
            continue
        raise AssertionError("uninitialized RingBuffer did not raise InvalidState")
    assert bare.write(b"") == 0 and bare.read(2) == b"" and bare.peek(2) == b"" and bare.clear() == 0
    assert (bare.capacity, bare.available, bare.total_written) == (0, 0, 0)
