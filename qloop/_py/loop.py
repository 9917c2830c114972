"""The asyncio event loop's hot base, pure Python: the twin of ``qloop/_cy/loop.pxi``.

Same classes and methods in the same order as the compiled one (``Handle``, ``TimerHandle``,
``_FdEntry``, ``_LoopBase``), the same behaviour; ``qloop._aio.api`` builds the public
``EventLoop`` over it.

* The ready queue is a deque drained by ONE bottom half of the AioContext (a batch is the
  handles present when the BH starts).  ``_bh_pending`` says the BH is scheduled; producers
  schedule it when they find it clear, and the BH clears it before it takes its batch, so no
  wake-up is lost whichever thread pushes.
* TimerHandles live in a heap of int keys ``when_ns << 64 | seq`` (``_timers`` maps a key to
  its handle) with one context timer armed at the earliest deadline: the keys order as the
  core's ``(when_ns, seq)`` entries, and an int compares (and is collected) at a fraction of a
  tuple's cost; a timer already due when created waits in ``fresh`` until
  the BH's next run moves it into the heap (it runs in the next iteration, as in asyncio).
* readers/writers: one ``_FdEntry`` per fd whose bound methods are the context's fd handler.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import heapq
import threading
import time
from asyncio import events as _aio_events
from collections import deque
from types import BuiltinFunctionType, FunctionType, MethodType
from typing import Any

from .._aio import helpers as _helpers
from .._constants import ClockType
from .clock import _clocks, _virtual_jump, soonest_timeout
from .context import AioContext

__all__ = ["Handle", "TimerHandle", "_LoopBase"]

_get_running_loop = _aio_events._get_running_loop
_set_running_loop = _aio_events._set_running_loop
_NOT_ENTERED = object()
_check_callback_slow = _helpers._check_callback_slow
_source_traceback = _helpers._source_traceback
_log_slow_callback = _helpers._log_slow_callback
_handle_repr = _helpers._handle_repr
_perf_counter = _helpers._perf_counter
_time_arg_slow = _helpers._time_arg_slow
_monotonic_ns = time.monotonic_ns
_get_ident = threading.get_ident
_copy_context = contextvars.copy_context
_Context = contextvars.Context
_new_object = object.__new__
_heappush = heapq.heappush
_heappop = heapq.heappop
_CO_COROUTINE = 0x80
_HEAPTYPE = 1 << 9
_INT64_MAX = 2**63 - 1
_TIMER_COMPACT_MIN = 64
_SEQ_BITS = 64  # a heap key is when_ns << _SEQ_BITS | seq (seq < 2**64: FIFO at equal deadlines)
_Future = asyncio.Future
_partial = functools.partial
_FunctionType = FunctionType
# types whose instances passed the callback check: C types (never coroutine functions)
_plain_types = {BuiltinFunctionType}


def _check_aio_callback(cb: Any, method: str) -> None:
    """asyncio's callback check (TypeError for a coroutine (function) or a non-callable), the
    common kinds of callable first."""
    f = cb
    tp = type(f)
    while tp is _partial:
        f = f.func
        tp = type(f)
    if tp is MethodType:
        f = f.__func__
        tp = type(f)
    if tp is FunctionType:
        if f.__code__.co_flags & _CO_COROUTINE:
            _check_callback_slow(cb, method)
        return
    if tp is BuiltinFunctionType:
        return  # builtins and bound C methods (Future.set_result, Task.__wakeup)
    if not tp.__flags__ & _HEAPTYPE and callable(f):
        _plain_types.add(tp)
        return  # instances of C types: never coroutine functions (partial is a heap type)
    _check_callback_slow(cb, method)


def _when_to_ns(when: float) -> int:
    """Seconds (float) to the nearest ns, saturating at the int64 range."""
    if when != when:  # noqa: PLR0124 - NaN, tested without converting an int to float
        raise ValueError("the time must be a number, not NaN")
    ns = when * 1e9
    if ns >= 9.2e18:
        return _INT64_MAX
    if ns <= -9.2e18:
        return -_INT64_MAX
    return int(ns + 0.5) if ns >= 0 else -int(0.5 - ns)


def _time_arg(value: Any, what: str) -> float:
    if type(value) is float or type(value) is int:
        return float(value)
    return _time_arg_slow(value, what)


# --------------------------------------------------------------------------------------------
# Handles


class Handle:
    """A callback scheduled by ``call_soon*`` (asyncio's ``Handle``): ``cancel()``,
    ``cancelled()``, ``get_context()``.  Created by the loop only."""

    # cancelled <=> _callback is None; the debug-mode slots are set only when used
    __slots__ = ("__weakref__", "_args", "_callback", "_context", "_loop", "_repr",
                 "_source_traceback_")
    _callback: Any
    _args: Any
    _context: Any
    _loop: _LoopBase
    _source_traceback_: Any
    _repr: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Handle objects are created by the event loop (call_soon and friends)")

    def cancel(self) -> None:
        """Cancel the call; a no-op if it already ran or was cancelled."""
        if self._callback is not None:
            if self._loop is not None and self._loop._debug:
                self._callback = None  # the saved repr says "cancelled"
                self._repr = _handle_repr(self)
            self._callback = None
            self._args = None

    @property
    def _cancelled(self) -> bool:
        return self._callback is None

    def cancelled(self) -> bool:
        return self._callback is None

    def get_context(self) -> contextvars.Context:
        """The ``contextvars.Context`` the callback runs in."""
        return self._context  # type: ignore[no-any-return]

    def _run(self) -> None:
        _run_handle(self)
        del self  # see _run_handle

    @property
    def _callback_(self) -> Any:
        return self._callback

    @property
    def _source_traceback(self) -> Any:
        return getattr(self, "_source_traceback_", None)

    def _info(self) -> tuple[Any, ...]:
        return (type(self).__name__, self._callback is None, self._callback, self._args, None,
                getattr(self, "_source_traceback_", None), getattr(self, "_repr", None))

    def __repr__(self) -> str:
        return _handle_repr(self)


class TimerHandle(Handle):
    """A callback scheduled by ``call_later``/``call_at`` (asyncio's ``TimerHandle``):
    ``when()`` is the loop time it was scheduled for."""

    __slots__ = ("_gen", "_when", "_when_ns", "_where")
    _when: float
    _when_ns: int
    _where: int  # 0 nowhere, 1 in the loop's heap, 2 in its fresh list
    _gen: int  # the context iteration it was made in (its ready_gen)

    def when(self) -> float:
        """The absolute loop time (``loop.time()`` scale) the callback is due at."""
        return self._when

    def cancel(self) -> None:
        """Cancel the call; a no-op if it already ran or was cancelled."""
        if self._callback is not None:
            Handle.cancel(self)
            if self._where == 1 and self._loop is not None:
                self._loop._timer_cancelled()

    def _info(self) -> tuple[Any, ...]:
        return (type(self).__name__, self._callback is None, self._callback, self._args,
                self._when, getattr(self, "_source_traceback_", None),
                getattr(self, "_repr", None))


def _run_handle(h: Handle) -> None:
    """Run ``h``'s callback in its context.  Exceptions go to the loop's exception handler;
    SystemExit and KeyboardInterrupt propagate (as in asyncio)."""
    cb = h._callback
    if cb is None:
        return  # cancelled
    try:
        if h._loop._debug:
            _run_handle_debug(h)
            return
        try:
            h._context.run(cb, *h._args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            h._loop._callback_failed(h, exc)
    finally:
        # An exception's traceback keeps the frames it went through and, through f_back,
        # their callers (this one): they must not keep the handle (and what its callback
        # holds, such as a task that failed) alive in a cycle.
        del h, cb


def _run_handle_debug(h: Handle) -> None:
    loop = h._loop
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
        if dt >= loop.slow_callback_duration:
            _log_slow_callback(h, dt)
        del h  # see _run_handle


# --------------------------------------------------------------------------------------------
# readers and writers


class _FdEntry:
    """The add_reader/add_writer handles of one fd: the context's handler for it."""

    __slots__ = ("fd", "loop", "reader", "writer")

    def __init__(self, loop: _LoopBase, fd: int) -> None:
        self.loop = loop
        self.fd = fd
        self.reader: Handle | None = None
        self.writer: Handle | None = None

    def _on_read(self) -> None:
        h = self.reader
        if h is None:
            return
        # cancelled: a Handle here keeps no flag, a dropped callback is the mark (the core's
        # C Handle has a _cancelled field; calling Handle._cancelled() would cost a call)
        if h._callback is None:
            self.loop._remove_fd_handle(self.fd, True)
            return
        self.loop._run_one(h)

    def _on_write(self) -> None:
        h = self.writer
        if h is None:
            return
        if h._callback is None:
            self.loop._remove_fd_handle(self.fd, False)
            return
        self.loop._run_one(h)


# --------------------------------------------------------------------------------------------
# The loop's hot base


class _LoopBase:
    """State and hot paths of ``qloop._fallback.EventLoop`` (see ``qloop._aio.api``)."""

    _ctx: Any = None
    _closed_flag = True  # until __init__ completes
    #: seconds after which debug mode logs a callback as slow (the core's is a C double)
    slow_callback_duration: float = 0.1

    def __init__(self, ctx: Any = None) -> None:
        if self._ctx is not None:
            raise RuntimeError("the event loop is already initialised")
        owns = False
        if ctx is None:
            ctx = AioContext()
            owns = True
        elif not isinstance(ctx, AioContext):
            raise TypeError(f"ctx must be a qloop._fallback.AioContext, not {type(ctx).__name__}")
        elif ctx.closed:
            raise RuntimeError("ctx is closed")
        self._ctx = ctx
        self._owns_ctx = owns
        self._clock = int(ClockType.REALTIME)  # CLOCK_MONOTONIC, like time.monotonic()
        self._offset = 0  # loop time minus _clock's time, ns (virtual time: start)
        self._now_ns: Any = _monotonic_ns  # the loop time in ns
        self._vt = False  # a virtual-time loop (qloop/_aio/virtual_time.py)
        self._vt_fast = False  # idle: jump straight to the next virtual deadline
        self._vt_pending = False  # an advance is pending: _vt_step at each iteration
        self._ready: deque[Handle] = deque()
        self._bh_pending = False
        self._heap: list[int] = []  # keys: when_ns << _SEQ_BITS | seq
        self._timers: dict[int, TimerHandle] = {}  # key -> handle (only mutated in place)
        self._tseq = 0
        self._tdead = 0
        self._armed = -1
        self._fresh: list[TimerHandle] = []
        self._fds: dict[int, _FdEntry] = {}
        self._stopping = False
        self._running = False
        self._ext_depth = 0
        self._thread_ident = 0
        self._debug = False
        self.slow_callback_duration = 0.1
        self._current_handle: Handle | None = None
        self._bh = ctx.bh_new(self._run_ready, name="asyncio ready queue")
        self._ctx_timer = ctx.timer_new_ns(ClockType.REALTIME, self._on_timer)
        self._closed_flag = False

    # ---- state

    @property
    def aio_context(self) -> Any:
        """The AioContext this loop runs on (its own, or the ``ctx`` it was created with)."""
        return self._ctx

    def _clock_key(self, key: int) -> int:
        """A loop-time deadline (ns) on the context timer's clock (saturating)."""
        key -= self._offset
        return key if -_INT64_MAX <= key <= _INT64_MAX else (
            _INT64_MAX if key > 0 else -_INT64_MAX)

    def time(self) -> float:
        """The loop's clock in seconds: CLOCK_MONOTONIC, the same as ``time.monotonic()``
        (a virtual-time loop: its virtual time, see docs/virtual-time.md)."""
        return self._now_ns() / 1e9  # type: ignore[no-any-return]

    def is_running(self) -> bool:
        """True inside ``run_forever()``, and while one of the loop's callbacks runs when
        something else (``qloop.main_loop()``, ``ctx.poll()``) drives its context."""
        return self._running or self._ext_depth > 0

    def is_closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed_flag

    @property
    def _closed(self) -> bool:
        """asyncio's loops keep this attribute, and other libraries read it: ``is_closed()``,
        read-only."""
        return self._closed_flag

    def get_debug(self) -> bool:
        """Whether debug mode is on."""
        return self._debug

    def _set_debug_flag(self, enabled: Any) -> None:
        self._debug = bool(enabled)

    def stop(self) -> None:
        """Stop ``run_forever()`` after the current iteration (before it starts, after one)."""
        self._stopping = True

    def _is_stopping(self) -> bool:
        return self._stopping

    def _check_closed(self) -> None:
        if self._closed_flag:
            raise RuntimeError("Event loop is closed")
        if self._ctx._closed:
            raise RuntimeError("the event loop's AioContext is closed")

    _check_closed_py = _check_closed

    def _check_thread(self) -> None:
        if (self._running or self._ext_depth) and self._thread_ident != _get_ident():
            raise RuntimeError("Non-thread-safe operation invoked on an event loop other "
                               "than the current one")

    _check_thread_py = _check_thread

    def _thread_id(self) -> int | None:
        """The thread running the loop, or None."""
        if self._running or self._ext_depth:
            return self._thread_ident
        return None

    # ---- entering the loop from outside (qloop.main_loop(), a bare ctx.poll())

    def _enter(self) -> Any:
        """Make this loop the running one while its callbacks run, unless it already is."""
        if self._running:
            return _NOT_ENTERED
        prev: Any = _get_running_loop()
        if prev is self:
            return _NOT_ENTERED
        _set_running_loop(self)  # type: ignore[arg-type]
        if self._ext_depth == 0:
            self._thread_ident = _get_ident()
        self._ext_depth += 1
        return prev

    def _leave(self, prev: Any) -> None:
        if prev is not _NOT_ENTERED:
            self._ext_depth -= 1
            _set_running_loop(prev)

    def _run_one(self, h: Handle) -> None:
        prev = self._enter()
        try:
            _run_handle(h)
        finally:
            self._leave(prev)
            del h  # see _run_handle

    def _callback_failed(self, h: Handle, exc: BaseException) -> None:
        """What a handle's exception becomes: a call of the exception handler."""
        context = {
            "message": f"Exception in callback {_helpers._format_callback(h)}",
            "exception": exc,
            "handle": h,
        }
        tb = getattr(h, "_source_traceback_", None)
        if tb:
            context["source_traceback"] = tb
        self.call_exception_handler(context)  # type: ignore[attr-defined]

    # ---- the ready queue

    def _new_handle(self, callback: Any, args: Any, context: Any, method: str) -> Handle:
        if self._closed_flag or self._ctx._closed:
            self._check_closed()
        tp = type(callback)
        if tp is _FunctionType:
            if callback.__code__.co_flags & _CO_COROUTINE:
                _check_callback_slow(callback, method)
        elif tp not in _plain_types:
            _check_aio_callback(callback, method)
        if context is None:
            context = _copy_context()
        elif type(context) is not _Context:
            raise TypeError(f"context must be a contextvars.Context, "
                            f"not {type(context).__name__}")
        h = _new_object(Handle)
        h._loop = self
        h._callback = callback
        h._args = args
        h._context = context
        if self._debug:
            h._source_traceback_ = _source_traceback()
        return h

    def call_soon(self, callback: Any, /, *args: Any, context: Any = None) -> Handle:
        """Call ``callback(*args)`` in the next iteration (FIFO); returns a Handle."""
        if self._debug:
            self._check_thread()
            h = self._new_handle(callback, args, context, "call_soon")
        else:  # self._new_handle(), inline on this hot path
            if self._closed_flag or self._ctx._closed:
                self._check_closed()
            tp = type(callback)
            if tp is _FunctionType:
                if callback.__code__.co_flags & _CO_COROUTINE:
                    _check_callback_slow(callback, "call_soon")
            elif tp not in _plain_types:
                _check_aio_callback(callback, "call_soon")
            if context is None:
                context = _copy_context()
            elif type(context) is not _Context:
                raise TypeError(f"context must be a contextvars.Context, "
                                f"not {type(context).__name__}")
            h = _new_object(Handle)
            h._loop = self
            h._callback = callback
            h._args = args
            h._context = context
        self._ready.append(h)
        if not self._bh_pending:
            self._bh_pending = True
            self._bh.schedule()
        return h

    def call_soon_threadsafe(self, callback: Any, /, *args: Any, context: Any = None) -> Handle:
        """``call_soon`` from any thread (or a signal handler): wakes the loop."""
        h = self._new_handle(callback, args, context, "call_soon_threadsafe")
        self._ready.append(h)
        if not self._bh_pending:
            self._bh_pending = True
            self._bh.schedule()
        return h

    def _run_ready(self) -> None:
        """The ready-queue BH: run the handles queued when it starts."""
        self._bh_pending = False  # before the batch is taken: later pushes schedule again
        self._run_batch()

    def _run_batch(self) -> None:
        if self._fresh:
            self._absorb_fresh()
        ready = self._ready
        n = len(ready)
        if n == 0:
            return
        prev = _NOT_ENTERED if self._running else self._enter()
        popleft = ready.popleft
        try:
            if self._debug:
                while n:
                    n -= 1
                    _run_handle(popleft())
                return
            while n:
                n -= 1
                h = popleft()
                cb = h._callback
                if cb is None:
                    continue  # cancelled
                args = h._args
                try:
                    # no argument tuple built for Context.run in the common cases
                    if not args:
                        h._context.run(cb)
                    elif len(args) == 1:
                        h._context.run(cb, args[0])
                    else:
                        h._context.run(cb, *args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._callback_failed(h, exc)
        finally:
            h = cb = args = None  # type: ignore[assignment]  # see _run_handle
            if ready and not self._closed_flag and not self._bh_pending:
                self._bh_pending = True
                self._bh.schedule()
            if prev is not _NOT_ENTERED:
                self._leave(prev)

    # ---- timers

    def _heap_push(self, h: TimerHandle) -> None:
        self._tseq = seq = self._tseq + 1
        h._where = 1
        key = (h._when_ns << _SEQ_BITS) + seq
        self._timers[key] = h
        _heappush(self._heap, key)

    def _drop_cancelled_top(self) -> None:
        heap = self._heap
        timers = self._timers
        while heap and timers[heap[0]]._callback is None:
            timers.pop(_heappop(heap))._where = 0
            self._tdead -= 1

    def _arm(self) -> None:
        """Arm the context timer at the earliest live deadline (or disarm it)."""
        self._drop_cancelled_top()
        heap = self._heap
        if not heap:
            if self._armed >= 0:
                self._armed = -1
                self._ctx_timer.delete()
            return
        key = heap[0] >> _SEQ_BITS
        key = max(key, 0)
        if key != self._armed or not self._ctx_timer.pending:
            self._armed = key
            self._ctx_timer.mod_ns(self._clock_key(key) if self._offset else key)

    def _timer_cancelled(self) -> None:
        self._tdead += 1
        if self._tdead > _TIMER_COMPACT_MIN and self._tdead * 2 > len(self._heap):
            self._compact_timers()

    def _timer_handle_cancelled(self, handle: Any) -> None:
        pass  # asyncio's hook; qloop's TimerHandle reports through _timer_cancelled

    def _compact_timers(self) -> None:
        live = []
        timers = self._timers
        for key in self._heap:
            h = timers[key]
            if h._callback is None:
                h._where = 0
                del timers[key]
            else:
                live.append(key)
        heapq.heapify(live)
        self._heap = live
        self._tdead = 0

    def _call_at(self, when: float, when_ns: int, now_ns: int, callback: Any, args: Any,
                 context: Any, method: str) -> TimerHandle:
        if self._closed_flag or self._ctx._closed:
            self._check_closed()
        tp = type(callback)
        if tp is _FunctionType:
            if callback.__code__.co_flags & _CO_COROUTINE:
                _check_callback_slow(callback, method)
        elif tp not in _plain_types:
            _check_aio_callback(callback, method)
        if context is None:
            context = _copy_context()
        elif type(context) is not _Context:
            raise TypeError(f"context must be a contextvars.Context, "
                            f"not {type(context).__name__}")
        h = _new_object(TimerHandle)
        h._loop = self
        h._callback = callback
        h._args = args
        h._context = context
        h._when = when
        h._when_ns = when_ns
        h._gen = self._ctx._ready_gen
        if self._debug:
            h._source_traceback_ = _source_traceback()
        if when_ns <= now_ns:
            # already due: runs in the next iteration, after what is queued now (asyncio)
            h._where = 2
            self._fresh.append(h)
            if not self._bh_pending:
                self._bh_pending = True
                self._bh.schedule()
            return h
        h._where = 1
        self._tseq = seq = self._tseq + 1
        key = (when_ns << _SEQ_BITS) + seq
        self._timers[key] = h
        heap = self._heap
        _heappush(heap, key)
        if heap[0] == key and (self._armed < 0 or when_ns < self._armed
                                or not self._ctx_timer.pending):
            self._armed = when_ns
            self._ctx_timer.mod_ns(self._clock_key(when_ns) if self._offset else when_ns)
        return h

    def call_later(self, delay: Any, callback: Any, *args: Any,
                   context: Any = None) -> TimerHandle:
        """Call ``callback(*args)`` at ``self.time() + delay``; returns a TimerHandle."""
        if type(delay) is not float:
            delay = _time_arg(delay, "delay")
        now = self._now_ns()
        when = now / 1e9 + delay
        if self._debug:
            self._check_thread()
        if delay <= 0:
            when_ns = now
        elif when < 9.2e9:
            when_ns = int(when * 1e9 + 0.5)
        else:
            when_ns = _when_to_ns(when)  # saturates (and rejects NaN)
        return self._call_at(when, when_ns, now, callback, args, context, "call_at")

    def call_at(self, when: Any, callback: Any, *args: Any, context: Any = None) -> TimerHandle:
        """Call ``callback(*args)`` at loop time ``when``; returns a TimerHandle."""
        if type(when) is not float:
            when = _time_arg(when, "when")
        if self._debug:
            self._check_thread()
        return self._call_at(when, _when_to_ns(when), self._now_ns(), callback, args, context,
                             "call_at")

    def _absorb_fresh(self) -> None:
        fresh = self._fresh
        self._fresh = []
        for h in fresh:
            h._where = 0
            if h._callback is not None:
                self._heap_push(h)
        self._arm()

    def _defer_due(self, now: int, gen: int) -> None:
        """Move every TimerHandle due at ``now`` from the heap to ``fresh``, in deadline order:
        the BH's next run puts them back, and they run in the next iteration, after the handles
        queued in this one.  Marked as made before ``gen``, they are not deferred twice (even
        by a driver that does not count its iterations)."""
        heap = self._heap
        timers = self._timers
        limit = (now + 1) << _SEQ_BITS  # the keys of deadlines after now
        while heap and heap[0] < limit:
            h = timers.pop(_heappop(heap))
            if h._callback is None:
                self._tdead -= 1
                h._where = 0
            else:
                h._where = 2
                h._gen = gen - 1
                self._fresh.append(h)
        if not self._bh_pending:
            self._bh_pending = True
            self._bh.schedule()

    def _on_timer(self) -> None:
        """The context timer: run every TimerHandle due at one reading of the clock.

        As in asyncio, a timer made in this iteration of the context runs in the next one
        (after the handles queued in this one): when the first due timer is one, it and the
        due timers after it wait in ``fresh`` (docs/decisions.md)."""
        now = self._now_ns()
        gen = self._ctx._ready_gen
        self._armed = -1
        prev = self._enter()
        heap = self._heap
        timers = self._timers
        limit = (now + 1) << _SEQ_BITS  # the keys of deadlines after now
        try:
            while heap:
                key = heap[0]
                h = timers[key]
                cb = h._callback
                if cb is None:
                    _heappop(heap)
                    del timers[key]
                    self._tdead -= 1
                    h._where = 0
                    continue
                if key >= limit:
                    break
                if h._gen == gen:
                    self._defer_due(now, gen)
                    break
                _heappop(heap)
                del timers[key]
                h._where = 0
                if self._debug:
                    _run_handle_debug(h)
                else:
                    try:
                        h._context.run(cb, *h._args)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        self._callback_failed(h, exc)
                heap = self._heap  # a compaction may have replaced it
        finally:
            h = cb = None  # type: ignore[assignment]  # see _run_handle
            if not self._closed_flag:
                self._arm()
            self._leave(prev)

    def _timers_pending(self) -> tuple[int, int, int]:
        """(heap entries, cancelled ones, fresh ones): for tests and debugging."""
        return (len(self._heap), self._tdead, len(self._fresh))

    # ---- readers and writers

    def _update_fd(self, fd: int, entry: _FdEntry) -> None:
        if entry.reader is None and entry.writer is None:
            del self._fds[fd]
            self._ctx._set_handler(fd, None, None, None, None)
        else:
            self._ctx._set_handler(fd, entry._on_read if entry.reader is not None else None,
                                   entry._on_write if entry.writer is not None else None,
                                   None, None)

    def _add_fd_handle(self, fd: int, reader: bool, callback: Any, args: Any,
                       method: str) -> Handle:
        self._check_closed()
        _check_aio_callback(callback, method)
        h = self._new_handle(callback, args, None, method)
        entry = self._fds.get(fd)
        if entry is None:
            entry = self._fds[fd] = _FdEntry(self, fd)
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

    def _remove_fd_handle(self, fd: int, reader: bool) -> bool:
        entry = self._fds.get(fd)
        if entry is None:
            return False
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

    def _add_reader(self, fd: int, callback: Any, args: Any) -> Handle:
        """add_reader() after its fd checks; returns the Handle."""
        return self._add_fd_handle(fd, True, callback, args, "add_reader")

    def _add_writer(self, fd: int, callback: Any, args: Any) -> Handle:
        return self._add_fd_handle(fd, False, callback, args, "add_writer")

    def _remove_reader(self, fd: int) -> bool:
        return self._remove_fd_handle(fd, True)

    def _remove_writer(self, fd: int) -> bool:
        return self._remove_fd_handle(fd, False)

    def _fd_handles(self, fd: int) -> tuple[Handle | None, Handle | None]:
        """(reader, writer) Handles registered for ``fd`` (None where there is none)."""
        entry = self._fds.get(fd)
        if entry is None:
            return (None, None)
        return (entry.reader, entry.writer)

    # ---- running

    def _run_loop(self) -> None:
        """The body of ``run_forever()``: one ``ctx.poll()`` per iteration until stopped."""
        ctx = self._ctx
        me = _get_ident()
        if ctx._walkers and ctx._poll_thread != me:
            raise RuntimeError("the event loop's AioContext is being driven by another thread")
        self._thread_ident = me
        self._running = True
        poll = ctx.poll
        only_bh_pending = ctx._only_bh_pending
        bh = self._bh
        ready = self._ready
        vt_iteration = self._vt_iteration if self._vt else None
        try:
            while True:
                if vt_iteration is not None:
                    vt_iteration()
                else:
                    poll(not self._stopping)
                # While nothing else is registered on the context, the next iterations
                # would only run the next ready batches: run them without the poll
                # machinery (no fd to poll, no other BH, no timer due in between).
                # (Not while a virtual-time advance is pending: each iteration steps toward it.)
                # (Nor while a timer waits in fresh: it runs after the next batch, before
                # what that batch queues, in an iteration of the context.)
                while ready and not self._fresh and not self._stopping and \
                        not self._vt_pending and only_bh_pending(bh):
                    self._run_batch()
                if self._stopping:
                    break
        finally:
            self._running = False
            self._stopping = False

    # ---- virtual time: the hooks of qloop/_aio/virtual_time.py (docs/virtual-time.md)

    def _vt_iteration(self) -> None:
        """One iteration of a virtual-time loop: a zero-timeout poll; when it finds nothing
        to do, jump to the next virtual deadline (or let ``_vt_idle`` decide)."""
        ctx = self._ctx
        if self._vt_pending:
            self._vt_step()  # type: ignore[attr-defined]  # an advance is pending: move on
        if ctx.poll(False) or self._stopping:
            return
        if self._ready or self._fresh or ctx._compute_timeout() == 0:
            return  # queued meanwhile (another thread), or a BH/timer is due
        clocks = _clocks
        if self._vt_fast and clocks.manual and clocks.enabled[ClockType.VIRTUAL]:
            lists = ctx._timer_lists
            dest = soonest_timeout(lists[ClockType.VIRTUAL].head_expire(),
                                         lists[ClockType.VIRTUAL_RT].head_expire())
            if dest >= 0:
                _virtual_jump(ctx, dest)
                return
        self._vt_idle()  # type: ignore[attr-defined]

    def _set_virtual_clock(self, offset: int) -> None:
        """Run on the VIRTUAL clock from now on, loop time = VIRTUAL + ``offset`` ns (called
        once, before any timer is scheduled)."""
        if self._heap or self._fresh:
            raise RuntimeError("the loop's clock cannot change once timers are scheduled")
        offset = int(offset)
        self._ctx_timer = self._ctx.timer_new_ns(ClockType.VIRTUAL, self._on_timer)
        self._clock = int(ClockType.VIRTUAL)
        self._offset = offset
        clocks = _clocks

        def now_ns() -> int:
            now: int = clocks.virtual_now() + offset
            return now

        self._now_ns = now_ns
        self._vt = True
        self._vt_fast = True

    def _vt_set_fast(self, fast: bool) -> None:
        self._vt_fast = bool(fast)

    def _vt_set_pending(self, pending: bool) -> None:
        self._vt_pending = bool(pending)

    def _vt_next_deadline(self) -> int:
        """The clock ns of the context's next VIRTUAL/VIRTUAL_RT deadline, or -1; a timer of
        the loop's that was already due when it was made counts as due now."""
        if self._fresh:
            return self._now_ns() - self._offset  # type: ignore[no-any-return]
        lists = self._ctx._timer_lists
        return soonest_timeout(lists[ClockType.VIRTUAL].head_expire(),
                               lists[ClockType.VIRTUAL_RT].head_expire())

    def _vt_now_ns(self) -> int:
        """The loop time in ns."""
        return self._now_ns()  # type: ignore[no-any-return]

    def _vt_offset_ns(self) -> int:
        return self._offset

    def _vt_jump(self, dest: int) -> None:
        """Move the manual VIRTUAL clock forward to ``dest`` (ns on the clock, not loop time)."""
        _virtual_jump(self._ctx, dest)

    def _vt_busy(self) -> bool:
        """Whether an iteration now would run something (a ready handle, a BH, a due timer)."""
        return bool(self._ready or self._fresh or self._ctx._compute_timeout() == 0)

    def _vt_loop_fds(self) -> tuple[int, ...]:
        """The fds with an add_reader/add_writer handle of this loop."""
        return tuple(self._fds)

    def _vt_probe(self) -> tuple[int, bool, tuple[int, ...]]:
        """(next VIRTUAL/VIRTUAL_RT deadline of the context in clock ns or -1, whether a
        REALTIME/HOST timer is armed on it, the fds with a handler besides its notifier)."""
        ctx = self._ctx
        with ctx._list_lock:
            fds = tuple(node.fd for node in ctx._handlers.values() if not node.is_notifier)
        lists = ctx._timer_lists
        return (soonest_timeout(lists[ClockType.VIRTUAL].head_expire(),
                                      lists[ClockType.VIRTUAL_RT].head_expire()),
                lists[ClockType.REALTIME].head_expire() >= 0
                or lists[ClockType.HOST].head_expire() >= 0, fds)

    # ---- closing

    def _clear_queues(self) -> None:
        ready, self._ready = self._ready, deque()
        self._heap = []
        self._tdead = 0
        timers = self._timers
        for h in timers.values():
            h._where = 0
        timers.clear()
        ready.clear()

    def _close_base(self) -> None:
        """Drop queued handles and timers and release the context's BH, timer and fd handlers
        (closing the context when the loop owns it)."""
        ctx = self._ctx
        self._closed_flag = True
        self._clear_queues()
        fresh, self._fresh = self._fresh, []
        for h in fresh:
            h._where = 0
        fds, self._fds = self._fds, {}
        if ctx is None:
            return
        if self._owns_ctx:
            if not ctx.closed:
                ctx.close()
            return
        if not ctx.closed:
            self._bh.delete()
            self._ctx_timer.delete()
            for fd in fds:
                ctx._set_handler(fd, None, None, None, None)

    def _owns_context(self) -> bool:
        return self._owns_ctx

    # ---- futures

    def create_future(self) -> asyncio.Future[Any]:
        """A new ``asyncio.Future`` attached to this loop."""
        return _Future(loop=self)  # type: ignore[arg-type]
