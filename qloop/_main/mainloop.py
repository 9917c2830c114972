"""The process-wide main loop (QEMU's ``main-loop.c``), written once over an implementation.

Each implementation module creates one ``MainLoop`` over its own classes and re-exports the
names in ``EXPORTS`` (``MainLoop.exports()``), so ``qloop._core`` and ``qloop._fallback`` each
have their own process-wide loop.  This module keeps what the main loop itself is: its
initialisation (the main context, the iohandler context, the main-loop timer lists, GLib),
the big lock and the wait, plus ``main_loop()`` and ``clock_step()``.  The rest lives in one
module per job:

* one ``main_loop_wait`` iteration: the implementation's ``MainLoopWait`` (compiled in the
  core, ``qloop/_cy/mainloop.pxi``; ``qloop/_py/mainloop.py`` in the fallback);
* the run-state machine and the requests: ``qloop/_main/runstate.py``;
* signals (one process-wide owner of the wake-up fd): ``qloop/_main/signal_hub.py``;
* child watches: ``qloop/_main/childwatch.py``.

The order of one iteration is described in ``docs/main-loop-iteration.md``.
"""

from __future__ import annotations

import functools
import select
import signal
import threading
from collections.abc import Callable
from typing import Any

from .._common import NotifierList, _fd_of, _int64_arg, _int_arg, _raise_errors
from .._constants import SCALE_MS, SCALE_NS, SCALE_US, ClockType
from . import (
    aio_wait as _aio_wait,
    coroutine as _coroutine,
    glib as _glib,
    iothread as _iothread,
    threadpool as _threadpool,
)
from .childwatch import ChildCallback, ChildWatches
from .runstate import (
    RUNSTATE_EXPORTS,
    MainLoopPollState,
    RunState,
    RunStateMachine,
    ShutdownCause,
    WakeupReason,
)
from .signal_hub import SignalCallbacks

__all__ = ["EXPORTS", "SHARED_EXPORTS", "UINT32_MAX", "MainLoop", "MainLoopPoll", "PollFD"]

UINT32_MAX = 0xFFFFFFFF

# Names each implementation module re-exports from its MainLoop (see MainLoop.exports()).
EXPORTS = (
    "init_main_loop", "main_loop_wait", "get_aio_context", "iohandler_get_aio_context",
    "notify_event", "set_fd_handler", "event_notifier_set_handler", "add_child_watch",
    "bh_new", "timer_new", "timer_new_ns", "timer_new_us", "timer_new_ms",
    "add_main_loop_poll_notifier", "remove_main_loop_poll_notifier",
    "bql_lock", "bql_unlock", "bql_locked", "bql",
    "add_signal_handler", "remove_signal_handler",
    *RUNSTATE_EXPORTS,
    "main_loop", "clock_step", "IOThread",
)

# Names shared by both implementations (plain Python, the same objects).
SHARED_EXPORTS = (
    "RunState", "ShutdownCause", "WakeupReason", "MainLoopPollState", "PollFD", "MainLoopPoll",
    "Coroutine", "coroutine_yield", "coroutine_self", "in_coroutine", "co_wake",
    "co_sleep_ns", "get_current_aio_context", "set_current_aio_context",
    "co_reschedule_self", "ThreadPool", "ThreadPoolRequest",
    "aio_wait_kick", "aio_wait_while", "aio_wait_bh_oneshot",
)


class PollFD:
    """A GPollFD: an fd a main-loop poll notifier adds during FILL; ``revents`` after the wait."""

    __slots__ = ("events", "fd", "revents")

    def __init__(self, fd: Any, events: int = select.POLLIN) -> None:
        self.fd = _fd_of(fd)
        self.events = _int_arg(events, "events")
        self.revents = 0

    def __repr__(self) -> str:
        return f"PollFD(fd={self.fd}, events={self.events:#x}, revents={self.revents:#x})"


class MainLoopPoll:
    """What main-loop poll notifiers receive (QEMU's MainLoopPoll).

    ``state`` is FILL (append ``PollFD``s to ``pollfds``, lower ``timeout``), then OK or ERR
    after the wait (read their ``revents``).  ``timeout`` is in ms; ``UINT32_MAX`` (and -1)
    mean infinite.
    """

    __slots__ = ("pollfds", "state", "timeout")

    def __init__(self, state: MainLoopPollState, timeout: int) -> None:
        self.state = state
        self.timeout = timeout
        self.pollfds: list[PollFD] = []


class MainLoop:
    """One implementation's process-wide main loop.

    ``impl`` is the implementation's namespace: ``AioContext``, ``BigLock``, ``MainLoopWait``,
    ``glib_poller`` (or None), ``clock_enable``, ``clock_get_ns``,
    ``clock_advance_virtual_time``, ``clock_is_manual``, ``virtual_deadline`` and
    ``module`` (the implementation module's name).
    """

    def __init__(self, impl: Any) -> None:
        self._impl = impl
        self.bql = impl.BigLock()
        self._poll_notifiers = NotifierList()
        self._ctx: Any = None
        self._iohandler_ctx: Any = None
        self._main_tlg: Any = None
        self._notify_bh: Any = None
        self._init_lock = threading.Lock()
        self._running = False  # main_loop() is running
        self._runstate = RunStateMachine(self.notify_event, impl.clock_enable)
        self._signals = SignalCallbacks(self.iohandler_get_aio_context)
        self._children = ChildWatches(self.iohandler_get_aio_context)
        self._wait = impl.MainLoopWait(self.init_main_loop, self.bql, self._poll_notifiers)
        # IOThreads of this implementation; AIO_WAIT_WHILE sleeps in this main context
        self.IOThread = type("IOThread", (_iothread.IOThread,), {
            "_context_type": impl.AioContext, "__module__": impl.module,
            "__doc__": _iothread.IOThread.__doc__})
        _aio_wait.register_main_loop(impl.AioContext, self._main_context, self.notify_event)

    def exports(self) -> dict[str, Any]:
        names: dict[str, Any] = {}
        for name in EXPORTS:
            if name in RUNSTATE_EXPORTS:
                names[name] = getattr(self._runstate, name)
            elif name == "main_loop_wait":
                names[name] = self._wait.main_loop_wait
            else:
                names[name] = getattr(self, name)
        for name in SHARED_EXPORTS:
            names[name] = _SHARED[name]
        return names

    # ---- initialisation

    def init_main_loop(self) -> None:
        """``qemu_init_main_loop``: create the main AioContext, the iohandler context and the
        main-loop timer lists; register the main context as this thread's.  Idempotent."""
        with self._init_lock:
            if self._ctx is not None:
                return
            impl = self._impl
            ctx = impl.AioContext()
            iohandler = impl.AioContext()
            tlg = impl.AioContext(fdmon="poll")
            self._notify_bh = ctx.bh_new(_dummy, name="qemu_notify_bh")
            # main-loop timers: qemu_notify_event, i.e. that BH (its C-level schedule)
            tlg._set_timer_notify(self._notify_bh.schedule)
            self._iohandler_ctx = iohandler
            self._main_tlg = tlg
            self._wait.attach(ctx, iohandler, tlg, _glib.new_poller(impl.glib_poller))
            self._ctx = ctx
        _coroutine.set_current_aio_context(ctx)
        _coroutine.add_bql_context_provider(self._bql_context)

    def _main_context(self) -> Any:
        return self._ctx

    def _bql_context(self) -> Any:
        # qemu_get_current_aio_context(): a thread holding the BQL gets the main context
        return self._ctx if self.bql.locked() else None

    def _require(self) -> Any:
        if self._ctx is None:
            self.init_main_loop()
        return self._ctx

    def _shutdown_main_loop(self) -> None:
        """Tear the main loop down (for tests): remove signal handlers and child watches,
        close the contexts, forget the run state."""
        self._signals.clear()
        self._children.clear()
        with self._init_lock:
            self._wait.detach()
            for ctx in (self._ctx, self._iohandler_ctx, self._main_tlg):
                if ctx is not None:
                    ctx.close()
            if _coroutine.get_current_aio_context() is self._ctx:
                _coroutine.set_current_aio_context(None)
            self._ctx = self._iohandler_ctx = self._main_tlg = None
            self._notify_bh = None
        self._poll_notifiers._entries.clear()
        self._runstate.reset()
        self._running = False
        if self.bql.locked():
            self.bql.unlock()

    def get_aio_context(self) -> Any:
        """``qemu_get_aio_context``: the main AioContext (creates the main loop if needed)."""
        return self._require()

    def iohandler_get_aio_context(self) -> Any:
        """``iohandler_get_aio_context``: the context of ``set_fd_handler`` handlers.  It is
        dispatched only by ``main_loop_wait``, never by a nested poll of the main context."""
        self._require()
        return self._iohandler_ctx

    def notify_event(self) -> None:
        """``qemu_notify_event``: schedule the main context's dummy BH (progress for a nested
        poll of the main context).  A no-op before ``init_main_loop``; signal-safe."""
        bh = self._notify_bh
        if bh is not None:
            bh.schedule()

    # ---- handlers, BHs and timers of the main loop

    def set_fd_handler(self, fd: Any, fd_read: Callable[[], Any] | None,
                       fd_write: Callable[[], Any] | None = None) -> None:
        """``qemu_set_fd_handler``: level-triggered handlers on the iohandler context."""
        self._require()
        self._iohandler_ctx.set_fd_handler(fd, fd_read, fd_write)

    def event_notifier_set_handler(self, notifier: Any,
                                   handler: Callable[[Any], Any] | None) -> None:
        """``event_notifier_set_handler``: ``handler(notifier)`` on the iohandler context; it
        must clear the notifier or it fires on every iteration."""
        self._require()
        self._iohandler_ctx.set_event_notifier(notifier, handler)

    def bh_new(self, callback: Callable[[], Any], *, name: str | None = None) -> Any:
        """``qemu_bh_new``: a BH of the main context."""
        return self._require().bh_new(callback, name=name)

    def timer_new(self, clock: int, scale: int, callback: Callable[[], Any], *,
                  attributes: int = 0) -> Any:
        """``timer_new``: a timer on the main-loop timer lists (run last in main_loop_wait)."""
        self._require()
        return self._main_tlg.timer_new(clock, scale, callback, attributes=attributes)

    def timer_new_ns(self, clock: int, callback: Callable[[], Any], *, attributes: int = 0) -> Any:
        """``timer_new_ns``: a main-loop timer counting in nanoseconds."""
        return self.timer_new(clock, SCALE_NS, callback, attributes=attributes)

    def timer_new_us(self, clock: int, callback: Callable[[], Any], *, attributes: int = 0) -> Any:
        """``timer_new_us``: a main-loop timer counting in microseconds."""
        return self.timer_new(clock, SCALE_US, callback, attributes=attributes)

    def timer_new_ms(self, clock: int, callback: Callable[[], Any], *, attributes: int = 0) -> Any:
        """``timer_new_ms``: a main-loop timer counting in milliseconds."""
        return self.timer_new(clock, SCALE_MS, callback, attributes=attributes)

    def add_main_loop_poll_notifier(self, callback: Callable[[MainLoopPoll], Any]) -> None:
        """``main_loop_poll_add_notifier``: ``callback(mlpoll)`` before (FILL) and after (OK/ERR)
        each wait; most recently added first."""
        self._poll_notifiers.add(callback)

    def remove_main_loop_poll_notifier(self, callback: Callable[[MainLoopPoll], Any]) -> None:
        """``main_loop_poll_remove_notifier``; ValueError if ``callback`` was not added."""
        self._poll_notifiers.remove(callback)

    # ---- the big lock

    def bql_lock(self) -> None:
        """Take the big lock (``bql_lock``); RuntimeError if this thread holds it already."""
        self.bql.lock()

    def bql_unlock(self) -> None:
        """Release the big lock; RuntimeError if this thread does not hold it."""
        self.bql.unlock()

    def bql_locked(self) -> bool:
        """Whether this thread holds the big lock."""
        return bool(self.bql.locked())

    # ---- signals and child processes (their own modules)

    def add_signal_handler(self, signum: int, callback: Callable[[], Any]) -> None:
        """Run ``callback()`` in the main loop (from the iohandler context) when ``signum``
        arrives; it replaces an earlier callback for that signal.  The signal wakes a sleeping
        ``main_loop_wait`` at once.  Must be called from the main thread."""
        self._require()
        self._signals.add(signum, callback)

    def remove_signal_handler(self, signum: int) -> bool:
        """Restore the handler ``signum`` had before; False if qloop was not handling it."""
        return self._signals.remove(signum)

    def add_child_watch(self, pid: int, callback: ChildCallback | None = None) -> int:
        """``qemu_add_child_watch``: reap child ``pid`` as soon as it exits (no zombie left).

        ``callback(pid, returncode)``, if given, then runs in the main loop (from the
        iohandler context); ``returncode`` follows ``subprocess``: the exit code, or minus the
        signal number that killed the child (255 if something else reaped it first).  Without
        a callback the exit status is dropped, as in QEMU, and a later ``Popen.wait()`` cannot
        see it.  Returns 1 if ``pid`` was already watched (the callback is added), else 0.
        ValueError if ``pid`` is not a child of this process.
        """
        self._require()
        return self._children.add(pid, callback)

    # ---- main_loop() and clock_step()

    def main_loop(self) -> int:
        """``qemu_main_loop``: ``main_loop_wait(False)`` until ``main_loop_should_exit()``;
        returns the exit status.  In the main thread, SIGINT/SIGTERM/SIGHUP that still have
        Python's default handlers request a shutdown while it runs (``system_killed``).
        RuntimeError if it is already running (a nested call from a callback)."""
        self._require()
        if self._running:
            raise RuntimeError("main_loop() is already running")
        self._running = True
        try:
            installed = self._install_termination_signals()
            took = False
            if not self.bql.locked():
                self.bql.lock()
                took = True
            try:
                rs = self._runstate
                rs.status = 0
                wait = self._wait.main_loop_wait
                while not rs.main_loop_should_exit():
                    wait(False)
                return rs.status
            finally:
                if took:
                    self.bql.unlock()
                for sig in installed:
                    self.remove_signal_handler(sig)
        finally:
            self._running = False

    def _install_termination_signals(self) -> list[int]:
        if threading.current_thread() is not threading.main_thread():
            return []
        installed: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if sig in self._signals:
                continue
            if signal.getsignal(sig) not in (signal.SIG_DFL, signal.default_int_handler):
                continue
            self.add_signal_handler(sig, functools.partial(self._runstate.system_killed, sig))
            installed.append(sig)
        return installed

    def clock_step(self, ns: int | None = None) -> int:
        """QEMU qtest's ``clock_step``, for deterministic tests on the manual VIRTUAL clock.

        Advances VIRTUAL by ``ns``, or, when ``ns`` is None, to the next VIRTUAL deadline of
        any context (no move if no VIRTUAL timer is armed), running the timers due on the way
        in order (``clock_advance_virtual_time``); then polls the main context without
        blocking until it makes no more progress, so coroutines and BHs those timers woke
        run too.  Returns the new VIRTUAL time in ns.  RuntimeError unless
        ``clock_set_manual(True)``.  Callback exceptions are raised at the end (the first).
        """
        impl = self._impl
        if not impl.clock_is_manual():
            raise RuntimeError("clock_step() needs the manual clock: clock_set_manual(True)")
        now = impl.clock_get_ns(ClockType.VIRTUAL)
        if ns is None:
            deadline = impl.virtual_deadline()
            dest = now + (max(0, deadline))
        else:
            step = _int64_arg(ns, "ns")
            if step < 0:
                raise ValueError(f"ns must be >= 0, got {step}")
            dest = _int64_arg(now + step, "VIRTUAL time + ns")
        ctx = self._require()
        errors: list[BaseException] = []
        try:
            impl.clock_advance_virtual_time(dest)
        except BaseException as exc:
            errors.append(exc)
        while True:
            try:
                if not ctx.poll(False):
                    break
            except BaseException as exc:  # the iteration completed: go on, raise at the end
                errors.append(exc)
        if errors:
            _raise_errors(errors)
        return int(dest)


# The notify BH only has to run (progress for a nested poll of the main context): its
# callback is a builtin that does nothing, so no Python frame is built for it.
_dummy = int


_SHARED: dict[str, Any] = {
    "RunState": RunState,
    "ShutdownCause": ShutdownCause,
    "WakeupReason": WakeupReason,
    "MainLoopPollState": MainLoopPollState,
    "PollFD": PollFD,
    "MainLoopPoll": MainLoopPoll,
    "Coroutine": _coroutine.Coroutine,
    "coroutine_yield": _coroutine.coroutine_yield,
    "coroutine_self": _coroutine.coroutine_self,
    "in_coroutine": _coroutine.in_coroutine,
    "co_wake": _coroutine.co_wake,
    "co_sleep_ns": _coroutine.co_sleep_ns,
    "get_current_aio_context": _coroutine.get_current_aio_context,
    "set_current_aio_context": _coroutine.set_current_aio_context,
    "co_reschedule_self": _coroutine.co_reschedule_self,
    "ThreadPool": _threadpool.ThreadPool,
    "ThreadPoolRequest": _threadpool.ThreadPoolRequest,
    "aio_wait_kick": _aio_wait.aio_wait_kick,
    "aio_wait_while": _aio_wait.aio_wait_while,
    "aio_wait_bh_oneshot": _aio_wait.aio_wait_bh_oneshot,
}
