"""Virtual time for qloop's asyncio event loop, shared by both implementations.

A virtual-time loop (``new_event_loop(virtual_time=True)``) runs its timers on qloop's VIRTUAL
clock in manual mode (QEMU's qtest clock): ``loop.time()`` moves only when the loop moves it.
The hot part lives in the implementation's base (``_vt_iteration``: a zero-timeout poll, then a
jump to the next virtual deadline when nothing is ready); this mixin holds the rest:

* the options and the process-wide clock mode (``_ClockLease``: the first virtual-time loop of
  an implementation turns manual mode on and enables VIRTUAL, the last one to close restores
  both);
* the idle decisions the fast path leaves to Python (``_vt_idle``): wait for real-time work in
  flight (executor jobs, subprocesses: ``_real_work_begin``/``_real_work_end``), the optional
  real-time grace (``autojump_after``), ``advance()`` goals, and the deadlock error;
* ``loop.advance(seconds)`` and ``await qloop.advance(seconds)``.

The user-facing description is docs/virtual-time.md; the hooks other code calls are listed
there too ("Real-time work").
"""

from __future__ import annotations

import asyncio
import heapq
import math
import sys
import threading
from typing import Any

from .._constants import ClockType
from . import deadlock as _vt_deadlock
from .base import MixinBase

__all__ = ["VirtualTimeAPI", "advance", "check_options"]

_INT64_MAX = 2**63 - 1
_REALTIME = ClockType.REALTIME
_VIRTUAL = ClockType.VIRTUAL


def _number(value: Any, what: str) -> float:
    if isinstance(value, (bool, str, bytes, bytearray)) or value is None:
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be finite, got {number!r}")
    return number


def check_options(virtual_time: Any, autojump: Any, start: Any,
                  autojump_after: Any) -> tuple[bool, bool, float, float | None]:
    """The virtual-time keywords of ``new_event_loop``, checked (before anything is made)."""
    if not isinstance(virtual_time, bool):
        raise TypeError(f"virtual_time must be a bool, not {type(virtual_time).__name__}")
    if not isinstance(autojump, bool):
        raise TypeError(f"autojump must be a bool, not {type(autojump).__name__}")
    start_s = _number(start, "start")
    grace: float | None = None
    if autojump_after is not None:
        grace = _number(autojump_after, "autojump_after")
        if grace < 0:
            raise ValueError(f"autojump_after must be >= 0 seconds, got {grace!r}")
    if not virtual_time and (autojump is not True or start_s != 0.0 or grace is not None):
        raise ValueError("autojump=, start= and autojump_after= need virtual_time=True")
    if abs(start_s) >= 9.2e9:
        raise ValueError(f"start must be within +-9.2e9 seconds (int64 ns), got {start_s!r}")
    return virtual_time, autojump, start_s, grace


class _ClockLease:
    """The process-wide VIRTUAL clock of one implementation, while virtual-time loops of that
    implementation are open: manual mode on and VIRTUAL enabled; both flags restored when the
    last one closes (VIRTUAL's value is kept: it never goes back)."""

    def __init__(self, impl: Any) -> None:
        self.impl = impl
        self.count = 0
        self.saved: tuple[bool, bool] = (False, False)
        self.lock = threading.Lock()

    def acquire(self) -> None:
        impl = self.impl
        with self.lock:
            if self.count == 0:
                self.saved = (impl.clock_is_manual(), impl.clock_is_enabled(_VIRTUAL))
                impl.clock_set_manual(True)
                impl.clock_enable(_VIRTUAL, True)
            self.count += 1

    def release(self) -> None:
        impl = self.impl
        with self.lock:
            self.count -= 1
            if self.count == 0:
                manual, enabled = self.saved
                impl.clock_enable(_VIRTUAL, enabled)
                impl.clock_set_manual(manual)


_leases: dict[str, _ClockLease] = {}
_leases_lock = threading.Lock()


def _lease_for(impl: Any) -> _ClockLease:
    with _leases_lock:
        lease = _leases.get(impl.__name__)
        if lease is None:
            lease = _leases[impl.__name__] = _ClockLease(impl)
        return lease


class VirtualTimeAPI(MixinBase):
    """The virtual-time half of every qloop EventLoop (plain Python, off the hot path)."""

    _vt_enabled: bool
    _vt_autojump: bool
    _vt_grace_s: float | None
    _vt_inflight: int
    _vt_goal: int | None
    _vt_waiters: list[tuple[int, int, Any]]
    _vt_seq: int
    _vt_stop_at_goal: bool
    _vt_hold: bool
    _vt_lease: _ClockLease | None
    _vt_grace_timer: Any
    _vt_grace_fired: bool

    def _init_virtual_time(self, virtual_time: bool, autojump: bool, start: float,
                           autojump_after: float | None) -> None:
        self._vt_enabled = virtual_time
        self._vt_autojump = autojump
        self._vt_grace_s = autojump_after or None
        self._vt_inflight = 0
        self._vt_goal = None
        self._vt_waiters = []
        self._vt_seq = 0
        self._vt_stop_at_goal = False
        self._vt_hold = False
        self._vt_lease = None
        self._vt_grace_timer = None
        self._vt_grace_fired = False
        if not virtual_time:
            return
        impl = sys.modules[type(self).__module__]
        lease = _lease_for(impl)
        lease.acquire()
        self._vt_lease = lease
        start_ns = round(start * 1e9)
        self._set_virtual_clock(start_ns - impl.clock_get_ns(_VIRTUAL))  # type: ignore
        self._vt_refresh_fast()

    def _close_virtual_time(self) -> None:
        timer, self._vt_grace_timer = self._vt_grace_timer, None
        if timer is not None and not self.aio_context.closed:
            timer.delete()
        self._vt_waiters = []
        self._vt_goal = None
        lease, self._vt_lease = self._vt_lease, None
        if lease is not None:
            lease.release()

    # ---- state

    @property
    def virtual_time(self) -> bool:
        """Whether ``loop.time()`` is virtual (``new_event_loop(virtual_time=True)``)."""
        return self._vt_enabled

    @property
    def autojump(self) -> bool:
        """Whether an idle virtual-time loop jumps to its next deadline (else: ``advance``)."""
        return self._vt_enabled and self._vt_autojump

    @property
    def autojump_after(self) -> float | None:
        """Real seconds an idle virtual-time loop waits for real I/O before it jumps (None:
        it jumps at once)."""
        return self._vt_grace_s

    def _vt_refresh_fast(self) -> None:
        self._vt_set_fast(
            self._vt_enabled and self._vt_autojump and not self._vt_grace_s
            and not self._vt_inflight and self._vt_goal is None and not self._vt_waiters)
        self._vt_set_pending(
            self._vt_enabled and (self._vt_goal is not None or bool(self._vt_waiters)))

    def _vt_check(self, what: str) -> None:
        if not self._vt_enabled:
            raise RuntimeError(f"{what} needs a virtual-time event loop "
                               f"(new_event_loop(virtual_time=True))")

    def _vt_target(self, seconds: Any) -> int:
        s = _number(seconds, "seconds")
        if s < 0:
            raise ValueError(f"seconds must be >= 0, got {s!r}")
        target: int = self._vt_now_ns() + round(s * 1e9)
        return min(target, _INT64_MAX)

    def _vt_set_goal(self, target: int) -> None:
        if self._vt_goal is None or target > self._vt_goal:
            self._vt_goal = target
        self._vt_refresh_fast()

    # ---- advance

    def advance(self, seconds: float) -> float:
        """Move virtual time forward by ``seconds``, running every callback due on the way in
        deadline order (in manual mode, the only way time moves).

        Called while the loop is not running, it runs the loop until virtual time reaches the
        target and nothing is left to do at it, and returns the new ``loop.time()``.  Called
        from one of the loop's callbacks, it sets the target and returns it at once; the loop
        gets there after the callback returns (``await qloop.advance(seconds)`` also waits).
        """
        self._vt_check("loop.advance()")
        target = self._vt_target(seconds)
        if self.is_running():
            owner = self._thread_id()
            if owner is not None and owner != threading.get_ident():
                raise RuntimeError("loop.advance() called from another thread than the "
                                   "loop's; use loop.call_soon_threadsafe(loop.advance, s)")
            self._vt_set_goal(target)
            self._vt_hold = True  # what is queued now runs before time moves
            return target / 1e9
        self._check_closed_py()
        self._vt_set_goal(target)
        self._vt_stop_at_goal = True
        try:
            self.run_forever()
        finally:
            self._vt_stop_at_goal = False
            self._vt_goal = None
            self._vt_refresh_fast()
        return self.time()  # type: ignore[attr-defined,no-any-return]

    def _advance_async(self, seconds: float) -> asyncio.Future[float]:
        self._vt_check("qloop.advance()")
        target = self._vt_target(seconds)
        fut: asyncio.Future[float] = self.create_future()
        self._vt_seq += 1
        heapq.heappush(self._vt_waiters, (target, self._vt_seq, fut))
        fut.add_done_callback(self._vt_waiter_done)
        self._vt_hold = True  # what is queued now runs before time moves
        self._vt_refresh_fast()
        return fut

    def _vt_waiter_done(self, fut: asyncio.Future[float]) -> None:
        """A cancelled ``await qloop.advance()`` withdraws its target."""
        if fut.cancelled():
            self._vt_drop_cancelled()

    def _vt_drop_cancelled(self) -> None:
        # a cancelled waiter's target goes at once (its done callback runs only later)
        waiters = self._vt_waiters
        if any(w[2].done() for w in waiters):
            waiters = [w for w in waiters if not w[2].done()]
            heapq.heapify(waiters)
            self._vt_waiters = waiters
            self._vt_refresh_fast()

    def _vt_step(self) -> None:
        """Called at the start of each iteration while an advance is pending, whether or not
        the loop is busy: move virtual time toward the nearest target ahead, stopping at each
        deadline on the way (the iteration's poll then runs the timers due there, so they run
        in deadline order, each at its own time)."""
        if self._vt_hold:
            # one iteration between steps: the handles queued before a step or before the
            # advance was asked for (what the timers there scheduled, a task just created)
            # run first, at that time
            self._vt_hold = False
            return
        self._vt_drop_cancelled()
        impl = sys.modules[type(self).__module__]
        if not impl.clock_is_manual() or not impl.clock_is_enabled(_VIRTUAL):
            return  # the clock runs by itself
        now: int = self._vt_now_ns()
        off: int = self._vt_offset_ns()
        nxt: int = self._vt_next_deadline()
        if 0 <= nxt and nxt + off <= now:
            return  # a timer is due now: it runs first
        goal = self._vt_goal
        if goal is not None and now >= goal and not self._vt_stop_at_goal:
            self._vt_goal = goal = None  # reached (from outside, advance() stops when idle)
            self._vt_refresh_fast()
        waiters = self._vt_waiters
        if waiters and waiters[0][0] <= now and self._vt_busy():
            # reached while the loop stays busy: resume the callers (when it is idle,
            # _vt_idle does, after everything due by then ran)
            while waiters and waiters[0][0] <= now:
                fut = heapq.heappop(waiters)[2]
                if not fut.done():
                    fut.set_result(now / 1e9)
            self._vt_refresh_fast()
        ahead = [w[0] for w in waiters if w[0] > now]
        if goal is not None and goal > now:
            ahead.append(goal)
        if not ahead:
            return
        dest = min(ahead) - off
        if nxt >= 0:
            dest = min(dest, nxt)
        self._vt_jump(dest)
        self._vt_hold = True

    # ---- real-time work in flight (executor jobs, subprocesses): never jumped past

    def _real_work_begin(self) -> None:
        """Real-time work the loop started (an executor job, a subprocess) is running: an
        idle virtual-time loop waits for it (real time) instead of jumping.  Loop thread."""
        self._vt_inflight += 1
        self._vt_refresh_fast()

    def _real_work_end(self) -> None:
        """The work announced by ``_real_work_begin`` is over (call it after its result was
        delivered to the loop).  Loop thread; from another thread use
        ``_real_work_done_threadsafe``."""
        if self._vt_inflight > 0:
            self._vt_inflight -= 1
            self._vt_refresh_fast()

    def _real_work_done_threadsafe(self, *_: Any) -> None:
        """``_real_work_end`` from any thread (queued behind what that thread queued before)."""
        try:
            self.call_soon_threadsafe(self._real_work_end)
        except RuntimeError:
            pass  # the loop is closed: nothing waits any more

    def _track_real_work(self, cfut: Any) -> None:
        """Count ``cfut`` (a concurrent.futures.Future) as real-time work until it is done."""
        self._real_work_begin()
        cfut.add_done_callback(self._real_work_done_threadsafe)

    # ---- the idle decisions

    def _vt_idle(self) -> None:
        """Called by the run loop when a zero-timeout poll found nothing to do and the fast
        path did not jump: decide what an idle virtual-time loop does now."""
        if self._is_stopping():
            return
        self._vt_drop_cancelled()
        now: int = self._vt_now_ns()
        waiters = self._vt_waiters
        if waiters and waiters[0][0] <= now:
            while waiters and waiters[0][0] <= now:
                fut = heapq.heappop(waiters)[2]
                if not fut.done():
                    fut.set_result(now / 1e9)
            self._vt_refresh_fast()
            return
        goal = self._vt_goal
        if goal is not None and now >= goal:
            self._vt_goal = None
            self._vt_refresh_fast()
            if self._vt_stop_at_goal:
                self.stop()
            return
        ctx = self.aio_context
        if self._vt_inflight:
            ctx.poll(True)  # an executor job or a subprocess answers in real time
            return
        impl = sys.modules[type(self).__module__]
        if not impl.clock_is_manual() or not impl.clock_is_enabled(_VIRTUAL):
            ctx.poll(True)  # someone took the clock out of manual mode: it runs by itself
            return
        nxt, real_timers, fds = self._vt_probe()
        off: int = self._vt_offset_ns()
        dest: int | None = None
        if nxt >= 0 and (self._vt_autojump or goal is not None or waiters):
            dest = nxt
        for bound in (waiters[0][0] if waiters else None, goal):
            if bound is not None:
                dest = bound - off if dest is None else min(dest, bound - off)
        if dest is not None:
            if self._vt_grace_s and self._vt_grace_wait():
                return  # real I/O or a thread answered: run it first
            self._vt_jump(dest)
            return
        if real_timers or _vt_deadlock.could_wake(self, fds):
            ctx.poll(True)  # a REALTIME/HOST timer or an fd may still wake it
            return
        raise _vt_deadlock.deadlock_error(
            self, autojump=self._vt_autojump,
            next_timer=None if nxt < 0 else (nxt + off) / 1e9,
            fd_notes=_vt_deadlock.classify_fds(self, fds))

    def _vt_grace_wait(self) -> bool:
        """Wait up to ``autojump_after`` real seconds for real I/O or a thread; True if it
        brought work (then the loop runs it instead of jumping)."""
        ctx = self.aio_context
        timer = self._vt_grace_timer
        if timer is None:
            timer = self._vt_grace_timer = ctx.timer_new_ns(_REALTIME, self._vt_grace_expired)
        impl = sys.modules[type(self).__module__]
        self._vt_grace_fired = False
        timer.mod_ns(impl.clock_get_ns(_REALTIME) + round((self._vt_grace_s or 0.0) * 1e9))
        try:
            while True:
                ctx.poll(True)
                if self._vt_busy():
                    return True
                if self._vt_grace_fired or self._is_stopping():
                    return False
        finally:
            if not ctx.closed:
                timer.delete()

    def _vt_grace_expired(self) -> None:
        self._vt_grace_fired = True


async def advance(seconds: float) -> float:
    """``await qloop.advance(seconds)``: move the running virtual-time loop's time forward by
    ``seconds``, running every callback due on the way in deadline order; returns the new
    ``loop.time()`` once everything due by then has run."""
    loop = asyncio.get_running_loop()
    method = getattr(loop, "_advance_async", None)
    if method is None:
        raise RuntimeError(f"qloop.advance() needs a running virtual-time qloop event loop, "
                           f"not {type(loop).__module__}.{type(loop).__qualname__}")
    result: float = await method(seconds)
    return result
