# cython: language_level=3, embedsignature=True
"""Compiled qloop core: QEMU's AioContext, bottom halves, timers and clocks.

Mirrors ``qloop/_fallback.py`` class by class (clocks, EventNotifier, _TimerList/Timer, BH,
_Handler, AioContext) with the same behaviour; read the two side by side.  Methods come in the
same order; a C attribute ``x`` here (private by nature) is ``_x`` there; C-only helpers
(``_wait_ppoll``, ``_rebuild_pollfds``...) have no twin.  The behaviour is described in
``docs/`` (``docs/aio-context.md`` and the pages it links); open choices are in
``docs/decisions.md``.

C-level design:
* the wait is ``ppoll(2)`` (ns timeout) on a C ``pollfd`` array rebuilt only when the handler
  set changed, or ``epoll_wait(2)`` once upgraded; both run with the GIL released;
* ``notify_me``/``notified`` are C ints accessed with GCC atomics and full barriers
  (docs/notify.md);
* BH flags are atomic; the pending stack is an intrusive list of BH objects changed only with
  the GIL held and without running Python code, so a push from another thread or from a
  Python signal handler is atomic with respect to the owner;
* each timer list is a binary heap of C structs (key, seq, timer); re-arming pushes a new
  entry and leaves the old one stale (skipped when it surfaces, compacted when stale entries
  dominate), so ``mod`` costs O(log n) (O(1) on average for random expiries).
"""

cimport cython
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.errno cimport EAGAIN, EINTR, ENOSYS, errno
from libc.string cimport memcpy
from libc.stdint cimport INT64_MAX, int64_t, uint32_t, uint64_t
from posix.fcntl cimport O_CLOEXEC, O_NONBLOCK
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec
from posix.unistd cimport close, read, write

from qloop.includes.posix cimport (
    EFD_CLOEXEC,
    EFD_NONBLOCK,
    EPOLL_CLOEXEC,
    EPOLL_CTL_ADD,
    EPOLL_CTL_DEL,
    EPOLL_CTL_MOD,
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLNVAL,
    POLLOUT,
    epoll_create1,
    epoll_ctl,
    epoll_event,
    epoll_wait,
    eventfd,
    pipe2,
    pollfd,
    ppoll,
    sched_yield,
    ql_fetch_add,
    ql_fetch_and,
    ql_fetch_or,
    ql_load,
    ql_smp_mb,
    ql_store,
    ql_cmpxchg,
    ql_futex_wait,
    ql_futex_wake_one,
    ql_xchg,
)

import threading
import types
import weakref

from qloop import _coroutine, _glib, _mainloop, _runstate

from qloop._mainloop import MainLoopPoll
from qloop._common import (
    NotifierList,
    _bind,
    _closed_fd_error,
    _check_callback,
    _clock_of,
    _fd_for_removal,
    _fd_of,
    _int64_arg,
    _int_arg,
    _raise_errors,
)
from qloop._constants import (
    SCALE_MS,
    SCALE_NS,
    SCALE_US,
    TIMER_ATTR_ALL,
    TIMER_ATTR_EXTERNAL,
    ClockType,
)

__all__ = [
    "AioContext",
    "BH",
    "ClockType",
    "EventNotifier",
    "NotifierList",
    "SCALE_MS",
    "SCALE_NS",
    "SCALE_US",
    "TIMER_ATTR_ALL",
    "TIMER_ATTR_EXTERNAL",
    "Timer",
    "clock_advance_virtual_time",
    "clock_enable",
    "clock_get_ms",
    "clock_get_ns",
    "clock_get_us",
    "clock_is_enabled",
    "clock_is_manual",
    "clock_set_manual",
    "soonest_timeout",
    "timeout_ns_to_ms",
]


cdef extern from *:
    void __builtin_prefetch(const void *addr) nogil

cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(object o)


cdef extern from "Python.h":
    unsigned long PyThread_get_thread_ident()
    long long PyLong_AsLongLongAndOverflow(object obj, int *overflow) except? -1

    ctypedef struct PyCodeObject:
        int co_flags
    enum:
        CO_COROUTINE
    bint PyFunction_Check(object o)
    PyObject *PyFunction_GET_CODE_raw "PyFunction_GET_CODE"(object o)
    bint PyMethod_Check(object o)
    PyObject *PyMethod_GET_FUNCTION_raw "PyMethod_GET_FUNCTION"(object o)

    ctypedef int (*visitproc)(PyObject *, void *) noexcept
    ctypedef int (*traverseproc)(PyObject *, visitproc, void *) noexcept
    ctypedef int (*inquiry)(PyObject *) noexcept

    ctypedef struct PyTypeObject_gc "PyTypeObject":
        traverseproc tp_traverse
        inquiry tp_clear
        PyObject *tp_dict
    void PyType_Modified(PyTypeObject_gc *tp)


cdef enum:
    EPOLL_ENABLE_THRESHOLD = 64
    EPOLL_MAX_EVENTS = 128
    IDLE_BH_TIMEOUT_NS = 10000000
    POLL_NS_INITIAL = 4000
    INT32_MAX = 2147483647
    READ_EVENTS = POLLIN | POLLHUP | POLLERR
    WRITE_EVENTS = POLLOUT | POLLERR
    BH_PENDING = 1
    BH_SCHEDULED = 2
    BH_DELETED = 4
    BH_ONESHOT = 8
    BH_IDLE = 16
    ONESHOT_FREE_MAX = 1024  # one-shot BHs a context keeps for reuse
    FDMON_AUTO = 0
    FDMON_POLL = 1
    FDMON_EPOLL = 2

cdef uint64_t _eventfd_one = 1


# --------------------------------------------------------------------------------------------
# Timeouts (docs/timers-and-clocks.md, "Deadlines and timeouts")

cdef inline int64_t _soonest(int64_t a, int64_t b) noexcept nogil:
    # unsigned min: -1 is infinity
    return a if <uint64_t>a <= <uint64_t>b else b


def soonest_timeout(a, b):
    """``qemu_soonest_timeout``: the smaller of two timeouts where -1 means infinite."""
    cdef int64_t x = _int64_arg(a, "a"), y = _int64_arg(b, "b")
    return _soonest(x, y)


cdef inline int64_t _ns_to_ms(int64_t ns) noexcept nogil:
    if ns < 0:
        return -1
    if ns == 0:
        return 0
    ns = (ns - 1) // 1000000 + 1  # ceil without overflow
    return ns if ns < INT32_MAX else INT32_MAX


def timeout_ns_to_ms(ns):
    """``qemu_timeout_ns_to_ms``: -1 stays -1, 0 is 0, otherwise rounded up, capped at INT32_MAX."""
    value = _int_arg(ns, "ns")
    if value > INT64_MAX:
        return INT32_MAX
    if value < -1:
        return -1
    return _ns_to_ms(value)


# --------------------------------------------------------------------------------------------
# Clocks (docs/timers-and-clocks.md): VIRTUAL starts at 0 and disabled; while enabled it
# advances with the monotonic clock, while disabled (or in manual mode) it is frozen.

cdef int _clock_enabled[4]
_clock_enabled[0] = 1
_clock_enabled[1] = 0
_clock_enabled[2] = 1
_clock_enabled[3] = 1
cdef int64_t _virtual_base = 0
cdef int64_t _virtual_start = 0
cdef bint _manual = False
cdef int64_t _manual_ns = 0
_clock_lock = threading.Lock()
# Every open AioContext, so clock changes can notify their timer lists.
_contexts = weakref.WeakSet()


cdef inline int64_t _now_monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int64_t _now_realtime() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int64_t _virtual_now() noexcept nogil:
    if _manual:
        return _manual_ns
    if _clock_enabled[1]:
        return _virtual_base + (_now_monotonic() - _virtual_start)
    return _virtual_base


cdef inline int64_t _clock_now(int clock) noexcept nogil:
    if clock == 0:
        return _now_monotonic()
    if clock == 2:
        return _now_realtime()
    return _virtual_now()


def clock_get_ns(clock):
    """``qemu_clock_get_ns``: the current time of ``clock`` in nanoseconds."""
    return _clock_now(_clock_of(clock))


def clock_get_us(clock):
    """``qemu_clock_get_us``."""
    return _clock_now(_clock_of(clock)) // SCALE_US


def clock_get_ms(clock):
    """``qemu_clock_get_ms``."""
    return _clock_now(_clock_of(clock)) // SCALE_MS


def clock_is_enabled(clock):
    """Whether timers on ``clock`` run and bound the wait (VIRTUAL starts disabled)."""
    return bool(_clock_enabled[_clock_of(clock)])


def clock_enable(clock, enabled):
    """``qemu_clock_enable``.  Enabling notifies every context so it recomputes its deadline.

    Unlike QEMU, disabling does not wait for a concurrent run of that clock's timers.
    """
    global _virtual_base, _virtual_start
    cdef int c = _clock_of(clock)
    cdef bint on = bool(enabled)
    with _clock_lock:
        if bool(_clock_enabled[c]) == on:
            return
        if c == 1 and not _manual:
            if on:
                _virtual_start = _now_monotonic()
            else:
                _virtual_base = _virtual_now()
        _clock_enabled[c] = on
    if on:
        for ctx in list(_contexts):
            (<AioContext>ctx)._notify()


def clock_set_manual(manual):
    """Freeze VIRTUAL (and VIRTUAL_RT) so they move only by ``clock_advance_virtual_time``."""
    global _manual, _manual_ns, _virtual_base, _virtual_start
    cdef bint on = bool(manual)
    with _clock_lock:
        if on == _manual:
            return
        if on:
            _manual_ns = _virtual_now()
            _manual = True
        else:
            _virtual_base = _manual_ns
            _virtual_start = _now_monotonic()
            _manual = False
    for ctx in list(_contexts):
        (<AioContext>ctx)._notify()


def clock_is_manual():
    """Whether VIRTUAL moves only by ``clock_advance_virtual_time`` (``clock_set_manual``)."""
    return _manual


def _virtual_deadline():
    """ns until the next VIRTUAL timer of any open context (-1 none, 0 due)."""
    cdef int64_t soonest = -1, e, delta
    for c in list(_contexts):
        if not (<AioContext>c)._closed:
            e = (<AioContext>c).tl1.head_expire()
            if e >= 0 and (soonest < 0 or e < soonest):
                soonest = e
    if soonest < 0:
        return -1
    delta = soonest - _virtual_now()
    return delta if delta > 0 else 0


def clock_advance_virtual_time(dest_ns):
    """Step the manual VIRTUAL clock to ``dest_ns`` (qtest's clock warp).

    VIRTUAL moves to each pending VIRTUAL deadline up to ``dest_ns`` in turn, running the due
    VIRTUAL timers of every open AioContext (in the calling thread) at each step; then it is
    set to ``dest_ns``.  Returns the new VIRTUAL time.  Timer exceptions are raised at the end
    (the first one; see ``AioContext.set_exception_handler``).
    """
    global _manual_ns
    cdef int64_t dest = _int64_arg(dest_ns, "dest_ns")
    cdef int64_t soonest, e
    cdef bint ran
    cdef AioContext ctx
    if not _manual:
        raise RuntimeError("clock_advance_virtual_time needs clock_set_manual(True)")
    if dest < _manual_ns:
        raise ValueError(f"dest_ns {dest} is before the current VIRTUAL time {_manual_ns}")
    errors = []
    while True:
        soonest = -1
        ctxs = [c for c in list(_contexts) if not (<AioContext>c)._closed]
        for c in ctxs:
            e = (<AioContext>c).tl1.head_expire()
            if e >= 0 and (soonest < 0 or e < soonest):
                soonest = e
        if soonest < 0 or soonest > dest:
            break
        if soonest > _manual_ns:
            _manual_ns = soonest
        ran = False
        for c in ctxs:
            ctx = <AioContext>c
            saved = ctx.errors
            ctx.errors = errors
            try:
                ran |= ctx.tl1.run()
            finally:
                ctx.errors = saved
        if not ran:
            break  # VIRTUAL is disabled: its timers never run (docs/timers-and-clocks.md)
    _manual_ns = dest
    for c in list(_contexts):
        (<AioContext>c)._notify()
    if errors:
        _raise_errors(errors)
    return dest


cdef int _virtual_jump(AioContext own, int64_t dest) except -1:
    """A virtual-time event loop's autojump (docs/virtual-time.md): move the manual VIRTUAL
    clock forward to ``dest`` (never back) without running any timer here.  ``own`` runs its
    due timers in its next poll; another context whose VIRTUAL timers fall due is woken to run
    them in its own thread."""
    global _manual_ns
    cdef AioContext ctx
    cdef int64_t e
    cdef list refs
    if not _manual or dest <= _manual_ns:
        return 0
    _manual_ns = dest
    # The WeakSet's own set of weak references, snapshot as a list in C: this runs at every
    # jump, and iterating the WeakSet itself is a Python generator.
    refs = list(_contexts.data)
    if len(refs) > 1:
        for ref in refs:
            c = ref()
            if c is None:
                continue
            ctx = <AioContext>c
            if ctx is own or ctx._closed or (ctx.tl1.n == 0 and ctx.tl3.n == 0):
                continue
            e = _soonest(ctx.tl1.head_expire(), ctx.tl3.head_expire())
            if 0 <= e <= dest:
                ctx._notify()
    return 0


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

cdef object _FDMON_NAMES = {"auto": FDMON_AUTO, "poll": FDMON_POLL, "epoll": FDMON_EPOLL}


@cython.final
cdef class AioContext:
    """AioContext(fdmon='auto')
--

QEMU's AioContext: fd handlers, bottom halves and timers driven by ``poll()``.

    ``fdmon`` is ``"auto"`` (ppoll, moving to epoll once 64 or more fds are polled), ``"poll"``
    or ``"epoll"``.  Exceptions raised by callbacks: see ``set_exception_handler``.
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
            raise ValueError(f"unknown fdmon {fdmon!r} (expected one of ('auto', 'poll', 'epoll'))")
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
        """The fd monitor in use now: ``"poll"`` or ``"epoll"``."""
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
        if (self.npollfds >= EPOLL_ENABLE_THRESHOLD and not self.epoll_active
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
        cdef timespec ts
        cdef pollfd pfd
        cdef int r, i, rev
        cdef _Handler node
        if timeout > 0:
            # ns precision: ppoll the epoll fd itself first (epoll_wait takes ms)
            pfd.fd = self.epfd
            pfd.events = POLLIN
            pfd.revents = 0
            ts.tv_sec = timeout // 1000000000
            ts.tv_nsec = timeout % 1000000000
            if ts.tv_sec > INT32_MAX:
                ts.tv_sec = INT32_MAX
            with nogil:
                r = ppoll(&pfd, 1, &ts, NULL)
            if r <= 0:
                if r < 0:
                    return self._wait_failed(errno, "ppoll() on the epoll fd failed")
                return 0
            r = epoll_wait(self.epfd, self.ep_events, EPOLL_MAX_EVENTS, 0)
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

    cdef bint _only_bh_pending(self, BH bh) noexcept:
        """True when an iteration now would only run ``bh``: it is the one BH pending, no fd
        handler besides the context's notifier is registered and no timer is due.  The asyncio
        loop's run_forever then runs its next ready batch at once (an iteration without I/O)."""
        cdef BH head = self.bh_head
        if self._closed or self.bh_cur is not None or len(self.handlers) != 1:
            return False
        if head is not None and (head is not bh or head.next is not None):
            return False
        return self._timers_deadline() != 0

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
                if timeout != 0 or self.poll_disable_cnt > 0:
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

    def g_source(self):
        """``aio_get_g_source``: this context as a ``GLib.Source`` (PyGObject) to attach to a
        ``GLib.MainContext``; a running ``GLib.MainLoop`` then drives its BHs, timers and fd
        handlers.  The same source while it is not destroyed.  Needs PyGObject
        (``qloop[glib]``); raises ``qloop.GLibUnavailable`` (an ImportError) otherwise."""
        self._check_open()
        src = self._g_source_obj
        if src is None or src.is_destroyed():
            src = self._g_source_obj = _glib.make_g_source(self)
        return src

    # ---- the GSource interface (docs/glib.md): how an outer loop drives this context

    def source_prepare(self):
        """GSource prepare: open the notify window (bit 0 of notify_me), leave poll mode and
        return the timeout in ns (-1 infinite, 0 when a BH or timer is already due)."""
        self._check_open()
        ql_fetch_or(&self.notify_me, 1)
        ql_smp_mb()
        timeout = self._compute_timeout()
        self._poll_set_started(False, [], 0)  # poll mode is never used under an outer loop
        return timeout

    def source_query(self):
        """The (fd, events) pairs the outer loop must poll for this context."""
        self._check_open()
        if self.epoll_active:
            self.source_nodes = [None]
            return [(self.epfd, POLLIN)]
        with self.list_lock:
            live = [n for n in self.handlers.values() if (<_Handler>n).events]
        self.source_nodes = live
        return [((<_Handler>n).fd, (<_Handler>n).events) for n in live]

    def source_check(self, revents=None):
        """GSource check: close the notify window, accept the notify, record the revents the
        outer loop got for ``source_query()``'s fds (same order), and say if dispatch is due."""
        cdef _Handler node
        cdef int rev
        cdef bint pending = False
        self._check_open()
        ql_fetch_and(&self.notify_me, ~1)
        ql_xchg(&self.notified, 0)  # aio_notify_accept
        nodes = self.source_nodes if self.source_nodes is not None else []
        self.source_nodes = []
        self.source_epoll_ready = False
        if revents is not None:
            if len(revents) != len(nodes):
                raise ValueError(f"revents has {len(revents)} entries; "
                                 f"source_query() gave {len(nodes)}")
            for obj, r in zip(nodes, revents):
                rev = _int_arg(r, "revents[i]")
                if obj is None:
                    self.source_epoll_ready = rev != 0
                    pending = pending or rev != 0
                    continue
                node = <_Handler>obj
                if node.deleted:
                    continue
                if rev & POLLNVAL:
                    self._set_handler(node.fd, None, None, None, None, False)
                    saved, self.errors = self.errors, self.source_errors
                    try:
                        self._report(_closed_fd_error(node.fd))
                    finally:
                        self.source_errors, self.errors = self.errors, saved
                    pending = True
                    continue
                node.revents = rev & node.events
                if (node.revents & READ_EVENTS and node.io_read is not None) or (
                        node.revents & WRITE_EVENTS and node.io_write is not None):
                    pending = True
        if self._bh_timeout() >= 0:
            return True  # a scheduled BH, idle ones included
        if pending:
            return True
        return self._timers_deadline() == 0

    def source_dispatch(self):
        """GSource dispatch (``aio_dispatch``): BHs, then ready fd handlers, then timers."""
        cdef unsigned long me = PyThread_get_thread_ident()
        cdef bint progress = False
        cdef uint64_t gen
        cdef _Handler node
        self._check_open()
        if self.walkers and self.poll_thread != me:
            raise RuntimeError("AioContext dispatched from two threads at once")
        if not self.walkers:
            self.poll_thread = me
        saved = self.errors
        self.errors = self.source_errors
        self.source_errors = None
        try:
            self.walkers += 1
            try:
                progress = self._bh_poll()
                self.ready_gen += 1
                gen = self.ready_gen
                ready = []
                if self.epoll_active:
                    if self.source_epoll_ready:
                        self.source_epoll_ready = False
                        self._wait(ready, 0, gen)
                else:
                    for obj in list(self.handlers.values()):
                        node = <_Handler>obj
                        if node.revents and node.ready_gen != gen:
                            node.ready_gen = gen
                            ready.append(node)
                for obj in ready:
                    node = <_Handler>obj
                    if node.ready_gen != gen:
                        continue
                    node.ready_gen = 0
                    if self._dispatch_node(node):
                        progress = True
            finally:
                self.walkers -= 1
                if self.walkers == 0 and len(self.deleted_handlers):
                    self._free_deleted_handlers()
            if self._run_timers():
                progress = True
        finally:
            errors = self.errors
            self.errors = saved
            if not self.walkers:
                self.poll_thread = 0
        if errors:
            _raise_errors(errors)
        return progress

    # ---- one wait for the main loop's contexts (main_loop_wait): the GSource steps above
    # without their argument checks and per-call lists

    cdef void _ml_open_window(self) noexcept:
        """The main loop's wait may block: from now on a notify must wake it (as
        ``source_prepare``, bit 0 of notify_me)."""
        ql_fetch_or(&self.notify_me, 1)
        ql_smp_mb()

    cdef int64_t _ml_timeout(self) except? -2:
        """The timeout in ns this context allows (poll mode is left: an outer loop never
        busy-polls)."""
        if self.poll_started:
            self._poll_set_started(False, [], 0)
        return self._compute_timeout()

    cdef int _ml_enter(self, unsigned long me) except -1:
        """Enter as a walker for the main loop's wait: the handlers in the pollfd array
        outlive it."""
        if self.walkers and self.poll_thread != me:
            raise RuntimeError("AioContext dispatched from two threads at once")
        self.walkers += 1
        self.poll_thread = me
        return 0

    cdef void _ml_accept(self, bint window) noexcept:
        """An iteration without a wait: close the notify window, accept the notify."""
        if window:
            ql_fetch_and(&self.notify_me, ~1)
        ql_xchg(&self.notified, 0)  # aio_notify_accept

    cdef Py_ssize_t _ml_nfds(self) noexcept:
        """How many pollfds ``_ml_fill`` writes."""
        return 1 if self.epoll_active else self.npollfds

    cdef bint _ml_idle(self) noexcept:
        """Only the context's own notifier is registered (its state is known without a wait)."""
        return self.npollfds <= 1 and not self.epoll_active

    cdef Py_ssize_t _ml_fill(self, pollfd *dst) except -1:
        """Write the fds the main loop waits on for this context (room: ``_ml_nfds()``)."""
        if self.epoll_active:
            dst[0].fd = self.epfd
            dst[0].events = POLLIN
            dst[0].revents = 0
            return 1
        if self.fds_dirty:
            self._rebuild_pollfds()
        memcpy(dst, self.pfds, self.pfds_len * sizeof(pollfd))
        return self.pfds_len

    cdef list _ml_check(self, pollfd *seg, Py_ssize_t n, uint64_t *gen_out, bint window):
        """Close the notify window (if ``window``), accept the notify, collect the handlers
        the wait found ready in ``seg`` (what ``_ml_fill`` wrote, with revents) and leave the
        walker section.  Returns the ready handlers (None: none), their generation in gen_out."""
        cdef Py_ssize_t i
        cdef int rev
        cdef uint64_t gen
        cdef list ready = None
        cdef _Handler node
        if window:
            ql_fetch_and(&self.notify_me, ~1)
        ql_xchg(&self.notified, 0)  # aio_notify_accept
        self.ready_gen += 1
        gen = self.ready_gen
        gen_out[0] = gen
        try:
            if self.epoll_active:
                if n and seg[0].revents:
                    ready = []
                    self._wait_epoll(ready, 0, gen)
            else:
                for i in range(n):
                    rev = seg[i].revents
                    if not rev:
                        continue
                    node = <_Handler>self.pfd_nodes[i]  # alive: walkers > 0 since the fill
                    if node.deleted:
                        continue
                    if rev & POLLNVAL:
                        self._set_handler(node.fd, None, None, None, None, False)
                        self._report(_closed_fd_error(node.fd))
                    elif rev & node.events:
                        if ready is None:
                            ready = []
                        self._add_ready(ready, node, rev & node.events, gen)
        finally:
            self.walkers -= 1
            if self.walkers == 0:
                self.poll_thread = 0
                if len(self.deleted_handlers):
                    self._free_deleted_handlers()
        return ready

    cdef int _ml_dispatch(self, list ready, uint64_t gen, unsigned long me) except -1:
        """``aio_dispatch`` for the main loop: BHs, the ready handlers, then timers."""
        cdef _Handler node
        if self._closed:
            return 0
        if self.walkers and self.poll_thread != me:
            raise RuntimeError("AioContext dispatched from two threads at once")
        self.poll_thread = me
        self.walkers += 1
        try:
            if self.bh_head is not None or self.bh_cur is not None:
                self._bh_poll()
            if ready is not None:
                for obj in ready:
                    node = <_Handler>obj
                    if node.ready_gen != gen:
                        continue
                    node.ready_gen = 0
                    self._dispatch_node(node)
        finally:
            self.walkers -= 1
            if self.walkers == 0 and len(self.deleted_handlers):
                self._free_deleted_handlers()
        if self.tl0.n or self.tl1.n or self.tl2.n or self.tl3.n:
            self._run_timers()
        if not self.walkers:
            self.poll_thread = 0
        return 0

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


# --------------------------------------------------------------------------------------------
# The process-wide main loop, run state and coroutines (docs/main-loop.md,
# docs/run-states.md, docs/coroutines.md), shared Python code
# instantiated over this implementation.

include "_glib_core.pxi"
include "_core_mainloop.pxi"

_main_loop = _mainloop.MainLoop(types.SimpleNamespace(
    AioContext=AioContext,
    BigLock=BigLock,
    MainLoopWait=MainLoopWait,
    glib_poller=_CGLibPoller,
    clock_enable=clock_enable,
    clock_get_ns=clock_get_ns,
    clock_is_manual=clock_is_manual,
    clock_advance_virtual_time=clock_advance_virtual_time,
    virtual_deadline=_virtual_deadline,
))
globals().update(_main_loop.exports())
GLibUnavailable = _glib.GLibUnavailable
__all__.extend(_mainloop.EXPORTS)
__all__.extend(_mainloop.SHARED_EXPORTS)
__all__.append("GLibUnavailable")


# --------------------------------------------------------------------------------------------
# The asyncio event loop (issue 12): its hot base in C, the rest shared Python.

include "_core_loop.pxi"
include "_core_transports.pxi"
include "_core_pipes.pxi"
include "_core_dgram.pxi"

_loop_exports = _eventloop.build_implementation(
    "qloop._core", _LoopBase, Handle, TimerHandle, AioContext, _eventloop_net,
    {
        "_make_socket_transport": _make_stream_transport,
        "_make_read_pipe_transport": _make_read_pipe_transport,
        "_make_write_pipe_transport": _make_write_pipe_transport,
        "_make_datagram_transport": _make_datagram_transport,
    })
globals().update(_loop_exports)
__all__ += list(_loop_exports)


cdef _hide_cython_internals(type t):
    # __pyx_vtable__ is how another module would cimport the type; nothing does, and help()
    # should show the API only
    cdef PyTypeObject_gc *tp = <PyTypeObject_gc *>t
    if tp.tp_dict != NULL:
        (<dict>tp.tp_dict).pop("__pyx_vtable__", None)
        PyType_Modified(tp)


for _t in (AioContext, BH, Timer, EventNotifier, BigLock, MainLoopWait, _TimerList, _Handler,
           _CGLibPoller):
    _hide_cython_internals(_t)
del _t
