# GLib as a guest of the main loop, compiled twin of qloop._main.glib.CtypesGLibPoller
# (included by _core.pyx; see qloop/_main/glib.py for the design).

cdef extern from "qloop_glib.h":
    ctypedef struct ql_GPollFD:
        int fd
        unsigned short events
        unsigned short revents

    ctypedef struct ql_GMainContext:
        pass

    ctypedef struct ql_glib_api:
        ql_GMainContext *(*context_default)()
        int (*acquire)(ql_GMainContext *)
        void (*release)(ql_GMainContext *)
        int (*prepare)(ql_GMainContext *, int *)
        int (*query)(ql_GMainContext *, int, int *, ql_GPollFD *, int)
        int (*check)(ql_GMainContext *, int, ql_GPollFD *, int)
        void (*dispatch)(ql_GMainContext *)

    int ql_glib_load(ql_glib_api *api)


cdef ql_glib_api _glib_api
cdef bint _glib_loaded = False


@cython.final
cdef class _CGLibPoller:
    """Runs one iteration of GLib's default context in pieces, around the main loop's wait
    (QEMU's ``glib_pollfds_fill`` / ``glib_pollfds_poll``: docs/main-loop-iteration.md)."""

    cdef ql_GMainContext *ctx
    cdef ql_GPollFD *fds
    cdef int cap
    cdef readonly int n
    cdef int max_priority
    cdef readonly bint acquired  # between fill and dispatch: a nested main_loop_wait skips GLib
    cdef readonly bint only_wakeup  # the last fill gave only GLib's own wake-up fd (or none)

    def __cinit__(self):
        global _glib_loaded
        if not _glib_loaded:
            _glib.load_glib()  # the same checks and error message as the fallback
            if ql_glib_load(&_glib_api) != 0:
                raise _glib.GLibUnavailable(
                    f"qloop: cannot load libglib-2.0.so.0: {_glib.INSTALL_HINT}")
            _glib_loaded = True
        self.ctx = _glib_api.context_default()
        self.cap = 16
        self.fds = <ql_GPollFD *>PyMem_Malloc(self.cap * sizeof(ql_GPollFD))
        if self.fds == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self.acquired:
            _glib_api.release(self.ctx)
        PyMem_Free(self.fds)

    cdef Py_ssize_t _fill(self, int64_t *timeout_ns) except -1:
        """Acquire the default context, prepare and query it into ``fds``; lower
        ``timeout_ns`` to GLib's timeout.  Returns the number of fds."""
        cdef int timeout = -1, n
        cdef ql_GPollFD *mem
        if not _glib_api.acquire(self.ctx):
            self.acquired = False
            self.only_wakeup = True
            self.n = 0
            return 0  # another thread owns it: no GLib guest this iteration
        self.acquired = True
        _glib_api.prepare(self.ctx, &self.max_priority)
        while True:
            n = _glib_api.query(self.ctx, self.max_priority, &timeout, self.fds, self.cap)
            if n <= self.cap:
                break
            mem = <ql_GPollFD *>PyMem_Realloc(self.fds, 2 * n * sizeof(ql_GPollFD))
            if mem == NULL:
                self._release()
                raise MemoryError()
            self.fds = mem
            self.cap = 2 * n
        self.n = n
        # GLib always polls its wake-up fd (priority 0) unless a source of higher priority is
        # ready: then one fd alone is that one, whose readiness carries no event
        self.only_wakeup = n == 0 or (n == 1 and self.max_priority >= 0)
        if timeout >= 0:
            timeout_ns[0] = _soonest(timeout_ns[0], <int64_t>timeout * 1000000)
        return n

    cdef void _clear_revents(self) noexcept:
        cdef int i
        for i in range(self.n):
            self.fds[i].revents = 0

    cdef int _dispatch(self) except -1:
        """Check and dispatch with the revents now in ``fds``, then release the context."""
        cdef int i
        if not self.acquired:
            return 0
        try:
            for i in range(self.n):
                self.fds[i].revents &= <unsigned short>(self.fds[i].events | 0x38)
            if _glib_api.check(self.ctx, self.max_priority, self.fds, self.n):
                _glib_api.dispatch(self.ctx)
        finally:
            self._release()
        return 0

    cdef void _release(self) noexcept:
        self.acquired = False
        _glib_api.release(self.ctx)

    def fill(self):
        """Acquire the default context, prepare and query it: (timeout in ns, [(fd, events)])."""
        cdef int64_t timeout = -1
        cdef Py_ssize_t n = self._fill(&timeout), i
        return timeout, [(self.fds[i].fd, self.fds[i].events) for i in range(n)]

    def poll(self, dict revents):
        """Hand GLib the revents of its fds, check and dispatch, release the context."""
        cdef int i
        if not self.acquired:
            return
        for i in range(self.n):
            self.fds[i].revents = <unsigned short>(<int>revents.get(self.fds[i].fd, 0))
        self._dispatch()
