/*
 * ARM semihosting calls (see semihost.h).
 *
 * Operation number in r0, pointer to an argument block (or a single argument) in r1, result in
 * r0. The "memory" clobber matters: the host reads and writes the argument blocks and buffers.
 */
#include "semihost.h"

#include <stddef.h>

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE0 0x04
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_FLEN 0x0C
#define SYS_EXIT 0x18
#define SYS_EXIT_EXTENDED 0x20

#define ADP_Stopped_ApplicationExit 0x20026u
#define ADP_Stopped_RunTimeErrorUnknown 0x20023u

static int32_t sh_call(int32_t op, const void *arg)
{
    register int32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static uint32_t sh_strlen(const char *s)
{
    uint32_t n = 0;
    while (s[n] != '\0') {
        n++;
    }
    return n;
}

int sh_open(const char *name, int mode)
{
    const uint32_t args[3] = {(uint32_t)(uintptr_t)name, (uint32_t)mode, sh_strlen(name)};
    return (int)sh_call(SYS_OPEN, args);
}

int sh_close(int fd)
{
    const uint32_t args[1] = {(uint32_t)fd};
    return (int)sh_call(SYS_CLOSE, args);
}

int32_t sh_read(int fd, void *buf, int32_t len)
{
    const uint32_t args[3] = {(uint32_t)fd, (uint32_t)(uintptr_t)buf, (uint32_t)len};
    return sh_call(SYS_READ, args);
}

int32_t sh_write(int fd, const void *buf, int32_t len)
{
    const uint32_t args[3] = {(uint32_t)fd, (uint32_t)(uintptr_t)buf, (uint32_t)len};
    return sh_call(SYS_WRITE, args);
}

int32_t sh_flen(int fd)
{
    const uint32_t args[1] = {(uint32_t)fd};
    return sh_call(SYS_FLEN, args);
}

void sh_write0(const char *s)
{
    (void)sh_call(SYS_WRITE0, s);
}

void sh_exit(int status)
{
    if (status == 0) {
        /* The AArch32 SYS_EXIT takes the reason code itself, not a block; exit code 0. */
        (void)sh_call(SYS_EXIT, (const void *)(uintptr_t)ADP_Stopped_ApplicationExit);
    } else {
        /* Only SYS_EXIT_EXTENDED carries a status code on AArch32 (QEMU exits with it). */
        const uint32_t args[2] = {ADP_Stopped_ApplicationExit, (uint32_t)status};
        (void)sh_call(SYS_EXIT_EXTENDED, args);
        /* A host without the extension returns here: still fail, with exit code 1. */
        (void)sh_call(SYS_EXIT, (const void *)(uintptr_t)ADP_Stopped_RunTimeErrorUnknown);
    }
    for (;;) {
        __asm__ volatile("wfi");
    }
}
