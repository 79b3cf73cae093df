"""Fuzz voiceengine._audio.chunker: 10^5 calls each of Chunker(), Chunker.from_ms(),
push() and flush() (plus reset between streams).

Oracle (docs/audio_buffers.md): frame_bytes an even int in 2..MAX_FRAME_BYTES else
ConfigurationError (TypeError for non-ints); push() follows the intake rules and carries
any partial frame (odd bytes too); frames are read-only 'B' memoryviews of exactly
frame_bytes whose concatenation is the stream; frames of mutable input survive the caller
overwriting and resizing its buffer; flush() pads (or not) the carry, raises
AudioFormatError on an odd carry and keeps it.
"""

from __future__ import annotations

import random

import numpy as np
from test_fuzz_corpus import N_CALLS, SEED, Entry, Tally, build_pool

from voiceengine._audio.chunker import MAX_FRAME_BYTES, Chunker
from voiceengine.exceptions import AudioFormatError, ConfigurationError, InvalidState

FRAME_BYTES: tuple[tuple[object, type[Exception] | None], ...] = (
    (2, None), (4, None), (6, None), (960, None), (882 * 2, None), (1 << 12, None), (MAX_FRAME_BYTES, None),
    (0, ConfigurationError), (-2, ConfigurationError), (1, ConfigurationError), (961, ConfigurationError),
    (MAX_FRAME_BYTES + 2, ConfigurationError), (2**64, ConfigurationError), (-(2**63), ConfigurationError),
    (4.0, TypeError), (True, TypeError), ("960", TypeError), (None, TypeError), (np.int64(960), TypeError),
    (b"\x02", TypeError), (object(), TypeError),
)
SMALL_FRAMES = (2, 4, 6, 8, 10, 20, 64, 320, 960, 1764)

FRAME_MS: tuple[object, ...] = (20, 10, 2.5, 0.125, 1 / 3, 1.01, 1e-9, 0, -1, float("nan"), float("inf"),
                                -float("inf"), 10**400, -(10**400), 1e300, 2**63, np.float64(20), True, "20",
                                None, np.int64(20), 1j)
RATES: tuple[object, ...] = (8000, 16000, 24000, 44100, 48000, 384000, 1, 3, 0, -1, 384001, 2**64, True,
                             24000.0, np.int64(24000), None, "24000")
CHANS: tuple[object, ...] = (1, 2, 1, 2, 0, 3, -1, True, 1.0, "1", None, np.int64(2), np.array([1, 2]))


def _from_ms_expectation(ms: object, rate: object, ch: object) -> int | None:
    """frame_bytes for clean arguments, or None when they must be refused."""
    if type(rate) is not int or type(ch) is not int or not 1 <= rate <= 384000 or ch not in (1, 2):
        return None
    if type(ms) not in (int, float, np.float64) or not ms > 0:  # type: ignore[operator]
        return None
    if ms > MAX_FRAME_BYTES * 1000:  # type: ignore[operator]
        return None
    exact = rate * ms / 1000.0  # type: ignore[operator]
    if exact > MAX_FRAME_BYTES:
        return None
    samples = round(exact)
    if samples < 1 or abs(exact - samples) > 1e-6 or samples * 2 * ch > MAX_FRAME_BYTES:
        return None
    return samples * 2 * ch


def test_fuzz_chunker_constructor() -> None:
    seed = SEED + 201
    rng = random.Random(seed)
    tally = Tally("Chunker()", seed)
    for i in range(N_CALLS):
        value, expected = FRAME_BYTES[rng.randrange(len(FRAME_BYTES))]
        tally.calls += 1
        try:
            c = Chunker(value)
        except Exception as exc:  # noqa: BLE001
            tally.error(exc)
            if expected is None or not isinstance(exc, expected):
                tally.fail(f"Chunker({value!r}): raised {exc!r}, expected {expected}")
            continue
        tally.ok += 1
        if expected is not None or c.frame_bytes != value or c.pending:
            tally.fail(f"Chunker({value!r}): accepted, expected {expected}")
        if i % 16 == 0:  # a second __init__ is refused, the object stays usable
            try:
                c.__init__(4)  # type: ignore[misc]
                tally.fail("Chunker.__init__ twice accepted")
            except InvalidState:
                pass
            if c.frame_bytes != value:
                tally.fail("Chunker.__init__ twice changed the object")
    tally.check()


def test_uninitialized_chunker_refuses_instead_of_crashing() -> None:
    # regression: Chunker.__new__ without __init__ had frame size 0 and push() trapped
    # on a division by zero (SIGFPE, the whole process died)
    bare = Chunker.__new__(Chunker)
    for buf in (b"ab", b"", bytearray(7), memoryview(b"abcd"), np.zeros(3, "<i2")):
        try:
            bare.push(buf)
        except InvalidState:
            continue
        raise AssertionError("uninitialized Chunker.push did not raise InvalidState")
    assert bare.flush() is None and bare.pending == 0


def test_fuzz_chunker_from_ms() -> None:
    seed = SEED + 202
    rng = random.Random(seed)
    tally = Tally("Chunker.from_ms", seed)
    for _ in range(N_CALLS):
        if rng.random() < 0.4:  # clean arguments, so that acceptance is exercised as much
            args = (rng.choice(FRAME_MS[:6]), rng.choice(RATES[:8]), rng.choice(CHANS[:2]))
        else:
            args = (rng.choice(FRAME_MS), rng.choice(RATES), rng.choice(CHANS))
        expected = _from_ms_expectation(*args)
        tally.calls += 1
        try:
            c = Chunker.from_ms(*args)
        except Exception as exc:  # noqa: BLE001
            tally.error(exc)
            if expected is not None or not isinstance(exc, (TypeError, ConfigurationError)):
                tally.fail(f"from_ms{args!r}: raised {exc!r}, expected {expected}")
            continue
        tally.ok += 1
        if c.frame_bytes != expected:
            tally.fail(f"from_ms{args!r}: frame_bytes {c.frame_bytes}, expected {expected}")
    tally.check()


class Stream:
    """A Chunker and the byte stream it must reproduce."""

    def __init__(self, fb: int) -> None:
        self.c = Chunker(fb)
        self.fb = fb
        self.carry = b""

    def push(self, entry: Entry, borrow: bool, tally: Tally, rng: random.Random) -> None:
        expected = entry.pcm_error()
        obj = entry.obj
        scribble = type(obj) is bytearray and not borrow and rng.random() < 0.3
        if scribble:  # a private copy we may overwrite and resize after the call
            obj = bytearray(entry.data)
        try:
            frames = self.c.push(obj, borrow=borrow)
        except Exception as exc:  # noqa: BLE001
            tally.error(exc)
            if expected is None or not isinstance(exc, expected):
                tally.fail(f"push({entry.label}, borrow={borrow}): raised {exc!r}, expected {expected}")
            elif self.c.pending != len(self.carry):
                tally.fail(f"push({entry.label}): refused input changed pending")
            return
        tally.ok += 1
        if expected is not None:
            tally.fail(f"push({entry.label}): returned, expected {expected.__name__}")
            return
        if scribble:
            obj[:] = b"\xa5" * len(obj)  # type: ignore[index]
            obj.extend(b"xy")  # type: ignore[attr-defined]  # no export may be left on it
        total = self.carry + entry.data
        whole = len(total) - len(total) % self.fb
        self.carry = total[whole:]
        if type(frames) is not list or len(frames) != whole // self.fb:
            tally.fail(f"push({entry.label}) fb={self.fb}: {len(frames)} frames, expected {whole // self.fb}")
            return
        for f in frames:
            if type(f) is not memoryview or not f.readonly or f.format != "B" or f.nbytes != self.fb:
                tally.fail(f"push({entry.label}) fb={self.fb}: bad frame {f!r}")
                return
        if b"".join(frames) != total[:whole]:
            tally.fail(f"push({entry.label}, borrow={borrow}, scribble={scribble}) fb={self.fb}: wrong bytes")
        if self.c.pending != len(self.carry):
            tally.fail(f"push({entry.label}): pending {self.c.pending}, expected {len(self.carry)}")

    def flush(self, pad: bool, tally: Tally) -> None:
        try:
            out = self.c.flush(pad)
        except AudioFormatError as exc:
            tally.error(exc)
            if len(self.carry) % 2 == 0 or self.c.pending != len(self.carry):
                tally.fail(f"flush(pad={pad}) fb={self.fb} carry {len(self.carry)}: {exc!r}")
            return
        tally.ok += 1
        if not self.carry:
            ok = out is None
        else:
            want = self.carry + bytes(self.fb - len(self.carry)) if pad else self.carry
            ok = type(out) is memoryview and out.readonly and out.tobytes() == want
        if not ok or self.c.pending:
            tally.fail(f"flush(pad={pad}) fb={self.fb} carry {len(self.carry)}: got {out!r}")
        self.carry = b""


def _draw(rng: random.Random, pool: list[Entry], fb: int) -> Entry:
    """A pool entry, redrawn while it would make thousands of tiny frames (time budget)."""
    entry = pool[rng.randrange(len(pool))]
    while len(entry.data) // fb > 256:
        entry = pool[rng.randrange(len(pool))]
    return entry


def test_fuzz_chunker_push() -> None:
    seed = SEED + 203
    rng = random.Random(seed)
    pool = build_pool(seed)
    tally = Tally("Chunker.push", seed)
    side = Tally("(flush)", seed)
    s = Stream(rng.choice(SMALL_FRAMES))
    for i in range(N_CALLS):
        tally.calls += 1
        s.push(_draw(rng, pool, s.fb), rng.random() < 0.3, tally, rng)
        r = rng.random()
        if r < 0.02:
            s.c.reset()
            s.carry = b""
        elif r < 0.05:
            s = Stream(rng.choice(SMALL_FRAMES))
    tally.check()
    assert not side.failures


def test_fuzz_chunker_flush() -> None:
    seed = SEED + 204
    rng = random.Random(seed)
    pool = build_pool(seed)
    tally = Tally("Chunker.flush", seed)
    feed = Tally("(push feed)", seed)
    s = Stream(rng.choice(SMALL_FRAMES))
    for i in range(N_CALLS):
        for _ in range(rng.randrange(0, 3)):
            feed.calls += 1
            s.push(_draw(rng, pool, s.fb), rng.random() < 0.3, feed, rng)
        tally.calls += 1
        s.flush(rng.random() < 0.5, tally)
        if s.carry and rng.random() < 0.5:  # an odd carry stays until reset or completed
            s.c.reset()
            s.carry = b""
        if i % 100 == 99:
            s = Stream(rng.choice(SMALL_FRAMES))
    tally.check()
    assert not feed.failures, feed.failures
    assert tally.raised.get("AudioFormatError", 0) > 0  # odd carries were met
