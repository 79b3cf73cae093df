"""RingBuffer between two real threads (large copies run without the GIL, so they overlap)."""

from __future__ import annotations

import hashlib
import threading
import time

import numpy as np

from voiceengine._audio.ring import RingBuffer

JOIN_TIMEOUT = 60.0


def _run(producer, consumer) -> None:
    errors: list[BaseException] = []

    def wrap(fn):
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported to the test thread
                errors.append(exc)
        return run

    threads = [threading.Thread(target=wrap(producer)), threading.Thread(target=wrap(consumer))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "producer/consumer did not finish"
    assert not errors, errors


def test_spsc_no_loss_under_drop_newest_checksums_match() -> None:
    rng = np.random.default_rng(7)
    payload = rng.integers(-32768, 32767, 3_000_000, dtype=np.int16).tobytes()  # 6 MB
    sizes = (rng.integers(1, 70_000, 400) * 2).tolist()  # mixes small and >64 KiB (nogil) copies
    ring = RingBuffer(256 * 1024, overflow="drop_newest")
    received = hashlib.sha256()
    got = [0]

    def producer() -> None:
        pos, i = 0, 0
        while pos < len(payload):
            n = min(sizes[i % len(sizes)], len(payload) - pos, ring.capacity)
            i += 1
            while ring.free < n:  # a polite producer: never overflows, so nothing may be lost
                time.sleep(0)
            assert ring.write(payload[pos : pos + n]) == n
            pos += n

    def consumer() -> None:
        out = bytearray(100_000)
        k = 0
        while got[0] < len(payload):
            if k % 2:
                chunk = ring.read(2 * (1 + k % 50_000))
            else:
                m = ring.read_into(out, pad=False)
                chunk = bytes(out[:m])
            k += 1
            received.update(chunk)
            got[0] += len(chunk)
            if not chunk:
                time.sleep(0)

    _run(producer, consumer)
    assert got[0] == len(payload)
    assert received.hexdigest() == hashlib.sha256(payload).hexdigest()
    assert ring.total_dropped == 0 and ring.overruns == 0
    assert ring.total_written == ring.total_read == len(payload)


def test_drop_oldest_under_contention_never_tears_or_reorders() -> None:
    """The writer overwrites unread storage here; the lock must keep every read whole.

    The stream is a sequence of little-endian uint32 counters (all sizes multiples of 4),
    so every value the reader sees must be strictly greater than the previous one.
    """
    ring = RingBuffer(200_000, overflow="drop_oldest")  # multiple of 4: drops stay aligned
    total_values = 4_000_000
    last = [-1]
    seen = [0]
    done = threading.Event()

    def producer() -> None:
        v = 0
        sizes = [17_000, 33, 70_000, 1, 120_000]  # values per write; some > 64 KiB
        i = 0
        while v < total_values:
            n = min(sizes[i % len(sizes)], total_values - v)
            i += 1
            ring.write(np.arange(v, v + n, dtype="<u4").tobytes())
            v += n
        done.set()

    def consumer() -> None:
        out = bytearray(4 * 40_000)
        while not (done.is_set() and ring.available == 0):
            m = ring.read_into(out, pad=False)
            if m == 0:
                time.sleep(0)
                continue
            assert m % 4 == 0
            vals = np.frombuffer(out, dtype="<u4", count=m // 4)
            assert vals[0] > last[0] and np.all(np.diff(vals.astype(np.int64)) >= 1)
            last[0] = int(vals[-1])
            seen[0] += len(vals)

    _run(producer, consumer)
    assert last[0] == total_values - 1  # the newest value always survives drop_oldest
    assert ring.total_written == 4 * total_values
    assert ring.total_written == ring.total_read + ring.total_dropped + ring.available
    assert ring.total_read == 4 * seen[0]


def test_clear_from_producer_thread_while_consumer_reads() -> None:
    """Barge-in: the producer side clears while the device thread keeps reading."""
    ring = RingBuffer(1 << 18, overflow="drop_newest")
    stop = threading.Event()
    reads = [0]

    def consumer() -> None:
        out = bytearray(4096)
        while not stop.is_set():
            ring.read_into(out)
            reads[0] += 1

    def producer() -> None:
        block = bytes(range(256)) * 512  # 128 KiB
        for _ in range(300):
            ring.write(block)
            ring.clear()
        stop.set()

    _run(producer, consumer)
    assert ring.total_written == ring.total_read + ring.total_dropped + ring.available
    assert ring.total_read % 2 == 0 and ring.total_written == 300 * 128 * 1024
