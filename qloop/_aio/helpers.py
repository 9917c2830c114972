"""Helpers of qloop's asyncio event loop that both implementations' hot bases call off their
hot paths: callback checks, debug-mode reports and reprs, time and fd arguments, the logger.

Behaviour follows asyncio's; where qloop differs (or asyncio is silent) see the "asyncio event
loop" section of ``docs/decisions.md``.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import inspect
import logging
import os
import sys
import time
from asyncio import format_helpers
from typing import Any

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


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _source_traceback() -> Any:
    """Where a handle was created (debug mode): the stack of the first frame outside qloop."""
    frame: Any = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
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
    # a task's step is named by the task (its state after the step), as asyncio does
    task = getattr(handle._callback_, "__self__", None)
    what = repr(task) if isinstance(task, asyncio.Task) else _handle_repr(handle)
    _logger().warning("Executing %s took %.3f seconds", what, seconds)


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
