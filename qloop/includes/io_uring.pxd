# cython: language_level=3
# The raw io_uring calls of qloop_io_uring.h (the "io_uring" fd monitor).

from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t


cdef extern from "<errno.h>" nogil:
    enum:
        ECANCELED


cdef extern from "qloop_io_uring.h" nogil:
    struct ql_sqe:
        pass

    struct ql_cqe:
        uint64_t user_data
        int32_t res
        uint32_t flags

    ctypedef struct ql_uring:
        int fd
        unsigned setup_flags
        unsigned features

    enum:
        QL_IORING_SETUP_SUBMIT_ALL
        QL_IORING_SETUP_R_DISABLED
        QL_IORING_SETUP_COOP_TASKRUN
        QL_IORING_SETUP_TASKRUN_FLAG
        QL_IORING_SETUP_SINGLE_ISSUER
        QL_IORING_SETUP_DEFER_TASKRUN
        QL_IORING_ENTER_GETEVENTS
        QL_IORING_SQ_CQ_OVERFLOW
        QL_IORING_SQ_TASKRUN

    void ql_uring_clear(ql_uring *r)
    void ql_uring_exit(ql_uring *r)
    int ql_uring_init(ql_uring *r, unsigned entries, unsigned cq_entries, unsigned flags)
    ql_sqe *ql_uring_get_sqe(ql_uring *r)
    unsigned ql_uring_publish(ql_uring *r)
    unsigned ql_uring_sq_flags(ql_uring *r)
    int ql_uring_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags)
    int ql_uring_enable(int fd)
    void ql_uring_prep_poll_add(ql_sqe *sqe, int fd, unsigned events, uint64_t user_data)
    void ql_uring_prep_poll_remove(ql_uring *r, ql_sqe *sqe, uint64_t target,
                                   uint64_t user_data)
    void ql_uring_prep_timeout(ql_uring *r, ql_sqe *sqe, int64_t ns, uint64_t user_data)
    unsigned ql_uring_cq_tail(ql_uring *r, unsigned *head_out)
    ql_cqe *ql_uring_cqe(ql_uring *r, unsigned index)
    void ql_uring_cq_set_head(ql_uring *r, unsigned head)
    bint ql_uring_cq_empty(ql_uring *r)
