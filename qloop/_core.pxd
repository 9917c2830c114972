# cython: language_level=3
# Layouts of the compiled core's classes and their C-level methods (see _core.pyx).

from libc.stdint cimport int64_t, uint32_t, uint64_t

from qloop.includes.io_uring cimport ql_sqe, ql_uring
from qloop.includes.posix cimport epoll_event, pollfd


cdef class AioContext


cdef class EventNotifier:
    cdef int rfd
    cdef int wfd
    cdef object __weakref__

    cdef int _check(self) except -1
    cdef int _set(self) except -1
    cdef bint _test_and_clear(self) except -1


ctypedef struct TimerEntry:
    int64_t key          # ordering expiry (may be negative; the stored expiry is max(key, 0))
    uint64_t seq         # arming order; also identifies the entry as the timer's current one
    void *timer          # owned reference to the Timer (visited by the GC, see _tl_traverse)


cdef class _TimerList:
    cdef AioContext ctx
    cdef int clock
    cdef TimerEntry *heap
    cdef Py_ssize_t n
    cdef Py_ssize_t cap
    cdef Py_ssize_t dead

    cdef int _push(self, Timer timer, int64_t key) except -1
    cdef void _pop_top(self) noexcept
    cdef void _drop_stale_top(self) noexcept
    cdef void _compact(self) noexcept
    cdef int insert(self, Timer timer, int64_t key) except -1
    cdef void remove(self, Timer timer) noexcept
    cdef int64_t head_expire(self) noexcept
    cdef int64_t deadline(self, bint for_wait) noexcept
    cdef bint run(self) except -1
    cdef void clear(self) noexcept


cdef class Timer:
    cdef _TimerList tl
    cdef object cb
    cdef int64_t key     # valid while seq != 0
    cdef uint64_t seq    # 0 = not pending
    cdef int64_t _scale
    cdef uint32_t _attributes
    cdef object __weakref__

    @staticmethod
    cdef Timer _new(_TimerList tl, int64_t scale, object cb, uint32_t attributes)
    cdef _TimerList _list(self)


cdef class BH:
    cdef AioContext ctx
    cdef object cb
    cdef object _name
    cdef int flags
    cdef bint _deleted
    cdef BH next
    cdef object __weakref__

    @staticmethod
    cdef BH _new(AioContext ctx, object cb, object name)
    cdef int _check(self) except -1


cdef class _FdOwner:
    # A C-level fd handler: dispatched by _dispatch_node without a Python call (the asyncio
    # loop's readers/writers and transports).  Exceptions propagate to the context.
    cdef int _on_read(self) except -1
    cdef int _on_write(self) except -1


cdef class _Handler:
    cdef int fd
    cdef _FdOwner owner            # None, or the C owner io_read/io_write stand for
    cdef object io_read
    cdef object io_write
    cdef object io_poll
    cdef object io_poll_ready
    cdef object io_poll_begin
    cdef object io_poll_end
    cdef int events
    cdef int revents
    cdef bint poll_ready
    cdef bint deleted
    cdef bint in_poll_list
    cdef bint is_notifier
    cdef int64_t poll_ns
    cdef uint64_t ready_gen
    cdef uint64_t seq
    cdef bint uring_armed          # its POLL_ADD is submitted (or written) and not completed
    cdef bint uring_queued         # on _Uring.queue
    cdef bint uring_remove_sent    # removed: its POLL_REMOVE is submitted


cdef class _Uring:
    cdef ql_uring ring
    cdef unsigned long owner       # the thread that last submitted (SINGLE_ISSUER: the only one)
    cdef bint single_issuer
    cdef bint enabled              # SINGLE_ISSUER rings start disabled: enabled by the first user
    cdef int migrations
    cdef void **queue              # _Handler nodes to arm, re-arm or cancel at the next wait
    cdef Py_ssize_t qlen           # (borrowed pointers: see fdmon_uring.pxi)
    cdef Py_ssize_t qcap
    cdef void **spare              # the other array flush() swaps in
    cdef Py_ssize_t spare_cap
    cdef bint flushing
    cdef set zombies               # removed handlers whose POLL_ADD is still in flight
    cdef uint64_t timeout_seq
    cdef int fork_gen              # _uring_fork_gen when the ring was set up
    cdef bint outer_polled         # an outer loop polls the ring fd: no DEFER_TASKRUN

    cdef int setup(self, bint shared) except -1
    cdef bint mine(self) noexcept
    cdef int close(self) except -1
    cdef int update(self, AioContext ctx, _Handler old, _Handler new) except -1
    cdef int enqueue(self, _Handler node) except -1
    cdef int remove_now(self, _Handler node) except -1
    cdef ql_sqe *get_sqe(self) except NULL
    cdef int flush(self) except -1
    cdef int _flush(self, void **queue, Py_ssize_t n) except -1
    cdef int migrate(self, AioContext ctx) except -1
    cdef int rebuild(self, AioContext ctx, bint shared) except -1
    cdef int own(self, AioContext ctx) except -1
    cdef bint need_wait(self) noexcept
    cdef int wait(self, AioContext ctx, list ready, int64_t timeout, uint64_t gen) except -1
    cdef bint enter_failed(self, AioContext ctx, int err) except -1
    cdef bint reap(self, AioContext ctx, list ready, uint64_t gen, uint64_t tag) except -1
    cdef int prepare(self, AioContext ctx) except -1


cdef class AioContext:
    cdef bint _closed
    cdef int fdmon_mode            # 0 auto, 1 poll, 2 epoll, 3 io_uring
    cdef dict handlers             # fd -> live _Handler, in registration order
    cdef list deleted_handlers     # removed while walkers were active; freed by the outermost
    cdef uint64_t handler_seq
    cdef object list_lock
    cdef int npollfds              # live handlers with a nonzero event mask
    cdef bint fds_dirty
    cdef pollfd *pfds
    cdef void **pfd_nodes          # borrowed: kept alive by handlers/deleted_handlers
    cdef Py_ssize_t pfds_len
    cdef Py_ssize_t pfds_cap
    cdef int epfd
    cdef bint epoll_active
    cdef bint epoll_failed
    cdef epoll_event *ep_events
    cdef _Uring uring              # the io_uring monitor (None: ppoll or epoll)
    cdef int walkers
    cdef unsigned long poll_thread
    cdef int notify_me             # atomic: +2 per aio_poll in its wait phase
    cdef int notified              # atomic
    cdef int wake_writers          # atomic: notify() calls writing the eventfd right now
    cdef int poll_disable_cnt
    cdef int64_t poll_max_ns
    cdef int64_t poll_grow
    cdef int64_t poll_shrink
    cdef bint poll_started
    cdef list poll_list
    cdef uint64_t ready_gen
    cdef BH bh_head                # pending stack, newest first
    cdef BH bh_cur                 # the BH batches being run, as one chain
    cdef BH oneshot_free           # run one-shot BHs kept for reuse, a chain through next
    cdef int oneshot_nfree
    cdef list timer_lists
    cdef _TimerList tl0
    cdef _TimerList tl1
    cdef _TimerList tl2
    cdef _TimerList tl3
    cdef object exception_handler
    cdef list errors
    cdef EventNotifier notifier
    cdef int notifier_wfd
    cdef object timer_notify_cb
    cdef list source_nodes
    cdef bint source_epoll_ready
    cdef list source_errors
    cdef public object _co_state
    cdef public object _thread_pool
    cdef public object _g_source_obj
    cdef object __weakref__

    cdef void _notify(self) noexcept
    cdef int _timer_notify(self) except -1
    cdef int _report(self, object exc) except -1
    cdef int _call(self, object cb) except -1
    cdef bint _call_poll(self, _Handler node) except -1
    cdef int _set_handler(self, int fd, object io_read, object io_write, object io_poll,
                          object io_poll_ready, bint is_notifier) except -1
    cdef int _set_fd_owner(self, int fd, _FdOwner owner, bint on_read,
                           bint on_write) except -1
    cdef int _fdmon_update(self, _Handler old, _Handler new) except -1
    cdef void _epoll_disable(self) noexcept
    cdef bint _epoll_try_upgrade(self) except -1
    cdef int _rebuild_pollfds(self) except -1
    cdef int _wait(self, list ready, int64_t timeout, uint64_t gen) except -1
    cdef int _wait_ppoll(self, list ready, int64_t timeout, uint64_t gen) except -1
    cdef int _wait_epoll(self, list ready, int64_t timeout, uint64_t gen) except -1
    cdef int _add_ready(self, list ready, _Handler node, int rev, uint64_t gen) except -1
    cdef int _wait_failed(self, int err, str what) except -1
    cdef int _poll_list_add(self, _Handler node) except -1
    cdef int _poll_list_remove(self, _Handler node) except -1
    cdef int _mark_poll_ready(self, _Handler node, list ready, uint64_t gen) except -1
    cdef bint _poll_set_started(self, bint started, list ready, uint64_t gen) except -1
    cdef int64_t _try_poll_mode(self, int64_t timeout, list ready, uint64_t gen,
                                bint *progress) except? -2
    cdef void _adjust_polling_time(self, _Handler node, int64_t block_ns) noexcept
    cdef bint _dispatch_node(self, _Handler node) except -1
    cdef bint _dispatch_owner(self, _Handler node, int revents) except -1
    cdef int _bh_enqueue(self, BH bh, int flags) except -1
    cdef Timer _timer_new(self, object clock, int64_t scale, object callback, object attributes)
    cdef bint _bh_poll(self) except -1
    cdef inline bint _only_bh_pending(self, BH bh) noexcept
    cdef int64_t _bh_timeout(self) noexcept
    cdef int64_t _timers_deadline(self, bint for_wait=*) noexcept
    cdef bint _run_timers(self) except -1
    cdef int64_t _compute_timeout(self) noexcept
    cdef bint _poll(self, bint blocking) except -1
    cdef bint _poll_iteration(self, bint blocking) except -1
    cdef int _free_deleted_handlers(self) except -1
