# The "io_uring" fd monitor of the compiled core (docs/aio-context.md, "fd monitors"); the
# AioContext calls it from _fdmon_update, _wait, the main loop's ml_* steps
# (context_mainloop.pxi) and the GSource steps.  No twin: the pure-Python implementation
# answers "not available" (qloop/_py/context.py).
# Included by qloop/_core.pyx before context.pxi.
#
# One one-shot POLL_ADD per monitored handler, its user_data the _Handler itself (borrowed: a
# live handler is held by ctx.handlers, a removed one whose POLL_ADD is still in flight, or that
# is still queued, by `zombies`; the queue is a C array of borrowed pointers too).  A
# completion queues a re-arm, turned into an SQE at the next wait, after the dispatch: so the
# monitor is level-triggered.  Registration changes are queued the same way;
# a removal outside poll() on the ring's own thread is submitted at once, so the kernel drops
# its reference to the file before the caller closes the fd.

cdef enum:
    URING_ENTRIES = 128
    URING_CQ_ENTRIES = 1024
    URING_FAST_FLAGS = (QL_IORING_SETUP_SINGLE_ISSUER | QL_IORING_SETUP_DEFER_TASKRUN
                        | QL_IORING_SETUP_TASKRUN_FLAG)

# QLOOP_IO_URING (read at every setup, so tests can switch it): "enosys", "eperm" and
# "disabled" simulate a setup failure (qloop._common._io_uring_switched_off); "plain" sets
# rings up without SINGLE_ISSUER/DEFER_TASKRUN.


# Bumped in a child after fork(): a ring inherited from the parent shares its SQ and CQ
# memory with the parent's, so the child must not touch it (it sets up its own).
cdef int _uring_fork_gen = 0


def _uring_after_fork():
    global _uring_fork_gen
    _uring_fork_gen += 1


_os.register_at_fork(after_in_child=_uring_after_fork)


@cython.final
cdef class _Uring:
    """The ring of one AioContext and its bookkeeping."""

    def __cinit__(self):
        ql_uring_clear(&self.ring)
        self.zombies = set()

    def __dealloc__(self):
        ql_uring_exit(&self.ring)
        PyMem_Free(self.queue)
        PyMem_Free(self.spare)

    cdef int setup(self, bint shared) except -1:
        """Set the ring up for the calling thread: SINGLE_ISSUER | DEFER_TASKRUN where the
        kernel has them, unless ``shared`` (a context polled from several threads) or the
        QLOOP_IO_URING switch says otherwise.  OSError naming the cause when io_uring is
        unavailable."""
        cdef int r
        cdef unsigned flags = QL_IORING_SETUP_SUBMIT_ALL
        exc = _io_uring_switched_off()
        if exc is not None:
            raise exc
        if (not shared and not self.outer_polled
                and _os.environ.get("QLOOP_IO_URING", "") != "plain"):
            # disabled until the first thread that uses it enables it and so becomes its
            # submitter: the creating thread need not be the polling one (an IOThread's)
            flags |= URING_FAST_FLAGS | QL_IORING_SETUP_R_DISABLED
        r = ql_uring_init(&self.ring, URING_ENTRIES, URING_CQ_ENTRIES, flags)
        if r == -EINVAL and flags & URING_FAST_FLAGS:  # before Linux 6.1
            flags = QL_IORING_SETUP_SUBMIT_ALL
            r = ql_uring_init(&self.ring, URING_ENTRIES, URING_CQ_ENTRIES, flags)
        if r == -EINVAL:  # before Linux 5.18
            flags = 0
            r = ql_uring_init(&self.ring, URING_ENTRIES, URING_CQ_ENTRIES, flags)
        if r < 0:
            raise _io_uring_unavailable(-r, _io_uring_sysctl() if r == -EPERM else "")
        self.single_issuer = (flags & QL_IORING_SETUP_SINGLE_ISSUER) != 0
        self.enabled = not flags & QL_IORING_SETUP_R_DISABLED
        self.owner = PyThread_get_thread_ident() if self.enabled else 0
        self.fork_gen = _uring_fork_gen
        return 0

    cdef inline bint mine(self) noexcept:
        """The calling thread may submit to the ring now, without moving it."""
        return (self.enabled and self.fork_gen == _uring_fork_gen and self.ring.fd >= 0
                and PyThread_get_thread_ident() == self.owner)

    cdef int close(self) except -1:
        ql_uring_exit(&self.ring)
        self.qlen = 0
        self.zombies.clear()
        return 0

    # ---- registration changes

    cdef int update(self, AioContext ctx, _Handler old, _Handler new) except -1:
        """A handler was replaced, added or removed (called with the list lock held)."""
        if old is not None and old.uring_queued and not old.uring_armed:
            self.zombies.add(old)  # held while queued (flush() lets it go)
        elif old is not None and old.uring_armed:
            self.zombies.add(old)  # held until its POLL_ADD completes
            if new is None and not ctx.walkers and self.mine():
                # removal outside poll() on the ring's thread: cancel now
                self.remove_now(old)
            else:
                self.enqueue(old)
        if new is not None and new.events:
            self.enqueue(new)
        return 0

    cdef inline int enqueue(self, _Handler node) except -1:
        cdef void **mem
        if node.uring_queued:
            return 0
        if self.qlen == self.qcap:
            mem = <void **>PyMem_Realloc(self.queue, (self.qcap * 2 + 16) * sizeof(void *))
            if mem == NULL:
                raise MemoryError()
            self.queue = mem
            self.qcap = self.qcap * 2 + 16
        node.uring_queued = True
        self.queue[self.qlen] = <void *>node
        self.qlen += 1
        return 0

    cdef int remove_now(self, _Handler node) except -1:
        cdef ql_sqe *sqe = self.get_sqe()
        cdef int r
        ql_uring_prep_poll_remove(&self.ring, sqe, <uint64_t><uintptr_t><void *>node, 0)
        node.uring_remove_sent = True
        r = ql_uring_enter(self.ring.fd, ql_uring_publish(&self.ring), 0,
                           QL_IORING_ENTER_GETEVENTS)
        if r < 0 and r != -EINTR and r != -EBUSY and r != -EAGAIN:
            raise OSError(-r, "io_uring_enter() failed")
        return 0

    cdef ql_sqe *get_sqe(self) except NULL:
        """A free SQE; submits what is queued in the ring first when it is full."""
        cdef ql_sqe *sqe = ql_uring_get_sqe(&self.ring)
        cdef int r
        while sqe == NULL:
            r = ql_uring_enter(self.ring.fd, ql_uring_publish(&self.ring), 0, 0)
            if r < 0 and r != -EINTR and r != -EBUSY and r != -EAGAIN:
                raise OSError(-r, "io_uring_enter() failed")
            sqe = ql_uring_get_sqe(&self.ring)
        return sqe

    cdef int flush(self) except -1:
        """Turn the queued changes and re-arms into SQEs (not yet submitted)."""
        cdef void **queue = self.queue
        cdef Py_ssize_t n = self.qlen
        if not n or self.flushing:  # nested (a destructor run by discard() polled): the outer
            return 0                # flush goes on with the array it holds
        self.flushing = True
        try:
            self._flush(queue, n)
        finally:
            self.flushing = False
        return 0

    cdef int _flush(self, void **queue, Py_ssize_t n) except -1:
        cdef _Handler node
        cdef ql_sqe *sqe
        cdef Py_ssize_t i
        # the two arrays take turns: an enqueue while this one is walked goes to the other
        self.queue, self.spare = self.spare, queue
        self.qcap, self.spare_cap = self.spare_cap, self.qcap
        self.qlen = 0
        for i in range(n):
            node = <_Handler>queue[i]
            node.uring_queued = False
            if node.deleted:
                if node.uring_armed:
                    if not node.uring_remove_sent:
                        sqe = self.get_sqe()
                        ql_uring_prep_poll_remove(&self.ring, sqe,
                                                  <uint64_t><uintptr_t><void *>node, 0)
                        node.uring_remove_sent = True
                else:
                    self.zombies.discard(node)  # removed before it was armed
            elif not node.uring_armed and node.events:
                sqe = self.get_sqe()
                ql_uring_prep_poll_add(sqe, node.fd, <unsigned>node.events,
                                       <uint64_t><uintptr_t><void *>node)
                node.uring_armed = True
        return 0

    cdef int migrate(self, AioContext ctx) except -1:
        """The ring belongs to another thread (SINGLE_ISSUER) or to the parent process: replace
        it with a ring any thread may use (a forked child: a ring of its own) and arm every live
        handler again (docs/aio-context.md, "fd monitors")."""
        # a forked child is one thread again: the fast flags
        self.rebuild(ctx, self.fork_gen == _uring_fork_gen)
        self.migrations += 1
        return 0

    cdef int rebuild(self, AioContext ctx, bint shared) except -1:
        """Replace the ring with a new one set up by ``setup(shared)``, and arm every live
        handler again there."""
        cdef _Handler node
        cdef Py_ssize_t i
        # the kernel cancels the old ring's polls; after fork() this only unmaps and closes
        # the child's copy: the parent's ring goes on
        ql_uring_exit(&self.ring)
        for obj in self.zombies:
            (<_Handler>obj).uring_armed = False
            (<_Handler>obj).uring_queued = False
        for i in range(self.qlen):  # the queue may name zombies: rebuilt from live handlers
            (<_Handler>self.queue[i]).uring_queued = False
        self.qlen = 0
        self.zombies.clear()
        for obj in ctx.handlers.values():
            node = <_Handler>obj
            node.uring_armed = False
            node.uring_remove_sent = False
            if node.events:
                self.enqueue(node)
        self.setup(shared)
        return 0

    cdef int own(self, AioContext ctx) except -1:
        """Make sure the calling thread may submit to the ring."""
        cdef int r
        cdef unsigned long me = PyThread_get_thread_ident()
        if self.fork_gen != _uring_fork_gen or (
                self.enabled and self.single_issuer and me != self.owner):
            self.migrate(ctx)
        if not self.enabled:
            r = ql_uring_enable(self.ring.fd)  # this thread becomes the submitter
            if r < 0:
                raise OSError(-r, "io_uring_register(IORING_REGISTER_ENABLE_RINGS) failed")
            self.enabled = True
        self.owner = me
        return 0

    # ---- the wait

    cdef bint need_wait(self) noexcept:
        """A non-blocking poll() must still wait (QEMU's need_wait): changes are queued, or
        completions (or the work that posts them) are pending."""
        return (self.qlen != 0 or (self.ring.fd >= 0 and (
            not ql_uring_cq_empty(&self.ring)
            or ql_uring_sq_flags(&self.ring) & (QL_IORING_SQ_TASKRUN | QL_IORING_SQ_CQ_OVERFLOW))))

    cdef int wait(self, AioContext ctx, list ready, int64_t timeout, uint64_t gen) except -1:
        """Submit the queued SQEs, wait up to ``timeout`` ns (-1: no limit, 0: do not block)
        for a completion and collect the ready handlers."""
        cdef unsigned to_submit, flags
        cdef uint64_t tag = 0
        cdef int r, fd
        self.own(ctx)
        self.flush()
        if timeout != 0 and not ql_uring_cq_empty(&self.ring):
            timeout = 0  # completions are waiting already
        if timeout > 0:
            self.timeout_seq += 1
            tag = (self.timeout_seq << 1) | 1  # odd: never a handler's address
            ql_uring_prep_timeout(&self.ring, self.get_sqe(), timeout, tag)
        to_submit = ql_uring_publish(&self.ring)
        fd = self.ring.fd
        if timeout == 0:
            flags = ql_uring_sq_flags(&self.ring)
            if to_submit or flags & (QL_IORING_SQ_TASKRUN | QL_IORING_SQ_CQ_OVERFLOW) or (
                    not self.ring.setup_flags & QL_IORING_SETUP_DEFER_TASKRUN
                    and ql_uring_cq_empty(&self.ring)):
                r = ql_uring_enter(fd, to_submit, 0, QL_IORING_ENTER_GETEVENTS)
                if r < 0:
                    self.enter_failed(ctx, -r)
            self.reap(ctx, ready, gen, 0)
            return 0
        while True:
            with nogil:
                r = ql_uring_enter(fd, to_submit, 1, QL_IORING_ENTER_GETEVENTS)
            if r < 0 and self.enter_failed(ctx, -r):
                return 0  # a signal handler raised: the iteration goes on
            if self.reap(ctx, ready, gen, tag):
                return 0
            # woken without a completion of ours (a signal, a stale timeout, a removal's
            # cancellation): run the signal handlers, then wait again
            try:
                PyErr_CheckSignals()
            except BaseException as exc:
                ctx._report(exc)
                return 0
            self.flush()
            to_submit = ql_uring_publish(&self.ring)

    cdef bint enter_failed(self, AioContext ctx, int err) except -1:
        """io_uring_enter returned -err.  True when a Python signal handler raised (reported
        like a callback's exception); EINTR is otherwise retried."""
        if err == EINTR:
            try:
                PyErr_CheckSignals()
            except BaseException as exc:
                ctx._report(exc)
                return True
            return False
        if err == EBUSY or err == EAGAIN:
            return False  # completions to reap first
        raise OSError(err, "io_uring_enter() failed")

    cdef bint reap(self, AioContext ctx, list ready, uint64_t gen, uint64_t tag) except -1:
        """Consume the CQEs: True when one was a handler's or the timeout ``tag``."""
        cdef unsigned head, tail
        cdef ql_cqe *cqe
        cdef uint64_t ud
        cdef int res, rev
        cdef bint got = False
        cdef _Handler node
        cdef list closed = None
        tail = ql_uring_cq_tail(&self.ring, &head)
        while head != tail:
            cqe = ql_uring_cqe(&self.ring, head)
            ud = cqe.user_data
            res = cqe.res
            head += 1
            if ud & 1 or ud == 0:  # a timeout, or a POLL_REMOVE that found nothing
                if ud == tag:
                    got = True
                continue
            node = <_Handler><void *><uintptr_t>ud
            node.uring_armed = False
            if node.deleted:
                node.uring_remove_sent = False
                if not node.uring_queued:  # else flush() lets it go
                    self.zombies.discard(node)  # the removal is complete
                continue
            if res < 0:
                if res == -EBADF:  # the fd was closed under its handler (ppoll: POLLNVAL)
                    if closed is None:
                        closed = []
                    closed.append(node)
                    continue
                if res == -ECANCELED:  # the thread that armed it exited: arm it again
                    self.enqueue(node)
                    continue
                res = POLLERR
            got = True
            self.enqueue(node)
            rev = res & node.events
            if rev:
                ctx._add_ready(ready, node, rev, gen)
        ql_uring_cq_set_head(&self.ring, head)
        if closed is not None:
            for obj in closed:
                node = <_Handler>obj
                if not node.deleted:
                    ctx._set_handler(node.fd, None, None, None, None, False)
                    ctx._report(_closed_fd_error(node.fd))
        return got

    # ---- an outer loop waits on the ring fd (main loop, GSource)

    cdef int prepare(self, AioContext ctx) except -1:
        """Before an outer loop polls the ring fd: submit the queued SQEs (the kernel makes
        the ring fd readable while completions, or the work that posts them, are pending)."""
        cdef unsigned n
        cdef int r
        if not self.outer_polled:
            # Under DEFER_TASKRUN a completion is queued as work for the submitter to run in
            # io_uring_enter(); nothing wakes a poll() sleeping on the ring fd meanwhile (a
            # lost wake-up), so a ring that an outer loop polls is set up without it.
            self.outer_polled = True
            if self.ring.setup_flags & QL_IORING_SETUP_DEFER_TASKRUN:
                self.rebuild(ctx, False)
        self.own(ctx)
        self.flush()
        n = ql_uring_publish(&self.ring)
        if n:
            r = ql_uring_enter(self.ring.fd, n, 0, 0)
            if r < 0:
                self.enter_failed(ctx, -r)
        return 0


def _uring_info(AioContext ctx):
    """For tests: the io_uring monitor's state, or None when the context does not use it."""
    cdef _Uring u = ctx.uring
    if u is None:
        return None
    return {
        "single_issuer": u.single_issuer,
        "enabled": u.enabled,
        "defer_taskrun": (u.ring.setup_flags & QL_IORING_SETUP_DEFER_TASKRUN) != 0,
        "outer_polled": u.outer_polled,
        "owner": u.owner,
        "migrations": u.migrations,
        "ring_fd": u.ring.fd,
        "zombies": len(u.zombies),
        "queued": u.qlen,
    }
