"""One ``main_loop_wait`` iteration and the big lock, pure Python (the fallback's twin of
``qloop/_cy/mainloop.pxi``, which is the same code compiled).

One iteration, as QEMU's ``main_loop_wait`` / ``os_host_main_loop_wait`` do it (see
``docs/main-loop-iteration.md``):

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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import Self

from .._common import NotifierList, _int64_arg, _int_arg, _raise_errors
from .._constants import SCALE_MS
from .._main.mainloop import UINT32_MAX, MainLoopPoll
from .._main.runstate import MainLoopPollState
from .bh import BH as _BH
from .context_mainloop import (
    ml_accept,
    ml_check,
    ml_dispatch,
    ml_enter,
    ml_fds,
    ml_open_window,
    ml_timeout,
)

__all__ = ["BigLock", "MainLoopWait"]

_get_ident = threading.get_ident
_any = any
_POLL_ERRORS = select.POLLERR | select.POLLHUP | select.POLLNVAL
_FILL = MainLoopPollState.FILL
_OK = MainLoopPollState.OK
_ERR = MainLoopPollState.ERR


def _soonest(a: int, b: int) -> int:
    if a < 0:
        return b
    if b < 0:
        return a
    return min(b, a)


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
        self._owner: int | None = None

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

    def __enter__(self) -> Self:
        """Take the lock."""
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        """Release the lock."""
        self.unlock()

    def __repr__(self) -> str:
        return f"<qloop.bql {'held' if self._owner is not None else 'free'}>"


class MainLoopWait:
    """MainLoopWait(init, bql, notifiers): ``main_loop_wait`` over the main loop's contexts
    (attached by ``init_main_loop``)."""

    def __init__(self, init: Callable[[], Any], bql: BigLock, notifiers: NotifierList) -> None:
        self._init = init
        self._bql = bql
        self._notifiers = notifiers._entries  # the same list object for good
        self._ctx: Any = None
        self._io: Any = None
        self._tlg: Any = None
        self._glib: Any = None
        # the timer heaps of the main-loop timers, of the main and of the iohandler context
        # (the lists live as long as their context): any(...) tests four at once
        self._tlg_heaps: tuple[list[int], ...] = ()
        self._ctx_heaps: tuple[list[int], ...] = ()
        self._io_heaps: tuple[list[int], ...] = ()
        self._poller = select.poll()
        self._registered: dict[int, int] = {}
        self._errors: list[BaseException] = []

    def attach(self, ctx: Any, io: Any, tlg: Any, glib: Any) -> None:
        """Drive these contexts (and GLib's default context when ``glib`` is a poller)."""
        self._ctx, self._io, self._tlg, self._glib = ctx, io, tlg, glib
        self._tlg_heaps = tuple(tl.heap for tl in tlg._timer_lists)
        self._ctx_heaps = tuple(tl.heap for tl in ctx._timer_lists)
        self._io_heaps = tuple(tl.heap for tl in io._timer_lists)

    def detach(self) -> None:
        """Forget the contexts (the main loop was shut down)."""
        self._ctx = self._io = self._tlg = self._glib = None
        self._tlg_heaps = self._ctx_heaps = self._io_heaps = ()
        self._poller = select.poll()
        self._registered = {}

    def main_loop_wait(self, nonblocking: bool = False) -> int:
        """One iteration of the main loop (see ``docs/main-loop-iteration.md``).  Returns the poll
        result: < 0 on error, 0 on timeout, else the number of ready fds.

        Holds the big lock except during the wait (taking it for the call if this thread
        does not hold it).  Callback exceptions: the iteration completes, then the first is
        raised (later ones are logged on the ``qloop`` logger).
        """
        me = _get_ident()
        if self._ctx is None:
            self._init()
        bql = self._bql
        took = bql._owner != me
        if took:  # bql.lock(), inline
            bql._lock.acquire()
            bql._owner = me
        saved = self._errors
        errors = self._errors = []  # the contexts report into it while the loop runs them
        try:
            if (self._notifiers or self._glib is not None or _any(self._tlg_heaps)
                    or not self._busy_iteration(nonblocking, me)):
                ret = self._iteration(bool(nonblocking), me)
            else:
                ret = 0
        finally:
            self._errors = saved
            if took:  # bql.unlock(), inline
                bql._owner = None
                bql._lock.release()
        if errors:
            _raise_errors(errors)
        return ret

    def _error(self, exc: BaseException) -> None:
        self._errors.append(exc)

    def _notify(self, mlpoll: MainLoopPoll) -> None:
        try:
            for entry in list(self._notifiers):
                if entry[1]:
                    entry[0](mlpoll)
        except BaseException as exc:
            self._error(exc)

    def _iteration(self, nonblocking: bool, me: int) -> int:
        tls = self._tlg._timer_lists
        timeout = 0 if nonblocking else -1
        mlpoll = None
        if self._notifiers:  # FILL
            mlpoll = MainLoopPoll(_FILL, 0 if nonblocking else UINT32_MAX)
            self._notify(mlpoll)
            ms = _int64_arg(_int_arg(mlpoll.timeout, "MainLoopPoll.timeout"),
                            "MainLoopPoll.timeout")
            timeout = -1 if ms == UINT32_MAX or ms < 0 else ms * SCALE_MS
        if tls[0].heap or tls[1].heap or tls[2].heap or tls[3].heap:
            timeout = _soonest(timeout, self._tlg._timers_deadline(True))
        ret = self._host_wait(mlpoll, timeout, me)
        if mlpoll is not None:  # OK / ERR
            mlpoll.state = _ERR if ret < 0 else _OK
            self._notify(mlpoll)
        if tls[0].heap or tls[1].heap or tls[2].heap or tls[3].heap:
            self._dispatch(self._tlg, None, 0, me)  # the main-loop timers, last
        return ret

    def _busy_iteration(self, nonblocking: Any, me: int) -> bool:
        """The iteration of a busy loop, when nothing but the two contexts take part (no
        notifier, GLib or main-loop timer): no wait because no fd but the contexts' own
        notifiers is registered, and the call is non-blocking or a BH is due.  False: the
        general path must run (nothing was done)."""
        ctx, io = self._ctx, self._io
        if (ctx._npollfds > 1 or io._npollfds > 1 or ctx._epoll_active or io._epoll_active
                or ctx._poll_started or io._poll_started):
            return False
        ops = ctx._bh_ops
        if not nonblocking and not (ops and type(ops[-1]) is _BH and not ops[-1]._deleted) \
                and ctx._bh_timeout() != 0:
            return False
        ctx._notified = False  # aio_notify_accept
        io._notified = False
        if _any(self._ctx_heaps):
            self._dispatch(ctx, None, 0, me)
        elif ops or ctx._bh_list or ctx._bh_slices:
            # ml_dispatch() for BHs alone, inline: the busy loop's one dispatch
            if ctx._walkers and ctx._poll_thread != me:
                raise RuntimeError("AioContext dispatched from two threads at once")
            saved, ctx._errors = ctx._errors, self._errors
            ctx._poll_thread = me
            ctx._walkers += 1
            try:
                ctx._bh_poll()
            finally:
                ctx._walkers -= 1
                ctx._errors = saved
                if not ctx._walkers:
                    ctx._poll_thread = None
        if io._bh_ops or io._bh_list or io._bh_slices or _any(self._io_heaps):
            self._dispatch(io, None, 0, me)
        return True

    def _host_wait(self, mlpoll: MainLoopPoll | None, timeout: int, me: int) -> int:
        """``os_host_main_loop_wait``: the timeouts of both contexts (and GLib's), one wait
        with the big lock released, then check and dispatch."""
        ctx, io, glib = self._ctx, self._io, self._glib
        ret = 0
        ready_ctx: list[Any] | None = None
        ready_io: list[Any] | None = None
        gen_ctx = gen_io = 0
        if glib is not None and glib.acquired:
            glib = None  # a nested iteration: GLib is the outer one's, in the middle of its turn
        nml = len(mlpoll.pollfds) if mlpoll is not None else 0
        if timeout != 0:
            ops = ctx._bh_ops
            if (ops and type(ops[-1]) is _BH and not ops[-1]._deleted) or ctx._bh_timeout() == 0:
                # a BH is due (last queued: a plain schedule): no wait can block (the common
                # case of a busy loop)
                timeout = 0
        # a wait that may block opens the notify windows before the timeouts are computed
        # (as GSource prepare): a notify from then on wakes it
        window = timeout != 0
        accepted = False
        glib_fds: list[tuple[int, int]] = []
        ready_fds: list[tuple[int, int]] = []
        try:
            if window:
                ml_open_window(ctx)
                ml_open_window(io)
                timeout = _soonest(timeout, _ms_ceil_ns(ml_timeout(ctx)))
                timeout = _soonest(timeout, _ms_ceil_ns(ml_timeout(io)))
            if glib is not None:
                g_ns, glib_fds = glib.fill()  # GLib's own sources (timeouts, watches...)
                timeout = _soonest(timeout, g_ns)
            if (timeout == 0 and nml == 0 and ctx._npollfds <= 1 and io._npollfds <= 1
                    and not ctx._epoll_active and not io._epoll_active
                    and (glib is None or glib.only_wakeup)):
                # nothing a wait could report (only wake-up fds): no system call
                accepted = True
                if window:
                    ml_accept(ctx, True)
                    ml_accept(io, True)
                else:  # ml_accept(False), inline
                    ctx._notified = False
                    io._notified = False
            else:
                accepted = True  # _poll closes the windows whatever happens
                ret, ready_fds, ready_ctx, gen_ctx, ready_io, gen_io = self._poll(
                    mlpoll, glib_fds, timeout, window, me)
            tls = ctx._timer_lists
            if (ctx._bh_ops or ctx._bh_list or ctx._bh_slices or ready_ctx is not None
                    or tls[0].heap or tls[1].heap or tls[2].heap or tls[3].heap):
                # self._dispatch(ctx, ...), inline: this is the busy loop's path
                saved, ctx._errors = ctx._errors, self._errors
                try:
                    ml_dispatch(ctx, ready_ctx, gen_ctx, me)
                except BaseException as exc:
                    self._error(exc)
                finally:
                    ctx._errors = saved
            tls = io._timer_lists
            if (io._bh_ops or io._bh_list or io._bh_slices or ready_io is not None
                    or tls[0].heap or tls[1].heap or tls[2].heap or tls[3].heap):
                self._dispatch(io, ready_io, gen_io, me)
        finally:
            if not accepted:
                ml_accept(ctx, window)
                ml_accept(io, window)
            if glib is not None and glib.acquired:  # GLib's turn, released whatever happened
                try:
                    glib.poll(dict(ready_fds) if ready_fds else {})
                except BaseException as exc:
                    self._error(exc)
        return ret

    def _poll(self, mlpoll: MainLoopPoll | None, glib_fds: list[tuple[int, int]],
              timeout: int, window: bool, me: int) -> tuple[int, list[tuple[int, int]], Any,
                                                             int, Any, int]:
        """The wait itself: every fd in one persistent poll set, then the revents back to
        their owners (the contexts' handlers, the notifiers' PollFDs; GLib's by the caller)."""
        ctx, io = self._ctx, self._io
        ready_fds: list[tuple[int, int]] = []
        try:
            ml_enter(ctx, me)
        except BaseException:
            ml_accept(ctx, window)
            ml_accept(io, window)
            raise
        try:
            ml_enter(io, me)
        except BaseException:
            self._check(ctx, ready_fds, window)
            ml_accept(io, window)
            raise
        checked = False
        try:
            wanted: dict[int, int] = {}
            if mlpoll is not None:
                for pfd in mlpoll.pollfds:
                    wanted[pfd.fd] = wanted.get(pfd.fd, 0) | pfd.events
            for source in (ctx, io):
                for fd, events in ml_fds(source).items():
                    wanted[fd] = wanted.get(fd, 0) | events
            for fd, events in glib_fds:
                wanted[fd] = wanted.get(fd, 0) | events
            self._sync(wanted)
            ret = self._wait(timeout, ready_fds, me)
            checked = True
            ready_ctx, gen_ctx = self._check(ctx, ready_fds, window)
            ready_io, gen_io = self._check(io, ready_fds, window)
        finally:
            if not checked:
                self._check(ctx, [], window)
                self._check(io, [], window)
        if mlpoll is not None and mlpoll.pollfds:
            revents = dict(ready_fds)
            for pfd in mlpoll.pollfds:
                pfd.revents = revents.get(pfd.fd, 0) & (pfd.events | _POLL_ERRORS)
        return ret, ready_fds, ready_ctx, gen_ctx, ready_io, gen_io

    def _check(self, ctx: Any, ready_fds: list[tuple[int, int]], window: bool) -> tuple[Any, int]:
        # a closed fd's error (reported by the check) joins this iteration's errors
        saved, ctx._errors = ctx._errors, self._errors
        try:
            return ml_check(ctx, ready_fds, window)
        finally:
            ctx._errors = saved

    def _dispatch(self, ctx: Any, ready: Any, gen: int, me: int) -> None:
        # what the context's callbacks raise joins this iteration's errors
        saved, ctx._errors = ctx._errors, self._errors
        try:
            ml_dispatch(ctx, ready, gen, me)
        except BaseException as exc:
            self._error(exc)
        finally:
            ctx._errors = saved

    def _wait(self, timeout: int, ready_fds: list[tuple[int, int]], me: int) -> int:
        ms = -1 if timeout < 0 else -(-timeout // SCALE_MS)
        bql = self._bql
        bql.unlock()
        try:
            try:
                ready = self._poller.poll(ms)
                ready_fds.extend(ready)
                return len(ready)
            except OSError as exc:
                if exc.errno != errno.EINTR:
                    self._error(exc)
            except BaseException as exc:  # an exception from a Python signal handler
                self._error(exc)
            return -1
        finally:
            bql.lock()

    def _sync(self, wanted: dict[int, int]) -> None:
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

