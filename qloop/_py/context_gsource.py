"""The GSource adapter of AioContext (``docs/glib.md``): how an outer loop (GLib's, through
``qloop/_main/glib.py``) drives a context.  Twin of ``qloop/_cy/context_gsource.pxi``,
function by function in the same order.

The bodies of ``AioContext.g_source()`` and ``source_prepare/query/check/dispatch()``: the
methods stay on the class (the public API, with their signatures and docstrings) and call
these.  ``context.py`` imports this module, so this one imports it back for types only.
"""

from __future__ import annotations

import select
import threading
from typing import TYPE_CHECKING, Any

from .._common import _closed_fd_error, _int_arg, _raise_errors
from .._constants import READ_EVENTS, WRITE_EVENTS
from .._main import glib as _glib

if TYPE_CHECKING:
    from .context import AioContext, _Handler

_POLLIN = select.POLLIN
_POLLNVAL = select.POLLNVAL


def gsource_get(ctx: AioContext) -> Any:
    """``AioContext.g_source()``."""
    ctx._check_open()
    src = ctx._g_source_obj
    if src is None or src.is_destroyed():
        src = ctx._g_source_obj = _glib.make_g_source(ctx)
    return src


def gsource_prepare(ctx: AioContext) -> int:
    """``AioContext.source_prepare()``."""
    ctx._check_open()
    ctx._notify_me |= 1
    timeout = ctx._compute_timeout()
    ctx._poll_set_started(False, [], 0)  # poll mode is never used under an outer loop
    return timeout


def gsource_query(ctx: AioContext) -> list[tuple[int, int]]:
    """``AioContext.source_query()``."""
    ctx._check_open()
    if ctx._epoll_active:
        assert ctx._epoll is not None
        nodes: list[_Handler | None] = [None]
        fds = [(ctx._epoll.fileno(), _POLLIN)]
    else:
        with ctx._list_lock:
            live = [n for n in ctx._handlers.values() if n.events]
        nodes = list(live)
        fds = [(n.fd, n.events) for n in live]
    ctx._source_nodes = nodes
    return fds


def gsource_check(ctx: AioContext, revents: list[int] | None) -> bool:
    """``AioContext.source_check(revents)``."""
    ctx._check_open()
    ctx._notify_me &= ~1
    ctx._notified = False  # aio_notify_accept
    nodes = getattr(ctx, "_source_nodes", [])
    ctx._source_nodes = []
    ctx._source_epoll_ready = False
    pending = False
    if revents is not None:
        if len(revents) != len(nodes):
            raise ValueError(f"revents has {len(revents)} entries; source_query() gave {len(nodes)}")
        for node, rev in zip(nodes, revents, strict=True):  # lengths checked above
            rev = _int_arg(rev, "revents[i]")
            if node is None:
                ctx._source_epoll_ready = bool(rev)
                pending = pending or bool(rev)
                continue
            if node.deleted:
                continue
            if rev & _POLLNVAL:
                ctx._set_handler(node.fd, None, None, None, None)
                saved_errors, ctx._errors = ctx._errors, ctx._source_errors
                try:
                    ctx._report(_closed_fd_error(node.fd))
                finally:
                    ctx._errors = saved_errors
                pending = True
                continue
            node.revents = rev & node.events
            if (node.revents & READ_EVENTS and node.io_read is not None) or (
                    node.revents & WRITE_EVENTS and node.io_write is not None):
                pending = True
    if ctx._bh_timeout() >= 0:
        return True  # a scheduled BH, idle ones included
    if pending:
        return True
    return ctx._timers_deadline() == 0


def gsource_dispatch(ctx: AioContext) -> bool:
    """``AioContext.source_dispatch()``."""
    ctx._check_open()
    me = threading.get_ident()
    if ctx._walkers and ctx._poll_thread != me:
        raise RuntimeError("AioContext dispatched from two threads at once")
    if not ctx._walkers:
        ctx._poll_thread = me
    saved_errors = ctx._errors
    errors = ctx._errors = ctx._source_errors
    ctx._source_errors = []
    progress = False
    try:
        ctx._walkers += 1
        try:
            # a new generation before the BHs, as poll() does (the asyncio loop's timer
            # phase tells the timers made in this iteration by it); another one if a
            # nested poll in a BH took it
            ctx._ready_gen += 1
            gen = ctx._ready_gen
            progress = ctx._bh_poll()
            if ctx._ready_gen != gen:
                ctx._ready_gen += 1
                gen = ctx._ready_gen
            ready: list[_Handler] = []
            if ctx._epoll_active:
                if ctx._source_epoll_ready:
                    ctx._source_epoll_ready = False
                    ctx._wait(ready, 0, gen)
            else:
                for node in list(ctx._handlers.values()):
                    if node.revents and node.ready_gen != gen:
                        node.ready_gen = gen
                        ready.append(node)
            for node in ready:
                if node.ready_gen != gen:
                    continue
                node.ready_gen = 0
                if ctx._dispatch_node(node):
                    progress = True
        finally:
            ctx._walkers -= 1
        if ctx._run_timers():
            progress = True
    finally:
        ctx._errors = saved_errors
        if not ctx._walkers:
            ctx._poll_thread = None
    if errors:
        _raise_errors(errors)
    return progress
