# cython: auto_pickle=False, autotestdict=False
"""Fixed-size PCM16 framing with read-only views (see :class:`Chunker`)."""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport Py_INCREF
from libc.string cimport memcpy, memset

from voiceengine.exceptions import ConfigurationError, InvalidState

include "_buffers.pxi"





cdef extern from "Python.h":
    object PySlice_New(object start, object stop, object step)
    object PyLong_FromSsize_t(Py_ssize_t v)
    object PyObject_GetItem(object o, object key)

# Largest frame accepted: a frame is meant to be milliseconds of audio, not the file.
MAX_FRAME_BYTES = 1 << 26


cdef inline object _frame(object base, Py_ssize_t start, Py_ssize_t stop):
    return PyObject_GetItem(base, PySlice_New(PyLong_FromSsize_t(start), PyLong_FromSsize_t(stop), None))


cdef class Chunker:
    """Cut a PCM16 stream into fixed-size frames.

    ``Chunker(frame_bytes)`` or ``Chunker.from_ms(frame_ms, sample_rate, channels=1)``.

    :meth:`push` accepts any C-contiguous buffer (bytes, bytearray, memoryview, int16
    numpy arrays; read-only ones too), any byte split: bytes that do not make a whole
    frame, odd ones included, are carried to the next call.

    **View validity.** Every frame returned by :meth:`push`/:meth:`flush` is a
    read-only ``memoryview`` (format ``'B'``) that stays valid *and unchanged* for as
    long as you hold it: it never aliases memory that anyone can mutate.

    * Immutable input (``bytes``, or a read-only ``memoryview`` over ``bytes``): frames
      are zero-copy views into your object (which the view keeps alive), except the
      first frame of a call that completes carried bytes (that one is copied).
    * Mutable input (``bytearray``, writable ``memoryview``, numpy array, or anything
      else): the full frames of the call are copied once into a new private ``bytes``
      object and the views point there. So reusing/mutating your buffer right after
      ``push`` returns never changes frames you hold, and holds no export on it (a
      ``bytearray`` can be resized again at once).
    * ``push(buf, borrow=True)`` skips that copy for mutable input: frames then
      alias ``buf`` and are only valid until you next modify it (while you hold
      them, a ``bytearray`` cannot be resized: ``BufferError``). Use it only when you
      consume the frames before touching ``buf`` again.

    Calling push/flush/reset never invalidates frames returned earlier. Holding one
    frame keeps its whole backing object alive (your ``bytes``, or that call's copy).
    """

    cdef Py_ssize_t _fb
    cdef Py_ssize_t _pending
    cdef unsigned char *_carry

    def __cinit__(self, *args, **kwargs):
        self._carry = NULL

    def __init__(self, frame_bytes):
        if self._carry != NULL:
            raise InvalidState("Chunker.__init__ called twice")
        if not isinstance(frame_bytes, int) or isinstance(frame_bytes, bool):
            raise TypeError(f"frame_bytes must be an int, got {type(frame_bytes).__name__}")
        if not 0 < frame_bytes <= MAX_FRAME_BYTES or frame_bytes % 2:
            raise ConfigurationError(
                f"frame_bytes must be even and in 2..{MAX_FRAME_BYTES}, got {frame_bytes}")
        self._fb = frame_bytes
        self._pending = 0
        self._carry = <unsigned char *>PyMem_Malloc(<size_t>frame_bytes)
        if self._carry == NULL:
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self._carry)

    @classmethod
    def from_ms(cls, frame_ms, sample_rate, channels=1):
        """Chunker for ``frame_ms`` milliseconds of PCM16 at ``sample_rate`` Hz.

        ``frame_bytes = samples * 2 * channels`` with ``samples = sample_rate *
        frame_ms / 1000``, which must come to a whole number (within 1e-6) of at
        least one sample: 20 ms at 44 100 Hz is fine (882), 0.01 ms at 8 kHz is not.
        """
        if not isinstance(sample_rate, int) or isinstance(sample_rate, bool):
            raise TypeError(f"sample_rate must be an int, got {type(sample_rate).__name__}")
        if not 1 <= sample_rate <= 384000:
            raise ConfigurationError(f"sample_rate must be in 1..384000, got {sample_rate}")
        if not isinstance(channels, int):  # before `in`: a numpy array would raise ValueError there
            raise TypeError(f"channels must be an int, got {type(channels).__name__}")
        if channels not in (1, 2) or isinstance(channels, bool):
            raise ConfigurationError(f"channels must be 1 or 2, got {channels!r}")
        if isinstance(frame_ms, bool) or not isinstance(frame_ms, (int, float)):
            raise TypeError(f"frame_ms must be a number, got {type(frame_ms).__name__}")
        if not frame_ms > 0:  # also rejects NaN
            raise ConfigurationError(f"frame_ms must be > 0, got {frame_ms}")
        if frame_ms > MAX_FRAME_BYTES * 1000:  # before float math: a huge int would overflow it
            raise ConfigurationError(f"frame_ms={frame_ms} is too long")
        exact = sample_rate * frame_ms / 1000.0
        if exact > MAX_FRAME_BYTES:
            raise ConfigurationError(f"frame_ms={frame_ms} is too long")
        samples = round(exact)
        if samples < 1 or abs(exact - samples) > 1e-6:
            raise ConfigurationError(
                f"{frame_ms} ms at {sample_rate} Hz is {exact:g} samples; need a whole number >= 1")
        return cls(samples * 2 * channels)

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame."""
        return self._fb

    @property
    def pending(self) -> int:
        """Bytes carried towards the next frame (0 .. frame_bytes - 1; may be odd)."""
        return self._pending

    def push(self, buf, *, bint borrow=False) -> list:
        """Append ``buf``; return the frames completed, as read-only memoryviews.

        See the class docstring for how long they stay valid. Copies: only the
        carried bytes, plus (for mutable input without ``borrow``) one copy of the
        call's full frames.
        """
        cdef const unsigned char *src
        cdef Py_ssize_t n, fb = self._fb, total, nframes, off, i, first, k
        cdef bint immutable
        cdef object owner = None, base, storage, frames, fr
        if self._carry == NULL:
            # Chunker.__new__ without __init__: frame size 0, `total // fb` would trap (SIGFPE)
            raise InvalidState("Chunker.__init__ was not called")
        if type(buf) is bytearray and not borrow:
            # Copied below before any Python code runs, so it cannot be resized in
            # between: read it in place without the buffer-export cost.
            n = PyByteArray_GET_SIZE(buf)
            src = <const unsigned char *>PyByteArray_AS_STRING(buf)
            immutable = False
        else:
            owner = pcm_span(buf, &src, &n)
            immutable = type(buf) is bytes or (
                type(buf) is memoryview and buf.readonly and type(buf.obj) is bytes)
        total = self._pending + n
        nframes = total // fb
        if nframes == 0:
            if n:
                memcpy(self._carry + self._pending, src, <size_t>n)
                self._pending = total
            return []
        frames = PyList_New(nframes)
        if immutable or borrow:
            i = 0
            off = 0
            if self._pending:
                # the frame straddling the carry and this call: the only copy
                first = fb - self._pending
                storage = PyBytes_FromStringAndSize(NULL, fb)
                memcpy(PyBytes_AS_STRING(storage), self._carry, <size_t>self._pending)
                memcpy(PyBytes_AS_STRING(storage) + self._pending, src, <size_t>first)
                fr = memoryview(storage)
                Py_INCREF(fr)
                PyList_SET_ITEM(frames, 0, fr)
                off = first
                i = 1
            if i < nframes:
                # the intake's validated 1-D byte view over the caller's memory
                base = owner if type(owner) is memoryview else memoryview(owner)
                if not base.readonly:
                    base = base.toreadonly()
                if off == 0 and n == fb:  # exactly one frame: the view itself
                    Py_INCREF(base)
                    PyList_SET_ITEM(frames, 0, base)
                    off = fb
                    i = 1
                while i < nframes:
                    fr = _frame(base, off, off + fb)
                    Py_INCREF(fr)
                    PyList_SET_ITEM(frames, i, fr)
                    off += fb
                    i += 1
        else:
            storage = PyBytes_FromStringAndSize(NULL, nframes * fb)
            memcpy(PyBytes_AS_STRING(storage), self._carry, <size_t>self._pending)
            off = nframes * fb - self._pending  # bytes of this call that go into frames
            memcpy(PyBytes_AS_STRING(storage) + self._pending, src, <size_t>off)
            base = memoryview(storage)
            if nframes == 1:
                Py_INCREF(base)
                PyList_SET_ITEM(frames, 0, base)
            else:
                k = 0
                for i in range(nframes):
                    fr = _frame(base, k, k + fb)
                    Py_INCREF(fr)
                    PyList_SET_ITEM(frames, i, fr)
                    k += fb
        # carry the tail (< one frame) of this call
        k = n - off
        if k:
            memcpy(self._carry, src + off, <size_t>k)
        self._pending = k
        return frames

    def flush(self, bint pad=True):
        """Return the carried remainder as a read-only memoryview, or None if none.

        ``pad=True`` zero-pads it to a full frame; ``pad=False`` returns just the
        carried bytes. The chunker is empty afterwards. An odd carried byte count
        (the stream ended mid-sample) raises :class:`AudioFormatError` and keeps
        the bytes (push the missing byte, or ``reset()``).
        """
        cdef object storage
        cdef Py_ssize_t size
        if self._pending == 0:
            return None
        if self._pending & 1:
            raise AudioFormatError(
                f"flush: {self._pending} carried bytes end mid-sample (odd PCM16 byte count)")
        size = self._fb if pad else self._pending
        storage = PyBytes_FromStringAndSize(NULL, size)
        memcpy(PyBytes_AS_STRING(storage), self._carry, <size_t>self._pending)
        if size > self._pending:
            memset(PyBytes_AS_STRING(storage) + self._pending, 0, <size_t>(size - self._pending))
        self._pending = 0
        return memoryview(storage)

    def reset(self) -> None:
        """Discard carried bytes."""
        self._pending = 0

    def __repr__(self) -> str:
        return f"Chunker(frame_bytes={self._fb}, pending={self._pending})"
