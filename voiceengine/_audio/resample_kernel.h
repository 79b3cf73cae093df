/* Streaming polyphase resampler kernel (included from resample.pyx).
 *
 * Everything numeric lives here so that the arithmetic of one output sample is a single
 * function of (coefficient row, history window): streaming and one-shot runs call the
 * same code on the same float history, hence bit-identical output for any split.
 *
 * Determinism notes (why the code looks the way it does):
 *  - The dot product accumulates into VE_LANES fixed lanes indexed by tap number and
 *    reduces them in a fixed order. The compiler therefore never chooses the summation
 *    order from runtime pointer alignment (alignment peeling would make the result depend
 *    on where a chunk boundary fell).
 *  - Rounding to int16 uses the 1.5*2^23 trick (round half to even) after clamping, which
 *    vectorizes on baseline SSE2 and does not depend on the libm rounding mode helpers.
 *  - Runtime dispatch (target_clones) picks one clone per process, so all calls in a
 *    process share it. Different machines may differ in the last bit (FMA), never a run.
 *  - The float -> int16 stores vectorize only because setup.py compiles with
 *    -fno-trapping-math (CPython never enables FP traps): with trapping math gcc keeps
 *    the clamps' compares as branches and the AVX2 clone's store loop scalar (10-20 % of a
 *    call). The flag changes no value.
 */
#ifndef VE_RESAMPLE_KERNEL_H
#define VE_RESAMPLE_KERNEL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VE_LANES 16

/* target_clones needs GNU ifunc: gcc/clang on x86_64 with glibc (not musl, not macOS). */
#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) && defined(__GNUC__) \
    && !defined(VE_NO_CLONES)
#  if defined(__clang__)
#    define VE_CLONES __attribute__((target_clones("avx2", "default")))
#  elif __GNUC__ >= 11
#    define VE_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#  else
#    define VE_CLONES __attribute__((target_clones("avx2", "default")))
#  endif
#else
#  define VE_CLONES
#endif

#if defined(_OPENMP) || defined(__GNUC__)
#  define VE_SIMD _Pragma("omp simd")
#else
#  define VE_SIMD
#endif

#if defined(_MSC_VER)
#  define VE_RESTRICT __restrict
#else
#  define VE_RESTRICT __restrict__
#endif

typedef struct {
    int64_t L;        /* output steps per input sample (reduced ratio out/g) */
    int64_t M;        /* input steps per output sample (reduced ratio in/g) */
    int64_t Mq, Mr;   /* M = Mq*L + Mr */
    int64_t P;        /* coefficient rows: == L (exact) or a fixed grid (interpolated) */
    int64_t tpad;     /* taps per row, multiple of VE_LANES */
    int interp;       /* 1: linear interpolation between rows q and q+1 */
    const float *tab; /* (P+1) rows of tpad floats; taps stored reversed */
} ve_rs_filter;

/* ---------------------------------------------------------------- filter design */

static double ve_bessel_i0(double x)
{
    /* power series; converges fast for the beta range used here (<= 20) */
    double sum = 1.0, term = 1.0, q = x * x / 4.0;
    for (int k = 1; k < 200; k++) {
        term *= q / ((double)k * (double)k);
        sum += term;
        if (term < sum * 1e-17) break;
    }
    return sum;
}

/* Fill (P+1) rows x tpad taps. Row q holds the taps for fractional input position q/P;
 * tap j (stored at index tpad-1-j) multiplies input i_hi - j, at distance
 * s = q/P + j - C/L input samples from the output instant. The kernel is a Kaiser
 * windowed sinc in lower-rate units u = s * fl / fin with cutoff fc (cycles per
 * lower-rate sample) and window half-width (C+1) prototype steps. Rows are scaled so
 * that the mean DC gain of rows 0..P-1 is exactly 1. Returns 0 on success. */
static int ve_rs_design(float *tab, int64_t P, int64_t tpad, int64_t ntaps, int64_t L, int64_t C,
                        double fin, double fl, double fc, double beta)
{
    const double dens = (double)L * fin / fl;         /* prototype steps per lower-rate sample */
    const double U = ((double)C + 1.0) / dens;         /* window half-width, lower-rate units */
    const double i0b = ve_bessel_i0(beta);
    const double pi = 3.14159265358979323846;
    double *row = (double *)malloc(sizeof(double) * (size_t)tpad);
    double total = 0.0;
    if (!row) return -1;
    for (int64_t q = 0; q <= P; q++) {
        double rsum = 0.0;
        for (int64_t j = 0; j < tpad; j++) {
            double v = 0.0;
            if (j < ntaps) {
                double s = (double)q / (double)P + (double)j - (double)C / (double)L;
                double u = s * fl / fin;
                double au = fabs(u);
                if (au < U) {
                    double x = 2.0 * fc * u;
                    double sinc = (x == 0.0) ? 1.0 : sin(pi * x) / (pi * x);
                    double r = u / U;
                    v = 2.0 * fc * sinc * ve_bessel_i0(beta * sqrt(1.0 - r * r)) / i0b;
                }
            }
            row[j] = v;
            rsum += v;
        }
        if (q < P) total += rsum;
        for (int64_t j = 0; j < tpad; j++) tab[q * tpad + (tpad - 1 - j)] = (float)row[j];
    }
    free(row);
    {
        const double scale = (double)P / total;
        const int64_t n = (P + 1) * tpad;
        for (int64_t k = 0; k < n; k++) tab[k] = (float)((double)tab[k] * scale);
    }
    return 0;
}

/* ---------------------------------------------------------------- kernel */

#if defined(__GNUC__)
/* GCC/clang vector extensions: lowered to AVX in the x86-64-v3 clone and to SSE pairs in
 * the default one; lane assignment is by tap index, never by pointer alignment. */
typedef float ve_v8f __attribute__((vector_size(32)));
typedef float ve_v8fu __attribute__((vector_size(32), aligned(4)));
typedef float ve_v4f __attribute__((vector_size(16)));

static inline __attribute__((always_inline)) float ve_dot(const float *VE_RESTRICT c,
                                                          const float *VE_RESTRICT x, int64_t n)
{
    ve_v8f a0 = {0, 0, 0, 0, 0, 0, 0, 0}, a1 = {0, 0, 0, 0, 0, 0, 0, 0};
    ve_v4f lo, hi, q;
    for (int64_t t = 0; t < n; t += VE_LANES) {
        a0 += *(const ve_v8fu *)(c + t) * *(const ve_v8fu *)(x + t);
        a1 += *(const ve_v8fu *)(c + t + 8) * *(const ve_v8fu *)(x + t + 8);
    }
    a0 += a1;
    /* fixed reduction order: lanes l and l+8, then halves, then pairs */
    memcpy(&lo, &a0, sizeof lo);
    memcpy(&hi, (const char *)&a0 + sizeof lo, sizeof hi);
    q = lo + hi;
    return (q[0] + q[2]) + (q[1] + q[3]);
}
#else
static inline float ve_dot(const float *VE_RESTRICT c, const float *VE_RESTRICT x, int64_t n)
{
    float acc[VE_LANES];
    for (int l = 0; l < VE_LANES; l++) acc[l] = 0.0f;
    for (int64_t t = 0; t < n; t += VE_LANES) {
        VE_SIMD
        for (int l = 0; l < VE_LANES; l++) acc[l] += c[t + l] * x[t + l];
    }
    /* same fixed order as the vector version: lanes l and l+8, then halves, then pairs */
    for (int l = 0; l < 8; l++) acc[l] += acc[l + 8];
    for (int l = 0; l < 4; l++) acc[l] += acc[l + 4];
    return (acc[0] + acc[2]) + (acc[1] + acc[3]);
}
#endif

/* Four outputs that share one coefficient row, their windows x0..x3: the row is loaded
 * once per tap block for all four (the single-output loop is load-bound: two loads per
 * multiply-add). Each output keeps its own two accumulators and the fixed reduction of
 * ve_dot, so its value is bit-identical to ve_dot(c, xg, n): grouping never changes a
 * result, only how many loads it takes. */
#if defined(__GNUC__)
static inline __attribute__((always_inline)) float ve_hsum(ve_v8f a)
{
    ve_v4f lo, hi, q;
    memcpy(&lo, &a, sizeof lo);
    memcpy(&hi, (const char *)&a + sizeof lo, sizeof hi);
    q = lo + hi;
    return (q[0] + q[2]) + (q[1] + q[3]);
}

static inline __attribute__((always_inline)) void ve_dot4(const float *VE_RESTRICT c,
                                                          const float *x0, const float *x1,
                                                          const float *x2, const float *x3,
                                                          int64_t n, float *VE_RESTRICT out,
                                                          int64_t stride)
{
    ve_v8f a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0}, d0 = {0}, d1 = {0}, e0 = {0}, e1 = {0};
    for (int64_t t = 0; t < n; t += VE_LANES) {
        const ve_v8f c0 = *(const ve_v8fu *)(c + t), c1 = *(const ve_v8fu *)(c + t + 8);
        a0 += c0 * *(const ve_v8fu *)(x0 + t);
        a1 += c1 * *(const ve_v8fu *)(x0 + t + 8);
        b0 += c0 * *(const ve_v8fu *)(x1 + t);
        b1 += c1 * *(const ve_v8fu *)(x1 + t + 8);
        d0 += c0 * *(const ve_v8fu *)(x2 + t);
        d1 += c1 * *(const ve_v8fu *)(x2 + t + 8);
        e0 += c0 * *(const ve_v8fu *)(x3 + t);
        e1 += c1 * *(const ve_v8fu *)(x3 + t + 8);
    }
    out[0] = ve_hsum(a0 + a1);
    out[stride] = ve_hsum(b0 + b1);
    out[2 * stride] = ve_hsum(d0 + d1);
    out[3 * stride] = ve_hsum(e0 + e1);
}
#else
static inline void ve_dot4(const float *VE_RESTRICT c, const float *x0, const float *x1,
                           const float *x2, const float *x3, int64_t n, float *VE_RESTRICT out,
                           int64_t stride)
{
    out[0] = ve_dot(c, x0, n);
    out[stride] = ve_dot(c, x1, n);
    out[2 * stride] = ve_dot(c, x2, n);
    out[3 * stride] = ve_dot(c, x3, n);
}
#endif

/* Compute n outputs. hist[k] is input sample (hist_start + k); the first output has its
 * newest input at absolute index *i_hi and row phase *r (numerator over L). Advances
 * *i_hi and *r past the produced outputs.
 *
 * Exact tables: outputs k and k + L use the same row, their windows M inputs apart, so
 * the outputs are walked phase by phase (k, k + L, k + 2L, ...) in groups of four that
 * share the row's loads (integer ratios such as 2:1 have L = 1: every output). */
VE_CLONES
static void ve_rs_run(const ve_rs_filter *f, const float *VE_RESTRICT hist, int64_t hist_start,
                     int64_t *i_hi_io, int64_t *r_io, int64_t n, float *VE_RESTRICT out)
{
    const int64_t tpad = f->tpad, L = f->L, M = f->M, Mq = f->Mq, Mr = f->Mr, P = f->P;
    const float *tab = f->tab;
    int64_t i_hi = *i_hi_io, r = *r_io;
    if (!f->interp) {
        const int64_t phases = n < L ? n : L;
        const int64_t end = i_hi * L + r + n * M; /* position after n outputs, over L */
        for (int64_t k = 0; k < phases; k++) {
            const float *row = tab + r * tpad;
            const float *x = hist + (i_hi - hist_start) - (tpad - 1);
            int64_t j = k;
            for (; j + 3 * L < n; j += 4 * L, x += 4 * M)
                ve_dot4(row, x, x + M, x + 2 * M, x + 3 * M, tpad, out + j, L);
            for (; j < n; j += L, x += M)
                out[j] = ve_dot(row, x, tpad);
            i_hi += Mq;
            r += Mr;
            if (r >= L) { r -= L; i_hi++; }
        }
        i_hi = end / L;
        r = end % L;
    } else {
        for (int64_t k = 0; k < n; k++) {
            const float *x = hist + (i_hi - hist_start) - (tpad - 1);
            const int64_t qq = r * P;
            const int64_t q = qq / L;
            const float w = (float)(qq - q * L) / (float)L;
            const float a = ve_dot(tab + q * tpad, x, tpad);
            const float b = ve_dot(tab + (q + 1) * tpad, x, tpad);
            out[k] = a + w * (b - a);
            i_hi += Mq;
            r += Mr;
            if (r >= L) { r -= L; i_hi++; }
        }
    }
    *i_hi_io = i_hi;
    *r_io = r;
}

/* ---------------------------------------------------------------- conversions */

static inline float ve_round_clamp(float v)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23: forces rounding to an integer */
    v = v > 32767.0f ? 32767.0f : v;
    v = v < -32768.0f ? -32768.0f : v;
    return (v + magic) - magic;
}

VE_CLONES
static void ve_rs_store_mono(const float *VE_RESTRICT src, int64_t n, unsigned char *VE_RESTRICT dst)
{
    int16_t *d = (int16_t *)dst; /* bytes objects are suitably aligned */
    VE_SIMD
    for (int64_t k = 0; k < n; k++) d[k] = (int16_t)ve_round_clamp(src[k]);
}

VE_CLONES
static void ve_rs_store_dup(const float *VE_RESTRICT src, int64_t n, unsigned char *VE_RESTRICT dst)
{
    int16_t *d = (int16_t *)dst;
    for (int64_t k = 0; k < n; k++) {
        int16_t v = (int16_t)ve_round_clamp(src[k]);
        d[2 * k] = v;
        d[2 * k + 1] = v;
    }
}

VE_CLONES
static void ve_rs_store_stereo(const float *VE_RESTRICT a, const float *VE_RESTRICT b, int64_t n,
                               unsigned char *VE_RESTRICT dst)
{
    int16_t *d = (int16_t *)dst;
    for (int64_t k = 0; k < n; k++) {
        d[2 * k] = (int16_t)ve_round_clamp(a[k]);
        d[2 * k + 1] = (int16_t)ve_round_clamp(b[k]);
    }
}

/* Input may sit at any byte address (memoryview slices): read through memcpy. */
static inline int16_t ve_ld16(const unsigned char *p)
{
    int16_t v;
    memcpy(&v, p, 2);
    return v;
}

VE_CLONES
static void ve_rs_load_mono(const unsigned char *VE_RESTRICT src, int64_t n, float *VE_RESTRICT dst)
{
    VE_SIMD
    for (int64_t k = 0; k < n; k++) dst[k] = (float)ve_ld16(src + 2 * k);
}

/* 2 -> 1 downmix in the intake pass: (l + r) * 0.5 is exact in float. */
VE_CLONES
static void ve_rs_load_downmix(const unsigned char *VE_RESTRICT src, int64_t n, float *VE_RESTRICT dst)
{
    VE_SIMD
    for (int64_t k = 0; k < n; k++)
        dst[k] = ((float)ve_ld16(src + 4 * k) + (float)ve_ld16(src + 4 * k + 2)) * 0.5f;
}

VE_CLONES
static void ve_rs_load_split(const unsigned char *VE_RESTRICT src, int64_t n, float *VE_RESTRICT a,
                             float *VE_RESTRICT b)
{
    for (int64_t k = 0; k < n; k++) {
        a[k] = (float)ve_ld16(src + 4 * k);
        b[k] = (float)ve_ld16(src + 4 * k + 2);
    }
}

#endif /* VE_RESAMPLE_KERNEL_H */
