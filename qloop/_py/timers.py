"""The fallback's timers: one ``_TimerList`` per clock per context, and ``Timer``
(docs/timers-and-clocks.md).  Twin of ``qloop/_cy/timers.pxi``.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import AioContext

from .._common import (
    _int64_arg,
    _int_arg,
)
from .._constants import (
    ClockType,
)
from .clock import _clock_now, _clocks

Callback = Callable[[], Any]
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_new_object = object.__new__


# --------------------------------------------------------------------------------------------
# Timers (docs/timers-and-clocks.md).  One _TimerList per clock per context: a binary heap of
# plain ints, each (key + 2**63) << 64 | seq, so heap order is (expiry, arming order) with one
# int comparison (seq keeps equal expiries FIFO), and ``live`` maps an entry to its timer.
# Re-arming or deleting drops the old entry from ``live``; it stays in the heap, stale, until
# it surfaces or the heap is compacted (when stale entries dominate).

_timer_seq = itertools.count(1)
_heappush = heapq.heappush
_heappop = heapq.heappop
_KEY_BIAS = 1 << 63


class _TimerList:
    __slots__ = ("clock", "ctx", "heap", "live", "lock")

    def __init__(self, ctx: AioContext, clock: int) -> None:
        self.ctx = ctx
        self.clock = clock
        self.heap: list[int] = []
        self.live: dict[int, Timer] = {}
        self.lock = threading.Lock()

    def _head(self) -> int | None:
        heap = self.heap
        live = self.live
        while heap and heap[0] not in live:
            _heappop(heap)
        return heap[0] if heap else None

    def insert(self, timer: Timer, ns: int) -> None:
        """``timer_mod_ns``: (re)arm, notifying the context if the timer became the head."""
        with self.lock:
            live = self.live
            old = timer._entry
            if old is not None:
                del live[old]
                self._maybe_compact()
            entry = ((ns + _KEY_BIAS) << 64) | next(_timer_seq)
            live[entry] = timer
            timer._entry = entry
            timer._expire = max(0, ns)
            heap = self.heap
            _heappush(heap, entry)
            top = heap[0]
            is_head = top == entry or (top not in live and self._head() == entry)
        if is_head:
            self.ctx._timer_notify()

    def _maybe_compact(self) -> None:
        heap = self.heap
        if len(heap) > 128 and len(heap) > 2 * len(self.live):
            live = self.live
            heap[:] = [e for e in heap if e in live]  # in place: the list lives as long as self
            heapq.heapify(heap)

    def remove(self, timer: Timer) -> None:
        with self.lock:
            old = timer._entry
            if old is not None:
                del self.live[old]
                timer._entry = None
                self._maybe_compact()
            timer._expire = -1

    def head_expire(self) -> int:
        with self.lock:
            head = self._head()
            return -1 if head is None else self.live[head]._expire

    def deadline(self, for_wait: bool = True) -> int:
        """``timerlist_deadline_ns``.  ``for_wait``: in manual mode a virtual timer bounds a
        wait only once due (a wait must not sleep on real time for virtual time)."""
        if not self.heap:
            return -1
        if not _clocks.enabled[self.clock]:
            return -1
        expire = self.head_expire()
        if expire < 0:
            return -1
        delta = expire - _clock_now(self.clock)
        if delta <= 0:
            return 0
        if for_wait and _clocks.manual and (self.clock == 1 or self.clock == 3):
            return -1
        return delta

    def run(self) -> bool:
        """``timerlist_run_timers``: run every timer due at one reading of the clock."""
        if not self.heap or not _clocks.enabled[self.clock]:
            return False
        now = _clock_now(self.clock)
        progress = False
        lock = self.lock
        live = self.live
        while True:
            with lock:
                heap = self.heap
                if not heap:
                    break
                entry = heap[0]
                timer = live.get(entry)
                if timer is None:
                    _heappop(heap)  # stale
                    continue
                if timer._expire > now:
                    break
                _heappop(heap)
                del live[entry]
                timer._entry = None
                timer._expire = -1
                cb = timer._cb
            progress = True
            try:
                cb()
            except BaseException as exc:
                self.ctx._report(exc)
        return progress

    def clear(self) -> None:
        with self.lock:
            for timer in self.live.values():
                timer._entry = None
                timer._expire = -1
            self.heap.clear()
            self.live = {}


class Timer:
    """A QEMUTimer, created by ``AioContext.timer_new*``.  Times are in the timer's scale."""

    __slots__ = ("__weakref__", "_attributes", "_cb", "_entry", "_expire", "_scale", "_tl")
    _tl: _TimerList
    _scale: int
    _cb: Callback
    _attributes: int
    _expire: int
    _entry: int | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Timer objects are created by AioContext.timer_new*()")

    @classmethod
    def _new(cls, tl: _TimerList, scale: int, cb: Callback, attributes: int) -> Timer:
        self = _new_object(cls)
        self._tl = tl
        self._scale = scale
        self._cb = cb
        self._attributes = attributes
        self._expire = -1
        self._entry = None
        return self

    def _list(self) -> _TimerList:
        tl = self._tl
        if tl.ctx._closed:
            raise RuntimeError("the timer's AioContext is closed")
        return tl

    def mod_ns(self, ns: int) -> None:
        """Arm (or re-arm) at absolute time ``ns`` on the timer's clock."""
        if type(ns) is not int or not _INT64_MIN <= ns <= _INT64_MAX:
            ns = _int64_arg(ns, "ns")
        tl = self._tl
        if tl.ctx._closed:
            raise RuntimeError("the timer's AioContext is closed")
        tl.insert(self, ns)

    def mod(self, expire: int) -> None:
        """Arm at ``expire`` in the timer's scale."""
        ns = _int64_arg(_int_arg(expire, "expire") * self._scale, "expire * scale")
        self._list().insert(self, ns)  # the arguments are checked before the context

    def mod_anticipate_ns(self, ns: int) -> None:
        """Arm at ``ns`` only if that is earlier than the current expiry (or not pending)."""
        ns = _int64_arg(ns, "ns")
        tl = self._list()
        if self._expire < 0 or self._expire > ns:
            tl.insert(self, ns)

    def mod_anticipate(self, expire: int) -> None:
        """Arm at ``expire`` (in the timer's scale) only if that is earlier than now set."""
        self.mod_anticipate_ns(_int64_arg(_int_arg(expire, "expire") * self._scale,
                                          "expire * scale"))

    def delete(self) -> None:
        """``timer_del``: disarm; a no-op if not pending.  The timer can be armed again."""
        if self._entry is not None:
            self._tl.remove(self)

    @property
    def pending(self) -> bool:
        """Whether the timer is armed."""
        return self._expire >= 0

    def expired(self, current_time: int) -> bool:
        """``timer_expired``: True if expire_time <= current_time (scaled).

        Note: a timer that is not pending reports True, as QEMU's does (its expiry counts
        as -1); use ``pending()`` to ask whether it is armed.
        """
        return self._expire <= _int_arg(current_time, "current_time") * self._scale

    @property
    def expire_time_ns(self) -> int:
        """The expiry in ns on the timer's clock; -1 when not pending."""
        return self._expire

    @property
    def clock(self) -> ClockType:
        """The timer's ``ClockType``."""
        return ClockType(self._tl.clock)

    @property
    def scale(self) -> int:
        """ns per unit of ``mod``/``mod_anticipate`` times (SCALE_NS, SCALE_US, SCALE_MS...)."""
        return self._scale

    @property
    def attributes(self) -> int:
        """The attribute bits given at creation (``TIMER_ATTR_EXTERNAL``...)."""
        return self._attributes

    def __repr__(self) -> str:
        return f"<Timer clock={self.clock.name} scale={self._scale} expire_time_ns={self._expire}>"
