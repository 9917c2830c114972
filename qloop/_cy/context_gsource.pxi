# The GSource adapter of AioContext (docs/glib.md): how an outer loop (GLib's, through
# qloop/_main/glib.py) drives a context.  Twin of qloop/_py/context_gsource.py; included by
# qloop/_core.pyx.
#
# The bodies of AioContext.g_source() and source_prepare/query/check/dispatch(): the methods
# stay on the class (the public API, with their signatures and docstrings) and call these
# directly in C; the functions read the context's C attributes (declared in qloop/_core.pxd).

cdef object gsource_get(AioContext ctx):
    """``AioContext.g_source()``."""
    ctx._check_open()
    src = ctx._g_source_obj
    if src is None or src.is_destroyed():
        src = ctx._g_source_obj = _glib.make_g_source(ctx)
    return src


cdef int64_t gsource_prepare(AioContext ctx) except? -2:
    """``AioContext.source_prepare()``."""
    ctx._check_open()
    ql_fetch_or(&ctx.notify_me, 1)
    ql_smp_mb()
    timeout = ctx._compute_timeout()
    ctx._poll_set_started(False, [], 0)  # poll mode is never used under an outer loop
    return timeout


cdef list gsource_query(AioContext ctx):
    """``AioContext.source_query()``."""
    ctx._check_open()
    if ctx.uring is not None:
        ctx.uring.prepare(ctx)
        ctx.source_nodes = [None]
        return [(ctx.uring.ring.fd, POLLIN)]
    if ctx.epoll_active:
        ctx.source_nodes = [None]
        return [(ctx.epfd, POLLIN)]
    with ctx.list_lock:
        live = [n for n in ctx.handlers.values() if (<_Handler>n).events]
    ctx.source_nodes = live
    return [((<_Handler>n).fd, (<_Handler>n).events) for n in live]


cdef bint gsource_check(AioContext ctx, object revents) except -1:
    """``AioContext.source_check(revents)``."""
    cdef _Handler node
    cdef int rev
    cdef bint pending = False
    ctx._check_open()
    ql_fetch_and(&ctx.notify_me, ~1)
    ql_xchg(&ctx.notified, 0)  # aio_notify_accept
    nodes = ctx.source_nodes if ctx.source_nodes is not None else []
    ctx.source_nodes = []
    ctx.source_epoll_ready = False
    if revents is not None:
        if len(revents) != len(nodes):
            raise ValueError(f"revents has {len(revents)} entries; "
                             f"source_query() gave {len(nodes)}")
        for obj, r in zip(nodes, revents):
            rev = _int_arg(r, "revents[i]")
            if obj is None:
                ctx.source_epoll_ready = rev != 0
                pending = pending or rev != 0
                continue
            node = <_Handler>obj
            if node.deleted:
                continue
            if rev & POLLNVAL:
                ctx._set_handler(node.fd, None, None, None, None, False)
                saved, ctx.errors = ctx.errors, ctx.source_errors
                try:
                    ctx._report(_closed_fd_error(node.fd))
                finally:
                    ctx.source_errors, ctx.errors = ctx.errors, saved
                pending = True
                continue
            node.revents = rev & node.events
            if (node.revents & READ_EVENTS and node.io_read is not None) or (
                    node.revents & WRITE_EVENTS and node.io_write is not None):
                pending = True
    if ctx._bh_timeout() >= 0:
        return True  # a scheduled BH, idle ones included
    if pending:
        return True
    return ctx._timers_deadline() == 0


cdef bint gsource_dispatch(AioContext ctx) except -1:
    """``AioContext.source_dispatch()``."""
    cdef unsigned long me = PyThread_get_thread_ident()
    cdef bint progress = False
    cdef uint64_t gen
    cdef _Handler node
    ctx._check_open()
    if ctx.walkers and ctx.poll_thread != me:
        raise RuntimeError("AioContext dispatched from two threads at once")
    if not ctx.walkers:
        ctx.poll_thread = me
    saved = ctx.errors
    ctx.errors = ctx.source_errors
    ctx.source_errors = None
    try:
        ctx.walkers += 1
        try:
            # a new generation before the BHs, as poll() does (the asyncio loop's timer
            # phase tells the timers made in this iteration by it); another one if a
            # nested poll in a BH took it
            ctx.ready_gen += 1
            gen = ctx.ready_gen
            progress = ctx._bh_poll()
            if ctx.ready_gen != gen:
                ctx.ready_gen += 1
                gen = ctx.ready_gen
            ready = []
            if ctx.epoll_active or ctx.uring is not None:
                if ctx.source_epoll_ready:
                    ctx.source_epoll_ready = False
                    ctx._wait(ready, 0, gen)
            else:
                for obj in list(ctx.handlers.values()):
                    node = <_Handler>obj
                    if node.revents and node.ready_gen != gen:
                        node.ready_gen = gen
                        ready.append(node)
            for obj in ready:
                node = <_Handler>obj
                if node.ready_gen != gen:
                    continue
                node.ready_gen = 0
                if ctx._dispatch_node(node):
                    progress = True
        finally:
            ctx.walkers -= 1
            if ctx.walkers == 0 and len(ctx.deleted_handlers):
                ctx._free_deleted_handlers()
        if ctx._run_timers():
            progress = True
    finally:
        errors = ctx.errors
        ctx.errors = saved
        if not ctx.walkers:
            ctx.poll_thread = 0
    if errors:
        _raise_errors(errors)
    return progress
