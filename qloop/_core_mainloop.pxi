# One main_loop_wait iteration and the big lock, compiled (included by _core.pyx).  The
# fallback's twin is qloop/_fallback_mainloop.py: read the two side by side.  The order of an
# iteration is described there and in docs/main-loop.md.
#
# Per iteration no Python object is built and no public wrapper is called: the fds of both
# contexts (their persistent pollfd arrays, or their epoll fd) and GLib's (queried through its
# C API) are copied into one C pollfd array, polled with the big lock and the GIL released,
# and the revents go straight back to the handlers.  Python runs only for user callbacks and
# registered poll notifiers.

from cpython.pythread cimport (
    NOWAIT_LOCK,
    WAIT_LOCK,
    PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_free_lock,
    PyThread_release_lock,
    PyThread_type_lock,
)

cdef enum:
    POLL_ERRORS = POLLERR | POLLHUP | POLLNVAL

cdef int64_t ML_UINT32_MAX = 0xFFFFFFFF


@cython.final
cdef class BigLock:
    """BigLock()
--

The BQL: a non-recursive lock that knows its owner.  ``with qloop.bql:`` takes it."""

    cdef PyThread_type_lock lk
    cdef unsigned long owner  # 0: free

    def __cinit__(self):
        self.lk = PyThread_allocate_lock()
        if self.lk == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self.lk != NULL:
            if self.owner:
                PyThread_release_lock(self.lk)
            PyThread_free_lock(self.lk)

    cdef int _lock(self, unsigned long me) except -1:
        if self.owner == me:
            raise RuntimeError("the BQL is already held by this thread")
        if not PyThread_acquire_lock(self.lk, NOWAIT_LOCK):
            with nogil:
                PyThread_acquire_lock(self.lk, WAIT_LOCK)
        self.owner = me
        return 0

    cdef int _unlock(self, unsigned long me) except -1:
        if self.owner != me:
            raise RuntimeError("the BQL is not held by this thread")
        self.owner = 0
        PyThread_release_lock(self.lk)
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
        """One iteration of the main loop (see ``docs/main-loop.md``).  Returns the poll
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
            ret = self._iteration(nb, me)
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

    cdef int _take_errors(self, AioContext ctx, object saved) except -1:
        # what ctx._report collected while the main loop ran it
        errors = ctx.errors
        ctx.errors = saved
        if errors:
            for exc in errors:
                self._error(exc)
        return 0

    cdef int _notify(self, object mlpoll) except -1:
        try:
            for entry in list(self.notifiers):
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
            mlpoll = MainLoopPoll(_FILL, 0 if nonblocking else ML_UINT32_MAX)
            self._notify(mlpoll)
            ms = _as_int64(_int_arg(mlpoll.timeout, "MainLoopPoll.timeout"),
                           "MainLoopPoll.timeout")
            timeout = -1 if ms == ML_UINT32_MAX or ms < 0 else ms * 1000000
        if tlg.tl0.n or tlg.tl1.n or tlg.tl2.n or tlg.tl3.n:
            timeout = _soonest(timeout, tlg._timers_deadline(True))
        ret = self._host_wait(mlpoll, timeout, me)
        if mlpoll is not None:
            mlpoll.state = _ERR if ret < 0 else _OK
            self._notify(mlpoll)
        if tlg.tl0.n or tlg.tl1.n or tlg.tl2.n or tlg.tl3.n:
            saved = tlg.errors
            tlg.errors = None
            try:
                tlg._run_timers()
            finally:
                self._take_errors(tlg, saved)
        return ret

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
        """``os_host_main_loop_wait``: prepare both contexts (and GLib), one wait with the big
        lock released, then check and dispatch."""
        cdef AioContext ctx = self.ctx, io = self.io
        cdef _CGLibPoller glib = self.glib
        cdef Py_ssize_t n = 0, nml = 0, off_ctx, n_ctx = 0, off_io, n_io = 0, off_glib = 0
        cdef Py_ssize_t n_glib = 0, i
        cdef int ret = 0
        cdef bint glib_idle = True, checked = False
        cdef uint64_t gen_ctx = 0, gen_io = 0
        cdef list ready_ctx = None, ready_io = None
        pollfds = None
        if glib is not None and glib.acquired:
            glib = None  # a nested iteration: GLib is the outer one's, in the middle of its turn
        timeout = _soonest(timeout, _ms_ceil_ns(ctx._ml_prepare(me)))
        try:
            timeout = _soonest(timeout, _ms_ceil_ns(io._ml_prepare(me)))
        except BaseException:
            ctx._ml_check(NULL, 0, &gen_ctx)
            raise
        try:
            if mlpoll is not None:
                pollfds = mlpoll.pollfds
                nml = len(pollfds)
            self._reserve(nml + ctx._ml_nfds() + io._ml_nfds())
            for i in range(nml):
                pfd = pollfds[i]
                self.pfds[i].fd = pfd.fd
                self.pfds[i].events = <short>pfd.events
                self.pfds[i].revents = 0
            n = nml
            off_ctx = n
            n_ctx = ctx._ml_fill(self.pfds + n)
            n += n_ctx
            off_io = n
            n_io = io._ml_fill(self.pfds + n)
            n += n_io
            if glib is not None:
                n_glib = glib._fill(&timeout)  # GLib's own sources (timeouts, watches...)
                glib_idle = glib.only_wakeup
                if n_glib:
                    self._reserve(n + n_glib)
                    off_glib = n
                    memcpy(self.pfds + n, glib.fds, n_glib * sizeof(pollfd))
                    n += n_glib
            if not (timeout == 0 and glib_idle and nml == 0 and ctx._ml_idle()
                    and io._ml_idle()):
                ret = self._wait(n, timeout, me)
            else:
                # nothing a wait could report: skip the system call
                for i in range(n):
                    self.pfds[i].revents = 0
            checked = True
            ready_ctx = ctx._ml_check(self.pfds + off_ctx, n_ctx, &gen_ctx)
            ready_io = io._ml_check(self.pfds + off_io, n_io, &gen_io)
        finally:
            if not checked:
                ctx._ml_check(NULL, 0, &gen_ctx)
                io._ml_check(NULL, 0, &gen_io)
                if glib is not None and glib.acquired:
                    glib._release()
        for i in range(nml):
            pfd = pollfds[i]
            pfd.revents = self.pfds[i].revents & (pfd.events | POLL_ERRORS)
        if n_glib:  # copy now: a callback may run a nested main_loop_wait on this array
            memcpy(glib.fds, self.pfds + off_glib, n_glib * sizeof(pollfd))
        try:
            self._dispatch(ctx, ready_ctx, gen_ctx, me)
            self._dispatch(io, ready_io, gen_io, me)
        finally:
            if glib is not None:  # GLib's turn, and its context released, whatever happened
                try:
                    glib._dispatch()
                except BaseException as exc:
                    self._error(exc)
        return ret

    cdef int _dispatch(self, AioContext ctx, list ready, uint64_t gen,
                       unsigned long me) except -1:
        saved = ctx.errors
        ctx.errors = None
        try:
            ctx._ml_dispatch(ready, gen, me)
        except BaseException as exc:
            self._error(exc)
        finally:
            self._take_errors(ctx, saved)
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
