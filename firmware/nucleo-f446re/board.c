/*
 * Board support for ST NUCLEO-F446RE (STM32F446RE, Cortex-M4F). Register addresses and bit
 * positions from RM0390.
 *
 * Clock: 180 MHz SYSCLK from the internal 16 MHz HSI (no dependency on the ST-LINK's MCO or a
 * crystal): PLLM = 8 (2 MHz PLL input), PLLN = 180 (360 MHz VCO), PLLP = 2. 180 MHz needs voltage
 * scale 1 plus over-drive and 5 flash wait states (RM0390 5.1.4 and table 5). APB1 = 45 MHz
 * (limit 45), APB2 = 90 MHz (limit 90). HSI is factory-trimmed to 1 %, enough for a UART.
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
#define PWR_CR REG(PWR_BASE + 0x00u)
#define PWR_CSR REG(PWR_BASE + 0x04u)

#define FLASH_ACR REG(0x40023C00u)

#define GPIOA_BASE 0x40020000u
#define GPIOA_MODER REG(GPIOA_BASE + 0x00u)
#define GPIOA_OSPEEDR REG(GPIOA_BASE + 0x08u)
#define GPIOA_AFRL REG(GPIOA_BASE + 0x20u)

#define USART2_BASE 0x40004400u
#define USART2_SR REG(USART2_BASE + 0x00u)
#define USART2_DR REG(USART2_BASE + 0x04u)
#define USART2_BRR REG(USART2_BASE + 0x08u)
#define USART2_CR1 REG(USART2_BASE + 0x0Cu)

#define DEMCR REG(0xE000EDFCu)
#define DWT_CTRL REG(0xE0001000u)
#define DWT_CYCCNT REG(0xE0001004u)

#define APB1_HZ (BOARD_HCLK_HZ / 4u)
#define UART_BAUD 115200u

static void clock_init(void)
{
    RCC_CR |= 1u << 0; /* HSION (already on after reset; harmless) */
    while ((RCC_CR & (1u << 1)) == 0u) { /* HSIRDY */
    }

    RCC_APB1ENR |= 1u << 28; /* PWREN */
    (void)RCC_APB1ENR;       /* read back: the clock must be running before PWR is written */
    PWR_CR = (PWR_CR & ~(3u << 14)) | (3u << 14); /* VOS = scale 1 (only while the PLL is off) */

    /* PLLM=8, PLLN=180, PLLP=2 (field 0), PLLSRC=HSI (bit 22 clear), PLLQ=7, PLLR=2. */
    RCC_PLLCFGR = 8u | (180u << 6) | (0u << 16) | (7u << 24) | (2u << 28);
    RCC_CR |= 1u << 24; /* PLLON */

    PWR_CR |= 1u << 16; /* ODEN */
    while ((PWR_CSR & (1u << 16)) == 0u) { /* ODRDY */
    }
    PWR_CR |= 1u << 17; /* ODSWEN */
    while ((PWR_CSR & (1u << 17)) == 0u) { /* ODSWRDY */
    }

    /* 5 wait states + prefetch + instruction and data caches, before raising the clock. */
    FLASH_ACR = 5u | (1u << 8) | (1u << 9) | (1u << 10);
    while ((FLASH_ACR & 0xFu) != 5u) {
    }

    /* AHB /1, APB1 /4 (PPRE1 = 101), APB2 /2 (PPRE2 = 100). */
    RCC_CFGR = (RCC_CFGR & ~((0xFu << 4) | (7u << 10) | (7u << 13))) | (5u << 10) | (4u << 13);

    while ((RCC_CR & (1u << 25)) == 0u) { /* PLLRDY */
    }
    RCC_CFGR = (RCC_CFGR & ~3u) | 2u; /* SW = PLL */
    while ((RCC_CFGR & (3u << 2)) != (2u << 2)) { /* SWS = PLL */
    }
}

static void uart_init(void)
{
    RCC_AHB1ENR |= 1u << 0;  /* GPIOAEN */
    RCC_APB1ENR |= 1u << 17; /* USART2EN */
    (void)RCC_APB1ENR;

    /* PA2, PA3: alternate function 7 (USART2), high speed. */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 4)) | (0xAu << 4);
    GPIOA_OSPEEDR |= 0xFu << 4;
    GPIOA_AFRL = (GPIOA_AFRL & ~(0xFFu << 8)) | (0x77u << 8);

    /* Oversampling by 16: BRR = PCLK1 / baud, rounded (391 -> 115089 baud, -0.09 %). */
    USART2_BRR = (APB1_HZ + UART_BAUD / 2u) / UART_BAUD;
    USART2_CR1 = (1u << 13) | (1u << 3) | (1u << 2); /* UE, TE, RE */
}

static void cycle_counter_init(void)
{
    DEMCR |= 1u << 24; /* TRCENA */
    DWT_CYCCNT = 0u;
    DWT_CTRL |= 1u;    /* CYCCNTENA */
}

void board_init(void)
{
    clock_init();
    uart_init();
    cycle_counter_init();
}

uint32_t board_cycles(void)
{
    return DWT_CYCCNT;
}

void uart_putc(char c)
{
    while ((USART2_SR & (1u << 7)) == 0u) { /* TXE */
    }
    USART2_DR = (uint32_t)(uint8_t)c;
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
    while ((USART2_SR & (1u << 6)) == 0u) { /* TC */
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
