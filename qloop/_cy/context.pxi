# The core's AioContext and its fd handlers (docs/aio-context.md).  Twin of
# qloop/_py/context.py; included by qloop/_core.pyx.  Its adapters are functions over it:
# context_gsource.pxi (the bodies of the GSource methods) and context_mainloop.pxi (the steps
# of main_loop_wait).

# --------------------------------------------------------------------------------------------
# fd handlers (docs/aio-context.md, "fd handlers")

cdef class _FdOwner:
    """Base of C-level fd handlers (see ``AioContext._set_fd_owner``)."""

    cdef int _on_read(self) except -1:
        return 0

    cdef int _on_write(self) except -1:
        return 0


@cython.final
cdef class _Handler:
    def __cinit__(self, int fd, io_read, io_write, io_poll, io_poll_ready, uint64_t seq):
        self.fd = fd
        self.io_read = io_read
        self.io_write = io_write
        self.io_poll = io_poll
        self.io_poll_ready = io_poll_ready
        self.events = (READ_EVENTS if io_read is not None else 0) | (
            WRITE_EVENTS if io_write is not None else 0)
        self.seq = seq


# --------------------------------------------------------------------------------------------
# AioContext (docs/aio-context.md)

cdef object _FDMON_NAMES = {"auto": FDMON_AUTO, "poll": FDMON_POLL, "epoll": FDMON_EPOLL,
                            "io_uring": FDMON_IO_URING}

# epoll_pwait2 (one call, ns timeout) until the kernel or a sandbox refuses it (ENOSYS/EPERM);
# QLOOP_EPOLL_PWAIT2=0 starts without it (how the tests reach the two-call wait).
cdef bint _epoll_pwait2_usable = _os.environ.get("QLOOP_EPOLL_PWAIT2", "") != "0"


cdef void _epoll_pwait2_off() noexcept:
    global _epoll_pwait2_usable
    _epoll_pwait2_usable = False


cdef int _epoll_wait_via_ppoll(int epfd, epoll_event *events, int64_t timeout) noexcept:
    """The wait with a timeout where epoll_pwait2 is missing: ppoll the epoll fd itself (ns
    precision; epoll_wait takes ms), then collect with epoll_wait(0).  Returns what epoll_wait
    returns: 0 on timeout, -1 with errno on failure."""
    cdef timespec ts
    cdef pollfd pfd
    cdef int r
    pfd.fd = epfd
    pfd.events = POLLIN
    pfd.revents = 0
    ts.tv_sec = timeout // 1000000000
    ts.tv_nsec = timeout % 1000000000
    if ts.tv_sec > INT32_MAX:
        ts.tv_sec = INT32_MAX
    with nogil:
        r = ppoll(&pfd, 1, &ts, NULL)
    if r <= 0:
        return r
    return epoll_wait(epfd, events, EPOLL_MAX_EVENTS, 0)


def _epoll_pwait2_in_use():
    """Whether blocking epoll waits with a timeout use epoll_pwait2 (one call) now."""
    return _epoll_pwait2_usable


@cython.final
cdef class AioContext:
    """AioContext(fdmon='auto')
--

QEMU's AioContext: fd handlers, bottom halves and timers driven by ``poll()``.

    ``fdmon`` is ``"auto"`` (ppoll while only the context's own notifier is registered, epoll
    from the first wait with another fd), ``"poll"``, ``"epoll"`` or ``"io_uring"`` (OSError
    naming the cause where io_uring is unavailable).  Exceptions raised by callbacks: see
    ``set_exception_handler``.
    """

    def __cinit__(self):
        self._closed = True
        self.epfd = -1
        self.notifier_wfd = -1

    def __init__(self, fdmon="auto"):
        if not self._closed or self.notifier is not None:
            raise RuntimeError("AioContext is already initialised")
        if not isinstance(fdmon, str):
            raise TypeError(f"fdmon must be a str, not {type(fdmon).__name__}")
        if fdmon not in _FDMON_NAMES:
            raise ValueError(f"unknown fdmon {fdmon!r} (expected one of {FDMON_NAMES})")
        self.fdmon_mode = _FDMON_NAMES[fdmon]
        self.handlers = {}
        self.deleted_handlers = []
        self.list_lock = threading.Lock()
        self.poll_list = []
        self.tl0 = _TimerList(self, 0)
        self.tl1 = _TimerList(self, 1)
        self.tl2 = _TimerList(self, 2)
        self.tl3 = _TimerList(self, 3)
        self.timer_lists = [self.tl0, self.tl1, self.tl2, self.tl3]
        self.ep_events = <epoll_event *>PyMem_Malloc(EPOLL_MAX_EVENTS * sizeof(epoll_event))
        if self.ep_events == NULL:
            raise MemoryError()
        if self.fdmon_mode == FDMON_IO_URING:
            uring = _Uring()
            uring.setup(False)  # OSError naming the cause where io_uring is unavailable
            self.uring = uring
        self.notifier = EventNotifier()
        self.notifier_wfd = self.notifier.wfd
        if self.fdmon_mode == FDMON_EPOLL:
            self.epfd = epoll_create1(EPOLL_CLOEXEC)
            if self.epfd < 0:
                raise OSError(errno, "epoll_create1() failed")
            self.epoll_active = True
        self._closed = False
        self._set_handler(self.notifier.rfd, self._drain_notifier, None,
                          self._notifier_poll, self._notifier_poll_ready, True)
        _contexts.add(self)

    def __dealloc__(self):
        PyMem_Free(self.pfds)
        PyMem_Free(self.pfd_nodes)
        PyMem_Free(self.ep_events)
        if self.epfd >= 0:
            close(self.epfd)

    # ---- the notifier's own handler: registered at creation, so a fresh context starts
    # notified (docs/aio-context.md, "Life cycle")

    def _drain_notifier(self):
        self.notifier._test_and_clear()

    def _notifier_poll(self):
        return bool(ql_load(&self.notified))

    def _notifier_poll_ready(self):
        pass

    # ---- helpers

    @property
    def closed(self):
        """Whether ``close()`` was called."""
        return self._closed

    @property
    def fdmon(self):
        """The fd monitor in use now: ``"poll"``, ``"epoll"`` or ``"io_uring"``."""
        if self.fdmon_mode == FDMON_IO_URING:
            return "io_uring"
        return "epoll" if self.epoll_active else "poll"

    def set_exception_handler(self, handler):
        """Route callback exceptions to ``handler(ctx, exc)`` instead of raising from poll().

        With no handler (the default) ``poll()`` finishes its iteration, then raises the first
        exception; later ones from the same iteration are logged on the ``"qloop"`` logger.
        """
        self.exception_handler = _check_callback(handler, "handler")

    def get_exception_handler(self):
        """The handler given to ``set_exception_handler`` (None: the default)."""
        return self.exception_handler

    cdef int _report(self, object exc) except -1:
        handler = self.exception_handler
        if handler is not None and isinstance(exc, Exception):
            try:
                handler(self, exc)
                return 0
            except BaseException as exc2:  # the handler itself failed: raise that
                exc = exc2
        if self.errors is None:
            self.errors = [exc]
        else:
            self.errors.append(exc)
        return 0

    cdef int _call(self, object cb) except -1:
        try:
            cb()
        except BaseException as exc:
            self._report(exc)
        return 0

    cdef bint _call_poll(self, _Handler node) except -1:
        if node.is_notifier:
            return ql_load(&self.notified) != 0  # _notifier_poll, without a Python call
        try:
            return bool(node.io_poll())
        except BaseException as exc:
            self._report(exc)
            return False

    # ---- notify protocol (docs/notify.md)

    cdef void _notify(self) noexcept:
        # set notified with a full barrier (publishing the caller's changes), then read
        # notify_me: the producer half of the Dekker pattern (docs/notify.md)
        cdef int wfd
        ql_xchg(&self.notified, 1)
        if ql_load(&self.notify_me):
            # someone sleeps in a wait: wake it with the GIL released, so the woken owner
            # can take the GIL and run at once (EAGAIN: already readable).  close() waits
            # for wake_writers to drop to 0 before it closes the fd (no write to a reused fd).
            ql_fetch_add(&self.wake_writers, 1)
            wfd = self.notifier_wfd
            if wfd >= 0:
                with nogil:
                    write(wfd, &_eventfd_one, 8)
            ql_fetch_add(&self.wake_writers, -1)

    def notify(self):
        """``aio_notify``: wake a blocking ``poll()``; safe from any thread; never progress."""
        if self._closed:
            raise RuntimeError("AioContext is closed")
        self._notify()

    # ---- fd handlers (docs/aio-context.md, "fd handlers")

    def _check_open(self):
        if self._closed:
            raise RuntimeError("AioContext is closed")

    def set_fd_handler(self, fd, io_read=None, io_write=None, io_poll=None, io_poll_ready=None):
        """Add, replace or (all None) remove the handler for ``fd``.  Level-triggered.

        Safe from any thread and from inside callbacks: a replaced or removed handler is not
        dispatched again, and a new one is first dispatched in a later iteration.
        """
        self._check_open()
        if io_read is None and io_write is None and io_poll is None and io_poll_ready is None:
            num = _fd_for_removal(fd)
            if num is not None:
                self._set_handler(num, None, None, None, None, False)
            return
        num = _fd_of(fd)
        self._set_handler(num, _check_callback(io_read, "io_read"),
                          _check_callback(io_write, "io_write"),
                          _check_callback(io_poll, "io_poll"),
                          _check_callback(io_poll_ready, "io_poll_ready"), False)

    def set_event_notifier(self, notifier, io_read=None, io_poll=None, io_poll_ready=None):
        """``aio_set_event_notifier``: callbacks receive the notifier; all None removes."""
        if not isinstance(notifier, EventNotifier):
            raise TypeError(f"notifier must be an EventNotifier, not {type(notifier).__name__}")
        self._check_open()
        if io_read is None and io_poll is None and io_poll_ready is None:
            if not notifier.closed:
                self._set_handler(notifier.fileno(), None, None, None, None, False)
            return
        fd = notifier.fileno()
        self._set_handler(fd,
                          _bind(_check_callback(io_read, "io_read"), notifier),
                          None,
                          _bind(_check_callback(io_poll, "io_poll"), notifier),
                          _bind(_check_callback(io_poll_ready, "io_poll_ready"), notifier),
                          False)

    def set_fd_poll(self, fd, io_poll_begin=None, io_poll_end=None):
        """``aio_set_fd_poll``: set io_poll_begin/io_poll_end on a registered handler.

        Replacing the handler later drops them.  ValueError if ``fd`` is not registered.
        """
        self._check_open()
        num = _fd_for_removal(fd)
        begin = _check_callback(io_poll_begin, "io_poll_begin")
        end = _check_callback(io_poll_end, "io_poll_end")
        with self.list_lock:
            node = self.handlers.get(num) if num is not None else None
            if node is None:
                raise ValueError(f"fd {num} has no handler in this AioContext")
            (<_Handler>node).io_poll_begin = begin
            (<_Handler>node).io_poll_end = end

    def set_event_notifier_poll(self, notifier, io_poll_begin=None, io_poll_end=None):
        """``aio_set_event_notifier_poll``."""
        if not isinstance(notifier, EventNotifier):
            raise TypeError(f"notifier must be an EventNotifier, not {type(notifier).__name__}")
        self.set_fd_poll(notifier.fileno(),
                         _bind(_check_callback(io_poll_begin, "io_poll_begin"), notifier),
                         _bind(_check_callback(io_poll_end, "io_poll_end"), notifier))

    cdef int _set_handler(self, int fd, object io_read, object io_write, object io_poll,
                          object io_poll_ready, bint is_notifier) except -1:
        cdef bint delete = io_read is None and io_write is None and io_poll is None
        cdef _Handler old, new = None
        if not delete and (io_poll is None) != (io_poll_ready is None):
            raise ValueError(f"fd {fd}: io_poll and io_poll_ready must be given together")
        with self.list_lock:
            old = self.handlers.pop(fd, None)
            if delete:
                if old is None:
                    return 0
                if old.io_poll is None:
                    self.poll_disable_cnt -= 1
            else:
                self.handler_seq += 1
                new = _Handler(fd, io_read, io_write, io_poll, io_poll_ready, self.handler_seq)
                new.is_notifier = is_notifier
                self.handlers[fd] = new
                self.poll_disable_cnt += (io_poll is None) - (
                    old is not None and old.io_poll is None)
            self._fdmon_update(old, new)
            if old is not None:
                old.revents = 0
                old.poll_ready = False
                old.deleted = True
                if old.in_poll_list:
                    self._poll_list_remove(old)
                if self.walkers:
                    self.deleted_handlers.append(old)  # a walker may still hold it
        self._notify()
        return 0

    cdef int _set_fd_owner(self, int fd, _FdOwner owner, bint on_read, bint on_write) except -1:
        """Register (or, with neither read nor write, remove) a C-level handler for ``fd``:
        ``owner._on_read()``/``_on_write()`` are dispatched without a Python call."""
        if not on_read and not on_write:
            return self._set_handler(fd, None, None, None, None, False)
        self._set_handler(fd, owner if on_read else None, owner if on_write else None, None,
                          None, False)
        (<_Handler>self.handlers[fd]).owner = owner
        return 0

    # ---- fd monitors (docs/aio-context.md, "fd monitors")

    cdef int _fdmon_update(self, _Handler old, _Handler new) except -1:
        cdef int fd = new.fd if new is not None else old.fd
        cdef int old_ev = old.events if old is not None else 0
        cdef int new_ev = new.events if new is not None else 0
        cdef epoll_event ev
        cdef int r = 0
        if old_ev or new_ev:
            self.fds_dirty = True
        if new_ev and not old_ev:
            self.npollfds += 1
        elif old_ev and not new_ev:
            self.npollfds -= 1
        if self.uring is not None:
            return self.uring.update(self, old, new)
        if self.epoll_active:
            ev.events = new_ev
            ev.data.ptr = <void *>new  # the handler itself: no lookup per event
            if new_ev and old_ev:
                r = epoll_ctl(self.epfd, EPOLL_CTL_MOD, fd, &ev)
            elif new_ev:
                r = epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev)
            elif old_ev:
                r = epoll_ctl(self.epfd, EPOLL_CTL_DEL, fd, &ev)
            if r < 0:
                self._epoll_disable()
        return 0

    cdef void _epoll_disable(self) noexcept:
        """Any epoll_ctl error: fall back to ppoll for good (docs/aio-context.md, "fd monitors")."""
        if self.epfd >= 0:
            close(self.epfd)
        self.epfd = -1
        self.epoll_failed = True
        self.epoll_active = False
        self.fds_dirty = True

    cdef bint _epoll_try_upgrade(self) except -1:
        cdef epoll_event ev
        cdef _Handler node
        if self.epoll_failed or self.walkers != 1:
            return False  # not while a poll() is nested in this one
        if self.epfd < 0:
            self.epfd = epoll_create1(EPOLL_CLOEXEC)
            if self.epfd < 0:
                self.epoll_failed = True
                return False
        with self.list_lock:
            for obj in self.handlers.values():
                node = <_Handler>obj
                if node.events:
                    ev.events = node.events
                    ev.data.ptr = <void *>node
                    if epoll_ctl(self.epfd, EPOLL_CTL_ADD, node.fd, &ev) < 0:
                        self._epoll_disable()
                        return False
            self.epoll_active = True
        return True

    cdef int _rebuild_pollfds(self) except -1:
        cdef Py_ssize_t n = 0, need = self.npollfds
        cdef _Handler node
        cdef pollfd *mem
        cdef void **nodes
        if need > self.pfds_cap:
            mem = <pollfd *>PyMem_Realloc(self.pfds, need * sizeof(pollfd))
            if mem == NULL:
                raise MemoryError()
            self.pfds = mem
            nodes = <void **>PyMem_Realloc(self.pfd_nodes, need * sizeof(void *))
            if nodes == NULL:
                raise MemoryError()
            self.pfd_nodes = nodes
            self.pfds_cap = need
        for obj in self.handlers.values():  # registration order: oldest first
            node = <_Handler>obj
            if node.events and n < need:
                self.pfds[n].fd = node.fd
                self.pfds[n].events = <short>node.events
                self.pfds[n].revents = 0
                self.pfd_nodes[n] = <void *>node
                n += 1
        self.pfds_len = n
        self.fds_dirty = False
        return 0

    cdef int _wait_failed(self, int err, str what) except -1:
        """A wait returned -1: EINTR is not retried (the iteration goes on); the Python signal
        handlers run now and what they raise goes where callback exceptions go.  Else OSError."""
        if err != EINTR:
            raise OSError(err, what)
        try:
            PyErr_CheckSignals()
        except BaseException as exc:
            self._report(exc)
        return 0

    cdef int _add_ready(self, list ready, _Handler node, int rev, uint64_t gen) except -1:
        node.revents = rev
        if node.ready_gen != gen:
            node.ready_gen = gen
            ready.append(node)
        return 0

    cdef int _wait(self, list ready, int64_t timeout, uint64_t gen) except -1:
        """The backend wait: the only blocking point of poll()."""
        if self.uring is not None:
            return self.uring.wait(self, ready, timeout, gen)
        if (self.npollfds >= AUTO_EPOLL_FDS and not self.epoll_active
                and self.fdmon_mode == FDMON_AUTO and not self.epoll_failed):
            self._epoll_try_upgrade()
        if self.epoll_active:
            return self._wait_epoll(ready, timeout, gen)
        return self._wait_ppoll(ready, timeout, gen)

    cdef int _wait_ppoll(self, list ready, int64_t timeout, uint64_t gen) except -1:
        cdef timespec ts
        cdef timespec *tsp = NULL
        cdef int r, rev
        cdef Py_ssize_t i, n
        cdef _Handler node
        if self.fds_dirty:
            self._rebuild_pollfds()
        n = self.pfds_len
        if timeout >= 0:
            ts.tv_sec = timeout // 1000000000
            ts.tv_nsec = timeout % 1000000000
            if ts.tv_sec > INT32_MAX:
                ts.tv_sec = INT32_MAX
            tsp = &ts
        if timeout == 0:
            r = ppoll(self.pfds, n, tsp, NULL)
        else:
            with nogil:
                r = ppoll(self.pfds, n, tsp, NULL)
        if r < 0:
            return self._wait_failed(errno, "ppoll() failed")
        i = 0
        while r > 0 and i < n:
            rev = self.pfds[i].revents
            if rev:
                r -= 1
                node = <_Handler>self.pfd_nodes[i]
                if not node.deleted:
                    if rev & POLLNVAL:
                        fd = node.fd
                        self._set_handler(fd, None, None, None, None, False)
                        self._report(_closed_fd_error(fd))
                    elif rev & node.events:
                        self._add_ready(ready, node, rev & node.events, gen)
            i += 1
        return 0

    cdef int _wait_epoll(self, list ready, int64_t timeout, uint64_t gen) except -1:
        cdef int r, i, rev, err
        cdef _Handler node
        if timeout > 0 and _epoll_pwait2_usable:
            # ns precision in one call (Linux 5.11+)
            with nogil:
                r = ql_epoll_pwait2(self.epfd, self.ep_events, EPOLL_MAX_EVENTS, timeout)
            if r < 0:
                err = errno
                if err != ENOSYS and err != EPERM:
                    return self._wait_failed(err, "epoll_pwait2() failed")
                _epoll_pwait2_off()  # not offered here: the two-call wait from now on
                r = _epoll_wait_via_ppoll(self.epfd, self.ep_events, timeout)
        elif timeout > 0:
            r = _epoll_wait_via_ppoll(self.epfd, self.ep_events, timeout)
        elif timeout == 0:
            r = epoll_wait(self.epfd, self.ep_events, EPOLL_MAX_EVENTS, 0)
        else:
            with nogil:
                r = epoll_wait(self.epfd, self.ep_events, EPOLL_MAX_EVENTS, -1)
        if r < 0:
            return self._wait_failed(errno, "epoll_wait() failed")
        i = r - 1
        while i >= 0:  # reverse of kernel report order (docs/aio-context.md, "Dispatch order")
            # borrowed: a handler removed while walkers are active stays in deleted_handlers
            node = <_Handler>self.ep_events[i].data.ptr
            if not node.deleted:
                rev = self.ep_events[i].events & node.events
                if rev:
                    self._add_ready(ready, node, rev, gen)
            i -= 1
        return 0

    # ---- adaptive polling (docs/aio-context.md, "Busy polling")

    def set_poll_params(self, max_ns, grow, shrink):
        """``aio_context_set_poll_params``: ``max_ns=0`` disables busy polling."""
        self._check_open()
        for value, what in ((max_ns, "max_ns"), (grow, "grow"), (shrink, "shrink")):
            if _int64_arg(value, what) < 0:
                raise ValueError(f"{what} must be >= 0, got {value}")
        with self.list_lock:
            for node in self.handlers.values():
                (<_Handler>node).poll_ns = 0
            self.poll_max_ns = max_ns
            self.poll_grow = grow
            self.poll_shrink = shrink
        self._notify()

    cdef int _poll_list_add(self, _Handler node) except -1:
        node.in_poll_list = True
        self.poll_list = self.poll_list + [node]  # copy: walkers iterate the old list
        return 0

    cdef int _poll_list_remove(self, _Handler node) except -1:
        node.in_poll_list = False
        self.poll_list = [n for n in self.poll_list if n is not node]
        return 0

    cdef int _mark_poll_ready(self, _Handler node, list ready, uint64_t gen) except -1:
        node.poll_ready = True
        if node.ready_gen != gen:
            node.ready_gen = gen
            ready.append(node)
        return 0

    cdef bint _poll_set_started(self, bint started, list ready, uint64_t gen) except -1:
        """Enter/leave poll mode: io_poll_begin/end once per switch; a final io_poll on leave."""
        cdef _Handler node
        cdef bint progress = False
        if started == self.poll_started:
            return False
        self.poll_started = started
        for obj in self.poll_list:
            node = <_Handler>obj
            if node.deleted:
                continue
            cb = node.io_poll_begin if started else node.io_poll_end
            if cb is not None:
                self._call(cb)
            if not started and not node.deleted and node.io_poll is not None:
                if self._call_poll(node):
                    self._mark_poll_ready(node, ready, gen)
                    progress = True  # the context's own notifier counts here (docs/aio-context.md)
        return progress

    cdef int64_t _try_poll_mode(self, int64_t timeout, list ready, uint64_t gen,
                                bint *progress) except? -2:
        cdef int64_t max_ns = 0, start, elapsed = 0
        cdef _Handler node
        for obj in self.poll_list:
            node = <_Handler>obj
            if node.poll_ns > max_ns:
                max_ns = node.poll_ns
        max_ns = _soonest(timeout, max_ns)
        if max_ns == 0 or self.poll_disable_cnt > 0:
            return timeout
        self._poll_set_started(True, ready, gen)
        start = _now_monotonic()
        while True:
            for obj in self.poll_list:
                node = <_Handler>obj
                if not node.deleted and node.io_poll is not None and self._call_poll(node):
                    self._mark_poll_ready(node, ready, gen)
                    timeout = 0
                    if not node.is_notifier:
                        progress[0] = True
            elapsed = _now_monotonic() - start
            max_ns = _soonest(timeout, max_ns)
            if elapsed >= max_ns or self.poll_disable_cnt > 0:
                break
        if timeout > 0:
            timeout = timeout - elapsed if timeout > elapsed else 0
        return timeout

    cdef void _adjust_polling_time(self, _Handler node, int64_t block_ns) noexcept:
        cdef int64_t max_ns = self.poll_max_ns, poll_ns
        if block_ns <= node.poll_ns:
            return
        if block_ns > max_ns:
            node.poll_ns = node.poll_ns // self.poll_shrink if self.poll_shrink else 0
        elif node.poll_ns < max_ns and block_ns < max_ns:
            if node.poll_ns == 0:
                poll_ns = POLL_NS_INITIAL
            else:
                poll_ns = node.poll_ns * (self.poll_grow if self.poll_grow else 2)
            node.poll_ns = poll_ns if poll_ns < max_ns else max_ns

    # ---- dispatch (docs/aio-context.md, "Dispatch order" and "Progress")

    cdef bint _dispatch_node(self, _Handler node) except -1:
        cdef int revents = node.revents
        cdef bint poll_ready = node.poll_ready
        cdef bint progress = False, was_listed
        node.revents = 0
        node.poll_ready = False
        if not node.deleted and not node.in_poll_list and node.io_poll is not None:
            if self.poll_started and node.io_poll_begin is not None:
                self._call(node.io_poll_begin)
            self._poll_list_add(node)
        if not node.deleted and poll_ready and revents == 0 and node.io_poll_ready is not None:
            # Off the poll list while it runs, so a nested poll() cannot re-poll it: its io_poll
            # still reports ready and the nesting would recurse without end.
            if node.is_notifier:
                return False  # _notifier_poll_ready is a no-op and never progress
            was_listed = node.in_poll_list
            if was_listed:
                self._poll_list_remove(node)
            self._call(node.io_poll_ready)
            if was_listed and not node.deleted and not node.in_poll_list:
                self._poll_list_add(node)
            return not node.is_notifier
        if node.owner is not None:
            return self._dispatch_owner(node, revents)
        if not node.deleted and revents & READ_EVENTS and node.io_read is not None:
            if node.is_notifier:
                self.notifier._test_and_clear()  # _drain_notifier, without a Python call
            else:
                self._call(node.io_read)
                progress = True
        if not node.deleted and revents & WRITE_EVENTS and node.io_write is not None:
            self._call(node.io_write)
            progress = True
        return progress

    cdef bint _dispatch_owner(self, _Handler node, int revents) except -1:
        cdef _FdOwner owner = node.owner
        cdef bint progress = False
        try:
            if not node.deleted and revents & READ_EVENTS and node.io_read is not None:
                progress = True
                owner._on_read()
            if not node.deleted and revents & WRITE_EVENTS and node.io_write is not None:
                progress = True
                owner._on_write()
        except BaseException as exc:
            self._report(exc)
        return progress

    # ---- bottom halves (docs/bottom-halves.md)

    def bh_new(self, callback, *, name=None):
        """``aio_bh_new``: a BH bound to this context (not scheduled)."""
        if self._closed:
            raise RuntimeError("AioContext is closed")
        _check_cb(callback, "callback")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        return BH._new(self, callback, name)

    def bh_schedule_oneshot(self, callback, *, name=None):
        """``aio_bh_schedule_oneshot``: run ``callback`` once in the next poll()."""
        cdef BH bh
        if self._closed:
            raise RuntimeError("AioContext is closed")
        _check_cb(callback, "callback")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        # a one-shot BH is never seen by the user: the context recycles it once it ran
        bh = self.oneshot_free
        if bh is not None:
            self.oneshot_free = bh.next
            self.oneshot_nfree -= 1
            bh.next = None
            bh.cb = callback
            bh._name = name
            bh._deleted = False
        else:
            bh = BH._new(self, callback, name)
        self._bh_enqueue(bh, BH_SCHEDULED | BH_ONESHOT)

    cdef int _bh_enqueue(self, BH bh, int flags) except -1:
        # OR the flags in; push on the pending stack if it was not pending; always notify
        # (docs/bottom-halves.md).
        # No Python code runs between reading and writing bh_head, so with the GIL held this
        # is atomic against other threads and Python signal handlers.
        cdef int old = ql_fetch_or(&bh.flags, BH_PENDING | flags)
        if not old & BH_PENDING:
            bh.next = self.bh_head
            self.bh_head = bh
        self._notify()
        return 0

    cdef bint _bh_poll(self) except -1:
        """``aio_bh_poll``: run the BHs pending now; ones scheduled meanwhile wait a pass.

        The batches being run form one chain from ``bh_cur``: a nested call appends its batch
        at the tail, so it first finishes the outer call's BHs, then its own (docs/bottom-halves.md,
        "Order").
        """
        cdef BH bh, tail, head = self.bh_head
        cdef int old
        cdef bint progress = False
        if head is not None:
            self.bh_head = None
            if self.bh_cur is None:
                self.bh_cur = head
            else:
                tail = self.bh_cur
                while tail.next is not None:
                    tail = tail.next
                tail.next = head
        while self.bh_cur is not None:
            bh = self.bh_cur
            self.bh_cur = bh.next
            bh.next = None
            old = ql_fetch_and(&bh.flags, ~(BH_PENDING | BH_SCHEDULED | BH_IDLE))
            if old & BH_SCHEDULED and not old & BH_DELETED:
                if not old & BH_IDLE:
                    progress = True
                try:
                    bh.cb()
                except BaseException as exc:
                    self._report(exc)
            if old & BH_DELETED:
                bh.cb = None
                bh._deleted = True
            elif old & BH_ONESHOT:
                bh.cb = None
                bh._name = None
                bh.flags = 0  # nothing else holds it: clean for bh_schedule_oneshot
                if self.oneshot_nfree < ONESHOT_FREE_MAX:
                    bh.next = self.oneshot_free
                    self.oneshot_free = bh
                    self.oneshot_nfree += 1
                else:
                    bh._deleted = True
        return progress

    cdef inline bint _only_bh_pending(self, BH bh) noexcept:
        """True when an iteration now would only run ``bh``: it is the one BH pending, no fd
        handler besides the context's notifier is registered and no timer is due.  The asyncio
        loop's run_forever then runs its next ready batch at once (an iteration without I/O)."""
        cdef PyObject *head = <PyObject *>self.bh_head  # borrowed: no Python code runs here
        if self._closed or self.bh_cur is not None or _dict_size(self.handlers) != 1:
            return False
        if head != <PyObject *>None and \
                (head != <PyObject *>bh or (<BH>head).next is not None):
            return False
        if self.tl0.n or self.tl1.n or self.tl2.n or self.tl3.n:
            return self._timers_deadline() != 0
        return True

    cdef int64_t _bh_timeout(self) noexcept:
        cdef int64_t timeout = -1
        cdef BH bh = self.bh_head
        cdef bint second = False
        cdef int flags
        while True:
            while bh is not None:
                flags = ql_load(&bh.flags)
                if flags & BH_SCHEDULED and not flags & BH_DELETED:
                    if not flags & BH_IDLE:
                        return 0
                    timeout = IDLE_BH_TIMEOUT_NS
                bh = bh.next
            if second:
                break
            second = True
            bh = self.bh_cur
        return timeout

    # ---- timers (docs/timers-and-clocks.md)

    def timer_new(self, clock, scale, callback, *, attributes=0):
        """``aio_timer_new_with_attrs``: a timer on ``clock`` counting in ``scale`` ns units."""
        if self._closed:
            raise RuntimeError("AioContext is closed")
        _clock_of(clock)  # the same order of checks as the fallback
        if _int64_arg(scale, "scale") <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        return self._timer_new(clock, scale, callback, attributes)

    def timer_new_ns(self, clock, callback, *, attributes=0):
        """``aio_timer_new``: a timer on ``clock`` counting in nanoseconds."""
        return self._timer_new(clock, SCALE_NS, callback, attributes)

    def timer_new_us(self, clock, callback, *, attributes=0):
        """``aio_timer_new``: a timer on ``clock`` counting in microseconds."""
        return self._timer_new(clock, SCALE_US, callback, attributes)

    def timer_new_ms(self, clock, callback, *, attributes=0):
        """``aio_timer_new``: a timer on ``clock`` counting in milliseconds."""
        return self._timer_new(clock, SCALE_MS, callback, attributes)

    cdef Timer _timer_new(self, object clock, int64_t scale, object callback, object attributes):
        cdef long long c = -1
        cdef int overflow = 0
        if self._closed:
            raise RuntimeError("AioContext is closed")
        if isinstance(clock, int) and not isinstance(clock, bool):
            c = PyLong_AsLongLongAndOverflow(clock, &overflow)
        if overflow or not 0 <= c < 4:
            c = _clock_of(clock)  # raises the standard error for anything else
        if attributes is not 0 and (_int_arg(attributes, "attributes") & ~TIMER_ATTR_ALL
                                    or attributes < 0):
            raise ValueError(f"unknown timer attributes {attributes:#x}")
        _check_cb(callback, "callback")
        return Timer._new(self.tl0 if c == 0 else self.tl1 if c == 1 else
                          self.tl2 if c == 2 else self.tl3, scale, callback, attributes)

    cdef int64_t _timers_deadline(self, bint for_wait=True) noexcept:
        cdef int64_t deadline = -1
        if self.tl0.n:
            deadline = _soonest(deadline, self.tl0.deadline(for_wait))
        if self.tl1.n:
            deadline = _soonest(deadline, self.tl1.deadline(for_wait))
        if self.tl2.n:
            deadline = _soonest(deadline, self.tl2.deadline(for_wait))
        if self.tl3.n:
            deadline = _soonest(deadline, self.tl3.deadline(for_wait))
        return deadline

    cdef bint _run_timers(self) except -1:
        cdef bint progress = False
        if self.tl0.n:
            progress |= self.tl0.run()
        if self.tl1.n:
            progress |= self.tl1.run()
        if self.tl2.n:
            progress |= self.tl2.run()
        if self.tl3.n:
            progress |= self.tl3.run()
        return progress

    # ---- aio_poll (docs/aio-context.md, "One iteration")

    def compute_timeout(self):
        """``aio_compute_timeout``: ns until something is due; 0 now, -1 infinite."""
        self._check_open()
        return self._compute_timeout()

    cdef int64_t _compute_timeout(self) noexcept:
        cdef int64_t timeout = self._bh_timeout(), deadline
        if timeout == 0:
            return 0
        deadline = self._timers_deadline()
        if deadline == 0:
            return 0
        return _soonest(timeout, deadline)

    def poll(self, blocking):
        """``aio_poll``: one iteration; True if progress was made (docs/aio-context.md,
        "Progress").

        Order: [busy poll] -> [wait] -> accept notify -> BHs -> fd handlers -> timers.
        Must be called from one thread at a time (nested calls from callbacks are allowed).
        """
        cdef bint b
        if self._closed:
            raise RuntimeError("AioContext is closed")
        if blocking is True:
            b = True
        elif blocking is False:
            b = False
        elif isinstance(blocking, int):
            b = bool(blocking)
        else:
            raise TypeError(f"blocking must be a bool, not {type(blocking).__name__}")
        return self._poll(b)

    cdef bint _poll(self, bint blocking) except -1:
        """``poll()`` after its argument checks (the asyncio loop's run_forever calls it)."""
        cdef bint progress
        cdef unsigned long me = PyThread_get_thread_ident()
        if self.walkers:
            if self.poll_thread != me:
                raise RuntimeError("AioContext.poll() called from two threads at once")
        else:
            self.poll_thread = me
        saved = self.errors
        self.errors = None
        try:
            progress = self._poll_iteration(blocking)
        finally:
            errors = self.errors
            self.errors = saved
            if not self.walkers:
                self.poll_thread = 0
        if errors:
            _raise_errors(errors)
        return progress

    cdef bint _poll_iteration(self, bint blocking) except -1:
        cdef bint use_polling, progress = False, counted = False
        cdef int64_t start = 0, timeout, block_ns = 0
        cdef uint64_t gen
        cdef list ready
        cdef _Handler node
        self.walkers += 1
        try:
            use_polling = self.poll_max_ns != 0
            if use_polling:
                start = _now_monotonic()
            timeout = self._compute_timeout() if blocking else 0
            self.ready_gen += 1
            gen = self.ready_gen
            ready = None  # built only when something can become ready
            if len(self.poll_list):
                ready = []
                timeout = self._try_poll_mode(timeout, ready, gen, &progress)
            if timeout != 0:
                ql_store(&self.notify_me, ql_load(&self.notify_me) + 2)
                ql_smp_mb()
                counted = True
                if ql_load(&self.notified):
                    timeout = 0
            try:
                if timeout != 0 or self.poll_disable_cnt > 0 or (
                        self.uring is not None and self.uring.need_wait()):
                    if ready is None:
                        ready = []
                    if timeout != 0 and self._poll_set_started(False, ready, gen):
                        progress = True
                        timeout = 0
                    try:
                        self._wait(ready, timeout, gen)
                    except BaseException as exc:
                        self._report(exc)
            finally:
                if counted:
                    ql_store(&self.notify_me, ql_load(&self.notify_me) - 2)
            ql_xchg(&self.notified, 0)  # aio_notify_accept (full barrier)
            if use_polling:
                block_ns = _now_monotonic() - start
            if self.bh_head is not None or self.bh_cur is not None:
                progress |= self._bh_poll()
            if ready is not None:
                for obj in ready:
                    node = <_Handler>obj
                    if node.ready_gen != gen:
                        continue  # moved to a nested poll's ready list, already dispatched
                    node.ready_gen = 0
                    if self._dispatch_node(node):
                        progress = True
                    if use_polling and node.in_poll_list and self.poll_max_ns:
                        self._adjust_polling_time(node, block_ns)
        finally:
            self.walkers -= 1
            if self.walkers == 0 and len(self.deleted_handlers):
                self._free_deleted_handlers()
        if self._run_timers():
            progress = True
        return progress

    cdef int _free_deleted_handlers(self) except -1:
        with self.list_lock:
            if self.walkers == 0:
                self.deleted_handlers = []
        return 0

    # ---- coroutines (docs/coroutines.md)

    def co_schedule(self, co):
        """``aio_co_schedule``: enter coroutine ``co`` from a BH of this context (FIFO);
        safe from any thread; RuntimeError if ``co`` is already scheduled."""
        self._check_open()
        _coroutine.co_schedule(self, co)

    # ---- thread pool and AIO_WAIT_WHILE (docs/thread-pool.md, docs/iothreads.md)

    def thread_pool(self):
        """``aio_get_thread_pool``: this context's ThreadPool, made on first use and stopped
        by ``close()``; safe from any thread."""
        return _threadpool.pool_of(self)

    def wait_while(self, cond):
        """``AIO_WAIT_WHILE``: poll until ``cond()`` is false (``qloop.aio_wait_while``);
        True if it polled."""
        return _aio_wait.aio_wait_while(self, cond)

    def g_source(self):
        """``aio_get_g_source``: this context as a ``GLib.Source`` (PyGObject) to attach to a
        ``GLib.MainContext``; a running ``GLib.MainLoop`` then drives its BHs, timers and fd
        handlers.  The same source while it is not destroyed.  Needs PyGObject
        (``qloop[glib]``); raises ``qloop.GLibUnavailable`` (an ImportError) otherwise."""
        return gsource_get(self)

    # ---- the GSource interface (docs/glib.md): how an outer loop drives this context; the
    # bodies are in context_gsource.pxi

    def source_prepare(self):
        """GSource prepare: open the notify window (bit 0 of notify_me), leave poll mode and
        return the timeout in ns (-1 infinite, 0 when a BH or timer is already due)."""
        return gsource_prepare(self)

    def source_query(self):
        """The (fd, events) pairs the outer loop must poll for this context."""
        return gsource_query(self)

    def source_check(self, revents=None):
        """GSource check: close the notify window, accept the notify, record the revents the
        outer loop got for ``source_query()``'s fds (same order), and say if dispatch is due."""
        return gsource_check(self, revents)

    def source_dispatch(self):
        """GSource dispatch (``aio_dispatch``): BHs, then ready fd handlers, then timers."""
        return gsource_dispatch(self)

    def run_timers(self):
        """``timerlistgroup_run_timers``: run this context's due timers only (clock order)."""
        self._check_open()
        saved = self.errors
        self.errors = None
        try:
            progress = self._run_timers()
        finally:
            errors = self.errors
            self.errors = saved
        if errors:
            _raise_errors(errors)
        return progress

    def timers_deadline(self):
        """``timerlistgroup_deadline_ns``: ns until the next timer of this context (-1 none,
        0 due).  On the manual clock a VIRTUAL timer counts with its virtual distance (what
        ``clock_step`` would advance), although it never bounds a blocking wait."""
        self._check_open()
        return self._timers_deadline(False)

    def _set_timer_notify(self, callback):
        """Call ``callback()`` instead of notify() when a timer becomes the head of a list
        (the main loop's timer lists use qemu_notify_event: docs/main-loop.md)."""
        self.timer_notify_cb = callback

    cdef int _timer_notify(self) except -1:
        if self.timer_notify_cb is None:
            self._notify()
        else:
            self.timer_notify_cb()
        return 0

    # ---- lifecycle

    def close(self):
        """Release the context's fds; drop pending BHs, timers and handlers without running
        them (user fds are not closed).  Later calls raise RuntimeError.  Idempotent."""
        cdef BH bh, nxt
        if self._closed:
            return
        if self.walkers:
            raise RuntimeError("cannot close an AioContext from inside its own poll()")
        self._closed = True
        _contexts.discard(self)
        _threadpool.close_pool(self)
        src, self._g_source_obj = self._g_source_obj, None
        if src is not None and not src.is_destroyed():
            src.destroy()
        with self.list_lock:
            for node in self.handlers.values():
                (<_Handler>node).deleted = True
            self.handlers.clear()
            self.deleted_handlers = []
            self.poll_list = []
            self.pfds_len = 0
            self.npollfds = 0
        for tl in self.timer_lists:
            (<_TimerList>tl).clear()
        bh = self.bh_head
        self.bh_head = None
        while bh is not None:
            nxt = bh.next
            bh.next = None
            if bh._name is None and not bh.flags & BH_ONESHOT:
                bh._name = _callback_name(bh.cb)
            bh.cb = None
            bh._deleted = True
            bh = nxt
        bh = self.oneshot_free
        self.oneshot_free = None
        self.oneshot_nfree = 0
        while bh is not None:  # unlinked one by one: no deep recursion of deallocations
            nxt = bh.next
            bh.next = None
            bh._deleted = True
            bh = nxt
        bh = self.bh_cur
        self.bh_cur = None
        while bh is not None:
            nxt = bh.next
            bh.next = None
            if bh._name is None and not bh.flags & BH_ONESHOT:
                bh._name = _callback_name(bh.cb)
            bh.cb = None
            bh._deleted = True
            bh = nxt
        if self.epfd >= 0:
            close(self.epfd)
            self.epfd = -1
        self.epoll_active = False
        if self.uring is not None:
            self.uring.close()
            self.uring = None
        self.notifier_wfd = -1
        while ql_load(&self.wake_writers):  # a notify() in another thread is mid-write
            with nogil:
                sched_yield()
        self.notifier.close()

    def __enter__(self):
        """Context manager: returns itself."""
        self._check_open()
        return self

    def __exit__(self, *exc):
        """Context manager: ``close()``."""
        self.close()

    def __repr__(self):
        if self._closed:
            return "<qloop._core.AioContext closed>"
        return f"<qloop._core.AioContext fdmon={self.fdmon} handlers={len(self.handlers)}>"

    def resource_counts(self):
        """``(bhs, timers, fd_handlers)``: the BHs whose callback is still to run (scheduled,
        not cancelled or deleted; one-shot BHs included), the armed timers and the registered
        fd handlers (not counting the context's own notifier).  For leak checks in tests;
        reads only.  ``(0, 0, 0)`` once the context is closed."""
        cdef BH bh
        cdef int flags
        cdef Py_ssize_t bhs = 0, timers = 0, fd_handlers = 0
        if self.closed:
            return (0, 0, 0)
        for bh in (self.bh_head, self.bh_cur):
            while bh is not None:
                flags = ql_load(&bh.flags)
                if flags & BH_SCHEDULED and not flags & BH_DELETED:
                    bhs += 1
                bh = bh.next
        for tl in self.timer_lists:
            timers += (<_TimerList>tl).n - (<_TimerList>tl).dead
        with self.list_lock:
            for node in self.handlers.values():
                if not (<_Handler>node).is_notifier:
                    fd_handlers += 1
        return (bhs, timers, fd_handlers)


cdef inline int64_t _as_int64(object value, str what) except? -1:
    # value is an int; OverflowError (with the name) when it does not fit int64_t
    cdef int overflow = 0
    cdef long long v = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow:
        raise OverflowError(f"{what}={value} does not fit in a signed 64-bit integer")
    return v


cdef inline int _check_cb(object cb, str what) except -1:
    # the common case inline (a plain or bound Python function); others via _common
    cdef object code
    if PyFunction_Check(cb):
        code = <object>PyFunction_GET_CODE_raw(cb)
    elif PyMethod_Check(cb) and PyFunction_Check(<object>PyMethod_GET_FUNCTION_raw(cb)):
        code = <object>PyFunction_GET_CODE_raw(<object>PyMethod_GET_FUNCTION_raw(cb))
    else:
        _check_callback(cb, what, False)
        return 0
    if (<PyCodeObject *>code).co_flags & CO_COROUTINE:
        _check_callback(cb, what, False)  # raises the standard error
    return 0
