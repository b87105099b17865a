/*
 * int8 x int8 kernels written the way CMSIS-NN's DSP (Cortex-M4/M7) path computes them:
 * baseline (c) of bench/cortex_m.py, the int8 network a user would otherwise deploy.
 *
 * - Fully connected (CMSIS-NN arm_nn_vec_mat_mult_t_s8 structure): two weight rows per pass,
 *   four columns per step; each int8x4 word is sign-extended into two int16 pairs with SXTB16
 *   and SXTB16 ROR #8, and SMLAD does two 16-bit multiply-accumulates per instruction.
 * - Convolution (CMSIS-NN arm_convolve_s8 structure): NHWC tensors, weights [O][kh][kw][C];
 *   im2col of two output pixels into an int16 buffer ("unordered": each group of four int8
 *   becomes the pairs (x0, x2), (x1, x3), the order SXTB16 / SXTB16 ROR 8 yields for the
 *   weights), then a 2 output channels x 2 pixels kernel (arm_nn_mat_mult_kernel_s8_s16):
 *   four SMLAD per weight pair read.
 * - The output stage is fused as CMSIS-NN fuses requantisation: either the int32 accumulator
 *   is stored, or the per-channel integer threshold (what the binary network needs instead
 *   of requantise + clamp) writes an int8 in {-1, 0, +1}.
 * - Max-pool: NHWC int8, plain compares (CMSIS-NN's non-MVE arm_max_pool_s8 compares bytes
 *   too).
 *
 * CMSIS-NN's DSP sources ask GCC for loop unrolling (#pragma GCC optimize("unroll-loops")),
 * and so does smlad_kernels.c, except for the fully connected kernel, which GCC 12 -O2 makes
 * slower when unrolled (register spills): each kernel is built the faster way. Every other
 * flag is the edge-sdk build's.
 */
#ifndef BENCH_SMLAD_KERNELS_H
#define BENCH_SMLAD_KERNELS_H

#include <stdint.h>

typedef struct {
    const int32_t *tau; /* per channel; flip / zero as in edge-sdk's Threshold layer */
    const int8_t *flip;
    const int8_t *zero;
} smlad_thr_t;

typedef struct {
    int32_t in_c, in_h, in_w;    /* input tensor (stored H, W, C) */
    int32_t out_c, out_h, out_w; /* output tensor (stored H, W, C) */
    int32_t k_h, k_w;            /* kernel */
    int32_t s_h, s_w;            /* strides */
    int32_t p_t, p_l;            /* top / left padding */
    int32_t d_h, d_w;            /* dilations */
} smlad_window_t;

/* Bytes of int16 scratch smlad_conv_s8 needs: two im2col columns, each padded to 4. */
#define SMLAD_CONV_BUF_S16(k) (2 * (((k) + 3) / 4) * 4)

/* Fully connected: y[o] = sum_k w[o][k] x[k]. `thr` NULL: int32 into y32, else int8 into y8. */
void smlad_fc_s8(const int8_t *x, const int8_t *w, int32_t rows, int32_t cols,
                 const smlad_thr_t *thr, int8_t *y8, int32_t *y32);

/* NHWC convolution; `buf` holds SMLAD_CONV_BUF_S16(k) int16, `col` k int8 (k = kh*kw*C). */
void smlad_conv_s8(const int8_t *x, const int8_t *w, const smlad_window_t *p, int16_t *buf,
                   int8_t *col, const smlad_thr_t *thr, int8_t *y8, int32_t *y32);

/* Threshold of int8 data (e.g. the model input): element i belongs to channel i % channels. */
void smlad_threshold_s8(const int8_t *x, int8_t *y, const smlad_thr_t *thr, int32_t channels,
                        int32_t count);
/* Same on int32 accumulators that were not fused into their kernel. */
void smlad_threshold_s32(const int32_t *x, int8_t *y, const smlad_thr_t *thr, int32_t channels,
                         int32_t count);

/* NHWC int8 max-pool (padding never wins). */
void smlad_maxpool_s8(const int8_t *x, int8_t *y, const smlad_window_t *p);

/* [C][H][W] -> [H][W][C] for a multi-channel model input. */
void smlad_chw_to_hwc_s8(const int8_t *x, int8_t *y, int32_t c, int32_t h, int32_t w);

#endif /* BENCH_SMLAD_KERNELS_H */
