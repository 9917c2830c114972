# The core's timers: the per-clock timer heap and Timer (docs/timers-and-clocks.md).  Twin
# of qloop/_py/timers.py; included by qloop/_core.pyx.

# --------------------------------------------------------------------------------------------
# Timers (docs/timers-and-clocks.md)

cdef uint64_t _timer_seq = 0


cdef inline bint _entry_less(TimerEntry *a, TimerEntry *b) noexcept nogil:
    return a.key < b.key or (a.key == b.key and a.seq < b.seq)


cdef inline void _sift_down(TimerEntry *heap, Py_ssize_t n, Py_ssize_t i,
                            TimerEntry e) noexcept nogil:
    """Place ``e`` at ``i`` or below in a 4-ary min-heap of ``n`` entries."""
    cdef Py_ssize_t child, best, last, grand
    while True:
        child = 4 * i + 1
        if child >= n:
            break
        grand = 4 * child + 1  # the next level's 16 entries: fetch them while comparing these
        if grand < n:
            __builtin_prefetch(&heap[grand])
            __builtin_prefetch(<char *>&heap[grand] + 128)
            __builtin_prefetch(<char *>&heap[grand] + 256)
        best = child
        last = child + 4 if child + 4 < n else n
        child += 1
        while child < last:
            if _entry_less(&heap[child], &heap[best]):
                best = child
            child += 1
        if not _entry_less(&heap[best], &e):
            break
        heap[i] = heap[best]
        i = best
    heap[i] = e


cdef inline bint _entry_live(TimerEntry *e) noexcept:
    return (<Timer>e.timer).seq == e.seq


@cython.final
cdef class _TimerList:
    """One clock's timers in one context: a heap of (key, seq, timer) entries."""

    def __cinit__(self, AioContext ctx, int clock):
        self.ctx = ctx
        self.clock = clock
        self.heap = NULL
        self.n = self.cap = self.dead = 0

    def __dealloc__(self):
        self.clear()

    cdef int _push(self, Timer timer, int64_t key) except -1:
        global _timer_seq
        cdef Py_ssize_t i, parent, newcap
        cdef TimerEntry entry
        cdef TimerEntry *mem
        if self.n == self.cap:
            newcap = self.cap * 2 if self.cap else 16
            mem = <TimerEntry *>PyMem_Realloc(self.heap, newcap * sizeof(TimerEntry))
            if mem == NULL:
                raise MemoryError()
            self.heap = mem
            self.cap = newcap
        _timer_seq += 1
        entry.key = key
        entry.seq = _timer_seq
        entry.timer = <void *>timer
        Py_INCREF(timer)
        timer.key = key
        timer.seq = _timer_seq
        i = self.n
        self.n += 1
        while i > 0:
            parent = (i - 1) >> 2  # 4-ary heap: half the depth, children share cache lines
            if not _entry_less(&entry, &self.heap[parent]):
                break
            self.heap[i] = self.heap[parent]
            i = parent
        self.heap[i] = entry
        return 0

    cdef void _pop_top(self) noexcept:
        """Remove heap[0] and drop its reference (the caller keeps the timer alive if needed)."""
        cdef void *timer = self.heap[0].timer
        cdef Py_ssize_t n
        self.n -= 1
        n = self.n
        if n > 0:
            _sift_down(self.heap, n, 0, self.heap[n])
        Py_DECREF(<object>timer)

    cdef void _drop_stale_top(self) noexcept:
        while self.n and not _entry_live(&self.heap[0]):
            self._pop_top()
            self.dead -= 1

    cdef void _compact(self) noexcept:
        cdef Py_ssize_t i, j = 0, k = 0, kept = 0, n = self.n
        cdef TimerEntry *heap = self.heap
        cdef void **last = <void **>PyMem_Malloc((self.dead + 1) * sizeof(void *))
        cdef void *t
        # Live entries to the front.  A stale entry's reference is dropped here (its timer is
        # being read anyway) unless it is the last one: a freed timer may run Python code, so
        # those wait for the end.  The timers are fetched ahead: one pass of overlapped
        # misses instead of one miss per entry.
        for i in range(n):
            if i + 16 < n:
                __builtin_prefetch(heap[i + 16].timer)
            if _entry_live(&heap[i]):
                heap[j] = heap[i]
                j += 1
                continue
            t = heap[i].timer
            if Py_REFCNT(<object>t) > 1:
                Py_DECREF(<object>t)
            elif last != NULL:
                last[k] = t
                k += 1
            else:  # no memory for the list: it stays, stale, in the heap
                heap[j] = heap[i]
                j += 1
                kept += 1
        self.n = j
        self.dead = kept
        i = (self.n - 2) // 4  # heapify: sift down every parent, last first
        while i >= 0:
            _sift_down(heap, self.n, i, heap[i])
            i -= 1
        for i in range(k):  # the last references, last
            Py_DECREF(<object>last[i])
        PyMem_Free(last)

    cdef int insert(self, Timer timer, int64_t key) except -1:
        """``timer_mod_ns``: (re)arm, notifying the context if the timer became the head."""
        if timer.seq:
            self.dead += 1  # the old entry goes stale
        self._push(timer, key)
        if self.dead > 64 and self.dead * 2 > self.n:
            self._compact()
        self._drop_stale_top()
        if self.heap[0].timer == <void *>timer:
            self.ctx._timer_notify()
        return 0

    cdef void remove(self, Timer timer) noexcept:
        if timer.seq:
            timer.seq = 0
            self.dead += 1
            self._drop_stale_top()
            if self.dead > 64 and self.dead * 2 > self.n:
                self._compact()

    cdef int64_t head_expire(self) noexcept:
        self._drop_stale_top()
        if self.n == 0:
            return -1
        return self.heap[0].key if self.heap[0].key > 0 else 0

    cdef int64_t deadline(self, bint for_wait) noexcept:
        """``timerlist_deadline_ns``.  ``for_wait``: in manual mode a virtual timer bounds a
        wait only once due (a wait must not sleep on real time for virtual time)."""
        cdef int64_t expire, delta
        if self.n == 0 or not _clock_enabled[self.clock]:
            return -1
        expire = self.head_expire()
        if expire < 0:
            return -1
        delta = expire - _clock_now(self.clock)
        if delta <= 0:
            return 0
        if for_wait and _manual and (self.clock == 1 or self.clock == 3):
            return -1
        return delta

    cdef bint run(self) except -1:
        """``timerlist_run_timers``: run every timer due at one reading of the clock."""
        cdef int64_t now
        cdef bint progress = False
        cdef Timer timer
        if self.n == 0 or not _clock_enabled[self.clock]:
            return False
        now = _clock_now(self.clock)
        while True:
            self._drop_stale_top()
            if self.n == 0:
                break
            if (self.heap[0].key if self.heap[0].key > 0 else 0) > now:
                break
            timer = <Timer>self.heap[0].timer
            timer.seq = 0
            self._pop_top()
            progress = True
            try:
                timer.cb()
            except BaseException as exc:
                self.ctx._report(exc)
        return progress

    cdef void clear(self) noexcept:
        # detach first: dropping a reference may run Python code that arms a timer again
        cdef TimerEntry *heap = self.heap
        cdef Py_ssize_t n = self.n
        self.heap = NULL
        self.n = self.cap = self.dead = 0
        _decref_entries(heap, n, True)
        PyMem_Free(heap)


cdef void _decref_entries(TimerEntry *entries, Py_ssize_t n, bint disarm) noexcept:
    cdef Py_ssize_t i
    if disarm:
        for i in range(n):
            if _entry_live(&entries[i]):
                (<Timer>entries[i].timer).seq = 0
    for i in range(n):
        Py_DECREF(<object>entries[i].timer)


# The heap holds references the generated GC hooks cannot see: visit and clear them too.
cdef traverseproc _tl_base_traverse = (<PyTypeObject_gc *>_TimerList).tp_traverse
cdef inquiry _tl_base_clear = (<PyTypeObject_gc *>_TimerList).tp_clear


cdef int _tl_traverse(PyObject *o, visitproc visit, void *arg) noexcept:
    cdef _TimerList tl = <_TimerList>o
    cdef Py_ssize_t i
    cdef int r
    for i in range(tl.n):
        r = visit(<PyObject *>tl.heap[i].timer, arg)
        if r:
            return r
    return _tl_base_traverse(o, visit, arg)


cdef int _tl_clear(PyObject *o) noexcept:
    (<_TimerList>o).clear()
    return _tl_base_clear(o)


(<PyTypeObject_gc *>_TimerList).tp_traverse = _tl_traverse
(<PyTypeObject_gc *>_TimerList).tp_clear = _tl_clear


@cython.final
@cython.freelist(256)
cdef class Timer:
    """Timer(*args, **kwargs)
--

A QEMUTimer, created by ``AioContext.timer_new*``.  Times are in the timer's scale."""

    def __init__(self, *args, **kwargs):
        raise TypeError("Timer objects are created by AioContext.timer_new*()")

    @staticmethod
    cdef Timer _new(_TimerList tl, int64_t scale, object cb, uint32_t attributes):
        cdef Timer self = Timer.__new__(Timer)
        self.tl = tl
        self._scale = scale
        self.cb = cb
        self._attributes = attributes
        self.seq = 0
        return self

    cdef _TimerList _list(self):
        if self.tl.ctx._closed:
            raise RuntimeError("the timer's AioContext is closed")
        return self.tl

    def mod_ns(self, ns):
        """Arm (or re-arm) at absolute time ``ns`` on the timer's clock."""
        cdef int64_t v
        if type(ns) is not int:
            ns = _int64_arg(ns, "ns")
        v = _as_int64(ns, "ns")  # before the closed check, as the fallback does
        self._list().insert(self, v)

    def mod(self, expire):
        """Arm at ``expire`` in the timer's scale."""
        cdef int64_t v = _as_int64(_int_arg(expire, "expire") * self._scale, "expire * scale")
        self._list().insert(self, v)

    def mod_anticipate_ns(self, ns):
        """Arm at ``ns`` only if that is earlier than the current expiry (or not pending)."""
        cdef int64_t v = _as_int64(_int_arg(ns, "ns"), "ns")
        cdef _TimerList tl = self._list()
        cdef int64_t cur
        if self.seq == 0:
            tl.insert(self, v)
            return
        cur = self.key if self.key > 0 else 0
        if cur > v:
            tl.insert(self, v)

    def mod_anticipate(self, expire):
        """Arm at ``expire`` (in the timer's scale) only if that is earlier than now set."""
        self.mod_anticipate_ns(_as_int64(_int_arg(expire, "expire") * self._scale,
                                         "expire * scale"))

    def delete(self):
        """``timer_del``: disarm; a no-op if not pending.  The timer can be armed again."""
        self.tl.remove(self)

    @property
    def pending(self):
        """Whether the timer is armed."""
        return self.seq != 0

    def expired(self, current_time):
        """``timer_expired``: True if expire_time <= current_time (scaled).

        Note: a timer that is not pending reports True, as QEMU's does (its expiry counts
        as -1); use ``pending()`` to ask whether it is armed.
        """
        cdef int64_t expire = (self.key if self.key > 0 else 0) if self.seq else -1
        return expire <= _int_arg(current_time, "current_time") * self._scale

    @property
    def expire_time_ns(self):
        """The expiry in ns on the timer's clock; -1 when not pending."""
        if self.seq == 0:
            return -1
        return self.key if self.key > 0 else 0

    @property
    def clock(self):
        """The timer's ``ClockType``."""
        return ClockType(self.tl.clock)

    @property
    def scale(self):
        """ns per unit of ``mod``/``mod_anticipate`` times (SCALE_NS, SCALE_US, SCALE_MS...)."""
        return self._scale

    @property
    def attributes(self):
        """The attribute bits given at creation (``TIMER_ATTR_EXTERNAL``...)."""
        return self._attributes

    def __repr__(self):
        return (f"<Timer clock={self.clock.name} scale={self._scale} "
                f"expire_time_ns={self.expire_time_ns}>")
