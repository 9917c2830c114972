"""The fallback's clocks and timeouts: QEMU's four clocks (VIRTUAL frozen, manual or
running), ``soonest_timeout``/``timeout_ns_to_ms``, and the virtual-time steps
(docs/timers-and-clocks.md).  Twin of ``qloop/_cy/clock.pxi``.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import AioContext

from .._common import (
    _clock_of,
    _int64_arg,
    _int_arg,
    _raise_errors,
)
from .._constants import (
    SCALE_MS,
    SCALE_US,
    ClockType,
)

_INT32_MAX = 2**31 - 1
_UINT64 = 2**64 - 1
_monotonic_ns = time.monotonic_ns
_time_ns = time.time_ns


# --------------------------------------------------------------------------------------------
# Timeouts (docs/timers-and-clocks.md, "Deadlines and timeouts")


def soonest_timeout(a: int, b: int) -> int:
    """``qemu_soonest_timeout``: the smaller of two timeouts where -1 means infinite."""
    a = _int64_arg(a, "a")
    b = _int64_arg(b, "b")
    return a if (a & _UINT64) <= (b & _UINT64) else b


def timeout_ns_to_ms(ns: int) -> int:
    """``qemu_timeout_ns_to_ms``: -1 stays -1, 0 is 0, otherwise rounded up, capped at INT32_MAX."""
    ns = _int_arg(ns, "ns")
    if ns < 0:
        return -1
    if ns == 0:
        return 0
    return min((ns + 999_999) // 1_000_000, _INT32_MAX)


def _soonest(a: int, b: int) -> int:
    if a < 0:
        return b
    if b < 0:
        return a
    return min(b, a)


# --------------------------------------------------------------------------------------------
# Clocks (docs/timers-and-clocks.md).  VIRTUAL starts at 0 and disabled; while enabled it
# advances with the monotonic clock, while disabled (or in manual mode) it is frozen.


class _ClockState:
    __slots__ = ("enabled", "lock", "manual", "manual_ns", "virtual_base", "virtual_start")

    def __init__(self) -> None:
        self.enabled = [True, False, True, True]
        self.virtual_base = 0
        self.virtual_start = 0
        self.manual = False
        self.manual_ns = 0
        self.lock = threading.Lock()

    def virtual_now(self) -> int:
        if self.manual:
            return self.manual_ns
        if self.enabled[ClockType.VIRTUAL]:
            return self.virtual_base + (_monotonic_ns() - self.virtual_start)
        return self.virtual_base


_clocks = _ClockState()
# Every open AioContext, so clock changes can notify their timer lists.
_contexts: weakref.WeakSet[AioContext] = weakref.WeakSet()


def _clock_now(clock: int) -> int:
    if clock == 0:
        return _monotonic_ns()
    if clock == 2:
        return _time_ns()
    return _clocks.virtual_now()


def clock_get_ns(clock: int) -> int:
    """``qemu_clock_get_ns``: the current time of ``clock`` in nanoseconds."""
    return _clock_now(_clock_of(clock))


def clock_get_us(clock: int) -> int:
    """``qemu_clock_get_us``."""
    return clock_get_ns(clock) // SCALE_US


def clock_get_ms(clock: int) -> int:
    """``qemu_clock_get_ms``."""
    return clock_get_ns(clock) // SCALE_MS


def clock_is_enabled(clock: int) -> bool:
    """Whether timers on ``clock`` run and bound the wait (VIRTUAL starts disabled)."""
    return _clocks.enabled[_clock_of(clock)]


def clock_enable(clock: int, enabled: bool) -> None:
    """``qemu_clock_enable``.  Enabling notifies every context so it recomputes its deadline.

    Unlike QEMU, disabling does not wait for a concurrent run of that clock's timers.
    """
    c = _clock_of(clock)
    on = bool(enabled)
    st = _clocks
    with st.lock:
        was = st.enabled[c]
        if was == on:
            return
        if c == ClockType.VIRTUAL and not st.manual:
            if on:
                st.virtual_start = _monotonic_ns()
            else:
                st.virtual_base = st.virtual_now()
        st.enabled[c] = on
    if on:
        for ctx in list(_contexts):
            ctx._notify()


def clock_set_manual(manual: bool) -> None:
    """Freeze VIRTUAL (and VIRTUAL_RT) so they move only by ``clock_advance_virtual_time``."""
    on = bool(manual)
    st = _clocks
    with st.lock:
        if on == st.manual:
            return
        if on:
            st.manual_ns = st.virtual_now()
            st.manual = True
        else:
            st.virtual_base = st.manual_ns
            st.virtual_start = _monotonic_ns()
            st.manual = False
    for ctx in list(_contexts):
        ctx._notify()


def clock_is_manual() -> bool:
    """Whether VIRTUAL moves only by ``clock_advance_virtual_time`` (``clock_set_manual``)."""
    return _clocks.manual


def _virtual_deadline() -> int:
    """ns until the next VIRTUAL timer of any open context (-1 none, 0 due)."""
    soonest = -1
    for ctx in list(_contexts):
        if not ctx._closed:
            e = ctx._timer_lists[ClockType.VIRTUAL].head_expire()
            if e >= 0 and (soonest < 0 or e < soonest):
                soonest = e
    if soonest < 0:
        return -1
    delta = soonest - _clocks.virtual_now()
    return max(0, delta)


def clock_advance_virtual_time(dest_ns: int) -> int:
    """Step the manual VIRTUAL clock to ``dest_ns`` (qtest's clock warp).

    VIRTUAL moves to each pending VIRTUAL deadline up to ``dest_ns`` in turn, running the due
    VIRTUAL timers of every open AioContext (in the calling thread) at each step; then it is
    set to ``dest_ns``.  Returns the new VIRTUAL time.  Timer exceptions are raised at the end
    (the first one; see ``AioContext.set_exception_handler``).
    """
    dest = _int64_arg(dest_ns, "dest_ns")
    st = _clocks
    if not st.manual:
        raise RuntimeError("clock_advance_virtual_time needs clock_set_manual(True)")
    if dest < st.manual_ns:
        raise ValueError(f"dest_ns {dest} is before the current VIRTUAL time {st.manual_ns}")
    errors: list[BaseException] = []
    while True:
        soonest = -1
        ctxs = [c for c in list(_contexts) if not c._closed]
        for ctx in ctxs:
            e = ctx._timer_lists[ClockType.VIRTUAL].head_expire()
            if e >= 0 and (soonest < 0 or e < soonest):
                soonest = e
        if soonest < 0 or soonest > dest:
            break
        st.manual_ns = max(st.manual_ns, soonest)
        ran = False
        for ctx in ctxs:
            saved = ctx._errors
            ctx._errors = errors
            try:
                ran |= ctx._timer_lists[ClockType.VIRTUAL].run()
            finally:
                ctx._errors = saved
        if not ran:
            break  # VIRTUAL is disabled: its timers never run (docs/timers-and-clocks.md)
    st.manual_ns = dest
    for ctx in list(_contexts):
        ctx._notify()
    if errors:
        _raise_errors(errors)
    return dest


def _virtual_jump(own: AioContext, dest: int) -> None:
    """A virtual-time event loop's autojump (docs/virtual-time.md): move the manual VIRTUAL
    clock forward to ``dest`` (never back) without running any timer here.  ``own`` runs its
    due timers in its next poll; another context whose VIRTUAL timers fall due is woken to run
    them in its own thread."""
    st = _clocks
    if not st.manual or dest <= st.manual_ns:
        return
    st.manual_ns = dest
    # the WeakSet's own references: this runs at every jump, and its iterator is slower
    refs: list[Any] = list(_contexts.data)  # type: ignore[attr-defined]
    if len(refs) > 1:
        for ref in refs:
            ctx = ref()
            if ctx is None or ctx is own or ctx._closed:
                continue
            virtual, virtual_rt = ctx._timer_lists[1], ctx._timer_lists[3]
            if not virtual.live and not virtual_rt.live:
                continue
            e = soonest_timeout(virtual.head_expire(), virtual_rt.head_expire())
            if 0 <= e <= dest:
                ctx._notify()
