/* Atomics for qloop's notify protocol and BH flags (spec §1.6, §2.3).
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
static inline void ql_smp_mb(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void ql_smp_wmb(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }

#endif
