"""The fallback's EventNotifier: an eventfd (or pipe) a context watches (docs/notifiers.md).
Twin of ``qloop/_cy/notifier.pxi``.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Self


# --------------------------------------------------------------------------------------------
# EventNotifier (docs/notifiers.md)


class EventNotifier:
    """A level-triggered set/clear flag backed by an eventfd (or a pipe)."""

    __slots__ = ("__weakref__", "_rfd", "_wfd")

    def __init__(self, active: bool = False, use_pipe: bool = False) -> None:
        if getattr(self, "_rfd", -1) >= 0:
            raise RuntimeError("EventNotifier is already initialised")
        self._rfd = -1
        self._wfd = -1
        if not use_pipe and hasattr(os, "eventfd"):
            try:
                fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            except OSError as exc:
                if exc.errno != errno.ENOSYS:
                    raise
            else:
                self._rfd = self._wfd = fd
        if self._rfd < 0:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._rfd, self._wfd = r, w
        if active:
            self.set()

    def _check(self) -> None:
        if self._rfd < 0:
            raise RuntimeError("EventNotifier is closed")

    def fileno(self) -> int:
        """The read side: what is registered for polling."""
        self._check()
        return self._rfd

    def write_fileno(self) -> int:
        """The write side (the same fd as ``fileno()`` for an eventfd)."""
        self._check()
        return self._wfd

    def set(self) -> None:
        """Make the notifier readable; idempotent (sets before a clear coalesce)."""
        self._check()
        try:
            os.write(self._wfd, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except BlockingIOError:
            pass  # counter saturated / pipe full: a read is pending anyway

    def test_and_clear(self) -> bool:
        """Drain the notifier; True if it was set."""
        self._check()
        value = False
        while True:
            try:
                data = os.read(self._rfd, 512)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if data:
                value = True
            if len(data) < 512:
                break
        return value

    def close(self) -> None:
        """Close the fds; idempotent."""
        if self._rfd >= 0:
            os.close(self._rfd)
            if self._wfd != self._rfd:
                os.close(self._wfd)
            self._rfd = self._wfd = -1

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._rfd < 0

    def __enter__(self) -> Self:
        """Context manager: returns itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Context manager: ``close()``."""
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # a finalizer must not raise
            self.close()
