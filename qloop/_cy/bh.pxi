# The core's bottom halves (docs/bottom-halves.md).  Twin of qloop/_py/bh.py; included by
# qloop/_core.pyx.

# --------------------------------------------------------------------------------------------
# Bottom halves (docs/bottom-halves.md)

cdef object _callback_name(object cb):
    return getattr(cb, "__qualname__", repr(cb))


@cython.final
@cython.freelist(256)
cdef class BH:
    """BH(*args, **kwargs)
--

A bottom half, created by ``AioContext.bh_new``.  ``callback()`` takes no arguments."""

    def __init__(self, *args, **kwargs):
        raise TypeError("BH objects are created by AioContext.bh_new()")

    @staticmethod
    cdef BH _new(AioContext ctx, object cb, object name):
        cdef BH self = BH.__new__(BH)
        self.ctx = ctx
        self.cb = cb
        self._name = name
        return self

    cdef int _check(self) except -1:
        if self._deleted:
            raise RuntimeError(f"BH {self.name!r} was deleted")
        if self.ctx._closed:
            raise RuntimeError("the BH's AioContext is closed")
        return 0

    def schedule(self):
        """Run the callback in the next ``poll()``; idempotent; safe from any thread."""
        self._check()
        self.ctx._bh_enqueue(self, BH_SCHEDULED)

    def schedule_idle(self):
        """Schedule without counting as progress; a blocking poll waits at most 10 ms for it."""
        self._check()
        self.ctx._bh_enqueue(self, BH_SCHEDULED | BH_IDLE)

    def cancel(self):
        """Unschedule; the BH stays usable."""
        self._check()
        ql_fetch_and(&self.flags, ~BH_SCHEDULED)

    def delete(self):
        """Unschedule and free; later use raises RuntimeError.  Allowed from its own callback."""
        self._check()
        if self._name is None:
            self._name = self.name  # keep it once the callback is dropped
        self.ctx._bh_enqueue(self, BH_DELETED)
        self._deleted = True

    @property
    def deleted(self):
        """Whether ``delete()`` was called (or the one-shot ran, or its context closed)."""
        return self._deleted

    @property
    def name(self):
        """The name given to ``bh_new``, else the callback's qualified name."""
        if self._name is None:
            return _callback_name(self.cb)
        return self._name

    def __repr__(self):
        return f"<BH {self.name!r}{' deleted' if self._deleted else ''}>"
