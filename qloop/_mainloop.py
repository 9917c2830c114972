"""The process-wide main loop (spec §4), the big lock, signals, child watch and the run-state
machine (§5), written once over an implementation's AioContext.

Each implementation module creates one ``MainLoop`` over its own classes and re-exports its
bound methods (``MainLoop.exports()``), so ``qloop._core`` and ``qloop._fallback`` each have
their own process-wide loop.  This is not a hot path: ``main_loop_wait`` spends its time in the
AioContexts' dispatch, which is the implementation's.

How ``main_loop_wait`` maps onto QEMU's GLib-based one (§4.5): each AioContext (the main one
and the iohandler one) is driven like a GSource through ``source_prepare/query/check/
dispatch`` (§1.10); qloop itself plays GLib's default context: one ``poll(2)`` over the poll
notifiers' fds and both contexts' fds, with the big lock released around it.
"""

from __future__ import annotations

import errno
import functools
import os
import select
import signal
import socket
import sys
import threading
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from . import _coroutine, _glib
from ._common import NotifierList, _check_callback, _fd_of, _int_arg, _raise_errors
from ._constants import SCALE_MS, SCALE_NS, SCALE_US, ClockType
from ._runstate import TRANSITIONS, MainLoopPollState, RunState, ShutdownCause, WakeupReason

__all__ = ["MainLoop", "EXPORTS", "PollFD", "MainLoopPoll"]

UINT32_MAX = 0xFFFFFFFF

# Names each implementation module re-exports from its MainLoop (see MainLoop.exports()).
EXPORTS = (
    "init_main_loop", "main_loop_wait", "get_aio_context", "iohandler_get_aio_context",
    "notify_event", "set_fd_handler", "event_notifier_set_handler", "add_child_watch",
    "bh_new", "timer_new", "timer_new_ns", "timer_new_us", "timer_new_ms",
    "add_main_loop_poll_notifier", "remove_main_loop_poll_notifier",
    "bql_lock", "bql_unlock", "bql_locked", "bql",
    "add_signal_handler", "remove_signal_handler",
    "runstate_get", "runstate_set", "runstate_is_running", "runstate_check",
    "vm_start", "vm_stop", "add_vm_change_state_handler", "remove_vm_change_state_handler",
    "system_shutdown_request", "system_reset_request", "system_powerdown_request",
    "system_suspend_request", "system_wakeup_request", "system_wakeup_enable",
    "debug_request", "vm_stop_request", "system_killed",
    "register_reset", "unregister_reset", "set_shutdown_action", "set_reboot_action",
    "shutdown_notifiers", "powerdown_notifiers", "suspend_notifiers", "wakeup_notifiers",
    "main_loop", "main_loop_should_exit",
)

# Names shared by both implementations (plain Python, the same objects).
SHARED_EXPORTS = (
    "RunState", "ShutdownCause", "WakeupReason", "MainLoopPollState", "PollFD", "MainLoopPoll",
    "Coroutine", "coroutine_yield", "coroutine_self", "in_coroutine", "co_wake",
    "co_sleep_ns", "get_current_aio_context", "set_current_aio_context",
)


class PollFD:
    """A GPollFD: an fd a main-loop poll notifier adds during FILL; ``revents`` after the wait."""

    __slots__ = ("fd", "events", "revents")

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

    __slots__ = ("state", "timeout", "pollfds")

    def __init__(self, state: MainLoopPollState, timeout: int) -> None:
        self.state = state
        self.timeout = timeout
        self.pollfds: List[PollFD] = []


class _BigLock:
    """The BQL: a non-recursive lock that knows its owner.  ``with qloop.bql:`` takes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: Optional[int] = None

    def lock(self) -> None:
        me = threading.get_ident()
        if self._owner == me:
            raise RuntimeError("the BQL is already held by this thread")
        self._lock.acquire()
        self._owner = me

    def unlock(self) -> None:
        if self._owner != threading.get_ident():
            raise RuntimeError("the BQL is not held by this thread")
        self._owner = None
        self._lock.release()

    def locked(self) -> bool:
        return self._owner == threading.get_ident()

    def __enter__(self) -> "_BigLock":
        self.lock()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.unlock()

    def __repr__(self) -> str:
        return f"<qloop.bql {'held' if self._owner is not None else 'free'}>"


class MainLoop:
    """One implementation's process-wide main loop and run state."""

    def __init__(self, impl: Any) -> None:
        self._impl = impl  # the implementation's namespace: AioContext, clock_enable, ...
        self.bql = _BigLock()
        self.shutdown_notifiers = NotifierList()
        self.powerdown_notifiers = NotifierList()
        self.suspend_notifiers = NotifierList()
        self.wakeup_notifiers = NotifierList()
        self._poll_notifiers = NotifierList()
        self._ctx: Any = None
        self._iohandler_ctx: Any = None
        self._main_tlg: Any = None
        self._notify_bh: Any = None
        self._init_lock = threading.Lock()
        self._signal_callbacks: Dict[int, Callable[[], Any]] = {}
        self._signal_previous: Dict[int, Any] = {}
        self._signal_pending: Deque[int] = deque()
        self._wakeup_pair: Optional[Tuple[socket.socket, socket.socket]] = None
        self._wakeup_previous = -1
        self._child_watches: Dict[int, int] = {}  # pid -> pidfd
        self._glib: Any = None  # GLib's default context as a guest (None: no GLib)
        self._last_revents: Dict[int, int] = {}
        self._reset_state()

    def _reset_state(self) -> None:
        self._runstate = RunState.PRELAUNCH
        self._vm_handlers: List[Tuple[int, int, Callable[[bool, RunState], Any]]] = []
        self._vm_handler_seq = 0
        self._reset_handlers: List[Callable[[], Any]] = []
        self._shutdown_requested = ShutdownCause.NONE
        self._shutdown_signal = 0
        self._shutdown_forced = False
        self._exit_code: Optional[int] = None
        self._reset_requested = ShutdownCause.NONE
        self._suspend_requested = False
        self._wakeup_reason = WakeupReason.NONE
        self._wakeup_mask = {WakeupReason.RTC, WakeupReason.PMTIMER, WakeupReason.OTHER}
        self._powerdown_requested = False
        self._debug_requested = False
        self._vmstop_requests: Deque[RunState] = deque()  # append/popleft: signal-safe
        self._shutdown_action = "poweroff"
        self._reboot_action = "reset"
        self._status = 0

    def exports(self) -> Dict[str, Any]:
        names: Dict[str, Any] = {}
        for name in EXPORTS:
            names[name] = getattr(self, name)
        for name in SHARED_EXPORTS:
            names[name] = _SHARED[name]
        return names

    # ---- §4.1, §4.2

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
            tlg._set_timer_notify(self.notify_event)  # main-loop timers: qemu_notify_event
            self._notify_bh = ctx.bh_new(_dummy, name="qemu_notify_bh")
            self._iohandler_ctx = iohandler
            self._main_tlg = tlg
            self._glib = _glib.new_poller(getattr(impl, "glib_poller", None))
            self._ctx = ctx
            self._main_thread = threading.get_ident()
        _coroutine.set_current_aio_context(ctx)
        _coroutine.add_bql_context_provider(self._bql_context)

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
        for signum in list(self._signal_callbacks):
            self.remove_signal_handler(signum)
        for pid in list(self._child_watches):
            self._forget_child(pid)
        with self._init_lock:
            for ctx in (self._ctx, self._iohandler_ctx, self._main_tlg):
                if ctx is not None:
                    ctx.close()
            if _coroutine.get_current_aio_context() is self._ctx:
                _coroutine.set_current_aio_context(None)
            self._ctx = self._iohandler_ctx = self._main_tlg = None
            self._notify_bh = None
            self._glib = None
        self._poll_notifiers = NotifierList()
        for lst in (self.shutdown_notifiers, self.powerdown_notifiers,
                    self.suspend_notifiers, self.wakeup_notifiers):
            lst._entries.clear()
        self._reset_state()
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
        poll of the main context, §4.4).  A no-op before ``init_main_loop``; signal-safe."""
        bh = self._notify_bh
        if bh is not None:
            bh.schedule()

    # ---- §4.7 helpers

    def set_fd_handler(self, fd: Any, fd_read: Optional[Callable[[], Any]],
                       fd_write: Optional[Callable[[], Any]] = None) -> None:
        """``qemu_set_fd_handler``: level-triggered handlers on the iohandler context."""
        self._require()
        self._iohandler_ctx.set_fd_handler(fd, fd_read, fd_write)

    def event_notifier_set_handler(self, notifier: Any,
                                   handler: Optional[Callable[[Any], Any]]) -> None:
        """``event_notifier_set_handler``: ``handler(notifier)`` on the iohandler context; it
        must clear the notifier or it fires on every iteration."""
        self._require()
        self._iohandler_ctx.set_event_notifier(notifier, handler)

    def bh_new(self, callback: Callable[[], Any], *, name: Optional[str] = None) -> Any:
        """``qemu_bh_new``: a BH of the main context."""
        return self._require().bh_new(callback, name=name)

    def timer_new(self, clock: int, scale: int, callback: Callable[[], Any], *,
                  attributes: int = 0) -> Any:
        """``timer_new``: a timer on the main-loop timer lists (run last in main_loop_wait)."""
        self._require()
        return self._main_tlg.timer_new(clock, scale, callback, attributes=attributes)

    def timer_new_ns(self, clock: int, callback: Callable[[], Any], *, attributes: int = 0) -> Any:
        return self.timer_new(clock, SCALE_NS, callback, attributes=attributes)

    def timer_new_us(self, clock: int, callback: Callable[[], Any], *, attributes: int = 0) -> Any:
        return self.timer_new(clock, SCALE_US, callback, attributes=attributes)

    def timer_new_ms(self, clock: int, callback: Callable[[], Any], *, attributes: int = 0) -> Any:
        return self.timer_new(clock, SCALE_MS, callback, attributes=attributes)

    def add_main_loop_poll_notifier(self, callback: Callable[[MainLoopPoll], Any]) -> None:
        """``main_loop_poll_add_notifier``: ``callback(mlpoll)`` before (FILL) and after (OK/ERR)
        each wait; most recently added first."""
        self._poll_notifiers.add(callback)

    def remove_main_loop_poll_notifier(self, callback: Callable[[MainLoopPoll], Any]) -> None:
        self._poll_notifiers.remove(callback)

    # ---- the big lock

    def bql_lock(self) -> None:
        """Take the big lock (``bql_lock``); RuntimeError if this thread holds it already."""
        self.bql.lock()

    def bql_unlock(self) -> None:
        self.bql.unlock()

    def bql_locked(self) -> bool:
        """Whether this thread holds the big lock."""
        return self.bql.locked()

    # ---- §4.5

    def main_loop_wait(self, nonblocking: bool = False) -> int:
        """One iteration of the main loop, in §4.5's order.  Returns the poll result (< 0 on
        error, 0 on timeout, else the number of ready fds).

        Holds the big lock except during the wait (taking it for the call if this thread
        does not hold it).  Callback exceptions: the iteration completes, then the first is
        raised (later ones are logged on the ``qloop`` logger).
        """
        ctx = self._require()
        took = False
        if not self.bql.locked():
            self.bql.lock()
            took = True
        errors: List[BaseException] = []
        try:
            mlpoll = MainLoopPoll(MainLoopPollState.FILL, 0 if nonblocking else UINT32_MAX)
            self._notify_poll(mlpoll, errors)
            timeout_ms = _int_arg(mlpoll.timeout, "MainLoopPoll.timeout")
            if timeout_ms == UINT32_MAX or timeout_ms < 0:
                timeout_ns = -1
            else:
                timeout_ns = timeout_ms * SCALE_MS
            timeout_ns = self._impl.soonest_timeout(timeout_ns, self._main_tlg.timers_deadline())
            ret = self._host_wait(ctx, mlpoll, timeout_ns, errors)
            mlpoll.state = MainLoopPollState.ERR if ret < 0 else MainLoopPollState.OK
            self._notify_poll(mlpoll, errors)
            try:
                self._main_tlg.run_timers()
            except BaseException as exc:
                errors.append(exc)
        finally:
            if took:
                self.bql.unlock()
        if errors:
            _raise_errors(errors)
        return ret

    def _notify_poll(self, mlpoll: MainLoopPoll, errors: List[BaseException]) -> None:
        try:
            self._poll_notifiers.notify(mlpoll)
        except BaseException as exc:
            errors.append(exc)

    def _host_wait(self, ctx: Any, mlpoll: MainLoopPoll, timeout_ns: int,
                   errors: List[BaseException]) -> int:
        """``os_host_main_loop_wait``: prepare/query both contexts, one poll with the BQL
        released, then check and dispatch."""
        impl = self._impl
        sources = (ctx, self._iohandler_ctx)
        glib_ns = -1
        for source in sources:
            t = source.source_prepare()
            # GLib works in ms: the contexts' timeouts are rounded up to whole ms (§4.5b)
            ms = impl.timeout_ns_to_ms(t)
            glib_ns = impl.soonest_timeout(glib_ns, -1 if ms < 0 else ms * SCALE_MS)
        queries = [source.source_query() for source in sources]
        glib = self._glib
        glib_fds: List[Tuple[int, int]] = []
        if glib is not None:
            g_ns, glib_fds = glib.fill()  # GLib's own sources (PyGObject timeouts, watches...)
            glib_ns = impl.soonest_timeout(glib_ns, g_ns)
        try:
            return self._poll_check_dispatch(sources, queries, mlpoll, glib_fds,
                                             impl.soonest_timeout(glib_ns, timeout_ns), errors)
        finally:
            if glib is not None:
                try:
                    glib.poll(self._last_revents)
                except BaseException as exc:
                    errors.append(exc)

    def _poll_check_dispatch(self, sources: Tuple[Any, ...], queries: List[List[Tuple[int, int]]],
                             mlpoll: MainLoopPoll, glib_fds: List[Tuple[int, int]],
                             timeout_ns: int, errors: List[BaseException]) -> int:
        impl = self._impl
        poller = select.poll()
        fds: Dict[int, int] = {}
        for pfd in mlpoll.pollfds:
            fds[pfd.fd] = fds.get(pfd.fd, 0) | pfd.events
        for query in queries:
            for fd, events in query:
                fds[fd] = fds.get(fd, 0) | events
        for fd, events in glib_fds:
            fds[fd] = fds.get(fd, 0) | events
        self._last_revents = {}
        for fd, events in fds.items():
            poller.register(fd, events)
        self.bql.unlock()
        try:
            try:
                ready = poller.poll(impl.timeout_ns_to_ms(timeout_ns))
                ret = len(ready)
            except OSError as exc:
                ready = []
                ret = -1
                if exc.errno != errno.EINTR:
                    errors.append(exc)
            except BaseException as exc:  # KeyboardInterrupt from a signal handler
                ready = []
                ret = -1
                errors.append(exc)
        finally:
            self.bql.lock()
        revents = self._last_revents = dict(ready)
        for pfd in mlpoll.pollfds:
            pfd.revents = revents.get(pfd.fd, 0) & (pfd.events | select.POLLERR | select.POLLHUP
                                                    | select.POLLNVAL)
        due = []
        for source, query in zip(sources, queries):
            try:
                if source.source_check([revents.get(fd, 0) for fd, _ in query]):
                    due.append(source)
            except BaseException as exc:
                errors.append(exc)
        for source in due:
            try:
                source.source_dispatch()
            except BaseException as exc:
                errors.append(exc)
        return ret

    # ---- signals (§4.3)

    def add_signal_handler(self, signum: int, callback: Callable[[], Any]) -> None:
        """Run ``callback()`` in the main loop when ``signum`` arrives.  The signal wakes a
        sleeping ``main_loop_wait`` at once.  Must be called from the main thread."""
        sig = self._check_signal(signum)
        _check_callback(callback, "callback", optional=False)
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("add_signal_handler() must be called from the main thread")
        self._require()
        self._install_wakeup_fd()
        try:
            previous = signal.signal(sig, self._on_signal)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ValueError(f"signal {_signame(sig)} cannot be handled: {exc}") from None
        if sig not in self._signal_previous:
            self._signal_previous[sig] = previous
        self._signal_callbacks[sig] = callback

    def remove_signal_handler(self, signum: int) -> bool:
        """Restore the handler ``signum`` had before; False if qloop was not handling it."""
        sig = self._check_signal(signum)
        if sig not in self._signal_callbacks:
            return False
        del self._signal_callbacks[sig]
        previous = self._signal_previous.pop(sig, signal.SIG_DFL)
        signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        if not self._signal_callbacks:
            self._remove_wakeup_fd()
        return True

    @staticmethod
    def _check_signal(signum: Any) -> int:
        sig = _int_arg(signum, "signum")
        if not 1 <= sig < signal.NSIG:
            raise ValueError(f"invalid signal number {sig}")
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            raise ValueError(f"signal {_signame(sig)} cannot be handled")
        return sig

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Python runs this in the main thread between bytecodes: only signal-safe work here.
        # Like QEMU's signalfd (§4.3), the callbacks run from the iohandler context, which only
        # main_loop_wait dispatches (never a nested poll of the main context).
        self._signal_pending.append(signum)
        pair = self._wakeup_pair
        if pair is not None:
            try:
                pair[1].send(b"\0")
            except OSError:
                pass  # full: the read side is readable anyway

    def _on_wakeup_readable(self, sock: socket.socket) -> None:
        _drain(sock)
        self._run_signal_callbacks()

    def _run_signal_callbacks(self) -> None:
        pending = self._signal_pending
        errors: List[BaseException] = []
        while pending:
            cb = self._signal_callbacks.get(pending.popleft())
            if cb is not None:
                try:
                    cb()
                except BaseException as exc:
                    errors.append(exc)
        if errors:
            _raise_errors(errors)

    def _install_wakeup_fd(self) -> None:
        # A signal delivered to another thread still wakes the main thread's poll.
        if self._wakeup_pair is not None:
            return
        r, w = socket.socketpair()
        r.setblocking(False)
        w.setblocking(False)
        self._wakeup_previous = signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
        self._wakeup_pair = (r, w)
        self._iohandler_ctx.set_fd_handler(r, functools.partial(self._on_wakeup_readable, r))

    def _remove_wakeup_fd(self) -> None:
        pair = self._wakeup_pair
        if pair is None:
            return
        signal.set_wakeup_fd(self._wakeup_previous)
        if self._iohandler_ctx is not None and not self._iohandler_ctx.closed:
            self._iohandler_ctx.set_fd_handler(pair[0], None)
        pair[0].close()
        pair[1].close()
        self._wakeup_pair = None

    # ---- child watch (§4.7, 4.1-only in QEMU)

    def add_child_watch(self, pid: int) -> int:
        """``qemu_add_child_watch``: reap child ``pid`` as soon as it exits (no zombie).

        Returns 1 if it was already watched, else 0.  ValueError if ``pid`` is not a child
        of this process.  Uses a pidfd on the iohandler context.
        """
        pid = _int_arg(pid, "pid")
        if pid <= 0:
            raise ValueError(f"invalid pid {pid}")
        self._require()
        if pid in self._child_watches:
            return 1
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            raise ValueError(f"pid {pid} is not a child of this process") from None
        if done == pid:
            return 0  # it had exited already: reaped now
        pidfd = os.pidfd_open(pid)
        self._child_watches[pid] = pidfd
        self._iohandler_ctx.set_fd_handler(pidfd, lambda: self._reap(pid))
        return 0

    def _reap(self, pid: int) -> None:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid  # reaped elsewhere
        if done == pid:
            self._forget_child(pid)

    def _forget_child(self, pid: int) -> None:
        pidfd = self._child_watches.pop(pid, None)
        if pidfd is not None:
            if self._iohandler_ctx is not None and not self._iohandler_ctx.closed:
                self._iohandler_ctx.set_fd_handler(pidfd, None)
            os.close(pidfd)

    # ---- run state (§5)

    def runstate_get(self) -> RunState:
        return self._runstate

    def runstate_check(self, state: RunState) -> bool:
        return self._runstate == RunState(state)

    def runstate_is_running(self) -> bool:
        return self._runstate == RunState.RUNNING

    def runstate_set(self, state: RunState) -> None:
        """Move to ``state``; ValueError for a transition QEMU does not allow.  Setting the
        current state again is a no-op."""
        new = _runstate_of(state)
        cur = self._runstate
        if new == cur:
            return
        if (cur, new) not in TRANSITIONS:
            raise ValueError(f"invalid runstate transition: '{cur.name}' -> '{new.name}'")
        self._runstate = new

    def add_vm_change_state_handler(self, callback: Callable[[bool, RunState], Any], *,
                                    priority: int = 0) -> Any:
        """``callback(running, state)`` on vm_start/vm_stop.  Starting calls handlers by
        ascending priority (registration order within one priority), stopping in reverse.
        Returns a handle for ``remove_vm_change_state_handler``."""
        _check_callback(callback, "callback", optional=False)
        self._vm_handler_seq += 1
        entry = (_int_arg(priority, "priority"), self._vm_handler_seq, callback)
        self._vm_handlers.append(entry)
        self._vm_handlers.sort(key=lambda e: (e[0], e[1]))
        return entry

    def remove_vm_change_state_handler(self, handle: Any) -> None:
        try:
            self._vm_handlers.remove(handle)
        except ValueError:
            raise ValueError(f"{handle!r} is not a registered vm change state handler") from None

    def _vm_state_notify(self, running: bool, state: RunState) -> None:
        handlers = list(self._vm_handlers)
        if not running:
            handlers.reverse()
        for _, _, cb in handlers:
            cb(running, state)

    def vm_start(self) -> None:
        """Enable the VIRTUAL clock, set RUNNING and notify change-state handlers (no-op if
        already running)."""
        if self._runstate == RunState.RUNNING:
            return
        self.runstate_set(RunState.RUNNING)
        self._impl.clock_enable(ClockType.VIRTUAL, True)
        self._vm_state_notify(True, RunState.RUNNING)

    def vm_stop(self, state: RunState = RunState.PAUSED) -> None:
        """If running: freeze the VIRTUAL clock, move to ``state`` and notify handlers."""
        new = _runstate_of(state)
        if self._runstate != RunState.RUNNING:
            return
        self.runstate_set(new)  # first: a forbidden transition leaves everything as it was
        self._impl.clock_enable(ClockType.VIRTUAL, False)
        self._vm_state_notify(False, new)

    def register_reset(self, callback: Callable[[], Any]) -> None:
        """``qemu_register_reset``: called on every system reset, in registration order."""
        self._reset_handlers.append(_check_callback(callback, "callback", optional=False))

    def unregister_reset(self, callback: Callable[[], Any]) -> None:
        try:
            self._reset_handlers.remove(callback)
        except ValueError:
            raise ValueError(f"{callback!r} is not a registered reset handler") from None

    def set_shutdown_action(self, action: str) -> None:
        """``-action shutdown=``: "poweroff" (default: main_loop() returns) or "pause"."""
        if action not in ("poweroff", "pause"):
            raise ValueError(f"unknown shutdown action {action!r} (poweroff or pause)")
        self._shutdown_action = action

    def set_reboot_action(self, action: str) -> None:
        """``-action reboot=``: "reset" (default) or "shutdown" (guest resets shut down)."""
        if action not in ("reset", "shutdown"):
            raise ValueError(f"unknown reboot action {action!r} (reset or shutdown)")
        self._reboot_action = action

    # ---- requests (§5.2): record a flag and wake the loop; thread- and signal-safe

    def system_shutdown_request(self, cause: ShutdownCause, *,
                                exit_code: Optional[int] = None) -> None:
        c = _cause_of(cause)
        if exit_code is not None:
            self._exit_code = _int_arg(exit_code, "exit_code")
        self._shutdown_requested = c
        self.notify_event()

    def system_killed(self, signum: int, pid: int = 0) -> None:
        """``qemu_system_killed``: a termination signal; shuts down even with action pause."""
        self._shutdown_signal = _int_arg(signum, "signum")
        self._shutdown_forced = True
        self._shutdown_requested = ShutdownCause.HOST_SIGNAL
        self.notify_event()

    def system_reset_request(self, cause: ShutdownCause) -> None:
        c = _cause_of(cause)
        if self._reboot_action == "shutdown" and c != ShutdownCause.SUBSYSTEM_RESET:
            self._shutdown_requested = c
        else:
            self._reset_requested = c
        self.notify_event()

    def system_suspend_request(self) -> None:
        if self._runstate == RunState.SUSPENDED:
            return
        self._suspend_requested = True
        self.notify_event()

    def system_wakeup_enable(self, reason: WakeupReason, enabled: bool) -> None:
        r = WakeupReason(_int_arg(reason, "reason"))
        if enabled:
            self._wakeup_mask.add(r)
        else:
            self._wakeup_mask.discard(r)

    def system_wakeup_request(self, reason: WakeupReason) -> None:
        """Wake a SUSPENDED machine now (RUNNING); RuntimeError if not suspended; ignored if
        ``reason`` was disabled with ``system_wakeup_enable``."""
        r = WakeupReason(_int_arg(reason, "reason"))
        if self._runstate != RunState.SUSPENDED:
            raise RuntimeError("Unable to wake up: guest is not in suspended state")
        if r not in self._wakeup_mask:
            return
        self.runstate_set(RunState.RUNNING)
        self._wakeup_reason = r
        self.notify_event()

    def system_powerdown_request(self) -> None:
        self._powerdown_requested = True
        self.notify_event()

    def debug_request(self) -> None:
        self._debug_requested = True
        self.notify_event()

    def vm_stop_request(self, state: RunState) -> None:
        s = _runstate_of(state)
        self._vmstop_requests.append(s)
        self.notify_event()

    # ---- §5.4

    def main_loop_should_exit(self) -> bool:
        """Handle pending requests in QEMU master's order; True when the loop must end
        (only a shutdown does that); the exit status is what ``main_loop()`` returns."""
        if self._debug_requested:
            self._debug_requested = False
            self.vm_stop(RunState.DEBUG)
        if self._suspend_requested:
            self._suspend_requested = False
            self.suspend_notifiers.notify(None)
            self.runstate_set(RunState.SUSPENDED)
        cause = self._shutdown_requested
        if cause != ShutdownCause.NONE:
            self._shutdown_requested = ShutdownCause.NONE
            if self._shutdown_signal:
                print(f"qloop: terminating on signal {self._shutdown_signal}", file=sys.stderr)
                self._shutdown_signal = 0
            self.shutdown_notifiers.notify(cause)
            forced = self._shutdown_forced
            self._shutdown_forced = False
            if self._shutdown_action == "pause" and not forced:
                self.vm_stop(RunState.SHUTDOWN)
            else:
                self._status = self._exit_code if self._exit_code is not None else 0
                return True
        cause = self._reset_requested
        if cause != ShutdownCause.NONE:
            self._reset_requested = ShutdownCause.NONE
            for handler in list(self._reset_handlers):
                handler()
            if self._runstate not in (RunState.RUNNING, RunState.INMIGRATE,
                                      RunState.FINISH_MIGRATE):
                self.runstate_set(RunState.PRELAUNCH)
        reason = self._wakeup_reason
        if reason != WakeupReason.NONE:
            self.wakeup_notifiers.notify(reason)
            self._wakeup_reason = WakeupReason.NONE
        if self._powerdown_requested:
            self._powerdown_requested = False
            self.powerdown_notifiers.notify(None)
        state: Optional[RunState] = None
        requests = self._vmstop_requests
        while requests:  # coalesced: the last request wins
            state = requests.popleft()
        if state is not None:
            self.vm_stop(state)
        return False

    def main_loop(self) -> int:
        """``qemu_main_loop``: ``main_loop_wait(False)`` until ``main_loop_should_exit()``;
        returns the exit status.  In the main thread, SIGINT/SIGTERM/SIGHUP that still have
        Python's default handlers request a shutdown while it runs (``system_killed``)."""
        self._require()
        installed = self._install_termination_signals()
        took = False
        if not self.bql.locked():
            self.bql.lock()
            took = True
        try:
            self._status = 0
            while not self.main_loop_should_exit():
                self.main_loop_wait(False)
            return self._status
        finally:
            if took:
                self.bql.unlock()
            for sig in installed:
                self.remove_signal_handler(sig)

    def _install_termination_signals(self) -> List[int]:
        if threading.current_thread() is not threading.main_thread():
            return []
        installed: List[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if sig in self._signal_callbacks:
                continue
            if signal.getsignal(sig) not in (signal.SIG_DFL, signal.default_int_handler):
                continue
            self.add_signal_handler(sig, functools.partial(self.system_killed, sig))
            installed.append(sig)
        return installed


def _dummy() -> None:
    pass


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except BlockingIOError:
        pass


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def _runstate_of(state: Any) -> RunState:
    try:
        return RunState(_int_arg(state, "state"))
    except ValueError:
        raise ValueError(f"unknown run state {state!r}") from None


def _cause_of(cause: Any) -> ShutdownCause:
    try:
        return ShutdownCause(_int_arg(cause, "cause"))
    except ValueError:
        raise ValueError(f"unknown shutdown cause {cause!r}") from None


_SHARED: Dict[str, Any] = {
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
}
