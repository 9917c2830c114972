"""qloop's asyncio event loop: the high-level API, written once over an implementation's hot
base class (``_LoopBase`` of the compiled core or of ``qloop._py.loop``).

The base owns the ready queue, the timers, readers/writers and the run state; this mixin adds
what is not on a hot path: ``run_forever``/``run_until_complete``, closing, async generators,
executors, the exception-handler API, debug mode, the task factory and name resolution.
``qloop._aio.build`` assembles the loop class from it.

Behaviour follows asyncio's; where qloop differs (or asyncio is silent) see the "asyncio event
loop" section of ``docs/decisions.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import inspect
import re
import socket
import sys
import threading
import traceback
import warnings
import weakref
from asyncio import events, futures, tasks
from collections.abc import Callable
from typing import Any, cast

from .._common import _closed_fd_error
from .base import MixinBase
from .executor import ContextPoolExecutor
from .helpers import (
    _DEBUG_STACK_DEPTH,
    _check_callback_slow,
    _check_fd_open,
    _fileobj_to_fd,
    _is_debug_mode,
    _logger,
    _run_until_complete_cb,
    _set_result_unless_cancelled,
)

# What the context reports for an fd closed while its handler was registered, the fd captured
_CLOSED_FD = re.compile(re.escape(_closed_fd_error(12345).strerror or "").replace("12345", r"(\d+)"))

# What asyncio's loop.create_task() passes on: further keywords to the Task or the task
# factory (Python 3.13+: the signature has **kwargs), and the name to the factory (3.14: no
# name parameter of its own, the factory names the task itself)
_CREATE_TASK_PARAMS = inspect.signature(asyncio.BaseEventLoop.create_task).parameters
_TASK_KWARGS = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in _CREATE_TASK_PARAMS.values())
_NAME_TO_TASK_FACTORY = _TASK_KWARGS and "name" not in _CREATE_TASK_PARAMS

# --------------------------------------------------------------------------------------------
# The high-level API


class EventLoopAPI(MixinBase):
    """What every qloop EventLoop adds over its implementation's base (plain Python)."""

    # set by _init_api; declared for type checkers
    _exception_handler: Callable[[Any, dict[str, Any]], Any] | None
    _task_factory: Callable[..., Any] | None
    _default_executor: concurrent.futures.Executor | None
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
        if self._owns_context():
            # Exceptions of qloop callbacks on the loop's own context (and fds closed while
            # registered) go to the loop's exception handler rather than out of run_forever.
            ref = weakref.ref(self)

            def route(ctx: Any, exc: BaseException) -> None:
                loop = ref()
                if loop is None:
                    raise exc
                if loop._forget_closed_fd(exc):
                    return
                loop.call_exception_handler({
                    "message": "Exception in a callback of the event loop's AioContext",
                    "exception": exc,
                })

            self.aio_context.set_exception_handler(route)
    def _forget_closed_fd(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the context's report of one of the loop's own fds (a reader, a
        writer, a transport's socket) closed while registered.  The context has dropped that
        registration; the loop forgets its handles too and says nothing, as asyncio's loop
        does not notice such an fd (a pending ``sock_recv`` stays pending until cancelled)."""
        if not isinstance(exc, OSError) or exc.errno != errno.EBADF:
            return False
        m = _CLOSED_FD.fullmatch(exc.strerror or "")
        if m is None:
            return False
        fd = int(m.group(1))
        reader, writer = self._fd_handles(fd)
        if reader is None and writer is None and fd not in self._transports:
            return False
        if reader is not None:
            self._remove_reader(fd)
        if writer is not None:
            self._remove_writer(fd)
        return True

    def __repr__(self) -> str:
        return (f"<{type(self).__module__}.{type(self).__qualname__} "
                f"running={self.is_running()} closed={self.is_closed()} "
                f"debug={self.get_debug()}>")
    def __del__(self, _warn: Any = warnings.warn) -> None:
        try:
            closed = self.is_closed()
        except Exception:
            return
        if not closed:
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    # ---- running

    def _check_running(self) -> None:
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if events._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def run_forever(self) -> None:
        """Run until ``stop()`` is called: one AioContext iteration (``ctx.poll()``) at a
        time."""
        self._check_closed_py()
        self._check_running()
        self._set_coroutine_origin_tracking(self.get_debug())
        old_hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                               finalizer=self._asyncgen_finalizer_hook)
        try:
            events._set_running_loop(self)  # type: ignore[arg-type]
            self._run_loop()
        finally:
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_hooks)

    def run_until_complete(self, future: Any) -> Any:
        """Run until ``future`` (a Future, Task or coroutine) is done; return its result."""
        self._check_closed_py()
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
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self.get_debug():
            _logger().debug("Close %r", self)
        self._executor_shutdown_called = True
        executor = self._default_executor
        self._default_executor = None
        self._close_signal_handlers()
        self._close_child_watches()
        self._close_virtual_time()
        self._close_base()
        if executor is not None:
            executor.shutdown(wait=False)

    # ---- debug mode

    def set_debug(self, enabled: bool) -> None:
        """Turn debug mode on or off (slow-callback warnings, thread checks, coroutine
        origin tracking)."""
        self._set_debug_flag(enabled)
        if self.is_running():
            self.call_soon_threadsafe(
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
        if not self.is_closed():
            self.call_soon_threadsafe(self.create_task, agen.aclose())

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
        """Run ``func(*args)`` in ``executor`` (default: the loop's context's thread pool,
        whose completion BH resolves the future in this thread); an awaitable future."""
        self._check_closed_py()
        if self.get_debug():
            _check_callback_slow(func, "run_in_executor")
        if executor is None:
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            executor = self._default_executor
            if executor is None:
                executor = ContextPoolExecutor(
                    self.aio_context.thread_pool())
                self._default_executor = executor
            if type(executor) is ContextPoolExecutor:
                return executor.run_in_loop(self, func, args)
        cfut = executor.submit(func, *args)
        fut = futures.wrap_future(cfut, loop=self)  # type: ignore[arg-type]
        if self._vt_enabled:
            self._track_real_work(cfut)  # never jumped past
        return fut

    def set_default_executor(self, executor: Any) -> None:
        """The executor ``run_in_executor(None, ...)`` uses instead of the context's thread
        pool (a ThreadPoolExecutor)."""
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError("executor must be ThreadPoolExecutor")
        self._default_executor = executor

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """Shut the default executor down, waiting (in a helper thread) for its threads."""
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is None:
            return
        future = self.create_future()
        thread = threading.Thread(target=self._do_shutdown, args=(executor, future))
        if self._vt_enabled:
            self._real_work_begin()  # ended by _do_shutdown
        thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            warnings.warn(f"The executor did not finishing joining its threads within "
                          f"{timeout} seconds.", RuntimeWarning, stacklevel=2)
            executor.shutdown(wait=False)
        else:
            thread.join()

    def _do_shutdown(self, executor: Any, future: Any) -> None:
        try:
            executor.shutdown(wait=True)
            if not self.is_closed():
                self.call_soon_threadsafe(
                    _set_result_unless_cancelled, future, None)
        except Exception as ex:
            if not self.is_closed() and not future.cancelled():
                self.call_soon_threadsafe(future.set_exception, ex)
        finally:
            if self._vt_enabled:
                self._real_work_done_threadsafe()
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
        current = self._current_handle
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

    def create_task(self, coro: Any, *, name: str | None = None, context: Any = None,
                    **kwargs: Any) -> asyncio.Task[Any]:
        """Schedule coroutine ``coro`` as a Task (or through the task factory).  Further
        keywords (``eager_start``) go to the Task or the factory where asyncio's loop passes
        them on (Python 3.13+); the factory is given ``name`` too where asyncio's is (3.14)."""
        self._check_closed_py()
        if kwargs and not _TASK_KWARGS:
            raise TypeError(f"create_task() got an unexpected keyword argument "
                            f"{next(iter(kwargs))!r}")
        if context is not None:
            kwargs["context"] = context
        factory = self._task_factory
        if factory is None:
            task = tasks.Task(coro, loop=self, name=name, **kwargs)  # type: ignore[arg-type]
            if task._source_traceback:  # type: ignore[attr-defined]
                del task._source_traceback[-1]  # type: ignore[attr-defined]
            return task
        if _NAME_TO_TASK_FACTORY and name is not None:
            # the factory names the task, before an eager one starts
            return cast("asyncio.Task[Any]", factory(self, coro, name=name, **kwargs))
        task = factory(self, coro, **kwargs)
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
        self._check_closed_py()
        num = _fileobj_to_fd(fd)
        self._ensure_fd_no_transport(num)
        _check_fd_open(num)
        self._add_reader(num, callback, args)
    def remove_reader(self, fd: Any) -> bool:
        """Stop watching ``fd`` for reading; True if a reader was registered."""
        num = _fileobj_to_fd(fd)
        self._ensure_fd_no_transport(num)
        if self.is_closed():
            return False
        return bool(self._remove_reader(num))
    def add_writer(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable (level-triggered)."""
        self._check_closed_py()
        num = _fileobj_to_fd(fd)
        self._ensure_fd_no_transport(num)
        _check_fd_open(num)
        self._add_writer(num, callback, args)
    def remove_writer(self, fd: Any) -> bool:
        """Stop watching ``fd`` for writing; True if a writer was registered."""
        num = _fileobj_to_fd(fd)
        self._ensure_fd_no_transport(num)
        if self.is_closed():
            return False
        return bool(self._remove_writer(num))
    # ---- name resolution (in the default executor, as asyncio does)

    async def getaddrinfo(self, host: Any, port: Any, *, family: int = 0, type: int = 0,
                          proto: int = 0, flags: int = 0) -> Any:
        """``socket.getaddrinfo`` in the default executor."""
        return await self.run_in_executor(None, socket.getaddrinfo, host, port, family, type,
                                          proto, flags)

    async def getnameinfo(self, sockaddr: Any, flags: int = 0) -> Any:
        """``socket.getnameinfo`` in the default executor."""
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)
