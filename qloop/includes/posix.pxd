# cython: language_level=3
# Linux system interfaces the compiled core calls directly (epoll, epoll_pwait2, ppoll, eventfd,
# pipe2).

from libc.stdint cimport int64_t, uint32_t, uint64_t
from posix.time cimport timespec


cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64

    struct epoll_event:
        uint32_t events
        epoll_data_t data

    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)

    enum:
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP


cdef extern from "qloop_epoll.h" nogil:
    int ql_epoll_pwait2(int epfd, epoll_event *events, int maxevents, int64_t timeout_ns)


cdef extern from "<signal.h>" nogil:
    ctypedef struct sigset_t:
        pass


cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents

    ctypedef unsigned long nfds_t

    int ppoll(pollfd *fds, nfds_t nfds, const timespec *tmo_p, const sigset_t *sigmask)

    enum:
        POLLIN
        POLLOUT
        POLLERR
        POLLHUP
        POLLNVAL


cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)

    enum:
        EFD_NONBLOCK
        EFD_CLOEXEC


cdef extern from "<unistd.h>" nogil:
    int pipe2(int *pipefd, int flags)


cdef extern from "<sched.h>" nogil:
    int sched_yield()


cdef extern from "qloop_atomic.h" nogil:
    int ql_fetch_or(int *p, int v)
    int ql_fetch_and(int *p, int v)
    int ql_load(const int *p)
    int ql_load_relaxed(const int *p)
    void ql_store(int *p, int v)
    void ql_store_relaxed(int *p, int v)
    int ql_xchg(int *p, int v)
    int ql_cmpxchg(int *p, int old, int v)
    void ql_futex_wait(int *p, int v)
    void ql_futex_wake_one(int *p)
    int ql_fetch_add(int *p, int v)
    void ql_smp_mb()
    void ql_smp_wmb()
