"""Seeded input corpus for the audio-core fuzz tests (test_fuzz_*.py), plus its own checks.

hypothesis is far too slow for 10^5 calls per entry point inside the CI budget, so the
fuzzers draw from a pool of pre-built buffers (every buffer type, dtype, byte order,
contiguity, dimensionality, read-only flag and length class the intake can meet) with a
seeded ``random.Random``. Each pool entry carries what the intake must do with it, so a
fuzzer knows, per call, whether success or which documented exception is the only
acceptable outcome.
"""

from __future__ import annotations

import array
import ctypes
import os
import pickle
import random
from dataclasses import dataclass
from typing import Any, Callable
from fractions import Fraction

import numpy as np

from voiceengine.exceptions import AudioFormatError

#: calls per entry point (the issue's figure); every fuzzer asserts it ran exactly this many
N_CALLS = 100_000
#: base seed; override with VOICEENGINE_FUZZ_SEED to explore, printed on failure
SEED = int(os.environ.get("VOICEENGINE_FUZZ_SEED", "20250505"))

# element kinds of a pool entry
BYTE, I16, I16BE, F32, F32BE, OTHER, NONBUF = "byte", "i16", "i16be", "f32", "f32be", "other", "nonbuf"


@dataclass(frozen=True, slots=True)
class Entry:
    """A fuzz input and the facts the oracle needs about it."""

    obj: object
    kind: str            # element kind (see constants above)
    contiguous: bool     # C-contiguous buffer
    data: bytes          # raw bytes in memory order (meaningful when contiguous)
    writable: bool
    label: str

    def pcm_error(self) -> type[Exception] | None:
        """Exception the PCM16 intake must raise for this input, None when accepted."""
        if self.kind in (NONBUF, OTHER, F32, F32BE):
            return TypeError
        if self.kind == I16BE:
            return AudioFormatError
        return None if self.contiguous else AudioFormatError

    def f32_error(self) -> type[Exception] | None:
        """Exception the float32 intake (float32_to_int16) must raise, None when accepted."""
        if self.kind in (NONBUF, OTHER, I16, I16BE):
            return TypeError
        if self.kind == F32BE:
            return AudioFormatError
        return None if self.contiguous else AudioFormatError


def _lengths(rng: random.Random) -> int:
    """Byte length with heavy weight on the edges: 0, 1, odd, tiny, frame sizes, big."""
    r = rng.random()
    if r < 0.12:
        return 0
    if r < 0.22:
        return rng.choice((1, 2, 3, 4, 5, 6, 7, 8))
    if r < 0.75:
        return rng.randrange(0, 200)
    if r < 0.97:
        return rng.randrange(200, 4000)
    return rng.randrange(65_530, 70_000)  # crosses the ring's GIL-release threshold


def _payload(rng: random.Random, n: int) -> bytes:
    mode = rng.random()
    if mode < 0.1:
        return bytes(n)
    if mode < 0.2:  # full-scale extremes: the saturation and table-edge paths
        return (b"\xff\x7f\x00\x80" * (n // 4 + 1))[:n]
    return rng.randbytes(n)


def _numpy_variants(rng: random.Random, raw: bytes) -> list[Entry]:
    out: list[Entry] = []
    nbytes = len(raw)
    u8 = np.frombuffer(raw, dtype=np.uint8).copy()
    out.append(Entry(u8, BYTE, True, raw, True, "np.uint8"))
    ro = u8.copy()
    ro.flags.writeable = False
    out.append(Entry(ro, BYTE, True, raw, False, "np.uint8 ro"))
    if nbytes % 2 == 0:
        i16 = np.frombuffer(raw, dtype="<i2").copy()
        out.append(Entry(i16, I16, True, raw, True, "np.<i2"))
        ro16 = i16.copy()
        ro16.flags.writeable = False
        out.append(Entry(ro16, I16, True, raw, False, "np.<i2 ro"))
        out.append(Entry(np.frombuffer(raw, dtype=">i2").copy(), I16BE, True, raw, True, "np.>i2"))
        out.append(Entry(np.frombuffer(raw, dtype="<u2").copy(), OTHER, True, raw, True, "np.uint16"))
        if nbytes >= 4:
            out.append(Entry(i16[::2], I16, nbytes <= 2 or len(i16[::2]) <= 1, i16[::2].tobytes(),
                             True, "np.<i2[::2]"))
            out.append(Entry(i16[::-1], I16, len(i16) <= 1, i16[::-1].tobytes(), True, "np.<i2[::-1]"))
        if nbytes % 4 == 0:
            two = np.frombuffer(raw, dtype="<i2").reshape(-1, 2).copy()
            out.append(Entry(two, I16, True, raw, True, "np.<i2 (n,2)"))
            fort = np.asfortranarray(two)
            # a Fortran (n, 2) array with n > 1 is not C-contiguous
            out.append(Entry(fort, I16, fort.flags.c_contiguous, fort.tobytes(order="A"), True, "np.<i2 F"))
            out.append(Entry(two.T, I16, two.T.flags.c_contiguous, two.T.tobytes(order="A"), True, "np.<i2 .T"))
            f32 = np.frombuffer(raw, dtype="<f4").copy()
            out.append(Entry(f32, F32, True, raw, True, "np.<f4"))
            out.append(Entry(np.frombuffer(raw, dtype=">f4").copy(), F32BE, True, raw, True, "np.>f4"))
            out.append(Entry(np.frombuffer(raw, dtype="<i4").copy(), OTHER, True, raw, True, "np.int32"))
            if nbytes >= 8:
                out.append(Entry(f32[::-1], F32, len(f32) <= 1, f32[::-1].tobytes(), True, "np.<f4[::-1]"))
        if nbytes % 8 == 0:
            for dt in ("<f8", "<i8", "<c8", "M8[D]"):
                out.append(Entry(np.frombuffer(raw, dtype=dt).copy(), OTHER, True, raw, True, f"np.{dt}"))
    out.append(Entry(np.frombuffer(raw, dtype=np.int8).copy(), OTHER, True, raw, True, "np.int8"))
    out.append(Entry(np.frombuffer(raw, dtype=np.bool_).copy(), OTHER, True, raw, True, "np.bool"))
    out.append(Entry(u8.reshape(1, -1), BYTE, True, raw, True, "np.uint8 (1,n)"))
    if nbytes == 0:
        for shape, dt, kind in (((0, 2), "<i2", I16), ((2, 0), "<i2", I16), ((0, 3), "u1", BYTE),
                                ((0, 2), "<f4", F32), ((0, 2), ">i2", I16BE)):
            out.append(Entry(np.zeros(shape, dt), kind, True, b"", True, f"np.zeros{shape} {dt}"))
    if nbytes == 2:
        out.append(Entry(np.array(int.from_bytes(raw, "little", signed=True), dtype="<i2"), I16, True, raw,
                         True, "np 0-d <i2"))
    return out


def _memoryview_variants(raw: bytes) -> list[Entry]:
    n = len(raw)
    ba = bytearray(raw)
    out = [
        Entry(raw, BYTE, True, raw, False, "bytes"),
        Entry(ba, BYTE, True, raw, True, "bytearray"),
        Entry(memoryview(raw), BYTE, True, raw, False, "memoryview(bytes)"),
        Entry(memoryview(bytearray(raw)), BYTE, True, raw, True, "memoryview(bytearray)"),
        Entry(memoryview(bytearray(raw)).toreadonly(), BYTE, True, raw, False, "memoryview ro"),
        Entry(memoryview(b"\x00" + raw)[1:], BYTE, True, raw, False, "memoryview offset 1"),
        Entry(memoryview(raw)[::2], BYTE, n <= 2, raw[::2], False, "memoryview[::2]"),
        Entry(memoryview(raw)[::-1], BYTE, n <= 1, raw[::-1], False, "memoryview[::-1]"),
        Entry(pickle.PickleBuffer(raw), BYTE, True, raw, False, "PickleBuffer"),
        Entry(array.array("B", raw), BYTE, True, raw, True, "array B"),
        Entry(type("BytesSub", (bytes,), {})(raw), BYTE, True, raw, False, "bytes subclass"),
        Entry(memoryview(raw).cast("c"), BYTE, True, raw, False, "memoryview c"),
        Entry((ctypes.c_char * max(n, 1)).from_buffer_copy(raw or b"\x00"), BYTE, True, raw or b"\x00",
              True, "ctypes c_char"),
        Entry(array.array("b", raw), OTHER, True, raw, True, "array b"),
    ]
    if n % 2 == 0:
        out.append(Entry(array.array("h", raw), I16, True, raw, True, "array h"))
        out.append(Entry(memoryview(raw).cast("h"), I16, True, raw, False, "memoryview h"))
        out.append(Entry(memoryview(raw).cast("H"), OTHER, True, raw, False, "memoryview H"))
        if n:
            out.append(Entry((ctypes.c_short * (n // 2)).from_buffer_copy(raw), I16, True, raw, True,
                             "ctypes c_short"))
        if n % 4 == 0 and n:
            out.append(Entry(memoryview(raw).cast("B", (n // 4, 4)), BYTE, True, raw, False, "memoryview 2-D"))
            out.append(Entry(memoryview(raw).cast("h", (n // 4, 2)), I16, True, raw, False, "memoryview h 2-D"))
            out.append(Entry(array.array("f", raw), F32, True, raw, True, "array f"))
            out.append(Entry(memoryview(raw).cast("f"), F32, True, raw, False, "memoryview f"))
            out.append(Entry(memoryview(raw).cast("i"), OTHER, True, raw, False, "memoryview i"))
    if n % 8 == 0:
        out.append(Entry(array.array("d", raw), OTHER, True, raw, True, "array d"))
    return out


def _released() -> memoryview:
    m = memoryview(b"\x00\x01")
    m.release()
    return m


NON_BUFFERS: tuple[object, ...] = (
    None, "", "abcd", "\udcff", 0, 1, -1, 2**64, 1.5, float("nan"), True, [], [1, 2], (0, 0), {}, {"a": 1},
    object(), Fraction(1, 3), type, len, iter([b"ab"]), range(4), _released(),
    np.array([None, 1], dtype=object), np.array(["ab", "cd"]),
)


def build_pool(seed: int, size: int = 4000) -> list[Entry]:
    """A seeded pool of at least ``size`` entries covering every input class."""
    rng = random.Random(seed)
    pool: list[Entry] = []
    while len(pool) < size:
        raw = _payload(rng, _lengths(rng))
        pool.extend(_memoryview_variants(raw))
        pool.extend(_numpy_variants(rng, raw))
    # numpy scalars export a 0-d buffer: an int16 scalar is one valid sample
    pool.extend([Entry(np.int16(-3), I16, True, b"\xfd\xff", False, "np.int16 scalar"),
                 Entry(np.float64(1.0), OTHER, True, b"", False, "np.float64 scalar")] * 8)
    for obj in NON_BUFFERS:
        pool.extend([Entry(obj, NONBUF, False, b"", False, f"non-buffer {type(obj).__name__}")] * 8)
    return pool


def pick(rng: random.Random, pool: list[Entry]) -> Entry:
    return pool[rng.randrange(len(pool))]


# ------------------------------------------------------------------------- self-checks
def test_pool_covers_every_input_class() -> None:
    pool = build_pool(SEED)
    kinds = {e.kind for e in pool}
    assert kinds == {BYTE, I16, I16BE, F32, F32BE, OTHER, NONBUF}
    assert any(not e.contiguous and e.kind == I16 for e in pool)
    assert any(not e.contiguous and e.kind == BYTE for e in pool)
    assert any(not e.writable and e.kind == I16 for e in pool)
    assert any(e.kind in (BYTE, I16) and len(e.data) == 0 for e in pool)
    assert any(e.kind == BYTE and len(e.data) % 2 for e in pool)
    assert any(e.kind in (BYTE, I16) and len(e.data) >= 65_536 for e in pool)
    multi = [e for e in pool if isinstance(e.obj, np.ndarray) and e.obj.ndim != 1]
    assert multi and any(e.obj.size == 0 for e in multi)  # type: ignore[attr-defined]


def test_pool_is_deterministic() -> None:
    a, b = build_pool(SEED), build_pool(SEED)
    assert [(e.label, e.data) for e in a] == [(e.label, e.data) for e in b]


class Tally:
    """Per-entry-point outcome counts plus the first few oracle violations (with the seed)."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.seed = seed
        self.calls = 0
        self.ok = 0
        self.raised: dict[str, int] = {}
        self.failures: list[str] = []

    def fail(self, what: str) -> None:
        if len(self.failures) < 10:
            self.failures.append(what)

    def error(self, exc: BaseException) -> None:
        key = type(exc).__name__
        self.raised[key] = self.raised.get(key, 0) + 1

    def attempt(self, what: str, expected: Any, call: Callable[[], Any]) -> tuple[bool, Any]:
        """One call judged by the oracle: ``expected`` is the exception type (or tuple, or
        set of types) it must raise, falsy when it must succeed. Records the outcome;
        ``(True, result)`` only for an expected success, else ``(False, None)``."""
        allowed = tuple(expected) if isinstance(expected, (set, frozenset, tuple)) else expected
        try:
            out = call()
        except Exception as exc:  # noqa: BLE001 - the oracle decides
            self.error(exc)
            if not allowed or not isinstance(exc, allowed):
                self.fail(f"{what}: raised {exc!r}, expected {expected}")
            return False, None
        self.ok += 1
        if allowed:
            self.fail(f"{what}: returned, expected {expected}")
            return False, None
        return True, out

    def check(self, n: int = N_CALLS) -> None:
        """Assert the exact call count, no violation, and that both outcomes were exercised."""
        print(f"fuzz {self.name}: {self.calls} calls, {self.ok} ok, raised {self.raised} (seed {self.seed})")
        assert not self.failures, f"{self.name} (seed {self.seed}):\n" + "\n".join(self.failures)
        assert self.calls == n, f"{self.name}: {self.calls} calls, expected {n}"
        assert self.ok + sum(self.raised.values()) == self.calls
        assert self.ok > n // 20, f"{self.name}: only {self.ok} successful calls {self.raised}"
