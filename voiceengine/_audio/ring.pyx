# cython: freethreading_compatible=True, auto_pickle=False, autotestdict=False
"""Single-producer/single-consumer PCM16 ring buffer (playback / jitter buffer).

Threading design, in short (long version: docs/audio_buffers.md): ``head`` is written
only by the producer, ``tail`` only under a tiny spinlock; both are monotonic uint64
accessed with acquire/release atomics (GCC/Clang ``__atomic``, MSVC ``Interlocked*``).
The producer's common path is lock-free; readers always take the lock, because
``drop_oldest`` overflow and ``clear()`` move ``tail`` from the producer side and
overwrite/discard unread bytes. Only C code runs inside the lock (the holder always
progresses, GIL or not); copies >= ``_NOGIL_MIN`` bytes release the GIL.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_RawCalloc, PyMem_RawFree, PyMem_RawMalloc
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy, memset

from voiceengine.exceptions import ConfigurationError, InvalidState, LimitExceeded

include "_buffers.pxi"





cdef extern from *:
    """
    #include <stdint.h>
    #if defined(_MSC_VER) && !defined(__clang__)
      #include <windows.h>
      #include <intrin.h>
      /* Full-barrier interlocked ops: stronger than needed, correct on x64 and ARM64. */
      static __inline uint64_t ve_load_acq(volatile uint64_t *p) { return (uint64_t)_InterlockedOr64((volatile __int64 *)p, 0); }
      static __inline uint64_t ve_load_rlx(volatile uint64_t *p) { return (uint64_t)_InterlockedOr64((volatile __int64 *)p, 0); }
      static __inline void ve_store_rel(volatile uint64_t *p, uint64_t v) { _InterlockedExchange64((volatile __int64 *)p, (__int64)v); }
      static __inline void ve_add_rlx(volatile uint64_t *p, uint64_t v) { _InterlockedExchangeAdd64((volatile __int64 *)p, (__int64)v); }
      static __inline int ve_xchg_acq(volatile long *p, long v) { return (int)_InterlockedExchange(p, v); }
      static __inline int ve_iload(volatile long *p) { return (int)_InterlockedOr(p, 0); }
      static __inline void ve_istore_rel(volatile long *p, long v) { _InterlockedExchange(p, v); }
      static __inline void ve_cpu_relax(void) { YieldProcessor(); }
      static __inline void ve_yield(void) { SwitchToThread(); }
      typedef volatile long ve_flag_t;
    #else
      #include <sched.h>
      static inline uint64_t ve_load_acq(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
      static inline uint64_t ve_load_rlx(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
      static inline void ve_store_rel(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
      static inline void ve_add_rlx(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
      static inline int ve_xchg_acq(int *p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_ACQUIRE); }
      static inline int ve_iload(int *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
      static inline void ve_istore_rel(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
      #if defined(__x86_64__) || defined(__i386__)
        static inline void ve_cpu_relax(void) { __builtin_ia32_pause(); }
      #elif defined(__aarch64__)
        static inline void ve_cpu_relax(void) { __asm__ __volatile__("yield"); }
      #else
        static inline void ve_cpu_relax(void) { }
      #endif
      static inline void ve_yield(void) { sched_yield(); }
      typedef int ve_flag_t;
    #endif

    /* Test-and-test-and-set spinlock; yields after a short spin so a preempted
       holder (single core, or GIL-less holder vs GIL-holding waiter) can finish. */
    static inline void ve_lock(ve_flag_t *l) {
        unsigned spins = 0;
        while (ve_xchg_acq(l, 1)) {
            while (ve_iload(l)) {
                if (++spins < 256) ve_cpu_relax(); else { spins = 0; ve_yield(); }
            }
        }
    }
    static inline void ve_unlock(ve_flag_t *l) { ve_istore_rel(l, 0); }
    """
    ctypedef int ve_flag_t
    uint64_t ve_load_acq(uint64_t *p) noexcept nogil
    uint64_t ve_load_rlx(uint64_t *p) noexcept nogil
    void ve_store_rel(uint64_t *p, uint64_t v) noexcept nogil
    void ve_add_rlx(uint64_t *p, uint64_t v) noexcept nogil
    int ve_xchg_acq(ve_flag_t *p, int v) noexcept nogil
    void ve_istore_rel(ve_flag_t *p, int v) noexcept nogil
    int ve_iload(ve_flag_t *p) noexcept nogil
    void ve_lock(ve_flag_t *l) noexcept nogil
    void ve_unlock(ve_flag_t *l) noexcept nogil

# Largest capacity accepted: bounded memory, and keeps every size in a Py_ssize_t.
MAX_CAPACITY = 1 << 30
# Copies at least this big release the GIL (the copy outlasts the release/re-acquire).
cdef enum:
    _NOGIL_MIN = 65536
# Storage a new (or shrunk) ring starts with; it doubles on demand up to the capacity.
# A conversation's playback ring is sized for minutes of audio but mostly holds a
# fraction of a second, so storage follows what is queued, not the worst case.
cdef enum:
    _INITIAL_STORAGE = 4096
INITIAL_STORAGE = _INITIAL_STORAGE

cdef enum Policy:
    DROP_OLDEST = 0
    DROP_NEWEST = 1
    RAISE = 2

_POLICIES = {"drop_oldest": DROP_OLDEST, "drop_newest": DROP_NEWEST, "raise": RAISE}
_POLICY_NAMES = ("drop_oldest", "drop_newest", "raise")


cdef inline unsigned char[::1] _writable_bytes(object out):
    """View a writable C-contiguous buffer as bytes (for ``read_into``)."""
    cdef object view
    try:
        view = memoryview(out)
    except (TypeError, ValueError, BufferError):  # e.g. a released memoryview
        raise TypeError(f"out must be a writable buffer (bytearray, memoryview, int16 array), "
                        f"got {type(out).__name__}") from None
    if view.readonly:
        raise TypeError("out must be a writable buffer; got a read-only one")
    return pcm_view(view)  # same dtype / byte-order / contiguity rules as every input


cdef class RingBuffer:
    """Fixed-capacity SPSC ring of PCM16 bytes with an overflow policy and prebuffering.

    ``RingBuffer(capacity_bytes, *, overflow="drop_oldest", prebuffer_bytes=0)``

    * ``capacity_bytes``: even, 2 .. 1 GiB: the most the ring ever holds. Storage starts
      at ``min(capacity, 4 KiB)`` and doubles on demand (inside ``write``) up to the
      capacity; :meth:`shrink` gives it back once the ring has drained. A write that
      needs more storage and cannot get it raises :class:`MemoryError` and stores nothing.
    * ``overflow``: what ``write`` does when the data does not fit:
      ``"drop_oldest"`` discards the oldest unread bytes (live audio: latest wins),
      ``"drop_newest"`` stores what fits and discards the rest of this write,
      ``"raise"`` raises :class:`LimitExceeded` and stores nothing of the write.
      Every overflowing write counts one ``overruns``.
    * ``prebuffer_bytes``: jitter buffering (even, 0 .. capacity). While
      ``prebuffering`` is true, reads return nothing (``read``) or silence (``pad``)
      until that many bytes are available. It is armed at start, re-armed by an
      underrun and by ``clear()``.

    PCM16 alignment: the ring only ever holds whole samples. Odd byte counts in
    ``write``, ``read``, ``peek``, ``read_into`` raise :class:`AudioFormatError`
    (a ``ValueError``) and change nothing.

    Counters are monotonic 64-bit and satisfy, whenever the ring is idle,
    ``total_written == total_read + total_dropped + available``.
    ``total_written`` counts every byte offered to ``write`` (except writes refused
    by ``"raise"``), ``total_read`` only real audio handed to the reader (the
    "played" head; padding excluded), ``total_dropped`` bytes lost to overflow or
    ``clear()``.

    Threading: one producer thread (``write``, ``shrink``) and one consumer thread
    (``read``, ``read_into``, ``peek``); ``clear()`` and all properties may be used from
    either.

    Storage moves (growth, shrink), so the ring never exports it: there is no buffer
    protocol and no view API; ``read``/``peek`` return copies and ``read_into`` copies
    into the caller's buffer. Storage is only replaced by the producer side holding both
    the writer slot and the reader lock, so no copy in or out ever runs on freed storage.
    """

    cdef unsigned char *_data
    cdef uint64_t _cap
    cdef uint64_t _size  # allocated storage bytes (<= _cap); positions wrap modulo this
    cdef Policy _policy
    cdef uint64_t _prebuffer
    cdef char _pad0[64]
    # producer-owned (stored with release by the writer only)
    cdef uint64_t _head
    cdef uint64_t _total_written
    cdef uint64_t _overruns
    cdef ve_flag_t _wbusy
    cdef char _pad1[64]
    # consumer side / lock-protected
    cdef uint64_t _tail
    cdef uint64_t _total_read
    cdef uint64_t _underruns
    cdef ve_flag_t _prebuffering
    cdef ve_flag_t _rbusy
    cdef char _pad2[64]
    cdef uint64_t _total_dropped
    cdef ve_flag_t _lock

    def __cinit__(self, *args, **kwargs):
        self._data = NULL

    def __init__(self, capacity_bytes, *, overflow="drop_oldest", prebuffer_bytes=0):
        if self._data != NULL:
            raise InvalidState("RingBuffer.__init__ called twice")
        if not isinstance(capacity_bytes, int) or isinstance(capacity_bytes, bool):
            raise TypeError(f"capacity_bytes must be an int, got {type(capacity_bytes).__name__}")
        if not isinstance(prebuffer_bytes, int) or isinstance(prebuffer_bytes, bool):
            raise TypeError(f"prebuffer_bytes must be an int, got {type(prebuffer_bytes).__name__}")
        if not 0 < capacity_bytes <= MAX_CAPACITY or capacity_bytes % 2:
            raise ConfigurationError(
                f"capacity_bytes must be even and in 2..{MAX_CAPACITY}, got {capacity_bytes}")
        if not 0 <= prebuffer_bytes <= capacity_bytes or prebuffer_bytes % 2:
            raise ConfigurationError(
                f"prebuffer_bytes must be even and in 0..capacity_bytes, got {prebuffer_bytes}")
        policy = _POLICIES.get(str(overflow)) if isinstance(overflow, str) else None
        if policy is None:
            raise ConfigurationError(f"overflow must be one of {_POLICY_NAMES}, got {overflow!r}")
        self._policy = policy
        self._cap = capacity_bytes
        self._prebuffer = prebuffer_bytes
        self._prebuffering = 1 if prebuffer_bytes > 0 else 0
        self._size = min(<uint64_t>capacity_bytes, <uint64_t>_INITIAL_STORAGE)
        self._data = <unsigned char *>PyMem_RawCalloc(<size_t>self._size, 1)
        if self._data == NULL:
            raise MemoryError(f"cannot allocate a {self._size}-byte ring buffer")

    def __dealloc__(self):
        PyMem_RawFree(self._data)
        self._data = NULL

    # ---------------------------------------------------------------- C core

    cdef inline void _copy_in(self, uint64_t pos, const unsigned char *src, uint64_t n) noexcept nogil:
        cdef uint64_t off = pos % self._size
        cdef uint64_t first = self._size - off
        if n <= first:
            memcpy(self._data + off, src, n)
        else:
            memcpy(self._data + off, src, first)
            memcpy(self._data, src + first, n - first)

    cdef inline void _copy_out(self, uint64_t pos, unsigned char *dst, uint64_t n) noexcept nogil:
        cdef uint64_t off = pos % self._size
        cdef uint64_t first = self._size - off
        if n <= first:
            memcpy(dst, self._data + off, n)
        else:
            memcpy(dst, self._data + off, first)
            memcpy(dst + first, self._data, n - first)

    cdef int _resize(self, uint64_t size) noexcept nogil:
        """Move the unread bytes into new storage of ``size`` bytes; 0, or -1 out of memory.

        Producer side only (the caller holds the writer slot, so ``head`` is fixed). The
        new block is allocated outside the lock; the move and the swap happen under it,
        so a reader copies either from the old storage or from the new, never from freed
        memory. ``tail`` only moves forward meanwhile, so what is unread still fits.
        """
        cdef unsigned char *fresh = <unsigned char *>PyMem_RawMalloc(<size_t>size)
        cdef unsigned char *old
        cdef uint64_t pos, left, k, o, w
        if fresh == NULL:
            return -1
        ve_lock(&self._lock)
        pos = self._tail
        left = self._head - pos
        while left:  # each piece stops at the wrap of either storage
            o = pos % self._size
            w = pos % size
            k = left
            if k > self._size - o:
                k = self._size - o
            if k > size - w:
                k = size - w
            memcpy(fresh + w, self._data + o, k)
            pos += k
            left -= k
        old = self._data
        self._data = fresh
        self._size = size
        ve_unlock(&self._lock)
        PyMem_RawFree(old)
        return 0

    cdef uint64_t _storage_for(self, uint64_t want, uint64_t size) noexcept nogil:
        """``size`` doubled until it holds ``want`` bytes, at most the capacity."""
        while size < want:
            size *= 2
        return size if size < self._cap else self._cap

    cdef int _reserve(self, uint64_t want) noexcept nogil:
        """Grow storage (doubling, at most to the capacity) to hold ``want`` bytes."""
        if want <= self._size:
            return 0
        return self._resize(self._storage_for(want, self._size))

    cdef int64_t _write_c(self, const unsigned char *src, uint64_t n) noexcept nogil:
        """Store per policy; returns bytes stored, -1 when RAISE refused the write, -2
        when storage could not grow (nothing stored)."""
        cdef uint64_t head = self._head  # only this (producer) thread writes it
        cdef uint64_t tail = ve_load_acq(&self._tail)
        cdef uint64_t free = self._cap - (head - tail)
        cdef uint64_t need, used
        if n <= free:  # fast path: no lock, reader never touches [head, tail + cap)
            if self._reserve(head - tail + n) < 0:
                return -2
            self._copy_in(head, src, n)
            ve_store_rel(&self._head, head + n)
            ve_store_rel(&self._total_written, self._total_written + n)
            return <int64_t>n
        if self._policy == RAISE:
            ve_store_rel(&self._overruns, self._overruns + 1)
            return -1
        if self._reserve(self._cap) < 0:  # overflowing: the ring is full, at full storage
            return -2
        if self._policy == DROP_NEWEST:
            ve_store_rel(&self._overruns, self._overruns + 1)
            ve_store_rel(&self._total_written, self._total_written + n)
            self._copy_in(head, src, free)
            ve_store_rel(&self._head, head + free)
            ve_add_rlx(&self._total_dropped, n - free)
            return <int64_t>free
        # DROP_OLDEST: the writer must move tail and overwrite unread storage, so it
        # takes the reader's lock for the whole operation (tail re-read under it: the
        # reader may have freed space since the check above).
        ve_lock(&self._lock)
        tail = self._tail
        used = head - tail
        if n > self._cap - used:
            ve_store_rel(&self._overruns, self._overruns + 1)
            if n >= self._cap:
                # keep only the newest `cap` bytes of this write; everything older goes
                ve_add_rlx(&self._total_dropped, used + (n - self._cap))
                ve_store_rel(&self._tail, head)
            else:
                need = n - (self._cap - used)  # oldest bytes to discard
                ve_add_rlx(&self._total_dropped, need)
                ve_store_rel(&self._tail, tail + need)
        ve_store_rel(&self._total_written, self._total_written + n)
        need = n
        if n > self._cap:
            src += n - self._cap
            need = self._cap
        self._copy_in(head, src, need)
        ve_store_rel(&self._head, head + need)
        ve_unlock(&self._lock)
        return <int64_t>need

    cdef uint64_t _read_c(self, unsigned char *dst, uint64_t n, bint pad, bint consume) noexcept nogil:
        """Copy up to n real bytes to dst (zero-fill the rest when pad); returns real bytes."""
        cdef uint64_t head, tail, k = 0
        ve_lock(&self._lock)
        head = ve_load_acq(&self._head)
        tail = self._tail
        if consume and self._prebuffering:
            if head - tail >= self._prebuffer:
                ve_istore_rel(&self._prebuffering, 0)
            else:
                head = tail  # still filling: hand out nothing
        k = head - tail
        if k > n:
            k = n
        self._copy_out(tail, dst, k)
        if consume:
            ve_store_rel(&self._tail, tail + k)
            ve_store_rel(&self._total_read, self._total_read + k)
            if pad and k < n and not self._prebuffering:
                ve_store_rel(&self._underruns, self._underruns + 1)
                if self._prebuffer:
                    ve_istore_rel(&self._prebuffering, 1)
        ve_unlock(&self._lock)
        if pad and k < n:
            memset(dst + k, 0, n - k)
        return k

    cdef inline void _enter(self, ve_flag_t *busy, str side) except *:
        if self._data == NULL:
            # RingBuffer.__new__ without __init__: capacity 0, `pos % cap` would trap (SIGFPE)
            raise InvalidState("RingBuffer.__init__ was not called")
        if ve_xchg_acq(busy, 1):
            raise InvalidState(f"RingBuffer is single-producer/single-consumer: concurrent {side} calls")

    # ---------------------------------------------------------------- API

    def write(self, buf) -> int:
        """Store PCM16 bytes from any C-contiguous buffer; returns the bytes stored.

        Copies once, into the ring. Odd byte counts raise :class:`AudioFormatError`
        (nothing stored). On overflow see the class docstring; ``"raise"`` raises
        :class:`LimitExceeded` (``.limit`` = free bytes, ``.size`` = this write).
        """
        cdef const unsigned char *src
        cdef Py_ssize_t size
        cdef uint64_t n
        cdef int64_t stored
        owner = pcm_span(buf, &src, &size)  # held until the copy below is done
        n = <uint64_t>size
        if n & 1:
            raise AudioFormatError(f"PCM16 write needs an even byte count, got {n}")
        if n == 0:
            return 0
        self._enter(&self._wbusy, "write")
        try:
            if n >= _NOGIL_MIN:
                with nogil:
                    stored = self._write_c(src, n)
            else:
                stored = self._write_c(src, n)
        finally:
            ve_istore_rel(&self._wbusy, 0)
        if stored == -2:
            raise MemoryError(f"cannot grow the ring buffer's storage for a {n}-byte write")
        if stored < 0:
            raise LimitExceeded(
                f"ring buffer full: {n} bytes do not fit in {self.free} free bytes (overflow='raise')",
                limit=self.free, size=n)
        return stored

    cdef uint64_t _read_into_ptr(self, unsigned char *dst, uint64_t n, bint pad, bint consume):
        cdef uint64_t k
        self._enter(&self._rbusy, "read")
        try:
            if n >= _NOGIL_MIN:
                with nogil:
                    k = self._read_c(dst, n, pad, consume)
            else:
                k = self._read_c(dst, n, pad, consume)
        finally:
            ve_istore_rel(&self._rbusy, 0)
        return k

    cdef uint64_t _check_n(self, n) except? 0:
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError(f"n must be an int, got {type(n).__name__}")
        if n < 0 or n % 2:
            raise AudioFormatError(f"n must be a non-negative even byte count, got {n}")
        if n > MAX_CAPACITY:
            raise ValueError(f"n must be <= {MAX_CAPACITY}, got {n}")
        return <uint64_t>n

    def read(self, n, *, bint pad=False) -> bytes:
        """Remove and return up to ``n`` bytes (a copy).

        ``pad=False``: a short (possibly empty) result when fewer are available.
        ``pad=True``: always ``n`` bytes, zero-filled at the end; a pad while not
        prebuffering counts one ``underruns`` and re-arms prebuffering.
        While prebuffering, returns ``b""`` (or ``n`` zero bytes with ``pad``).
        """
        cdef uint64_t want = self._check_n(n)
        cdef uint64_t k, size
        cdef object out
        if want == 0:
            return b""
        if pad:
            size = want
        else:
            # snapshot: only clear() can shrink this before we copy (then we shrink too)
            size = ve_load_acq(&self._head) - ve_load_acq(&self._tail)
            if size > want:
                size = want
            if size == 0:
                return b""
        out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>size)
        k = self._read_into_ptr(<unsigned char *>PyBytes_AS_STRING(out), size, pad, True)
        if not pad and k < size:  # rare: a clear() or prebuffer hold raced the snapshot
            return out[:k]
        return out

    def read_into(self, out, *, bint pad=True) -> int:
        """Fill the writable buffer ``out`` (bytearray, memoryview, int16 array, ...).

        Returns the real audio bytes copied; with ``pad`` (default) the rest of
        ``out`` is zero-filled (an underrun, see ``read``), else left untouched.
        No allocation: the device-callback path.
        """
        cdef unsigned char[::1] v
        cdef unsigned char *dst
        cdef uint64_t n
        if type(out) is bytearray and PyByteArray_GET_SIZE(out) < _NOGIL_MIN:
            # Fast path, GIL held throughout so the bytearray cannot be resized under us.
            n = <uint64_t>PyByteArray_GET_SIZE(out)
            dst = <unsigned char *>PyByteArray_AS_STRING(out)
        else:
            v = _writable_bytes(out)  # holds a buffer export: pinned while we copy
            n = <uint64_t>v.shape[0]
            dst = &v[0] if n else NULL
        if n & 1:
            raise AudioFormatError(f"read_into needs an even-sized buffer, got {n} bytes")
        if n == 0:
            return 0
        return self._read_into_ptr(dst, n, pad, True)

    def peek(self, n) -> bytes:
        """Return a copy of up to ``n`` unread bytes without consuming them (ignores prebuffering)."""
        cdef uint64_t want = self._check_n(n)
        cdef uint64_t size = ve_load_acq(&self._head) - ve_load_acq(&self._tail)
        cdef uint64_t k
        cdef object out
        if size > want:
            size = want
        if size == 0:
            return b""
        out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>size)
        k = self._read_into_ptr(<unsigned char *>PyBytes_AS_STRING(out), size, False, False)
        if k < size:  # rare: a clear() raced the snapshot
            return out[:k]
        return out

    def clear(self) -> int:
        """Discard all unread bytes (barge-in); returns how many. Either thread may call it.

        Counts them in ``total_dropped`` and re-arms prebuffering.
        """
        cdef uint64_t head, n
        with nogil:
            ve_lock(&self._lock)
            head = ve_load_acq(&self._head)
            n = head - self._tail
            ve_store_rel(&self._tail, head)
            ve_add_rlx(&self._total_dropped, n)
            if self._prebuffer:
                ve_istore_rel(&self._prebuffering, 1)
            ve_unlock(&self._lock)
        return n

    def shrink(self) -> int:
        """Give storage back: shrink it to what is unread (at least 4 KiB, doubling steps).

        Returns the bytes released (0 when already that small). A producer-side call (like
        ``write``: calling both at once from two threads raises :class:`InvalidState`);
        readers may keep reading meanwhile. Call it when the ring drains (end of a reply,
        barge-in): a ring that filled up once otherwise keeps its peak storage.
        """
        cdef uint64_t used, size, before
        cdef int failed = 0
        self._enter(&self._wbusy, "write")
        try:
            before = self._size
            used = ve_load_acq(&self._head) - ve_load_acq(&self._tail)
            size = self._storage_for(used, _INITIAL_STORAGE)
            if size < before:
                with nogil:
                    failed = self._resize(size)
        finally:
            ve_istore_rel(&self._wbusy, 0)
        if failed or size >= before:  # out of memory: keeping the larger storage is fine
            return 0
        return before - size

    # ---------------------------------------------------------------- state

    @property
    def storage_bytes(self) -> int:
        """Bytes of storage allocated now (grows on demand up to ``capacity``)."""
        return self._size

    @property
    def capacity(self) -> int:
        """Capacity in bytes."""
        return self._cap

    @property
    def overflow(self) -> str:
        """The overflow policy name."""
        return _POLICY_NAMES[<int>self._policy]

    @property
    def prebuffer_bytes(self) -> int:
        """Prebuffer threshold in bytes (0 = off)."""
        return self._prebuffer

    @property
    def available(self) -> int:
        """Unread bytes (ignores prebuffering)."""
        cdef uint64_t tail = ve_load_acq(&self._tail)
        return ve_load_acq(&self._head) - tail

    @property
    def free(self) -> int:
        """Bytes that can be written without overflow."""
        cdef uint64_t tail = ve_load_acq(&self._tail)
        return self._cap - (ve_load_acq(&self._head) - tail)

    @property
    def prebuffering(self) -> bool:
        """True while reads are held back until ``prebuffer_bytes`` are available."""
        return ve_iload(&self._prebuffering) != 0

    @property
    def total_written(self) -> int:
        """Bytes offered to ``write`` (excluding writes refused by ``"raise"``)."""
        return ve_load_acq(&self._total_written)

    @property
    def total_read(self) -> int:
        """Real audio bytes handed to the reader (the played head; padding excluded)."""
        return ve_load_acq(&self._total_read)

    @property
    def total_dropped(self) -> int:
        """Bytes lost to overflow or discarded by ``clear()``."""
        return ve_load_rlx(&self._total_dropped)

    @property
    def overruns(self) -> int:
        """Writes that did not fit (any policy)."""
        return ve_load_acq(&self._overruns)

    @property
    def underruns(self) -> int:
        """Padded reads that found too little audio while not prebuffering."""
        return ve_load_acq(&self._underruns)

    def __len__(self) -> int:
        return self.available

    def __repr__(self) -> str:
        return (f"RingBuffer(capacity_bytes={self._cap}, overflow={self.overflow!r}, "
                f"prebuffer_bytes={self._prebuffer}, available={self.available})")
