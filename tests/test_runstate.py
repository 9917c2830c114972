"""Run state, vm_start/vm_stop and the system requests (docs/run-states.md; docs/notifiers.md
for the notifier lists).

Requests only record a flag and wake the loop; ``main_loop_should_exit()`` handles them in
QEMU master's order (docs/run-states.md).  Both implementations run every test.
"""

from __future__ import annotations

import signal
import time

import pytest

from _mainloop_support import PROMPT_S, join, start_thread


def _virtual(mod):
    return mod.clock_get_ns(mod.ClockType.VIRTUAL)


def _realtime(mod):
    return mod.clock_get_ns(mod.ClockType.REALTIME)


def _let_realtime_pass(mod, ns):
    """Busy-wait (bounded) until REALTIME has advanced by ``ns``."""
    start = _realtime(mod)
    deadline = time.monotonic() + 2.0
    while _realtime(mod) - start < ns:
        assert time.monotonic() < deadline, "REALTIME did not advance"


# --------------------------------------------------------------------------------------------
# run state and vm_start / vm_stop


def test_initial_state(main_loop):
    mod = main_loop
    assert mod.runstate_get() == mod.RunState.PRELAUNCH
    assert mod.runstate_is_running() is False
    assert mod.runstate_check(mod.RunState.PRELAUNCH) is True
    assert mod.clock_is_enabled(mod.ClockType.VIRTUAL) is False
    assert mod.main_loop_should_exit() is False  # nothing pending


def test_vm_start_and_stop_drive_virtual_clock(main_loop):
    mod = main_loop
    V = mod.ClockType.VIRTUAL
    mod.vm_start()
    assert mod.runstate_get() == mod.RunState.RUNNING
    assert mod.runstate_is_running() is True
    assert mod.clock_is_enabled(V) is True
    v0 = _virtual(mod)
    deadline = time.monotonic() + 1.0
    while _virtual(mod) == v0:  # advances while running
        assert time.monotonic() < deadline, "VIRTUAL does not advance while running"

    mod.vm_stop()
    assert mod.runstate_get() == mod.RunState.PAUSED
    assert mod.clock_is_enabled(V) is False
    frozen = _virtual(mod)
    _let_realtime_pass(mod, 20 * 10**6)
    assert _virtual(mod) == frozen  # frozen while stopped

    r0 = _realtime(mod)
    mod.vm_start()
    v = _virtual(mod)
    r1 = _realtime(mod)
    # resumes from where it stopped: it does not jump by the 20 ms it was stopped
    assert frozen <= v <= frozen + (r1 - r0) + 10**6


def test_change_state_handlers_priority_order(main_loop):
    mod = main_loop
    log = []
    mod.add_vm_change_state_handler(lambda r, s: log.append(("p10", r, s)), priority=10)
    mod.add_vm_change_state_handler(lambda r, s: log.append(("p0-a", r, s)))
    mod.add_vm_change_state_handler(lambda r, s: log.append(("p-5", r, s)), priority=-5)
    mod.add_vm_change_state_handler(lambda r, s: log.append(("p0-b", r, s)))
    R = mod.RunState
    mod.vm_start()
    assert log == [("p-5", True, R.RUNNING), ("p0-a", True, R.RUNNING),
                   ("p0-b", True, R.RUNNING), ("p10", True, R.RUNNING)]
    log.clear()
    mod.vm_stop(R.PAUSED)
    assert log == [("p10", False, R.PAUSED), ("p0-b", False, R.PAUSED),
                   ("p0-a", False, R.PAUSED), ("p-5", False, R.PAUSED)]


def test_vm_start_stop_are_noops_when_already_there(main_loop):
    mod = main_loop
    log = []
    mod.add_vm_change_state_handler(lambda r, s: log.append((r, s)))
    mod.vm_stop()  # not running: nothing
    assert log == [] and mod.runstate_get() == mod.RunState.PRELAUNCH
    mod.vm_start()
    mod.vm_start()  # already running: nothing
    assert log == [(True, mod.RunState.RUNNING)]


def test_remove_change_state_handler(main_loop):
    mod = main_loop
    log = []
    h = mod.add_vm_change_state_handler(lambda r, s: log.append(r))
    mod.remove_vm_change_state_handler(h)
    mod.vm_start()
    assert log == []
    with pytest.raises(ValueError):
        mod.remove_vm_change_state_handler(h)


def test_runstate_set_valid_and_invalid_transitions(main_loop):
    mod = main_loop
    R = mod.RunState
    with pytest.raises(ValueError):
        mod.runstate_set(R.SHUTDOWN)  # PRELAUNCH -> SHUTDOWN is not allowed
    assert mod.runstate_get() == R.PRELAUNCH
    mod.runstate_set(R.PRELAUNCH)  # same state: no-op
    mod.runstate_set(R.INMIGRATE)
    assert mod.runstate_get() == R.INMIGRATE
    mod.runstate_set(R.RUNNING)
    mod.runstate_set(R.GUEST_PANICKED)
    with pytest.raises(ValueError):
        mod.runstate_set(R.SUSPENDED)  # GUEST_PANICKED -> SUSPENDED is not allowed
    assert mod.runstate_get() == R.GUEST_PANICKED
    # and vm_start still works from there
    mod.vm_start()
    assert mod.runstate_get() == R.RUNNING


def test_vm_start_from_state_without_running_transition_raises(main_loop):
    mod = main_loop
    R = mod.RunState
    mod.vm_start()
    mod.vm_stop(R.SHUTDOWN)
    log = []
    mod.add_vm_change_state_handler(lambda r, s: log.append((r, s)))
    with pytest.raises(ValueError):
        mod.vm_start()  # SHUTDOWN -> RUNNING is not allowed
    assert mod.runstate_get() == R.SHUTDOWN
    assert mod.clock_is_enabled(mod.ClockType.VIRTUAL) is False
    assert log == []


def test_vm_stop_invalid_target_leaves_vm_running(main_loop):
    """A forbidden vm_stop() target raises and leaves the VM exactly as it was (running,
    VIRTUAL enabled, no handler called)."""
    mod = main_loop
    R = mod.RunState
    mod.vm_start()
    log = []
    mod.add_vm_change_state_handler(lambda r, s: log.append((r, s)))
    with pytest.raises(ValueError):
        mod.vm_stop(R.PRELAUNCH)  # RUNNING -> PRELAUNCH is not allowed
    assert log == []
    assert mod.runstate_get() == R.RUNNING
    assert mod.clock_is_enabled(mod.ClockType.VIRTUAL) is True


@pytest.mark.parametrize("call", [
    lambda m: m.runstate_set(999),
    lambda m: m.runstate_set(-1),
    lambda m: m.vm_stop(999),
    lambda m: m.vm_stop_request(999),
    lambda m: m.runstate_check(999),
    lambda m: m.system_shutdown_request(999),
    lambda m: m.system_reset_request(-3),
    lambda m: m.system_wakeup_request(999),
    lambda m: m.system_wakeup_enable(999, True),
    lambda m: m.set_shutdown_action("explode"),
    lambda m: m.set_reboot_action("explode"),
    lambda m: m.unregister_reset(lambda: None),
], ids=["runstate_set-999", "runstate_set-neg", "vm_stop-999", "vm_stop_request-999",
        "runstate_check-999", "shutdown-cause-999", "reset-cause-neg", "wakeup-reason-999",
        "wakeup_enable-999", "shutdown-action", "reboot-action", "unregister-unknown"])
def test_bad_values_raise_value_error(main_loop, call):
    mod = main_loop
    with pytest.raises(ValueError):
        call(mod)
    # nothing was recorded and the loop keeps running
    assert mod.runstate_get() == mod.RunState.PRELAUNCH
    assert mod.main_loop_should_exit() is False
    ran = []
    mod.bh_new(lambda: ran.append(True)).schedule()
    mod.main_loop_wait(True)
    assert ran == [True]


@pytest.mark.parametrize("call", [
    lambda m: m.runstate_set("RUNNING"),
    lambda m: m.vm_stop(None),
    lambda m: m.system_shutdown_request("guest"),
    lambda m: m.system_reset_request(1.5),
    lambda m: m.system_wakeup_request("rtc"),
    lambda m: m.add_vm_change_state_handler(42),
    lambda m: m.add_vm_change_state_handler(None),
    lambda m: m.register_reset("reset"),
    lambda m: m.shutdown_notifiers.add(42),
    lambda m: m.system_shutdown_request(m.ShutdownCause.HOST_UI, exit_code="1"),
], ids=["runstate_set-str", "vm_stop-None", "shutdown-str", "reset-float", "wakeup-str",
        "vmhandler-int", "vmhandler-None", "register_reset-str", "notifier-int",
        "exit_code-str"])
def test_bad_types_raise_type_error(main_loop, call):
    mod = main_loop
    with pytest.raises(TypeError):
        call(mod)
    assert mod.runstate_get() == mod.RunState.PRELAUNCH
    assert mod.main_loop_should_exit() is False


# --------------------------------------------------------------------------------------------
# shutdown


def test_shutdown_request_notifies_and_exits(main_loop):
    mod = main_loop
    causes = []
    mod.shutdown_notifiers.add(causes.append)
    mod.system_shutdown_request(mod.ShutdownCause.GUEST_SHUTDOWN)
    assert causes == []  # only a flag until the loop looks
    assert mod.main_loop_should_exit() is True
    assert causes == [mod.ShutdownCause.GUEST_SHUTDOWN]
    assert mod.main_loop_should_exit() is False  # consumed
    assert causes == [mod.ShutdownCause.GUEST_SHUTDOWN]


def test_shutdown_notifiers_most_recent_first(main_loop):
    mod = main_loop
    log = []
    mod.shutdown_notifiers.add(lambda c: log.append("first"))
    mod.shutdown_notifiers.add(lambda c: log.append("second"))
    mod.system_shutdown_request(mod.ShutdownCause.HOST_QMP_QUIT)
    assert mod.main_loop_should_exit() is True
    assert log == ["second", "first"]


def test_main_loop_returns_exit_status(main_loop, guard):
    mod = main_loop
    causes = []
    mod.shutdown_notifiers.add(causes.append)
    mod.bh_new(lambda: mod.system_shutdown_request(mod.ShutdownCause.HOST_QMP_QUIT)).schedule()
    before = signal.getsignal(signal.SIGTERM)
    t0 = time.monotonic()
    assert mod.main_loop() == 0
    assert time.monotonic() - t0 < PROMPT_S
    assert causes == [mod.ShutdownCause.HOST_QMP_QUIT]
    assert signal.getsignal(signal.SIGTERM) == before  # its signal handlers are removed


def test_nested_main_loop_is_refused_and_outer_loop_still_ends(main_loop, guard):
    """A main_loop() called from a callback while main_loop() runs raises RuntimeError (it
    would consume the shutdown request); the outer loop then ends on its request.  A nested
    main_loop_wait() stays allowed."""
    mod = main_loop
    seen = []

    def cb():
        try:
            mod.main_loop()
        except RuntimeError as exc:
            seen.append(str(exc))
        seen.append(mod.main_loop_wait(True) >= 0)  # nesting one iteration is fine
        mod.system_shutdown_request(mod.ShutdownCause.HOST_QMP_QUIT, exit_code=3)

    mod.bh_new(cb).schedule()
    t0 = time.monotonic()
    assert mod.main_loop() == 3
    assert time.monotonic() - t0 < PROMPT_S
    assert seen == ["main_loop() is already running", True]
    # and it can run again afterwards
    mod.bh_new(lambda: mod.system_shutdown_request(mod.ShutdownCause.HOST_QMP_QUIT,
                                                   exit_code=4)).schedule()
    assert mod.main_loop() == 4


def test_main_loop_returns_explicit_exit_code(main_loop, guard):
    mod = main_loop
    mod.bh_new(lambda: mod.system_shutdown_request(
        mod.ShutdownCause.GUEST_SHUTDOWN, exit_code=7)).schedule()
    assert mod.main_loop() == 7


def test_main_loop_runs_until_shutdown(main_loop, guard):
    """Requests other than shutdown do not end main_loop()."""
    mod = main_loop
    log = []
    mod.powerdown_notifiers.add(lambda d: log.append("powerdown"))
    mod.shutdown_notifiers.add(lambda c: log.append("shutdown"))
    steps = iter([
        mod.system_powerdown_request,
        lambda: mod.system_reset_request(mod.ShutdownCause.GUEST_RESET),
        lambda: mod.system_shutdown_request(mod.ShutdownCause.GUEST_SHUTDOWN),
    ])
    mod.register_reset(lambda: log.append("reset"))

    def step():
        f = next(steps, None)
        if f is not None:
            f()
            bh.schedule()

    bh = mod.bh_new(step)
    bh.schedule()
    t0 = time.monotonic()
    assert mod.main_loop() == 0
    assert time.monotonic() - t0 < PROMPT_S
    assert log == ["powerdown", "reset", "shutdown"]


def test_shutdown_action_pause_stops_vm_and_continues(main_loop):
    mod = main_loop
    R = mod.RunState
    causes = []
    states = []
    mod.shutdown_notifiers.add(causes.append)
    mod.add_vm_change_state_handler(lambda r, s: states.append((r, s)))
    mod.set_shutdown_action("pause")
    mod.vm_start()
    mod.system_shutdown_request(mod.ShutdownCause.GUEST_SHUTDOWN)
    assert mod.main_loop_should_exit() is False
    assert causes == [mod.ShutdownCause.GUEST_SHUTDOWN]
    assert mod.runstate_get() == R.SHUTDOWN
    assert states == [(True, R.RUNNING), (False, R.SHUTDOWN)]
    assert mod.clock_is_enabled(mod.ClockType.VIRTUAL) is False


def test_system_killed_exits_even_with_pause_action(main_loop, capsys):
    mod = main_loop
    causes = []
    mod.shutdown_notifiers.add(causes.append)
    mod.set_shutdown_action("pause")
    mod.vm_start()
    mod.system_killed(signal.SIGTERM, 1234)
    assert mod.main_loop_should_exit() is True
    assert causes == [mod.ShutdownCause.HOST_SIGNAL]
    assert "terminating on signal 15" in capsys.readouterr().err


def test_shutdown_requests_coalesce_last_cause_wins(main_loop):
    mod = main_loop
    causes = []
    mod.shutdown_notifiers.add(causes.append)
    mod.system_shutdown_request(mod.ShutdownCause.HOST_QMP_QUIT)
    mod.system_shutdown_request(mod.ShutdownCause.GUEST_SHUTDOWN)
    assert mod.main_loop_should_exit() is True
    assert causes == [mod.ShutdownCause.GUEST_SHUTDOWN]
    assert mod.main_loop_should_exit() is False


# --------------------------------------------------------------------------------------------
# reset


def test_reset_handlers_run_in_registration_order(main_loop):
    mod = main_loop
    log = []
    h1, h2, h3 = (lambda: log.append(1)), (lambda: log.append(2)), (lambda: log.append(3))
    for h in (h1, h2, h3):
        mod.register_reset(h)
    mod.system_reset_request(mod.ShutdownCause.GUEST_RESET)
    assert log == []
    assert mod.main_loop_should_exit() is False
    assert log == [1, 2, 3]
    mod.unregister_reset(h2)
    mod.system_reset_request(mod.ShutdownCause.HOST_QMP_SYSTEM_RESET)
    mod.main_loop_should_exit()
    assert log == [1, 2, 3, 1, 3]


def test_reset_requests_coalesce(main_loop):
    mod = main_loop
    log = []
    mod.register_reset(lambda: log.append("reset"))
    mod.system_reset_request(mod.ShutdownCause.GUEST_RESET)
    mod.system_reset_request(mod.ShutdownCause.HOST_QMP_SYSTEM_RESET)
    assert mod.main_loop_should_exit() is False
    assert log == ["reset"]
    assert mod.main_loop_should_exit() is False
    assert log == ["reset"]


def _reach(mod, state):
    R = mod.RunState
    if state == R.PRELAUNCH:
        return
    if state in (R.INMIGRATE, R.FINISH_MIGRATE):
        mod.runstate_set(state)
        return
    mod.vm_start()
    if state != R.RUNNING:
        mod.vm_stop(state)


@pytest.mark.parametrize("start,end", [
    ("PRELAUNCH", "PRELAUNCH"),
    ("RUNNING", "RUNNING"),
    ("INMIGRATE", "INMIGRATE"),
    ("FINISH_MIGRATE", "FINISH_MIGRATE"),
    ("PAUSED", "PRELAUNCH"),
    ("SHUTDOWN", "PRELAUNCH"),
    ("GUEST_PANICKED", "PRELAUNCH"),
    ("DEBUG", "PRELAUNCH"),
])
def test_reset_runstate_after(main_loop, start, end):
    mod = main_loop
    R = mod.RunState
    _reach(mod, R[start])
    assert mod.runstate_get() == R[start]
    ran = []
    mod.register_reset(lambda: ran.append(mod.runstate_get()))
    mod.system_reset_request(mod.ShutdownCause.GUEST_RESET)
    assert mod.main_loop_should_exit() is False
    assert ran == [R[start]]
    assert mod.runstate_get() == R[end]


def test_reboot_action_shutdown_turns_reset_into_shutdown(main_loop):
    mod = main_loop
    C = mod.ShutdownCause
    resets = []
    causes = []
    mod.register_reset(lambda: resets.append(True))
    mod.shutdown_notifiers.add(causes.append)
    mod.set_reboot_action("shutdown")
    mod.system_reset_request(C.GUEST_RESET)
    assert mod.main_loop_should_exit() is True
    assert causes == [C.GUEST_RESET]
    assert resets == []
    # a subsystem reset is still a reset
    mod.system_reset_request(C.SUBSYSTEM_RESET)
    assert mod.main_loop_should_exit() is False
    assert resets == [True]
    assert causes == [C.GUEST_RESET]


# --------------------------------------------------------------------------------------------
# powerdown, suspend / wakeup, debug, vmstop


def test_powerdown_request(main_loop):
    mod = main_loop
    log = []
    mod.powerdown_notifiers.add(log.append)
    mod.system_powerdown_request()
    mod.system_powerdown_request()  # coalesced
    assert mod.main_loop_should_exit() is False
    assert log == [None]
    assert mod.main_loop_should_exit() is False
    assert log == [None]


def test_suspend_request(main_loop):
    mod = main_loop
    R = mod.RunState
    log = []
    mod.suspend_notifiers.add(lambda d: log.append(mod.runstate_get()))
    mod.vm_start()
    mod.system_suspend_request()
    assert mod.runstate_get() == R.RUNNING  # only a flag
    assert mod.main_loop_should_exit() is False
    assert log == [R.RUNNING]  # notified before the state changes
    assert mod.runstate_get() == R.SUSPENDED
    mod.system_suspend_request()  # already suspended: ignored
    assert mod.main_loop_should_exit() is False
    assert log == [R.RUNNING]
    assert mod.runstate_get() == R.SUSPENDED


def test_wakeup_request_requires_suspended(main_loop):
    mod = main_loop
    W = mod.WakeupReason
    log = []
    mod.wakeup_notifiers.add(log.append)
    with pytest.raises(RuntimeError):
        mod.system_wakeup_request(W.RTC)
    mod.vm_start()
    with pytest.raises(RuntimeError):
        mod.system_wakeup_request(W.RTC)
    assert mod.main_loop_should_exit() is False
    assert log == []
    assert mod.runstate_get() == mod.RunState.RUNNING


def test_wakeup_request_sets_running_at_once_and_notifies_reason(main_loop):
    mod = main_loop
    R, W = mod.RunState, mod.WakeupReason
    log = []
    mod.wakeup_notifiers.add(log.append)
    mod.vm_start()
    mod.system_suspend_request()
    mod.main_loop_should_exit()
    assert mod.runstate_get() == R.SUSPENDED
    mod.system_wakeup_request(W.PMTIMER)
    assert mod.runstate_get() == R.RUNNING  # immediately, not in the loop
    assert log == []
    assert mod.main_loop_should_exit() is False
    assert log == [W.PMTIMER]
    assert mod.main_loop_should_exit() is False
    assert log == [W.PMTIMER]  # the reason was cleared


def test_wakeup_enable_masks_reasons(main_loop):
    mod = main_loop
    R, W = mod.RunState, mod.WakeupReason
    log = []
    mod.wakeup_notifiers.add(log.append)
    mod.vm_start()
    mod.system_suspend_request()
    mod.main_loop_should_exit()
    mod.system_wakeup_enable(W.RTC, False)
    mod.system_wakeup_request(W.RTC)  # masked: silently ignored
    assert mod.runstate_get() == R.SUSPENDED
    assert mod.main_loop_should_exit() is False
    assert log == []
    mod.system_wakeup_request(W.OTHER)  # another reason still works
    assert mod.runstate_get() == R.RUNNING
    mod.main_loop_should_exit()
    assert log == [W.OTHER]
    mod.system_suspend_request()
    mod.main_loop_should_exit()
    mod.system_wakeup_enable(W.RTC, True)
    mod.system_wakeup_request(W.RTC)
    assert mod.runstate_get() == R.RUNNING
    mod.main_loop_should_exit()
    assert log == [W.OTHER, W.RTC]


def test_debug_request_stops_vm(main_loop):
    mod = main_loop
    R = mod.RunState
    states = []
    mod.add_vm_change_state_handler(lambda r, s: states.append((r, s)))
    mod.vm_start()
    mod.debug_request()
    assert mod.runstate_get() == R.RUNNING
    assert mod.main_loop_should_exit() is False
    assert mod.runstate_get() == R.DEBUG
    assert states == [(True, R.RUNNING), (False, R.DEBUG)]
    assert mod.clock_is_enabled(mod.ClockType.VIRTUAL) is False


@pytest.mark.parametrize("state", ["PAUSED", "IO_ERROR", "WATCHDOG", "SAVE_VM"])
def test_vm_stop_request(main_loop, state):
    mod = main_loop
    R = mod.RunState
    states = []
    mod.add_vm_change_state_handler(lambda r, s: states.append((r, s)))
    mod.vm_start()
    mod.vm_stop_request(R[state])
    assert mod.runstate_get() == R.RUNNING
    assert mod.main_loop_should_exit() is False
    assert mod.runstate_get() == R[state]
    assert states[-1] == (False, R[state])
    assert mod.main_loop_should_exit() is False
    assert len(states) == 2


def test_several_requests_in_one_pass_in_master_order(main_loop):
    """The order: debug, suspend, shutdown (action pause), reset, wakeup, powerdown, vmstop."""
    mod = main_loop
    R, C, W = mod.RunState, mod.ShutdownCause, mod.WakeupReason
    log = []
    mod.set_shutdown_action("pause")
    mod.add_vm_change_state_handler(lambda r, s: log.append(("vm", r, s)))
    mod.suspend_notifiers.add(lambda d: log.append("suspend"))
    mod.shutdown_notifiers.add(lambda c: log.append(("shutdown", c)))
    mod.wakeup_notifiers.add(lambda r: log.append(("wakeup", r)))
    mod.powerdown_notifiers.add(lambda d: log.append("powerdown"))

    def on_reset():
        log.append("reset")
        mod.vm_start()  # so that the vmstop request (handled last) has a VM to stop

    mod.register_reset(on_reset)
    mod.vm_start()
    mod.system_suspend_request()
    assert mod.main_loop_should_exit() is False
    assert mod.runstate_get() == R.SUSPENDED
    mod.system_wakeup_request(W.OTHER)  # RUNNING now; notifiers later
    log.clear()

    # post in the reverse of the handling order
    mod.vm_stop_request(R.PAUSED)
    mod.system_powerdown_request()
    mod.system_reset_request(C.GUEST_RESET)
    mod.system_shutdown_request(C.GUEST_SHUTDOWN)
    mod.system_suspend_request()
    mod.debug_request()
    assert log == []

    assert mod.main_loop_should_exit() is False
    assert log == [
        ("vm", False, R.DEBUG),
        "suspend",
        ("shutdown", C.GUEST_SHUTDOWN),
        "reset",
        ("vm", True, R.RUNNING),
        ("wakeup", W.OTHER),
        "powerdown",
        ("vm", False, R.PAUSED),
    ]
    assert mod.runstate_get() == R.PAUSED
    log.clear()
    assert mod.main_loop_should_exit() is False
    assert log == []


def test_shutdown_ends_the_pass(main_loop):
    """Steps before shutdown are handled; the loop exits before reset/powerdown."""
    mod = main_loop
    R, C = mod.RunState, mod.ShutdownCause
    log = []
    mod.shutdown_notifiers.add(lambda c: log.append("shutdown"))
    mod.powerdown_notifiers.add(lambda d: log.append("powerdown"))
    mod.register_reset(lambda: log.append("reset"))
    mod.vm_start()
    mod.system_powerdown_request()
    mod.system_reset_request(C.GUEST_RESET)
    mod.system_shutdown_request(C.HOST_UI)
    mod.debug_request()
    assert mod.main_loop_should_exit() is True
    assert mod.runstate_get() == R.DEBUG  # debug came first
    assert log == ["shutdown"]


# --------------------------------------------------------------------------------------------
# requests from other threads wake the loop


_REQUESTS = {
    "shutdown": lambda m: m.system_shutdown_request(m.ShutdownCause.HOST_QMP_QUIT),
    "reset": lambda m: m.system_reset_request(m.ShutdownCause.GUEST_RESET),
    "powerdown": lambda m: m.system_powerdown_request(),
    "suspend": lambda m: m.system_suspend_request(),
    "debug": lambda m: m.debug_request(),
    "vmstop": lambda m: m.vm_stop_request(m.RunState.PAUSED),
}


@pytest.mark.parametrize("kind", sorted(_REQUESTS))
def test_request_from_thread_wakes_sleeping_main_loop_wait(main_loop, guard, kind):
    mod = main_loop
    mod.vm_start()
    threads = []

    def fill(ml):
        if not threads:
            threads.append(start_thread(lambda: _REQUESTS[kind](mod)))

    guard.on_fill.append(fill)
    t0 = time.monotonic()
    mod.main_loop_wait(False)
    elapsed = time.monotonic() - t0
    join(threads[0])
    assert elapsed < PROMPT_S
    exits = mod.main_loop_should_exit()
    assert exits is (kind == "shutdown")
    expected = {
        "shutdown": mod.RunState.RUNNING, "reset": mod.RunState.RUNNING,
        "powerdown": mod.RunState.RUNNING, "suspend": mod.RunState.SUSPENDED,
        "debug": mod.RunState.DEBUG, "vmstop": mod.RunState.PAUSED,
    }[kind]
    assert mod.runstate_get() == expected


def test_main_loop_ends_on_shutdown_from_thread(main_loop, guard):
    mod = main_loop
    threads = []

    def fill(ml):
        if not threads:
            threads.append(start_thread(
                lambda: mod.system_shutdown_request(mod.ShutdownCause.HOST_UI, exit_code=3)))

    guard.on_fill.append(fill)
    t0 = time.monotonic()
    assert mod.main_loop() == 3
    assert time.monotonic() - t0 < PROMPT_S
    join(threads[0])


def test_request_in_notifier_is_seen_next_pass(main_loop):
    """A notifier that makes a request: handled on the next main_loop_should_exit()."""
    mod = main_loop
    log = []

    def on_powerdown(d):
        log.append("powerdown")
        mod.system_shutdown_request(mod.ShutdownCause.GUEST_SHUTDOWN)

    mod.powerdown_notifiers.add(on_powerdown)
    mod.shutdown_notifiers.add(lambda c: log.append(("shutdown", c)))
    mod.system_powerdown_request()
    assert mod.main_loop_should_exit() is False
    assert mod.main_loop_should_exit() is True
    assert log == ["powerdown", ("shutdown", mod.ShutdownCause.GUEST_SHUTDOWN)]


def test_pending_shutdown_ends_main_loop_before_any_wait(main_loop, guard):
    """main_loop_should_exit() is checked before the first main_loop_wait()."""
    mod = main_loop
    mod.system_shutdown_request(mod.ShutdownCause.HOST_QMP_QUIT, exit_code=5)
    assert mod.main_loop() == 5
    assert guard.states == []  # never waited


def test_main_loop_can_run_again(main_loop, guard):
    mod = main_loop
    for code in (1, 2):
        mod.bh_new(lambda c=code: mod.system_shutdown_request(
            mod.ShutdownCause.GUEST_SHUTDOWN, exit_code=c)).schedule()
        assert mod.main_loop() == code
    assert mod.bql_locked() is False


def test_wakeup_request_from_thread_wakes_sleeping_main_loop_wait(main_loop, guard):
    mod = main_loop
    R, W = mod.RunState, mod.WakeupReason
    reasons = []
    mod.wakeup_notifiers.add(reasons.append)
    mod.vm_start()
    mod.system_suspend_request()
    mod.main_loop_should_exit()
    assert mod.runstate_get() == R.SUSPENDED
    mod.main_loop_wait(True)  # the suspend request's notification
    threads = []

    def fill(ml):
        if not threads:
            threads.append(start_thread(lambda: mod.system_wakeup_request(W.RTC)))

    guard.on_fill.append(fill)
    t0 = time.monotonic()
    mod.main_loop_wait(False)
    elapsed = time.monotonic() - t0
    join(threads[0])
    assert elapsed < PROMPT_S
    assert mod.runstate_get() == R.RUNNING
    assert mod.main_loop_should_exit() is False
    assert reasons == [W.RTC]
