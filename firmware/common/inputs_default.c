/*
 * Default compiled-in test data for the Nucleo driver (uart_main.c): one all-zero sample.
 * Weak, so a non-weak definition in a file next to model.c replaces both symbols.
 */
#include <stdint.h>

#include "model.h"

__attribute__((weak)) const EDGE_IN_T edge_test_inputs[EDGE_IN_SIZE] = {0};
__attribute__((weak)) const uint32_t edge_test_samples = 1u;
