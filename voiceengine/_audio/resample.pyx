# cython: language_level=3, auto_pickle=False, autotestdict=False
"""Streaming polyphase windowed-sinc PCM16 resampler (see docs/audio_resampler.md).

Output sample ``n`` is the band-limited input evaluated at time ``n / out_rate`` (the
output is time-aligned with the input, no leading transient); it is emitted as soon as
the input covering its filter window has arrived. That holds back a fixed ``delay``
output samples, so after any ``process`` call::

    total_out == max(0, floor(total_in * out_rate / in_rate) - delay)

and after ``flush``::

    total_out == ceil(total_in * out_rate / in_rate)

(every output instant inside the input's time span ``[0, total_in / in_rate)``).
"""

from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove, memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

import math
import operator

from voiceengine.exceptions import ConfigurationError, InvalidState

include "_buffers.pxi"

cdef extern from "resample_kernel.h":
    ctypedef struct ve_rs_filter:
        int64_t L
        int64_t M
        int64_t Mq
        int64_t Mr
        int64_t P
        int64_t tpad
        int interp
        const float *tab
    int VE_LANES
    int ve_rs_design(float *tab, int64_t P, int64_t tpad, int64_t ntaps, int64_t L, int64_t C,
                     double fin, double fl, double fc, double beta) nogil
    void ve_rs_run(const ve_rs_filter *f, const float *hist, int64_t hist_start, int64_t *i_hi,
                   int64_t *r, int64_t n, float *out) nogil
    void ve_rs_store_mono(const float *src, int64_t n, unsigned char *dst) nogil
    void ve_rs_store_dup(const float *src, int64_t n, unsigned char *dst) nogil
    void ve_rs_store_stereo(const float *a, const float *b, int64_t n, unsigned char *dst) nogil
    void ve_rs_load_mono(const unsigned char *src, int64_t n, float *dst) nogil
    void ve_rs_load_downmix(const unsigned char *src, int64_t n, float *dst) nogil
    void ve_rs_load_split(const unsigned char *src, int64_t n, float *a, float *b) nogil

# Default filter (chosen offline, see docs): Kaiser beta and cutoff in cycles per
# lower-rate sample; half-length budget in lower-rate samples (31.9 keeps the window
# within 2 ms at 16 kHz and 4 ms at 8 kHz).
FILTER_BETA = 11.0
FILTER_CUTOFF = 0.4425
FILTER_HALF_LENGTH = 31.9
MAX_RATE = 384000
# Cap on the filter length. Downsampling by in/out needs about 62 * in / out taps (the
# window spans 31 output-rate samples each side), so an absurd ratio such as 384000 -> 1
# would design a 24 M-tap filter (~95 MB table, ~190 MB history, seconds of design time).
# 32768 taps admit every downsampling ratio up to ~528:1 (384000 -> 727 Hz; 384000 -> 8000
# needs 2975 taps, 384000 -> 1000 23807) and bound the table to <= 65 rows x 32768 taps
# (~8.5 MB, interpolated rows) and the initial history to twice the taps per channel.
# Upsampling always needs ~64 taps. Beyond the cap: ConfigurationError at construction.
MAX_FILTER_TAPS = 32768

# Above this many table floats an exact polyphase table (one row per phase) is replaced by
# a fixed grid of rows with linear interpolation between neighbours (exotic coprime rates).
cdef int64_t _EXACT_TABLE_LIMIT = 1 << 20
cdef int64_t _INTERP_ROWS_UPSAMPLE = 2048
cdef int _CACHE_SIZE = 32
cdef enum:
    # outputs per kernel run (float scratch per channel: 16 KiB, stays in L1/L2)
    _SCRATCH_FRAMES = 4096
    # one-shot resample() feeds its input in pieces of this many frames
    _ONESHOT_PIECE_FRAMES = 16384


cdef class _Filter:
    """Coefficient table for one reduced ratio (shared by every Resampler of that ratio)."""
    cdef float *tab
    cdef ve_rs_filter f
    cdef readonly int64_t L, M, C, D, P, tpad, ntaps
    cdef readonly bint interp

    def __cinit__(self):
        self.tab = NULL

    def __dealloc__(self):
        free(self.tab)

    cdef _alloc(self, int64_t rows):
        self.tab = <float *>malloc(sizeof(float) * rows * self.tpad)
        if self.tab == NULL:
            raise MemoryError("cannot allocate resampler coefficient table")

    def table(self) -> bytes:
        """Raw float32 table, ``(P + 1) x tpad`` rows, taps stored newest-input-last."""
        return PyBytes_FromStringAndSize(<char *>self.tab, sizeof(float) * (self.P + 1) * self.tpad)


cdef dict _filter_cache = {}


cdef int64_t _round_up(int64_t n, int64_t m):
    return ((n + m - 1) // m) * m


cdef _Filter _make_filter(int64_t in_rate, int64_t out_rate):
    cdef int64_t g = math.gcd(in_rate, out_rate)
    cdef int64_t L = out_rate // g, M = in_rate // g
    key = (L, M)
    cdef _Filter flt = _filter_cache.get(key)
    if flt is not None:
        return flt
    flt = _Filter()
    flt.L = L
    flt.M = M
    cdef int64_t fl = min(in_rate, out_rate), dens, rows
    if L == M:
        # equal rates (channel conversion only): a single unit tap, no delay
        flt.C = 0
        flt.D = 0
        flt.P = 1
        flt.ntaps = 1
        flt.tpad = VE_LANES
        flt.interp = False
        flt._alloc(2)
        memset(flt.tab, 0, sizeof(float) * 2 * flt.tpad)
        flt.tab[flt.tpad - 1] = 1.0
    else:
        dens = L if fl == in_rate else M          # prototype steps per lower-rate sample
        # C = (D + 1) * M - 1 makes the held-back count exactly D for every input length
        flt.D = max(0, (<int64_t>(FILTER_HALF_LENGTH * dens) + 1) // M - 1)
        flt.C = (flt.D + 1) * M - 1
        flt.ntaps = (2 * flt.C) // L + 1
        if flt.ntaps > MAX_FILTER_TAPS:  # refuse before allocating anything
            raise ConfigurationError(
                f"resampling {in_rate} -> {out_rate} Hz needs a {flt.ntaps}-tap filter, above the "
                f"{MAX_FILTER_TAPS}-tap limit (downsampling by at most ~{MAX_FILTER_TAPS // 62}:1); "
                "resample in two stages or pick a closer output rate")
        flt.tpad = _round_up(flt.ntaps, VE_LANES)
        flt.P = L
        flt.interp = False
        if (L + 1) * flt.tpad > _EXACT_TABLE_LIMIT:
            rows = max(64, (_INTERP_ROWS_UPSAMPLE * fl + in_rate - 1) // in_rate)
            if rows < L:
                flt.interp = True
                flt.P = rows
                flt.ntaps += 1
                flt.tpad = _round_up(flt.ntaps, VE_LANES)
        flt._alloc(flt.P + 1)
        if ve_rs_design(flt.tab, flt.P, flt.tpad, flt.ntaps, L, flt.C, <double>in_rate, <double>fl,
                        FILTER_CUTOFF, FILTER_BETA) != 0:
            raise MemoryError("cannot design resampler filter")
    flt.f.L = L
    flt.f.M = M
    flt.f.Mq = M // L
    flt.f.Mr = M % L
    flt.f.P = flt.P
    flt.f.tpad = flt.tpad
    flt.f.interp = flt.interp
    flt.f.tab = flt.tab
    if len(_filter_cache) >= _CACHE_SIZE:
        del _filter_cache[next(iter(_filter_cache))]
    _filter_cache[key] = flt
    return flt


cdef object _as_index(object value, str name):
    """An integer argument: ints and integer-like objects (numpy ints), never bool or float."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None


cdef int64_t _check_rate(object value, str name) except -1:
    rate = _as_index(value, name)
    if rate <= 0 or rate > MAX_RATE:
        raise ConfigurationError(f"{name} must be in 1..{MAX_RATE} Hz, got {rate}")
    return rate


cdef int _check_channels(object value, str name) except -1:
    ch = _as_index(value, name)
    if ch != 1 and ch != 2:
        raise ConfigurationError(f"{name} must be 1 or 2, got {ch}")
    return ch


cdef class Resampler:
    """Streaming PCM16 resampler (polyphase Kaiser-windowed sinc, linear phase).

    ``process(buf)`` accepts any C-contiguous PCM16 buffer (bytes, bytearray, memoryview,
    little-endian int16 numpy arrays; read-only is fine) without copying it, converts the
    new samples once into a float history, and returns new ``bytes`` holding every output
    sample that the input so far determines. A trailing partial frame (odd byte, or half a
    stereo frame) is carried over to the next call; ``flush()`` discards it.

    ``in_channels=2, out_channels=1`` downmixes ``(l + r) / 2`` in the intake pass;
    ``1 -> 2`` duplicates the mono result. Equal rates and channels pass data through:
    whole frames of an immutable ``bytes`` (nothing carried) come back as the same object,
    anything else as a copy. Not thread-safe: one owner drives an instance.
    """

    cdef _Filter flt
    cdef ve_rs_filter *fp
    cdef readonly int in_rate, out_rate, in_channels, out_channels
    cdef int nhist                   # 1 or 2 float histories
    cdef int frame_bytes
    cdef bint passthrough
    cdef float *hist[2]
    cdef int64_t hcap, hlen, hstart  # capacity/valid length (samples), absolute index of hist[k][0]
    cdef float *scratch[2]
    cdef int64_t scap
    cdef int64_t n_in, n_out, i_hi, r
    cdef unsigned char carry[4]
    cdef int carry_len

    def __cinit__(self):
        self.hist[0] = NULL
        self.hist[1] = NULL
        self.scratch[0] = NULL
        self.scratch[1] = NULL
        self.hcap = 0
        self.scap = 0

    def __init__(self, in_rate, out_rate, *, in_channels=1, out_channels=1):
        cdef int k
        cdef int64_t ir = _check_rate(in_rate, "in_rate")
        cdef int64_t orate = _check_rate(out_rate, "out_rate")
        # re-running __init__ must not keep buffers sized for another channel layout
        self.flt = None
        for k in range(2):
            free(self.hist[k])
            free(self.scratch[k])
            self.hist[k] = NULL
            self.scratch[k] = NULL
        self.hcap = 0
        self.scap = 0
        self.in_channels = _check_channels(in_channels, "in_channels")
        self.out_channels = _check_channels(out_channels, "out_channels")
        self.in_rate = <int>ir
        self.out_rate = <int>orate
        self.frame_bytes = 2 * self.in_channels
        self.passthrough = ir == orate and self.in_channels == self.out_channels
        self.nhist = 2 if (self.in_channels == 2 and self.out_channels == 2) else 1
        self.flt = _make_filter(ir, orate)
        self.fp = &self.flt.f
        self._grow_hist(max(4096, 2 * self.flt.tpad))
        self._grow_scratch(_SCRATCH_FRAMES)
        self._reset()

    def __dealloc__(self):
        cdef int k
        for k in range(2):
            free(self.hist[k])
            free(self.scratch[k])

    # ------------------------------------------------------------------ internals

    cdef int _grow(self, float **arrays, int64_t *cap, int64_t need) except -1:
        """Grow each of the ``nhist`` per-channel ``arrays`` to hold ``need`` floats."""
        cdef int k
        cdef int64_t new_cap
        cdef float *p
        if need <= cap[0]:
            return 0
        new_cap = max(need, cap[0] + cap[0] // 2)
        for k in range(self.nhist):
            p = <float *>realloc(arrays[k], sizeof(float) * new_cap)
            if p == NULL:
                raise MemoryError("cannot grow resampler buffers")
            arrays[k] = p
        cap[0] = new_cap
        return 0

    cdef int _grow_hist(self, int64_t need) except -1:
        return self._grow(self.hist, &self.hcap, need)

    cdef int _grow_scratch(self, int64_t need) except -1:
        return self._grow(self.scratch, &self.scap, need)

    cdef void _reset(self) noexcept:
        # history starts with tpad - 1 zeros: inputs before t = 0 are silence
        cdef int k
        cdef int64_t pre = self.fp.tpad - 1
        for k in range(self.nhist):
            memset(self.hist[k], 0, sizeof(float) * pre)
        self.hlen = pre
        self.hstart = -pre
        self.n_in = 0
        self.n_out = 0
        self.i_hi = self.flt.C // self.flt.L
        self.r = self.flt.C % self.flt.L
        self.carry_len = 0

    cdef int _load(self, const unsigned char *src, int64_t nframes) except -1:
        """Append nframes of PCM16 to the float history (caller ensured capacity)."""
        cdef int64_t at = self.hlen
        if self.in_channels == 1:
            ve_rs_load_mono(src, nframes, self.hist[0] + at)
        elif self.nhist == 1:
            ve_rs_load_downmix(src, nframes, self.hist[0] + at)
        else:
            ve_rs_load_split(src, nframes, self.hist[0] + at, self.hist[1] + at)
        self.hlen += nframes
        return 0

    cdef inline int64_t _ready(self) noexcept:
        """Outputs the input so far determines, minus those already produced."""
        cdef int64_t n = (self.n_in * self.flt.L) // self.flt.M - self.flt.D
        return n - self.n_out if n > self.n_out else 0

    cdef object _emit(self, int64_t n, bint as_float):
        """Produce n outputs as a new bytes object, then drop history no longer needed."""
        cdef object out = b""
        if n > 0:
            out = PyBytes_FromStringAndSize(NULL, n * (sizeof(float) if as_float else 2 * self.out_channels))
            self._emit_into(n, <unsigned char *>PyBytes_AS_STRING(out), as_float)
        self._trim()
        return out

    cdef void _emit_into(self, int64_t n, unsigned char *dst, bint as_float) noexcept:
        """Write n outputs to dst (PCM16 frames, or float32 mono when as_float).

        The kernel runs in blocks of at most _SCRATCH_FRAMES outputs so that the float
        scratch and the history window it reads stay in cache however long the call.
        """
        cdef int k
        cdef int64_t m, i0, r0
        while n > 0:
            m = n if n < _SCRATCH_FRAMES else _SCRATCH_FRAMES
            i0 = self.i_hi
            r0 = self.r
            for k in range(self.nhist):
                self.i_hi = i0
                self.r = r0
                ve_rs_run(self.fp, self.hist[k], self.hstart, &self.i_hi, &self.r, m, self.scratch[k])
            if as_float:
                memcpy(dst, self.scratch[0], m * sizeof(float))
                dst += m * sizeof(float)
            else:
                if self.nhist == 2:
                    ve_rs_store_stereo(self.scratch[0], self.scratch[1], m, dst)
                elif self.out_channels == 2:
                    ve_rs_store_dup(self.scratch[0], m, dst)
                else:
                    ve_rs_store_mono(self.scratch[0], m, dst)
                dst += m * 2 * self.out_channels
            self.n_out += m
            n -= m

    cdef void _trim(self) noexcept:
        """Keep only the history window of the next output."""
        cdef int k
        cdef int64_t drop = self.i_hi - (self.fp.tpad - 1) - self.hstart
        if drop > self.hlen:
            drop = self.hlen
        if drop > 0:
            for k in range(self.nhist):
                memmove(self.hist[k], self.hist[k] + drop, sizeof(float) * (self.hlen - drop))
            self.hlen -= drop
            self.hstart += drop

    cdef int _check_ready(self) except -1:
        if self.flt is None:
            raise InvalidState("Resampler.__init__ was not called")
        return 0

    cdef object _process(self, const unsigned char *p, Py_ssize_t nb):
        self._check_ready()
        if nb <= 0:
            return b""
        if self.passthrough:
            return self._passthrough(p, nb)
        self._feed(p, nb)
        return self._emit(self._ready(), False)

    cdef int _feed(self, const unsigned char *p, Py_ssize_t nb) except -1:
        """Carry handling + intake of whole frames into the history (no output)."""
        cdef Py_ssize_t need, nfr, rem
        cdef int fb = self.frame_bytes
        cdef int64_t extra = 0
        if self.carry_len:
            need = fb - self.carry_len
            if nb < need:
                memcpy(self.carry + self.carry_len, p, nb)
                self.carry_len += <int>nb
                return 0
            memcpy(self.carry + self.carry_len, p, need)
            p += need
            nb -= need
            extra = 1
        nfr = nb // fb
        rem = nb - nfr * fb
        self._grow_hist(self.hlen + nfr + extra)
        if extra:
            self._load(self.carry, 1)
            self.carry_len = 0
        if nfr:
            self._load(p, nfr)
        if rem:
            memcpy(self.carry, p + nfr * fb, rem)
            self.carry_len = <int>rem
        self.n_in += nfr + extra
        return 0

    cdef object _passthrough(self, const unsigned char *p, Py_ssize_t nb):
        cdef int fb = self.frame_bytes
        cdef Py_ssize_t total = self.carry_len + nb
        cdef Py_ssize_t keep = total - total % fb
        cdef Py_ssize_t rem = total - keep
        cdef object out = PyBytes_FromStringAndSize(NULL, keep)
        cdef unsigned char *dst = <unsigned char *>PyBytes_AS_STRING(out)
        cdef Py_ssize_t c = self.carry_len
        if keep:
            memcpy(dst, self.carry, c)
            memcpy(dst + c, p, keep - c)
            memcpy(self.carry, p + keep - c, rem)
        else:
            memcpy(self.carry + c, p, nb)
        self.carry_len = <int>rem
        self.n_in += keep // fb
        self.n_out = self.n_in
        return out

    cdef int64_t _pad_for_flush(self) except -1:
        """Zero-pad the input up to the window of the last output; return the tail's length."""
        cdef int k
        cdef int64_t target, n, last, pad
        if self.passthrough:
            return 0
        target = (self.n_in * self.flt.L + self.flt.M - 1) // self.flt.M
        n = target - self.n_out
        if n <= 0:
            return 0
        last = ((self.n_out + n - 1) * self.flt.M + self.flt.C) // self.flt.L
        pad = last - (self.hstart + self.hlen - 1)
        if pad > 0:
            self._grow_hist(self.hlen + pad)
            for k in range(self.nhist):
                memset(self.hist[k] + self.hlen, 0, sizeof(float) * pad)
            self.hlen += pad
        return n

    cdef object _flush(self, bint as_float):
        self._check_ready()
        cdef object out = self._emit(self._pad_for_flush(), as_float)
        self._reset()
        return out

    # ------------------------------------------------------------------ public API

    def process(self, buf) -> bytes:
        """Feed PCM16 ``buf``; return the PCM16 output it makes available now."""
        cdef const unsigned char *data
        cdef Py_ssize_t size
        owner = pcm_span(buf, &data, &size)  # keeps `data` valid during the call
        if size == 0:
            return b""
        if (self.passthrough and self.carry_len == 0 and type(buf) is bytes
                and size % self.frame_bytes == 0 and self.flt is not None):
            # whole frames of an immutable bytes at the same rate: the output is the input
            self.n_in += size // self.frame_bytes
            self.n_out = self.n_in
            return buf
        return self._process(data, size)

    def flush(self) -> bytes:
        """Return the held-back tail (input padded with silence) and start a new stream.

        After ``flush`` the total output of the stream is ``ceil(total_in * out / in)``
        samples per channel. A carried partial frame is discarded. The object is reset and
        can be reused for a new stream.
        """
        return self._flush(False)

    def reset(self) -> None:
        """Forget history, counters and carried bytes (no output)."""
        self._check_ready()
        self._reset()

    @property
    def delay(self) -> int:
        """Output samples (per channel) held back during streaming; 0 for passthrough."""
        self._check_ready()
        return 0 if self.passthrough else self.flt.D

    @property
    def delay_ms(self) -> float:
        """``delay`` in milliseconds at the output rate."""
        self._check_ready()
        return (0 if self.passthrough else self.flt.D) * 1000.0 / self.out_rate

    @property
    def ratio(self) -> tuple[int, int]:
        """Reduced ratio ``(L, M)``: L output samples per M input samples."""
        self._check_ready()
        return (self.flt.L, self.flt.M)

    @property
    def total_in(self) -> int:
        """Input frames consumed since the last reset/flush (carried bytes excluded)."""
        return self.n_in

    @property
    def total_out(self) -> int:
        """Output frames produced since the last reset/flush."""
        return self.n_out

    @property
    def pending(self) -> int:
        """Bytes of a partial input frame carried to the next call."""
        return self.carry_len

    def _filter_info(self) -> dict:
        """Filter parameters and float32 table (for tests and docs; not a stable API)."""
        self._check_ready()
        f = self.flt
        return {"L": f.L, "M": f.M, "C": f.C, "D": f.D, "P": f.P, "tpad": f.tpad,
                "ntaps": f.ntaps, "interp": bool(f.interp), "table": f.table(),
                "beta": FILTER_BETA, "cutoff": FILTER_CUTOFF}

    def _process_f32(self, buf) -> bytes:
        """Test hook: feed mono float32 samples (int16 scale), return float32 output.

        Runs the same kernel as ``process`` without int16 quantization, so the filter can
        be measured in the float domain. Mono-in instances only.
        """
        cdef const float[::1] x = memoryview(buf).cast("B").cast("f")
        cdef Py_ssize_t n = x.shape[0]
        self._check_ready()
        if self.in_channels != 1:
            raise ValueError("_process_f32 needs a mono-input Resampler")
        if self.passthrough:
            return bytes(memoryview(buf).cast("B"))
        if n == 0:
            return b""
        self._grow_hist(self.hlen + n)
        memcpy(self.hist[0] + self.hlen, &x[0], sizeof(float) * n)
        self.hlen += n
        self.n_in += n
        return self._emit(self._ready(), True)

    def _flush_f32(self) -> bytes:
        """Test hook: float32 counterpart of :meth:`flush`."""
        if self.in_channels != 1:
            raise ValueError("_flush_f32 needs a mono-input Resampler")
        return self._flush(True)

    def __repr__(self) -> str:
        return (f"Resampler({self.in_rate}, {self.out_rate}, in_channels={self.in_channels}, "
                f"out_channels={self.out_channels})")


def resample(buf, in_rate, out_rate, *, in_channels=1, out_channels=1) -> bytes:
    """One-shot PCM16 resampling: exactly ``Resampler.process(buf) + Resampler.flush()``.

    Returns ``ceil(frames * out_rate / in_rate)`` frames; a trailing partial frame is
    ignored.
    """
    cdef Resampler rs = Resampler(in_rate, out_rate, in_channels=in_channels,
                                  out_channels=out_channels)
    cdef const unsigned char *data
    cdef Py_ssize_t nb
    cdef int64_t frames, total, pos, piece, n
    cdef unsigned char *dst
    cdef int out_frame
    owner = pcm_span(buf, &data, &nb)
    if rs.passthrough:
        return rs._passthrough(data, nb) if nb else b""
    frames = nb // rs.frame_bytes
    total = (frames * rs.flt.L + rs.flt.M - 1) // rs.flt.M
    if total == 0:
        return b""
    out_frame = 2 * rs.out_channels
    out = PyBytes_FromStringAndSize(NULL, total * out_frame)
    dst = <unsigned char *>PyBytes_AS_STRING(out)
    # fed in pieces, as a stream would be (same per-sample arithmetic, bit-identical),
    # so the float history stays a cache-sized window instead of the whole signal
    pos = 0
    while pos < frames:
        piece = frames - pos if frames - pos < _ONESHOT_PIECE_FRAMES else _ONESHOT_PIECE_FRAMES
        rs._feed(data + pos * rs.frame_bytes, piece * rs.frame_bytes)
        pos += piece
        n = rs._ready()
        rs._emit_into(n, dst, False)
        dst += n * out_frame
        rs._trim()
    rs._emit_into(rs._pad_for_flush(), dst, False)
    rs._reset()
    return out
