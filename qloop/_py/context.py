"""The fallback's AioContext and its fd handlers.  Twin of ``qloop/_cy/context.pxi``.  Its
adapters are functions over it: ``context_gsource.py`` (the bodies of the GSource methods) and
``context_mainloop.py`` (the steps of ``main_loop_wait``).

This module is the reference implementation; ``qloop/_core.pyx`` mirrors it class by class
(clocks, EventNotifier, NotifierList, Timer/_TimerList, BH, _Handler, AioContext) and must
behave identically.  Methods come in the same order; an attribute ``_x`` here is the core's
C attribute ``x``.  The behaviour is described in ``docs/`` (``docs/aio-context.md`` and the
pages it links); choices QEMU's behaviour leaves open are written down in ``docs/decisions.md``.

Threading model (the fallback's; the core uses C atomics instead):
* ``BH.schedule()``/``schedule_idle()``/``cancel()``/``delete()`` only append to the context's
  ``_bh_ops`` deque (atomic in CPython, so safe from any thread and from a Python signal
  handler, which may interrupt the owner thread anywhere) and call ``notify()``.  Only the
  thread running ``poll()`` applies those operations to the BH flags and the pending stack, so
  the flags need no lock; it applies them before each dequeue, which gives master's ordering.
* Timer lists and the handler table take a ``threading.Lock`` (timers may be armed and fd
  handlers changed from other threads).
"""

from __future__ import annotations

import errno
import inspect
import itertools
import os
import select
import threading
import time
import types
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import Self

from .._common import (
    _bind,
    _check_callback,
    _clock_of,
    _closed_fd_error,
    _fd_for_removal,
    _fd_of,
    _int64_arg,
    _int_arg,
    _io_uring_switched_off,
    _raise_errors,
)
from .._constants import (
    AUTO_EPOLL_FDS,
    EPOLL_MAX_EVENTS,
    FDMON_NAMES,
    IDLE_BH_TIMEOUT_NS,
    ONESHOT_FREE_MAX,
    POLL_NS_INITIAL,
    READ_EVENTS as _READ_EVENTS,
    SCALE_MS,
    SCALE_NS,
    SCALE_US,
    TIMER_ATTR_ALL,
    WRITE_EVENTS as _WRITE_EVENTS,
    ClockType,
)
from .._main import (
    aio_wait as _aio_wait,
    coroutine as _coroutine,
    threadpool as _threadpool,
)
from .bh import (
    _BH_CANCEL,
    _BH_DELETED,
    _BH_IDLE,
    _BH_ONESHOT,
    _BH_PENDING,
    _BH_SCHEDULED,
    BH,
)
from .clock import _contexts, _soonest, timeout_ns_to_ms
from .context_gsource import (
    gsource_check,
    gsource_dispatch,
    gsource_get,
    gsource_prepare,
    gsource_query,
)
from .notifier import EventNotifier
from .timers import Timer, _TimerList

FileDescriptorLike = int | Any
Callback = Callable[[], Any]
_POLLNVAL = select.POLLNVAL
_NCLOCKS = 4
_monotonic_ns = time.monotonic_ns
_FunctionType = types.FunctionType
_CO_COROUTINE = inspect.CO_COROUTINE
_new_object = object.__new__
_get_ident = threading.get_ident
_NO_CALLBACK = object()
_BH_RUN_CLEAR = ~(_BH_PENDING | _BH_SCHEDULED | _BH_IDLE)  # the flags a BH loses as it runs


_BH_RETIRED_AFTER_RUN = _BH_DELETED | _BH_ONESHOT  # the flags that end a BH once it ran


def _no_callback() -> Any:
    return _NO_CALLBACK  # matches no callback (not even None)


def _retire_run_bh(oneshot_free: list[BH], bh: BH, old: int) -> None:
    """After ``bh`` ran (or was skipped) with flags ``old``: a deleted BH is freed; a one-shot
    is freed too, and kept in ``oneshot_free`` for reuse while it has room."""
    bh._cb = None
    if old & _BH_DELETED:
        bh._deleted = True
    else:
        bh._flags = 0  # nothing else holds it: clean for bh_schedule_oneshot
        if len(oneshot_free) < ONESHOT_FREE_MAX:
            oneshot_free.append(bh)
        else:
            bh._deleted = True


# --------------------------------------------------------------------------------------------
# fd handlers (docs/aio-context.md, "fd handlers")


class _Handler:
    __slots__ = (
        "deleted",
        "events",
        "fd",
        "in_poll_list",
        "io_poll",
        "io_poll_begin",
        "io_poll_end",
        "io_poll_ready",
        "io_read",
        "io_write",
        "is_notifier",
        "poll_ns",
        "poll_ready",
        "ready_gen",
        "revents",
        "seq",
    )

    def __init__(self, fd: int, io_read: Any, io_write: Any, io_poll: Any, io_poll_ready: Any,
                 seq: int) -> None:
        self.fd = fd
        self.io_read = io_read
        self.io_write = io_write
        self.io_poll = io_poll
        self.io_poll_ready = io_poll_ready
        self.io_poll_begin: Any = None
        self.io_poll_end: Any = None
        self.events = (_READ_EVENTS if io_read is not None else 0) | (
            _WRITE_EVENTS if io_write is not None else 0
        )
        self.revents = 0
        self.poll_ready = False
        self.deleted = False
        self.in_poll_list = False
        self.poll_ns = 0
        self.is_notifier = False
        self.ready_gen = 0
        self.seq = seq


# --------------------------------------------------------------------------------------------
# AioContext (docs/aio-context.md)


class AioContext:
    """QEMU's AioContext: fd handlers, bottom halves and timers driven by ``poll()``.

    ``fdmon`` is ``"auto"`` (ppoll while only the context's own notifier is registered, epoll
    from the first wait with another fd), ``"poll"``, ``"epoll"`` or ``"io_uring"`` (OSError
    naming the cause where io_uring is unavailable).  Exceptions raised by callbacks: see
    ``set_exception_handler``.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # the compiled core's AioContext is final (direct C calls): the same rule here
        raise TypeError("type 'AioContext' is not an acceptable base type")

    def __init__(self, fdmon: str = "auto") -> None:
        if getattr(self, "_notifier", None) is not None:
            raise RuntimeError("AioContext is already initialised")
        if not isinstance(fdmon, str):
            raise TypeError(f"fdmon must be a str, not {type(fdmon).__name__}")
        if fdmon not in FDMON_NAMES:
            raise ValueError(f"unknown fdmon {fdmon!r} (expected one of {FDMON_NAMES})")
        if fdmon == "io_uring":
            # No io_uring monitor here: the same error as the core where a ring cannot be set
            # up (the QLOOP_IO_URING switch), else ENOSYS naming this implementation.
            raise _io_uring_switched_off() or OSError(
                errno.ENOSYS, "fdmon='io_uring' is not available: the pure-Python "
                "implementation has no io_uring monitor")
        self._closed = True  # until construction completes
        self._fdmon_mode = fdmon
        self._handlers: dict[int, _Handler] = {}  # live handlers in registration order
        self._handler_seq = 0
        self._list_lock = threading.Lock()
        self._pollobj = select.poll()
        self._epoll: select.epoll | None = None
        self._epoll_failed = False
        self._epoll_active = False
        self._npollfds = 0  # live handlers with a nonzero event mask
        self._walkers = 0
        self._poll_thread: int | None = None
        self._notify_me = 0
        self._notified = False
        self._wake_lock = threading.RLock()
        self._poll_disable_cnt = 0
        self._poll_max_ns = 0
        self._poll_grow = 0
        self._poll_shrink = 0
        self._poll_started = False
        self._poll_list: list[_Handler] = []
        self._ready_gen = 0
        self._bh_ops: deque[Any] = deque()
        self._bh_list: list[BH] = []  # pending stack (top = end)
        self._bh_slices: deque[list[BH]] = deque()
        self._oneshot_free: list[BH] = []  # run one-shot BHs kept for reuse
        self._timer_lists = [_TimerList(self, c) for c in range(_NCLOCKS)]
        self._exception_handler: Callable[[AioContext, BaseException], Any] | None = None
        self._timer_notify_cb: Callback | None = None
        self._co_state: Any = None
        self._thread_pool: _threadpool.ThreadPool | None = None
        # the last callback timer_new() validated (weakly: it must not keep it alive)
        self._last_timer_cb: Callable[[], Any] = _no_callback
        self._g_source_obj: Any = None
        self._source_nodes: list[_Handler | None] = []
        self._source_epoll_ready = False
        self._source_errors: list[BaseException] = []
        self._errors: list[BaseException] = []
        self._notifier = EventNotifier()
        if fdmon == "epoll":
            self._epoll = select.epoll(sizehint=EPOLL_MAX_EVENTS, flags=select.EPOLL_CLOEXEC)
            self._epoll_active = True
        self._closed = False
        notifier = self._notifier
        self._set_handler(notifier.fileno(), self._drain_notifier, None,
                          self._notifier_poll, self._notifier_poll_ready, is_notifier=True)
        _contexts.add(self)

    # ---- the notifier's own handler: registered at creation, so a fresh context starts
    # notified (docs/aio-context.md, "Life cycle")

    def _drain_notifier(self) -> None:
        self._notifier.test_and_clear()

    def _notifier_poll(self) -> bool:
        return self._notified

    def _notifier_poll_ready(self) -> None:
        pass

    # ---- helpers

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    @property
    def fdmon(self) -> str:
        """The fd monitor in use now: ``"poll"``, ``"epoll"`` or ``"io_uring"``."""
        return "epoll" if self._epoll_active else "poll"

    def set_exception_handler(
        self, handler: Callable[[AioContext, BaseException], Any] | None
    ) -> None:
        """Route callback exceptions to ``handler(ctx, exc)`` instead of raising from poll().

        With no handler (the default) ``poll()`` finishes its iteration, then raises the first
        exception; later ones from the same iteration are logged on the ``"qloop"`` logger.
        """
        self._exception_handler = _check_callback(handler, "handler")

    def get_exception_handler(self) -> Callable[[AioContext, BaseException], Any] | None:
        """The handler given to ``set_exception_handler`` (None: the default)."""
        return self._exception_handler

    def _report(self, exc: BaseException) -> None:
        handler = self._exception_handler
        if handler is not None and isinstance(exc, Exception):
            try:
                handler(self, exc)
                return
            except BaseException as exc2:  # the handler itself failed: raise that
                exc = exc2
        self._errors.append(exc)

    def _call(self, cb: Callback) -> None:
        try:
            cb()
        except BaseException as exc:
            self._report(exc)

    def _call_poll(self, node: _Handler) -> bool:
        try:
            return bool(node.io_poll())
        except BaseException as exc:
            self._report(exc)
            return False

    # ---- notify protocol (docs/notify.md)

    def _notify(self) -> None:
        self._notified = True
        if self._notify_me:
            # os.write releases the GIL: hold _wake_lock so close() cannot close the fd (and
            # the number be reused) mid-write.  Re-entrant: a Python signal handler may
            # notify while this thread is inside the block.
            with self._wake_lock:
                wfd = self._notifier._wfd
                if wfd >= 0:
                    try:
                        os.write(wfd, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    except BlockingIOError:
                        pass

    def notify(self) -> None:
        """``aio_notify``: wake a blocking ``poll()``; safe from any thread; never progress."""
        if self._closed:
            raise RuntimeError("AioContext is closed")
        self._notify()

    # ---- fd handlers (docs/aio-context.md, "fd handlers")

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("AioContext is closed")

    def set_fd_handler(
        self,
        fd: FileDescriptorLike,
        io_read: Callback | None = None,
        io_write: Callback | None = None,
        io_poll: Callable[[], bool] | None = None,
        io_poll_ready: Callback | None = None,
    ) -> None:
        """Add, replace or (all None) remove the handler for ``fd``.  Level-triggered.

        Safe from any thread and from inside callbacks: a replaced or removed handler is not
        dispatched again, and a new one is first dispatched in a later iteration.
        """
        self._check_open()
        if io_read is None and io_write is None and io_poll is None and io_poll_ready is None:
            num = _fd_for_removal(fd)
            if num is not None:
                self._set_handler(num, None, None, None, None)
            return
        num = _fd_of(fd)
        self._set_handler(num, _check_callback(io_read, "io_read"),
                          _check_callback(io_write, "io_write"),
                          _check_callback(io_poll, "io_poll"),
                          _check_callback(io_poll_ready, "io_poll_ready"))

    def set_event_notifier(
        self,
        notifier: EventNotifier,
        io_read: Callable[[EventNotifier], Any] | None = None,
        io_poll: Callable[[EventNotifier], bool] | None = None,
        io_poll_ready: Callable[[EventNotifier], Any] | None = None,
    ) -> None:
        """``aio_set_event_notifier``: callbacks receive the notifier; all None removes."""
        if not isinstance(notifier, EventNotifier):
            raise TypeError(f"notifier must be an EventNotifier, not {type(notifier).__name__}")
        self._check_open()
        if io_read is None and io_poll is None and io_poll_ready is None:
            if not notifier.closed:
                self._set_handler(notifier.fileno(), None, None, None, None)
            return
        fd = notifier.fileno()
        self._set_handler(
            fd,
            _bind(_check_callback(io_read, "io_read"), notifier),
            None,
            _bind(_check_callback(io_poll, "io_poll"), notifier),
            _bind(_check_callback(io_poll_ready, "io_poll_ready"), notifier),
        )

    def set_fd_poll(
        self,
        fd: FileDescriptorLike,
        io_poll_begin: Callback | None = None,
        io_poll_end: Callback | None = None,
    ) -> None:
        """``aio_set_fd_poll``: set io_poll_begin/io_poll_end on a registered handler.

        Replacing the handler later drops them.  ValueError if ``fd`` is not registered.
        """
        self._check_open()
        num = _fd_for_removal(fd)
        begin = _check_callback(io_poll_begin, "io_poll_begin")
        end = _check_callback(io_poll_end, "io_poll_end")
        with self._list_lock:
            node = self._handlers.get(num) if num is not None else None
            if node is None:
                raise ValueError(f"fd {num} has no handler in this AioContext")
            node.io_poll_begin = begin
            node.io_poll_end = end

    def set_event_notifier_poll(
        self,
        notifier: EventNotifier,
        io_poll_begin: Callable[[EventNotifier], Any] | None = None,
        io_poll_end: Callable[[EventNotifier], Any] | None = None,
    ) -> None:
        """``aio_set_event_notifier_poll``."""
        if not isinstance(notifier, EventNotifier):
            raise TypeError(f"notifier must be an EventNotifier, not {type(notifier).__name__}")
        self.set_fd_poll(notifier.fileno(),
                         _bind(_check_callback(io_poll_begin, "io_poll_begin"), notifier),
                         _bind(_check_callback(io_poll_end, "io_poll_end"), notifier))

    def _set_handler(self, fd: int, io_read: Any, io_write: Any, io_poll: Any,
                     io_poll_ready: Any, is_notifier: bool = False) -> None:
        delete = io_read is None and io_write is None and io_poll is None
        if not delete and (io_poll is None) != (io_poll_ready is None):
            raise ValueError(f"fd {fd}: io_poll and io_poll_ready must be given together")
        with self._list_lock:
            old = self._handlers.pop(fd, None)
            if delete:
                if old is None:
                    return
                if old.io_poll is None:
                    self._poll_disable_cnt -= 1
                new = None
            else:
                self._handler_seq += 1
                new = _Handler(fd, io_read, io_write, io_poll, io_poll_ready, self._handler_seq)
                new.is_notifier = is_notifier
                self._handlers[fd] = new
                self._poll_disable_cnt += (io_poll is None) - (
                    old is not None and old.io_poll is None)
            self._fdmon_update(old, new)
            if old is not None:
                old.revents = 0
                old.poll_ready = False
                old.deleted = True
                if old.in_poll_list:
                    self._poll_list_remove(old)
        self._notify()

    # ---- fd monitors (docs/aio-context.md, "fd monitors")

    def _fdmon_update(self, old: _Handler | None, new: _Handler | None) -> None:
        fd = (new or old).fd  # type: ignore[union-attr]
        old_ev = old.events if old is not None else 0
        new_ev = new.events if new is not None else 0
        if new_ev:
            if old_ev:
                self._pollobj.modify(fd, new_ev)
            else:
                self._pollobj.register(fd, new_ev)
                self._npollfds += 1
        elif old_ev:
            self._pollobj.unregister(fd)
            self._npollfds -= 1
        if self._epoll_active:
            try:
                if new_ev and old_ev:
                    self._epoll.modify(fd, new_ev)  # type: ignore[union-attr]
                elif new_ev:
                    self._epoll.register(fd, new_ev)  # type: ignore[union-attr]
                elif old_ev:
                    self._epoll.unregister(fd)  # type: ignore[union-attr]
            except OSError:
                self._epoll_disable()

    def _epoll_disable(self) -> None:
        """Any epoll_ctl error: fall back to ppoll for good (docs/aio-context.md, "fd monitors")."""
        if self._epoll is not None:
            self._epoll.close()
        self._epoll = None
        self._epoll_failed = True
        self._epoll_active = False

    def _epoll_try_upgrade(self) -> bool:
        if self._epoll_failed or self._walkers != 1:
            return False  # not while a poll() is nested in this one
        if self._epoll is None:
            try:
                self._epoll = select.epoll(sizehint=EPOLL_MAX_EVENTS, flags=select.EPOLL_CLOEXEC)
            except OSError:
                self._epoll_failed = True
                return False
        with self._list_lock:
            try:
                for node in self._handlers.values():
                    if node.events:
                        self._epoll.register(node.fd, node.events)
            except OSError:
                self._epoll_disable()
                return False
            self._epoll_active = True
        return True

    def _wait(self, ready: list[_Handler], timeout: int, gen: int) -> None:
        """The backend wait: the only blocking point of poll()."""
        if (self._npollfds >= AUTO_EPOLL_FDS and not self._epoll_active
                and self._fdmon_mode == "auto" and not self._epoll_failed):
            self._epoll_try_upgrade()
        if not self._epoll_active:
            self._collect_ready(self._pollobj.poll(timeout_ns_to_ms(timeout)), ready, gen)
            return
        handlers = self._handlers
        secs = -1.0 if timeout < 0 else timeout / 1e9
        events = self._epoll.poll(secs, EPOLL_MAX_EVENTS)  # type: ignore[union-attr]
        found = []
        for fd, rev in reversed(events):
            node = handlers.get(fd)
            if node is not None and rev & node.events:
                found.append((node, rev & node.events))
        for node, rev in found:
            node.revents = rev
            if node.ready_gen != gen:
                node.ready_gen = gen
                ready.append(node)

    def _collect_ready(self, ready_fds: list[tuple[int, int]], ready: list[_Handler],
                       gen: int) -> None:
        """Append to ``ready`` the handlers that poll-style ``(fd, revents)`` pairs found ready,
        oldest registration first; a closed fd (POLLNVAL) loses its handler and is reported."""
        handlers = self._handlers
        found = []
        for fd, rev in ready_fds:
            node = handlers.get(fd)
            if node is None:
                continue
            if rev & _POLLNVAL:
                self._set_handler(fd, None, None, None, None)
                self._report(_closed_fd_error(fd))
                continue
            rev &= node.events
            if rev:
                found.append((node, rev))
        if len(found) > 1:
            found.sort(key=lambda item: item[0].seq)  # oldest registration first
        for node, rev in found:
            node.revents = rev
            if node.ready_gen != gen:
                node.ready_gen = gen
                ready.append(node)

    # ---- adaptive polling (docs/aio-context.md, "Busy polling")

    def set_poll_params(self, max_ns: int, grow: int, shrink: int) -> None:
        """``aio_context_set_poll_params``: ``max_ns=0`` disables busy polling."""
        self._check_open()
        for value, what in ((max_ns, "max_ns"), (grow, "grow"), (shrink, "shrink")):
            if _int64_arg(value, what) < 0:
                raise ValueError(f"{what} must be >= 0, got {value}")
        with self._list_lock:
            for node in self._handlers.values():
                node.poll_ns = 0
            self._poll_max_ns = max_ns
            self._poll_grow = grow
            self._poll_shrink = shrink
        self._notify()

    def _poll_list_add(self, node: _Handler) -> None:
        node.in_poll_list = True
        self._poll_list = self._poll_list + [node]

    def _poll_list_remove(self, node: _Handler) -> None:
        node.in_poll_list = False
        self._poll_list = [n for n in self._poll_list if n is not node]

    def _mark_poll_ready(self, node: _Handler, ready: list[_Handler], gen: int) -> None:
        node.poll_ready = True
        if node.ready_gen != gen:
            node.ready_gen = gen
            ready.append(node)

    def _poll_set_started(self, started: bool, ready: list[_Handler], gen: int) -> bool:
        """Enter/leave poll mode: io_poll_begin/end once per switch; a final io_poll on leave."""
        if started == self._poll_started:
            return False
        self._poll_started = started
        progress = False
        for node in self._poll_list:
            if node.deleted:
                continue
            cb = node.io_poll_begin if started else node.io_poll_end
            if cb is not None:
                self._call(cb)
            if (not started and not node.deleted and node.io_poll is not None
                    and self._call_poll(node)):
                self._mark_poll_ready(node, ready, gen)
                progress = True  # the context's own notifier counts here (docs/aio-context.md)
        return progress

    def _try_poll_mode(self, timeout: int, ready: list[_Handler], gen: int) -> tuple[bool, int]:
        poll_list = self._poll_list
        if not poll_list:
            return False, timeout
        max_ns = 0
        for node in poll_list:
            max_ns = max(max_ns, node.poll_ns)
        max_ns = _soonest(timeout, max_ns)
        if max_ns == 0 or self._poll_disable_cnt > 0:
            return False, timeout
        self._poll_set_started(True, ready, gen)
        progress = False
        start = _monotonic_ns()
        while True:
            for node in self._poll_list:
                if not node.deleted and node.io_poll is not None and self._call_poll(node):
                    self._mark_poll_ready(node, ready, gen)
                    timeout = 0
                    if not node.is_notifier:
                        progress = True
            elapsed = _monotonic_ns() - start
            max_ns = _soonest(timeout, max_ns)
            if elapsed >= max_ns or self._poll_disable_cnt > 0:
                break
        if timeout > 0:
            timeout = max(timeout - elapsed, 0)
        return progress, timeout

    def _adjust_polling_time(self, node: _Handler, block_ns: int) -> None:
        if block_ns <= node.poll_ns:
            return
        max_ns = self._poll_max_ns
        if block_ns > max_ns:
            shrink = self._poll_shrink
            node.poll_ns = node.poll_ns // shrink if shrink else 0
        elif node.poll_ns < max_ns and block_ns < max_ns:
            if node.poll_ns == 0:
                poll_ns = POLL_NS_INITIAL
            else:
                poll_ns = node.poll_ns * (self._poll_grow or 2)
            node.poll_ns = min(poll_ns, max_ns)

    # ---- dispatch (docs/aio-context.md, "Dispatch order" and "Progress")

    def _dispatch_node(self, node: _Handler) -> bool:
        revents = node.revents
        node.revents = 0
        poll_ready = node.poll_ready
        node.poll_ready = False
        progress = False
        if not node.deleted and not node.in_poll_list and node.io_poll is not None:
            if self._poll_started and node.io_poll_begin is not None:
                self._call(node.io_poll_begin)
            self._poll_list_add(node)
        if not node.deleted and poll_ready and revents == 0 and node.io_poll_ready is not None:
            # Off the poll list while it runs, so a nested poll() cannot re-poll it: its io_poll
            # still reports ready and the nesting would recurse without end.
            was_listed = node.in_poll_list
            if was_listed:
                self._poll_list_remove(node)
            self._call(node.io_poll_ready)
            if was_listed and not node.deleted and not node.in_poll_list:
                self._poll_list_add(node)
            return not node.is_notifier
        if not node.deleted and revents & _READ_EVENTS and node.io_read is not None:
            self._call(node.io_read)
            if not node.is_notifier:
                progress = True
        if not node.deleted and revents & _WRITE_EVENTS and node.io_write is not None:
            self._call(node.io_write)
            progress = True
        return progress

    # ---- bottom halves (docs/bottom-halves.md)

    def bh_new(self, callback: Callback, *, name: str | None = None) -> BH:
        """``aio_bh_new``: a BH bound to this context (not scheduled)."""
        self._check_open()
        _check_callback(callback, "callback", optional=False)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        return BH._new(self, callback, name)

    def bh_schedule_oneshot(self, callback: Callback, *, name: str | None = None) -> None:
        """``aio_bh_schedule_oneshot``: run ``callback`` once in the next poll()."""
        if self._closed:
            raise RuntimeError("AioContext is closed")
        if type(callback) is not _FunctionType or callback.__code__.co_flags & _CO_COROUTINE:
            _check_callback(callback, "callback", optional=False)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        # a one-shot BH is never seen by the user: the context recycles it once it ran
        free = self._oneshot_free
        bh = free.pop() if free else _new_object(BH)
        bh._ctx = self
        bh._cb = callback
        bh._name = name  # type: ignore[assignment]  # never shown: the BH is not handed out
        bh._flags = _BH_ONESHOT  # private until queued: the op below is a plain schedule
        bh._deleted = False
        bh._queued = False
        self._bh_ops.append(bh)
        self._notified = True  # self._notify(), inline
        if self._notify_me:
            self._notify()

    def _bh_absorb(self) -> None:
        """Apply queued BH operations (owner thread only).  Only the operations queued when
        it starts: producers that keep scheduling cannot keep the owner here forever."""
        ops = self._bh_ops
        push = self._bh_list.append
        popleft = ops.popleft
        n = len(ops)
        while n:
            n -= 1
            op = popleft()
            if type(op) is BH:
                bh = op
                bh._queued = False  # a later schedule() must queue again
                new = _BH_SCHEDULED
            else:
                bh, new = op
            if bh._cb is None:
                continue  # already freed
            old = bh._flags
            if new == _BH_CANCEL:
                bh._flags = old & ~_BH_SCHEDULED
                continue
            bh._flags = old | _BH_PENDING | new
            if not old & _BH_PENDING:
                push(bh)

    def _bh_poll(self) -> bool:
        """``aio_bh_poll``: run the BHs pending now; ones scheduled meanwhile wait a pass."""
        ops = self._bh_ops
        stack = self._bh_list
        slices = self._bh_slices
        bh: BH | None = None
        old = 0
        if ops:
            if len(ops) == 1 and type(ops[0]) is BH:  # _bh_absorb() of one schedule, inline
                op = ops.popleft()
                op._queued = False
                if op._cb is not None:
                    old = op._flags
                    if not stack and not slices and not old & _BH_PENDING:
                        bh = op  # the one BH to run: run in place below, never pushed
                        old |= _BH_SCHEDULED
                    else:
                        op._flags = old | _BH_PENDING | _BH_SCHEDULED
                        if not old & _BH_PENDING:
                            stack.append(op)
            else:
                self._bh_absorb()
        if bh is None:
            if slices or len(stack) != 1 or ops:
                # the general walk: the pending stack becomes a slice walked to its end (a
                # nested poll continues the outer walk's slices first)
                if not stack and not slices:
                    return False
                self._bh_list = []
                slices.append(stack)
                progress = False
                while slices:
                    current = slices[0]
                    if not current:
                        slices.popleft()
                        continue
                    if ops:
                        self._bh_absorb()
                    bh = current.pop()
                    old = bh._flags
                    bh._flags = old & _BH_RUN_CLEAR
                    if old & _BH_SCHEDULED and not old & _BH_DELETED:
                        if not old & _BH_IDLE:
                            progress = True
                        try:
                            bh._cb()  # type: ignore[misc]  # freed BHs (cb None) are never queued
                        except BaseException as exc:
                            self._report(exc)
                    if old & _BH_RETIRED_AFTER_RUN:
                        _retire_run_bh(self._oneshot_free, bh, old)
                return progress
            bh = stack.pop()
            old = bh._flags
        # one BH pending and no walk in progress (the busy loop's case): run it in place, the
        # same as a walk of a one-BH slice (what the callback schedules is queued for the
        # next pass, and a nested poll runs it)
        bh._flags = old & _BH_RUN_CLEAR
        progress = False
        if old & _BH_SCHEDULED and not old & _BH_DELETED:
            progress = not old & _BH_IDLE
            try:
                bh._cb()  # type: ignore[misc]  # freed BHs (cb None) are never queued
            except BaseException as exc:
                self._report(exc)
        if old & _BH_RETIRED_AFTER_RUN:
            _retire_run_bh(self._oneshot_free, bh, old)
        return progress

    def _only_bh_pending(self, bh: BH) -> bool:
        """True when an iteration now would only run ``bh``: it is the one BH pending, no fd
        handler besides the context's notifier is registered and no timer is due.  The asyncio
        loop's run_forever then runs its next ready batch at once (an iteration without I/O)."""
        if self._closed or self._bh_slices or len(self._handlers) != 1:
            return False
        ops = self._bh_ops
        if ops:
            for op in ops:
                if op is not bh:
                    return False
        stack = self._bh_list
        if stack:
            for other in stack:
                if other is not bh:
                    return False
        # (run between two ready batches: the common case, no timer at all, without a loop)
        tls = self._timer_lists
        if tls[0].heap or tls[1].heap or tls[2].heap or tls[3].heap:
            for tl in tls:
                if tl.heap and tl.deadline() == 0:
                    return False
        return True

    def _bh_timeout(self) -> int:
        if self._bh_ops:
            self._bh_absorb()
        timeout = -1
        for bh in self._bh_list:
            flags = bh._flags
            if flags & _BH_SCHEDULED and not flags & _BH_DELETED:
                if not flags & _BH_IDLE:
                    return 0
                timeout = IDLE_BH_TIMEOUT_NS
        for group in self._bh_slices:
            for bh in group:
                flags = bh._flags
                if flags & _BH_SCHEDULED and not flags & _BH_DELETED:
                    if not flags & _BH_IDLE:
                        return 0
                    timeout = IDLE_BH_TIMEOUT_NS
        return timeout

    # ---- timers (docs/timers-and-clocks.md)

    def timer_new(self, clock: int, scale: int, callback: Callback, *,
                  attributes: int = 0) -> Timer:
        """``aio_timer_new_with_attrs``: a timer on ``clock`` counting in ``scale`` ns units."""
        self._check_open()
        c = _clock_of(clock)
        if _int64_arg(scale, "scale") <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if _int_arg(attributes, "attributes") & ~TIMER_ATTR_ALL or attributes < 0:
            raise ValueError(f"unknown timer attributes {attributes:#x}")
        _check_callback(callback, "callback", optional=False)
        try:
            self._last_timer_cb = weakref.ref(callback)
        except TypeError:
            self._last_timer_cb = _no_callback
        return Timer._new(self._timer_lists[c], scale, callback, attributes)

    def timer_new_ns(self, clock: int, callback: Callback, *, attributes: int = 0) -> Timer:
        """``aio_timer_new``: a timer on ``clock`` counting in nanoseconds."""
        # the common case inline: an int clock, no attributes, the callback checked last time
        if ((type(clock) is ClockType or type(clock) is int) and 0 <= clock < _NCLOCKS
                and attributes == 0 and callback is self._last_timer_cb() and callback is not None
                and not self._closed):
            return Timer._new(self._timer_lists[clock], SCALE_NS, callback, 0)
        return self.timer_new(clock, SCALE_NS, callback, attributes=attributes)

    def timer_new_us(self, clock: int, callback: Callback, *, attributes: int = 0) -> Timer:
        """``aio_timer_new``: a timer on ``clock`` counting in microseconds."""
        return self.timer_new(clock, SCALE_US, callback, attributes=attributes)

    def timer_new_ms(self, clock: int, callback: Callback, *, attributes: int = 0) -> Timer:
        """``aio_timer_new``: a timer on ``clock`` counting in milliseconds."""
        return self.timer_new(clock, SCALE_MS, callback, attributes=attributes)

    def _timers_deadline(self, for_wait: bool = True) -> int:
        deadline = -1
        for tl in self._timer_lists:
            if tl.heap:
                deadline = _soonest(deadline, tl.deadline(for_wait))
        return deadline

    def _run_timers(self) -> bool:
        progress = False
        for tl in self._timer_lists:
            if tl.heap:
                progress |= tl.run()
        return progress

    # ---- aio_poll (docs/aio-context.md, "One iteration")

    def compute_timeout(self) -> int:
        """``aio_compute_timeout``: ns until something is due; 0 now, -1 infinite."""
        self._check_open()
        return self._compute_timeout()

    def _compute_timeout(self) -> int:
        timeout = self._bh_timeout()
        if timeout == 0:
            return 0
        deadline = self._timers_deadline()
        if deadline == 0:
            return 0
        return _soonest(timeout, deadline)

    def poll(self, blocking: bool) -> bool:
        """``aio_poll``: one iteration; True if progress was made (docs/aio-context.md,
        "Progress").

        Order: [busy poll] -> [wait] -> accept notify -> BHs -> fd handlers -> timers.
        Must be called from one thread at a time (nested calls from callbacks are allowed).
        """
        if self._closed:
            raise RuntimeError("AioContext is closed")
        if blocking is True:
            b = True
        elif blocking is False:
            b = False
        elif isinstance(blocking, int):
            b = bool(blocking)
        else:
            raise TypeError(f"blocking must be a bool, not {type(blocking).__name__}")
        me = _get_ident()
        if self._walkers:
            if self._poll_thread != me:
                raise RuntimeError("AioContext.poll() called from two threads at once")
        else:
            self._poll_thread = me
        saved = self._errors
        self._errors = []
        try:
            progress = self._poll_iteration(b)
        finally:
            errors = self._errors
            self._errors = saved
            if not self._walkers:
                self._poll_thread = None
        if errors:
            _raise_errors(errors)
        return progress

    def _poll_iteration(self, blocking: bool) -> bool:
        progress = False
        counted = False
        block_ns = 0
        self._walkers += 1
        try:
            use_polling = self._poll_max_ns != 0
            start = _monotonic_ns() if use_polling else 0
            timeout = self._compute_timeout() if blocking else 0
            self._ready_gen += 1
            gen = self._ready_gen
            ready: list[_Handler] | None = None  # built only when something can be ready
            if self._poll_list:
                ready = []
                progress, timeout = self._try_poll_mode(timeout, ready, gen)
            if timeout != 0:
                self._notify_me += 2
                counted = True
                if self._notified:
                    timeout = 0
            try:
                if timeout != 0 or self._poll_disable_cnt > 0:
                    if ready is None:
                        ready = []
                    if timeout != 0 and self._poll_set_started(False, ready, gen):
                        progress = True
                        timeout = 0
                    try:
                        self._wait(ready, timeout, gen)
                    except BaseException as exc:  # e.g. an exception from a signal handler
                        self._report(exc)
            finally:
                if counted:
                    self._notify_me -= 2
            self._notified = False  # aio_notify_accept
            if use_polling:
                block_ns = _monotonic_ns() - start
            if (self._bh_ops or self._bh_list or self._bh_slices) and self._bh_poll():
                progress = True
            if ready is not None:
                for node in ready:
                    if node.ready_gen != gen:
                        continue  # moved to a nested poll's ready list, already dispatched
                    node.ready_gen = 0
                    if self._dispatch_node(node):
                        progress = True
                    if use_polling and node.in_poll_list and self._poll_max_ns:
                        self._adjust_polling_time(node, block_ns)
        finally:
            self._walkers -= 1
        tls = self._timer_lists  # timers run last, outside the walker section
        if (tls[0].heap or tls[1].heap or tls[2].heap or tls[3].heap) and self._run_timers():
            progress = True
        return progress

    # ---- coroutines (docs/coroutines.md)

    def co_schedule(self, co: Any) -> None:
        """``aio_co_schedule``: enter coroutine ``co`` from a BH of this context (FIFO);
        safe from any thread; RuntimeError if ``co`` is already scheduled."""
        self._check_open()
        _coroutine.co_schedule(self, co)

    # ---- thread pool and AIO_WAIT_WHILE (docs/thread-pool.md, docs/iothreads.md)

    def thread_pool(self) -> _threadpool.ThreadPool:
        """``aio_get_thread_pool``: this context's ThreadPool, made on first use and stopped
        by ``close()``; safe from any thread."""
        return _threadpool.pool_of(self)

    def wait_while(self, cond: Callable[[], Any]) -> bool:
        """``AIO_WAIT_WHILE``: poll until ``cond()`` is false (``qloop.aio_wait_while``);
        True if it polled."""
        return _aio_wait.aio_wait_while(self, cond)

    def g_source(self) -> Any:
        """``aio_get_g_source``: this context as a ``GLib.Source`` (PyGObject) to attach to a
        ``GLib.MainContext``; a running ``GLib.MainLoop`` then drives its BHs, timers and fd
        handlers.  The same source while it is not destroyed.  Needs PyGObject
        (``qloop[glib]``); raises ``qloop.GLibUnavailable`` (an ImportError) otherwise."""
        return gsource_get(self)

    # ---- the GSource interface (docs/glib.md): how an outer loop drives this context; the
    # bodies are in context_gsource.py

    def source_prepare(self) -> int:
        """GSource prepare: open the notify window (bit 0 of notify_me), leave poll mode and
        return the timeout in ns (-1 infinite, 0 when a BH or timer is already due)."""
        return gsource_prepare(self)

    def source_query(self) -> list[tuple[int, int]]:
        """The (fd, events) pairs the outer loop must poll for this context."""
        return gsource_query(self)

    def source_check(self, revents: list[int] | None = None) -> bool:
        """GSource check: close the notify window, accept the notify, record the revents the
        outer loop got for ``source_query()``'s fds (same order), and say if dispatch is due."""
        return gsource_check(self, revents)

    def source_dispatch(self) -> bool:
        """GSource dispatch (``aio_dispatch``): BHs, then ready fd handlers, then timers."""
        return gsource_dispatch(self)

    def run_timers(self) -> bool:
        """``timerlistgroup_run_timers``: run this context's due timers only (clock order)."""
        self._check_open()
        saved_errors = self._errors
        errors = self._errors = []
        try:
            progress = self._run_timers()
        finally:
            self._errors = saved_errors
        if errors:
            _raise_errors(errors)
        return progress

    def timers_deadline(self) -> int:
        """``timerlistgroup_deadline_ns``: ns until the next timer of this context (-1 none,
        0 due).  On the manual clock a VIRTUAL timer counts with its virtual distance (what
        ``clock_step`` would advance), although it never bounds a blocking wait."""
        self._check_open()
        return self._timers_deadline(False)

    def _set_timer_notify(self, callback: Callback | None) -> None:
        """Call ``callback()`` instead of notify() when a timer becomes the head of a list
        (the main loop's timer lists use qemu_notify_event: docs/main-loop.md)."""
        self._timer_notify_cb = callback

    def _timer_notify(self) -> None:
        cb = self._timer_notify_cb
        if cb is None:
            self._notify()
        else:
            cb()

    # ---- lifecycle

    def close(self) -> None:
        """Release the context's fds; drop pending BHs, timers and handlers without running
        them (user fds are not closed).  Later calls raise RuntimeError.  Idempotent."""
        if self._closed:
            return
        if self._walkers:
            raise RuntimeError("cannot close an AioContext from inside its own poll()")
        self._closed = True
        _contexts.discard(self)
        _threadpool.close_pool(self)
        src, self._g_source_obj = self._g_source_obj, None
        if src is not None and not src.is_destroyed():
            src.destroy()
        with self._list_lock:
            for node in self._handlers.values():
                node.deleted = True
            self._handlers.clear()
            self._poll_list = []
        for tl in self._timer_lists:
            tl.clear()
        self._bh_absorb()
        for group in itertools.chain((self._bh_list,), self._bh_slices):
            for bh in group:
                bh._cb = None
                bh._deleted = True
        self._bh_list = []
        self._bh_slices.clear()
        for bh in self._oneshot_free:
            bh._deleted = True
        self._oneshot_free = []
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        self._epoll_active = False
        with self._wake_lock:  # no notify() is mid-write on the fd
            self._notifier.close()
        self._pollobj = select.poll()

    def __enter__(self) -> Self:
        """Context manager: returns itself."""
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        """Context manager: ``close()``."""
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fdmon={self.fdmon} handlers={len(self._handlers)}"
        return f"<qloop._fallback.AioContext {state}>"

    def resource_counts(self) -> tuple[int, int, int]:
        """``(bhs, timers, fd_handlers)``: the BHs whose callback is still to run (scheduled,
        not cancelled or deleted; one-shot BHs included), the armed timers and the registered
        fd handlers (not counting the context's own notifier).  For leak checks in tests;
        reads only.  ``(0, 0, 0)`` once the context is closed."""
        if self._closed:
            return (0, 0, 0)
        flags: dict[BH, int] = {}
        for group in itertools.chain((self._bh_list,), self._bh_slices):
            for bh in group:
                flags[bh] = bh._flags
        for op in list(self._bh_ops):  # queued operations, applied as _bh_absorb would
            bh, new = (op, _BH_SCHEDULED) if type(op) is BH else op
            if bh._cb is None:
                continue
            old = flags.get(bh, bh._flags)
            flags[bh] = old & ~_BH_SCHEDULED if new == _BH_CANCEL else old | _BH_PENDING | new
        bhs = sum(1 for bh, f in flags.items()
                  if f & _BH_SCHEDULED and not f & _BH_DELETED and bh._cb is not None)
        timers = sum(len(tl.live) for tl in self._timer_lists)
        with self._list_lock:
            fd_handlers = sum(1 for node in self._handlers.values() if not node.is_notifier)
        return (bhs, timers, fd_handlers)
