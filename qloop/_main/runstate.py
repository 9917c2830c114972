"""The run-state machine (QEMU's ``runstate.c``): run states, shutdown causes, the allowed
transitions, vm change-state handlers, the thread- and signal-safe requests and
``main_loop_should_exit``.  Shared by both implementations (none of it is a hot path)."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from enum import IntEnum
from typing import Any

from .._common import NotifierList, _check_callback, _int_arg
from .._constants import ClockType

__all__ = [
    "RUNSTATE_EXPORTS",
    "MainLoopPollState",
    "RunState",
    "RunStateMachine",
    "ShutdownCause",
    "WakeupReason",
]


class RunState(IntEnum):
    DEBUG = 0
    INMIGRATE = 1
    INTERNAL_ERROR = 2
    IO_ERROR = 3
    PAUSED = 4
    POSTMIGRATE = 5
    PRELAUNCH = 6
    FINISH_MIGRATE = 7
    RESTORE_VM = 8
    RUNNING = 9
    SAVE_VM = 10
    SHUTDOWN = 11
    SUSPENDED = 12
    WATCHDOG = 13
    GUEST_PANICKED = 14
    COLO = 15


class ShutdownCause(IntEnum):
    NONE = 0
    HOST_ERROR = 1
    HOST_QMP_QUIT = 2
    HOST_QMP_SYSTEM_RESET = 3
    HOST_SIGNAL = 4
    HOST_UI = 5
    GUEST_SHUTDOWN = 6
    GUEST_RESET = 7
    GUEST_PANIC = 8
    SUBSYSTEM_RESET = 9
    SNAPSHOT_LOAD = 10


class WakeupReason(IntEnum):
    NONE = 0
    RTC = 1
    PMTIMER = 2
    OTHER = 3


class MainLoopPollState(IntEnum):
    FILL = 0
    ERR = 1
    OK = 2


_S = RunState
_PAIRS: tuple[tuple[RunState, RunState], ...] = (
    (_S.PRELAUNCH, _S.INMIGRATE),
    (_S.DEBUG, _S.RUNNING),
    (_S.DEBUG, _S.FINISH_MIGRATE),
    (_S.DEBUG, _S.PRELAUNCH),
    (_S.DEBUG, _S.SUSPENDED),
    (_S.INMIGRATE, _S.INTERNAL_ERROR),
    (_S.INMIGRATE, _S.IO_ERROR),
    (_S.INMIGRATE, _S.PAUSED),
    (_S.INMIGRATE, _S.RUNNING),
    (_S.INMIGRATE, _S.SHUTDOWN),
    (_S.INMIGRATE, _S.SUSPENDED),
    (_S.INMIGRATE, _S.WATCHDOG),
    (_S.INMIGRATE, _S.GUEST_PANICKED),
    (_S.INMIGRATE, _S.FINISH_MIGRATE),
    (_S.INMIGRATE, _S.PRELAUNCH),
    (_S.INMIGRATE, _S.POSTMIGRATE),
    (_S.INMIGRATE, _S.COLO),
    (_S.INTERNAL_ERROR, _S.PAUSED),
    (_S.INTERNAL_ERROR, _S.FINISH_MIGRATE),
    (_S.INTERNAL_ERROR, _S.PRELAUNCH),
    (_S.IO_ERROR, _S.RUNNING),
    (_S.IO_ERROR, _S.FINISH_MIGRATE),
    (_S.IO_ERROR, _S.PRELAUNCH),
    (_S.PAUSED, _S.RUNNING),
    (_S.PAUSED, _S.FINISH_MIGRATE),
    (_S.PAUSED, _S.POSTMIGRATE),
    (_S.PAUSED, _S.PRELAUNCH),
    (_S.PAUSED, _S.COLO),
    (_S.PAUSED, _S.SUSPENDED),
    (_S.POSTMIGRATE, _S.RUNNING),
    (_S.POSTMIGRATE, _S.FINISH_MIGRATE),
    (_S.POSTMIGRATE, _S.PRELAUNCH),
    (_S.PRELAUNCH, _S.RUNNING),
    (_S.PRELAUNCH, _S.FINISH_MIGRATE),
    (_S.PRELAUNCH, _S.SUSPENDED),
    (_S.PRELAUNCH, _S.PAUSED),
    (_S.FINISH_MIGRATE, _S.RUNNING),
    (_S.FINISH_MIGRATE, _S.PAUSED),
    (_S.FINISH_MIGRATE, _S.POSTMIGRATE),
    (_S.FINISH_MIGRATE, _S.PRELAUNCH),
    (_S.FINISH_MIGRATE, _S.COLO),
    (_S.FINISH_MIGRATE, _S.INTERNAL_ERROR),
    (_S.FINISH_MIGRATE, _S.IO_ERROR),
    (_S.FINISH_MIGRATE, _S.SHUTDOWN),
    (_S.FINISH_MIGRATE, _S.SUSPENDED),
    (_S.FINISH_MIGRATE, _S.WATCHDOG),
    (_S.FINISH_MIGRATE, _S.GUEST_PANICKED),
    (_S.RESTORE_VM, _S.RUNNING),
    (_S.RESTORE_VM, _S.PRELAUNCH),
    (_S.RESTORE_VM, _S.SUSPENDED),
    (_S.COLO, _S.RUNNING),
    (_S.COLO, _S.PRELAUNCH),
    (_S.COLO, _S.SHUTDOWN),
    (_S.RUNNING, _S.DEBUG),
    (_S.RUNNING, _S.INTERNAL_ERROR),
    (_S.RUNNING, _S.IO_ERROR),
    (_S.RUNNING, _S.PAUSED),
    (_S.RUNNING, _S.FINISH_MIGRATE),
    (_S.RUNNING, _S.RESTORE_VM),
    (_S.RUNNING, _S.SAVE_VM),
    (_S.RUNNING, _S.SHUTDOWN),
    (_S.RUNNING, _S.WATCHDOG),
    (_S.RUNNING, _S.GUEST_PANICKED),
    (_S.RUNNING, _S.COLO),
    (_S.RUNNING, _S.SUSPENDED),
    (_S.SAVE_VM, _S.RUNNING),
    (_S.SAVE_VM, _S.SUSPENDED),
    (_S.SHUTDOWN, _S.PAUSED),
    (_S.SHUTDOWN, _S.FINISH_MIGRATE),
    (_S.SHUTDOWN, _S.PRELAUNCH),
    (_S.SHUTDOWN, _S.COLO),
    (_S.SUSPENDED, _S.RUNNING),
    (_S.SUSPENDED, _S.FINISH_MIGRATE),
    (_S.SUSPENDED, _S.PRELAUNCH),
    (_S.SUSPENDED, _S.COLO),
    (_S.SUSPENDED, _S.PAUSED),
    (_S.SUSPENDED, _S.SAVE_VM),
    (_S.SUSPENDED, _S.RESTORE_VM),
    (_S.SUSPENDED, _S.SHUTDOWN),
    (_S.WATCHDOG, _S.RUNNING),
    (_S.WATCHDOG, _S.FINISH_MIGRATE),
    (_S.WATCHDOG, _S.PRELAUNCH),
    (_S.WATCHDOG, _S.COLO),
    (_S.GUEST_PANICKED, _S.RUNNING),
    (_S.GUEST_PANICKED, _S.FINISH_MIGRATE),
    (_S.GUEST_PANICKED, _S.PRELAUNCH),
    (_S.GUEST_PANICKED, _S.SHUTDOWN),
)

TRANSITIONS: frozenset[tuple[RunState, RunState]] = frozenset(_PAIRS)


# Names each implementation module re-exports from its RunStateMachine.
RUNSTATE_EXPORTS = (
    "runstate_get", "runstate_set", "runstate_is_running", "runstate_check",
    "vm_start", "vm_stop", "add_vm_change_state_handler", "remove_vm_change_state_handler",
    "system_shutdown_request", "system_reset_request", "system_powerdown_request",
    "system_suspend_request", "system_wakeup_request", "system_wakeup_enable",
    "debug_request", "vm_stop_request", "system_killed",
    "register_reset", "unregister_reset", "set_shutdown_action", "set_reboot_action",
    "shutdown_notifiers", "powerdown_notifiers", "suspend_notifiers", "wakeup_notifiers",
    "main_loop_should_exit",
)


class RunStateMachine:
    """One implementation's run state and pending requests.

    ``notify_event()`` wakes the main loop after a request; ``clock_enable(clock, on)`` is the
    implementation's (vm_start/vm_stop run and freeze the VIRTUAL clock).
    """

    def __init__(self, notify_event: Callable[[], Any],
                 clock_enable: Callable[[int, bool], Any]) -> None:
        self._notify_event = notify_event
        self._clock_enable = clock_enable
        self.shutdown_notifiers = NotifierList()
        self.powerdown_notifiers = NotifierList()
        self.suspend_notifiers = NotifierList()
        self.wakeup_notifiers = NotifierList()
        self.reset()

    def reset(self) -> None:
        """Back to PRELAUNCH with no handler, request or notifier (for tests)."""
        for lst in (self.shutdown_notifiers, self.powerdown_notifiers,
                    self.suspend_notifiers, self.wakeup_notifiers):
            lst._entries.clear()
        self._runstate = RunState.PRELAUNCH
        self._vm_handlers: list[tuple[int, int, Callable[[bool, RunState], Any]]] = []
        self._vm_handler_seq = 0
        self._reset_handlers: list[Callable[[], Any]] = []
        self._shutdown_requested = ShutdownCause.NONE
        self._shutdown_signal = 0
        self._shutdown_forced = False
        self._exit_code: int | None = None
        self._reset_requested = ShutdownCause.NONE
        self._suspend_requested = False
        self._wakeup_reason = WakeupReason.NONE
        self._wakeup_mask = {WakeupReason.RTC, WakeupReason.PMTIMER, WakeupReason.OTHER}
        self._powerdown_requested = False
        self._debug_requested = False
        self._vmstop_requests: deque[RunState] = deque()  # append/popleft: signal-safe
        self._shutdown_action = "poweroff"
        self._reboot_action = "reset"
        self.status = 0


    def runstate_get(self) -> RunState:
        """The current run state."""
        return self._runstate

    def runstate_check(self, state: RunState) -> bool:
        """Whether the run state is ``state``."""
        return self._runstate == RunState(state)

    def runstate_is_running(self) -> bool:
        """Whether the run state is RUNNING."""
        return self._runstate == RunState.RUNNING

    def runstate_set(self, state: RunState) -> None:
        """Move to ``state``; ValueError for a transition QEMU does not allow.  Setting the
        current state again is a no-op."""
        new = _runstate_of(state)
        cur = self._runstate
        if new == cur:
            return
        if (cur, new) not in TRANSITIONS:
            raise ValueError(f"invalid runstate transition: '{cur.name}' -> '{new.name}'")
        self._runstate = new

    def add_vm_change_state_handler(self, callback: Callable[[bool, RunState], Any], *,
                                    priority: int = 0) -> Any:
        """``callback(running, state)`` on vm_start/vm_stop.  Starting calls handlers by
        ascending priority (registration order within one priority), stopping in reverse.
        Returns a handle for ``remove_vm_change_state_handler``."""
        _check_callback(callback, "callback", optional=False)
        self._vm_handler_seq += 1
        entry = (_int_arg(priority, "priority"), self._vm_handler_seq, callback)
        self._vm_handlers.append(entry)
        self._vm_handlers.sort(key=lambda e: (e[0], e[1]))
        return entry

    def remove_vm_change_state_handler(self, handle: Any) -> None:
        """Remove a handler by the handle ``add_vm_change_state_handler`` returned."""
        try:
            self._vm_handlers.remove(handle)
        except ValueError:
            raise ValueError(f"{handle!r} is not a registered vm change state handler") from None

    def _vm_state_notify(self, running: bool, state: RunState) -> None:
        handlers = list(self._vm_handlers)
        if not running:
            handlers.reverse()
        for _, _, cb in handlers:
            cb(running, state)

    def vm_start(self) -> None:
        """Enable the VIRTUAL clock, set RUNNING and notify change-state handlers (no-op if
        already running)."""
        if self._runstate == RunState.RUNNING:
            return
        self.runstate_set(RunState.RUNNING)
        self._clock_enable(ClockType.VIRTUAL, True)
        self._vm_state_notify(True, RunState.RUNNING)

    def vm_stop(self, state: RunState = RunState.PAUSED) -> None:
        """If running: freeze the VIRTUAL clock, move to ``state`` and notify handlers."""
        new = _runstate_of(state)
        if self._runstate != RunState.RUNNING:
            return
        self.runstate_set(new)  # first: a forbidden transition leaves everything as it was
        self._clock_enable(ClockType.VIRTUAL, False)
        self._vm_state_notify(False, new)

    def register_reset(self, callback: Callable[[], Any]) -> None:
        """``qemu_register_reset``: called on every system reset, in registration order."""
        self._reset_handlers.append(_check_callback(callback, "callback", optional=False))

    def unregister_reset(self, callback: Callable[[], Any]) -> None:
        """Remove a ``register_reset`` callback; ValueError if it is not registered."""
        try:
            self._reset_handlers.remove(callback)
        except ValueError:
            raise ValueError(f"{callback!r} is not a registered reset handler") from None

    def set_shutdown_action(self, action: str) -> None:
        """``-action shutdown=``: "poweroff" (default: main_loop() returns) or "pause"."""
        if action not in ("poweroff", "pause"):
            raise ValueError(f"unknown shutdown action {action!r} (poweroff or pause)")
        self._shutdown_action = action

    def set_reboot_action(self, action: str) -> None:
        """``-action reboot=``: "reset" (default) or "shutdown" (guest resets shut down)."""
        if action not in ("reset", "shutdown"):
            raise ValueError(f"unknown reboot action {action!r} (reset or shutdown)")
        self._reboot_action = action

    # ---- requests: record a flag and wake the loop; thread- and signal-safe

    def system_shutdown_request(self, cause: ShutdownCause, *,
                                exit_code: int | None = None) -> None:
        """Request a shutdown; ``main_loop()`` then returns ``exit_code`` (default 0).
        Thread- and signal-safe, as every request."""
        c = _cause_of(cause)
        if exit_code is not None:
            self._exit_code = _int_arg(exit_code, "exit_code")
        self._shutdown_requested = c
        self._notify_event()

    def system_killed(self, signum: int, pid: int = 0) -> None:
        """``qemu_system_killed``: a termination signal; shuts down even with action pause."""
        self._shutdown_signal = _int_arg(signum, "signum")
        self._shutdown_forced = True
        self._shutdown_requested = ShutdownCause.HOST_SIGNAL
        self._notify_event()

    def system_reset_request(self, cause: ShutdownCause) -> None:
        """Request a system reset (a shutdown with ``set_reboot_action("shutdown")``)."""
        c = _cause_of(cause)
        if self._reboot_action == "shutdown" and c != ShutdownCause.SUBSYSTEM_RESET:
            self._shutdown_requested = c
        else:
            self._reset_requested = c
        self._notify_event()

    def system_suspend_request(self) -> None:
        """Request a suspend (ignored while SUSPENDED)."""
        if self._runstate == RunState.SUSPENDED:
            return
        self._suspend_requested = True
        self._notify_event()

    def system_wakeup_enable(self, reason: WakeupReason, enabled: bool) -> None:
        """Allow or ignore ``system_wakeup_request(reason)``."""
        r = WakeupReason(_int_arg(reason, "reason"))
        if enabled:
            self._wakeup_mask.add(r)
        else:
            self._wakeup_mask.discard(r)

    def system_wakeup_request(self, reason: WakeupReason) -> None:
        """Wake a SUSPENDED machine now (RUNNING); RuntimeError if not suspended; ignored if
        ``reason`` was disabled with ``system_wakeup_enable``."""
        r = WakeupReason(_int_arg(reason, "reason"))
        if self._runstate != RunState.SUSPENDED:
            raise RuntimeError("Unable to wake up: guest is not in suspended state")
        if r not in self._wakeup_mask:
            return
        self.runstate_set(RunState.RUNNING)
        self._wakeup_reason = r
        self._notify_event()

    def system_powerdown_request(self) -> None:
        """Request a powerdown (the ``powerdown_notifiers`` are notified)."""
        self._powerdown_requested = True
        self._notify_event()

    def debug_request(self) -> None:
        """Request a stop in the DEBUG state."""
        self._debug_requested = True
        self._notify_event()

    def vm_stop_request(self, state: RunState) -> None:
        """Request a ``vm_stop(state)`` from the main loop (the last request wins)."""
        s = _runstate_of(state)
        self._vmstop_requests.append(s)
        self._notify_event()

    # ---- the requests, handled in QEMU master's order

    def main_loop_should_exit(self) -> bool:
        """Handle pending requests in QEMU master's order; True when the loop must end
        (only a shutdown does that); the exit status is what ``main_loop()`` returns."""
        if self._debug_requested:
            self._debug_requested = False
            self.vm_stop(RunState.DEBUG)
        if self._suspend_requested:
            self._suspend_requested = False
            self.suspend_notifiers.notify(None)
            self.runstate_set(RunState.SUSPENDED)
        cause = self._shutdown_requested
        if cause != ShutdownCause.NONE:
            self._shutdown_requested = ShutdownCause.NONE
            if self._shutdown_signal:
                print(f"qloop: terminating on signal {self._shutdown_signal}", file=sys.stderr)
                self._shutdown_signal = 0
            self.shutdown_notifiers.notify(cause)
            forced = self._shutdown_forced
            self._shutdown_forced = False
            if self._shutdown_action == "pause" and not forced:
                self.vm_stop(RunState.SHUTDOWN)
            else:
                self.status = self._exit_code if self._exit_code is not None else 0
                return True
        cause = self._reset_requested
        if cause != ShutdownCause.NONE:
            self._reset_requested = ShutdownCause.NONE
            for handler in list(self._reset_handlers):
                handler()
            if self._runstate not in (RunState.RUNNING, RunState.INMIGRATE,
                                      RunState.FINISH_MIGRATE):
                self.runstate_set(RunState.PRELAUNCH)
        reason = self._wakeup_reason
        if reason != WakeupReason.NONE:
            self.wakeup_notifiers.notify(reason)
            self._wakeup_reason = WakeupReason.NONE
        if self._powerdown_requested:
            self._powerdown_requested = False
            self.powerdown_notifiers.notify(None)
        state: RunState | None = None
        requests = self._vmstop_requests
        while requests:  # coalesced: the last request wins
            state = requests.popleft()
        if state is not None:
            self.vm_stop(state)
        return False


def _runstate_of(state: Any) -> RunState:
    try:
        return RunState(_int_arg(state, "state"))
    except ValueError:
        raise ValueError(f"unknown run state {state!r}") from None


def _cause_of(cause: Any) -> ShutdownCause:
    try:
        return ShutdownCause(_int_arg(cause, "cause"))
    except ValueError:
        raise ValueError(f"unknown shutdown cause {cause!r}") from None
