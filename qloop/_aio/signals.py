"""qloop's asyncio event loop: ``add_signal_handler`` / ``remove_signal_handler``.

The loop does not touch ``signal.set_wakeup_fd`` or the Python-level handlers itself: it
subscribes to qloop's process-wide signal hub (``qloop/_main/signal_hub.py``), which also serves
``qloop.add_signal_handler`` and every other loop of the process, so they coexist.  The hub
calls ``deliver`` from the Python signal handler (main thread, between any two bytecodes); it
queues the callback into the loop with ``call_soon_threadsafe`` (signal-safe: the push runs
no Python code) and the hub's wake-up fd, watched on the loop's AioContext, ends a wait.

Checks and errors are asyncio's (``asyncio.unix_events``): TypeError for a non-int or a
coroutine callback, ValueError for an invalid number, RuntimeError for SIGKILL/SIGSTOP, a
closed loop or a call from another thread.  Shared by both implementations.
"""

from __future__ import annotations

import contextvars
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

from .._main.signal_hub import SIGNAL_HUB, Subscription
from . import helpers as _helpers
from .base import MixinBase

__all__ = ["SignalMixin"]

_UNCATCHABLE = frozenset(s for s in (getattr(signal, "SIGKILL", None),
                                     getattr(signal, "SIGSTOP", None)) if s is not None)
_NOT_MAIN_THREAD = "set_wakeup_fd only works in main thread of the main interpreter"


def _check_signal(sig: Any) -> int:
    """asyncio's check of a signal number (TypeError, then ValueError)."""
    if not isinstance(sig, int):
        raise TypeError(f"sig must be an int, not {sig!r}")
    if sig not in signal.valid_signals():
        raise ValueError(f"invalid signal number {sig}")
    return int(sig)


class _SignalEntry:
    """One signal handled by one loop: what runs, and the hub subscription delivering it."""

    __slots__ = ("args", "callback", "context", "sub")

    def __init__(self, callback: Callable[..., Any], args: tuple[Any, ...],
                 context: Any) -> None:
        self.callback = callback
        self.args = args
        self.context = context
        self.sub: Subscription | None = None


class SignalMixin(MixinBase):
    """Signal handlers of qloop's EventLoop (plain Python; nothing here is a hot path)."""

    _signal_entries: dict[int, _SignalEntry] | None = None

    def add_signal_handler(self, sig: int, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` in the loop whenever signal ``sig`` arrives (replacing an
        earlier handler of this loop for ``sig``).  Main thread only."""
        _helpers._check_callback_slow(callback, "add_signal_handler")
        sig = _check_signal(sig)
        self._check_closed_py()
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(_NOT_MAIN_THREAD)
        if sig in _UNCATCHABLE:
            raise RuntimeError(f"sig {sig:d} cannot be caught")
        entries = self._signal_entries
        if entries is None:
            entries = self._signal_entries = {}
        entry = _SignalEntry(callback, args, contextvars.copy_context())
        old = entries.get(sig)
        if old is not None:
            entry.sub = old.sub  # already subscribed: only the callback changes
            entries[sig] = entry
            return
        try:
            entry.sub = SIGNAL_HUB.subscribe(sig, self._deliver_signal,
                                             self.aio_context)
        except ValueError as exc:
            raise RuntimeError(f"sig {sig:d} cannot be caught: {exc}") from None
        entries[sig] = entry
        try:
            signal.siginterrupt(sig, False)  # SA_RESTART, as asyncio asks: fewer EINTRs
        except (OSError, ValueError):
            pass

    def remove_signal_handler(self, sig: int) -> bool:
        """Stop handling ``sig``; True if this loop handled it.  The signal gets back the
        handler it had before qloop took it (for SIGINT normally ``default_int_handler``)."""
        sig = _check_signal(sig)
        entries = self._signal_entries
        if not entries or sig not in entries:
            return False
        if threading.current_thread() is not threading.main_thread():
            raise ValueError("signal only works in main thread of the main interpreter")
        entry = entries.pop(sig)
        if entry.sub is not None:
            entry.sub.cancel()
        return True

    def _deliver_signal(self, signum: int) -> None:
        # runs inside the Python signal handler: signal-safe work only
        entries = self._signal_entries
        entry = entries.get(signum) if entries else None
        if entry is None or self.is_closed():
            return
        self.call_soon_threadsafe(entry.callback, *entry.args,
                                  context=entry.context)

    def _close_signal_handlers(self) -> None:
        """close(): remove this loop's handlers (or, where Python cannot, stop delivering
        them and say so)."""
        entries = self._signal_entries
        if not entries:
            return
        if sys.is_finalizing() or threading.current_thread() is not threading.main_thread():
            warnings.warn(f"Closing the loop {self!r} outside the main thread or at "
                          f"interpreter shutdown: its signal handlers stay installed but "
                          f"deliver nothing", ResourceWarning, source=self, stacklevel=2)
            for entry in entries.values():
                if entry.sub is not None:
                    entry.sub.active = False
            entries.clear()
            return
        for sig in list(entries):
            self.remove_signal_handler(sig)
