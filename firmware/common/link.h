/*
 * The host protocol of `edge-sdk infer` (specified in sdk/protocol.py): framed requests with a
 * CRC-32 over a serial line, one answer per request. link.c holds the framing, which knows
 * nothing of models; link_main.c connects it to edge_model_run; each board supplies the port
 * (link_port_*) for its UART.
 */
#ifndef EDGE_LINK_H
#define EDGE_LINK_H

#include <stdint.h>

/* Frame constants; must equal sdk/protocol.py. */
#define LINK_SYNC0 0xEDu
#define LINK_SYNC1 0x5Au
#define LINK_RESPONSE 0x80u
#define LINK_TYPE_INFO 0x01u
#define LINK_TYPE_INFER 0x02u
#define LINK_VERSION 1u
#define LINK_DEVICE_CORTEX_M 1u
#define LINK_INFO_BYTES 12u
/* A gap this long inside a frame drops it; error answers wait for this much quiet. */
#define LINK_GAP_MS 50u

enum link_status {
    LINK_OK = 0,
    LINK_BAD_CRC = 1,
    LINK_BAD_LENGTH = 2,
    LINK_BUSY = 3,
    LINK_BAD_TYPE = 4,
    LINK_MODEL_ERROR = 5,
};

/* What the framing serves. INFER payloads land in in_buf (in_bytes long); infer() then computes
 * and points *out at its answer payload. */
struct link_device {
    uint8_t *in_buf;
    uint32_t in_bytes;
    const uint8_t *info; /* LINK_INFO_BYTES: the INFO answer payload */
    enum link_status (*infer)(const uint8_t **out, uint32_t *out_len);
};

/* Answers requests forever. */
void link_serve(const struct link_device *dev) __attribute__((noreturn));

/* CRC-32/ISO-HDLC, continued from `crc` (0 to start), as zlib.crc32(data, crc). */
uint32_t link_crc32(uint32_t crc, const uint8_t *data, uint32_t len);

/* --- provided by the board (e.g. mps2/link_uart.c) --- */
/* UART and millisecond timer ready; called once by main() after board_init(). */
void link_port_init(void);
/* The next received byte (0..255), or -1 when none arrived for timeout_ms (0: wait forever). */
int link_port_read(uint32_t timeout_ms);
/* Sends one byte (blocking). */
void link_port_write(uint8_t byte);
/* Non-zero when received bytes were lost (overrun) since the last call; clears the flag. */
int link_port_lost(void);

#endif /* EDGE_LINK_H */
