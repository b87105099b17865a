/* CMSIS-NN-style int8 SMLAD kernels (baseline (c) of bench/cortex_m.py); see smlad_kernels.h.
 *
 * CMSIS-NN's DSP sources ask GCC for unroll-loops, and so does this file, except for the fully
 * connected kernel: with GCC 12 at -O2 unrolling helps the conv and pool loops (~3 % fewer
 * instructions) but makes the fully connected loop ~10 % slower (register spills), so that one
 * is built without it. Each kernel is the faster of the two builds: the strongest baseline. */
#pragma GCC optimize("unroll-loops")
#include "smlad_kernels.h"

#include <arm_acle.h>
#include <string.h>

#if !defined(__ARM_FEATURE_SIMD32) || !defined(__ARM_FEATURE_DSP)
#error "smlad_kernels.c needs the DSP extension (-mcpu=cortex-m4 or later)"
#endif

/* Forced: GCC does not inline across functions built with different optimize pragmas. */
#define INLINE static inline __attribute__((always_inline))

/* SXTB16 with the rotation folded in, as CMSIS-Core's __SXTB16_RORn (GCC keeps a separate ROR
 * when __sxtb16(__ror(x, 8)) is written in C). Not volatile: the compiler may schedule it. */
INLINE int32_t sxtb16_ror8(int32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

INLINE int32_t read_s8x4_ia(const int8_t **p)
{
    int32_t v;
    memcpy(&v, *p, 4); /* one LDR: Cortex-M4 allows unaligned word loads */
    *p += 4;
    return v;
}

INLINE int32_t read_s16x2_ia(const int16_t **p)
{
    int32_t v;
    memcpy(&v, *p, 4);
    *p += 2;
    return v;
}

INLINE void write_s16x2_ia(int16_t **p, int32_t v)
{
    memcpy(*p, &v, 4);
    *p += 2;
}

INLINE int8_t threshold_one(int32_t v, const smlad_thr_t *t, int32_t c)
{
    const int32_t tau = t->tau[c];
    if (t->flip[c]) {
        if (v <= tau) {
            return 1;
        }
        return (t->zero[c] && v == tau + 1) ? 0 : -1;
    }
    if (v >= tau) {
        return 1;
    }
    return (t->zero[c] && v == tau - 1) ? 0 : -1;
}

/* The fused output stage: element `index` of channel `c`. */
INLINE void store(int32_t acc, int32_t c, int32_t index, const smlad_thr_t *thr,
                         int8_t *y8, int32_t *y32)
{
    if (thr != 0) {
        y8[index] = threshold_one(acc, thr, c);
    } else {
        y32[index] = acc;
    }
}

/* ------------------------------------------------------------------ fully connected */
#pragma GCC push_options
#pragma GCC optimize("no-unroll-loops")
void smlad_fc_s8(const int8_t *x, const int8_t *w, int32_t rows, int32_t cols,
                 const smlad_thr_t *thr, int8_t *y8, int32_t *y32)
{
    const int32_t col_loop = cols / 4;
    int32_t r = 0;
    for (; r + 2 <= rows; r += 2) {
        const int8_t *xp = x;
        const int8_t *w0 = w + r * cols;
        const int8_t *w1 = w0 + cols;
        int32_t acc0 = 0;
        int32_t acc1 = 0;
        for (int32_t j = col_loop; j != 0; j--) {
            const int32_t v = read_s8x4_ia(&xp);
            const int32_t v_odd = sxtb16_ror8(v); /* (x1, x3) */
            const int32_t v_even = __sxtb16(v);   /* (x0, x2) */

            int32_t k = read_s8x4_ia(&w0);
            acc0 = __smlad(sxtb16_ror8(k), v_odd, acc0);
            acc0 = __smlad(__sxtb16(k), v_even, acc0);

            k = read_s8x4_ia(&w1);
            acc1 = __smlad(sxtb16_ror8(k), v_odd, acc1);
            acc1 = __smlad(__sxtb16(k), v_even, acc1);
        }
        for (int32_t j = col_loop * 4; j < cols; j++) {
            const int32_t v = *xp++;
            acc0 += v * *w0++;
            acc1 += v * *w1++;
        }
        store(acc0, r, r, thr, y8, y32);
        store(acc1, r + 1, r + 1, thr, y8, y32);
    }
    if (r < rows) {
        const int8_t *xp = x;
        const int8_t *w0 = w + r * cols;
        int32_t acc0 = 0;
        for (int32_t j = col_loop; j != 0; j--) {
            const int32_t v = read_s8x4_ia(&xp);
            const int32_t k = read_s8x4_ia(&w0);
            acc0 = __smlad(sxtb16_ror8(k), sxtb16_ror8(v), acc0);
            acc0 = __smlad(__sxtb16(k), __sxtb16(v), acc0);
        }
        for (int32_t j = col_loop * 4; j < cols; j++) {
            acc0 += *xp++ * *w0++;
        }
        store(acc0, r, r, thr, y8, y32);
    }
}

#pragma GCC pop_options

/* ------------------------------------------------------------------ convolution */
/* int8 -> int16 with each group of four reordered to (x0, x2, x1, x3); the tail stays in
 * order (the kernels' scalar tail loop reads it so). */
static void s8_to_s16_unordered(const int8_t *src, int16_t *dst, int32_t n)
{
    for (int32_t j = n / 4; j != 0; j--) {
        const int32_t v = read_s8x4_ia(&src);
        write_s16x2_ia(&dst, __sxtb16(v));
        write_s16x2_ia(&dst, sxtb16_ror8(v));
    }
    for (int32_t j = n % 4; j != 0; j--) {
        *dst++ = *src++;
    }
}

/* Two im2col columns (pixels pix, pix + 1) against every output channel. */
static void mat_mult_2x2(const int8_t *w, const int16_t *cols, int32_t out_c, int32_t k,
                         int32_t aligned_k, int32_t pix, const smlad_thr_t *thr, int8_t *y8,
                         int32_t *y32)
{
    const int32_t out0 = pix * out_c;
    const int32_t out1 = out0 + out_c;
    int32_t r = 0;
    for (; r + 2 <= out_c; r += 2) {
        const int8_t *a0 = w + r * k;
        const int8_t *a1 = a0 + k;
        const int16_t *b0 = cols;
        const int16_t *b1 = cols + aligned_k;
        int32_t c00 = 0, c01 = 0, c10 = 0, c11 = 0; /* c<row><pixel> */
        for (int32_t j = k / 4; j != 0; j--) {
            const int32_t wa = read_s8x4_ia(&a0);
            const int32_t wb = read_s8x4_ia(&a1);
            const int32_t a_even = __sxtb16(wa), a_odd = sxtb16_ror8(wa);
            const int32_t b_even = __sxtb16(wb), b_odd = sxtb16_ror8(wb);

            int32_t x0 = read_s16x2_ia(&b0);
            int32_t x1 = read_s16x2_ia(&b1);
            c00 = __smlad(a_even, x0, c00);
            c01 = __smlad(a_even, x1, c01);
            c10 = __smlad(b_even, x0, c10);
            c11 = __smlad(b_even, x1, c11);

            x0 = read_s16x2_ia(&b0);
            x1 = read_s16x2_ia(&b1);
            c00 = __smlad(a_odd, x0, c00);
            c01 = __smlad(a_odd, x1, c01);
            c10 = __smlad(b_odd, x0, c10);
            c11 = __smlad(b_odd, x1, c11);
        }
        for (int32_t j = k % 4; j != 0; j--) {
            const int32_t wa = *a0++, wb = *a1++;
            const int32_t x0 = *b0++, x1 = *b1++;
            c00 += wa * x0;
            c01 += wa * x1;
            c10 += wb * x0;
            c11 += wb * x1;
        }
        store(c00, r, out0 + r, thr, y8, y32);
        store(c10, r + 1, out0 + r + 1, thr, y8, y32);
        store(c01, r, out1 + r, thr, y8, y32);
        store(c11, r + 1, out1 + r + 1, thr, y8, y32);
    }
    if (r < out_c) {
        const int8_t *a0 = w + r * k;
        const int16_t *b0 = cols;
        const int16_t *b1 = cols + aligned_k;
        int32_t c00 = 0, c01 = 0;
        for (int32_t j = k / 4; j != 0; j--) {
            const int32_t wa = read_s8x4_ia(&a0);
            const int32_t a_even = __sxtb16(wa), a_odd = sxtb16_ror8(wa);
            c00 = __smlad(a_even, read_s16x2_ia(&b0), c00);
            c01 = __smlad(a_even, read_s16x2_ia(&b1), c01);
            c00 = __smlad(a_odd, read_s16x2_ia(&b0), c00);
            c01 = __smlad(a_odd, read_s16x2_ia(&b1), c01);
        }
        for (int32_t j = k % 4; j != 0; j--) {
            const int32_t wa = *a0++;
            c00 += wa * *b0++;
            c01 += wa * *b1++;
        }
        store(c00, r, out0 + r, thr, y8, y32);
        store(c01, r, out1 + r, thr, y8, y32);
    }
}

/* A single left-over column (odd number of output pixels). */
static void mat_mult_1col(const int8_t *w, const int16_t *col, int32_t out_c, int32_t k,
                          int32_t pix, const smlad_thr_t *thr, int8_t *y8, int32_t *y32)
{
    for (int32_t r = 0; r < out_c; r++) {
        const int8_t *a0 = w + r * k;
        const int16_t *b0 = col;
        int32_t acc = 0;
        for (int32_t j = k / 4; j != 0; j--) {
            const int32_t wa = read_s8x4_ia(&a0);
            acc = __smlad(__sxtb16(wa), read_s16x2_ia(&b0), acc);
            acc = __smlad(sxtb16_ror8(wa), read_s16x2_ia(&b0), acc);
        }
        for (int32_t j = k % 4; j != 0; j--) {
            acc += *a0++ * *b0++;
        }
        store(acc, r, pix * out_c + r, thr, y8, y32);
    }
}

void smlad_conv_s8(const int8_t *x, const int8_t *w, const smlad_window_t *p, int16_t *buf,
                   int8_t *col, const smlad_thr_t *thr, int8_t *y8, int32_t *y32)
{
    const int32_t c_in = p->in_c;
    const int32_t k = p->k_h * p->k_w * c_in;
    const int32_t aligned_k = (k + 3) / 4 * 4;
    int32_t filled = 0;
    int32_t pix = 0;
    for (int32_t oy = 0; oy < p->out_h; oy++) {
        for (int32_t ox = 0; ox < p->out_w; ox++) {
            int8_t *dst = col;
            for (int32_t ky = 0; ky < p->k_h; ky++) {
                const int32_t iy = oy * p->s_h - p->p_t + ky * p->d_h;
                for (int32_t kx = 0; kx < p->k_w; kx++) {
                    const int32_t ix = ox * p->s_w - p->p_l + kx * p->d_w;
                    if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                        memset(dst, 0, (size_t)c_in);
                    } else {
                        memcpy(dst, x + (iy * p->in_w + ix) * c_in, (size_t)c_in);
                    }
                    dst += c_in;
                }
            }
            s8_to_s16_unordered(col, buf + filled * aligned_k, k);
            filled++;
            if (filled == 2) {
                mat_mult_2x2(w, buf, p->out_c, k, aligned_k, pix, thr, y8, y32);
                pix += 2;
                filled = 0;
            }
        }
    }
    if (filled) {
        mat_mult_1col(w, buf, p->out_c, k, pix, thr, y8, y32);
    }
}

/* ------------------------------------------------------------------ elementwise, pool */
void smlad_threshold_s8(const int8_t *x, int8_t *y, const smlad_thr_t *thr, int32_t channels,
                        int32_t count)
{
    int32_t c = 0;
    for (int32_t i = 0; i < count; i++) {
        y[i] = threshold_one(x[i], thr, c);
        if (++c == channels) {
            c = 0;
        }
    }
}

void smlad_threshold_s32(const int32_t *x, int8_t *y, const smlad_thr_t *thr, int32_t channels,
                         int32_t count)
{
    int32_t c = 0;
    for (int32_t i = 0; i < count; i++) {
        y[i] = threshold_one(x[i], thr, c);
        if (++c == channels) {
            c = 0;
        }
    }
}

void smlad_maxpool_s8(const int8_t *x, int8_t *y, const smlad_window_t *p)
{
    const int32_t ch = p->in_c;
    for (int32_t oy = 0; oy < p->out_h; oy++) {
        for (int32_t ox = 0; ox < p->out_w; ox++) {
            int8_t *out = y + (oy * p->out_w + ox) * ch;
            for (int32_t c = 0; c < ch; c++) {
                out[c] = -128;
            }
            for (int32_t ky = 0; ky < p->k_h; ky++) {
                const int32_t iy = oy * p->s_h - p->p_t + ky * p->d_h;
                if (iy < 0 || iy >= p->in_h) {
                    continue;
                }
                for (int32_t kx = 0; kx < p->k_w; kx++) {
                    const int32_t ix = ox * p->s_w - p->p_l + kx * p->d_w;
                    if (ix < 0 || ix >= p->in_w) {
                        continue;
                    }
                    const int8_t *in = x + (iy * p->in_w + ix) * ch;
                    for (int32_t c = 0; c < ch; c++) {
                        if (in[c] > out[c]) {
                            out[c] = in[c];
                        }
                    }
                }
            }
        }
    }
}

void smlad_chw_to_hwc_s8(const int8_t *x, int8_t *y, int32_t c, int32_t h, int32_t w)
{
    for (int32_t i = 0; i < c; i++) {
        for (int32_t j = 0; j < h * w; j++) {
            y[j * c + i] = x[i * h * w + j];
        }
    }
}
