/*
 * NUCLEO-F746ZG console: USART3 on PD8 (TX) / PD9 (RX), 115200 8N1. On the Nucleo-144 board these
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
#define BOARD_HCLK_HZ 216000000u

#define BOARD_NAME "nucleo-f746zg"

/* USART3 registers (RM0385 section 31.8): the F7 USART has separate ISR/ICR/RDR/TDR. */
#define USART3_BASE 0x40004800u
#define USART3_CR1 (*(volatile uint32_t *)(USART3_BASE + 0x00u))
#define USART3_BRR (*(volatile uint32_t *)(USART3_BASE + 0x0Cu))
#define USART3_ISR (*(volatile uint32_t *)(USART3_BASE + 0x1Cu))
#define USART3_ICR (*(volatile uint32_t *)(USART3_BASE + 0x20u))
#define USART3_RDR (*(volatile uint32_t *)(USART3_BASE + 0x24u))
#define USART3_TDR (*(volatile uint32_t *)(USART3_BASE + 0x28u))

#define USART_ISR_ORE (1u << 3)
#define USART_ISR_RXNE (1u << 5)
#define USART_ISR_TC (1u << 6)
#define USART_ISR_TXE (1u << 7)
#define USART_ICR_ORECF (1u << 3)

#endif /* EDGE_UART_H */
