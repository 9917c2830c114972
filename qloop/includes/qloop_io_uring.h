/* io_uring for the "io_uring" fd monitor (docs/aio-context.md, "fd monitors"), through the
 * raw system calls: no liburing, and no <linux/io_uring.h> either (the manylinux build image's
 * kernel headers predate it).  The structures and constants below are the kernel's stable ABI,
 * written out under ql_ names.
 *
 * Only what the monitor uses: set up a ring (SQ ring, CQ ring and SQE array mapped), take a
 * free SQE, publish the SQ tail, io_uring_enter, and read/consume CQEs.  Every function returns
 * -errno on failure (never sets errno), so the caller may run it without the GIL and read the
 * result afterwards.  Memory ordering follows the ring protocol: the kernel's SQ head and CQ
 * tail are read with acquire loads, our SQ tail and CQ head are published with release
 * stores. */
#ifndef QLOOP_IO_URING_H
#define QLOOP_IO_URING_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* the same numbers on every architecture (the unified syscall table since Linux 5.1) */
#define QL_NR_io_uring_setup 425
#define QL_NR_io_uring_enter 426
#define QL_NR_io_uring_register 427

#define QL_IORING_SETUP_CQSIZE (1U << 3)
#define QL_IORING_SETUP_R_DISABLED (1U << 6)
#define QL_IORING_SETUP_SUBMIT_ALL (1U << 7)
#define QL_IORING_SETUP_COOP_TASKRUN (1U << 8)
#define QL_IORING_SETUP_TASKRUN_FLAG (1U << 9)
#define QL_IORING_SETUP_SINGLE_ISSUER (1U << 12)
#define QL_IORING_SETUP_DEFER_TASKRUN (1U << 13)

#define QL_IORING_FEAT_SINGLE_MMAP (1U << 0)
#define QL_IORING_FEAT_NODROP (1U << 1)
#define QL_IORING_FEAT_CQE_SKIP (1U << 11)

#define QL_IORING_ENTER_GETEVENTS (1U << 0)

#define QL_IORING_SQ_CQ_OVERFLOW (1U << 1)
#define QL_IORING_SQ_TASKRUN (1U << 2)

#define QL_IORING_OP_POLL_ADD 6
#define QL_IORING_OP_POLL_REMOVE 7
#define QL_IORING_OP_TIMEOUT 11

#define QL_IOSQE_CQE_SKIP_SUCCESS (1U << 6)

#define QL_IORING_REGISTER_ENABLE_RINGS 12

#define QL_IORING_OFF_SQ_RING 0ULL
#define QL_IORING_OFF_CQ_RING 0x8000000ULL
#define QL_IORING_OFF_SQES 0x10000000ULL

struct ql_sqring_offsets {
    uint32_t head, tail, ring_mask, ring_entries, flags, dropped, array, resv1;
    uint64_t user_addr;
};

struct ql_cqring_offsets {
    uint32_t head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1;
    uint64_t user_addr;
};

struct ql_uring_params {
    uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd;
    uint32_t resv[3];
    struct ql_sqring_offsets sq_off;
    struct ql_cqring_offsets cq_off;
};

/* 64 bytes; the unions of the kernel's struct reduced to the members used here */
struct ql_sqe {
    uint8_t opcode;
    uint8_t flags;
    uint16_t ioprio;
    int32_t fd;
    uint64_t off;        /* TIMEOUT: completion count */
    uint64_t addr;       /* TIMEOUT: the timespec; POLL_REMOVE: the target's user_data */
    uint32_t len;        /* TIMEOUT: 1 (one timespec) */
    uint32_t op_flags;   /* POLL_ADD: poll32_events; TIMEOUT: timeout_flags */
    uint64_t user_data;
    uint16_t buf_index;
    uint16_t personality;
    int32_t file_index;
    uint64_t addr3;
    uint64_t pad2;
};

struct ql_cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
};

struct ql_kts {
    int64_t tv_sec;
    long long tv_nsec;
};

typedef struct ql_uring {
    int fd;
    unsigned setup_flags;
    unsigned features;
    unsigned *sq_head;
    unsigned *sq_tail;
    unsigned *sq_flags;
    unsigned sq_mask;
    unsigned sq_entries;
    unsigned sq_local_tail;   /* the next free slot; published to *sq_tail by ql_uring_publish */
    struct ql_sqe *sqes;
    unsigned *cq_head;
    unsigned *cq_tail;
    unsigned cq_mask;
    struct ql_cqe *cqes;
    void *sq_ring;
    size_t sq_ring_size;
    void *cq_ring;
    size_t cq_ring_size;
    size_t sqes_size;
    struct ql_kts ts;         /* the TIMEOUT SQE's timespec (read by the kernel at submission) */
} ql_uring;

static inline void ql_uring_clear(ql_uring *r)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
}

static inline void ql_uring_exit(ql_uring *r)
{
    if (r->sqes != NULL)
        munmap(r->sqes, r->sqes_size);
    if (r->cq_ring != NULL && r->cq_ring != r->sq_ring)
        munmap(r->cq_ring, r->cq_ring_size);
    if (r->sq_ring != NULL)
        munmap(r->sq_ring, r->sq_ring_size);
    if (r->fd >= 0)
        close(r->fd);
    ql_uring_clear(r);
}

/* Set up a ring of `entries` SQEs and `cq_entries` CQEs with `flags`; 0 or -errno (the ring
 * is left cleared on failure).  The fd is close-on-exec (io_uring fds always are). */
static inline int ql_uring_init(ql_uring *r, unsigned entries, unsigned cq_entries,
                                unsigned flags)
{
    struct ql_uring_params p;
    unsigned i, *array;
    void *ptr;
    long fd;

    ql_uring_clear(r);
    memset(&p, 0, sizeof(p));
    p.flags = flags | QL_IORING_SETUP_CQSIZE;
    p.cq_entries = cq_entries;
    fd = syscall(QL_NR_io_uring_setup, entries, &p);
    if (fd < 0)
        return -errno;
    r->fd = (int)fd;
    r->setup_flags = p.flags;
    r->features = p.features;
    if (!(p.features & QL_IORING_FEAT_SINGLE_MMAP) || !(p.features & QL_IORING_FEAT_NODROP)) {
        /* Linux < 5.5: not worth supporting (a CQ overflow would lose completions) */
        close(r->fd);
        r->fd = -1;
        return -ENOSYS;
    }
    r->sq_ring_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_ring_size = p.cq_off.cqes + p.cq_entries * sizeof(struct ql_cqe);
    if (r->cq_ring_size > r->sq_ring_size)
        r->sq_ring_size = r->cq_ring_size;
    r->cq_ring_size = r->sq_ring_size;  /* one mapping for both rings */
    ptr = mmap(NULL, r->sq_ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
               QL_IORING_OFF_SQ_RING);
    if (ptr == MAP_FAILED)
        goto fail;
    r->sq_ring = ptr;
    r->cq_ring = ptr;
    r->sqes_size = p.sq_entries * sizeof(struct ql_sqe);
    ptr = mmap(NULL, r->sqes_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
               QL_IORING_OFF_SQES);
    if (ptr == MAP_FAILED)
        goto fail;
    r->sqes = (struct ql_sqe *)ptr;
    r->sq_head = (unsigned *)((char *)r->sq_ring + p.sq_off.head);
    r->sq_tail = (unsigned *)((char *)r->sq_ring + p.sq_off.tail);
    r->sq_flags = (unsigned *)((char *)r->sq_ring + p.sq_off.flags);
    r->sq_mask = *(unsigned *)((char *)r->sq_ring + p.sq_off.ring_mask);
    r->sq_entries = p.sq_entries;
    array = (unsigned *)((char *)r->sq_ring + p.sq_off.array);
    for (i = 0; i < p.sq_entries; i++)
        array[i] = i;  /* slot i of the ring always names SQE i */
    r->sq_local_tail = *r->sq_tail;
    r->cq_head = (unsigned *)((char *)r->cq_ring + p.cq_off.head);
    r->cq_tail = (unsigned *)((char *)r->cq_ring + p.cq_off.tail);
    r->cq_mask = *(unsigned *)((char *)r->cq_ring + p.cq_off.ring_mask);
    r->cqes = (struct ql_cqe *)((char *)r->cq_ring + p.cq_off.cqes);
    return 0;
fail:
    i = (unsigned)errno;
    r->cq_ring = NULL;
    ql_uring_exit(r);
    return -(int)i;
}

/* A zeroed SQE to fill, or NULL when the SQ ring is full (publish and submit first). */
static inline struct ql_sqe *ql_uring_get_sqe(ql_uring *r)
{
    unsigned head = __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
    struct ql_sqe *sqe;
    if (r->sq_local_tail - head >= r->sq_entries)
        return NULL;
    sqe = &r->sqes[r->sq_local_tail & r->sq_mask];
    r->sq_local_tail++;
    memset(sqe, 0, sizeof(*sqe));
    return sqe;
}

/* Publish the SQEs written so far; returns how many the kernel has not consumed yet. */
static inline unsigned ql_uring_publish(ql_uring *r)
{
    __atomic_store_n(r->sq_tail, r->sq_local_tail, __ATOMIC_RELEASE);
    return r->sq_local_tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
}

static inline unsigned ql_uring_sq_flags(ql_uring *r)
{
    return __atomic_load_n(r->sq_flags, __ATOMIC_RELAXED);
}

static inline int ql_uring_enter(int fd, unsigned to_submit, unsigned min_complete,
                                 unsigned flags)
{
    long r = syscall(QL_NR_io_uring_enter, fd, to_submit, min_complete, flags, NULL, (size_t)0);
    return r < 0 ? -errno : (int)r;
}

/* Enable a ring set up with R_DISABLED: with SINGLE_ISSUER the calling thread becomes the one
 * allowed to submit. */
static inline int ql_uring_enable(int fd)
{
    long r = syscall(QL_NR_io_uring_register, fd, QL_IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    return r < 0 ? -errno : 0;
}

static inline void ql_uring_prep_poll_add(struct ql_sqe *sqe, int fd, unsigned events,
                                          uint64_t user_data)
{
    sqe->opcode = QL_IORING_OP_POLL_ADD;
    sqe->fd = fd;
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    events = (events << 16) | (events >> 16);
#endif
    sqe->op_flags = events;
    sqe->user_data = user_data;
}

static inline void ql_uring_prep_poll_remove(ql_uring *r, struct ql_sqe *sqe, uint64_t target,
                                             uint64_t user_data)
{
    sqe->opcode = QL_IORING_OP_POLL_REMOVE;
    sqe->fd = -1;
    sqe->addr = target;
    sqe->user_data = user_data;
    if (r->features & QL_IORING_FEAT_CQE_SKIP)
        sqe->flags = QL_IOSQE_CQE_SKIP_SUCCESS;
}

/* A relative timeout that also completes (with 0) once one other completion arrives. */
static inline void ql_uring_prep_timeout(ql_uring *r, struct ql_sqe *sqe, int64_t ns,
                                         uint64_t user_data)
{
    r->ts.tv_sec = ns / 1000000000;
    r->ts.tv_nsec = ns % 1000000000;
    sqe->opcode = QL_IORING_OP_TIMEOUT;
    sqe->fd = -1;
    sqe->addr = (uint64_t)(uintptr_t)&r->ts;
    sqe->len = 1;
    sqe->off = 1;
    sqe->user_data = user_data;
    if (r->features & QL_IORING_FEAT_CQE_SKIP)
        sqe->flags = QL_IOSQE_CQE_SKIP_SUCCESS;  /* only -ETIME (or -ECANCELED) reports */
}

/* CQEs ready to read: from *head_out up to the returned tail. */
static inline unsigned ql_uring_cq_tail(ql_uring *r, unsigned *head_out)
{
    *head_out = *r->cq_head;
    return __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
}

static inline struct ql_cqe *ql_uring_cqe(ql_uring *r, unsigned index)
{
    return &r->cqes[index & r->cq_mask];
}

static inline void ql_uring_cq_set_head(ql_uring *r, unsigned head)
{
    __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
}

static inline int ql_uring_cq_empty(ql_uring *r)
{
    return *r->cq_head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
}

#endif
