"""The main loop's adapter over AioContext (``docs/main-loop-iteration.md``): the steps one
``main_loop_wait`` iteration (``qloop/_py/mainloop.py``) takes on each of its contexts.  Twin
of ``qloop/_cy/context_mainloop.pxi``, function by function in the same order.

They are the GSource steps (``AioContext.source_*``) without their argument checks and
per-call lists.  Module-level functions rather than methods: the class stays its public API
(the core's twins are C functions over a typed context).
"""

from __future__ import annotations

import select
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import AioContext, _Handler

_POLLIN = select.POLLIN


def ml_open_window(ctx: AioContext) -> None:
    """The main loop's wait may block: from now on a notify must wake it (as
    ``source_prepare``, bit 0 of notify_me)."""
    ctx._notify_me |= 1


def ml_timeout(ctx: AioContext) -> int:
    """The timeout in ns ``ctx`` allows (poll mode is left: an outer loop never busy-polls)."""
    if ctx._poll_started:
        ctx._poll_set_started(False, [], 0)
    return ctx._compute_timeout()


def ml_enter(ctx: AioContext, me: int) -> None:
    """Enter as a walker for the main loop's wait: the handlers in the poll set
    outlive it."""
    if ctx._walkers and ctx._poll_thread != me:
        raise RuntimeError("AioContext dispatched from two threads at once")
    ctx._walkers += 1
    ctx._poll_thread = me


def ml_fds(ctx: AioContext) -> dict[int, int]:
    """The fds (and events) the main loop waits on for ``ctx``."""
    if ctx._epoll_active:
        return {ctx._epoll.fileno(): _POLLIN}  # type: ignore[union-attr]
    return {fd: node.events for fd, node in ctx._handlers.items() if node.events}


def ml_accept(ctx: AioContext, window: bool) -> None:
    """An iteration without a wait: close the notify window, accept the notify."""
    if window:
        ctx._notify_me &= ~1
    ctx._notified = False  # aio_notify_accept


def ml_idle(ctx: AioContext) -> bool:
    """Only the context's own notifier is registered (its state is known without a wait)."""
    return ctx._npollfds <= 1 and not ctx._epoll_active


def ml_check(ctx: AioContext, ready_fds: list[tuple[int, int]], window: bool
             ) -> tuple[list[_Handler] | None, int]:
    """Close the notify window (if ``window``), accept the notify, collect the handlers the
    wait found ready in ``ready_fds`` and leave the walker section.  Returns the ready
    handlers (None: none) and their generation."""
    if window:
        ctx._notify_me &= ~1
    ctx._notified = False  # aio_notify_accept
    ctx._ready_gen += 1
    gen = ctx._ready_gen
    ready: list[_Handler] | None = None
    try:
        if ready_fds:
            ready = []
            if ctx._epoll_active:
                epfd = ctx._epoll.fileno()  # type: ignore[union-attr]
                if any(fd == epfd for fd, _ in ready_fds):
                    ctx._wait(ready, 0, gen)
            else:
                ctx._collect_ready(ready_fds, ready, gen)
    finally:
        ctx._walkers -= 1
        if not ctx._walkers:
            ctx._poll_thread = None
    return ready or None, gen


def ml_dispatch(ctx: AioContext, ready: list[_Handler] | None, gen: int, me: int) -> None:
    """``aio_dispatch`` for the main loop: BHs, the ready handlers, then timers."""
    if ctx._closed:
        return
    if ctx._walkers and ctx._poll_thread != me:
        raise RuntimeError("AioContext dispatched from two threads at once")
    ctx._poll_thread = me
    # a new generation for each iteration, waited or not (the asyncio loop's timer phase
    # tells the timers made in this iteration by it); the ready list keeps its own
    ctx._ready_gen += 1
    ctx._walkers += 1
    try:
        if ctx._bh_ops or ctx._bh_list or ctx._bh_slices:
            ctx._bh_poll()
        if ready is not None:
            for node in ready:
                if node.ready_gen != gen:
                    continue
                node.ready_gen = 0
                ctx._dispatch_node(node)
    finally:
        ctx._walkers -= 1
    tls = ctx._timer_lists
    if tls[0].heap or tls[1].heap or tls[2].heap or tls[3].heap:
        ctx._run_timers()
    if not ctx._walkers:
        ctx._poll_thread = None
