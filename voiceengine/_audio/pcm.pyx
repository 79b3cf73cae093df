# cython: auto_pickle=False, autotestdict=False
"""PCM16 helpers: float conversion, channel mixing, gain, levels, G.711.

Every function takes any C-contiguous buffer (see ``_buffers.pxi``: wrong item type
-> ``TypeError``; big-endian / strided -> ``AudioFormatError``) and returns a new
object (results are always fresh copies; inputs are never modified). Byte counts
that do not hold whole samples (odd for PCM16, not a multiple of 4 for stereo PCM16
or float32) raise :class:`AudioFormatError`. Empty input gives empty output
(``-inf`` for the level meters).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.math cimport INFINITY, isnan, log10, lrint, pow, sqrt
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint64_t

from numbers import Real

include "_buffers.pxi"





cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>
    /* Unaligned-safe loads/stores: input views may start at any byte offset. */
    static inline int16_t ve_ld16(const unsigned char *p, Py_ssize_t i) { int16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    static inline void ve_st16(unsigned char *p, Py_ssize_t i, int16_t v) { memcpy(p + 2 * i, &v, 2); }
    static inline float ve_ldf(const unsigned char *p, Py_ssize_t i) { float v; memcpy(&v, p + 4 * i, 4); return v; }
    static inline void ve_stf(unsigned char *p, Py_ssize_t i, float v) { memcpy(p + 4 * i, &v, 4); }
    """
    int16_t ve_ld16(const unsigned char *p, Py_ssize_t i) noexcept nogil
    void ve_st16(unsigned char *p, Py_ssize_t i, int16_t v) noexcept nogil
    float ve_ldf(const unsigned char *p, Py_ssize_t i) noexcept nogil
    void ve_stf(unsigned char *p, Py_ssize_t i, float v) noexcept nogil

_FLOAT_NATIVE = frozenset(("f", "@f", "=f", "<f"))
_FLOAT_BIG = frozenset((">f", "!f"))


cdef inline Py_ssize_t _samples(const unsigned char[::1] v, int width, str what) except -1:
    cdef Py_ssize_t n = v.shape[0]
    if n % width:
        raise AudioFormatError(f"{what} needs a multiple of {width} bytes, got {n}")
    return n // width


cdef inline int16_t _saturate16(double x) noexcept nogil:
    """Round half to even into int16, clipping. ``x`` must not be NaN: callers that can see
    one test it themselves (the test costs apply_gain, which cannot, about 30 %)."""
    if x >= 32767.0:
        return 32767
    if x <= -32768.0:
        return -32768
    return <int16_t>lrint(x)


cdef inline unsigned char *_out(object b) noexcept:
    return <unsigned char *>PyBytes_AS_STRING(b)


cdef inline const unsigned char *_ptr(const unsigned char[::1] v) noexcept:
    return &v[0] if v.shape[0] else <const unsigned char *>""


def pcm16_view(buf):
    """``buf`` validated as PCM16 and viewed as bytes without copying.

    ``bytes``/``bytearray`` are returned as they are, any other buffer as a 1-D byte
    memoryview over the caller's memory. The rules of every audio entry point apply
    (``TypeError`` for other sample types; ``AudioFormatError`` for big-endian, strided
    views and odd byte counts). For pure-Python code that hands PCM on (e.g. to base64).
    """
    view = pcm_view(buf)
    if len(view) & 1:
        raise AudioFormatError(f"PCM16 needs an even byte count, got {len(view)} bytes")
    return view


_NO_FORMATS = frozenset()


def g711_view(buf):
    """``buf`` validated as G.711 (mu-law or A-law: one byte per sample, any byte count)
    and viewed as bytes without copying, under the intake rules of :func:`pcm16_view`.

    Only byte buffers qualify: an int16 array is PCM16 that was never encoded (``TypeError``).
    """
    return checked_view(buf, _NO_FORMATS, _NO_FORMATS, "G.711", "u1")


cdef const unsigned char[::1] _float32_bytes(object buf):
    """View a float32 buffer (float32 array/memoryview, or raw little-endian bytes) as bytes."""
    return checked_view(buf, _FLOAT_NATIVE, _FLOAT_BIG, "float32", "<f4")


# ------------------------------------------------------------------ float <-> int16

def int16_to_float32(buf) -> memoryview:
    """PCM16 -> float32 in [-1, 1): ``x / 32768``. Returns a read-only memoryview, format ``'f'``."""
    cdef const unsigned char[::1] v = pcm_bytes(buf)
    cdef Py_ssize_t i, n = _samples(v, 2, "PCM16 input")
    cdef const unsigned char *src = _ptr(v)
    out = PyBytes_FromStringAndSize(NULL, 4 * n)
    cdef unsigned char *dst = _out(out)
    with nogil:
        for i in range(n):
            ve_stf(dst, i, <float>ve_ld16(src, i) * (1.0 / 32768.0))
    return memoryview(out).cast("f")


def float32_to_int16(buf) -> bytes:
    """float32 -> PCM16: ``round(x * 32768)`` (half to even), clipped to -32768..32767.

    Accepts float32 arrays/memoryviews or raw little-endian float32 bytes. NaN -> 0.
    Exact inverse of :func:`int16_to_float32`.
    """
    cdef const unsigned char[::1] v = _float32_bytes(buf)
    cdef Py_ssize_t i, n = _samples(v, 4, "float32 input")
    cdef const unsigned char *src = _ptr(v)
    cdef float x
    out = PyBytes_FromStringAndSize(NULL, 2 * n)
    cdef unsigned char *dst = _out(out)
    with nogil:
        for i in range(n):
            x = ve_ldf(src, i) * 32768.0
            ve_st16(dst, i, _saturate16(x) if x == x else 0)  # NaN -> 0
    return out


# ------------------------------------------------------------------ channels

def stereo_to_mono(buf) -> bytes:
    """Interleaved stereo PCM16 -> mono: ``(L + R) / 2`` rounded half to even (no clipping possible)."""
    cdef const unsigned char[::1] v = pcm_bytes(buf)
    cdef Py_ssize_t i, n = _samples(v, 4, "stereo PCM16 input")
    cdef const unsigned char *src = _ptr(v)
    cdef int32_t s, q
    out = PyBytes_FromStringAndSize(NULL, 2 * n)
    cdef unsigned char *dst = _out(out)
    with nogil:
        for i in range(n):
            s = <int32_t>ve_ld16(src, 2 * i) + <int32_t>ve_ld16(src, 2 * i + 1)
            q = s >> 1  # floor; a tie goes to the even neighbour, so no DC bias
            q += (s & 1) & (q & 1)
            ve_st16(dst, i, <int16_t>q)
    return out


def mono_to_stereo(buf) -> bytes:
    """Mono PCM16 -> interleaved stereo (each sample duplicated)."""
    cdef const unsigned char[::1] v = pcm_bytes(buf)
    cdef Py_ssize_t i, n = _samples(v, 2, "PCM16 input")
    cdef const unsigned char *src = _ptr(v)
    cdef int16_t s
    out = PyBytes_FromStringAndSize(NULL, 4 * n)
    cdef unsigned char *dst = _out(out)
    with nogil:
        for i in range(n):
            s = ve_ld16(src, i)
            ve_st16(dst, 2 * i, s)
            ve_st16(dst, 2 * i + 1, s)
    return out


# ------------------------------------------------------------------ gain & levels

def apply_gain(buf, gain_db) -> bytes:
    """Scale PCM16 by ``gain_db`` decibels, rounding half to even and saturating.

    Samples that would exceed the int16 range clip to -32768 / 32767, never wrap.
    ``gain_db = 0`` is the identity, ``-inf`` gives silence; NaN and ``+inf`` raise
    ``ValueError``.
    """
    cdef const unsigned char[::1] v = pcm_bytes(buf)
    cdef Py_ssize_t i, n = _samples(v, 2, "PCM16 input")
    cdef const unsigned char *src = _ptr(v)
    cdef double g, x
    if not isinstance(gain_db, Real) or isinstance(gain_db, bool):
        raise TypeError(f"gain_db must be a real number, got {type(gain_db).__name__}")
    try:
        db = float(gain_db)
    except OverflowError:  # an int/Fraction beyond float range: the infinity of its sign
        db = INFINITY if gain_db > 0 else -INFINITY
    if isnan(db) or db == INFINITY:
        raise ValueError(f"gain_db must be finite or -inf, got {gain_db!r}")
    g = 0.0 if db == -INFINITY else pow(10.0, db / 20.0)
    out = PyBytes_FromStringAndSize(NULL, 2 * n)
    cdef unsigned char *dst = _out(out)
    with nogil:
        for i in range(n):
            x = ve_ld16(src, i) * g
            ve_st16(dst, i, _saturate16(x))
    return out


def peak_dbfs(buf) -> float:
    """Peak level in dBFS (``20*log10(max|x| / 32768)``); -inf for silence or empty input."""
    cdef const unsigned char[::1] v = pcm_bytes(buf)
    cdef Py_ssize_t i, n = _samples(v, 2, "PCM16 input")
    cdef const unsigned char *src = _ptr(v)
    cdef int32_t peak = 0, a
    with nogil:
        for i in range(n):
            a = ve_ld16(src, i)
            if a < 0:
                a = -a
            if a > peak:
                peak = a
    if peak == 0:
        return -INFINITY
    return 20.0 * log10(peak / 32768.0)


def rms_dbfs(buf) -> float:
    """RMS level in dBFS re full-scale *square* wave (a full-scale sine reads -3.01);
    -inf for silence or empty input. Exact integer accumulation."""
    cdef const unsigned char[::1] v = pcm_bytes(buf)
    cdef Py_ssize_t i, n = _samples(v, 2, "PCM16 input")
    cdef const unsigned char *src = _ptr(v)
    cdef uint64_t acc = 0
    cdef int64_t s
    with nogil:
        for i in range(n):
            s = ve_ld16(src, i)
            acc += <uint64_t>(s * s)
    if acc == 0:
        return -INFINITY
    return 20.0 * log10(sqrt(<double>acc / n) / 32768.0)


# ------------------------------------------------------------------ G.711
# Tables follow the ITU-T G.191 reference implementation of G.711 (g711.c:
# ulaw_compress/expand, alaw_compress/expand), which maps negative inputs via the
# one's complement. The mu-law encoder depends only on x >> 2 (14-bit), A-law only
# on x >> 4, so the encode tables are 16 Ki / 4 Ki entries.

cdef uint8_t _ULAW_ENC[16384]
cdef uint8_t _ALAW_ENC[4096]
cdef int16_t _ULAW_DEC[256]
cdef int16_t _ALAW_DEC[256]


cdef uint8_t _ulaw_compress(int32_t x) noexcept:
    cdef int32_t absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    cdef int32_t i, segno = 1
    if absno > 0x1FFF:
        absno = 0x1FFF
    i = absno >> 6
    while i:
        segno += 1
        i >>= 1
    cdef int32_t code = ((8 - segno) << 4) | (15 - ((absno >> segno) & 0xF))
    if x >= 0:
        code |= 0x80
    return <uint8_t>code


cdef uint8_t _alaw_compress(int32_t x) noexcept:
    cdef int32_t ix = ((~x) >> 4) if x < 0 else (x >> 4)
    cdef int32_t iexp
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x80
    return <uint8_t>(ix ^ 0x55)


cdef int16_t _ulaw_expand(int32_t code) noexcept:
    cdef int32_t sign = -1 if code < 0x80 else 1
    cdef int32_t mantissa = ~code
    cdef int32_t exponent = (mantissa >> 4) & 7
    cdef int32_t step = 4 << (exponent + 1)
    mantissa &= 0xF
    return <int16_t>(sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33))


cdef int16_t _alaw_expand(int32_t code) noexcept:
    cdef int32_t ix = (code ^ 0x55) & 0x7F
    cdef int32_t iexp = ix >> 4
    cdef int32_t mant = ix & 0xF
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 8
    if iexp > 1:
        mant <<= iexp - 1
    return <int16_t>(mant if code > 127 else -mant)


cdef void _init_tables() noexcept:
    cdef int32_t k
    for k in range(16384):
        _ULAW_ENC[k] = _ulaw_compress((k - 8192) << 2)
    for k in range(4096):
        _ALAW_ENC[k] = _alaw_compress((k - 2048) << 4)
    for k in range(256):
        _ULAW_DEC[k] = _ulaw_expand(k)
        _ALAW_DEC[k] = _alaw_expand(k)


_init_tables()


cdef bytes _g711_encode(object buf, const uint8_t *table, int shift, int bias):
    """PCM16 -> one G.711 byte per sample through ``table[(x >> shift) + bias]``."""
    cdef const unsigned char[::1] v = pcm_bytes(buf)
    cdef Py_ssize_t i, n = _samples(v, 2, "PCM16 input")
    cdef const unsigned char *src = _ptr(v)
    out = PyBytes_FromStringAndSize(NULL, n)
    cdef unsigned char *dst = _out(out)
    with nogil:
        for i in range(n):
            dst[i] = table[(ve_ld16(src, i) >> shift) + bias]
    return out


cdef bytes _g711_decode(object buf, const int16_t *table):
    """G.711 bytes (any count) -> PCM16 through ``table``."""
    cdef const unsigned char[::1] v = pcm_bytes(buf)
    cdef Py_ssize_t i, n = v.shape[0]
    cdef const unsigned char *src = _ptr(v)
    out = PyBytes_FromStringAndSize(NULL, 2 * n)
    cdef unsigned char *dst = _out(out)
    with nogil:
        for i in range(n):
            ve_st16(dst, i, table[src[i]])
    return out


def ulaw_encode(buf) -> bytes:
    """PCM16 -> G.711 mu-law bytes (one per sample), ITU-T G.191 reference mapping."""
    return _g711_encode(buf, _ULAW_ENC, 2, 8192)


def alaw_encode(buf) -> bytes:
    """PCM16 -> G.711 A-law bytes (one per sample), ITU-T G.191 reference mapping."""
    return _g711_encode(buf, _ALAW_ENC, 4, 2048)


def ulaw_decode(buf) -> bytes:
    """G.711 mu-law bytes -> PCM16 (any byte count)."""
    return _g711_decode(buf, _ULAW_DEC)


def alaw_decode(buf) -> bytes:
    """G.711 A-law bytes -> PCM16 (any byte count)."""
    return _g711_decode(buf, _ALAW_DEC)
