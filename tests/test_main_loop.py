"""The process-wide main loop (docs/main-loop.md): main_loop_wait's order
(docs/main-loop-iteration.md), poll notifiers, the iohandler context, qemu_notify_event (a
real BH: progress for a nested poll of the main context) and the big lock.

Every test runs on both implementations (``qloop_module`` ids "cython" and "python").
"""

from __future__ import annotations

import resource
import select
import threading
import time

import pytest

from _mainloop_support import (
    GUARD_MS,
    PROMPT_S,
    UINT32_MAX,
    PollRecorder,
    join,
    start_thread,
    wait_until,
)


def _now(mod, clock=None):
    return mod.clock_get_ns(mod.ClockType.REALTIME if clock is None else clock)


# --------------------------------------------------------------------------------------------
# main_loop_wait's order (docs/main-loop-iteration.md)


def test_main_loop_wait_order_of_steps(main_loop, sockpair):
    """FILL → (main ctx: BHs → fd handlers → timers; then iohandler fds) → OK → main-loop
    timers; the FILL notifier's pollfd gets its revents by the OK notification."""
    mod = main_loop
    ctx = mod.get_aio_context()
    log = []
    rec = PollRecorder(mod, log)
    mod.add_main_loop_poll_notifier(rec)

    ctx_a, ctx_b = sockpair()
    io_a, io_b = sockpair()
    pf_a, pf_b = sockpair()
    ctx_b.send(b"c")
    io_b.send(b"i")
    pf_b.send(b"p")

    pollfd = mod.PollFD(pf_a.fileno(), select.POLLIN)
    rec.on_fill.append(lambda ml: ml.pollfds.append(pollfd))
    rec.on_done.append(lambda ml: log.append(("revents", pollfd.revents & select.POLLIN)))

    ctx.set_fd_handler(ctx_a, lambda: (log.append("ctx-fd"), ctx_a.recv(16)))
    mod.set_fd_handler(io_a, lambda: (log.append("io-fd"), io_a.recv(16)))
    rt = mod.ClockType.REALTIME
    ctx_timer = ctx.timer_new_ns(rt, lambda: log.append("ctx-timer"))
    ml_timer = mod.timer_new_ns(rt, lambda: log.append("main-loop-timer"))
    now = _now(mod)
    ctx_timer.mod_ns(now)
    ml_timer.mod_ns(now)
    mod.bh_new(lambda: log.append("bh")).schedule()

    log.clear()
    ret = mod.main_loop_wait(False)
    assert log == [
        "FILL", "bh", "ctx-fd", "ctx-timer", "io-fd", "OK", ("revents", select.POLLIN),
        "main-loop-timer",
    ]
    assert rec.fill_timeouts == [UINT32_MAX]  # blocking: infinite until lowered
    assert ret >= 3  # the three readable fds
    ctx.set_fd_handler(ctx_a, None)
    mod.set_fd_handler(io_a, None, None)


def test_fill_sees_zero_timeout_when_nonblocking(main_loop):
    mod = main_loop
    rec = PollRecorder(mod, bound_ms=None)
    mod.add_main_loop_poll_notifier(rec)
    mod.main_loop_wait(True)
    mod.main_loop_wait(nonblocking=True)
    assert rec.fill_timeouts == [0, 0]
    S = mod.MainLoopPollState
    assert rec.states == [S.FILL, S.OK, S.FILL, S.OK]


def test_fill_lowered_timeout_bounds_blocking_wait(main_loop):
    mod = main_loop
    rec = PollRecorder(mod, bound_ms=50)
    mod.add_main_loop_poll_notifier(rec)
    t0 = time.monotonic()
    ret = mod.main_loop_wait(False)
    elapsed = time.monotonic() - t0
    assert ret == 0  # timed out: nothing ready
    assert 0.045 <= elapsed < PROMPT_S
    assert rec.states == [mod.MainLoopPollState.FILL, mod.MainLoopPollState.OK]
    assert rec.done_timeouts == [50]


def test_nonblocking_wait_does_not_block(main_loop):
    """Nothing pending, a main-loop timer an hour away: main_loop_wait(True) returns at once."""
    mod = main_loop
    rt = mod.ClockType.REALTIME
    far = mod.timer_new_ns(rt, lambda: None)
    far.mod_ns(_now(mod) + 3600 * 10**9)
    mod.main_loop_wait(True)  # the dummy BH of the timer notification
    t0 = time.monotonic()
    for _ in range(10):
        assert mod.main_loop_wait(True) == 0
    assert time.monotonic() - t0 < 1.0
    far.delete()


def test_main_loop_timer_deadline_bounds_blocking_wait(main_loop, guard):
    """A main-loop timer's deadline is part of the wait's timeout."""
    mod = main_loop
    fired = []
    t = mod.timer_new_ms(mod.ClockType.REALTIME, lambda: fired.append(_now(mod)))
    start = _now(mod)
    t.mod_ns(start + 30 * 10**6)
    t0 = time.monotonic()
    n = wait_until(mod, lambda: bool(fired), timeout=PROMPT_S)
    assert time.monotonic() - t0 < PROMPT_S
    assert n <= 3  # the arming notification, then the timed wait
    assert fired[0] >= start + 30 * 10**6


def test_main_ctx_timer_deadline_bounds_blocking_wait(main_loop, guard):
    mod = main_loop
    ctx = mod.get_aio_context()
    fired = []
    t = ctx.timer_new_ns(mod.ClockType.REALTIME, lambda: fired.append(True))
    t.mod_ns(_now(mod) + 30 * 10**6)
    t0 = time.monotonic()
    wait_until(mod, lambda: bool(fired), timeout=PROMPT_S, max_iterations=3)
    assert time.monotonic() - t0 < PROMPT_S
    # the main context timer ran inside the wait (between FILL and OK), not after OK
    assert guard.states[-1] == mod.MainLoopPollState.OK


def test_poll_notifier_pollfd_readiness(main_loop, sockpair):
    mod = main_loop
    a, b = sockpair()
    c, _d = sockpair()
    b.send(b"x")
    fds = []
    seen = []

    def notifier(ml):
        if ml.state == mod.MainLoopPollState.FILL:
            fds[:] = [mod.PollFD(a.fileno(), select.POLLIN), mod.PollFD(c, select.POLLIN)]
            ml.pollfds.extend(fds)
        else:
            seen.append([p.revents & select.POLLIN for p in ml.pollfds])

    mod.add_main_loop_poll_notifier(notifier)
    assert mod.main_loop_wait(True) >= 1
    assert seen == [[select.POLLIN, 0]]
    mod.remove_main_loop_poll_notifier(notifier)
    mod.main_loop_wait(True)
    assert len(seen) == 1  # removed


def test_poll_notifier_fd_wakes_blocking_wait(main_loop, guard, sockpair):
    """An fd added during FILL is part of the one poll: data from another thread wakes it."""
    mod = main_loop
    a, b = sockpair()
    got = []

    def fill(ml):
        ml.pollfds.append(mod.PollFD(a, select.POLLIN))
        start_thread(lambda: b.send(b"x"))

    guard.on_fill.append(fill)
    guard.on_done.append(lambda ml: got.append(ml.pollfds[0].revents))
    t0 = time.monotonic()
    ret = mod.main_loop_wait(False)
    assert time.monotonic() - t0 < PROMPT_S
    assert ret >= 1
    assert got[0] & select.POLLIN


def test_poll_notifiers_called_most_recent_first(main_loop):
    mod = main_loop
    log = []
    mod.add_main_loop_poll_notifier(lambda ml: log.append(("first", ml.state)))
    mod.add_main_loop_poll_notifier(lambda ml: log.append(("second", ml.state)))
    mod.main_loop_wait(True)
    S = mod.MainLoopPollState
    assert log == [("second", S.FILL), ("first", S.FILL), ("second", S.OK), ("first", S.OK)]


def test_err_state_when_poll_fails(main_loop, sockpair):
    """A failing poll(2) (EINVAL: more fds than RLIMIT_NOFILE) → ERR notification, the
    main-loop timers still run, and the error is raised afterwards."""
    mod = main_loop
    log = []
    socks = [sockpair() for _ in range(4)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def notifier(ml):
        log.append(mod.MainLoopPollState(ml.state).name)
        if ml.state == mod.MainLoopPollState.FILL:
            for a, _ in socks:
                ml.pollfds.append(mod.PollFD(a, select.POLLIN))
            resource.setrlimit(resource.RLIMIT_NOFILE, (2, hard))
        else:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    ml_timer = mod.timer_new_ns(mod.ClockType.REALTIME, lambda: log.append("timer"))
    ml_timer.mod_ns(_now(mod) + 3600 * 10**9)
    mod.main_loop_wait(True)  # the timer-arming notification
    ml_timer.mod_ns(_now(mod))  # due now
    mod.add_main_loop_poll_notifier(notifier)
    log.clear()
    try:
        with pytest.raises(OSError):
            mod.main_loop_wait(True)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert log == ["FILL", "ERR", "timer"]
    # the loop keeps working
    log.clear()
    mod.remove_main_loop_poll_notifier(notifier)
    ran = []
    mod.bh_new(lambda: ran.append(True)).schedule()
    mod.main_loop_wait(True)
    assert ran == [True]


def test_poll_notifier_exception_raised_after_iteration(main_loop):
    mod = main_loop
    ran = []

    def bad(ml):
        if ml.state == mod.MainLoopPollState.FILL:
            raise KeyError("fill")

    mod.add_main_loop_poll_notifier(bad)
    mod.bh_new(lambda: ran.append(True)).schedule()
    with pytest.raises(KeyError):
        mod.main_loop_wait(True)
    assert ran == [True]  # the iteration completed
    mod.remove_main_loop_poll_notifier(bad)
    assert mod.main_loop_wait(True) == 0


def test_bad_poll_notifier_arguments(main_loop):
    mod = main_loop
    with pytest.raises(TypeError):
        mod.add_main_loop_poll_notifier(42)
    with pytest.raises(ValueError):
        mod.remove_main_loop_poll_notifier(lambda ml: None)
    with pytest.raises((TypeError, ValueError, OSError)):
        mod.PollFD("not an fd")

    def set_bad_timeout(ml):
        if ml.state == mod.MainLoopPollState.FILL:
            ml.timeout = "soon"

    mod.add_main_loop_poll_notifier(set_bad_timeout)
    with pytest.raises(TypeError):
        mod.main_loop_wait(True)
    mod.remove_main_loop_poll_notifier(set_bad_timeout)
    ran = []
    mod.bh_new(lambda: ran.append(True)).schedule()
    mod.main_loop_wait(True)
    assert ran == [True]


# --------------------------------------------------------------------------------------------
# the iohandler context (docs/main-loop.md, "Two contexts")


def test_iohandler_context_is_not_main_context(main_loop):
    mod = main_loop
    ctx = mod.get_aio_context()
    io = mod.iohandler_get_aio_context()
    assert io is not ctx
    assert mod.get_aio_context() is ctx  # one per process
    assert mod.iohandler_get_aio_context() is io
    assert mod.get_current_aio_context() is ctx
    mod.init_main_loop()  # idempotent
    assert mod.get_aio_context() is ctx


def test_set_fd_handler_runs_in_main_loop_wait_not_nested_poll(main_loop, sockpair):
    mod = main_loop
    ctx = mod.get_aio_context()
    a, b = sockpair()
    calls = []
    mod.set_fd_handler(a, lambda: (calls.append("read"), a.recv(16)))
    b.send(b"x")
    for _ in range(3):
        ctx.poll(False)
    assert calls == []  # a nested poll of the main context never dispatches it
    mod.main_loop_wait(True)
    assert calls == ["read"]
    mod.main_loop_wait(True)
    assert calls == ["read"]  # level-triggered: consumed
    mod.set_fd_handler(a, None, None)
    b.send(b"y")
    mod.main_loop_wait(True)
    assert calls == ["read"]  # removed


def test_set_fd_handler_write_and_level_triggered(main_loop, sockpair):
    mod = main_loop
    a, _ = sockpair()
    writes = []
    mod.set_fd_handler(a, None, lambda: writes.append(1))
    mod.main_loop_wait(True)
    mod.main_loop_wait(True)
    assert writes == [1, 1]  # writable every iteration
    mod.set_fd_handler(a, None, None)
    mod.main_loop_wait(True)
    assert writes == [1, 1]


def test_set_fd_handler_wakes_blocking_wait(main_loop, guard, sockpair):
    mod = main_loop
    a, b = sockpair()
    got = []
    mod.set_fd_handler(a, lambda: got.append(a.recv(16)))
    guard.on_fill.append(lambda ml: start_thread(lambda: b.send(b"x")) if not got else None)
    t0 = time.monotonic()
    wait_until(mod, lambda: bool(got), timeout=PROMPT_S, max_iterations=3)
    assert time.monotonic() - t0 < PROMPT_S
    assert got == [b"x"]
    mod.set_fd_handler(a, None, None)


def test_event_notifier_set_handler(main_loop):
    mod = main_loop
    ctx = mod.get_aio_context()
    e = mod.EventNotifier()
    try:
        seen = []

        def handler(n):
            seen.append(n)
            n.test_and_clear()

        mod.event_notifier_set_handler(e, handler)
        mod.main_loop_wait(True)
        assert seen == []
        e.set()
        ctx.poll(False)
        assert seen == []  # iohandler context: not from a nested poll
        mod.main_loop_wait(True)
        assert seen == [e]
        mod.main_loop_wait(True)
        assert seen == [e]  # the handler cleared it
        mod.event_notifier_set_handler(e, None)
        e.set()
        mod.main_loop_wait(True)
        assert seen == [e]
    finally:
        e.close()


def test_event_notifier_handler_not_clearing_fires_every_iteration(main_loop):
    mod = main_loop
    e = mod.EventNotifier()
    try:
        seen = []
        mod.event_notifier_set_handler(e, lambda n: seen.append(1))
        e.set()
        for _ in range(3):
            mod.main_loop_wait(True)
        assert seen == [1, 1, 1]
        mod.event_notifier_set_handler(e, None)
    finally:
        e.close()


def test_handler_bad_input(main_loop, sockpair):
    mod = main_loop
    a, _ = sockpair()
    with pytest.raises(TypeError):
        mod.set_fd_handler(a, 42, None)
    with pytest.raises(TypeError):
        mod.set_fd_handler("nope", lambda: None, None)
    with pytest.raises(TypeError):
        mod.bh_new("not callable")
    with pytest.raises(TypeError):
        mod.timer_new_ns(mod.ClockType.REALTIME, None)
    with pytest.raises(ValueError):
        mod.timer_new_ns(17, lambda: None)
    ran = []
    mod.bh_new(lambda: ran.append(True)).schedule()
    mod.main_loop_wait(True)
    assert ran == [True]


# --------------------------------------------------------------------------------------------
# qemu_notify_event


def test_notify_event_is_progress_for_nested_poll(main_loop):
    mod = main_loop
    ctx = mod.get_aio_context()
    assert ctx.poll(False) is False
    mod.notify_event()
    assert ctx.poll(False) is True  # a real BH: progress
    assert ctx.poll(False) is False


def test_notify_event_from_thread_wakes_blocking_wait(main_loop, guard):
    mod = main_loop
    threads = []
    guard.on_fill.append(lambda ml: threads.append(start_thread(mod.notify_event)))
    t0 = time.monotonic()
    mod.main_loop_wait(False)
    elapsed = time.monotonic() - t0
    join(threads[0])
    assert elapsed < PROMPT_S


def test_notify_event_before_init_is_noop(qloop_module):
    mod = qloop_module
    mod._main_loop._shutdown_main_loop()  # make sure there is no main loop
    mod.notify_event()  # must not create one or raise
    assert mod._main_loop._ctx is None


def test_main_loop_bh_runs_in_main_context(main_loop):
    mod = main_loop
    ran = []
    bh = mod.bh_new(lambda: ran.append(True), name="mine")
    assert bh.name == "mine"
    bh.schedule()
    assert mod.get_aio_context().poll(False) is True
    assert ran == [True]


# --------------------------------------------------------------------------------------------
# The big lock


def test_bql_lock_unlock_and_context_manager(main_loop):
    mod = main_loop
    assert mod.bql_locked() is False
    mod.bql_lock()
    try:
        assert mod.bql_locked() is True
        with pytest.raises(RuntimeError):
            mod.bql_lock()  # not recursive
    finally:
        mod.bql_unlock()
    assert mod.bql_locked() is False
    with pytest.raises(RuntimeError):
        mod.bql_unlock()
    with mod.bql:
        assert mod.bql_locked() is True
    assert mod.bql_locked() is False


def test_bql_is_per_thread(main_loop):
    mod = main_loop
    seen = []
    with mod.bql:
        t = start_thread(lambda: seen.append(mod.bql_locked()))
        join(t)
    assert seen == [False]


def test_callbacks_run_with_bql_held(main_loop, sockpair):
    mod = main_loop
    ctx = mod.get_aio_context()
    a, b = sockpair()
    b.send(b"x")
    seen = {}
    rec = PollRecorder(mod, bound_ms=None)
    mod.add_main_loop_poll_notifier(rec)
    mod.bh_new(lambda: seen.setdefault("bh", mod.bql_locked())).schedule()
    mod.set_fd_handler(a, lambda: (seen.setdefault("fd", mod.bql_locked()), a.recv(16)))
    rt = mod.ClockType.REALTIME
    t1 = ctx.timer_new_ns(rt, lambda: seen.setdefault("ctx-timer", mod.bql_locked()))
    t2 = mod.timer_new_ns(rt, lambda: seen.setdefault("ml-timer", mod.bql_locked()))
    t1.mod_ns(_now(mod))
    t2.mod_ns(_now(mod))
    mod.main_loop_wait(True)
    assert seen == {"bh": True, "fd": True, "ctx-timer": True, "ml-timer": True}
    assert rec.bql_held and all(rec.bql_held)
    assert mod.bql_locked() is False  # taken for the call only
    with mod.bql:
        mod.main_loop_wait(True)
        assert mod.bql_locked() is True  # a caller's lock is kept
    mod.set_fd_handler(a, None, None)


def test_other_thread_gets_bql_while_main_loop_sleeps(main_loop, guard):
    """main_loop_wait releases the BQL around the poll: a thread that wants it while the
    main thread sleeps (only a far timer) gets it promptly."""
    mod = main_loop
    far = mod.timer_new_ns(mod.ClockType.REALTIME, lambda: None)
    far.mod_ns(_now(mod) + 3600 * 10**9)
    mod.main_loop_wait(True)  # consume the timer-arming notification
    result = {}
    threads = []
    main_ident = threading.get_ident()
    ran_in = []

    def worker():
        t0 = time.monotonic()
        with mod.bql:
            result["waited"] = time.monotonic() - t0
            result["locked"] = mod.bql_locked()
            # wake the main thread; its BH must run with the BQL, i.e. after we release
            mod.bh_new(lambda: ran_in.append((threading.get_ident(), mod.bql_locked()))).schedule()
            result["bh_ran_while_held"] = bool(ran_in)

    def fill(ml):
        if not threads:
            assert mod.bql_locked()
            threads.append(start_thread(worker))

    guard.on_fill.append(fill)
    t0 = time.monotonic()
    wait_until(mod, lambda: bool(ran_in), timeout=PROMPT_S, max_iterations=3)
    elapsed = time.monotonic() - t0
    join(threads[0])
    assert result["waited"] < 1.0
    assert result["locked"] is True
    assert result["bh_ran_while_held"] is False
    assert ran_in == [(main_ident, True)]
    assert elapsed < PROMPT_S
    far.delete()


def test_main_loop_wait_blocks_while_other_thread_holds_bql(main_loop):
    """The main thread cannot dispatch while another thread holds the BQL."""
    mod = main_loop
    holding = threading.Event()
    release = threading.Event()
    ran = []

    def worker():
        with mod.bql:
            holding.set()
            release.wait(5)

    t = start_thread(worker)
    assert holding.wait(5)
    mod.bh_new(lambda: ran.append(True)).schedule()
    done = threading.Event()

    def releaser():
        # released only once the main thread is (about to be) blocked on the lock
        release.set()
        done.set()

    # main_loop_wait must block on the BQL until the worker releases it
    timer = threading.Timer(0.05, releaser)
    timer.start()
    try:
        mod.main_loop_wait(True)
    finally:
        timer.cancel()
    assert done.is_set()  # we could not have dispatched before the release
    assert ran == [True]
    join(t)


# --------------------------------------------------------------------------------------------
# wake-ups from other threads


def _wake_from_thread(mod, guard, arm, cond):
    """Start ``arm()`` in a thread from the FILL notifier (the main thread is about to sleep
    with an infinite timeout, bounded only by the guard); ``cond()`` must become true within
    a few iterations and well before the guard would end the wait."""
    threads = []

    def fill(ml):
        if not threads:
            threads.append(start_thread(arm))

    guard.on_fill.append(fill)
    t0 = time.monotonic()
    wait_until(mod, cond, timeout=PROMPT_S, max_iterations=4)
    elapsed = time.monotonic() - t0
    join(threads[0])
    assert elapsed < PROMPT_S


def test_main_bh_scheduled_from_thread_wakes_wait(main_loop, guard):
    mod = main_loop
    ran = []
    bh = mod.bh_new(lambda: ran.append(threading.get_ident()))
    _wake_from_thread(mod, guard, bh.schedule, lambda: bool(ran))
    assert ran == [threading.get_ident()]


def test_main_loop_timer_armed_from_thread_wakes_wait(main_loop, guard):
    """Arming a main-loop timer notifies the loop (qemu_notify_event), so the new, earlier
    deadline is taken into account by a wait that had none."""
    mod = main_loop
    fired = []
    rt = mod.ClockType.REALTIME
    t = mod.timer_new_ns(rt, lambda: fired.append(threading.get_ident()))
    _wake_from_thread(mod, guard, lambda: t.mod_ns(_now(mod) + 10 * 10**6), lambda: bool(fired))
    assert fired == [threading.get_ident()]


def test_main_ctx_timer_armed_from_thread_wakes_wait(main_loop, guard):
    mod = main_loop
    fired = []
    rt = mod.ClockType.REALTIME
    t = mod.get_aio_context().timer_new_ns(rt, lambda: fired.append(threading.get_ident()))
    _wake_from_thread(mod, guard, lambda: t.mod_ns(_now(mod) + 10 * 10**6), lambda: bool(fired))
    assert fired == [threading.get_ident()]


def test_event_notifier_set_from_thread_wakes_wait(main_loop, guard):
    mod = main_loop
    e = mod.EventNotifier()
    try:
        seen = []

        def handler(n):
            n.test_and_clear()
            seen.append(threading.get_ident())

        mod.event_notifier_set_handler(e, handler)
        _wake_from_thread(mod, guard, e.set, lambda: bool(seen))
        assert seen == [threading.get_ident()]
        mod.event_notifier_set_handler(e, None)
    finally:
        e.close()


def test_pollfds_start_empty_each_iteration(main_loop, sockpair):
    """The poll array is truncated before every FILL (docs/main-loop-iteration.md)."""
    mod = main_loop
    a, _ = sockpair()
    lengths = []

    def notifier(ml):
        if ml.state == mod.MainLoopPollState.FILL:
            lengths.append(len(ml.pollfds))
            ml.pollfds.append(mod.PollFD(a, select.POLLIN))

    mod.add_main_loop_poll_notifier(notifier)
    for _ in range(3):
        mod.main_loop_wait(True)
    assert lengths == [0, 0, 0]


def test_callback_exception_completes_iteration_then_raises(main_loop):
    """A failing BH: the OK notification and the main-loop timers still happen, then the
    exception comes out of main_loop_wait; the next iteration is normal."""
    mod = main_loop
    log = []
    rec = PollRecorder(mod, log, bound_ms=None)
    ml_timer = mod.timer_new_ns(mod.ClockType.REALTIME, lambda: log.append("timer"))
    ml_timer.mod_ns(_now(mod) + 3600 * 10**9)
    mod.main_loop_wait(True)  # consume the timer-arming notification
    ml_timer.mod_ns(_now(mod))
    mod.add_main_loop_poll_notifier(rec)

    def bad():
        log.append("bh")
        raise ArithmeticError("bh failed")

    mod.bh_new(bad).schedule()
    log.clear()
    with pytest.raises(ArithmeticError):
        mod.main_loop_wait(True)
    assert log == ["FILL", "bh", "OK", "timer"]
    assert mod.bql_locked() is False
    log.clear()
    mod.main_loop_wait(True)
    assert log == ["FILL", "OK"]


def test_current_aio_context_per_thread(main_loop):
    mod = main_loop
    seen = []
    t = start_thread(lambda: seen.append(mod.get_current_aio_context()))
    join(t)
    assert seen == [None]  # a thread with no context and without the BQL
    assert mod.get_current_aio_context() is mod.get_aio_context()


def test_current_aio_context_is_main_ctx_for_bql_holder(main_loop):
    mod = main_loop
    seen = []

    def worker():
        with mod.bql:
            seen.append(mod.get_current_aio_context())

    join(start_thread(worker))
    assert seen == [mod.get_aio_context()]


def test_other_thread_gets_bql_while_caller_holding_it_sleeps(main_loop, guard):
    """Same as above when the caller of main_loop_wait holds the BQL itself: it is still
    released around the poll and held again afterwards."""
    mod = main_loop
    got = []
    threads = []

    def worker():
        t0 = time.monotonic()
        with mod.bql:
            got.append(time.monotonic() - t0)
            mod.notify_event()

    def fill(ml):
        if not threads:
            threads.append(start_thread(worker))

    guard.on_fill.append(fill)
    with mod.bql:
        t0 = time.monotonic()
        # until the worker had the BQL (its notify ends the wait); not until its thread is
        # gone: a thread still exiting after that costs one more wait, the guard's 5 s
        wait_until(mod, lambda: bool(got), timeout=PROMPT_S, max_iterations=4)
        elapsed = time.monotonic() - t0
        assert mod.bql_locked() is True
    join(threads[0])
    assert got[0] < 1.0
    assert elapsed < PROMPT_S


def test_main_loop_virtual_timer_follows_vm_state(main_loop):
    """A main-loop VIRTUAL timer does not fire (nor make the loop spin) while the VM is
    stopped; it fires once the VM runs (only clocks usable for a deadline run their timers)."""
    mod = main_loop
    V = mod.ClockType.VIRTUAL
    fired = []
    t = mod.timer_new_ns(V, lambda: fired.append(True))
    t.mod_ns(mod.clock_get_ns(V) + 10**6)
    mod.main_loop_wait(True)  # the arming notification
    rec = PollRecorder(mod, bound_ms=100)
    mod.add_main_loop_poll_notifier(rec)
    t0 = time.monotonic()
    mod.main_loop_wait(False)
    assert time.monotonic() - t0 >= 0.09  # a frozen clock's timer sets no deadline
    assert fired == []
    mod.vm_start()
    rec.bound_ms = GUARD_MS
    t0 = time.monotonic()
    for _ in range(5):
        if fired:
            break
        mod.main_loop_wait(False)
    assert fired == [True]
    assert time.monotonic() - t0 < PROMPT_S


def test_main_loop_virtual_timer_on_manual_clock(main_loop):
    mod = main_loop
    V = mod.ClockType.VIRTUAL
    mod.clock_set_manual(True)
    mod.vm_start()
    fired = []
    t = mod.timer_new_ns(V, lambda: fired.append(mod.clock_get_ns(V)))
    start = mod.clock_get_ns(V)
    t.mod_ns(start + 3600 * 10**9)
    for _ in range(3):
        mod.main_loop_wait(True)
    assert fired == []
    mod.clock_advance_virtual_time(start + 3600 * 10**9)
    for _ in range(3):
        if fired:
            break
        mod.main_loop_wait(True)
    assert fired == [start + 3600 * 10**9]


def test_poll_notifier_removed_during_fill_not_called_for_ok(main_loop):
    mod = main_loop
    log = []

    def once(ml):
        log.append(mod.MainLoopPollState(ml.state).name)
        mod.remove_main_loop_poll_notifier(once)

    mod.add_main_loop_poll_notifier(once)
    mod.main_loop_wait(True)
    mod.main_loop_wait(True)
    assert log == ["FILL"]


def test_pollfd_pollout_revents(main_loop, sockpair):
    mod = main_loop
    a, _ = sockpair()
    got = []

    def notifier(ml):
        if ml.state == mod.MainLoopPollState.FILL:
            ml.pollfds.append(mod.PollFD(a, select.POLLOUT))
            ml.timeout = GUARD_MS  # bound the wait should POLLOUT be missed
        else:
            got.append(ml.pollfds[0].revents)

    mod.add_main_loop_poll_notifier(notifier)
    t0 = time.monotonic()
    mod.main_loop_wait(False)  # ready at once: does not block
    assert time.monotonic() - t0 < PROMPT_S
    assert got and got[0] & select.POLLOUT
    assert not got[0] & select.POLLIN


def test_bql_mutual_exclusion_under_many_threads(main_loop):
    """Eight threads hammer the big lock while the main thread runs main_loop_wait (which
    releases and retakes it around every wait): never two holders at once, no lost wake-up
    of a sleeping waiter."""
    mod = main_loop
    inside = [0]
    violations = []
    counts = [0] * 8
    stop = threading.Event()

    def hammer(i):
        while not stop.is_set():
            with mod.bql:
                inside[0] += 1
                if inside[0] != 1:
                    violations.append(inside[0])
                counts[i] += 1
                inside[0] -= 1
            time.sleep(0)  # the GIL to the others: a plain lock is not fair, this test is
            # about exclusion and wake-ups, not starvation

    threads = [start_thread(lambda i=i: hammer(i)) for i in range(8)]
    ticks = []
    t = mod.timer_new_ns(mod.ClockType.REALTIME, lambda: ticks.append(1))
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        t.mod_ns(_now(mod) + 10**5)
        mod.main_loop_wait(False)  # a 0.1 ms wait: the BQL goes to the hammers meanwhile
        assert mod.bql_locked() is False
    stop.set()
    for th in threads:
        join(th)
    assert violations == []
    assert all(c > 0 for c in counts)
    assert ticks


def test_fd_closed_while_registered_on_iohandler_raises_from_main_loop_wait(main_loop, guard):
    """POLLNVAL under the main loop: the handler is removed and main_loop_wait raises
    OSError(EBADF) naming the fd (or the exception handler gets it)."""
    import errno
    import os

    mod = main_loop
    io = mod.iohandler_get_aio_context()
    r, w = os.pipe()
    mod.set_fd_handler(r, lambda: None)
    os.close(r)
    try:
        with pytest.raises(OSError) as info:
            for _ in range(3):
                mod.main_loop_wait(True)
        assert info.value.errno == errno.EBADF and str(r) in str(info.value)
        got = []
        io.set_exception_handler(lambda c, e: got.append(type(e).__name__))
        r2, w2 = os.pipe()
        mod.set_fd_handler(r2, lambda: None)
        os.close(r2)
        for _ in range(3):
            mod.main_loop_wait(True)  # does not raise: the handler took it
        assert got == ["OSError"]
        os.close(w2)
    finally:
        os.close(w)
