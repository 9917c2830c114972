"""One ``main_loop_wait`` iteration and the big lock, pure Python (the fallback's twin of
``qloop/_core_mainloop.pxi``, which is the same code compiled).

One iteration, as QEMU's ``main_loop_wait`` / ``os_host_main_loop_wait`` do it (see
``docs/main-loop.md``):

1. poll notifiers, FILL (only when some are registered);
2. the timeout: the notifiers' (ms), the main-loop timer lists' deadline, both contexts'
   (rounded up to whole ms, as GLib works in ms) and GLib's;
3. the wait on every fd at once (notifiers' PollFDs, both contexts' fds, GLib's) with the
   big lock released; a non-blocking iteration whose only fds are wake-up fds (the contexts'
   notifiers, GLib's wake-up fd), whose readiness carries no event, skips the system call;
4. check and dispatch the main context, then the iohandler context (BHs, fd handlers,
   timers), then GLib (check, dispatch);
5. poll notifiers, OK or ERR; then the main-loop timers.

Callback exceptions: the iteration completes, then the first is raised (later ones are
logged on the ``qloop`` logger).
"""

from __future__ import annotations

import errno
import select
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._common import NotifierList, _int_arg, _raise_errors
from ._constants import SCALE_MS
from ._mainloop import UINT32_MAX, MainLoopPoll
from ._runstate import MainLoopPollState

__all__ = ["BigLock", "MainLoopWait"]

_get_ident = threading.get_ident
_POLL_ERRORS = select.POLLERR | select.POLLHUP | select.POLLNVAL
_FILL = MainLoopPollState.FILL
_OK = MainLoopPollState.OK
_ERR = MainLoopPollState.ERR


def _soonest(a: int, b: int) -> int:
    if a < 0:
        return b
    if b < 0:
        return a
    return a if a < b else b


def _ms_ceil_ns(ns: int) -> int:
    # a context's timeout rounded up to whole ms, as GLib sees it (in ns; -1 stays -1)
    if ns <= 0:
        return ns
    return -(-ns // SCALE_MS) * SCALE_MS


class BigLock:
    """The BQL: a non-recursive lock that knows its owner.  ``with qloop.bql:`` takes it."""

    __slots__ = ("_lock", "_owner")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: Optional[int] = None

    def lock(self) -> None:
        """Take the lock; RuntimeError if this thread holds it already."""
        me = _get_ident()
        if self._owner == me:
            raise RuntimeError("the BQL is already held by this thread")
        self._lock.acquire()
        self._owner = me

    def unlock(self) -> None:
        """Release the lock; RuntimeError if this thread does not hold it."""
        if self._owner != _get_ident():
            raise RuntimeError("the BQL is not held by this thread")
        self._owner = None
        self._lock.release()

    def locked(self) -> bool:
        """Whether this thread holds the lock."""
        return self._owner == _get_ident()

    def __enter__(self) -> "BigLock":
        """Take the lock."""
        self.lock()
        return self

    def __exit__(self, *exc: Any) -> None:
        """Release the lock."""
        self.unlock()

    def __repr__(self) -> str:
        return f"<qloop.bql {'held' if self._owner is not None else 'free'}>"


class MainLoopWait:
    """``main_loop_wait`` over the main loop's contexts (attached by ``init_main_loop``)."""

    def __init__(self, init: Callable[[], Any], bql: BigLock, notifiers: NotifierList) -> None:
        self._init = init
        self._bql = bql
        self._notifiers = notifiers
        self._ctx: Any = None
        self._io: Any = None
        self._tlg: Any = None
        self._glib: Any = None
        self._poller = select.poll()
        self._registered: Dict[int, int] = {}

    def attach(self, ctx: Any, io: Any, tlg: Any, glib: Any) -> None:
        """Drive these contexts (and GLib's default context when ``glib`` is a poller)."""
        self._ctx, self._io, self._tlg, self._glib = ctx, io, tlg, glib

    def detach(self) -> None:
        """Forget the contexts (the main loop was shut down)."""
        self._ctx = self._io = self._tlg = self._glib = None
        self._poller = select.poll()
        self._registered = {}

    def main_loop_wait(self, nonblocking: bool = False) -> int:
        """One iteration of the main loop (see ``docs/main-loop.md``).  Returns the poll
        result: < 0 on error, 0 on timeout, else the number of ready fds.

        Holds the big lock except during the wait (taking it for the call if this thread
        does not hold it).  Callback exceptions: the iteration completes, then the first is
        raised (later ones are logged on the ``qloop`` logger).
        """
        if self._ctx is None:
            self._init()
        bql = self._bql
        took = bql._owner != _get_ident()
        if took:
            bql.lock()
        errors: List[BaseException] = []
        try:
            ret = self._iteration(bool(nonblocking), errors)
        finally:
            if took:
                bql.unlock()
        if errors:
            _raise_errors(errors)
        return ret

    def _iteration(self, nonblocking: bool, errors: List[BaseException]) -> int:
        ctx, io, tlg, glib = self._ctx, self._io, self._tlg, self._glib
        mlpoll: Optional[MainLoopPoll] = None
        timeout = 0 if nonblocking else -1
        if self._notifiers._entries:
            mlpoll = MainLoopPoll(_FILL, 0 if nonblocking else UINT32_MAX)
            self._notify(mlpoll, errors)
            ms = _int_arg(mlpoll.timeout, "MainLoopPoll.timeout")
            timeout = -1 if ms == UINT32_MAX or ms < 0 else ms * SCALE_MS
        if tlg._timer_lists[0].heap or tlg._timer_lists[1].heap or tlg._timer_lists[2].heap \
                or tlg._timer_lists[3].heap:
            timeout = _soonest(timeout, tlg._timers_deadline())
        ret = self._host_wait(ctx, io, glib, mlpoll, timeout, errors)
        if mlpoll is not None:
            mlpoll.state = _ERR if ret < 0 else _OK
            self._notify(mlpoll, errors)
        tls = tlg._timer_lists
        if tls[0].heap or tls[1].heap or tls[2].heap or tls[3].heap:
            saved, tlg._errors = tlg._errors, errors
            try:
                tlg._run_timers()
            finally:
                tlg._errors = saved
        return ret

    def _notify(self, mlpoll: MainLoopPoll, errors: List[BaseException]) -> None:
        try:
            self._notifiers.notify(mlpoll)
        except BaseException as exc:
            errors.append(exc)

    def _host_wait(self, ctx: Any, io: Any, glib: Any, mlpoll: Optional[MainLoopPoll],
                   timeout: int, errors: List[BaseException]) -> int:
        """``os_host_main_loop_wait``: prepare both contexts (and GLib), one wait with the big
        lock released, then check and dispatch."""
        ready_fds: List[Tuple[int, int]] = []
        ret = 0
        if glib is not None and glib.acquired:
            glib = None  # a nested iteration: GLib is the outer one's, in the middle of its turn
        timeout = _soonest(timeout, _ms_ceil_ns(ctx._ml_prepare()))
        try:
            timeout = _soonest(timeout, _ms_ceil_ns(io._ml_prepare()))
        except BaseException:
            ctx._ml_check(ready_fds, errors)
            raise
        glib_fds: List[Tuple[int, int]] = []
        glib_idle = True
        filled = False
        try:
            try:
                if glib is not None:
                    g_ns, glib_fds = glib.fill()  # GLib's own sources (timeouts, watches...)
                    filled = True
                    timeout = _soonest(timeout, g_ns)
                    glib_idle = glib.only_wakeup
                if (timeout == 0 and glib_idle and ctx._ml_idle() and io._ml_idle()
                        and (mlpoll is None or not mlpoll.pollfds)):
                    pass  # nothing a wait could report: skip the system call
                else:
                    ret = self._wait(ctx, io, mlpoll, glib_fds, timeout, ready_fds, errors)
            finally:
                ready_ctx, gen_ctx = ctx._ml_check(ready_fds, errors)
                ready_io, gen_io = io._ml_check(ready_fds, errors)
            if mlpoll is not None and mlpoll.pollfds:
                revents = dict(ready_fds)
                for pfd in mlpoll.pollfds:
                    pfd.revents = revents.get(pfd.fd, 0) & (pfd.events | _POLL_ERRORS)
            try:
                ctx._ml_dispatch(ready_ctx, gen_ctx, errors)
            except BaseException as exc:
                errors.append(exc)
            try:
                io._ml_dispatch(ready_io, gen_io, errors)
            except BaseException as exc:
                errors.append(exc)
        finally:
            if filled:  # GLib's turn, and its context released, whatever happened
                try:
                    glib.poll(dict(ready_fds) if ready_fds else {})
                except BaseException as exc:
                    errors.append(exc)
        return ret

    def _wait(self, ctx: Any, io: Any, mlpoll: Optional[MainLoopPoll],
              glib_fds: List[Tuple[int, int]], timeout: int,
              ready_fds: List[Tuple[int, int]], errors: List[BaseException]) -> int:
        wanted: Dict[int, int] = {}
        if mlpoll is not None:
            for pfd in mlpoll.pollfds:
                wanted[pfd.fd] = wanted.get(pfd.fd, 0) | pfd.events
        for source in (ctx, io):
            for fd, events in source._ml_fds().items():
                wanted[fd] = wanted.get(fd, 0) | events
        for fd, events in glib_fds:
            wanted[fd] = wanted.get(fd, 0) | events
        self._sync(wanted)
        ms = -1 if timeout < 0 else -(-timeout // SCALE_MS)
        bql = self._bql
        bql.unlock()
        try:
            try:
                ready = self._poller.poll(ms)
                ret = len(ready)
                ready_fds.extend(ready)
            except OSError as exc:
                ret = -1
                if exc.errno != errno.EINTR:
                    errors.append(exc)
            except BaseException as exc:  # an exception from a Python signal handler
                ret = -1
                errors.append(exc)
        finally:
            bql.lock()
        return ret

    def _sync(self, wanted: Dict[int, int]) -> None:
        """Bring the persistent poll set to ``wanted`` (only what changed)."""
        registered = self._registered
        if wanted == registered:
            return
        poller = self._poller
        for fd in [fd for fd in registered if fd not in wanted]:
            poller.unregister(fd)
            del registered[fd]
        for fd, events in wanted.items():
            if registered.get(fd) != events:
                poller.register(fd, events)
                registered[fd] = events
