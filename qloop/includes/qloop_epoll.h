/* epoll_pwait2(2) (Linux 5.11+): epoll_wait with a nanosecond timeout, in one call.  Called
 * through syscall(2): older C libraries (manylinux) have no wrapper.  -1 with errno ENOSYS (or
 * EPERM from a seccomp filter) where the kernel or a sandbox does not offer it; the caller then
 * falls back (docs/aio-context.md, "fd monitors"). */
#ifndef QLOOP_EPOLL_H
#define QLOOP_EPOLL_H

#include <stdint.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441 /* the same number on every architecture */
#endif

/* the kernel's struct __kernel_timespec: 64-bit fields on every architecture */
struct ql_kernel_timespec {
    int64_t tv_sec;
    long long tv_nsec;
};

static inline int ql_epoll_pwait2(int epfd, struct epoll_event *events, int maxevents,
                                  int64_t timeout_ns)
{
    struct ql_kernel_timespec ts;
    ts.tv_sec = timeout_ns / 1000000000;
    ts.tv_nsec = timeout_ns % 1000000000;
    return (int)syscall(SYS_epoll_pwait2, epfd, events, maxevents, &ts, NULL, (size_t)0);
}

#endif
