"""GLib integration, both ways (docs/glib.md), shared by both implementations.

* **GLib as a guest of qloop**: ``main_loop_wait()`` runs GLib's default ``GMainContext``:
  prepare, query (GLib's poll fds merged into qloop's one wait), check, dispatch.  PyGObject's
  ``MainContext.query()`` drops the GPollFD array, so this talks to GLib's C API: here
  through ``ctypes`` on ``libglib-2.0.so.0`` (``CtypesGLibPoller``); the compiled core brings
  its own Cython twin (``qloop._core._CGLibPoller``).  Both load GLib at run time, so
  ``import qloop`` works without it; the main loop simply has no GLib guest then.
* **qloop as a guest of GLib**: ``AioContext.g_source()`` returns a ``GLib.Source`` (a
  PyGObject subclass) whose prepare/check/dispatch are the context's
  ``source_prepare/source_check/source_dispatch``, with the context's fds as the source's
  unix fds; attach it to a ``GLib.MainContext`` and a running ``GLib.MainLoop`` drives the
  context's BHs, timers and fd handlers.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Any

__all__ = ["CtypesGLibPoller", "GLibUnavailable", "load_glib", "make_g_source"]

_logger = logging.getLogger("qloop")

INSTALL_HINT = (
    "install GLib (Debian: apt-get install libglib2.0-0) and, for g_source() and GLib "
    "callbacks from Python, PyGObject: pip install 'qloop[glib]' where GLib is 2.80 or newer "
    "(Debian 13, Ubuntu 24.04; building it needs libgirepository-2.0-dev libcairo2-dev), or "
    "pip install 'qloop[glib-legacy]' (PyGObject < 3.51) on older GLib (Debian 12, Ubuntu "
    "22.04; needs libgirepository1.0-dev libcairo2-dev)"
)


class GLibUnavailable(ImportError):
    """GLib (or PyGObject) is not installed: the GLib entry points cannot work."""


class GPollFD(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_ushort), ("revents", ctypes.c_ushort)]


_glib: ctypes.CDLL | None = None
_glib_error: str | None = None


def load_glib() -> ctypes.CDLL:
    """Load libglib-2.0 once; GLibUnavailable (an ImportError) with a hint if it is missing."""
    global _glib, _glib_error
    if _glib is not None:
        return _glib
    if _glib_error is not None:
        raise GLibUnavailable(_glib_error)
    if os.environ.get("QLOOP_NO_GLIB"):
        _glib_error = "GLib integration disabled by QLOOP_NO_GLIB"
        raise GLibUnavailable(_glib_error)
    name = "libglib-2.0.so.0"
    lib: ctypes.CDLL | None = None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        from ctypes import util  # slow to import (subprocess): only when the soname is missing

        found = util.find_library("glib-2.0")
        try:
            lib = ctypes.CDLL(found) if found else None
        except OSError:
            lib = None
    if lib is None:
        _glib_error = f"qloop: cannot load {name}: {INSTALL_HINT}"
        raise GLibUnavailable(_glib_error)
    vp, ci = ctypes.c_void_p, ctypes.c_int
    pfd = ctypes.POINTER(GPollFD)
    lib.g_main_context_default.restype = vp
    lib.g_main_context_default.argtypes = []
    lib.g_main_context_acquire.restype = ci
    lib.g_main_context_acquire.argtypes = [vp]
    lib.g_main_context_release.restype = None
    lib.g_main_context_release.argtypes = [vp]
    lib.g_main_context_prepare.restype = ci
    lib.g_main_context_prepare.argtypes = [vp, ctypes.POINTER(ci)]
    lib.g_main_context_query.restype = ci
    lib.g_main_context_query.argtypes = [vp, ci, ctypes.POINTER(ci), pfd, ci]
    lib.g_main_context_check.restype = ci
    lib.g_main_context_check.argtypes = [vp, ci, pfd, ci]
    lib.g_main_context_dispatch.restype = None
    lib.g_main_context_dispatch.argtypes = [vp]
    _glib = lib
    return lib


class CtypesGLibPoller:
    """Runs one iteration of GLib's default context in pieces, around qloop's own wait
    (QEMU's ``glib_pollfds_fill`` / ``glib_pollfds_poll``: docs/main-loop-iteration.md)."""

    def __init__(self) -> None:
        self._lib = load_glib()
        self._ctx = self._lib.g_main_context_default()
        self._fds = (GPollFD * 16)()
        self._n = 0
        self._max_priority = ctypes.c_int(0)
        self.acquired = False  # between fill() and poll(): a nested main_loop_wait skips GLib
        self.only_wakeup = True  # the last fill() gave only GLib's own wake-up fd (or none)

    def fill(self) -> tuple[int, list[tuple[int, int]]]:
        """Acquire the default context, prepare and query it: (timeout in ns, [(fd, events)])."""
        lib = self._lib
        if not lib.g_main_context_acquire(self._ctx):
            self.acquired = False
            self.only_wakeup = True
            return -1, []  # another thread owns it: no GLib guest this iteration
        self.acquired = True
        lib.g_main_context_prepare(self._ctx, ctypes.byref(self._max_priority))
        timeout = ctypes.c_int(-1)
        while True:
            n = lib.g_main_context_query(self._ctx, self._max_priority.value,
                                         ctypes.byref(timeout), self._fds, len(self._fds))
            if n <= len(self._fds):
                break
            self._fds = (GPollFD * (2 * n))()
        self._n = n
        # GLib always polls its wake-up fd (priority 0) unless a source of higher priority is
        # ready: then one fd alone is that one, whose readiness carries no event
        self.only_wakeup = n == 0 or (n == 1 and self._max_priority.value >= 0)
        fds = [(self._fds[i].fd, self._fds[i].events) for i in range(n)]
        ms = timeout.value
        return (-1 if ms < 0 else ms * 1_000_000), fds

    def poll(self, revents: dict[int, int]) -> None:
        """Hand GLib the revents of its fds, check and dispatch, release the context."""
        if not self.acquired:
            return
        lib = self._lib
        try:
            for i in range(self._n):
                entry = self._fds[i]
                entry.revents = revents.get(entry.fd, 0) & (entry.events | 0x38)
            if lib.g_main_context_check(self._ctx, self._max_priority.value, self._fds, self._n):
                lib.g_main_context_dispatch(self._ctx)
        finally:
            self.acquired = False
            lib.g_main_context_release(self._ctx)


def new_poller(impl_factory: Any = None) -> Any | None:
    """A GLib poller for the main loop, or None when GLib cannot be loaded or
    ``QLOOP_NO_GLIB`` is set (read at each ``init_main_loop``)."""
    if os.environ.get("QLOOP_NO_GLIB"):
        return None
    try:
        if impl_factory is not None:
            return impl_factory()
        return CtypesGLibPoller()
    except GLibUnavailable:
        return None


# --------------------------------------------------------------------------------------------
# qloop as a guest of GLib

_source_class: Any = None


def _gi_glib() -> Any:
    try:
        import gi  # type: ignore[import-untyped,import-not-found,unused-ignore]

        gi.require_version("GLib", "2.0")
        from gi.repository import GLib  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except (ImportError, ValueError) as exc:
        raise GLibUnavailable(f"qloop: g_source() needs PyGObject: {INSTALL_HINT} ({exc})") from None
    return GLib


def _make_source_class() -> Any:
    GLib = _gi_glib()

    class AioContextSource(GLib.Source):  # type: ignore[misc, name-defined]
        """An AioContext as a GLib source (docs/glib.md)."""

        def __init__(self, ctx: Any) -> None:
            super().__init__()
            self._qloop_ctx = ctx
            self._qloop_tags: dict[int, tuple[Any, int]] = {}
            self._qloop_order: list[int] = []
            self.set_name("qloop-aio-context")
            self.set_can_recurse(True)

        def _sync_fds(self) -> None:
            wanted = self._qloop_ctx.source_query()
            tags = self._qloop_tags
            seen = set()
            for fd, events in wanted:
                seen.add(fd)
                cond = GLib.IOCondition(events)
                entry = tags.get(fd)
                if entry is None:
                    tags[fd] = (self.add_unix_fd(fd, cond), events)
                elif entry[1] != events:
                    self.modify_unix_fd(entry[0], cond)
                    tags[fd] = (entry[0], events)
            for fd in [fd for fd in tags if fd not in seen]:
                self.remove_unix_fd(tags.pop(fd)[0])
            self._qloop_order = [fd for fd, _ in wanted]

        def prepare(self) -> tuple[bool, int]:
            ctx = self._qloop_ctx
            if ctx.closed:
                return False, -1
            ns = ctx.source_prepare()
            self._sync_fds()
            ms = -1 if ns < 0 else (ns + 999_999) // 1_000_000
            return ms == 0, ms

        def check(self) -> bool:
            ctx = self._qloop_ctx
            if ctx.closed:
                return False
            revents = [int(self.query_unix_fd(self._qloop_tags[fd][0]))
                       for fd in self._qloop_order]
            return bool(ctx.source_check(revents))

        def dispatch(self, callback: Any, args: Any) -> bool:
            ctx = self._qloop_ctx
            if ctx.closed:
                return False  # removes the source
            try:
                ctx.source_dispatch()
            except BaseException:  # GLib cannot take exceptions: log, keep the source
                _logger.exception("qloop: a callback raised while GLib dispatched %r", ctx)
            return True

        def finalize(self) -> None:
            self._qloop_tags.clear()

    return AioContextSource


def make_g_source(ctx: Any) -> Any:
    """A new GLib source driving ``ctx`` (see ``AioContext.g_source``)."""
    global _source_class
    if _source_class is None:
        _source_class = _make_source_class()
    return _source_class(ctx)
