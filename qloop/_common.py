"""Plain-Python pieces shared by both implementations: argument validation, error delivery
and NotifierList (none of it is on a hot path)."""

from __future__ import annotations

import errno
import inspect
import logging
import os
from collections.abc import Callable
from typing import Any

__all__ = ["NotifierList"]

_logger = logging.getLogger("qloop")
_NCLOCKS = 4


# --------------------------------------------------------------------------------------------
# Validation helpers


def _fd_of(fd: Any, what: str = "fd") -> int:
    """Return the fd number of an int or an object with fileno(), checking it is open."""
    if isinstance(fd, bool) or not isinstance(fd, int):
        fileno = getattr(fd, "fileno", None)
        if fileno is None:
            raise TypeError(f"{what} must be an int or have a fileno() method, not {type(fd).__name__}")
        num = fileno()
        if isinstance(num, bool) or not isinstance(num, int):
            raise TypeError(f"{what}.fileno() returned {type(num).__name__}, not int")
        if num == -1:  # socket.socket and friends once closed
            raise ValueError(f"{what} is a closed {type(fd).__name__} (its fileno() returned -1)")
        fd = num
    if fd < 0:
        raise ValueError(f"invalid {what} {fd}: negative")
    try:
        os.fstat(fd)
    except OSError as exc:
        raise OSError(exc.errno, f"{what} {fd} is not an open file descriptor: {exc.strerror}") from None
    except OverflowError:
        raise ValueError(f"invalid {what} {fd}: too large") from None
    return int(fd)


def _fd_for_removal(fd: Any) -> int | None:
    """The fd number for a removal or lookup, which must work on an fd the user already
    closed (so no fstat).  None when nothing can be registered under it (a closed file
    object, a number beyond any fd)."""
    if isinstance(fd, bool) or not isinstance(fd, int):
        fileno = getattr(fd, "fileno", None)
        if fileno is None:
            raise TypeError(f"fd must be an int or have a fileno() method, not {type(fd).__name__}")
        try:
            fd = fileno()
        except (OSError, ValueError):
            return None  # closed file object: nothing can be registered under it
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise TypeError(f"fd.fileno() returned {type(fd).__name__}, not int")
    if fd < 0:
        raise ValueError(f"invalid fd {fd}: negative")
    if fd > 0x7FFFFFFF:
        return None  # no fd has that number
    return int(fd)


def _bind(cb: Any, arg: Any) -> Any:
    """``cb`` called with ``arg`` (an EventNotifier handler gets its notifier), or None."""
    if cb is None:
        return None
    return lambda: cb(arg)


def _closed_fd_error(fd: int) -> OSError:
    """What poll() raises for an fd closed while its handler was registered (POLLNVAL)."""
    return OSError(errno.EBADF, f"fd {fd} was closed while its handler was registered")


# fdmon="io_uring" where it cannot be had (docs/aio-context.md, "fd monitors").  The
# QLOOP_IO_URING switch makes a ring's setup fail as it does where the kernel lacks io_uring
# ("enosys"), a seccomp filter refuses it ("eperm") or kernel.io_uring_disabled=2 forbids it
# ("disabled"); both implementations honour it, with the same errors.
_IO_URING_SYSCTL = "/proc/sys/kernel/io_uring_disabled"


def _io_uring_sysctl() -> str:
    """kernel.io_uring_disabled ("0", "1", "2"), or "" where the kernel has no such sysctl."""
    try:
        with open(_IO_URING_SYSCTL) as f:
            return f.read().strip()
    except OSError:
        return ""


def _io_uring_unavailable(err: int, sysctl: str = "") -> OSError:
    """The OSError for an io_uring ring that cannot be set up (io_uring_setup failed with
    ``err``), naming the cause."""
    if err == errno.ENOSYS:
        why = "this kernel has no io_uring (io_uring_setup: ENOSYS)"
    elif err == errno.EPERM and sysctl in ("1", "2"):
        why = (f"io_uring is disabled by the sysctl kernel.io_uring_disabled={sysctl} "
               "(io_uring_setup: EPERM)")
    elif err == errno.EPERM:
        why = "io_uring_setup was refused (EPERM): a seccomp filter or sandbox forbids io_uring here"
    else:
        why = f"io_uring_setup failed: {os.strerror(err)}"
    return OSError(err, f"fdmon='io_uring' is not available: {why}")


def _io_uring_switched_off() -> OSError | None:
    """The failure the QLOOP_IO_URING switch simulates, or None."""
    mode = os.environ.get("QLOOP_IO_URING", "")
    if mode == "enosys":
        return _io_uring_unavailable(errno.ENOSYS)
    if mode == "eperm":
        return _io_uring_unavailable(errno.EPERM, _io_uring_sysctl())
    if mode == "disabled":
        return _io_uring_unavailable(errno.EPERM, "2")
    return None


def _check_callback(cb: Any, what: str, optional: bool = True) -> Any:
    if cb is None:
        if optional:
            return None
        raise TypeError(f"{what} must be callable, not None")
    if not callable(cb):
        raise TypeError(f"{what} must be callable, not {type(cb).__name__}")
    if _is_coroutine_function(cb):
        raise TypeError(f"{what} must be a plain callable, not a coroutine function ({cb!r})")
    return cb


def _is_coroutine_function(cb: Any) -> bool:
    # The cheap part of inspect.iscoroutinefunction (a plain or bound `async def`), without
    # its unwrapping: this runs for every BH and timer created.
    code = getattr(cb, "__code__", None)
    if code is None:
        func = getattr(cb, "__func__", None)
        code = getattr(func, "__code__", None)
        if code is None:
            return inspect.iscoroutinefunction(cb)  # partials, markcoroutinefunction
    return bool(getattr(code, "co_flags", 0) & inspect.CO_COROUTINE)


def _clock_of(clock: Any) -> int:
    if isinstance(clock, bool) or not isinstance(clock, int):
        raise TypeError(f"clock must be a ClockType, not {type(clock).__name__}")
    if not 0 <= clock < _NCLOCKS:
        raise ValueError(f"unknown clock {clock!r} (expected one of REALTIME=0, VIRTUAL=1, HOST=2, VIRTUAL_RT=3)")
    return int(clock)


def _int_arg(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _int64_arg(value: Any, what: str) -> int:
    """An int that fits QEMU's int64_t times and timeouts, else TypeError/OverflowError."""
    v = _int_arg(value, what)
    if not INT64_MIN <= v <= INT64_MAX:
        raise OverflowError(f"{what}={v} does not fit in a signed 64-bit integer")
    return int(v)


def _raise_errors(errors: list[BaseException]) -> None:
    for extra in errors[1:]:
        _logger.error("qloop: another callback raised in the same iteration", exc_info=extra)
    exc = errors[0]
    errors.clear()
    raise exc


# --------------------------------------------------------------------------------------------
# NotifierList (docs/notifiers.md)


class NotifierList:
    """Callbacks notified most recently added first.

    ``notify`` walks a snapshot: a callback added during the pass is not called in it, and a
    callback removed during the pass (itself or another one) is not called after its removal.
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: list[list[Any]] = []  # [callback, live], newest first

    def add(self, callback: Callable[[Any], Any]) -> None:
        _check_callback(callback, "callback", optional=False)
        self._entries.insert(0, [callback, True])

    def remove(self, callback: Callable[[Any], Any]) -> None:
        """Remove the most recently added registration of ``callback``."""
        for i, entry in enumerate(self._entries):
            if entry[0] is callback or entry[0] == callback:
                entry[1] = False
                del self._entries[i]
                return
        raise ValueError(f"{callback!r} is not in this NotifierList")

    def notify(self, data: Any = None) -> None:
        for entry in list(self._entries):
            if entry[1]:
                entry[0](data)

    def empty(self) -> bool:
        return not self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, callback: object) -> bool:
        return any(e[0] is callback or e[0] == callback for e in self._entries)


