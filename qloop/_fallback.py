"""The pure-Python implementation, assembled: QEMU's AioContext, bottom halves, timers and
clocks (``qloop._py``), the process-wide main loop over them (``qloop._main``) and the asyncio
event loop (``qloop._aio`` over ``qloop._py.loop``).

``qloop._core`` is its compiled twin and must behave identically: the twin modules pair up by
name (``qloop/_py/timers.py`` with ``qloop/_cy/timers.pxi``, and so on), their methods come in
the same order, and an attribute ``_x`` here is the core's C attribute ``x``.  The behaviour is
described in ``docs/``; choices QEMU's behaviour leaves open are in ``docs/decisions.md``.
Nothing in qloop imports this module but ``qloop/__init__.py``.
"""

from __future__ import annotations

import types

from ._aio.build import build_implementation
from ._common import NotifierList
from ._constants import (
    SCALE_MS,
    SCALE_NS,
    SCALE_US,
    TIMER_ATTR_ALL,
    TIMER_ATTR_EXTERNAL,
    ClockType,
)
from ._main import glib as _glib, mainloop as _mainloop, runstate as _runstate
from ._py import dgram, loop, mainloop, pipes, transports
from ._py.bh import BH
from ._py.clock import (
    _virtual_deadline,
    clock_advance_virtual_time,
    clock_enable,
    clock_get_ms,
    clock_get_ns,
    clock_get_us,
    clock_is_enabled,
    clock_is_manual,
    clock_set_manual,
    soonest_timeout,
    timeout_ns_to_ms,
)
from ._py.context import AioContext
from ._py.notifier import EventNotifier
from ._py.timers import Timer

__all__: list[str] = [
    "BH",
    "SCALE_MS",
    "SCALE_NS",
    "SCALE_US",
    "TIMER_ATTR_ALL",
    "TIMER_ATTR_EXTERNAL",
    "AioContext",
    "ClockType",
    "EventNotifier",
    "NotifierList",
    "Timer",
    "clock_advance_virtual_time",
    "clock_enable",
    "clock_get_ms",
    "clock_get_ns",
    "clock_get_us",
    "clock_is_enabled",
    "clock_is_manual",
    "clock_set_manual",
    "soonest_timeout",
    "timeout_ns_to_ms",
]

# The public classes present themselves as this module's, as the core's are ``qloop._core``'s.
for _cls in (AioContext, BH, EventNotifier, Timer):
    _cls.__module__ = __name__
del _cls


# --------------------------------------------------------------------------------------------
# The process-wide main loop, run state and coroutines (docs/main-loop.md,
# docs/run-states.md, docs/coroutines.md), shared Python code instantiated over this
# implementation.

_main_loop = _mainloop.MainLoop(types.SimpleNamespace(
    AioContext=AioContext,
    BigLock=mainloop.BigLock,
    MainLoopWait=mainloop.MainLoopWait,
    glib_poller=None,  # the ctypes one
    clock_enable=clock_enable,
    clock_get_ns=clock_get_ns,
    clock_is_manual=clock_is_manual,
    clock_advance_virtual_time=clock_advance_virtual_time,
    virtual_deadline=_virtual_deadline,
    module=__name__,
))
globals().update(_main_loop.exports())
RunState = _runstate.RunState
GLibUnavailable = _glib.GLibUnavailable

__all__.extend(_mainloop.EXPORTS)
__all__.extend(_mainloop.SHARED_EXPORTS)
__all__.append("GLibUnavailable")


# --------------------------------------------------------------------------------------------
# The asyncio event loop: its hot base in qloop._py.loop, the rest shared Python (qloop._aio).

_loop_exports = build_implementation(
    "qloop._fallback", loop._LoopBase,
    {
        "_make_socket_transport": transports._make_stream_transport,
        "_make_read_pipe_transport": pipes._make_read_pipe_transport,
        "_make_write_pipe_transport": pipes._make_write_pipe_transport,
        "_make_datagram_transport": dgram._make_datagram_transport,
    })
EventLoop = _loop_exports["EventLoop"]
new_event_loop = _loop_exports["new_event_loop"]
EventLoopPolicy = _loop_exports["EventLoopPolicy"]
install = _loop_exports["install"]
run = _loop_exports["run"]
VirtualTimeDeadlock = _loop_exports["VirtualTimeDeadlock"]
advance = _loop_exports["advance"]
Handle = loop.Handle
TimerHandle = loop.TimerHandle

__all__ += ["EventLoop", "EventLoopPolicy", "VirtualTimeDeadlock", "advance", "install",
            "new_event_loop", "run"]
