# The asyncio event loop's hot base, compiled (included by _core.pyx; the pure-Python twin is
# qloop/_py/loop.py, and the high-level API over it is qloop/_aio/helpers.py).
#
# * Handle/TimerHandle: freelisted cdef classes; a handle runs with PyContext_Enter/Exit and a
#   direct call of its callback (no Context.run call).
# * The ready queue is a C ring buffer of owned Handle references, drained by ONE bottom half of
#   the AioContext: a batch is the handles present when the BH starts.  call_soon allocates the
#   Handle and copies the context first, then pushes in a section that runs no Python code (so
#   the push is atomic with respect to other threads and Python signal handlers); a push onto an
#   empty queue schedules the BH (a C-level enqueue).  Invariant: the queue is non-empty only
#   while the BH is scheduled or running (it re-schedules itself when handles remain).
# * TimerHandles live in a 4-ary C heap keyed by (when_ns, seq) beside the context, with ONE
#   context timer armed at the earliest deadline; the context's timer phase runs every due
#   TimerHandle in deadline order at one clock reading.  A timer already due when it is created
#   waits in ``fresh`` until the BH's next run moves it into the heap, so (as in asyncio) it
#   runs in the next iteration, after the handles queued before it.  For the same reason a
#   timer made in the current iteration of the context that is due by its timer phase goes to
#   ``fresh`` instead of running in it (``_on_timer``).
# * readers/writers: one _FdEntry (a C fd owner) per fd, dispatched by the context without a
#   Python call.

from cpython.contextvars cimport PyContext_CheckExact, PyContext_CopyCurrent
from cpython.float cimport PyFloat_AsDouble
from cpython.tuple cimport PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM
from libc.math cimport isnan

import asyncio as _asyncio
import contextvars as _contextvars
import functools as _functools
import sys as _sys
import weakref as _weakref
from asyncio import events as _aio_events

from qloop._aio import helpers as _helpers


cdef extern from "Python.h":
    bint PyCallable_Check(object o)
    bint PyCFunction_Check(object o)
    void PyObject_GC_Track(PyObject *o)
    void PyObject_GC_UnTrack(PyObject *o)
    int PyObject_GC_IsTracked(PyObject *o)
    PyObject *_vectorcall "PyObject_Vectorcall"(PyObject *callable, PyObject **args,
                                                size_t nargsf, PyObject *kwnames)
    PyObject *_call_tuple "PyObject_Call"(PyObject *callable, PyObject *args, PyObject *kw)
    int _context_enter "PyContext_Enter"(PyObject *ctx)
    int _context_exit "PyContext_Exit"(PyObject *ctx)
    void _decref "Py_DECREF"(PyObject *o)
    Py_ssize_t _refcnt "Py_REFCNT"(PyObject *o)
    ctypedef struct PyTypeObject_flags "PyTypeObject":
        unsigned long tp_flags
    PyTypeObject_flags *Py_TYPE_of "Py_TYPE"(object o)
    enum:
        Py_TPFLAGS_HEAPTYPE

cdef object _get_running_loop = _aio_events._get_running_loop
cdef object _set_running_loop = _aio_events._set_running_loop
cdef object _NOT_ENTERED = object()
cdef object _check_callback_slow = _helpers._check_callback_slow
cdef object _partial = _functools.partial
cdef object _source_traceback = _helpers._source_traceback
cdef object _log_slow_callback = _helpers._log_slow_callback
cdef object _handle_repr = _helpers._handle_repr
cdef object _perf_counter = _helpers._perf_counter
cdef object _time_arg_slow = _helpers._time_arg_slow

cdef enum:
    RING_INITIAL = 64
    TIMER_COMPACT_MIN = 64

cdef class _LoopBase


cdef inline int _check_aio_callback(object cb, str method) except -1:
    """asyncio's callback check (TypeError for a coroutine (function) or a non-callable), with
    the common kinds of callable handled in C."""
    cdef object f = cb
    while type(f) is _partial:
        f = (<object>f).func
    if PyMethod_Check(f):
        f = <object>PyMethod_GET_FUNCTION_raw(f)
    if PyFunction_Check(f):
        if (<PyCodeObject *>PyFunction_GET_CODE_raw(f)).co_flags & CO_COROUTINE:
            _check_callback_slow(cb, method)
        return 0
    if PyCFunction_Check(f):
        return 0  # builtins and bound C methods (Future.set_result, Task.__wakeup)
    if not Py_TYPE_of(f).tp_flags & Py_TPFLAGS_HEAPTYPE and PyCallable_Check(f):
        return 0  # instances of C types (asyncio's task-step wrapper, classes): never
        # coroutine functions; functools.partial is a heap type and takes the slow path
    _check_callback_slow(cb, method)
    return 0


cdef inline int64_t _when_to_ns(double when) except? -1:
    """Seconds (float) to the nearest ns, saturating at the int64 range."""
    cdef double ns
    if isnan(when):
        raise ValueError("the time must be a number, not NaN")
    ns = when * 1e9
    if ns >= 9.2e18:
        return INT64_MAX
    if ns <= -9.2e18:
        return -INT64_MAX
    return <int64_t>(ns + 0.5) if ns >= 0 else -<int64_t>(0.5 - ns)


cdef inline double _time_arg(object value, str what) except? -1.0:
    if type(value) is float or type(value) is int:
        return PyFloat_AsDouble(value)
    return _time_arg_slow(value, what)


# Queued handles, with the args tuple and the context copy they own, are not tracked by the
# cycle collector: the loop holds them (its own traverse visits them) and nothing else can
# reach the tuple or the copy, so a young collection need not walk them.  Untracked objects are
# only ever treated as alive.  A handle leaving the queue is tracked again (with what it owns)
# when something else still holds it, so cycles through it stay collectable.
cdef inline void _untrack_queued(Handle h) noexcept:
    PyObject_GC_UnTrack(<PyObject *>h)
    if PyTuple_GET_SIZE(h._args):
        PyObject_GC_UnTrack(<PyObject *>h._args)
    if h._own_ctx:
        PyObject_GC_UnTrack(<PyObject *>h._context)


cdef inline void _retrack_owned(Handle h) noexcept:
    # before the callback runs: it may drop the handle (and with it its context copy)
    if h._own_ctx and not PyObject_GC_IsTracked(<PyObject *>h._context):
        PyObject_GC_Track(<PyObject *>h._context)


cdef inline void _retrack(PyObject *p, Py_ssize_t ours) noexcept:
    # what the handle owns is tracked again in any case: some types' deallocators require it
    cdef Handle h = <Handle>p
    if h._args is not None and PyTuple_GET_SIZE(h._args) and \
            not PyObject_GC_IsTracked(<PyObject *>h._args):
        PyObject_GC_Track(<PyObject *>h._args)
    if h._own_ctx and not PyObject_GC_IsTracked(<PyObject *>h._context):
        PyObject_GC_Track(<PyObject *>h._context)
    if _refcnt(p) > ours and not PyObject_GC_IsTracked(p):
        PyObject_GC_Track(p)


# --------------------------------------------------------------------------------------------
# Context copies, recycled
#
# Every handle made without ``context=`` runs in its own copy of the caller's context (asyncio's
# semantics).  A copy is an allocation, a GC track and untrack, and a release per callback.  When
# a finished handle's copy is private (only the handle holds it, no weak reference, not entered),
# nobody can tell it from a new object: the batch parks it here, with empty variables, and the
# next handle takes it and gets the caller's variables instead of a new copy.

cdef extern from *:
    object _steal "(PyObject *)"(PyObject *o)  # the caller's reference becomes the result

cdef extern from "qloop_context.h":
    PyObject *ql_context_current()
    PyObject *ql_context_vars(PyObject *ctx)
    bint ql_context_private(PyObject *ctx)
    PyObject *ql_context_swap_vars(PyObject *ctx, PyObject *vars)
    bint ql_context_entered(PyObject *ctx)
    PyObject *ql_context_weakreflist(PyObject *ctx)

cdef object _empty_context = _contextvars.Context()  # owns the empty variables parked copies get
cdef PyObject *_parked_context = NULL  # an owned reference, or NULL


cdef inline object _copy_context(bint queued):
    """``PyContext_CopyCurrent()``, reusing the parked copy when there is one: untracked by the
    cycle collector for a queued handle (as queued copies are), tracked for any other."""
    global _parked_context
    cdef PyObject *ctx = _parked_context
    cdef PyObject *cur
    if ctx != NULL:
        cur = ql_context_current()
        if cur != NULL:
            _parked_context = NULL
            _decref(ql_context_swap_vars(ctx, ql_context_vars(cur)))
            if not queued:
                PyObject_GC_Track(ctx)  # parked copies are untracked
            return _steal(ctx)
    copy = PyContext_CopyCurrent()
    if queued:
        PyObject_GC_UnTrack(<PyObject *>copy)
    return copy


cdef inline void _park_context(Handle h) noexcept:
    """Keep the context copy of ``h`` (finished, held by the caller alone) for the next handle."""
    global _parked_context
    cdef PyObject *ctx = <PyObject *>h._context
    cdef PyObject *old
    if _parked_context != NULL or not _context_recycling or not ql_context_private(ctx):
        return
    old = ql_context_swap_vars(ctx, ql_context_vars(<PyObject *>_empty_context))
    PyObject_GC_UnTrack(ctx)  # out of the collector's sight (gc.get_objects()) while parked
    Py_INCREF(<object>ctx)
    _parked_context = ctx
    h._context = None
    h._own_ctx = False
    _decref(old)  # last: dropping the variables may run any code


cdef bint _context_layout_ok() except -1:
    """Whether Context objects behave as ``qloop_context.h`` lays them out."""
    var = _contextvars.ContextVar("qloop-layout-probe")
    a = _contextvars.Context()
    b = a.copy()
    if ql_context_vars(<PyObject *>a) == NULL or \
            ql_context_vars(<PyObject *>a) != ql_context_vars(<PyObject *>b) or \
            ql_context_entered(<PyObject *>a) or ql_context_weakreflist(<PyObject *>a) != NULL:
        return False
    a.run(var.set, 1)
    if ql_context_vars(<PyObject *>a) == ql_context_vars(<PyObject *>b) or \
            ql_context_entered(<PyObject *>a):
        return False
    if not a.run(_context_probe, a) or ql_context_entered(<PyObject *>a):
        return False
    _decref(ql_context_swap_vars(<PyObject *>b, ql_context_vars(<PyObject *>a)))
    if b.get(var) != 1:
        return False
    w = _weakref.ref(b)
    return ql_context_weakreflist(<PyObject *>b) != NULL and w() is b


def _context_probe(ctx):
    return ql_context_current() == <PyObject *>ctx and ql_context_entered(<PyObject *>ctx)


cdef bint _context_recycling = _context_layout_ok()


def _context_copies_reused():
    """Whether the layout check passed: finished handles' context copies are reused."""
    return _context_recycling


# --------------------------------------------------------------------------------------------
# Handles

@cython.auto_pickle(False)
@cython.freelist(256)
cdef class Handle:
    """A callback scheduled by ``call_soon*`` (asyncio's ``Handle``): ``cancel()``,
    ``cancelled()``, ``get_context()``.  Created by the loop only."""

    cdef object _callback
    cdef object _args              # a tuple
    cdef object _context
    cdef _LoopBase _loop
    cdef bint _cancelled
    cdef object _source_traceback_
    cdef object _repr
    cdef bint _own_ctx              # _context is a copy made for this handle
    # asyncio's handles take weak references.  The freelist is safe with them: the
    # deallocator clears the weak references before it keeps the memory for reuse.
    cdef object __weakref__

    def __init__(self, *args, **kwargs):
        raise TypeError("Handle objects are created by the event loop (call_soon and friends)")

    @staticmethod
    cdef inline Handle _new(_LoopBase loop, object callback, object args, object context):
        cdef Handle h = Handle.__new__(Handle)
        h._loop = loop
        h._callback = callback
        h._args = args
        if context is None:
            context = _copy_context(False)
            h._own_ctx = True
        h._context = context
        return h

    def cancel(self):
        """Cancel the call; a no-op if it already ran or was cancelled."""
        if not self._cancelled:
            self._cancelled = True
            if self._loop is not None and self._loop._debug:
                self._repr = _handle_repr(self)
            self._callback = None
            self._args = None

    def cancelled(self):
        return self._cancelled

    def get_context(self):
        """The ``contextvars.Context`` the callback runs in."""
        return self._context

    def _run(self):
        _run_handle(self)

    @property
    def _callback_(self):
        return self._callback

    @property
    def _source_traceback(self):
        return self._source_traceback_

    def _info(self):
        # (class name, cancelled, callback, args, when) for the shared repr helper
        return (type(self).__name__, self._cancelled, self._callback, self._args, None,
                self._source_traceback_, self._repr)

    def __repr__(self):
        return _handle_repr(self)


@cython.auto_pickle(False)
@cython.final
cdef class TimerHandle(Handle):
    """A callback scheduled by ``call_later``/``call_at`` (asyncio's ``TimerHandle``):
    ``when()`` is the loop time it was scheduled for."""

    cdef double _when
    cdef int64_t _when_ns
    cdef char _where                # 0 nowhere, 1 in the loop's heap, 2 in its fresh list
    cdef unsigned int _gen          # the context iteration it was made in (ready_gen, low bits)

    @staticmethod
    cdef inline TimerHandle _new_timer(_LoopBase loop, double when, int64_t when_ns,
                                       object callback, object args, object context):
        cdef TimerHandle h = TimerHandle.__new__(TimerHandle)
        h._loop = loop
        h._callback = callback
        h._args = args
        if context is None:
            context = _copy_context(False)
            h._own_ctx = True
        h._context = context
        h._when = when
        h._when_ns = when_ns
        return h

    def when(self):
        """The absolute loop time (``loop.time()`` scale) the callback is due at."""
        return self._when

    def cancel(self):
        """Cancel the call; a no-op if it already ran or was cancelled."""
        if not self._cancelled:
            Handle.cancel(self)
            if self._where == 1 and self._loop is not None:
                self._loop._timer_cancelled()

    def _info(self):
        return (type(self).__name__, self._cancelled, self._callback, self._args, self._when,
                self._source_traceback_, self._repr)


# The ready queue's handles, recycled the same way: a finished Handle that only the batch
# holds (no weak reference) is cleared and parked; the next call_soon() fills it in instead of
# allocating one.  It stays untracked by the cycle collector, as queued handles are.

cdef extern from *:
    """
    static inline int ql_has_weakrefs(PyObject *o)
    {
        Py_ssize_t offset = Py_TYPE(o)->tp_weaklistoffset;
        return offset > 0 && *(PyObject **)((char *)o + offset) != NULL;
    }
    """
    bint ql_has_weakrefs(PyObject *o)

cdef PyObject *_parked_handle = NULL  # an owned reference, or NULL


cdef inline Handle _queued_handle(_LoopBase loop, object callback, object args,
                                  object context):
    """``Handle._new()`` for the ready queue, reusing the parked handle when there is one.  The
    handle, its arguments and its own context copy come out untracked (``_untrack_queued``)."""
    global _parked_handle
    cdef Handle h
    if _parked_handle == NULL:
        h = Handle._new(loop, callback, args, context)
        _untrack_queued(h)
        return h
    h = <Handle>_steal(_parked_handle)  # parked handles are untracked
    _parked_handle = NULL
    h._loop = loop
    h._callback = callback
    h._args = args
    if PyTuple_GET_SIZE(args):
        PyObject_GC_UnTrack(<PyObject *>args)
    if context is None:
        context = _copy_context(True)
        h._own_ctx = True
    h._context = context
    return h


cdef inline void _park_handle(Handle h) noexcept:
    """Clear ``h`` (finished, held by the caller alone, untracked) and keep it for reuse."""
    global _parked_handle
    if _parked_handle != NULL or type(h) is not Handle or \
            ql_has_weakrefs(<PyObject *>h) or h._source_traceback_ is not None:
        return
    h._own_ctx = False
    h._cancelled = False
    h._repr = None
    h._loop = None
    h._context = None  # each release may run any code: the handle is parked after them
    h._args = None
    h._callback = None
    if _parked_handle == NULL and _refcnt(<PyObject *>h) == 1:
        Py_INCREF(h)
        _parked_handle = <PyObject *>h


cdef int _run_handle(Handle h) except -1:
    """Run ``h``'s callback in its context.  Exceptions go to the loop's exception handler;
    SystemExit and KeyboardInterrupt propagate (as in asyncio)."""
    # own references to what the callback may drop by cancelling its handle (the context
    # stays: cancel() leaves it, and the caller holds the handle)
    cdef PyObject *ctx = <PyObject *>h._context
    cdef object cb = h._callback
    cdef object args = h._args
    cdef PyObject *r
    if cb is None:
        return 0  # cancelled
    if h._loop._debug:
        return _run_handle_debug(h)
    if _context_enter(ctx) < 0:
        return _handle_failed(h)  # e.g. the context is already entered
    if PyTuple_GET_SIZE(args) == 0:
        r = _vectorcall(<PyObject *>cb, NULL, 0, NULL)
    else:
        r = _call_tuple(<PyObject *>cb, <PyObject *>args, NULL)
    if r == NULL:
        _context_exit(ctx)  # cannot fail: the callback left it entered
        return _handle_failed(h)
    _decref(r)
    if _context_exit(ctx) < 0:
        return _handle_failed(h)
    return 0


cdef int _raise_pending() except -1:
    return -1  # an exception is set: let Cython's except clauses see it


cdef int _handle_failed(Handle h) except -1:
    try:
        _raise_pending()
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        h._loop._callback_failed(h, exc)
    return 0


cdef int _run_handle_debug(Handle h) except -1:
    cdef _LoopBase loop = h._loop
    saved = loop._current_handle
    loop._current_handle = h
    t0 = _perf_counter()
    try:
        try:
            h._context.run(h._callback, *h._args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            loop._callback_failed(h, exc)
    finally:
        loop._current_handle = saved
        dt = _perf_counter() - t0
        if dt >= loop._slow_callback_s:
            _log_slow_callback(h, dt)
    return 0


# --------------------------------------------------------------------------------------------
# readers and writers

@cython.auto_pickle(False)
@cython.final
cdef class _FdEntry(_FdOwner):
    """The add_reader/add_writer handles of one fd: the context's C-level handler for it."""

    cdef _LoopBase loop
    cdef int fd
    cdef Handle reader
    cdef Handle writer

    cdef int _on_read(self) except -1:
        cdef Handle h = self.reader
        if h is None:
            return 0
        # a C flag (the fallback's Handle has none: it tests for a dropped callback)
        if h._cancelled:
            self.loop._remove_fd_handle(self.fd, True)
            return 0
        return self.loop._run_one(h)

    cdef int _on_write(self) except -1:
        cdef Handle h = self.writer
        if h is None:
            return 0
        if h._cancelled:
            self.loop._remove_fd_handle(self.fd, False)
            return 0
        return self.loop._run_one(h)


# --------------------------------------------------------------------------------------------
# The loop's hot base

@cython.auto_pickle(False)
cdef class _LoopBase:
    """State and hot paths of ``qloop._core.EventLoop`` (see ``qloop._aio.api``)."""

    cdef AioContext _ctx
    cdef bint _owns_ctx
    cdef BH _bh
    cdef Timer _ctx_timer
    cdef int _clock                 # the qloop clock of loop.time() and the timers
    cdef int64_t _offset            # loop time minus _clock's time, ns (virtual time: start)
    cdef bint _vt                   # a virtual-time loop (qloop/_aio/virtual_time.py)
    cdef bint _vt_fast              # idle: jump straight to the next virtual deadline
    cdef bint _vt_pending           # an advance is pending: _vt_step at each iteration
    # the ready queue: a ring of owned Handle references
    cdef PyObject **_ring
    cdef Py_ssize_t _rhead
    cdef Py_ssize_t _rlen
    cdef Py_ssize_t _rmask
    # the timer heap: (when_ns, seq, TimerHandle) entries, 4-ary, owned references
    cdef TimerEntry *_theap
    cdef Py_ssize_t _tn
    cdef Py_ssize_t _tcap
    cdef Py_ssize_t _tdead          # cancelled entries still in the heap
    cdef uint64_t _tseq
    cdef int64_t _armed             # when_ns the context timer is armed at, -1 if not
    cdef list _fresh                # TimerHandles already due when created
    cdef dict _fds                  # fd -> _FdEntry
    cdef bint _closed_flag
    cdef bint _stopping
    cdef bint _running              # inside run_forever
    cdef int _ext_depth             # callbacks running while something else drives ctx
    cdef unsigned long _thread_ident
    cdef bint _debug
    cdef double _slow_callback_s
    cdef public object _current_handle

    def __cinit__(self, *args, **kwargs):
        self._ring = <PyObject **>PyMem_Malloc(RING_INITIAL * sizeof(PyObject *))
        if self._ring == NULL:
            raise MemoryError()
        self._rmask = RING_INITIAL - 1
        self._armed = -1
        self._closed_flag = True  # until __init__ completes
        self._slow_callback_s = 0.1

    def __init__(self, ctx=None):
        if self._ctx is not None:
            raise RuntimeError("the event loop is already initialised")
        if ctx is None:
            ctx = AioContext()
            self._owns_ctx = True
        elif not isinstance(ctx, AioContext):
            raise TypeError(f"ctx must be a qloop._core.AioContext, not {type(ctx).__name__}")
        elif (<AioContext>ctx).closed:
            raise RuntimeError("ctx is closed")
        self._ctx = <AioContext>ctx
        self._fresh = []
        self._fds = {}
        self._clock = 0  # REALTIME: CLOCK_MONOTONIC, like time.monotonic()
        self._bh = BH._new(self._ctx, self._run_ready, "asyncio ready queue")
        self._ctx_timer = Timer._new(self._ctx.tl0, SCALE_NS, self._on_timer, 0)
        self._closed_flag = False

    def __dealloc__(self):
        self._clear_queues()
        PyMem_Free(self._ring)
        PyMem_Free(self._theap)

    # ---- state

    @property
    def slow_callback_duration(self):
        """Seconds after which debug mode logs a callback as slow (default 0.1)."""
        return self._slow_callback_s

    @slow_callback_duration.setter
    def slow_callback_duration(self, value):
        self._slow_callback_s = value

    @property
    def aio_context(self):
        """The AioContext this loop runs on (its own, or the ``ctx`` it was created with)."""
        return self._ctx

    cdef inline int64_t _now_ns(self) noexcept:
        return _clock_now(self._clock) + self._offset

    cdef inline int64_t _clock_key(self, int64_t key) noexcept:
        """A loop-time deadline (ns) on the context timer's clock (saturating)."""
        cdef int64_t off = self._offset
        if off == 0:
            return key
        if off < 0 and key > INT64_MAX + off:
            return INT64_MAX
        if off > 0 and key < -INT64_MAX + off:
            return -INT64_MAX
        return key - off

    def time(self):
        """The loop's clock in seconds: CLOCK_MONOTONIC, the same as ``time.monotonic()``
        (a virtual-time loop: its virtual time, see docs/virtual-time.md)."""
        return <double>self._now_ns() / 1e9

    def is_running(self):
        """True inside ``run_forever()``, and while one of the loop's callbacks runs when
        something else (``qloop.main_loop()``, ``ctx.poll()``) drives its context."""
        return self._running or self._ext_depth > 0

    def is_closed(self):
        """True once ``close()`` was called."""
        return self._closed_flag

    @property
    def _closed(self):
        """asyncio's loops keep this attribute, and other libraries read it: ``is_closed()``,
        read-only."""
        return self._closed_flag

    def get_debug(self):
        """Whether debug mode is on."""
        return self._debug

    def _set_debug_flag(self, enabled):
        self._debug = bool(enabled)

    def stop(self):
        """Stop ``run_forever()`` after the current iteration (before it starts, after one)."""
        self._stopping = True

    def _is_stopping(self):
        return self._stopping

    cdef inline int _check_closed(self) except -1:
        if self._closed_flag:
            raise RuntimeError("Event loop is closed")
        if self._ctx._closed:
            raise RuntimeError("the event loop's AioContext is closed")
        return 0

    def _check_closed_py(self):
        self._check_closed()

    @property
    def _ready(self):
        """The handles waiting in the ready queue, oldest first: a snapshot, for code that
        polls asyncio loops' ``_ready`` queue to see whether callbacks are pending (CPython's
        gather tests do).  Not public API."""
        cdef Py_ssize_t i
        return tuple([<object>self._ring[(self._rhead + i) & self._rmask]
                      for i in range(self._rlen)])

    cdef int _check_thread(self) except -1:
        if (self._running or self._ext_depth) and \
                self._thread_ident != PyThread_get_thread_ident():
            raise RuntimeError("Non-thread-safe operation invoked on an event loop other "
                               "than the current one")
        return 0

    def _check_thread_py(self):
        self._check_thread()

    def _thread_id(self):
        """The thread running the loop, or None."""
        if self._running or self._ext_depth:
            return self._thread_ident
        return None

    # ---- entering the loop from outside (qloop.main_loop(), a bare ctx.poll())

    cdef inline object _enter(self):
        """Make this loop the running one while its callbacks run, unless it already is."""
        if self._running:
            return _NOT_ENTERED
        prev = _get_running_loop()
        if prev is self:
            return _NOT_ENTERED
        _set_running_loop(self)
        if self._ext_depth == 0:
            self._thread_ident = PyThread_get_thread_ident()
        self._ext_depth += 1
        return prev

    cdef inline int _leave(self, object prev) except -1:
        if prev is not _NOT_ENTERED:
            self._ext_depth -= 1
            _set_running_loop(prev)
        return 0

    cdef int _run_one(self, Handle h) except -1:
        prev = self._enter()
        try:
            _run_handle(h)
        finally:
            self._leave(prev)
        return 0

    def _callback_failed(self, Handle h, exc):
        """What a handle's exception becomes: a call of the exception handler."""
        context = {
            "message": f"Exception in callback {_helpers._format_callback(h)}",
            "exception": exc,
            "handle": h,
        }
        if h._source_traceback_:
            context["source_traceback"] = h._source_traceback_
        self.call_exception_handler(context)

    # ---- the ready queue

    cdef int _grow_ring(self) except -1:
        cdef Py_ssize_t cap = self._rmask + 1, i
        cdef PyObject **mem = <PyObject **>PyMem_Malloc(2 * cap * sizeof(PyObject *))
        if mem == NULL:
            raise MemoryError()
        for i in range(self._rlen):
            mem[i] = self._ring[(self._rhead + i) & self._rmask]
        PyMem_Free(self._ring)
        self._ring = mem
        self._rhead = 0
        self._rmask = 2 * cap - 1
        return 0

    cdef inline int _push(self, Handle h) except -1:
        # No Python code runs from here to the end: atomic under the GIL.
        if self._rlen > self._rmask:  # _call_soon made room, but a finalizer may have used it
            self._grow_ring_holding(h)
        self._ring[(self._rhead + self._rlen) & self._rmask] = <PyObject *>h
        Py_INCREF(h)
        self._rlen += 1
        if self._rlen == 1:
            self._ctx._bh_enqueue(self._bh, BH_SCHEDULED)
        return 0

    cdef int _grow_ring_holding(self, Handle h) except -1:
        try:
            self._grow_ring()
        except BaseException:
            _retrack(<PyObject *>h, 0)  # h is dropped: its context copy must be tracked
            raise
        return 0

    cdef inline Handle _call_soon(self, object callback, object args, object context,
                                  str method):
        cdef Handle h
        self._check_closed()
        _check_aio_callback(callback, method)
        if context is not None and not PyContext_CheckExact(context):
            raise TypeError(f"context must be a contextvars.Context, "
                            f"not {type(context).__name__}")
        if self._debug or self._rlen > self._rmask:
            return self._call_soon_slow(callback, args, context)
        h = _queued_handle(self, callback, args, context)
        self._push(h)
        return h

    cdef Handle _call_soon_slow(self, object callback, object args, object context):
        # The traceback and the ring's room first: nothing may raise between making the handle
        # (untracked, with its context copy) and queueing it, or the copy's deallocator would
        # crash (it needs the copy tracked).
        tb = _source_traceback() if self._debug else None
        if self._rlen > self._rmask:
            self._grow_ring()
        h = _queued_handle(self, callback, args, context)
        if tb is not None:
            h._source_traceback_ = tb
        self._push(h)
        return h

    # call_soon() and call_soon_threadsafe() are C methods installed below the class
    # (_install_fastcall_methods) over _call_soon().

    def _run_ready(self):
        """The ready-queue BH: run the handles queued when it starts."""
        self._run_batch()

    @cython.final
    cdef int _run_batch(self) except -1:
        cdef Py_ssize_t n
        cdef PyObject *ptr
        cdef PyObject *running = NULL  # the handle whose callback is running
        cdef Handle h
        if self._fresh:
            self._absorb_fresh()
        n = self._rlen
        if n == 0:
            return 0
        prev = self._enter()
        try:
            while n > 0:
                n -= 1
                ptr = self._ring[self._rhead]
                self._rhead = (self._rhead + 1) & self._rmask
                self._rlen -= 1
                h = <Handle>ptr
                Py_DECREF(h)  # the ring's reference (h holds one)
                if not h._cancelled:
                    running = ptr
                    _run_handle(h)
                    running = NULL
                if _refcnt(ptr) == 1 and _parked_handle == NULL:  # nobody else holds it: recycle
                    if h._own_ctx:
                        _park_context(h)
                    _retrack(ptr, 1)
                    _park_handle(h)
                else:
                    _retrack(ptr, 1)
        finally:
            if running != NULL:  # a callback raised SystemExit or KeyboardInterrupt
                _retrack(running, 1)
            # queued beyond this batch: run them at the next pass, unless the BH is still
            # scheduled (the batch ran without it, or a callback's call_soon scheduled it)
            if self._rlen and not self._closed_flag and \
                    not ql_load(&self._bh.flags) & BH_SCHEDULED:
                self._ctx._bh_enqueue(self._bh, BH_SCHEDULED)
            if prev is not _NOT_ENTERED:
                self._leave(prev)
        return 0

    # ---- timers

    cdef inline int _heap_push(self, TimerHandle h) except -1:
        cdef Py_ssize_t i, parent, newcap
        cdef TimerEntry e
        cdef TimerEntry *mem
        if self._tn == self._tcap:
            newcap = self._tcap * 2 if self._tcap else 64
            mem = <TimerEntry *>PyMem_Realloc(self._theap, newcap * sizeof(TimerEntry))
            if mem == NULL:
                raise MemoryError()
            self._theap = mem
            self._tcap = newcap
        self._tseq += 1
        e.key = h._when_ns
        e.seq = self._tseq
        e.timer = <void *>h
        Py_INCREF(h)
        _untrack_queued(h)
        h._where = 1
        i = self._tn
        self._tn += 1
        while i > 0:
            parent = (i - 1) >> 2
            if not _entry_less(&e, &self._theap[parent]):
                break
            self._theap[i] = self._theap[parent]
            i = parent
        self._theap[i] = e
        return 0

    cdef inline void _heap_pop(self) noexcept:
        """Remove the top entry; its reference passes to the caller."""
        cdef Py_ssize_t n
        self._tn -= 1
        n = self._tn
        if n > 0:
            _sift_down(self._theap, n, 0, self._theap[n])

    cdef void _drop_cancelled_top(self) noexcept:
        cdef TimerHandle h
        while self._tn and (<TimerHandle>self._theap[0].timer)._cancelled:
            h = <TimerHandle>self._theap[0].timer
            self._heap_pop()
            self._tdead -= 1
            h._where = 0
            _retrack(<PyObject *>h, 2)
            Py_DECREF(h)

    cdef int _arm(self) except -1:
        """Arm the context timer at the earliest live deadline (or disarm it)."""
        cdef int64_t key
        self._drop_cancelled_top()
        if self._tn == 0:
            if self._armed >= 0:
                self._armed = -1
                self._ctx_timer.tl.remove(self._ctx_timer)
            return 0
        key = self._theap[0].key
        if key < 0:
            key = 0
        if key != self._armed or not self._ctx_timer.seq:
            self._armed = key
            self._ctx_timer.tl.insert(self._ctx_timer, self._clock_key(key))
        return 0

    cdef void _timer_cancelled(self) noexcept:
        self._tdead += 1
        if self._tdead > TIMER_COMPACT_MIN and self._tdead * 2 > self._tn:
            self._compact_timers()

    def _timer_handle_cancelled(self, handle):
        pass  # asyncio's hook; qloop's TimerHandle reports through _timer_cancelled

    cdef void _compact_timers(self) noexcept:
        cdef Py_ssize_t i, j = 0, nstale
        cdef TimerEntry e
        for i in range(self._tn):
            if not (<TimerHandle>self._theap[i].timer)._cancelled:
                if i != j:
                    e = self._theap[j]
                    self._theap[j] = self._theap[i]
                    self._theap[i] = e
                j += 1
        nstale = self._tn - j
        self._tn = j
        self._tdead = 0
        i = (self._tn - 2) // 4
        while i >= 0:
            _sift_down(self._theap, self._tn, i, self._theap[i])
            i -= 1
        for i in range(nstale):
            (<TimerHandle>self._theap[self._tn + i].timer)._where = 0
            _retrack(<PyObject *>self._theap[self._tn + i].timer, 1)
        _decref_entries(self._theap + self._tn, nstale, False)

    cdef TimerHandle _call_at(self, double when, int64_t when_ns, int64_t now_ns,
                              object callback, object args, object context, str method):
        cdef TimerHandle h
        self._check_closed()
        _check_aio_callback(callback, method)
        if context is not None and not PyContext_CheckExact(context):
            raise TypeError(f"context must be a contextvars.Context, "
                            f"not {type(context).__name__}")
        h = TimerHandle._new_timer(self, when, when_ns, callback, args, context)
        h._gen = <unsigned int>self._ctx.ready_gen
        if self._debug:
            h._source_traceback_ = _source_traceback()
        if when_ns <= now_ns:
            # already due: runs in the next iteration, after what is queued now (asyncio)
            h._where = 2
            self._fresh.append(h)
            self._ctx._bh_enqueue(self._bh, BH_SCHEDULED)
            return h
        self._heap_push(h)
        if self._theap[0].timer == <void *>h and (
                self._armed < 0 or when_ns < self._armed or not self._ctx_timer.seq):
            self._armed = when_ns
            self._ctx_timer.tl.insert(self._ctx_timer, self._clock_key(when_ns))
        return h

    def call_later(self, delay, callback, *args, context=None):
        """Call ``callback(*args)`` at ``self.time() + delay``; returns a TimerHandle."""
        cdef double d = _time_arg(delay, "delay")
        cdef int64_t now = self._now_ns()
        cdef double when = <double>now / 1e9 + d
        if self._debug:
            self._check_thread()
        return self._call_at(when, now if d <= 0 else _when_to_ns(when), now, callback, args,
                             context, "call_at")

    def call_at(self, when, callback, *args, context=None):
        """Call ``callback(*args)`` at loop time ``when``; returns a TimerHandle."""
        cdef double w = _time_arg(when, "when")
        if self._debug:
            self._check_thread()
        return self._call_at(w, _when_to_ns(w), self._now_ns(), callback, args,
                             context, "call_at")

    cdef int _absorb_fresh(self) except -1:
        cdef TimerHandle h
        fresh = self._fresh
        self._fresh = []
        for obj in fresh:
            h = <TimerHandle>obj
            h._where = 0
            if h._cancelled:
                continue
            self._heap_push(h)
        self._arm()
        return 0

    cdef int _defer_due(self, int64_t now, unsigned int gen) except -1:
        """Move every TimerHandle due at ``now`` from the heap to ``fresh``, in deadline order:
        the BH's next run puts them back, and they run in the next iteration, after the handles
        queued in this one.  Marked as made before ``gen``, they are not deferred twice (even
        by a driver that does not count its iterations)."""
        cdef TimerHandle h
        while self._tn and self._theap[0].key <= now:
            h = <TimerHandle>self._theap[0].timer
            self._heap_pop()
            if h._cancelled:
                self._tdead -= 1
                h._where = 0
                _retrack(<PyObject *>h, 2)
            else:
                h._where = 2
                h._gen = gen - 1
                self._fresh.append(h)
                _retrack(<PyObject *>h, 0)
            Py_DECREF(h)  # the heap's reference
        self._ctx._bh_enqueue(self._bh, BH_SCHEDULED)
        return 0

    def _on_timer(self):
        """The context timer: run every TimerHandle due at one reading of the clock.

        As in asyncio, a timer made in this iteration of the context runs in the next one
        (after the handles queued in this one): when the first due timer is one, it and the
        due timers after it wait in ``fresh`` (docs/decisions.md)."""
        cdef int64_t now = self._now_ns()
        cdef unsigned int gen = <unsigned int>self._ctx.ready_gen
        cdef TimerHandle h
        self._armed = -1
        prev = self._enter()
        try:
            while self._tn:
                h = <TimerHandle>self._theap[0].timer
                if h._cancelled:
                    self._heap_pop()
                    self._tdead -= 1
                    h._where = 0
                    _retrack(<PyObject *>h, 2)
                    Py_DECREF(h)
                    continue
                if self._theap[0].key > now:
                    break
                if h._gen == gen:
                    self._defer_due(now, gen)
                    break
                self._heap_pop()
                Py_DECREF(h)  # the heap's reference (h holds one)
                h._where = 0
                _retrack_owned(h)
                _run_handle(h)
                _retrack(<PyObject *>h, 1)
        finally:
            if not self._closed_flag:
                self._arm()
            self._leave(prev)

    def _timers_pending(self):
        """(heap entries, cancelled ones, fresh ones): for tests and debugging."""
        return (self._tn, self._tdead, len(self._fresh))

    # ---- readers and writers

    cdef int _update_fd(self, int fd, _FdEntry entry) except -1:
        if entry.reader is None and entry.writer is None:
            del self._fds[fd]
            self._ctx._set_fd_owner(fd, None, False, False)
        else:
            self._ctx._set_fd_owner(fd, entry, entry.reader is not None,
                                    entry.writer is not None)
        return 0

    cdef Handle _add_fd_handle(self, int fd, bint reader, object callback, object args,
                               str method):
        cdef _FdEntry entry
        cdef Handle h, old
        self._check_closed()
        _check_aio_callback(callback, method)
        h = Handle._new(self, callback, args, None)
        obj = self._fds.get(fd)
        if obj is None:
            entry = _FdEntry.__new__(_FdEntry)
            entry.loop = self
            entry.fd = fd
            self._fds[fd] = entry
        else:
            entry = <_FdEntry>obj
        if reader:
            old = entry.reader
            entry.reader = h
        else:
            old = entry.writer
            entry.writer = h
        try:
            if old is None:
                self._update_fd(fd, entry)
        except BaseException:
            if reader:
                entry.reader = None
            else:
                entry.writer = None
            if entry.reader is None and entry.writer is None:
                self._fds.pop(fd, None)
            raise
        if old is not None:
            old.cancel()
        return h

    cdef bint _remove_fd_handle(self, int fd, bint reader) except -1:
        cdef _FdEntry entry
        cdef Handle old
        obj = self._fds.get(fd)
        if obj is None:
            return False
        entry = <_FdEntry>obj
        if reader:
            old = entry.reader
            entry.reader = None
        else:
            old = entry.writer
            entry.writer = None
        if old is None:
            return False
        if not self._ctx._closed:
            self._update_fd(fd, entry)
        else:
            del self._fds[fd]
        old.cancel()
        return True

    def _add_reader(self, int fd, callback, args):
        """add_reader() after its fd checks; returns the Handle."""
        return self._add_fd_handle(fd, True, callback, args, "add_reader")

    def _add_writer(self, int fd, callback, args):
        return self._add_fd_handle(fd, False, callback, args, "add_writer")

    def _remove_reader(self, int fd):
        return self._remove_fd_handle(fd, True)

    def _remove_writer(self, int fd):
        return self._remove_fd_handle(fd, False)

    def _fd_handles(self, int fd):
        """(reader, writer) Handles registered for ``fd`` (None where there is none)."""
        obj = self._fds.get(fd)
        if obj is None:
            return (None, None)
        return ((<_FdEntry>obj).reader, (<_FdEntry>obj).writer)

    # ---- running

    def _run_loop(self):
        """The body of ``run_forever()``: one ``ctx.poll()`` per iteration until stopped."""
        cdef AioContext ctx = self._ctx
        cdef unsigned long me = PyThread_get_thread_ident()
        cdef unsigned batches = 0
        if ctx.walkers and ctx.poll_thread != me:
            raise RuntimeError("the event loop's AioContext is being driven by another thread")
        self._thread_ident = me
        self._running = True
        try:
            while True:
                if self._vt:
                    self._vt_iteration()
                else:
                    ctx._poll(not self._stopping)
                # While nothing else is registered on the context, the next iterations
                # would only run the next ready batches: run them without the poll
                # machinery (no fd to poll, no other BH, no timer due in between).
                # (Not while a virtual-time advance is pending: each iteration steps toward it.)
                # (Nor while a timer waits in fresh: it runs after the next batch, before
                # what that batch queues, in an iteration of the context.)
                while self._rlen and not self._fresh and not self._stopping and \
                        not self._vt_pending and ctx._only_bh_pending(self._bh):
                    # Callbacks in C only would never run the Python signal handlers: run
                    # them every 16 batches (a Python callback's bytecode runs them anyway).
                    batches += 1
                    if not batches & 15:
                        PyErr_CheckSignals()
                    self._run_batch()
                if self._stopping:
                    break
        finally:
            self._running = False
            self._stopping = False

    # ---- virtual time: the hooks of qloop/_aio/virtual_time.py (docs/virtual-time.md)

    cdef int _vt_iteration(self) except -1:
        """One iteration of a virtual-time loop: a zero-timeout poll; when it finds nothing
        to do, jump to the next virtual deadline (or let ``_vt_idle`` decide)."""
        cdef AioContext ctx = self._ctx
        cdef int64_t dest
        if self._vt_pending:
            self._vt_step()  # an advance is pending: move toward it, busy or not
        if ctx._poll(False) or self._stopping:
            return 0
        if self._rlen or self._fresh or ctx._compute_timeout() == 0:
            return 0  # queued meanwhile (another thread), or a BH/timer is due
        if self._vt_fast and _manual and _clock_enabled[1]:
            dest = _soonest(ctx.tl1.head_expire(), ctx.tl3.head_expire())
            if dest >= 0:
                _virtual_jump(ctx, dest)
                return 0
        self._vt_idle()
        return 0

    def _set_virtual_clock(self, int64_t offset):
        """Run on the VIRTUAL clock from now on, loop time = VIRTUAL + ``offset`` ns (called
        once, before any timer is scheduled)."""
        if self._tn or self._fresh:
            raise RuntimeError("the loop's clock cannot change once timers are scheduled")
        self._ctx_timer = Timer._new(self._ctx.tl1, SCALE_NS, self._on_timer, 0)
        self._clock = 1
        self._offset = offset
        self._vt = True
        self._vt_fast = True

    def _vt_set_fast(self, bint fast):
        self._vt_fast = fast

    def _vt_set_pending(self, bint pending):
        self._vt_pending = pending

    def _vt_next_deadline(self):
        """The clock ns of the context's next VIRTUAL/VIRTUAL_RT deadline, or -1; a timer of
        the loop's that was already due when it was made counts as due now."""
        cdef AioContext ctx = self._ctx
        if self._fresh:
            return self._now_ns() - self._offset
        return _soonest(ctx.tl1.head_expire(), ctx.tl3.head_expire())

    def _vt_now_ns(self):
        """The loop time in ns."""
        return self._now_ns()

    def _vt_offset_ns(self):
        return self._offset

    def _vt_jump(self, int64_t dest):
        """Move the manual VIRTUAL clock forward to ``dest`` (ns on the clock, not loop time)."""
        _virtual_jump(self._ctx, dest)

    def _vt_busy(self):
        """Whether an iteration now would run something (a ready handle, a BH, a due timer)."""
        return bool(self._rlen or self._fresh or self._ctx._compute_timeout() == 0)

    def _vt_loop_fds(self):
        """The fds with an add_reader/add_writer handle of this loop."""
        return tuple(self._fds)

    def _vt_probe(self):
        """(next VIRTUAL/VIRTUAL_RT deadline of the context in clock ns or -1, whether a
        REALTIME/HOST timer is armed on it, the fds with a handler besides its notifier)."""
        cdef AioContext ctx = self._ctx
        cdef _Handler node
        fds = []
        with ctx.list_lock:
            for obj in ctx.handlers.values():
                node = <_Handler>obj
                if not node.is_notifier:
                    fds.append(node.fd)
        return (_soonest(ctx.tl1.head_expire(), ctx.tl3.head_expire()),
                ctx.tl0.head_expire() >= 0 or ctx.tl2.head_expire() >= 0, tuple(fds))

    # ---- closing

    cdef void _clear_queues(self) noexcept:
        # detach first: dropping a reference may run Python code
        cdef PyObject **ring = self._ring
        cdef Py_ssize_t head = self._rhead, n = self._rlen, mask = self._rmask, i
        cdef TimerEntry *heap = self._theap
        cdef Py_ssize_t tn = self._tn
        self._rlen = 0
        self._rhead = 0
        self._theap = NULL
        self._tn = self._tcap = self._tdead = 0
        for i in range(tn):
            (<TimerHandle>heap[i].timer)._where = 0
            _retrack(<PyObject *>heap[i].timer, 1)
        for i in range(n):
            _retrack(ring[(head + i) & mask], 1)
        for i in range(n):
            Py_DECREF(<object>ring[(head + i) & mask])
        _decref_entries(heap, tn, False)
        PyMem_Free(heap)

    def _close_base(self):
        """Drop queued handles and timers and release the context's BH, timer and fd handlers
        (closing the context when the loop owns it)."""
        cdef AioContext ctx = self._ctx
        self._closed_flag = True
        self._clear_queues()
        fresh, self._fresh = self._fresh, []
        for h in fresh:
            (<TimerHandle>h)._where = 0
        fds, self._fds = self._fds, {}
        if ctx is None:
            return
        if self._owns_ctx:
            if not ctx._closed:
                ctx.close()
            return
        if not ctx._closed:
            self._bh.delete()
            self._ctx_timer.tl.remove(self._ctx_timer)
            for fd in fds:
                ctx._set_fd_owner(fd, None, False, False)

    def _owns_context(self):
        return self._owns_ctx

    # ---- futures (hot: asyncio's C Future calls get_debug() when it is created)

    def create_future(self):
        """A new ``asyncio.Future`` attached to this loop."""
        return _Future(loop=self)


cdef object _Future = _asyncio.Future


# --------------------------------------------------------------------------------------------
# call_soon as a METH_FASTCALL|METH_KEYWORDS C method: asyncio's C Task and Future call
# loop.call_soon(cb, arg, context=ctx) by keyword for every step and every callback, and
# Cython's generic keyword parsing is a fair share of that call's cost.

cdef extern from "Python.h":
    ctypedef struct PyMethodDef_raw "PyMethodDef":
        const char *ml_name
        void *ml_meth
        int ml_flags
        const char *ml_doc
    enum:
        METH_FASTCALL
        METH_KEYWORDS
    ctypedef struct PyTypeObject_dict "PyTypeObject":
        PyObject *tp_dict
    object PyDescr_NewMethod(PyTypeObject_dict *type, PyMethodDef_raw *meth)
    void _type_modified "PyType_Modified"(PyTypeObject_dict *type)

cdef str _CONTEXT_KW = "context"
# The last kwnames tuple that was exactly ("context",): asyncio's C Task and Future pass one
# tuple of their own, built once, on every call, so after the first call a pointer compare
# stands for the string compare.
cdef object _context_only_kwnames = None


cdef object _fast_call_soon(object self, PyObject **args, Py_ssize_t nargs,
                            PyObject *kwnames, str method):
    global _context_only_kwnames
    cdef _LoopBase loop = <_LoopBase>self
    cdef Py_ssize_t i, nkw = 0
    cdef object context = None
    if kwnames != NULL:
        if <object>kwnames is _context_only_kwnames:
            context = <object>args[nargs]
        else:
            nkw = PyTuple_GET_SIZE(<object>kwnames)
            for i in range(nkw):
                name = (<tuple>kwnames)[i]
                if name is _CONTEXT_KW or name == _CONTEXT_KW:
                    context = <object>args[nargs + i]
                else:
                    raise TypeError(
                        f"{method}() got an unexpected keyword argument '{name}'")
            if nkw == 1:
                _context_only_kwnames = <object>kwnames
    if nargs < 1:
        raise TypeError(f"{method}() missing 1 required positional argument: 'callback'")
    cbargs = PyTuple_New(nargs - 1) if nargs > 1 else ()
    for i in range(1, nargs):
        item = <object>args[i]
        Py_INCREF(item)
        PyTuple_SET_ITEM(cbargs, i - 1, item)
    if method is _CALL_SOON and loop._debug:
        loop._check_thread()
    return loop._call_soon(<object>args[0], cbargs, context, method)


cdef str _CALL_SOON = "call_soon"
cdef str _CALL_SOON_THREADSAFE = "call_soon_threadsafe"


cdef object _call_soon_fastcall(object self, PyObject **args, Py_ssize_t nargs,
                                PyObject *kwnames):
    if nargs == 1 and kwnames == NULL and not (<_LoopBase>self)._debug:
        # call_soon(callback): no arguments to pack, no keywords, no thread check
        return (<_LoopBase>self)._call_soon(<object>args[0], (), None, _CALL_SOON)
    return _fast_call_soon(self, args, nargs, kwnames, _CALL_SOON)


cdef object _call_soon_threadsafe_fastcall(object self, PyObject **args, Py_ssize_t nargs,
                                           PyObject *kwnames):
    if nargs == 1 and kwnames == NULL:
        return (<_LoopBase>self)._call_soon(<object>args[0], (), None, _CALL_SOON_THREADSAFE)
    return _fast_call_soon(self, args, nargs, kwnames, _CALL_SOON_THREADSAFE)


cdef PyMethodDef_raw _call_soon_def
_call_soon_def.ml_name = "call_soon"
_call_soon_def.ml_meth = <void *>_call_soon_fastcall
_call_soon_def.ml_flags = METH_FASTCALL | METH_KEYWORDS
_call_soon_def.ml_doc = ("call_soon($self, callback, /, *args, context=None)\n--\n\n"
                         "Call ``callback(*args)`` in the next iteration (FIFO); returns a "
                         "Handle.")
cdef PyMethodDef_raw _call_soon_threadsafe_def
_call_soon_threadsafe_def.ml_name = "call_soon_threadsafe"
_call_soon_threadsafe_def.ml_meth = <void *>_call_soon_threadsafe_fastcall
_call_soon_threadsafe_def.ml_flags = METH_FASTCALL | METH_KEYWORDS
_call_soon_threadsafe_def.ml_doc = (
    "call_soon_threadsafe($self, callback, /, *args, context=None)\n--\n\n"
    "``call_soon`` from any thread (or a signal handler): wakes the loop.")


cdef int _install_fastcall_methods() except -1:
    cdef PyTypeObject_dict *tp = <PyTypeObject_dict *>_LoopBase
    (<dict>tp.tp_dict)["call_soon"] = PyDescr_NewMethod(tp, &_call_soon_def)
    (<dict>tp.tp_dict)["call_soon_threadsafe"] = PyDescr_NewMethod(
        tp, &_call_soon_threadsafe_def)
    _type_modified(tp)
    return 0


_install_fastcall_methods()


# The ring and the heap hold references the generated GC hooks cannot see: visit them too.
cdef traverseproc _loop_base_traverse = (<PyTypeObject_gc *>_LoopBase).tp_traverse
cdef inquiry _loop_base_clear = (<PyTypeObject_gc *>_LoopBase).tp_clear


cdef int _loop_traverse(PyObject *o, visitproc visit, void *arg) noexcept:
    cdef _LoopBase loop = <_LoopBase>o
    cdef Py_ssize_t i
    cdef int r
    for i in range(loop._rlen):
        r = visit(loop._ring[(loop._rhead + i) & loop._rmask], arg)
        if r:
            return r
    for i in range(loop._tn):
        r = visit(<PyObject *>loop._theap[i].timer, arg)
        if r:
            return r
    return _loop_base_traverse(o, visit, arg)


cdef int _loop_clear(PyObject *o) noexcept:
    (<_LoopBase>o)._clear_queues()
    return _loop_base_clear(o)


(<PyTypeObject_gc *>_LoopBase).tp_traverse = _loop_traverse
(<PyTypeObject_gc *>_LoopBase).tp_clear = _loop_clear
