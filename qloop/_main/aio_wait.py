"""QEMU's ``AIO_WAIT_WHILE`` (``aio-wait.h``): poll until a condition is false
(docs/iothreads.md, "Waiting for another context").

Shared by both implementations.

* ``aio_wait_while(ctx, cond)``: while ``cond()`` is true, poll.  In ``ctx``'s home thread (its
  registered context, or a context no other thread has registered: the caller drives it) the
  caller polls ``ctx`` itself.  A context another thread runs (an IOThread's) can only be
  waited for from the main loop: the caller then sleeps in the main context, and whoever
  changes what ``cond`` reads calls ``aio_wait_kick()`` to wake it.
* ``aio_wait_kick()``: if anyone waits, schedule the main context's dummy BH, so the
  waiter's poll returns and it checks its condition again.  Every BH qloop runs to finish
  work in a context (the coroutine scheduler, the thread pool's completions, one-shot BHs of
  ``aio_wait_bh_oneshot``) kicks.
* The waiter count is process-wide.  Under the GIL the increment before the first check of
  the condition and the kicker's read after its own change cannot be reordered; the count
  changes under a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .._common import _check_callback
from . import coroutine as _coroutine

__all__ = ["aio_wait_bh_oneshot", "aio_wait_kick", "aio_wait_while", "num_waiters",
           "register_main_loop"]

_lock = threading.Lock()
_num_waiters = 0
# each implementation's main loop: AioContext type -> (main context getter, kick)
_main_loops: dict[type, tuple[Callable[[], Any], Callable[[], None]]] = {}
_kickers: list[Callable[[], None]] = []


def register_main_loop(context_type: type, main_context: Callable[[], Any],
                       kick: Callable[[], None]) -> None:
    """An implementation's main loop: its main context (None before ``init_main_loop``) and
    the function that wakes a poll of it (``notify_event``)."""
    _main_loops[context_type] = (main_context, kick)
    if kick not in _kickers:
        _kickers.append(kick)


def num_waiters() -> int:
    """How many ``wait_while`` calls are waiting right now (all threads)."""
    return _num_waiters


def aio_wait_kick() -> None:
    """``aio_wait_kick``: wake every ``wait_while`` sleeping in a main context so that it
    checks its condition again.  A no-op (one read) when nobody waits.  Any thread."""
    if _num_waiters > 0:
        for kick in _kickers:
            kick()


# the coroutine scheduler's BH kicks too (coroutine.py cannot import this module)
_coroutine._kick = aio_wait_kick


def _waiter_count(delta: int) -> None:
    global _num_waiters
    with _lock:
        _num_waiters += delta


def aio_wait_while(ctx: Any, cond: Callable[[], Any]) -> bool:
    """``AIO_WAIT_WHILE(ctx, cond)``: poll until ``cond()`` is false; True if it polled.

    In ``ctx``'s own thread (or for a context no other thread runs) it polls ``ctx``; for a
    context another thread runs (an IOThread's), the caller must be in the main loop and
    sleeps in the main context until an ``aio_wait_kick()``.  RuntimeError otherwise."""
    _check_callback(cond, "cond", optional=False)
    if ctx.closed:
        raise RuntimeError("AioContext is closed")
    current = _coroutine.get_current_aio_context()
    target = ctx
    if ctx is not current:
        owner = _coroutine.context_owner(ctx)
        if owner is not None and owner != threading.get_ident():
            entry = _main_loops.get(type(ctx))
            main = entry[0]() if entry is not None else None
            if main is None or current is not main:
                raise RuntimeError(
                    "wait_while(): this context runs in another thread; wait for it from that "
                    "thread or from the main loop (the thread of init_main_loop(), or one "
                    "holding the big lock)")
            target = main
    waited = False
    _waiter_count(1)
    try:
        while cond():
            target.poll(True)
            waited = True
    finally:
        _waiter_count(-1)
    return waited


def aio_wait_bh_oneshot(ctx: Any, callback: Callable[[], Any]) -> None:
    """``aio_wait_bh_oneshot``: run ``callback()`` in ``ctx`` from a one-shot BH and wait
    (``wait_while``) until it ran.  What it raises is raised here."""
    _check_callback(callback, "callback", optional=False)
    box: list[BaseException | None] = []

    def run() -> None:
        try:
            callback()
        except BaseException as exc:  # handed to the waiter
            box.append(exc)
        else:
            box.append(None)
        aio_wait_kick()

    ctx.bh_schedule_oneshot(run, name="aio_wait_bh")
    aio_wait_while(ctx, lambda: not box)
    if box[0] is not None:
        raise box[0]
