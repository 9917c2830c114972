"""Signals for every loop in the process: one owner of ``signal.set_wakeup_fd`` and of the
Python-level handlers of the signals qloop handles, with subscribers.

Python keeps one wake-up fd per process and runs signal handlers only in the main thread,
between bytecodes.  Two loops that each installed their own would steal the wake-up fd and the
handlers from each other, so ``SIGNAL_HUB`` owns both, and loops subscribe to it:

* ``SIGNAL_HUB.subscribe(signum, deliver, wake_ctx)`` installs qloop's handler for ``signum``
  (remembering the previous one) and the wake-up fd (a socket pair) on first use.
* ``deliver(signum)`` is called from that handler: in the main thread, possibly in the middle
  of any other Python code.  It must only do signal-safe work: ``BH.schedule()``,
  ``AioContext.notify()``, ``loop.call_soon_threadsafe()``, appending to a deque.  What it
  raises is logged, never propagated into the interrupted code.
* ``wake_ctx`` is the AioContext whose wait must end when the signal arrives while the main
  thread sleeps (for instance when the kernel delivers it to another thread): the hub watches
  the wake-up fd's read end on that context while it has subscriptions there.
* ``Subscription.cancel()`` ends it; the last subscription of a signal restores the handler
  the signal had before, and the last of all restores the previous wake-up fd.

``SignalCallbacks`` is how the main loop uses the hub: one callback per signal, run from a BH
of the iohandler context (so only ``main_loop_wait`` runs it, never a nested poll).
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .._common import _check_callback, _int_arg, _raise_errors

__all__ = ["SIGNAL_HUB", "SignalCallbacks", "SignalHub", "Subscription", "check_signal",
           "signal_name"]

_logger = logging.getLogger("qloop")


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def check_signal(signum: Any) -> int:
    """``signum`` as an int that can be handled, else TypeError/ValueError naming it."""
    sig = _int_arg(signum, "signum")
    if not 1 <= sig < signal.NSIG:
        raise ValueError(f"invalid signal number {sig}")
    if sig in (signal.SIGKILL, signal.SIGSTOP):
        raise ValueError(f"signal {signal_name(sig)} cannot be handled")
    return sig


class Subscription:
    """One subscriber's interest in one signal (see ``SignalHub.subscribe``)."""

    __slots__ = ("active", "deliver", "signum", "wake_ctx")

    def __init__(self, signum: int, deliver: Callable[[int], Any], wake_ctx: Any) -> None:
        self.signum = signum
        self.deliver = deliver
        self.wake_ctx = wake_ctx
        self.active = True

    def cancel(self) -> None:
        """End the subscription (idempotent); main thread only."""
        SIGNAL_HUB.unsubscribe(self)


class SignalHub:
    """The process-wide owner of the wake-up fd and of qloop's signal handlers."""

    def __init__(self) -> None:
        self._subs: dict[int, list[Subscription]] = {}
        self._previous: dict[int, Any] = {}
        self._pair: tuple[socket.socket, socket.socket] | None = None
        self._wakeup_previous = -1
        self._watched: dict[int, tuple[Any, int]] = {}  # id(ctx) -> (ctx, subscriptions)

    def subscribe(self, signum: int, deliver: Callable[[int], Any],
                  wake_ctx: Any) -> Subscription:
        """Call ``deliver(signum)`` (signal-safe work only) whenever ``signum`` arrives, and
        wake ``wake_ctx``'s wait.  Main thread only (Python's rule for signal handlers)."""
        sig = check_signal(signum)
        _check_callback(deliver, "deliver", optional=False)
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signal handlers can only be installed from the main thread")
        first = sig not in self._subs
        if first:
            self._install_wakeup_fd()
            try:
                previous = signal.signal(sig, self._on_signal)
            except (OSError, ValueError, RuntimeError) as exc:
                self._maybe_remove_wakeup_fd()
                raise ValueError(f"signal {signal_name(sig)} cannot be handled: {exc}") from None
            self._previous[sig] = previous
            self._subs[sig] = []
        sub = Subscription(sig, deliver, wake_ctx)
        self._subs[sig] = self._subs[sig] + [sub]  # copy: the handler iterates the old list
        self._watch(wake_ctx)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if not sub.active:
            return
        sub.active = False
        subs = [s for s in self._subs.get(sub.signum, ()) if s is not sub]
        self._unwatch(sub.wake_ctx)
        if subs:
            self._subs[sub.signum] = subs
            return
        del self._subs[sub.signum]
        previous = self._previous.pop(sub.signum, signal.SIG_DFL)
        signal.signal(sub.signum, previous if previous is not None else signal.SIG_DFL)
        self._maybe_remove_wakeup_fd()

    def subscribed(self, signum: int) -> bool:
        """Whether qloop handles ``signum`` now (for any subscriber)."""
        return signum in self._subs

    def _on_signal(self, signum: int, frame: Any) -> None:
        for sub in self._subs.get(signum, ()):
            if sub.active:
                try:
                    sub.deliver(signum)
                except Exception:  # never into the interrupted code
                    _logger.exception("qloop: a signal subscriber failed for %s",
                                      signal_name(signum))

    # ---- the wake-up fd: a signal arriving while the main thread sleeps ends its wait

    def _install_wakeup_fd(self) -> None:
        if self._pair is not None:
            return
        r, w = socket.socketpair()
        r.setblocking(False)
        w.setblocking(False)
        self._wakeup_previous = signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
        self._pair = (r, w)
        for ctx, _ in self._watched.values():
            ctx.set_fd_handler(r, self._drain)

    def _maybe_remove_wakeup_fd(self) -> None:
        pair = self._pair
        if pair is None or self._subs:
            return
        signal.set_wakeup_fd(self._wakeup_previous)
        for ctx, _ in self._watched.values():
            if not ctx.closed:
                ctx.set_fd_handler(pair[0], None)
        self._watched.clear()
        pair[0].close()
        pair[1].close()
        self._pair = None

    def _watch(self, ctx: Any) -> None:
        key = id(ctx)
        entry = self._watched.get(key)
        if entry is not None:
            self._watched[key] = (ctx, entry[1] + 1)
            return
        self._watched[key] = (ctx, 1)
        if self._pair is not None:
            ctx.set_fd_handler(self._pair[0], self._drain)

    def _unwatch(self, ctx: Any) -> None:
        key = id(ctx)
        entry = self._watched.get(key)
        if entry is None:
            return
        if entry[1] > 1:
            self._watched[key] = (ctx, entry[1] - 1)
            return
        del self._watched[key]
        if self._pair is not None and not ctx.closed:
            ctx.set_fd_handler(self._pair[0], None)

    def _drain(self) -> None:
        # The bytes are signal numbers; Python itself calls the handlers, so just empty it.
        pair = self._pair
        if pair is None:
            return
        try:
            while pair[0].recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass


SIGNAL_HUB = SignalHub()


class SignalCallbacks:
    """The main loop's ``add_signal_handler``: one ``callback()`` per signal, run from a BH of
    the context ``get_ctx()`` returns (the iohandler context)."""

    def __init__(self, get_ctx: Callable[[], Any]) -> None:
        self._get_ctx = get_ctx
        self._callbacks: dict[int, Callable[[], Any]] = {}
        self._subs: dict[int, Subscription] = {}
        self._pending: deque[int] = deque()  # append/popleft: signal-safe
        self._bh: Any = None

    def __contains__(self, signum: object) -> bool:
        return signum in self._callbacks

    def add(self, signum: int, callback: Callable[[], Any]) -> None:
        sig = check_signal(signum)
        _check_callback(callback, "callback", optional=False)
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("add_signal_handler() must be called from the main thread")
        ctx = self._get_ctx()
        if self._bh is None:
            self._bh = ctx.bh_new(self._run, name="qloop-signals")
        if sig not in self._subs:
            self._subs[sig] = SIGNAL_HUB.subscribe(sig, self._deliver, ctx)
        self._callbacks[sig] = callback

    def remove(self, signum: int) -> bool:
        sig = check_signal(signum)
        if sig not in self._callbacks:
            return False
        del self._callbacks[sig]
        self._subs.pop(sig).cancel()
        return True

    def clear(self) -> None:
        for sig in list(self._callbacks):
            self.remove(sig)
        self._pending.clear()
        self._bh = None

    def _deliver(self, signum: int) -> None:
        self._pending.append(signum)
        bh = self._bh
        if bh is not None:
            bh.schedule()

    def _run(self) -> None:
        pending = self._pending
        errors: list[BaseException] = []
        while pending:
            cb = self._callbacks.get(pending.popleft())
            if cb is not None:
                try:
                    cb()
                except BaseException as exc:
                    errors.append(exc)
        if errors:
            _raise_errors(errors)
