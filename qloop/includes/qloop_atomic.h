/* Atomics for qloop's notify protocol and BH flags (docs/notify.md, docs/bottom-halves.md).
 * Sequentially consistent where the protocol needs a full barrier (the Dekker pattern between
 * notify_me and notified); acquire/release elsewhere. */
#ifndef QLOOP_ATOMIC_H
#define QLOOP_ATOMIC_H

static inline int ql_fetch_or(int *p, int v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
static inline int ql_fetch_and(int *p, int v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }
static inline int ql_load(const int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline int ql_load_relaxed(const int *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void ql_store(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void ql_store_relaxed(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline int ql_fetch_add(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline int ql_xchg(int *p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
/* the value *p had: v was stored only if it was old */
static inline int ql_cmpxchg(int *p, int old, int v)
{
    __atomic_compare_exchange_n(p, &old, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return old;
}
static inline void ql_smp_mb(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void ql_smp_wmb(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }

/* The big lock's wait and wake: a futex on the lock word (no allocation, no fd). */
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
static inline void ql_futex_wait(int *p, int v)
{
    syscall(SYS_futex, p, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}
static inline void ql_futex_wake_one(int *p)
{
    syscall(SYS_futex, p, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

#endif
