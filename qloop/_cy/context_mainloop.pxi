# The main loop's adapter over AioContext (docs/main-loop-iteration.md): the steps one
# main_loop_wait iteration (_cy/mainloop.pxi) takes on each of its contexts.  Twin of
# qloop/_py/context_mainloop.py; included by qloop/_core.pyx.
#
# They are the GSource steps (AioContext.source_*) without their argument checks and
# per-call lists.  Module-level functions over a typed AioContext rather than methods: the
# class stays its public API, and a call here is a direct C call all the same (the functions
# read the context's C attributes, declared in qloop/_core.pxd).

cdef inline void ml_open_window(AioContext ctx) noexcept:
    """The main loop's wait may block: from now on a notify must wake it (as
    ``source_prepare``, bit 0 of notify_me)."""
    ql_fetch_or(&ctx.notify_me, 1)
    ql_smp_mb()


cdef inline int64_t ml_timeout(AioContext ctx) except? -2:
    """The timeout in ns ``ctx`` allows (poll mode is left: an outer loop never busy-polls)."""
    if ctx.poll_started:
        ctx._poll_set_started(False, [], 0)
    return ctx._compute_timeout()


cdef inline int ml_enter(AioContext ctx, unsigned long me) except -1:
    """Enter as a walker for the main loop's wait: the handlers in the pollfd array
    outlive it."""
    if ctx.walkers and ctx.poll_thread != me:
        raise RuntimeError("AioContext dispatched from two threads at once")
    ctx.walkers += 1
    ctx.poll_thread = me
    return 0


cdef inline void ml_accept(AioContext ctx, bint window) noexcept:
    """An iteration without a wait: close the notify window, accept the notify."""
    if window:
        ql_fetch_and(&ctx.notify_me, ~1)
    ql_xchg(&ctx.notified, 0)  # aio_notify_accept


cdef inline Py_ssize_t ml_nfds(AioContext ctx) noexcept:
    """How many pollfds ``ml_fill`` writes."""
    return 1 if ctx.epoll_active or ctx.uring is not None else ctx.npollfds


cdef inline bint ml_idle(AioContext ctx) noexcept:
    """Only the context's own notifier is registered (its state is known without a wait)."""
    return ctx.npollfds <= 1 and not ctx.epoll_active and ctx.uring is None


cdef Py_ssize_t ml_fill(AioContext ctx, pollfd *dst) except -1:
    """Write the fds the main loop waits on for ``ctx`` (room: ``ml_nfds(ctx)``)."""
    if ctx.uring is not None:
        ctx.uring.prepare(ctx)
        dst[0].fd = ctx.uring.ring.fd
        dst[0].events = POLLIN
        dst[0].revents = 0
        return 1
    if ctx.epoll_active:
        dst[0].fd = ctx.epfd
        dst[0].events = POLLIN
        dst[0].revents = 0
        return 1
    if ctx.fds_dirty:
        ctx._rebuild_pollfds()
    memcpy(dst, ctx.pfds, ctx.pfds_len * sizeof(pollfd))
    return ctx.pfds_len


cdef list ml_check(AioContext ctx, pollfd *seg, Py_ssize_t n, uint64_t *gen_out, bint window):
    """Close the notify window (if ``window``), accept the notify, collect the handlers the
    wait found ready in ``seg`` (what ``ml_fill`` wrote, with revents) and leave the walker
    section.  Returns the ready handlers (None: none), their generation in gen_out."""
    cdef Py_ssize_t i
    cdef int rev
    cdef uint64_t gen
    cdef list ready = None
    cdef _Handler node
    if window:
        ql_fetch_and(&ctx.notify_me, ~1)
    ql_xchg(&ctx.notified, 0)  # aio_notify_accept
    ctx.ready_gen += 1
    gen = ctx.ready_gen
    gen_out[0] = gen
    try:
        if ctx.uring is not None:
            if n and seg[0].revents:
                ready = []
                ctx.uring.wait(ctx, ready, 0, gen)
        elif ctx.epoll_active:
            if n and seg[0].revents:
                ready = []
                ctx._wait_epoll(ready, 0, gen)
        else:
            for i in range(n):
                rev = seg[i].revents
                if not rev:
                    continue
                node = <_Handler>ctx.pfd_nodes[i]  # alive: walkers > 0 since the fill
                if node.deleted:
                    continue
                if rev & POLLNVAL:
                    ctx._set_handler(node.fd, None, None, None, None, False)
                    ctx._report(_closed_fd_error(node.fd))
                elif rev & node.events:
                    if ready is None:
                        ready = []
                    ctx._add_ready(ready, node, rev & node.events, gen)
    finally:
        ctx.walkers -= 1
        if ctx.walkers == 0:
            ctx.poll_thread = 0
            if len(ctx.deleted_handlers):
                ctx._free_deleted_handlers()
    return ready


cdef int ml_dispatch(AioContext ctx, list ready, uint64_t gen, unsigned long me) except -1:
    """``aio_dispatch`` for the main loop: BHs, the ready handlers, then timers."""
    cdef _Handler node
    if ctx._closed:
        return 0
    if ctx.walkers and ctx.poll_thread != me:
        raise RuntimeError("AioContext dispatched from two threads at once")
    ctx.poll_thread = me
    # a new generation for each iteration, waited or not (the asyncio loop's timer phase
    # tells the timers made in this iteration by it); the ready list keeps its own
    ctx.ready_gen += 1
    ctx.walkers += 1
    try:
        if ctx.bh_head is not None or ctx.bh_cur is not None:
            ctx._bh_poll()
        if ready is not None:
            for obj in ready:
                node = <_Handler>obj
                if node.ready_gen != gen:
                    continue
                node.ready_gen = 0
                ctx._dispatch_node(node)
    finally:
        ctx.walkers -= 1
        if ctx.walkers == 0 and len(ctx.deleted_handlers):
            ctx._free_deleted_handlers()
    if ctx.tl0.n or ctx.tl1.n or ctx.tl2.n or ctx.tl3.n:
        ctx._run_timers()
    if not ctx.walkers:
        ctx.poll_thread = 0
    return 0
