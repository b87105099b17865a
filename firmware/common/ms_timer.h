/*
 * Millisecond ticks from SysTick (every Cortex-M has it, QEMU's MPS2 machines too), polled: the
 * link's only timing need is "no byte for 50 ms", so no interrupt or vector-table change.
 */
#ifndef EDGE_MS_TIMER_H
#define EDGE_MS_TIMER_H

#include <stdint.h>

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

/* One wrap per millisecond at core_hz (24-bit reload: core_hz <= 16.7 GHz, always). */
static inline void ms_timer_init(uint32_t core_hz)
{
    SYST_RVR = core_hz / 1000u - 1u;
    SYST_CVR = 0u;
    SYST_CSR = (1u << 2) | 1u; /* CLKSOURCE = core clock, ENABLE; no interrupt */
}

/* 1 when a millisecond boundary passed since the last call (COUNTFLAG clears on read). */
static inline int ms_timer_tick(void)
{
    return (int)((SYST_CSR >> 16) & 1u);
}

#endif /* EDGE_MS_TIMER_H */
