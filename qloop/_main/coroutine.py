"""QEMU-style coroutines on Python's native coroutines (docs/coroutines.md).

Shared by both implementations (none of it is a hot path).  A ``Coroutine`` wraps a coroutine
object from an ``async def``; ``enter()`` runs it until it awaits ``coroutine_yield()`` (or a
qloop awaitable built on it, such as ``co_sleep_ns``) or returns.

* ``co.enter()`` (``qemu_coroutine_enter``) runs it now, nested in the caller.
* ``co_wake(co)`` (``aio_co_wake``): if ``co`` belongs to another thread's context, it is
  scheduled there (``ctx.co_schedule``); if called from inside a coroutine, ``co`` is queued
  to run right after the current coroutine yields (chained, not nested: ping-pong between
  two coroutines does not grow the stack); otherwise it is entered at once.
* ``ctx.co_schedule(co)`` (``aio_co_schedule``) enters ``co`` from a BH of ``ctx``, in FIFO
  order; scheduling a coroutine that is already scheduled raises RuntimeError.

A coroutine's exception propagates out of the ``enter()`` (or BH, or timer callback) that
resumed it.  Awaiting anything else than a qloop awaitable (an asyncio future, say) raises
TypeError inside the coroutine.
"""

from __future__ import annotations

import inspect
import sys
import threading
import weakref
from collections import deque
from collections.abc import Coroutine as _PyCoroutine, Generator
from typing import Any

from .._common import _clock_of, _int_arg, _raise_errors

__all__ = [
    "Coroutine",
    "co_reschedule_self",
    "co_sleep_ns",
    "co_wake",
    "coroutine_self",
    "coroutine_yield",
    "get_current_aio_context",
    "in_coroutine",
    "set_current_aio_context",
]

_YIELD = object()  # what a qloop awaitable yields to the enterer


class _Yield:
    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        yield _YIELD


_yield_once = _Yield()


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.current: Coroutine | None = None
        self.ctx: Any = None


_tls = _ThreadState()
_co_state_lock = threading.Lock()
# Callables giving the main context to a thread that holds a main loop's BQL (else None).
_bql_context_providers: list[Any] = []


def add_bql_context_provider(provider: Any) -> None:
    if provider not in _bql_context_providers:
        _bql_context_providers.append(provider)


# contexts a thread registered as its own: ctx -> that thread's ident
_owners: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
# what the scheduler's BH calls once it entered its coroutines: aio_wait_kick (set by
# qloop/_main/aio_wait.py, which imports this module)
_kick: Any = int


def set_current_aio_context(ctx: Any) -> None:
    """Register ``ctx`` as this thread's AioContext (``qemu_set_current_aio_context``);
    ``None`` unregisters.  ``init_main_loop()`` registers the main context this way."""
    old = _tls.ctx
    if old is not None and _owners.get(old) == threading.get_ident():
        del _owners[old]
    _tls.ctx = ctx
    if ctx is not None:
        _owners[ctx] = threading.get_ident()


def context_owner(ctx: Any) -> int | None:
    """The ident of the thread that registered ``ctx`` as its context, if one did."""
    return _owners.get(ctx)


def get_current_aio_context() -> Any:
    """``qemu_get_current_aio_context``: this thread's registered AioContext; else the main
    context if this thread holds the big lock; else None."""
    ctx = _tls.ctx
    if ctx is None:
        for provider in _bql_context_providers:
            ctx = provider()
            if ctx is not None:
                break
    return ctx


def coroutine_yield() -> _Yield:
    """``await qloop.coroutine_yield()``: give control back to whoever entered us."""
    return _yield_once


def coroutine_self() -> Coroutine | None:
    """The coroutine running in this thread, or None."""
    return _tls.current


def in_coroutine() -> bool:
    """Whether this thread is running a coroutine (``qemu_in_coroutine``)."""
    return _tls.current is not None


class Coroutine:
    """A QEMU coroutine around a native coroutine object (``qemu_coroutine_create``)."""

    __slots__ = ("__weakref__", "_coro", "_scheduled", "_state", "_wakeups", "ctx", "result")

    def __init__(self, coro: _PyCoroutine[Any, Any, Any], *, ctx: Any = None) -> None:
        if not inspect.iscoroutine(coro):
            raise TypeError(
                f"Coroutine needs a coroutine object (call the async function), not "
                f"{type(coro).__name__}")
        self._coro = coro
        self.ctx = ctx  # the context it last ran in / is bound to
        self._state = "created"  # created, running, yielded, done
        self._wakeups: deque[Coroutine] = deque()
        self._scheduled: str | None = None
        self.result: Any = None

    @property
    def done(self) -> bool:
        return self._state == "done"

    @property
    def running(self) -> bool:
        return self._state == "running"

    def _check_enterable(self) -> None:
        if self._state == "running":
            raise RuntimeError("Co-routine re-entered recursively")
        if self._state == "done":
            raise RuntimeError("Co-routine was already terminated")

    def enter(self) -> None:
        """Run the coroutine until it yields or ends (``qemu_coroutine_enter``)."""
        if self._scheduled is not None:
            raise RuntimeError(f"Co-routine was already scheduled in '{self._scheduled}'")
        self._enter(None)

    def _enter(self, ctx: Any) -> None:
        self._check_enterable()
        pending: deque[Coroutine] = deque((self,))
        first = True
        while pending:
            co = pending.popleft()
            if not first and co._state in ("running", "done"):
                continue
            first = False
            if ctx is not None:
                co.ctx = ctx
            elif co.ctx is None:
                co.ctx = get_current_aio_context()
            co._step()
            if co._wakeups:
                pending.extendleft(reversed(co._wakeups))
                co._wakeups.clear()

    def _step(self) -> None:
        prev = _tls.current
        _tls.current = self
        self._state = "running"
        value: Any = None
        try:
            while True:
                try:
                    yielded = self._coro.send(value) if value is None else self._coro.throw(value)
                except StopIteration as stop:
                    self._state = "done"
                    self.result = stop.value
                    return
                except BaseException:
                    self._state = "done"
                    raise
                if yielded is _YIELD:
                    self._state = "yielded"
                    return
                value = TypeError(
                    f"a qloop Coroutine can only await qloop awaitables, not {yielded!r}")
        finally:
            _tls.current = prev

    def __repr__(self) -> str:
        return f"<qloop.Coroutine {self._coro.__qualname__} {self._state}>"


def co_wake(co: Coroutine) -> None:
    """``aio_co_wake``: resume ``co`` in its own context (see the module docstring)."""
    if not isinstance(co, Coroutine):
        raise TypeError(f"co_wake needs a qloop.Coroutine, not {type(co).__name__}")
    ctx = co.ctx
    if ctx is not None and ctx is not get_current_aio_context():
        ctx.co_schedule(co)
        return
    current = _tls.current
    if current is not None:
        if co is current:
            raise RuntimeError("Co-routine re-entered recursively")
        co._check_enterable()
        current._wakeups.append(co)
        return
    if co._scheduled is not None:
        raise RuntimeError(f"Co-routine was already scheduled in '{co._scheduled}'")
    co._enter(ctx)


def co_schedule(ctx: Any, co: Coroutine) -> None:
    """``aio_co_schedule``: enter ``co`` from a BH of ``ctx`` (FIFO).  Safe from any thread."""
    if not isinstance(co, Coroutine):
        raise TypeError(f"co_schedule needs a qloop.Coroutine, not {type(co).__name__}")
    state = ctx._co_state
    with _co_state_lock:  # test-and-set: two threads cannot both schedule it
        if co._scheduled is not None:
            raise RuntimeError(f"Co-routine was already scheduled in '{co._scheduled}'")
        if co._state == "done":
            raise RuntimeError("Co-routine was already terminated")
        if state is None:
            state = ctx._co_state
            if state is None:
                queue: deque[Coroutine] = deque()
                bh = ctx.bh_new(lambda: _co_schedule_bh(ctx, queue), name="co_schedule_bh")
                state = ctx._co_state = (queue, bh)
        co._scheduled = "co_schedule"
        co.ctx = ctx
        state[0].append(co)
    state[1].schedule()


def _co_schedule_bh(ctx: Any, queue: deque[Coroutine]) -> None:
    batch: list[Coroutine] = []
    while queue:
        batch.append(queue.popleft())
    errors: list[BaseException] = []
    for co in batch:
        co._scheduled = None
        try:
            co._enter(ctx)
        except BaseException as exc:
            errors.append(exc)
    _kick()
    if errors:
        _raise_errors(errors)


class _Reschedule:
    """The awaitable behind ``co_reschedule_self``."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def __await__(self) -> Generator[Any, None, None]:
        co = _tls.current
        if co is None:
            raise RuntimeError("co_reschedule_self() must be awaited inside a qloop Coroutine")
        new_ctx = self.ctx
        old = co.ctx if co.ctx is not None else get_current_aio_context()
        if old is new_ctx:
            return
        if old is None:
            raise RuntimeError("co_reschedule_self(): the coroutine runs in no AioContext")
        # Not co_schedule() from here: the new context's thread could enter the coroutine
        # before it yielded in this one.  A one-shot BH of this thread's context runs after
        # the yield.
        old.bh_schedule_oneshot(lambda: co_schedule(new_ctx, co), name="co_reschedule_self")
        yield _YIELD
        while co.ctx is not new_ctx:  # a stray co_wake() before the move
            yield _YIELD


def co_reschedule_self(ctx: Any) -> _Reschedule:
    """``await qloop.co_reschedule_self(ctx)`` (``aio_co_reschedule_self``): move the running
    coroutine to ``ctx``; it resumes there (in ``ctx``'s thread).  No-op if it runs there."""
    if getattr(ctx, "co_schedule", None) is None or not hasattr(ctx, "_co_state"):
        raise TypeError(f"co_reschedule_self needs an AioContext, not {type(ctx).__name__}")
    return _Reschedule(ctx)


class _Sleep:
    """The awaitable behind ``co_sleep_ns``."""

    __slots__ = ("clock", "ns")

    def __init__(self, clock: Any, ns: int) -> None:
        self.clock = clock
        self.ns = ns

    def __await__(self) -> Generator[Any, None, None]:
        co = _tls.current
        if co is None:
            raise RuntimeError("co_sleep_ns() must be awaited inside a qloop Coroutine")
        ctx = co.ctx if co.ctx is not None else get_current_aio_context()
        if ctx is None:
            raise RuntimeError("co_sleep_ns(): the coroutine has no AioContext "
                               "(pass ctx= to Coroutine, or call init_main_loop())")
        impl = sys.modules[type(ctx).__module__]
        timer = ctx.timer_new_ns(self.clock, lambda: co_wake(co))
        timer.mod_ns(impl.clock_get_ns(self.clock) + self.ns)
        try:
            while timer.pending:  # a spurious co_wake() does not end the sleep early
                yield _YIELD
        finally:
            timer.delete()


def co_sleep_ns(clock: Any, ns: int) -> _Sleep:
    """``await qloop.co_sleep_ns(clock, ns)``: sleep ``ns`` nanoseconds on ``clock``."""
    _clock_of(clock)
    if _int_arg(ns, "ns") < 0:
        raise ValueError(f"ns must be >= 0, got {ns}")
    return _Sleep(clock, ns)
