"""Child watches: reap a child process as soon as it exits, from an AioContext, and report
its exit status.

``watch_child(ctx, pid, callback)`` is the reusable piece: a pidfd fd handler on ``ctx`` that
calls ``waitpid`` when the child exits, then ``callback(pid, returncode)`` from ``ctx``'s
dispatch (returncode as ``subprocess``'s: the exit code, or minus the signal number).  The main
loop's ``add_child_watch`` runs it on the iohandler context (``ChildWatches``); an event loop
built on its own AioContext can run it there for its subprocess transports.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from .._common import _check_callback, _int_arg, _raise_errors

__all__ = ["UNKNOWN_RETURNCODE", "ChildWatch", "ChildWatches", "watch_child"]

_logger = logging.getLogger("qloop")

# what a callback gets when something else reaped the child first (as asyncio reports it)
UNKNOWN_RETURNCODE = 255

ChildCallback = Callable[[int, int], Any]


def _check_pid(pid: Any) -> int:
    pid = _int_arg(pid, "pid")
    if pid <= 0:
        raise ValueError(f"invalid pid {pid}")
    return int(pid)


class ChildWatch:
    """One child watched from one AioContext (create it with ``watch_child``)."""

    __slots__ = ("_callbacks", "_on_done", "_pidfd", "ctx", "pid", "returncode")

    def __init__(self, ctx: Any, pid: int, on_done: Callable[[ChildWatch], Any] | None):
        self.ctx = ctx
        self.pid = pid
        self.returncode: int | None = None  # set once reaped
        self._callbacks: list[ChildCallback] = []
        self._pidfd = -1
        self._on_done = on_done

    @property
    def done(self) -> bool:
        return self.returncode is not None

    def add_callback(self, callback: ChildCallback | None) -> None:
        """Also call ``callback(pid, returncode)`` when the child is reaped."""
        if callback is not None:
            self._callbacks.append(_check_callback(callback, "callback"))

    def _start(self) -> None:
        # a pidfd first, then one waitpid: a child that exits in between makes the pidfd
        # readable, so its exit cannot be missed
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            self._pidfd = -1  # already a zombie that was reaped, or not ours: waitpid says
        try:
            done, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            self._close_pidfd()
            raise ValueError(f"pid {self.pid} is not a child of this process") from None
        if done == self.pid:
            # exited already: reaped now, the callbacks run from the context like any other
            self._close_pidfd()
            self.returncode = os.waitstatus_to_exitcode(status)
            self.ctx.bh_schedule_oneshot(self._finish, name=f"child-watch-{self.pid}")
            return
        self.ctx.set_fd_handler(self._pidfd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            done, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            _logger.warning("qloop: child %d was reaped elsewhere; reporting returncode %d",
                            self.pid, UNKNOWN_RETURNCODE)
            done, status = self.pid, -1
        if done != self.pid:
            return  # spurious
        self.returncode = (UNKNOWN_RETURNCODE if status < 0
                           else os.waitstatus_to_exitcode(status))
        self._stop_watching()
        self._finish()

    def _finish(self) -> None:
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done(self)
        callbacks, self._callbacks = self._callbacks, []
        errors: list[BaseException] = []
        rc = self.returncode if self.returncode is not None else UNKNOWN_RETURNCODE
        for cb in callbacks:
            try:
                cb(self.pid, rc)
            except BaseException as exc:
                errors.append(exc)
        if errors:
            _raise_errors(errors)

    def _stop_watching(self) -> None:
        if self._pidfd >= 0:
            if not self.ctx.closed:
                self.ctx.set_fd_handler(self._pidfd, None)
            self._close_pidfd()

    def _close_pidfd(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def cancel(self) -> None:
        """Stop watching without reaping and without calling the callbacks (idempotent)."""
        self._stop_watching()
        self._callbacks = []
        self._on_done = None


def watch_child(ctx: Any, pid: int, callback: ChildCallback | None = None, *,
                on_done: Callable[[ChildWatch], Any] | None = None) -> ChildWatch:
    """Reap child ``pid`` from ``ctx`` as soon as it exits, then call
    ``callback(pid, returncode)`` from ``ctx``'s dispatch.  ValueError if ``pid`` is not a
    child of this process.  ``on_done(watch)`` runs first (bookkeeping of the caller)."""
    pid = _check_pid(pid)
    watch = ChildWatch(ctx, pid, on_done)
    watch.add_callback(callback)
    watch._start()
    return watch


class ChildWatches:
    """The main loop's ``add_child_watch``: watches on the context ``get_ctx()`` returns."""

    def __init__(self, get_ctx: Callable[[], Any]) -> None:
        self._get_ctx = get_ctx
        self._watches: dict[int, ChildWatch] = {}

    def add(self, pid: int, callback: ChildCallback | None = None) -> int:
        pid = _check_pid(pid)
        _check_callback(callback, "callback")
        ctx = self._get_ctx()
        watch = self._watches.get(pid)
        if watch is not None:
            watch.add_callback(callback)
            return 1
        # kept until its callbacks ran (a child that had exited already: from a BH)
        self._watches[pid] = watch_child(ctx, pid, callback, on_done=self._forget)
        return 0

    def _forget(self, watch: ChildWatch) -> None:
        if self._watches.get(watch.pid) is watch:
            del self._watches[watch.pid]

    def clear(self) -> None:
        for watch in list(self._watches.values()):
            watch.cancel()
        self._watches.clear()
