/*
 * NUCLEO-F446RE console: USART2 on PA2 (TX) / PA3 (RX), 115200 8N1. On the Nucleo board these
 * pins go to the ST-LINK's virtual COM port, so output appears on the host's USB serial device.
 */
#ifndef EDGE_UART_H
#define EDGE_UART_H

#include <stdint.h>

void uart_putc(char c);
void uart_puts(const char *s);
void uart_put_i32(int32_t value);
void uart_put_u32(uint32_t value);

/* Free-running CPU cycle counter (DWT CYCCNT), started by board_init(). */
uint32_t board_cycles(void);

/* Core clock set by board_init(), for converting cycles to time. */
#define BOARD_HCLK_HZ 180000000u

#define BOARD_NAME "nucleo-f446re"

#endif /* EDGE_UART_H */
