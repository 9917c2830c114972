"""The default executor of a qloop event loop: its AioContext's thread pool
(docs/thread-pool.md, "The asyncio loop's default executor").

``ContextPoolExecutor`` is a ``concurrent.futures.Executor`` over the pool, so what asyncio
and its users expect of ``loop._default_executor`` holds (``submit``, ``shutdown(wait,
cancel_futures=...)``).  ``run_in_executor(None, ...)`` does not go through
``concurrent.futures``: ``run_in_loop`` submits to the pool and resolves the asyncio future
from the completion callback, which already runs in the loop's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from typing import Any

__all__ = ["ContextPoolExecutor"]


class ContextPoolExecutor(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` running its jobs on a context's ``ThreadPool``.

    ``shutdown()`` refuses further jobs and, with ``wait=True``, waits until the jobs it ran
    are over; the pool itself belongs to the context and stays."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._jobs: set[Any] = set()  # requests not yet delivered
        self._shutdown = False
        self._lock = threading.Lock()

    def _check(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Run ``fn(*args, **kwargs)`` on the pool; a ``concurrent.futures.Future``."""
        self._check()
        cfut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        call = functools.partial(fn, *args, **kwargs) if kwargs else fn
        jobs = self._jobs

        def run() -> None:
            if not cfut.set_running_or_notify_cancel():
                return
            try:
                result = call(*args) if not kwargs else call()
            except BaseException as exc:  # handed to the future
                cfut.set_exception(exc)
            else:
                cfut.set_result(result)

        def delivered(_: Any) -> None:
            jobs.discard(req)

        req = self._pool.submit(run, callback=delivered)
        jobs.add(req)
        cfut.add_done_callback(lambda f: req.cancel() if f.cancelled() else None)
        return cfut

    def run_in_loop(self, loop: Any, func: Any, args: tuple[Any, ...]) -> Any:
        """``loop.run_in_executor(None, func, *args)``: an asyncio future of ``loop``,
        resolved by the pool's completion callback (in the loop's thread)."""
        self._check()
        fut = loop.create_future()
        jobs = self._jobs
        vt = loop._vt_enabled

        def on_cancel(f: Any) -> None:
            if f.cancelled():
                req.cancel()

        def done(value: Any) -> None:
            jobs.discard(req)
            if vt:
                loop._real_work_end()
            if fut.done() or loop.is_closed():
                return
            fut.remove_done_callback(on_cancel)
            if req._cancelled:  # never started: the future is cancelled, as asyncio's is
                fut.cancel()
            elif req._failed:
                if isinstance(value, StopIteration):  # a future cannot hold one
                    value = RuntimeError(f"{func!r} raised StopIteration")
                fut.set_exception(_asyncio_exception(value))
            else:
                fut.set_result(value)

        req = self._pool.submit(func, *args, callback=done)
        jobs.add(req)
        fut.add_done_callback(on_cancel)
        if vt:
            loop._real_work_begin()  # never jumped past in virtual time
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more jobs; ``cancel_futures`` cancels those no worker started; ``wait`` waits
        until the others are over (not for their delivery to the loop)."""
        self._shutdown = True
        jobs = list(self._jobs)
        if cancel_futures:
            for req in jobs:
                req.cancel()
        if wait:
            for req in jobs:
                req._wait()


def _asyncio_exception(exc: BaseException) -> BaseException:
    """What asyncio's future of a concurrent future holds for ``exc``: concurrent.futures'
    CancelledError and InvalidStateError become asyncio's own (as ``wrap_future`` does)."""
    if type(exc) is concurrent.futures.CancelledError:
        return asyncio.CancelledError(*exc.args)
    if type(exc) is concurrent.futures.InvalidStateError:
        return asyncio.InvalidStateError(*exc.args)
    return exc
