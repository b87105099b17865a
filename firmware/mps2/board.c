/*
 * Board hooks for QEMU's MPS2 machines (mps2-an385: Cortex-M3, mps2-an386: Cortex-M4).
 *
 * Nothing to initialise: QEMU needs no clock or memory set-up. The end of the program and any
 * fault are reported through semihosting, so QEMU exits with a status the host can check instead
 * of hanging until a timeout.
 */
#include "board.h"
#include "semihost.h"

/* Exit status for an unexpected exception; main.c uses 2..7 for its own errors. */
#define EXIT_FAULT 8

void board_init(void)
{
}

void board_exit(int status)
{
    sh_exit(status);
}

void board_fault(void)
{
    sh_write0("edge-sdk firmware: fault (HardFault or other unexpected exception)\n");
    sh_exit(EXIT_FAULT);
}
