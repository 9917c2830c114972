"""QEMU's thread pool (``thread-pool.c``) for an AioContext (docs/thread-pool.md).

Shared by both implementations.  Each context has at most one pool (``ctx.thread_pool()``,
made on first use, stopped by ``ctx.close()``).  ``pool.submit(fn, *args, callback=cb)`` runs
``fn(*args)`` on a worker thread; ``cb(result_or_exception)`` then runs in the context, from
the pool's completion BH.

* Workers take requests in submission order.  A worker that finishes a job marks it done,
  queues it on the pool's done list and schedules the completion BH: while the BH is already
  pending that is a flag operation, so a busy context is woken once per batch, not per job.
* The completion BH delivers the done requests newest submission first, as QEMU's walk of
  its request list does; before each callback it reschedules itself if more are done (a
  callback that runs a nested ``poll()`` waiting for another completed request sees it), and
  after it cancels that and starts over.
* ``req.cancel()`` cancels a request no worker has started: its callback gets a
  ``concurrent.futures.CancelledError``.  A started request runs to completion.
* Workers are spawned on demand (none idle and fewer than ``max``): the first from a BH of
  the context, each further pending one by the worker started before it.  An idle worker
  exits after 10 s without work while there are more than ``min``; ``set_params(min, max)``
  spawns up to ``min`` and wakes workers above ``max`` so that they exit.

Submission and cancellation are safe from any thread; callbacks always run in the context.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import os
import threading
import types
import weakref
from collections import deque
from collections.abc import Callable, Generator
from inspect import CO_COROUTINE
from typing import Any

from .._common import _check_callback, _int_arg
from . import aio_wait as _aio_wait
from .coroutine import _YIELD, co_wake, coroutine_self

__all__ = ["ThreadPool", "ThreadPoolRequest", "close_pool", "pool_of"]

IDLE_TIMEOUT = 10.0  # seconds an idle worker above min waits before it exits
DEFAULT_MIN_THREADS = 0
DEFAULT_MAX_THREADS = 64

_QUEUED = 0
_ACTIVE = 1
_DONE = 2
_STATE_NAMES = ("queued", "active", "done")

_FunctionType = types.FunctionType
_CancelledError = concurrent.futures.CancelledError
_new_object = object.__new__
_heappush = heapq.heappush
_heappop = heapq.heappop
_kick = _aio_wait.aio_wait_kick


def _check_fn(fn: Any, what: str) -> None:
    # the common case inline (a plain function that is not ``async def``)
    if type(fn) is not _FunctionType or fn.__code__.co_flags & CO_COROUTINE:
        _check_callback(fn, what, optional=False)


class ThreadPoolRequest:
    """One job of a ``ThreadPool`` (``pool.submit()`` returns it)."""

    __slots__ = ("__weakref__", "_args", "_callback", "_cancelled", "_failed", "_fn", "_pool",
                 "_seq", "_state", "_value")
    _pool: ThreadPool
    _fn: Any
    _args: tuple[Any, ...] | None
    _callback: Callable[[Any], Any] | None
    _state: int
    _value: Any
    _failed: bool
    _cancelled: bool
    _seq: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("ThreadPoolRequest objects are created by ThreadPool.submit()")

    @property
    def state(self) -> str:
        """``"queued"`` (no worker took it yet), ``"active"`` (running) or ``"done"``
        (it returned or raised, or it was cancelled)."""
        return _STATE_NAMES[self._state]

    @property
    def done(self) -> bool:
        """Whether the function returned or raised, or the request was cancelled (its
        callback may still be waiting for the completion BH)."""
        return self._state == _DONE

    @property
    def cancelled(self) -> bool:
        """Whether ``cancel()`` cancelled it before a worker started it."""
        return self._cancelled

    def cancel(self) -> bool:
        """``thread_pool_cancel``: cancel the request if no worker has started it; its
        callback then gets a ``concurrent.futures.CancelledError``.  True if it was
        cancelled, False if it is running or done (it then completes normally)."""
        pool = self._pool
        with pool._lock:
            if self._state != _QUEUED:
                return False
            self._state = _DONE
            self._cancelled = True
            self._failed = True
            self._value = _CancelledError()
            self._fn = self._args = None
            if pool._waiters:
                event = pool._waiters.pop(self, None)
                if event is not None:
                    event.set()
            if pool._closed:
                self._callback = None
                return True
        pool._done.append(self)
        pool._schedule_completion()
        return True

    def _wait(self, timeout: float | None = None) -> bool:
        """Block until the job is done (worker side: its callback may still be due); True
        unless ``timeout`` expired.  Not from a worker of the pool."""
        pool = self._pool
        with pool._lock:
            if self._state == _DONE:
                return True
            event = pool._waiters.get(self)
            if event is None:
                event = pool._waiters[self] = threading.Event()
        return event.wait(timeout)

    def result(self) -> Any:
        """What the function returned; raises what it raised (``CancelledError`` if the
        request was cancelled).  RuntimeError while it is not done."""
        if self._state != _DONE:
            raise RuntimeError(f"the request is still {self.state}")
        if self._failed:
            raise self._value
        return self._value

    def __repr__(self) -> str:
        extra = " cancelled" if self._cancelled else ""
        return f"<qloop.ThreadPoolRequest #{self._seq} {self.state}{extra}>"


class _CoSubmit:
    """The awaitable behind ``ThreadPool.co_submit``."""

    __slots__ = ("args", "fn", "pool")

    def __init__(self, pool: ThreadPool, fn: Any, args: tuple[Any, ...]) -> None:
        self.pool = pool
        self.fn = fn
        self.args = args

    def __await__(self) -> Generator[Any, None, Any]:
        co = coroutine_self()
        if co is None:
            raise RuntimeError("co_submit() must be awaited inside a qloop Coroutine")
        box: list[Any] = []

        def wake(value: Any) -> None:
            box.append(value)
            co_wake(co)

        req = self.pool.submit(self.fn, *self.args, callback=wake)
        while not box:  # a stray co_wake() does not end the wait
            yield _YIELD
        return req.result()


class ThreadPool:
    """QEMU's thread pool of an AioContext (``ctx.thread_pool()``); see docs/thread-pool.md."""

    __slots__ = ("__weakref__", "_closed", "_completion_bh", "_ctx", "_cur", "_done", "_heap",
                 "_idle", "_lock", "_max", "_min", "_new_thread_bh", "_new_threads", "_pending",
                 "_queue", "_seq", "_threads", "_waiters", "_waking")
    _ctx: Any
    _lock: threading.Lock
    _queue: deque[ThreadPoolRequest]
    _done: deque[ThreadPoolRequest]
    _heap: list[tuple[int, ThreadPoolRequest]]
    _idle: list[tuple[Any, threading.Thread]]
    _threads: set[threading.Thread]
    _waiters: dict[ThreadPoolRequest, threading.Event]
    _waking: int
    _cur: int
    _new_threads: int
    _pending: int
    _min: int
    _max: int
    _seq: int
    _closed: bool
    _completion_bh: Any
    _new_thread_bh: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("ThreadPool objects are created by AioContext.thread_pool()")

    @classmethod
    def _new(cls, ctx: Any) -> ThreadPool:
        self: ThreadPool = _new_object(cls)
        self._ctx = ctx
        self._lock = threading.Lock()
        self._queue = deque()  # waiting for a worker, FIFO
        self._done = deque()  # finished, callback not yet run
        self._heap = []  # done, newest submission first
        self._idle = []  # sleeping workers: (wake lock, thread)
        self._threads = set()
        self._waiters = {}  # requests someone waits for (ThreadPoolRequest._wait)
        self._waking = 0  # workers woken for a request that have not taken the lock yet
        self._cur = 0  # workers running or about to be started
        self._new_threads = 0  # to be started
        self._pending = 0  # started, not yet running
        self._min = DEFAULT_MIN_THREADS
        self._max = DEFAULT_MAX_THREADS
        self._seq = 0
        self._closed = False
        self._completion_bh = ctx.bh_new(self._completion, name="thread_pool_completion_bh")
        self._new_thread_bh = ctx.bh_new(self._spawn_thread_bh, name="thread_pool_new_thread_bh")
        return self

    # ---- what users see

    @property
    def ctx(self) -> Any:
        """The AioContext whose pool this is (where the callbacks run)."""
        return self._ctx

    @property
    def min_threads(self) -> int:
        """Workers kept even when idle (``thread_pool_min``, default 0)."""
        return self._min

    @property
    def max_threads(self) -> int:
        """The most workers at once (``thread_pool_max``, default 64)."""
        return self._max

    @property
    def threads(self) -> int:
        """Workers running, starting or about to be started."""
        return self._cur

    @property
    def idle_threads(self) -> int:
        """Workers waiting for a request."""
        return len(self._idle) + self._waking

    def submit(self, fn: Callable[..., Any], /, *args: Any,
               callback: Callable[[Any], Any] | None = None) -> ThreadPoolRequest:
        """``thread_pool_submit_aio``: run ``fn(*args)`` on a worker thread, then
        ``callback(result_or_exception)`` in the pool's context.  Safe from any thread.
        RuntimeError once the context is closed."""
        _check_fn(fn, "fn")
        if callback is not None:
            _check_fn(callback, "callback")
        req: ThreadPoolRequest = _new_object(ThreadPoolRequest)
        req._pool = self
        req._fn = fn
        req._args = args
        req._callback = callback
        req._state = _QUEUED
        req._value = None
        req._failed = False
        req._cancelled = False
        lock = self._lock
        lock.acquire()
        try:
            if self._closed:
                raise RuntimeError("the thread pool's AioContext is closed")
            self._seq += 1
            req._seq = self._seq
            idle = self._idle
            if not idle and not self._waking and self._cur < self._max:
                self._spawn_locked()
            queue = self._queue
            queue.append(req)
            if idle and len(queue) > self._waking:
                self._waking += 1
                idle.pop()[0].release()
        finally:
            lock.release()
        return req

    def co_submit(self, fn: Callable[..., Any], /, *args: Any) -> _CoSubmit:
        """``thread_pool_submit_co``: ``await pool.co_submit(fn, *args)`` inside a qloop
        Coroutine runs ``fn(*args)`` on a worker and resumes the coroutine (in its own
        context) with the result, or raises what ``fn`` raised."""
        _check_fn(fn, "fn")
        return _CoSubmit(self, fn, args)

    def set_params(self, min_threads: int, max_threads: int) -> None:
        """``thread_pool_update_params``: keep at least ``min_threads`` workers and use at
        most ``max_threads``.  Workers are spawned up to the new minimum at once; workers
        above the new maximum exit once they finish their current job.  ValueError unless
        ``0 <= min_threads <= max_threads`` and ``max_threads >= 1``."""
        lo = _int_arg(min_threads, "min_threads")
        hi = _int_arg(max_threads, "max_threads")
        if lo < 0 or hi < 1 or lo > hi:
            raise ValueError(f"bad thread pool parameters: min_threads={lo}, max_threads={hi} "
                             f"(need 0 <= min_threads <= max_threads, max_threads >= 1)")
        with self._lock:
            if self._closed:
                raise RuntimeError("the thread pool's AioContext is closed")
            self._min = lo
            self._max = hi
            for _ in range(self._cur, lo):
                self._spawn_locked()
            for _ in range(hi, self._cur):
                if not self._idle:
                    break
                self._waking += 1
                self._idle.pop()[0].release()

    def __repr__(self) -> str:
        state = "closed" if self._closed else (
            f"threads={self._cur} idle={self.idle_threads} queued={len(self._queue)}")
        return f"<qloop.ThreadPool {state} min={self._min} max={self._max}>"

    # ---- spawning workers (QEMU: spawn_thread, spawn_thread_bh_fn, do_spawn_thread)

    def _spawn_locked(self) -> None:
        self._cur += 1
        self._new_threads += 1
        if not self._pending:
            self._schedule(self._new_thread_bh)

    def _spawn_thread_bh(self) -> None:
        self._start_next()

    def _start_next(self) -> None:
        with self._lock:
            if not self._new_threads or self._closed:
                return
            self._new_threads -= 1
            self._pending += 1
            thread = threading.Thread(target=self._worker, name="qloop-thread-pool", daemon=True)
            self._threads.add(thread)
        thread.start()

    @staticmethod
    def _schedule(bh: Any) -> None:
        try:
            bh.schedule()
        except RuntimeError:
            pass  # the context closed meanwhile: nothing is delivered any more

    def _schedule_completion(self) -> None:
        try:
            self._completion_bh.schedule()
        except RuntimeError:
            pass

    # ---- the worker (QEMU: worker_thread)

    def _worker(self) -> None:
        lock = self._lock
        queue = self._queue
        done_append = self._done.append
        schedule = self._completion_bh.schedule
        wake = threading.Lock()
        wake.acquire()
        me = threading.current_thread()
        with lock:
            self._pending -= 1
        self._start_next()  # the next pending worker, if any
        lock.acquire()
        try:
            while self._cur <= self._max and not self._closed:
                if not queue:
                    entry = (wake, me)
                    self._idle.append(entry)
                    lock.release()
                    woken = wake.acquire(True, IDLE_TIMEOUT)
                    lock.acquire()
                    if not woken:
                        if entry in self._idle:
                            self._idle.remove(entry)
                            if not queue and self._cur > self._min:
                                break  # timed out, nothing to do, not needed warm: exit
                            continue
                        wake.acquire()  # woken just as the wait timed out: take that wake-up
                    self._waking -= 1
                    continue
                req = queue.popleft()
                if req._state != _QUEUED:
                    continue  # cancelled while it waited
                req._state = _ACTIVE
                lock.release()
                try:
                    req._value = req._fn(*req._args)  # type: ignore[misc]
                except BaseException as exc:  # delivered to the callback, never lost
                    req._value = exc
                    req._failed = True
                req._fn = req._args = None
                req._state = _DONE
                done_append(req)
                try:
                    schedule()
                except RuntimeError:
                    pass  # the context closed while the job ran: nobody gets the result
                lock.acquire()
                if self._waiters:
                    event = self._waiters.pop(req, None)
                    if event is not None:
                        event.set()
        finally:
            self._cur -= 1
            self._threads.discard(me)
            # woken for a request but leaving (above max, or closed): pass the wake-up on
            if queue and self._idle and not self._closed:
                self._waking += 1
                self._idle.pop()[0].release()
            lock.release()

    # ---- delivery (QEMU: thread_pool_completion_bh)

    def _completion(self) -> None:
        done = self._done
        heap = self._heap
        popleft = done.popleft
        bh = self._completion_bh
        while True:
            while done:
                req = popleft()
                _heappush(heap, (-req._seq, req))
            if not heap:
                break
            req = _heappop(heap)[1]
            cb = req._callback
            if cb is None:
                continue
            req._callback = None
            more = bool(heap or done)
            if more:
                bh.schedule()  # a nested poll() in the callback delivers the others
            cb(req._value)
            if more:
                bh.cancel()
        _kick()

    # ---- teardown (QEMU: thread_pool_free), from ctx.close()

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cur -= self._new_threads
            self._new_threads = 0
            for req in self._queue:
                if req._state == _QUEUED:
                    req._state = _DONE
                    req._cancelled = req._failed = True
                    req._value = _CancelledError()
                    req._fn = req._args = None
                req._callback = None
            self._queue.clear()
            for req in [r for r in self._waiters if r._state == _DONE]:
                self._waiters.pop(req).set()  # cancelled above; a running one: when it ends
            idle, self._idle = self._idle, []
            self._waking += len(idle)
            for wake, _ in idle:
                wake.release()
        me = threading.current_thread()
        for _, thread in idle:  # they exit at once; a worker inside a job finishes it first
            if thread is not me:
                thread.join()
        self._done.clear()
        self._heap.clear()


# --------------------------------------------------------------------------------------------
# One pool per context


_pools_lock = threading.Lock()
_live_pools: weakref.WeakSet[ThreadPool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # The workers did not survive the fork: forget them (and a lock a worker may have held),
    # so that the child's next submission starts new ones.  Jobs that were running are lost.
    global _pools_lock
    _pools_lock = threading.Lock()
    for pool in list(_live_pools):
        pool._lock = threading.Lock()
        pool._idle = []
        pool._threads = set()
        pool._waiters = {}
        pool._waking = pool._cur = pool._new_threads = pool._pending = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def pool_of(ctx: Any) -> ThreadPool:
    """``aio_get_thread_pool``: ``ctx``'s pool, made on first use (any thread)."""
    pool = ctx._thread_pool
    if pool is None:
        with _pools_lock:
            pool = ctx._thread_pool
            if pool is None:
                if ctx.closed:
                    raise RuntimeError("AioContext is closed")
                pool = ctx._thread_pool = ThreadPool._new(ctx)
                _live_pools.add(pool)
    return pool  # type: ignore[no-any-return]


def close_pool(ctx: Any) -> None:
    """Stop ``ctx``'s pool (``ctx.close()``): queued requests are dropped, idle workers exit
    (joined), a worker inside a job exits when it finishes; no callback runs any more."""
    with _pools_lock:
        pool = ctx._thread_pool
        ctx._thread_pool = None
    if pool is not None:
        pool._close()
