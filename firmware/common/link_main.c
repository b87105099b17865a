/*
 * Host-protocol driver (`convert --io uart`): answers INFO and INFER requests from
 * `edge-sdk infer` on the board's UART (framing in link.c, port in <board>/link_uart.c), one
 * sample per INFER: EDGE_IN_SIZE elements of EDGE_IN_T in, EDGE_OUT_SIZE int32 out, both in the
 * target's little-endian byte order, exactly as the semihosting driver reads and writes them.
 */
#include <stdint.h>

#include "link.h"
#include "model.h"

/* Sample layout for the host tools, as in the other drivers (kept by the linker script). */
const uint32_t edge_fw_io[4] = {
    (uint32_t)sizeof(EDGE_IN_T),
    (uint32_t)((EDGE_IN_T)-1 < 0),
    (uint32_t)(EDGE_IN_SIZE),
    (uint32_t)(EDGE_OUT_SIZE),
};

#define IN_BYTES ((uint32_t)(sizeof(EDGE_IN_T) * (EDGE_IN_SIZE)))
#define OUT_BYTES ((uint32_t)(sizeof(int32_t) * (EDGE_OUT_SIZE)))

static EDGE_IN_T in_buf[EDGE_IN_SIZE] __attribute__((aligned(8)));
static int32_t out_buf[EDGE_OUT_SIZE] __attribute__((aligned(8)));

/* INFO answer: version, device, bytes per input element, flags (bit 0: signed input),
 * INFER request payload bytes, INFER answer payload bytes (u32 little-endian). */
static const uint8_t info[LINK_INFO_BYTES] = {
    (uint8_t)LINK_VERSION,
    (uint8_t)LINK_DEVICE_CORTEX_M,
    (uint8_t)sizeof(EDGE_IN_T),
    (uint8_t)((EDGE_IN_T)-1 < 0),
    (uint8_t)IN_BYTES, (uint8_t)(IN_BYTES >> 8), (uint8_t)(IN_BYTES >> 16),
    (uint8_t)(IN_BYTES >> 24),
    (uint8_t)OUT_BYTES, (uint8_t)(OUT_BYTES >> 8), (uint8_t)(OUT_BYTES >> 16),
    (uint8_t)(OUT_BYTES >> 24),
};

static enum link_status infer(const uint8_t **out, uint32_t *out_len)
{
    if (edge_model_run(in_buf, out_buf) != 0) {
        return LINK_MODEL_ERROR;
    }
    *out = (const uint8_t *)out_buf;
    *out_len = OUT_BYTES;
    return LINK_OK;
}

int main(void)
{
    static const struct link_device device = {
        (uint8_t *)in_buf,
        IN_BYTES,
        info,
        infer,
    };
    link_port_init();
    link_serve(&device);
}
