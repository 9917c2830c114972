"""QEMU's IOThread (``iothread.c``): an AioContext run by a thread of its own
(docs/iothreads.md).

Shared by both implementations: each main loop makes a subclass bound to its AioContext
type (``MainLoop.IOThread``).

* ``IOThread()`` returns once the thread runs and has registered its context as its own
  (``get_current_aio_context()`` in that thread).
* The thread loops ``ctx.poll(True)`` while it runs.  An exception a callback raises is
  logged on the ``"qloop"`` logger and the loop goes on (``ctx.set_exception_handler``
  replaces that); a BaseException that is not an Exception stops the thread.
* ``join()`` schedules a one-shot BH in the context that stops the loop, joins the thread,
  then closes the context.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, ClassVar, Self

from .._common import _logger
from . import aio_wait as _aio_wait, coroutine as _coroutine

__all__ = ["IOThread"]

_ids = itertools.count(1)


class IOThread:
    """An AioContext run by its own thread (QEMU's IOThread).  ``IOThread(*, name=None)``;
    ``.ctx``, ``.name``, ``.join()``; a context manager that joins on exit."""

    _context_type: ClassVar[Any] = None  # the implementation's AioContext (set per main loop)

    def __init__(self, *, name: str | None = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        if self._context_type is None:
            raise TypeError("use the implementation's IOThread (qloop.IOThread)")
        self._name = name if name is not None else f"iothread{next(_ids)}"
        self._ctx = self._context_type()
        self._running = True
        self._joined = False
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        self._started.wait()

    @property
    def ctx(self) -> Any:
        """The IOThread's AioContext (closed once the thread is joined)."""
        return self._ctx

    @property
    def name(self) -> str:
        """The thread's name (``iothreadN`` if none was given)."""
        return self._name

    @property
    def thread(self) -> threading.Thread:
        """The ``threading.Thread`` running the context."""
        return self._thread

    def _run(self) -> None:
        ctx = self._ctx
        _coroutine.set_current_aio_context(ctx)
        self._started.set()
        try:
            while self._running:
                try:
                    ctx.poll(True)
                except Exception:  # the iteration completed; the thread goes on
                    _logger.exception("qloop: a callback raised in IOThread %r", self._name)
        finally:
            _coroutine.set_current_aio_context(None)

    def _stop(self) -> None:
        self._running = False
        _aio_wait.aio_wait_kick()

    def join(self) -> None:
        """Stop the thread (a one-shot BH in its context clears its run flag), join it and
        close the context.  Idempotent; RuntimeError from the IOThread itself."""
        if self._joined:
            return
        if threading.current_thread() is self._thread:
            raise RuntimeError("an IOThread cannot join itself")
        if self._thread.is_alive():
            self._ctx.bh_schedule_oneshot(self._stop, name="iothread_stop")
            self._thread.join()
        self._joined = True
        self._ctx.close()

    def __enter__(self) -> Self:
        """Context manager: returns itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Context manager: ``join()``."""
        self.join()

    def __repr__(self) -> str:
        state = "joined" if self._joined else ("running" if self._thread.is_alive() else "stopped")
        return f"<qloop.IOThread {self._name!r} {state}>"
