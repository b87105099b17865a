/*
 * Board support for ST NUCLEO-F746ZG (STM32F746ZG, Cortex-M7 with single-precision FPU).
 * Register addresses and bit positions from RM0385 (STM32F75xxx/74xxx) and PM0253 (Cortex-M7).
 *
 * Clock: 216 MHz SYSCLK from the internal 16 MHz HSI (no dependency on the ST-LINK's MCO or a
 * crystal): PLLM = 8 (2 MHz PLL input), PLLN = 216 (432 MHz VCO), PLLP = 2, PLLQ = 9 (48 MHz).
 * 216 MHz needs voltage scale 1 plus over-drive and 7 flash wait states (RM0385 3.3.2, table 5).
 * APB1 = 54 MHz (limit 54), APB2 = 108 MHz (limit 108). HSI is factory-trimmed to 1 %.
 * The L1 instruction and data caches are enabled: the weights are read from flash through AXIM,
 * where the caches (not the ART accelerator, which serves the ITCM path) hide the wait states.
 */
#include <stdint.h>

#include "board.h"
#include "uart.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define RCC_BASE 0x40023800u
#define RCC_CR REG(RCC_BASE + 0x00u)
#define RCC_PLLCFGR REG(RCC_BASE + 0x04u)
#define RCC_CFGR REG(RCC_BASE + 0x08u)
#define RCC_AHB1ENR REG(RCC_BASE + 0x30u)
#define RCC_APB1ENR REG(RCC_BASE + 0x40u)

#define PWR_BASE 0x40007000u
#define PWR_CR1 REG(PWR_BASE + 0x00u)
#define PWR_CSR1 REG(PWR_BASE + 0x04u)

#define FLASH_ACR REG(0x40023C00u)

#define GPIOD_BASE 0x40020C00u
#define GPIOD_MODER REG(GPIOD_BASE + 0x00u)
#define GPIOD_OSPEEDR REG(GPIOD_BASE + 0x08u)
#define GPIOD_AFRH REG(GPIOD_BASE + 0x24u)

/* Cortex-M7 system control block: cache control and maintenance (PM0253 4.3, 4.8). */
#define SCB_CCR REG(0xE000ED14u)
#define SCB_CCSIDR REG(0xE000ED80u)
#define SCB_CSSELR REG(0xE000ED84u)
#define SCB_ICIALLU REG(0xE000EF50u)
#define SCB_DCISW REG(0xE000EF60u)

#define DEMCR REG(0xE000EDFCu)
#define DWT_CTRL REG(0xE0001000u)
#define DWT_CYCCNT REG(0xE0001004u)
#define DWT_LAR REG(0xE0001FB0u)

#define APB1_HZ (BOARD_HCLK_HZ / 4u)
#define UART_BAUD 115200u

static inline void barrier(void)
{
    __asm__ volatile("dsb 0xF\n\tisb 0xF" ::: "memory");
}

static void clock_init(void)
{
    RCC_CR |= 1u << 0; /* HSION (already on after reset; harmless) */
    while ((RCC_CR & (1u << 1)) == 0u) { /* HSIRDY */
    }

    RCC_APB1ENR |= 1u << 28; /* PWREN */
    (void)RCC_APB1ENR;       /* read back: the clock must be running before PWR is written */
    PWR_CR1 = (PWR_CR1 & ~(3u << 14)) | (3u << 14); /* VOS = scale 1 (only while the PLL is off) */

    /* PLLM=8, PLLN=216, PLLP=2 (field 0), PLLSRC=HSI (bit 22 clear), PLLQ=9. */
    RCC_PLLCFGR = 8u | (216u << 6) | (0u << 16) | (9u << 24);
    RCC_CR |= 1u << 24; /* PLLON */

    PWR_CR1 |= 1u << 16; /* ODEN */
    while ((PWR_CSR1 & (1u << 16)) == 0u) { /* ODRDY */
    }
    PWR_CR1 |= 1u << 17; /* ODSWEN */
    while ((PWR_CSR1 & (1u << 17)) == 0u) { /* ODSWRDY */
    }

    /* 7 wait states + prefetch + ART accelerator, before raising the clock. */
    FLASH_ACR = 7u | (1u << 8) | (1u << 9);
    while ((FLASH_ACR & 0xFu) != 7u) {
    }

    /* AHB /1, APB1 /4 (PPRE1 = 101), APB2 /2 (PPRE2 = 100). */
    RCC_CFGR = (RCC_CFGR & ~((0xFu << 4) | (7u << 10) | (7u << 13))) | (5u << 10) | (4u << 13);

    while ((RCC_CR & (1u << 25)) == 0u) { /* PLLRDY */
    }
    RCC_CFGR = (RCC_CFGR & ~3u) | 2u; /* SW = PLL */
    while ((RCC_CFGR & (3u << 2)) != (2u << 2)) { /* SWS = PLL */
    }
}

static void caches_init(void)
{
    /* Instruction cache: invalidate all, then enable (PM0253 4.8.4). */
    barrier();
    SCB_ICIALLU = 0u;
    barrier();
    SCB_CCR |= 1u << 17; /* IC */
    barrier();

    /* Data cache: invalidate every line by set/way (4 ways, 32-byte lines), then enable. */
    SCB_CSSELR = 0u; /* level 1 data cache */
    barrier();
    const uint32_t ccsidr = SCB_CCSIDR;
    const uint32_t sets = ((ccsidr >> 13) & 0x7FFFu) + 1u;
    const uint32_t ways = ((ccsidr >> 3) & 0x3FFu) + 1u;
    for (uint32_t set = 0u; set < sets; set++) {
        for (uint32_t way = 0u; way < ways; way++) {
            SCB_DCISW = (way << 30) | (set << 5);
        }
    }
    barrier();
    SCB_CCR |= 1u << 16; /* DC */
    barrier();
}

static void uart_init(void)
{
    RCC_AHB1ENR |= 1u << 3;  /* GPIODEN */
    RCC_APB1ENR |= 1u << 18; /* USART3EN */
    (void)RCC_APB1ENR;

    /* PD8, PD9: alternate function 7 (USART3), high speed. */
    GPIOD_MODER = (GPIOD_MODER & ~(0xFu << 16)) | (0xAu << 16);
    GPIOD_OSPEEDR |= 0xFu << 16;
    GPIOD_AFRH = (GPIOD_AFRH & ~0xFFu) | 0x77u;

    /* Oversampling by 16: BRR = PCLK1 / baud, rounded (469 -> 115139 baud, +0.05 %). */
    USART3_BRR = (APB1_HZ + UART_BAUD / 2u) / UART_BAUD;
    USART3_CR1 = (1u << 3) | (1u << 2) | (1u << 0); /* TE, RE, UE */
}

static void cycle_counter_init(void)
{
    DEMCR |= 1u << 24;      /* TRCENA */
    DWT_LAR = 0xC5ACCE55u;  /* the M7's DWT is locked after reset until this key is written */
    DWT_CYCCNT = 0u;
    DWT_CTRL |= 1u;         /* CYCCNTENA */
}

void board_init(void)
{
    clock_init();
    caches_init();
    uart_init();
    cycle_counter_init();
}

uint32_t board_cycles(void)
{
    return DWT_CYCCNT;
}

void uart_putc(char c)
{
    while ((USART3_ISR & USART_ISR_TXE) == 0u) {
    }
    USART3_TDR = (uint32_t)(uint8_t)c;
}

void uart_puts(const char *s)
{
    while (*s != '\0') {
        if (*s == '\n') {
            uart_putc('\r');
        }
        uart_putc(*s++);
    }
}

void uart_put_u32(uint32_t value)
{
    char digits[10];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10u);
        value /= 10u;
    } while (value != 0u);
    while (n > 0) {
        uart_putc(digits[--n]);
    }
}

void uart_put_i32(int32_t value)
{
    if (value < 0) {
        uart_putc('-');
        /* Through uint32 so INT32_MIN does not overflow. */
        uart_put_u32(0u - (uint32_t)value);
    } else {
        uart_put_u32((uint32_t)value);
    }
}

static void wait_transmitted(void)
{
    while ((USART3_ISR & USART_ISR_TC) == 0u) {
    }
}

void board_exit(int status)
{
    uart_puts("EXIT ");
    uart_put_i32(status);
    uart_puts("\n");
    wait_transmitted();
    for (;;) {
        __asm__ volatile("wfi");
    }
}

void board_fault(void)
{
    uart_puts("FAULT\n");
    wait_transmitted();
    for (;;) {
    }
}
