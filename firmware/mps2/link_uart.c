/*
 * Host-protocol port for QEMU's MPS2 machines: CMSDK APB UART0 (0x40004000; QEMU connects it to
 * its first -serial back-end, e.g. `-serial pty`) and SysTick at the 25 MHz system clock for the
 * millisecond timer. Register layout: ARM DDI0479 (Cortex-M System Design Kit), APB UART.
 */
#include <stdint.h>

#include "link.h"
#include "ms_timer.h"

#define UART0_BASE 0x40004000u
#define UART_DATA (*(volatile uint32_t *)(UART0_BASE + 0x000u))
#define UART_STATE (*(volatile uint32_t *)(UART0_BASE + 0x004u))
#define UART_CTRL (*(volatile uint32_t *)(UART0_BASE + 0x008u))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0_BASE + 0x010u))

#define STATE_TX_FULL (1u << 0)
#define STATE_RX_FULL (1u << 1)
#define STATE_RX_OVERRUN (1u << 3) /* write 1 to clear */
#define CTRL_TX_EN (1u << 0)
#define CTRL_RX_EN (1u << 1)

#define SYSCLK_HZ 25000000u
#define BAUD 115200u

void link_port_init(void)
{
    UART_BAUDDIV = SYSCLK_HZ / BAUD; /* QEMU ignores the rate, but refuses divisors < 16 */
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN;
    ms_timer_init(SYSCLK_HZ);
}

int link_port_read(uint32_t timeout_ms)
{
    uint32_t waited = 0u;
    (void)ms_timer_tick();
    while ((UART_STATE & STATE_RX_FULL) == 0u) {
        if (timeout_ms != 0u && ms_timer_tick() && ++waited >= timeout_ms) {
            return -1;
        }
    }
    return (int)(UART_DATA & 0xFFu);
}

void link_port_write(uint8_t byte)
{
    while ((UART_STATE & STATE_TX_FULL) != 0u) {
    }
    UART_DATA = byte;
}

int link_port_lost(void)
{
    const int lost = (UART_STATE & STATE_RX_OVERRUN) != 0u;
    UART_STATE = STATE_RX_OVERRUN;
    return lost;
}
