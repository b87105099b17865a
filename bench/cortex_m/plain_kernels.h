/*
 * Plain C reference kernels for bench/cortex_m.py, baseline (b).
 *
 * What a developer writes without thinking about the instruction set: NCHW tensors, int8
 * activations (the multi-bit input or ±1 after a threshold), int8 weights in {-1, +1} stored
 * one byte per weight as w[O][K] (K in the IR's im2col order c, kh, kw), int32 accumulators,
 * one multiply-accumulate per weight in a simple loop.
 *
 * Header-only and always inlined: bench/cortex_m.py generates model.c (weights, buffers, the
 * calls with every shape a literal or a static const struct) for each model, so the compiler
 * sees the shapes as compile-time constants, as in C written for one network. model.c is
 * built with the same flags as the edge-sdk generated code.
 */
#ifndef BENCH_PLAIN_KERNELS_H
#define BENCH_PLAIN_KERNELS_H

#include <stdint.h>

typedef struct {
    int32_t in_c, in_h, in_w;    /* input tensor C, H, W */
    int32_t out_c, out_h, out_w; /* output tensor O, OH, OW */
    int32_t k_h, k_w;            /* kernel */
    int32_t s_h, s_w;            /* strides */
    int32_t p_t, p_l;            /* top / left padding (the rest follows from out_h, out_w) */
    int32_t d_h, d_w;            /* dilations */
} plain_window_t;

#define PLAIN_KERNEL static inline __attribute__((always_inline))

/* y[o] = sum_k w[o][k] * x[k] */
PLAIN_KERNEL void plain_dense(const int8_t *x, const int8_t *w, int32_t *y, int32_t rows,
                              int32_t cols)
{
    for (int32_t o = 0; o < rows; o++) {
        int32_t acc = 0;
        for (int32_t k = 0; k < cols; k++) {
            acc += (int32_t)w[o * cols + k] * (int32_t)x[k];
        }
        y[o] = acc;
    }
}

/* y[o][oy][ox] = sum_{c,ky,kx} w[o][c][ky][kx] * x[c][iy][ix], padded taps contribute 0 */
PLAIN_KERNEL void plain_conv2d(const int8_t *x, const int8_t *w, int32_t *y,
                               const plain_window_t *p)
{
    for (int32_t o = 0; o < p->out_c; o++) {
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                int32_t acc = 0;
                for (int32_t c = 0; c < p->in_c; c++) {
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
                            const int8_t wv = w[((o * p->in_c + c) * p->k_h + ky) * p->k_w + kx];
                            const int8_t xv = x[(c * p->in_h + iy) * p->in_w + ix];
                            acc += (int32_t)wv * (int32_t)xv;
                        }
                    }
                }
                y[(o * p->out_h + oy) * p->out_w + ox] = acc;
            }
        }
    }
}

/* +1 if v >= tau (v <= tau when flip) else -1; 0 on the tie value next to tau on the -1
 * side when zero (edge-sdk's Threshold layer). Element (c, i) is at x[c * inner + i]. */
PLAIN_KERNEL int8_t plain_threshold_one(int32_t v, int32_t tau, int8_t flip, int8_t zero)
{
    if (flip) {
        if (v <= tau) {
            return 1;
        }
        return (zero && v == tau + 1) ? 0 : -1;
    }
    if (v >= tau) {
        return 1;
    }
    return (zero && v == tau - 1) ? 0 : -1;
}

PLAIN_KERNEL void plain_threshold_s32(const int32_t *x, int8_t *y, const int32_t *tau,
                                      const int8_t *flip, const int8_t *zero, int32_t channels,
                                      int32_t inner)
{
    for (int32_t c = 0; c < channels; c++) {
        for (int32_t i = 0; i < inner; i++) {
            y[c * inner + i] = plain_threshold_one(x[c * inner + i], tau[c], flip[c], zero[c]);
        }
    }
}

PLAIN_KERNEL void plain_threshold_s8(const int8_t *x, int8_t *y, const int32_t *tau,
                                     const int8_t *flip, const int8_t *zero, int32_t channels,
                                     int32_t inner)
{
    for (int32_t c = 0; c < channels; c++) {
        for (int32_t i = 0; i < inner; i++) {
            y[c * inner + i] = plain_threshold_one(x[c * inner + i], tau[c], flip[c], zero[c]);
        }
    }
}

/* max over each window (padding never wins), int8 NCHW; out_c == in_c */
PLAIN_KERNEL void plain_maxpool_s8(const int8_t *x, int8_t *y, const plain_window_t *p)
{
    for (int32_t c = 0; c < p->out_c; c++) {
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                int32_t best = -128;
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
                        const int32_t v = x[(c * p->in_h + iy) * p->in_w + ix];
                        if (v > best) {
                            best = v;
                        }
                    }
                }
                y[(c * p->out_h + oy) * p->out_w + ox] = (int8_t)best;
            }
        }
    }
}

#endif /* BENCH_PLAIN_KERNELS_H */
