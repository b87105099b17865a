/*
 * Host-protocol port for the NUCLEO-F446RE: USART2 (PA2/PA3, 115200 8N1, set up by board.c's
 * board_init, the ST-LINK's virtual COM port) and SysTick at the 180 MHz core clock for the
 * millisecond timer. Register bits from RM0390 (USART_SR: RXNE 5, ORE 3, TXE 7).
 */
#include <stdint.h>

#include "link.h"
#include "ms_timer.h"
#include "uart.h"

#define USART2_BASE 0x40004400u
#define USART2_SR (*(volatile uint32_t *)(USART2_BASE + 0x00u))
#define USART2_DR (*(volatile uint32_t *)(USART2_BASE + 0x04u))

#define SR_ORE (1u << 3)
#define SR_RXNE (1u << 5)

static int lost;

void link_port_init(void)
{
    ms_timer_init(BOARD_HCLK_HZ);
}

int link_port_read(uint32_t timeout_ms)
{
    uint32_t waited = 0u;
    (void)ms_timer_tick();
    for (;;) {
        const uint32_t sr = USART2_SR;
        if ((sr & SR_ORE) != 0u) {
            lost = 1; /* reading DR after SR clears ORE; the byte in DR is still valid */
        }
        if ((sr & (SR_RXNE | SR_ORE)) != 0u) {
            return (int)(USART2_DR & 0xFFu);
        }
        if (timeout_ms != 0u && ms_timer_tick() && ++waited >= timeout_ms) {
            return -1;
        }
    }
}

void link_port_write(uint8_t byte)
{
    uart_putc((char)byte);
}

int link_port_lost(void)
{
    if ((USART2_SR & SR_ORE) != 0u) {
        lost = 1;
        (void)USART2_DR;
    }
    const int was = lost;
    lost = 0;
    return was;
}
