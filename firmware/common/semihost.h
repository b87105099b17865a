/*
 * ARM semihosting (BKPT 0xAB on M-profile): file I/O and exit through the debugger or QEMU.
 *
 * Only the calls the test firmware needs. Under QEMU (-semihosting-config enable=on,target=native)
 * file names are relative to QEMU's working directory. Without a debugger attached, BKPT on real
 * hardware raises a HardFault, so boards that run stand-alone must not call these.
 */
#ifndef EDGE_SEMIHOST_H
#define EDGE_SEMIHOST_H

#include <stdint.h>

/* SYS_OPEN modes are indices into the ISO C fopen() mode table. */
#define SH_MODE_RB 1
#define SH_MODE_WB 5

/* Returns a handle >= 0, or -1. */
int sh_open(const char *name, int mode);
/* Returns 0 on success, -1 on error. */
int sh_close(int fd);
/* Both return the number of bytes NOT transferred (0 means complete), as the spec defines. */
int32_t sh_read(int fd, void *buf, int32_t len);
int32_t sh_write(int fd, const void *buf, int32_t len);
/* Length of an open file in bytes, or -1. */
int32_t sh_flen(int fd);
/* NUL-terminated string to the host console. */
void sh_write0(const char *s);
/* Ends the program with this status (0 = success); never returns. */
void sh_exit(int status) __attribute__((noreturn));

#endif /* EDGE_SEMIHOST_H */
