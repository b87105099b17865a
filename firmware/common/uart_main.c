/*
 * Stand-alone driver for the Nucleo boards: no debugger, so no semihosting files. Samples are
 * compiled in (edge_test_inputs / edge_test_samples); results go to the board's console UART
 * (its uart.h: BOARD_NAME, uart_* functions, board_cycles) as text, one line per sample:
 *
 *     sample <i> cycles <c>: <out0> <out1> ...
 *
 * followed by "EXIT <status>" from board_exit(). <c> is the DWT cycle count of edge_model_run
 * alone, the number that matters on real silicon (flash wait states, bus stalls).
 *
 * To use real data, add a C file next to model.c defining (non-weak) both
 *     const EDGE_IN_T edge_test_inputs[N * EDGE_IN_SIZE] = {...};
 *     const uint32_t edge_test_samples = N;
 * The weak defaults in inputs_default.c (one all-zero sample) keep the firmware linkable
 * without it. They live in their own file so this one cannot see their size and assume N = 1.
 */
#include <stdint.h>

#include "model.h"
#include "uart.h"

/* Sample layout for the host tools (qemu.py, icount.py), which check their arrays against it:
 * bytes per input element, 1 if EDGE_IN_T is signed, input elements, int32 outputs per sample.
 * Kept by the linker script (KEEP(*(.rodata.edge_fw_io))) although nothing references it. */
const uint32_t edge_fw_io[4] = {
    (uint32_t)sizeof(EDGE_IN_T),
    (uint32_t)((EDGE_IN_T)-1 < 0),
    (uint32_t)(EDGE_IN_SIZE),
    (uint32_t)(EDGE_OUT_SIZE),
};

extern const EDGE_IN_T edge_test_inputs[];
extern const uint32_t edge_test_samples;

static int32_t out_buf[EDGE_OUT_SIZE] __attribute__((aligned(8)));

int main(void)
{
    uart_puts("edge-sdk " BOARD_NAME ": ");
    uart_put_u32(edge_test_samples);
    uart_puts(" samples\n");
    for (uint32_t i = 0; i < edge_test_samples; i++) {
        const EDGE_IN_T *in = &edge_test_inputs[i * (uint32_t)(EDGE_IN_SIZE)];
        const uint32_t start = board_cycles();
        const int rc = edge_model_run(in, out_buf);
        const uint32_t cycles = board_cycles() - start;
        if (rc != 0) {
            uart_puts("edge_model_run returned an error\n");
            return 7;
        }
        uart_puts("sample ");
        uart_put_u32(i);
        uart_puts(" cycles ");
        uart_put_u32(cycles);
        uart_puts(":");
        for (uint32_t j = 0; j < (uint32_t)(EDGE_OUT_SIZE); j++) {
            uart_putc(' ');
            uart_put_i32(out_buf[j]);
        }
        uart_puts("\n");
    }
    return 0;
}
