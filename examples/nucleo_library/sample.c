/*
 * One 8x8 digit for the example: test image 0 of the digits split (examples/digits_mlp_x.npy
 * row 0, label in examples/digits_y.npy), pixels 0..16 in C order (row by row), as the example
 * MLP (examples/mlp_digits.onnx) takes them: scale 1, zero point 0.
 */
#include <stdint.h>

#include "model.h"

#if EDGE_IN_SIZE != 64
#error "sample.c holds one 8x8 digit: convert examples/mlp_digits.onnx, or bring your own sample"
#endif

const EDGE_IN_T edge_sample[EDGE_IN_SIZE] = {
     0,  0,  7, 16, 14,  3,  0,  0,
     0,  0,  9, 14, 11, 15,  0,  0,
     0,  0,  1,  5,  0, 15,  5,  0,
     0,  0,  0,  0,  0, 16,  5,  0,
     0,  0,  0,  0,  3, 16,  4,  0,
     0,  0,  0,  1, 12, 14,  1,  0,
     0,  0,  5, 12, 16, 16, 14,  1,
     0,  0,  8, 16, 14, 10, 13,  3,
};

const uint32_t edge_sample_label = 2u;
