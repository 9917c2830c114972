# One main_loop_wait iteration and the big lock, compiled (included by _core.pyx).  The
# fallback's twin is qloop/_py/mainloop.py: read the two side by side.  The order of an
# iteration is described there and in docs/main-loop-iteration.md.
#
# Per iteration no Python object is built and no public wrapper is called: the fds of both
# contexts (their persistent pollfd arrays, or their epoll fd) and GLib's (queried through its
# C API) are copied into one C pollfd array, polled with the big lock and the GIL released,
# and the revents go straight back to the handlers.  Python runs only for user callbacks and
# registered poll notifiers.

cdef enum:
    POLL_ERRORS = POLLERR | POLLHUP | POLLNVAL
    BQL_FREE = 0
    BQL_LOCKED = 1
    BQL_CONTENDED = 2  # locked, and a thread may sleep on the futex

cdef int64_t ML_UINT32_MAX = 0xFFFFFFFF


@cython.final
cdef class BigLock:
    """BigLock()
--

The BQL: a non-recursive lock that knows its owner.  ``with qloop.bql:`` takes it."""

    cdef int state           # BQL_FREE / BQL_LOCKED / BQL_CONTENDED (a futex word)
    cdef unsigned long owner  # 0: free

    cdef int _lock(self, unsigned long me) except -1:
        cdef int c
        if self.owner == me:
            raise RuntimeError("the BQL is already held by this thread")
        c = ql_cmpxchg(&self.state, BQL_FREE, BQL_LOCKED)
        if c != BQL_FREE:
            with nogil:  # sleep on the futex, marking the lock contended
                if c != BQL_CONTENDED:
                    c = ql_xchg(&self.state, BQL_CONTENDED)
                while c != BQL_FREE:
                    ql_futex_wait(&self.state, BQL_CONTENDED)
                    c = ql_xchg(&self.state, BQL_CONTENDED)
        self.owner = me
        return 0

    cdef int _unlock(self, unsigned long me) except -1:
        if self.owner != me:
            raise RuntimeError("the BQL is not held by this thread")
        self.owner = 0
        if ql_fetch_add(&self.state, -1) != BQL_LOCKED:  # was contended: wake one sleeper
            ql_store(&self.state, BQL_FREE)
            ql_futex_wake_one(&self.state)
        return 0

    def lock(self):
        """Take the lock; RuntimeError if this thread holds it already."""
        self._lock(PyThread_get_thread_ident())

    def unlock(self):
        """Release the lock; RuntimeError if this thread does not hold it."""
        self._unlock(PyThread_get_thread_ident())

    def locked(self):
        """Whether this thread holds the lock."""
        return self.owner == PyThread_get_thread_ident()

    def __enter__(self):
        """Take the lock."""
        self._lock(PyThread_get_thread_ident())
        return self

    def __exit__(self, *exc):
        """Release the lock."""
        self._unlock(PyThread_get_thread_ident())

    def __repr__(self):
        return f"<qloop.bql {'held' if self.owner else 'free'}>"


cdef object _FILL = _runstate.MainLoopPollState.FILL
cdef object _OK = _runstate.MainLoopPollState.OK
cdef object _ERR = _runstate.MainLoopPollState.ERR


cdef inline int64_t _ms_ceil_ns(int64_t ns) noexcept nogil:
    # a context's timeout rounded up to whole ms, as GLib sees it (in ns; -1 stays -1)
    if ns <= 0:
        return ns
    return ((ns - 1) // 1000000 + 1) * 1000000


@cython.final
cdef class MainLoopWait:
    """MainLoopWait(init, bql, notifiers)
--

``main_loop_wait`` over the main loop's contexts (attached by ``init_main_loop``)."""

    cdef object init
    cdef BigLock bql
    cdef list notifiers        # the NotifierList's entries (the same list object for good)
    cdef AioContext ctx
    cdef AioContext io
    cdef AioContext tlg
    cdef _CGLibPoller glib
    cdef pollfd *pfds
    cdef Py_ssize_t cap
    cdef list errors
    cdef list ready_ctx        # what _poll found, read by _host_wait before any dispatch
    cdef list ready_io
    cdef uint64_t gen_ctx
    cdef uint64_t gen_io
    cdef object mlpoll_spare   # the MainLoopPoll reused by the next iteration (as QEMU's)

    def __cinit__(self, init, BigLock bql not None, notifiers not None):
        self.init = init
        self.bql = bql
        self.notifiers = notifiers._entries

    def __dealloc__(self):
        PyMem_Free(self.pfds)

    def attach(self, AioContext ctx, AioContext io, AioContext tlg, glib):
        """Drive these contexts (and GLib's default context when ``glib`` is a poller)."""
        self.ctx = ctx
        self.io = io
        self.tlg = tlg
        self.glib = glib

    def detach(self):
        """Forget the contexts (the main loop was shut down)."""
        self.ctx = self.io = self.tlg = None
        self.glib = None

    def main_loop_wait(self, nonblocking=False):
        """One iteration of the main loop (see ``docs/main-loop-iteration.md``).  Returns the poll
        result: < 0 on error, 0 on timeout, else the number of ready fds.

        Holds the big lock except during the wait (taking it for the call if this thread
        does not hold it).  Callback exceptions: the iteration completes, then the first is
        raised (later ones are logged on the ``qloop`` logger).
        """
        cdef bint nb = nonblocking is True or (nonblocking is not False and nonblocking)
        cdef unsigned long me = PyThread_get_thread_ident()
        cdef bint took
        cdef int ret
        if self.ctx is None:
            self.init()
        took = self.bql.owner != me
        if took:
            self.bql._lock(me)
        saved = self.errors
        self.errors = None
        try:
            tlg = self.tlg
            if (len(self.notifiers) or self.glib is not None or tlg.tl0.n or tlg.tl1.n
                    or tlg.tl2.n or tlg.tl3.n or not self._busy_iteration(nb, me)):
                ret = self._iteration(nb, me)
            else:
                ret = 0
        finally:
            errors = self.errors
            self.errors = saved
            if took:
                self.bql._unlock(me)
        if errors:
            _raise_errors(errors)
        return ret

    cdef int _error(self, object exc) except -1:
        if self.errors is None:
            self.errors = [exc]
        else:
            self.errors.append(exc)
        return 0

    cdef int _notify(self, object mlpoll) except -1:
        # NotifierList.notify: a snapshot, skipping entries removed meanwhile
        cdef list entries = self.notifiers
        try:
            if len(entries) == 1:
                entry = entries[0]
                if entry[1]:
                    entry[0](mlpoll)
            else:
                for entry in list(entries):
                    if entry[1]:
                        entry[0](mlpoll)
        except BaseException as exc:
            self._error(exc)
        return 0

    cdef int _iteration(self, bint nonblocking, unsigned long me) except? -2:
        cdef AioContext tlg = self.tlg
        cdef int64_t timeout = 0 if nonblocking else -1, ms
        cdef int ret
        mlpoll = None
        if len(self.notifiers):
            mlpoll = self.mlpoll_spare
            if mlpoll is None:  # (an outer iteration has it)
                mlpoll = MainLoopPoll(_FILL, 0 if nonblocking else ML_UINT32_MAX)
            else:
                self.mlpoll_spare = None
                mlpoll.state = _FILL
                mlpoll.timeout = 0 if nonblocking else ML_UINT32_MAX
                del mlpoll.pollfds[:]
            self._notify(mlpoll)
            t = mlpoll.timeout
            if type(t) is not int:
                t = _int_arg(t, "MainLoopPoll.timeout")
            ms = _as_int64(t, "MainLoopPoll.timeout")
            timeout = -1 if ms == ML_UINT32_MAX or ms < 0 else ms * 1000000
        if tlg.tl0.n or tlg.tl1.n or tlg.tl2.n or tlg.tl3.n:
            timeout = _soonest(timeout, tlg._timers_deadline(True))
        ret = self._host_wait(mlpoll, timeout, me)
        if mlpoll is not None:
            mlpoll.state = _ERR if ret < 0 else _OK
            self._notify(mlpoll)
            self.mlpoll_spare = mlpoll
        if tlg.tl0.n or tlg.tl1.n or tlg.tl2.n or tlg.tl3.n:
            self._dispatch(tlg, None, 0, me)  # the main-loop timers, last
        return ret

    cdef bint _busy_iteration(self, bint nonblocking, unsigned long me) except -1:
        """The iteration of a busy loop, when nothing but the two contexts take part (no
        notifier, GLib or main-loop timer): no wait because no fd but the contexts' own
        notifiers is registered, and the call is non-blocking or a BH is due.  False: the
        general path must run (nothing was done).  What ``_host_wait`` does in that case,
        without its bookkeeping for a wait."""
        cdef AioContext ctx = self.ctx, io = self.io
        if not ml_idle(ctx) or not ml_idle(io):
            return False
        if not nonblocking and ctx._bh_timeout() != 0:
            return False
        ml_accept(ctx, False)
        ml_accept(io, False)
        if ctx.bh_head is not None or ctx.bh_cur is not None \
                or ctx.tl0.n or ctx.tl1.n or ctx.tl2.n or ctx.tl3.n:
            self._dispatch(ctx, None, 0, me)
        if io.bh_head is not None or io.bh_cur is not None \
                or io.tl0.n or io.tl1.n or io.tl2.n or io.tl3.n:
            self._dispatch(io, None, 0, me)
        return True

    cdef int _reserve(self, Py_ssize_t need) except -1:
        cdef pollfd *mem
        if need > self.cap:
            mem = <pollfd *>PyMem_Realloc(self.pfds, need * sizeof(pollfd))
            if mem == NULL:
                raise MemoryError()
            self.pfds = mem
            self.cap = need
        return 0

    cdef int _host_wait(self, object mlpoll, int64_t timeout, unsigned long me) except? -2:
        """``os_host_main_loop_wait``: the timeouts of both contexts (and GLib's), one wait
        with the big lock released, then check and dispatch."""
        cdef AioContext ctx = self.ctx, io = self.io
        cdef _CGLibPoller glib = self.glib
        cdef Py_ssize_t nml = 0
        cdef int ret = 0
        cdef uint64_t gen_ctx = 0, gen_io = 0
        cdef list ready_ctx = None, ready_io = None
        cdef bint window, accepted
        if glib is not None and glib.acquired:
            glib = None  # a nested iteration: GLib is the outer one's, in the middle of its turn
        if mlpoll is not None:
            nml = len(mlpoll.pollfds)
        if timeout != 0 and ctx._bh_timeout() == 0:
            timeout = 0  # a BH is due: no wait can block (the common case of a busy loop)
        # a wait that may block opens the notify windows before the timeouts are computed
        # (as GSource prepare): a notify from then on wakes it
        window = timeout != 0
        accepted = False
        try:
            if window:
                ml_open_window(ctx)
                ml_open_window(io)
                timeout = _soonest(timeout, _ms_ceil_ns(ml_timeout(ctx)))
                timeout = _soonest(timeout, _ms_ceil_ns(ml_timeout(io)))
            if glib is not None:
                glib._fill(&timeout)  # GLib's own sources (timeouts, watches...)
            if (timeout == 0 and nml == 0 and ml_idle(ctx) and ml_idle(io)
                    and (glib is None or glib.only_wakeup)):
                # nothing a wait could report (only wake-up fds): no system call
                accepted = True
                ml_accept(ctx, window)
                ml_accept(io, window)
                if glib is not None:
                    glib._clear_revents()
            else:
                accepted = True  # _poll closes the windows whatever happens
                ret = self._poll(ctx, io, glib, mlpoll, nml, timeout, window, me)
                ready_ctx, gen_ctx = self.ready_ctx, self.gen_ctx
                ready_io, gen_io = self.ready_io, self.gen_io
                self.ready_ctx = self.ready_io = None
            if ctx.bh_head is not None or ctx.bh_cur is not None or ready_ctx is not None \
                    or ctx.tl0.n or ctx.tl1.n or ctx.tl2.n or ctx.tl3.n:
                self._dispatch(ctx, ready_ctx, gen_ctx, me)
            if io.bh_head is not None or io.bh_cur is not None or ready_io is not None \
                    or io.tl0.n or io.tl1.n or io.tl2.n or io.tl3.n:
                self._dispatch(io, ready_io, gen_io, me)
        finally:
            if not accepted:
                ml_accept(ctx, window)
                ml_accept(io, window)
            if glib is not None:  # GLib's turn, and its context released, whatever happened
                try:
                    glib._dispatch()
                except BaseException as exc:
                    self._error(exc)
        return ret

    cdef int _poll(self, AioContext ctx, AioContext io, _CGLibPoller glib, object mlpoll,
                   Py_ssize_t nml, int64_t timeout, bint window, unsigned long me) except? -2:
        """The wait itself: every fd in one C pollfd array, then the revents back to their
        owners (the contexts' handlers in ready_ctx/ready_io, the notifiers' PollFDs,
        GLib)."""
        cdef Py_ssize_t n, off_ctx, n_ctx, off_io, n_io, off_glib = 0, n_glib = 0, i
        cdef bint checked = False
        cdef int ret
        pollfds = mlpoll.pollfds if nml else None
        # walkers: the handlers in the pollfd arrays outlive the wait
        try:
            ml_enter(ctx, me)
        except BaseException:
            ml_accept(ctx, window)
            ml_accept(io, window)
            raise
        try:
            ml_enter(io, me)
        except BaseException:
            ml_check(ctx, NULL, 0, &self.gen_ctx, window)
            ml_accept(io, window)
            raise
        try:
            if glib is not None:
                n_glib = glib.n
            self._reserve(nml + ml_nfds(ctx) + ml_nfds(io) + n_glib)
            for i in range(nml):
                pfd = pollfds[i]
                self.pfds[i].fd = pfd.fd
                self.pfds[i].events = <short>pfd.events
                self.pfds[i].revents = 0
            n = nml
            off_ctx = n
            n_ctx = ml_fill(ctx, self.pfds + n)
            n += n_ctx
            off_io = n
            n_io = ml_fill(io, self.pfds + n)
            n += n_io
            if n_glib:
                off_glib = n
                memcpy(self.pfds + n, glib.fds, n_glib * sizeof(pollfd))
                n += n_glib
            ret = self._wait(n, timeout, me)
            checked = True
            self.ready_ctx = self._check(ctx, self.pfds + off_ctx, n_ctx, &self.gen_ctx, window)
            self.ready_io = self._check(io, self.pfds + off_io, n_io, &self.gen_io, window)
        finally:
            if not checked:
                ml_check(ctx, NULL, 0, &self.gen_ctx, window)
                ml_check(io, NULL, 0, &self.gen_io, window)
        for i in range(nml):
            pfd = pollfds[i]
            pfd.revents = self.pfds[i].revents & (pfd.events | POLL_ERRORS)
        if n_glib:  # copy now: a callback may run a nested main_loop_wait on this array
            memcpy(glib.fds, self.pfds + off_glib, n_glib * sizeof(pollfd))
        return ret

    cdef list _check(self, AioContext ctx, pollfd *seg, Py_ssize_t n, uint64_t *gen,
                     bint window):
        # a closed fd's error (reported by the check) joins this iteration's errors
        cdef list ready
        saved = ctx.errors
        ctx.errors = None
        try:
            ready = ml_check(ctx, seg, n, gen, window)
        finally:
            errors = ctx.errors
            ctx.errors = saved
            if errors is not None:
                for exc in errors:
                    self._error(exc)
        return ready

    cdef int _dispatch(self, AioContext ctx, list ready, uint64_t gen,
                       unsigned long me) except -1:
        # what the context's callbacks raise joins this iteration's errors
        saved = ctx.errors
        ctx.errors = None
        try:
            ml_dispatch(ctx, ready, gen, me)
        except BaseException as exc:
            self._error(exc)
        errors = ctx.errors
        ctx.errors = saved
        if errors is not None:
            for exc in errors:
                self._error(exc)
        return 0

    cdef int _wait(self, Py_ssize_t n, int64_t timeout, unsigned long me) except? -2:
        cdef timespec ts
        cdef timespec *tsp = NULL
        cdef int r, err = 0
        if timeout >= 0:
            ts.tv_sec = timeout // 1000000000
            ts.tv_nsec = timeout % 1000000000
            if ts.tv_sec > INT32_MAX:
                ts.tv_sec = INT32_MAX
            tsp = &ts
        self.bql._unlock(me)
        if timeout == 0:  # returns at once: keep the GIL
            r = ppoll(self.pfds, n, tsp, NULL)
            if r < 0:
                err = errno
        else:
            with nogil:
                r = ppoll(self.pfds, n, tsp, NULL)
                if r < 0:
                    err = errno
        self.bql._lock(me)
        if r < 0:
            if err != EINTR:
                self._error(OSError(err, "ppoll() failed"))
            else:
                try:
                    PyErr_CheckSignals()  # the Python signal handlers run now
                except BaseException as exc:
                    self._error(exc)
            return -1
        return r
