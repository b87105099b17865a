/*
 * Example: an edge-sdk library build (convert --target cortex-m --library) inside a firmware
 * for the NUCLEO-F446RE. edge-sdk's board files (firmware/common/startup.c,
 * firmware/nucleo-f446re/board.c) stand in for the project's own start-up code and UART driver.
 *
 * Runs the model on one compiled-in 8x8 digit (sample.c), applies the model's output ops
 * (edge_model_output: per-class scale and offset, which can change the argmax) and prints over
 * USART2 (115200 8N1, the ST-LINK's virtual COM port):
 *
 *     edge-sdk library example: class 2 (label 2), <c> cycles
 *     scores: <EDGE_OUT_SIZE int32 scores>
 *     EXIT 0
 *
 * The exit status is 0 when the class equals the sample's label, else 1.
 */
#include <stdint.h>

#include "model.h"
#include "uart.h"

extern const EDGE_IN_T edge_sample[EDGE_IN_SIZE];
extern const uint32_t edge_sample_label;

static int32_t scores[EDGE_OUT_SIZE];
static float outputs[EDGE_OUT_SIZE];

int main(void)
{
    const uint32_t start = board_cycles();
    if (edge_model_run(edge_sample, scores) != 0) {
        uart_puts("edge_model_run returned an error\n");
        return 7;
    }
    edge_model_output(scores, outputs);
    const uint32_t cycles = board_cycles() - start;

    uint32_t best = 0u; /* the first of equal maxima, as NumPy's argmax */
    for (uint32_t i = 1u; i < (uint32_t)(EDGE_OUT_SIZE); i++) {
        if (outputs[i] > outputs[best]) {
            best = i;
        }
    }

    uart_puts("edge-sdk library example: class ");
    uart_put_u32(best);
    uart_puts(" (label ");
    uart_put_u32(edge_sample_label);
    uart_puts("), ");
    uart_put_u32(cycles);
    uart_puts(" cycles\nscores:");
    for (uint32_t i = 0u; i < (uint32_t)(EDGE_OUT_SIZE); i++) {
        uart_putc(' ');
        uart_put_i32(scores[i]);
    }
    uart_puts("\n");
    return best == edge_sample_label ? 0 : 1;
}
