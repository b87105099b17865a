/*
 * Start-up code for ARMv7-M (Cortex-M3 / Cortex-M4), written in C so one file serves every board.
 *
 * The linker script of each board provides: _estack (initial stack pointer), _sidata (load
 * address of .data in flash), _sdata/_edata (.data in RAM) and _sbss/_ebss (.bss in RAM).
 * Only the 16 architectural vectors are filled: the firmware never enables a peripheral
 * interrupt, so device IRQ slots would only cost flash.
 */
#include <stdint.h>

#include "board.h"

extern uint32_t _estack;
extern uint32_t _sidata;
extern uint32_t _sdata;
extern uint32_t _edata;
extern uint32_t _sbss;
extern uint32_t _ebss;

int main(void);

void Reset_Handler(void) __attribute__((noreturn));
void Default_Handler(void);

#define SCB_VTOR (*(volatile uint32_t *)0xE000ED08u)
#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

/* Separate names (aliases of Default_Handler) so a debugger shows which fault was taken. */
void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void HardFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("Default_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));

struct vector_table {
    const void *initial_sp;
    void (*handlers[15])(void);
};

/* Placed first in flash by the linker script (KEEP(*(.vectors))). */
__attribute__((section(".vectors"), used)) const struct vector_table edge_vectors = {
    &_estack,
    {
        Reset_Handler,
        NMI_Handler,
        HardFault_Handler,
        MemManage_Handler,
        BusFault_Handler,
        UsageFault_Handler,
        0,
        0,
        0,
        0,
        SVC_Handler,
        DebugMon_Handler,
        0,
        PendSV_Handler,
        SysTick_Handler,
    },
};

void Reset_Handler(void)
{
#if defined(__ARM_FP)
    /* Hard-float code may use s0-s31 anywhere (even in memcpy): grant CP10/CP11 full access
     * before the first C statement that could touch them. */
    SCB_CPACR |= (0xFu << 20);
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    SCB_VTOR = (uint32_t)(uintptr_t)&edge_vectors;

    const uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0u;
    }

    board_init();
    board_exit(main());
}

void Default_Handler(void)
{
    board_fault();
}
