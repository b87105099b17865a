/*
 * Board hooks called by the shared start-up code (startup.c).
 *
 * Each board directory provides exactly these three functions, so startup.c stays identical for
 * QEMU and real hardware: only how a program reports its end (semihosting exit vs. a UART line)
 * and what a fault does differ between boards.
 */
#ifndef EDGE_BOARD_H
#define EDGE_BOARD_H

/* Clocks and peripherals; runs after .data/.bss are initialised, before main(). */
void board_init(void);

/* Called with main()'s return value; never returns. */
void board_exit(int status) __attribute__((noreturn));

/* Called from every unexpected exception (HardFault, ...); never returns. */
void board_fault(void) __attribute__((noreturn));

#endif /* EDGE_BOARD_H */
