/*
 * Test driver for QEMU: runs the model on every sample of edge_in.bin, writes edge_out.bin.
 *
 * edge_in.bin holds N samples back to back, EDGE_IN_SIZE elements of EDGE_IN_T each, in the
 * target's (little-endian) byte order; N comes from the file length. edge_out.bin receives
 * N * EDGE_OUT_SIZE int32 values. One sample at a time is streamed so that RAM use does not grow
 * with N. Every failure exits with its own non-zero status (and a message on the semihosting
 * console) so the host can tell a missing file from a crash or a model error.
 */
#include <stdint.h>

#include "model.h"
#include "semihost.h"

enum {
    EXIT_OPEN_IN = 2,
    EXIT_BAD_LENGTH = 3,
    EXIT_READ = 4,
    EXIT_OPEN_OUT = 5,
    EXIT_WRITE = 6,
    EXIT_MODEL = 7,
};

/* Sample layout for the host tools (qemu.py, icount.py), which check their arrays against it:
 * bytes per input element, 1 if EDGE_IN_T is signed, input elements, int32 outputs per sample.
 * Kept by the linker script (KEEP(*(.rodata.edge_fw_io))) although nothing references it. */
const uint32_t edge_fw_io[4] = {
    (uint32_t)sizeof(EDGE_IN_T),
    (uint32_t)((EDGE_IN_T)-1 < 0),
    (uint32_t)(EDGE_IN_SIZE),
    (uint32_t)(EDGE_OUT_SIZE),
};

#define SAMPLE_BYTES ((int32_t)(sizeof(EDGE_IN_T) * (EDGE_IN_SIZE)))
#define RESULT_BYTES ((int32_t)(sizeof(int32_t) * (EDGE_OUT_SIZE)))

static EDGE_IN_T in_buf[EDGE_IN_SIZE] __attribute__((aligned(8)));
static int32_t out_buf[EDGE_OUT_SIZE] __attribute__((aligned(8)));

static int fail(int status, const char *message)
{
    sh_write0("edge-sdk firmware: ");
    sh_write0(message);
    sh_write0("\n");
    return status;
}

int main(void)
{
    const int in_fd = sh_open("edge_in.bin", SH_MODE_RB);
    if (in_fd < 0) {
        return fail(EXIT_OPEN_IN, "cannot open edge_in.bin");
    }
    const int32_t length = sh_flen(in_fd);
    if (length < 0 || length % SAMPLE_BYTES != 0) {
        return fail(EXIT_BAD_LENGTH, "edge_in.bin length is not a whole number of samples");
    }
    const int32_t samples = length / SAMPLE_BYTES;

    const int out_fd = sh_open("edge_out.bin", SH_MODE_WB);
    if (out_fd < 0) {
        return fail(EXIT_OPEN_OUT, "cannot create edge_out.bin");
    }
    for (int32_t i = 0; i < samples; i++) {
        if (sh_read(in_fd, in_buf, SAMPLE_BYTES) != 0) {
            return fail(EXIT_READ, "short read from edge_in.bin");
        }
        if (edge_model_run(in_buf, out_buf) != 0) {
            return fail(EXIT_MODEL, "edge_model_run returned an error");
        }
        if (sh_write(out_fd, out_buf, RESULT_BYTES) != 0) {
            return fail(EXIT_WRITE, "short write to edge_out.bin");
        }
    }
    if (sh_close(out_fd) != 0 || sh_close(in_fd) != 0) {
        return fail(EXIT_WRITE, "cannot close edge_in.bin / edge_out.bin");
    }
    return 0;
}
