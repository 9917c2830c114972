# The core's EventNotifier (docs/notifiers.md).  Twin of qloop/_py/notifier.py; included by
# qloop/_core.pyx.

# --------------------------------------------------------------------------------------------
# EventNotifier (docs/notifiers.md)

@cython.final
cdef class EventNotifier:
    """EventNotifier(active=False, use_pipe=False)
--

A level-triggered set/clear flag backed by an eventfd (or a pipe)."""

    def __cinit__(self):
        self.rfd = -1
        self.wfd = -1

    def __init__(self, active=False, use_pipe=False):
        cdef int fds[2]
        cdef int fd
        if self.rfd >= 0:
            raise RuntimeError("EventNotifier is already initialised")
        if not use_pipe:
            fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
            if fd >= 0:
                self.rfd = self.wfd = fd
            elif errno != ENOSYS:
                raise OSError(errno, "eventfd() failed")
        if self.rfd < 0:
            if pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0:
                raise OSError(errno, "pipe2() failed")
            self.rfd = fds[0]
            self.wfd = fds[1]
        if active:
            self._set()

    cdef int _check(self) except -1:
        if self.rfd < 0:
            raise RuntimeError("EventNotifier is closed")
        return 0

    cdef int _set(self) except -1:
        cdef ssize_t r
        self._check()
        while True:
            r = write(self.wfd, &_eventfd_one, 8)
            if r >= 0 or errno == EAGAIN:
                return 0  # EAGAIN: counter saturated / pipe full, a read is pending anyway
            if errno != EINTR:
                raise OSError(errno, f"write to EventNotifier fd {self.wfd} failed")

    cdef bint _test_and_clear(self) except -1:
        cdef char buf[512]
        cdef ssize_t r
        cdef bint value = False
        self._check()
        while True:
            r = read(self.rfd, buf, 512)
            if r < 0:
                if errno == EINTR:
                    continue
                break
            if r > 0:
                value = True
            if r < 512:
                break
        return value

    def fileno(self):
        """The read side: what is registered for polling."""
        self._check()
        return self.rfd

    def write_fileno(self):
        """The write side (the same fd as ``fileno()`` for an eventfd)."""
        self._check()
        return self.wfd

    def set(self):
        """Make the notifier readable; idempotent (sets before a clear coalesce)."""
        self._set()

    def test_and_clear(self):
        """Drain the notifier; True if it was set."""
        return self._test_and_clear()

    def close(self):
        """Close the fds; idempotent."""
        if self.rfd >= 0:
            close(self.rfd)
            if self.wfd != self.rfd:
                close(self.wfd)
            self.rfd = self.wfd = -1

    @property
    def closed(self):
        """Whether ``close()`` was called."""
        return self.rfd < 0

    def __enter__(self):
        """Context manager: returns itself."""
        return self

    def __exit__(self, *exc):
        """Context manager: ``close()``."""
        self.close()

    def __dealloc__(self):
        if self.rfd >= 0:
            close(self.rfd)
            if self.wfd != self.rfd:
                close(self.wfd)
