/*
 * Framing of the host protocol (sdk/protocol.py has the specification): hunt for the sync
 * bytes, read header, payload and CRC-32, answer. Model-agnostic: link_main.c says what INFO and
 * INFER mean. One request at a time, polled, no interrupts.
 *
 * Error answers (bad CRC, length or type) wait until the line has been quiet for LINK_GAP_MS,
 * so the rest of a damaged frame is never parsed as a new one; a frame that stalls for
 * LINK_GAP_MS is dropped without an answer; bytes lost while the device was computing or
 * answering (UART overrun) are reported with one BUSY answer once the line is quiet.
 */
#include "link.h"

#define HEADER_BYTES 7u /* after the sync: type, seq, status, length (u32 LE) */

uint32_t link_crc32(uint32_t crc, const uint8_t *data, uint32_t len)
{
    crc = ~crc;
    for (uint32_t i = 0; i < len; i++) {
        crc ^= data[i];
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static void write_bytes(const uint8_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        link_port_write(p[i]);
    }
}

static void answer(uint8_t type, uint8_t seq, enum link_status status, const uint8_t *payload,
                   uint32_t len)
{
    uint8_t head[2u + HEADER_BYTES];
    uint8_t tail[4];
    head[0] = LINK_SYNC0;
    head[1] = LINK_SYNC1;
    head[2] = (uint8_t)(type | LINK_RESPONSE);
    head[3] = seq;
    head[4] = (uint8_t)status;
    put_u32(&head[5], len);
    uint32_t crc = link_crc32(0u, &head[2], HEADER_BYTES);
    crc = link_crc32(crc, payload, len);
    put_u32(tail, crc);
    write_bytes(head, sizeof head);
    write_bytes(payload, len);
    write_bytes(tail, sizeof tail);
}

/* Reads n bytes, each within LINK_GAP_MS of the previous; 0 on success, -1 on a gap. */
static int read_bytes(uint8_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        const int c = link_port_read(LINK_GAP_MS);
        if (c < 0) {
            return -1;
        }
        p[i] = (uint8_t)c;
    }
    return 0;
}

/* Discards input until the line has been quiet for LINK_GAP_MS. */
static void wait_quiet(void)
{
    while (link_port_read(LINK_GAP_MS) >= 0) {
    }
}

static void error_answer(uint8_t type, uint8_t seq, enum link_status status)
{
    wait_quiet();
    (void)link_port_lost(); /* what was lost belonged to the damaged frame */
    answer(type, seq, status, 0, 0u);
}

/* Waits for the two sync bytes (forever: the host talks first). */
static void hunt(void)
{
    int prev = -1;
    for (;;) {
        const int c = link_port_read(0u);
        if (prev == (int)LINK_SYNC0 && c == (int)LINK_SYNC1) {
            return;
        }
        prev = c;
    }
}

/* One request; returns when it is answered or dropped. */
static void serve_one(const struct link_device *dev)
{
    uint8_t head[HEADER_BYTES];
    uint8_t crc_bytes[4];
    hunt();
    if (read_bytes(head, HEADER_BYTES) != 0) {
        return;
    }
    const uint8_t type = head[0];
    const uint8_t seq = head[1];
    const uint32_t len = get_u32(&head[3]);
    uint32_t expected;
    if (type == LINK_TYPE_INFO) {
        expected = 0u;
    } else if (type == LINK_TYPE_INFER) {
        expected = dev->in_bytes;
    } else {
        error_answer(type, seq, LINK_BAD_TYPE);
        return;
    }
    if (len != expected) {
        error_answer(type, seq, LINK_BAD_LENGTH);
        return;
    }
    if (read_bytes(dev->in_buf, len) != 0 || read_bytes(crc_bytes, 4u) != 0) {
        return;
    }
    uint32_t crc = link_crc32(0u, head, HEADER_BYTES);
    crc = link_crc32(crc, dev->in_buf, len);
    if (crc != get_u32(crc_bytes)) {
        error_answer(type, seq, LINK_BAD_CRC);
        return;
    }
    if (type == LINK_TYPE_INFO) {
        answer(type, seq, LINK_OK, dev->info, LINK_INFO_BYTES);
    } else {
        const uint8_t *out = 0;
        uint32_t out_len = 0u;
        const enum link_status status = dev->infer(&out, &out_len);
        if (status == LINK_OK) {
            answer(type, seq, LINK_OK, out, out_len);
        } else {
            answer(type, seq, status, 0, 0u);
        }
    }
    if (link_port_lost()) {
        error_answer(0u, 0u, LINK_BUSY);
    }
}

void link_serve(const struct link_device *dev)
{
    (void)link_port_lost();
    for (;;) {
        serve_one(dev);
    }
}
