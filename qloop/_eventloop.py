"""qloop's asyncio event loop: the high-level API, written once over an implementation's hot
base class (``_LoopBase`` of ``qloop._core`` or ``qloop._fallback_loop``).

The base owns the ready queue, the timers, readers/writers and the run state; this module adds
what is not on a hot path: ``run_forever``/``run_until_complete``, closing, async generators,
executors, the exception-handler API, debug mode, the task factory, name resolution, the
policy and the entry points.  ``build_implementation`` assembles
``EventLoop = (base, mixins..., asyncio.AbstractEventLoop)`` for one implementation.

Behaviour follows asyncio's; where qloop differs (or asyncio is silent) see the "asyncio event
loop" section of ``docs/decisions.md``.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import concurrent.futures
import inspect
import logging
import os
import socket
import sys
import threading
import time
import traceback
import warnings
import weakref
from asyncio import events, format_helpers, futures, tasks
from collections.abc import Callable
from typing import Any, cast

from . import _virtual_time, _vt_deadlock

__all__ = ["build_implementation"]

_perf_counter = time.perf_counter
_DEBUG_STACK_DEPTH = 10  # frames kept for coroutine origins (asyncio's depth)
_coroutine_marker = getattr(getattr(asyncio, "coroutines", None), "_is_coroutine", object())


def _logger() -> logging.Logger:
    # asyncio's logger under the name its event loop logs through (asyncio.base_events), looked
    # up when used: code that patches that module attribute sees qloop's reports too
    logger: logging.Logger = asyncio.base_events.logger  # type: ignore[attr-defined]
    return logger


# --------------------------------------------------------------------------------------------
# Helpers the implementations call (not on the hot path: errors, debug mode, repr)


def _is_coroutine_callable(cb: Any) -> bool:
    if inspect.iscoroutinefunction(cb):
        return True
    try:
        return getattr(cb, "_is_coroutine", None) is _coroutine_marker
    except Exception:
        return False


def _check_callback_slow(cb: Any, method: str) -> None:
    """asyncio's check of a callback given to ``call_soon`` and friends."""
    if asyncio.iscoroutine(cb) or _is_coroutine_callable(cb):
        raise TypeError(f"coroutines cannot be used with {method}()")
    if not callable(cb):
        raise TypeError(f"a callable object was expected by {method}(), got {cb!r}")


def _source_traceback() -> Any:
    """Where a handle was created (debug mode): the stack of the first frame outside qloop."""
    frame: Any = sys._getframe(1)
    here = os.path.dirname(__file__)
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == here:
        frame = frame.f_back
    return format_helpers.extract_stack(frame)


def _format_callback(handle: Any) -> str:
    _, _, cb, args, _, _, _ = handle._info()
    return str(format_helpers._format_callback_source(cb, args))


def _handle_repr(handle: Any) -> str:
    name, cancelled, cb, args, when, source_tb, saved = handle._info()
    if saved is not None:
        return str(saved)
    info = [name]
    if cancelled:
        info.append("cancelled")
    if when is not None:
        info.append(f"when={when}")
    if cb is not None:
        info.append(format_helpers._format_callback_source(cb, args))
    if source_tb:
        frame = source_tb[-1]
        info.append(f"created at {frame[0]}:{frame[1]}")
    return "<{}>".format(" ".join(info))


def _log_slow_callback(handle: Any, seconds: float) -> None:
    _logger().warning("Executing %s took %.3f seconds", _handle_repr(handle), seconds)


def _time_arg_slow(value: Any, what: str) -> float:
    """A delay or a loop time as a float (anything float() accepts but strings)."""
    if value is None:
        raise TypeError(f"{what} must not be None")
    if isinstance(value, (str, bytes, bytearray)):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")
    try:
        return float(value)
    except TypeError:
        raise TypeError(f"{what} must be a number, not {type(value).__name__}") from None


def _fileobj_to_fd(fileobj: Any) -> int:
    """An fd number from an int or an object with fileno() (asyncio's errors)."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


def _check_fd_open(fd: int) -> None:
    try:
        os.fstat(fd)
    except OSError as exc:
        raise OSError(exc.errno, f"fd {fd} is not an open file descriptor: {exc.strerror}") \
            from None
    except OverflowError:
        raise ValueError(f"Invalid file descriptor: {fd}") from None


def _is_debug_mode() -> bool:
    """asyncio's default debug mode (-X dev, PYTHONASYNCIODEBUG), asked of asyncio itself when
    it can tell (so that code patching asyncio's answer affects qloop's loops too)."""
    probe = getattr(asyncio.coroutines, "_is_debug_mode", None)
    if probe is not None:
        return bool(probe())
    return sys.flags.dev_mode or (not sys.flags.ignore_environment
                                  and bool(os.environ.get("PYTHONASYNCIODEBUG")))


def _run_until_complete_cb(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        exc = fut.exception()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            return  # run_forever() is already unwinding with it
    fut.get_loop().stop()


def _set_result_unless_cancelled(fut: asyncio.Future[Any], result: Any) -> None:
    if not fut.cancelled():
        fut.set_result(result)


# --------------------------------------------------------------------------------------------
# The high-level API


class EventLoopAPI:
    """What every qloop EventLoop adds over its implementation's base (plain Python)."""

    # set by _init_api; declared for type checkers
    _exception_handler: Callable[[Any, dict[str, Any]], Any] | None
    _task_factory: Callable[..., Any] | None
    _default_executor: concurrent.futures.ThreadPoolExecutor | None
    _executor_shutdown_called: bool
    _asyncgens: weakref.WeakSet[Any]
    _asyncgens_shutdown_called: bool
    _coroutine_origin_tracking_enabled: bool
    _coroutine_origin_tracking_saved_depth: int | None
    _transports: weakref.WeakValueDictionary[int, Any]

    def _init_api(self) -> None:
        self._exception_handler = None
        self._task_factory = None
        self._default_executor = None
        self._executor_shutdown_called = False
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._transports = weakref.WeakValueDictionary()
        self.set_debug(_is_debug_mode())
        if self._owns_context():  # type: ignore[attr-defined]
            # Exceptions of qloop callbacks on the loop's own context (and fds closed while
            # registered) go to the loop's exception handler rather than out of run_forever.
            ref = weakref.ref(self)

            def route(ctx: Any, exc: BaseException) -> None:
                loop = ref()
                if loop is None:
                    raise exc
                loop.call_exception_handler({
                    "message": "Exception in a callback of the event loop's AioContext",
                    "exception": exc,
                })

            self.aio_context.set_exception_handler(route)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return (f"<{type(self).__module__}.{type(self).__qualname__} "
                f"running={self.is_running()} closed={self.is_closed()} "  # type: ignore
                f"debug={self.get_debug()}>")  # type: ignore[attr-defined]

    def __del__(self, _warn: Any = warnings.warn) -> None:
        try:
            closed = self.is_closed()  # type: ignore[attr-defined]
        except Exception:
            return
        if not closed:
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():  # type: ignore[attr-defined]
                self.close()

    # ---- running

    def _check_running(self) -> None:
        if self.is_running():  # type: ignore[attr-defined]
            raise RuntimeError("This event loop is already running")
        if events._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def run_forever(self) -> None:
        """Run until ``stop()`` is called: one AioContext iteration (``ctx.poll()``) at a
        time."""
        self._check_closed_py()  # type: ignore[attr-defined]
        self._check_running()
        self._set_coroutine_origin_tracking(self.get_debug())  # type: ignore[attr-defined]
        old_hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                               finalizer=self._asyncgen_finalizer_hook)
        try:
            events._set_running_loop(self)  # type: ignore[arg-type]
            self._run_loop()  # type: ignore[attr-defined]
        finally:
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_hooks)

    def run_until_complete(self, future: Any) -> Any:
        """Run until ``future`` (a Future, Task or coroutine) is done; return its result."""
        self._check_closed_py()  # type: ignore[attr-defined]
        self._check_running()
        new_task = not futures.isfuture(future)
        future = tasks.ensure_future(future, loop=self)  # type: ignore[call-overload]
        if new_task:
            future._log_destroy_pending = False  # an exception here is the caller's
        future.add_done_callback(_run_until_complete_cb)
        try:
            self.run_forever()
        except BaseException:
            if new_task and future.done() and not future.cancelled():
                future.exception()  # mark it retrieved: the caller gets the exception
            raise
        finally:
            future.remove_done_callback(_run_until_complete_cb)
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

    def close(self) -> None:
        """Close the loop: drop pending callbacks, shut the default executor down (without
        waiting) and release the AioContext (closed if the loop owns it, else left open)."""
        if self.is_running():  # type: ignore[attr-defined]
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():  # type: ignore[attr-defined]
            return
        if self.get_debug():  # type: ignore[attr-defined]
            _logger().debug("Close %r", self)
        self._executor_shutdown_called = True
        executor = self._default_executor
        self._default_executor = None
        self._close_signal_handlers()  # type: ignore[attr-defined]
        self._close_child_watches()  # type: ignore[attr-defined]
        self._close_virtual_time()  # type: ignore[attr-defined]
        self._close_base()  # type: ignore[attr-defined]
        if executor is not None:
            executor.shutdown(wait=False)

    # ---- debug mode

    def set_debug(self, enabled: bool) -> None:
        """Turn debug mode on or off (slow-callback warnings, thread checks, coroutine
        origin tracking)."""
        self._set_debug_flag(enabled)  # type: ignore[attr-defined]
        if self.is_running():  # type: ignore[attr-defined]
            self.call_soon_threadsafe(  # type: ignore[attr-defined]
                self._set_coroutine_origin_tracking, bool(enabled))

    def _set_coroutine_origin_tracking(self, enabled: bool) -> None:
        if bool(enabled) == self._coroutine_origin_tracking_enabled:
            return
        if enabled:
            self._coroutine_origin_tracking_saved_depth = sys.get_coroutine_origin_tracking_depth()
            sys.set_coroutine_origin_tracking_depth(_DEBUG_STACK_DEPTH)
        else:
            sys.set_coroutine_origin_tracking_depth(
                self._coroutine_origin_tracking_saved_depth or 0)
        self._coroutine_origin_tracking_enabled = bool(enabled)

    # ---- async generators

    def _asyncgen_firstiter_hook(self, agen: Any) -> None:
        if self._asyncgens_shutdown_called:
            warnings.warn(f"asynchronous generator {agen!r} was scheduled after "
                          f"loop.shutdown_asyncgens() call", ResourceWarning, source=self,
                          stacklevel=1)
        self._asyncgens.add(agen)

    def _asyncgen_finalizer_hook(self, agen: Any) -> None:
        self._asyncgens.discard(agen)
        if not self.is_closed():  # type: ignore[attr-defined]
            self.call_soon_threadsafe(self.create_task, agen.aclose())  # type: ignore

    async def shutdown_asyncgens(self) -> None:
        """Close every asynchronous generator still open (``aclose()``)."""
        self._asyncgens_shutdown_called = True
        if not len(self._asyncgens):
            return
        agens = list(self._asyncgens)
        self._asyncgens.clear()
        results = await tasks.gather(*[ag.aclose() for ag in agens], return_exceptions=True)
        for result, agen in zip(results, agens, strict=True):
            if isinstance(result, Exception):
                self.call_exception_handler({
                    "message": f"an error occurred during closing of asynchronous "
                               f"generator {agen!r}",
                    "exception": result,
                    "asyncgen": agen,
                })

    # ---- executors

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> Any:
        """Run ``func(*args)`` in ``executor`` (default: a ThreadPoolExecutor); an awaitable
        future.  The result comes back through ``call_soon_threadsafe``."""
        self._check_closed_py()  # type: ignore[attr-defined]
        if self.get_debug():  # type: ignore[attr-defined]
            _check_callback_slow(func, "run_in_executor")
        if executor is None:
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            executor = self._default_executor
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="asyncio")
                self._default_executor = executor
        cfut = executor.submit(func, *args)
        fut = futures.wrap_future(cfut, loop=self)  # type: ignore[arg-type]
        if self._vt_enabled:  # type: ignore[attr-defined]
            self._track_real_work(cfut)  # type: ignore[attr-defined]  # never jumped past
        return fut

    def set_default_executor(self, executor: Any) -> None:
        """The executor ``run_in_executor(None, ...)`` uses (a ThreadPoolExecutor)."""
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError("executor must be ThreadPoolExecutor")
        self._default_executor = executor

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """Shut the default executor down, waiting (in a helper thread) for its threads."""
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is None:
            return
        future = self.create_future()  # type: ignore[attr-defined]
        thread = threading.Thread(target=self._do_shutdown, args=(executor, future))
        if self._vt_enabled:  # type: ignore[attr-defined]
            self._real_work_begin()  # type: ignore[attr-defined]  # ended by _do_shutdown
        thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            warnings.warn(f"The executor did not finishing joining its threads within "
                          f"{timeout} seconds.", RuntimeWarning, stacklevel=2)
            executor.shutdown(wait=False)
        else:
            thread.join()

    def _do_shutdown(self, executor: Any, future: Any) -> None:
        try:
            executor.shutdown(wait=True)
            if not self.is_closed():  # type: ignore[attr-defined]
                self.call_soon_threadsafe(  # type: ignore[attr-defined]
                    _set_result_unless_cancelled, future, None)
        except Exception as ex:
            if not self.is_closed() and not future.cancelled():  # type: ignore
                self.call_soon_threadsafe(future.set_exception, ex)  # type: ignore
        finally:
            if self._vt_enabled:  # type: ignore[attr-defined]
                self._real_work_done_threadsafe()  # type: ignore[attr-defined]

    # ---- exception handling

    def get_exception_handler(self) -> Callable[[Any, dict[str, Any]], Any] | None:
        """The handler set by ``set_exception_handler``, or None for the default one."""
        return self._exception_handler

    def set_exception_handler(self,
                              handler: Callable[[Any, dict[str, Any]], Any] | None) -> None:
        """``handler(loop, context)`` receives what ``call_exception_handler`` gets; None
        restores the default handler."""
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        """Log ``context`` on asyncio's logger, with the exception's traceback."""
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info: Any = False
        if exception is not None:
            exc_info = (type(exception), exception, exception.__traceback__)
        current = self._current_handle  # type: ignore[attr-defined]
        if ("source_traceback" not in context and current is not None
                and current._source_traceback):
            context["handle_traceback"] = current._source_traceback
        lines = [message]
        for key in sorted(context):
            if key in ("message", "exception"):
                continue
            value = context[key]
            if key == "source_traceback":
                text = "".join(traceback.format_list(value)).rstrip()
                value = "Object created at (most recent call last):\n" + text
            elif key == "handle_traceback":
                text = "".join(traceback.format_list(value)).rstrip()
                value = "Handle created at (most recent call last):\n" + text
            else:
                value = repr(value)
            lines.append(f"{key}: {value}")
        _logger().error("\n".join(lines), exc_info=exc_info)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Give ``context`` to the handler set by ``set_exception_handler`` (or the default
        one).  A failing handler is reported through the default handler, never raised."""
        handler = self._exception_handler
        if handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                _logger().error("Exception in default exception handler", exc_info=True)
            return
        try:
            run_in = None
            if sys.version_info >= (3, 12):
                # 3.12+: the handler runs in the context of the task/future/handle concerned
                for key in ("task", "future", "handle"):
                    thing = context.get(key)
                    if thing is not None:
                        get = getattr(thing, "get_context", None)
                        run_in = get() if get is not None else None
                        break
            if run_in is not None and hasattr(run_in, "run"):
                run_in.run(handler, self, context)
            else:
                handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler({
                    "message": "Unhandled error in exception handler",
                    "exception": exc,
                    "context": context,
                })
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                _logger().error("Exception in default exception handler while handling an "
                                "unexpected error in custom exception handler", exc_info=True)

    # ---- tasks

    def create_task(self, coro: Any, *, name: str | None = None,
                    context: Any = None) -> asyncio.Task[Any]:
        """Schedule coroutine ``coro`` as a Task (or through the task factory)."""
        self._check_closed_py()  # type: ignore[attr-defined]
        factory = self._task_factory
        if factory is None:
            if context is None:
                task = tasks.Task(coro, loop=self, name=name)  # type: ignore[arg-type]
            else:
                task = tasks.Task(coro, loop=self, name=name,  # type: ignore[arg-type]
                                  context=context)
            if task._source_traceback:  # type: ignore[attr-defined]
                del task._source_traceback[-1]  # type: ignore[attr-defined]
            return task
        if context is None:
            task = factory(self, coro)
        else:
            task = factory(self, coro, context=context)
        if name is not None:
            task.set_name(name)
        return cast("asyncio.Task[Any]", task)

    def set_task_factory(self, factory: Callable[..., Any] | None) -> None:
        """``factory(loop, coro, **kwargs)`` makes the tasks of ``create_task``; None restores
        the default (``asyncio.Task``)."""
        if factory is not None and not callable(factory):
            raise TypeError("task factory must be a callable or None")
        self._task_factory = factory

    def get_task_factory(self) -> Callable[..., Any] | None:
        """The task factory set by ``set_task_factory``, or None."""
        return self._task_factory

    # ---- readers and writers

    def _ensure_fd_no_transport(self, fd: int) -> None:
        transport = self._transports.get(fd)
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport!r}")

    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is readable (level-triggered)."""
        self._check_closed_py()  # type: ignore[attr-defined]
        num = _fileobj_to_fd(fd)
        self._ensure_fd_no_transport(num)
        _check_fd_open(num)
        self._add_reader(num, callback, args)  # type: ignore[attr-defined]

    def remove_reader(self, fd: Any) -> bool:
        """Stop watching ``fd`` for reading; True if a reader was registered."""
        num = _fileobj_to_fd(fd)
        self._ensure_fd_no_transport(num)
        if self.is_closed():  # type: ignore[attr-defined]
            return False
        return bool(self._remove_reader(num))  # type: ignore[attr-defined]

    def add_writer(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable (level-triggered)."""
        self._check_closed_py()  # type: ignore[attr-defined]
        num = _fileobj_to_fd(fd)
        self._ensure_fd_no_transport(num)
        _check_fd_open(num)
        self._add_writer(num, callback, args)  # type: ignore[attr-defined]

    def remove_writer(self, fd: Any) -> bool:
        """Stop watching ``fd`` for writing; True if a writer was registered."""
        num = _fileobj_to_fd(fd)
        self._ensure_fd_no_transport(num)
        if self.is_closed():  # type: ignore[attr-defined]
            return False
        return bool(self._remove_writer(num))  # type: ignore[attr-defined]

    # ---- name resolution (in the default executor, as asyncio does)

    async def getaddrinfo(self, host: Any, port: Any, *, family: int = 0, type: int = 0,
                          proto: int = 0, flags: int = 0) -> Any:
        """``socket.getaddrinfo`` in the default executor."""
        return await self.run_in_executor(None, socket.getaddrinfo, host, port, family, type,
                                          proto, flags)

    async def getnameinfo(self, sockaddr: Any, flags: int = 0) -> Any:
        """``socket.getnameinfo`` in the default executor."""
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)


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


_BasePolicy: Any = getattr(events, "BaseDefaultEventLoopPolicy", None) or getattr(  # noqa: B009
    events, "_BaseDefaultEventLoopPolicy")


def build_implementation(module: str, base: Any, handle_cls: Any, timer_handle_cls: Any,
                         context_cls: Any, net: Any,
                         transports: dict[str, Callable[..., Any]]) -> dict[str, Any]:
    """The public asyncio names of one implementation: ``EventLoop``, ``new_event_loop``,
    ``EventLoopPolicy``, ``install`` and ``run``.  ``transports`` maps the loop's transport
    factory methods (``_make_socket_transport``, ``_make_datagram_transport``,
    ``_make_read_pipe_transport``, ``_make_write_pipe_transport``) to the implementation's
    functions taking the loop first."""

    def __init__(self: Any, *, ctx: Any = None, virtual_time: bool = False,
                 autojump: bool = True, start: float = 0.0,
                 autojump_after: float | None = None) -> None:
        options = _virtual_time.check_options(virtual_time, autojump, start, autojump_after)
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
    # the API groups in their own modules (they use helpers of this one: imported here)
    from . import (
        _eventloop_dgram,
        _eventloop_pipes,
        _eventloop_sendfile,
        _eventloop_signals,
        _eventloop_subprocess,
    )
    bases: tuple[Any, ...] = (base, EventLoopAPI, _virtual_time.VirtualTimeAPI,
                              _eventloop_signals.SignalMixin,
                              _eventloop_subprocess.SubprocessMixin,
                              _eventloop_pipes.PipeMixin, _eventloop_dgram.DatagramMixin,
                              _eventloop_sendfile.SendfileMixin, *net.MIXINS,
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
        _virtual_time.check_options(virtual_time, autojump, start, autojump_after)
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
        """Make qloop's loop asyncio's default (``asyncio.set_event_loop_policy``)."""
        asyncio.set_event_loop_policy(policy_cls())

    def run(main: Any, *, debug: bool | None = None, virtual_time: bool = False,
            autojump: bool = True, start: float = 0.0,
            autojump_after: float | None = None) -> Any:
        """Run coroutine ``main`` on a new qloop event loop and close it, like
        ``asyncio.run`` (pending tasks are cancelled, async generators and the default
        executor shut down).  The virtual-time keywords are ``new_event_loop``'s."""
        _virtual_time.check_options(virtual_time, autojump, start, autojump_after)

        def factory() -> Any:
            return new_event_loop(virtual_time=virtual_time, autojump=autojump, start=start,
                                  autojump_after=autojump_after)

        if sys.version_info >= (3, 12):
            return asyncio.run(main, debug=debug,  # type: ignore[call-arg]
                               loop_factory=factory)
        if sys.version_info >= (3, 11):
            with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
                return runner.run(main)
        return _run_310(factory, main, debug)

    return {
        "EventLoop": loop_cls,
        "new_event_loop": new_event_loop,
        "EventLoopPolicy": policy_cls,
        "install": install,
        "run": run,
        "VirtualTimeDeadlock": _vt_deadlock.VirtualTimeDeadlock,
        "advance": _virtual_time.advance,
    }


def _loop_method(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function(loop, ...)`` as a method (a compiled function does not bind itself)."""

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return function(self, *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


def _run_310(factory: Callable[[], Any], main: Any, debug: bool | None) -> Any:
    """``asyncio.run`` with a loop factory, for Python 3.10 (no Runner there)."""
    if events._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    if not asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    loop = factory()
    try:
        events.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            pending = [t for t in tasks.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(tasks.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            events.set_event_loop(None)
            loop.close()
