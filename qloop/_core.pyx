# cython: language_level=3, embedsignature=True
"""The compiled implementation, assembled: QEMU's AioContext, bottom halves, timers and clocks
(the ``_cy/`` includes), the process-wide main loop over them (``qloop._main``) and the asyncio
event loop (``qloop._aio`` over ``_cy/loop.pxi``).

Its pure-Python twin is ``qloop/_fallback.py`` with ``qloop/_py/``: each include here pairs with
the module of the same stem there (``_cy/timers.pxi`` with ``_py/timers.py``), with the same
classes, the same methods in the same order and the same behaviour (AioContext's adapters,
``_cy/context_gsource.pxi`` and ``_cy/context_mainloop.pxi``: the same functions).  A C
attribute ``x`` here (private by nature) is ``_x`` there; C-only helpers (``_wait_ppoll``,
``_rebuild_pollfds``...) have no twin.  The behaviour is described in ``docs/``; open choices
are in ``docs/decisions.md``.

C-level design:
* the wait is ``ppoll(2)`` (ns timeout) on a C ``pollfd`` array rebuilt only when the handler
  set changed, or ``epoll_wait(2)`` once upgraded, or (``fdmon="io_uring"``,
  ``_cy/fdmon_uring.pxi``) ``io_uring_enter(2)`` on the context's ring, whose one-shot poll
  requests name their handlers; all run with the GIL released;
* ``notify_me``/``notified`` are C ints accessed with GCC atomics and full barriers
  (docs/notify.md);
* BH flags are atomic; the pending stack is an intrusive list of BH objects changed only with
  the GIL held and without running Python code, so a push from another thread or from a
  Python signal handler is atomic with respect to the owner;
* each timer list is a 4-ary heap of C structs (key, seq, timer); re-arming pushes a new
  entry and leaves the old one stale (skipped when it surfaces, compacted when stale entries
  dominate), so ``mod`` costs O(log n) (O(1) on average for random expiries).
"""

cimport cython
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.errno cimport EAGAIN, EBADF, EBUSY, EINTR, EINVAL, ENOSYS, EPERM, errno
from libc.string cimport memcpy
from libc.stdint cimport INT64_MAX, int64_t, uint32_t, uint64_t, uintptr_t
from posix.fcntl cimport O_CLOEXEC, O_NONBLOCK
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec
from posix.unistd cimport close, read, write

from qloop.includes.io_uring cimport (
    ECANCELED,
    QL_IORING_ENTER_GETEVENTS,
    QL_IORING_SETUP_DEFER_TASKRUN,
    QL_IORING_SETUP_R_DISABLED,
    QL_IORING_SETUP_SINGLE_ISSUER,
    QL_IORING_SETUP_SUBMIT_ALL,
    QL_IORING_SETUP_TASKRUN_FLAG,
    QL_IORING_SQ_CQ_OVERFLOW,
    QL_IORING_SQ_TASKRUN,
    ql_cqe,
    ql_sqe,
    ql_uring_clear,
    ql_uring_cq_empty,
    ql_uring_cq_set_head,
    ql_uring_cq_tail,
    ql_uring_cqe,
    ql_uring_enable,
    ql_uring_enter,
    ql_uring_exit,
    ql_uring_get_sqe,
    ql_uring_init,
    ql_uring_prep_poll_add,
    ql_uring_prep_poll_remove,
    ql_uring_prep_timeout,
    ql_uring_publish,
    ql_uring_sq_flags,
)
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
    ql_epoll_pwait2,
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

import os as _os
import threading
import types
import weakref

from qloop._aio.build import build_implementation
from qloop._main import (
    aio_wait as _aio_wait,
    coroutine as _coroutine,
    glib as _glib,
    mainloop as _mainloop,
    runstate as _runstate,
    threadpool as _threadpool,
)
from qloop._main.mainloop import MainLoopPoll
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
    _io_uring_switched_off,
    _io_uring_sysctl,
    _io_uring_unavailable,
    _raise_errors,
)
from qloop._constants import (
    FDMON_NAMES,
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
    Py_ssize_t _dict_size "PyDict_GET_SIZE"(object d)  # d: a dict, never None


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
    AUTO_EPOLL_FDS = 2  # the context's own notifier and one more fd
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
    FDMON_IO_URING = 3

cdef uint64_t _eventfd_one = 1


# --------------------------------------------------------------------------------------------
# QEMU's event-loop layer, one include per part (each the twin of a qloop/_py module)

include "_cy/clock.pxi"
include "_cy/notifier.pxi"
include "_cy/timers.pxi"
include "_cy/bh.pxi"
include "_cy/fdmon_uring.pxi"
include "_cy/context.pxi"
include "_cy/context_gsource.pxi"
include "_cy/context_mainloop.pxi"


# --------------------------------------------------------------------------------------------
# The process-wide main loop, run state and coroutines (docs/main-loop.md,
# docs/run-states.md, docs/coroutines.md), shared Python code
# instantiated over this implementation.

include "_cy/glib.pxi"
include "_cy/mainloop.pxi"

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
    module=__name__,
))
globals().update(_main_loop.exports())
GLibUnavailable = _glib.GLibUnavailable
__all__.extend(_mainloop.EXPORTS)
__all__.extend(_mainloop.SHARED_EXPORTS)
__all__.append("GLibUnavailable")


# --------------------------------------------------------------------------------------------
# The asyncio event loop: its hot base in C, the rest shared Python (qloop._aio).

include "_cy/loop.pxi"
include "_cy/transports.pxi"
include "_cy/pipes.pxi"
include "_cy/dgram.pxi"

_loop_exports = build_implementation(
    "qloop._core", _LoopBase,
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
