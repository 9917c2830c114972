"""Assembling one implementation's asyncio names: ``EventLoop = (base, mixins...,
asyncio.AbstractEventLoop)``, ``new_event_loop``, ``EventLoopPolicy``, ``install`` and ``run``.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import warnings
from asyncio import events
from collections.abc import Callable
from typing import Any

from . import dgram, net, pipes, sendfile, signals, subprocess
from .api import EventLoopAPI
from .deadlock import VirtualTimeDeadlock
from .helpers import _check_callback_slow
from .virtual_time import VirtualTimeAPI, advance, check_options

__all__ = ["build_implementation"]

# --------------------------------------------------------------------------------------------
# Assembling an implementation

# asyncio's policy base (3.14 renamed it; getattr: typeshed knows one name per version)
# asyncio's child-watcher API (Unix, Python < 3.14; deprecated from 3.12).  qloop's loops reap
# their subprocesses with qloop's own child watch and never consult a watcher; the policy keeps
# one for code that uses the API directly, as asyncio's Unix policy does.
_HAS_CHILD_WATCHERS = hasattr(asyncio, "AbstractChildWatcher")


def _get_child_watcher(self: Any) -> Any:
    """The policy's child watcher (a ``ThreadedChildWatcher`` made on first use unless one was
    set).  qloop's loops do not need it: their subprocesses are reaped by qloop itself."""
    watcher = getattr(self, "_qloop_child_watcher", None)
    if watcher is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            watcher = asyncio.ThreadedChildWatcher()  # type: ignore[attr-defined, unused-ignore]
        self._qloop_child_watcher = watcher
    return watcher


def _set_child_watcher(self: Any, watcher: Any) -> None:
    """Replace the policy's child watcher (the previous one is closed), as asyncio's Unix
    policy does; ``None`` drops it."""
    if watcher is not None and not isinstance(
            watcher, asyncio.AbstractChildWatcher):  # type: ignore[attr-defined, unused-ignore]
        raise TypeError(f"a child watcher must be an asyncio.AbstractChildWatcher, "
                        f"not {type(watcher).__name__}")
    previous = getattr(self, "_qloop_child_watcher", None)
    if previous is not None and previous is not watcher:
        previous.close()
    self._qloop_child_watcher = watcher


# asyncio's handle for call_soon_threadsafe() (Python 3.14+): cancel() and cancelled() from
# another thread wait while the callback runs, and a handle cancelled before it starts never runs
_ThreadSafeHandle: Any = getattr(events, "_ThreadSafeHandle", None)
_empty_context = contextvars.Context


def _threadsafe_method(base: Any) -> Callable[..., Any]:
    """``call_soon_threadsafe`` returning asyncio's thread-safe handle: the core queues the
    handle's ``_run`` (which runs the callback in the handle's context under its lock)."""
    push = base.call_soon_threadsafe

    def call_soon_threadsafe(self: Any, callback: Any, /, *args: Any,
                             context: Any = None) -> Any:
        """``call_soon`` from any thread (or a signal handler): wakes the loop; returns a
        handle that another thread may cancel."""
        if self.is_closed():
            raise RuntimeError("Event loop is closed")
        _check_callback_slow(callback, "call_soon_threadsafe")
        if context is not None and type(context) is not contextvars.Context:
            raise TypeError(f"context must be a contextvars.Context, "
                            f"not {type(context).__name__}")
        handle = _ThreadSafeHandle(callback, args, self, context)
        tb = handle._source_traceback  # debug mode: where the handle was made, not how
        if tb:
            del tb[-2:]  # the handle's __init__ and this method
        push(self, handle._run, context=_empty_context())
        return handle

    return call_soon_threadsafe


_BasePolicy: Any = getattr(events, "BaseDefaultEventLoopPolicy", None) or getattr(  # noqa: B009
    events, "_BaseDefaultEventLoopPolicy")


def _set_policy(policy: Any) -> None:
    """``asyncio.set_event_loop_policy``.  Python 3.14 deprecates the policy API (that function
    warns); the setter asyncio's own code calls there sets the same policy without the warning,
    and asyncio.new_event_loop() and asyncio.run() then make qloop's loops."""
    setter = getattr(events, "_set_event_loop_policy", None)
    if setter is None:
        setter = asyncio.set_event_loop_policy
    setter(policy)


def build_implementation(module: str, base: Any,
                         transports: dict[str, Callable[..., Any]]) -> dict[str, Any]:
    """The public asyncio names of one implementation: ``EventLoop``, ``new_event_loop``,
    ``EventLoopPolicy``, ``install`` and ``run``.  ``transports`` maps the loop's transport
    factory methods (``_make_socket_transport``, ``_make_datagram_transport``,
    ``_make_read_pipe_transport``, ``_make_write_pipe_transport``) to the implementation's
    functions taking the loop first."""

    def __init__(self: Any, *, ctx: Any = None, virtual_time: bool = False,
                 autojump: bool = True, start: float = 0.0,
                 autojump_after: float | None = None) -> None:
        options = check_options(virtual_time, autojump, start, autojump_after)
        base.__init__(self, ctx)
        self._init_api()
        try:
            self._init_virtual_time(*options)
        except BaseException:
            self.close()
            raise

    namespace: dict[str, Any] = {
        "__init__": __init__,
        "__module__": module,
        "__qualname__": "EventLoop",
        "__doc__": (
            "qloop's asyncio event loop, on an AioContext (``aio_context``): its own, or the "
            "``ctx`` given.  Create it with ``new_event_loop()``."),
    }
    for name, factory in transports.items():
        namespace[name] = _loop_method(name, factory)
    if _ThreadSafeHandle is not None:
        namespace["call_soon_threadsafe"] = _threadsafe_method(base)
    bases: tuple[Any, ...] = (base, EventLoopAPI, VirtualTimeAPI, signals.SignalMixin,
                              subprocess.SubprocessMixin, pipes.PipeMixin, dgram.DatagramMixin,
                              sendfile.SendfileMixin, *net.MIXINS,
                              asyncio.AbstractEventLoop)
    loop_cls = type("EventLoop", bases, namespace)

    def new_event_loop(*, ctx: Any = None, virtual_time: bool = False, autojump: bool = True,
                       start: float = 0.0, autojump_after: float | None = None) -> Any:
        """A new qloop event loop on its own AioContext, or on ``ctx`` (for example
        ``qloop.get_aio_context()``, to run asyncio code inside ``qloop.main_loop()``).

        ``virtual_time=True``: ``loop.time()`` is virtual (starting at ``start``) and moves
        only when the loop moves it: with ``autojump`` (the default) an idle loop jumps to its
        next deadline (after ``autojump_after`` real seconds without real I/O, if given);
        without it, only ``loop.advance()`` / ``await qloop.advance()`` move it.  See
        docs/virtual-time.md."""
        return loop_cls(ctx=ctx, virtual_time=virtual_time, autojump=autojump, start=start,
                        autojump_after=autojump_after)

    def __policy_init__(self: Any, *, virtual_time: bool = False, autojump: bool = True,
                        start: float = 0.0, autojump_after: float | None = None) -> None:
        check_options(virtual_time, autojump, start, autojump_after)
        _BasePolicy.__init__(self)
        self._qloop_options = {"virtual_time": virtual_time, "autojump": autojump,
                               "start": start, "autojump_after": autojump_after}

    def _policy_loop_factory(self: Any) -> Any:
        return new_event_loop(**self._qloop_options)

    policy_namespace = {
        "__module__": module,
        "__qualname__": "EventLoopPolicy",
        "__doc__": ("An asyncio event loop policy whose loops are qloop's (created with the "
                    "keywords given, e.g. ``EventLoopPolicy(virtual_time=True)``)."),
        "__init__": __policy_init__,
        "_loop_factory": _policy_loop_factory,
        "__repr__": lambda self: f"<{module}.EventLoopPolicy>",
    }
    if _HAS_CHILD_WATCHERS:
        policy_namespace["get_child_watcher"] = _get_child_watcher
        policy_namespace["set_child_watcher"] = _set_child_watcher
    policy_cls = type("EventLoopPolicy", (_BasePolicy,), policy_namespace)

    def install() -> None:
        """Make qloop's loop asyncio's default (``asyncio.set_event_loop_policy``; without its
        DeprecationWarning on Python 3.14+)."""
        _set_policy(policy_cls())

    def run(main: Any, *, debug: bool | None = None, virtual_time: bool = False,
            autojump: bool = True, start: float = 0.0,
            autojump_after: float | None = None) -> Any:
        """Run coroutine ``main`` on a new qloop event loop and close it, like
        ``asyncio.run`` (pending tasks are cancelled, async generators and the default
        executor shut down).  The virtual-time keywords are ``new_event_loop``'s."""
        check_options(virtual_time, autojump, start, autojump_after)

        def factory() -> Any:
            return new_event_loop(virtual_time=virtual_time, autojump=autojump, start=start,
                                  autojump_after=autojump_after)

        if sys.version_info >= (3, 12):
            return asyncio.run(main, debug=debug,  # type: ignore[call-arg]
                               loop_factory=factory)
        with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
            return runner.run(main)

    return {
        "EventLoop": loop_cls,
        "new_event_loop": new_event_loop,
        "EventLoopPolicy": policy_cls,
        "install": install,
        "run": run,
        "VirtualTimeDeadlock": VirtualTimeDeadlock,
        "advance": advance,
    }


def _loop_method(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function(loop, ...)`` as a method (a compiled function does not bind itself)."""

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return function(self, *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method
