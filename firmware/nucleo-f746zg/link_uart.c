/*
 * Host-protocol port for the NUCLEO-F746ZG: USART3 (PD8/PD9, 115200 8N1, set up by board.c's
 * board_init, the ST-LINK's virtual COM port) and SysTick at the 216 MHz core clock for the
 * millisecond timer. Unlike the F4's USART, reading RDR does not clear an overrun: ORECF does.
 */
#include <stdint.h>

#include "link.h"
#include "ms_timer.h"
#include "uart.h"

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
        const uint32_t isr = USART3_ISR;
        if ((isr & USART_ISR_ORE) != 0u) {
            lost = 1;
            USART3_ICR = USART_ICR_ORECF;
        }
        if ((isr & USART_ISR_RXNE) != 0u) {
            return (int)(USART3_RDR & 0xFFu);
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
    if ((USART3_ISR & USART_ISR_ORE) != 0u) {
        lost = 1;
        USART3_ICR = USART_ICR_ORECF;
    }
    const int was = lost;
    lost = 0;
    return was;
}
