"""Virtual-time event loops (``new_event_loop(virtual_time=True)``, docs/virtual-time.md): the
clock, autojump, manual mode and ``advance``, real-time work in flight, the process-wide clock
mode; both implementations (``qloop_module``)."""

from __future__ import annotations

import asyncio
import math
import os
import random
import sys
import threading
import time

import pytest

from _vt_support import NO_REAL_WAIT, Stopwatch, run

# ---------------------------------------------------------------------------------------------
# the clock


def test_time_starts_at_zero_and_sleep_is_exact_and_instant(vt_loop):
    async def main():
        t0 = vt_loop.time()
        await asyncio.sleep(3600)
        return t0, vt_loop.time()

    with Stopwatch() as sw:
        assert run(vt_loop, main()) == (0.0, 3600.0)
    assert sw.wall < NO_REAL_WAIT


def test_start_sets_the_first_loop_time(vt_loop_factory):
    loop = vt_loop_factory(start=1_000_000.5)
    fired = []
    loop.call_at(1_000_010.5, lambda: fired.append(loop.time()))
    assert loop.time() == 1_000_000.5

    async def main():
        await asyncio.sleep(20)

    run(loop, main())
    assert fired == [1_000_010.5]
    assert loop.time() == 1_000_020.5


def test_loop_time_is_whole_nanoseconds(vt_loop):
    """0.1 s + 0.2 s reads 0.3: deadlines are rounded to the nearest ns."""

    async def main():
        await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)
        return vt_loop.time()

    assert run(vt_loop, main()) == 0.3


def test_call_later_and_call_at_run_at_their_exact_virtual_deadline(vt_loop):
    seen = []
    for d in (5.0, 0.25, 86400.0, 1e-9, 7.125):
        vt_loop.call_later(d, lambda d=d: seen.append((d, vt_loop.time())))
    vt_loop.call_at(42.0, lambda: seen.append(("at", vt_loop.time())))
    run(vt_loop, asyncio.sleep(86401))
    assert seen == [(1e-9, 1e-9), (0.25, 0.25), (5.0, 5.0), (7.125, 7.125), ("at", 42.0),
                    (86400.0, 86400.0)]


def test_ten_thousand_tasks_wake_at_their_exact_deadline_in_order(vt_loop):
    """10,000 tasks sleep random (whole-ns) durations of up to a day: each wakes at exactly
    its deadline, in deadline order (ties in FIFO order), without waiting in real time."""
    rng = random.Random(13)
    durations = [rng.randrange(0, 86_400 * 10**9) / 1e9 for _ in range(9_000)]
    durations += durations[:1_000]  # ties: the same deadline twice, FIFO
    woke = []

    async def sleeper(i, d):
        await asyncio.sleep(d)
        woke.append((vt_loop.time(), i, d))

    async def main():
        await asyncio.gather(*(sleeper(i, d) for i, d in enumerate(durations)))

    with Stopwatch() as sw:
        run(vt_loop, main())
    assert len(woke) == 10_000
    assert all(t == d for t, _, d in woke)
    assert [i for _, i, _ in woke] == [i for _, i in sorted(
        ((d, i) for i, d in enumerate(durations)))]
    if not vt_loop.get_debug():  # debug mode keeps a traceback per handle: slower
        assert sw.wall < NO_REAL_WAIT, (sw.wall, sw.cpu)


def test_wait_for_times_out_at_exactly_3600_instantly(vt_loop):
    async def never_finishes():
        await asyncio.get_running_loop().create_future()

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(never_finishes(), 3600)
        return vt_loop.time()

    with Stopwatch() as sw:
        assert run(vt_loop, main()) == 3600.0
    assert sw.wall < NO_REAL_WAIT


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is new in 3.11")
def test_asyncio_timeout_follows_virtual_time(vt_loop):
    async def main():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(90):
                await asyncio.sleep(120)
        t1 = vt_loop.time()
        async with asyncio.timeout_at(vt_loop.time() + 10):
            await asyncio.sleep(9)
        return t1, vt_loop.time()

    assert run(vt_loop, main()) == (90.0, 99.0)


def test_event_and_condition_waits_with_timeouts(vt_loop):
    async def main():
        event = asyncio.Event()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), 30)
        t_event = vt_loop.time()
        vt_loop.call_later(5, event.set)
        await asyncio.wait_for(event.wait(), 30)
        t_set = vt_loop.time()
        cond = asyncio.Condition()
        async with cond:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(cond.wait(), 7)
        t_cond = vt_loop.time()

        async def notifier():
            await asyncio.sleep(2)
            async with cond:
                cond.notify_all()

        task = asyncio.ensure_future(notifier())
        async with cond:
            await asyncio.wait_for(cond.wait(), 100)
        await task
        return t_event, t_set, t_cond, vt_loop.time()

    assert run(vt_loop, main()) == (30.0, 35.0, 42.0, 44.0)


def test_qloop_virtual_timers_and_co_sleep_ns_follow_the_loop(vt_loop, qloop_module):
    """qloop's own VIRTUAL timers on the loop's context (and co_sleep_ns in a qloop Coroutine
    there) run at their virtual deadlines, in order with the asyncio timers."""
    VIRTUAL = qloop_module.ClockType.VIRTUAL
    ctx = vt_loop.aio_context
    seen = []
    timer = ctx.timer_new_ns(VIRTUAL, lambda: seen.append(("qloop timer", vt_loop.time())))
    timer.mod_ns(qloop_module.clock_get_ns(VIRTUAL) + 2_500_000_000)

    async def co_body():
        await qloop_module.co_sleep_ns(VIRTUAL, 4_000_000_000)
        seen.append(("co_sleep_ns", vt_loop.time()))

    async def main():
        qloop_module.Coroutine(co_body(), ctx=ctx).enter()
        vt_loop.call_later(3, lambda: seen.append(("call_later", vt_loop.time())))
        await asyncio.sleep(5)

    run(vt_loop, main())
    assert seen == [("qloop timer", 2.5), ("call_later", 3.0), ("co_sleep_ns", 4.0)]


def test_real_time_clocks_stay_real(vt_loop, qloop_module):
    Clock = qloop_module.ClockType

    async def main():
        await asyncio.sleep(7 * 86400)
        return (time.monotonic(), qloop_module.clock_get_ns(Clock.REALTIME),
                qloop_module.clock_get_ns(Clock.HOST), time.time_ns())

    mono0 = time.monotonic()
    mono1, realtime, host, wall = run(vt_loop, main())
    assert vt_loop.time() == 7 * 86400
    assert mono1 - mono0 < 10.0  # a week of virtual time, seconds at most of real time
    assert abs(realtime / 1e9 - time.monotonic()) < 10.0
    assert abs(host - wall) < 10 * 10**9


def test_virtual_and_real_time_loops_side_by_side(vt_loop_factory, qloop_module):
    """A real-time loop next to an open virtual-time one keeps CLOCK_MONOTONIC."""
    vloop = vt_loop_factory()
    rloop = qloop_module.new_event_loop()
    try:
        assert not rloop.virtual_time and vloop.virtual_time
        assert abs(rloop.time() - time.monotonic()) < 1.0
        run(vloop, asyncio.sleep(1000))
        assert abs(rloop.time() - time.monotonic()) < 1.0
        assert vloop.time() == 1000.0
    finally:
        rloop.close()


# ---------------------------------------------------------------------------------------------
# options


def test_options_are_checked(qloop_module):
    new = qloop_module.new_event_loop
    with pytest.raises(TypeError, match="virtual_time must be a bool"):
        new(virtual_time="yes")
    with pytest.raises(TypeError, match="autojump must be a bool"):
        new(virtual_time=True, autojump=None)
    with pytest.raises(ValueError, match="need virtual_time=True"):
        new(autojump=False)
    with pytest.raises(ValueError, match="need virtual_time=True"):
        new(start=5.0)
    with pytest.raises(ValueError, match="need virtual_time=True"):
        new(autojump_after=0.1)
    with pytest.raises(ValueError, match="start must be finite"):
        new(virtual_time=True, start=math.nan)
    with pytest.raises(TypeError, match="start must be a number"):
        new(virtual_time=True, start="0")
    with pytest.raises(ValueError, match="autojump_after must be >= 0"):
        new(virtual_time=True, autojump_after=-1)
    with pytest.raises(ValueError, match="start must be within"):
        new(virtual_time=True, start=1e12)
    with pytest.raises(ValueError, match="need virtual_time=True"):
        qloop_module.EventLoopPolicy(start=1.0)
    assert not qloop_module.clock_is_manual()


def test_loop_properties(vt_loop_factory, qloop_module):
    loop = vt_loop_factory(autojump=False, autojump_after=0.5)
    assert (loop.virtual_time, loop.autojump, loop.autojump_after) == (True, False, 0.5)
    real = qloop_module.new_event_loop()
    try:
        assert (real.virtual_time, real.autojump, real.autojump_after) == (False, False, None)
    finally:
        real.close()


def test_run_and_policy_take_the_virtual_time_keywords(qloop_module):
    async def main():
        await asyncio.sleep(60)
        return asyncio.get_running_loop().time()

    assert qloop_module.run(main(), virtual_time=True, start=100.0) == 160.0
    policy = qloop_module.EventLoopPolicy(virtual_time=True, start=5.0)
    loop = policy.new_event_loop()
    try:
        assert loop.virtual_time and loop.time() == 5.0
    finally:
        loop.close()
    assert not qloop_module.clock_is_manual()


# ---------------------------------------------------------------------------------------------
# the process-wide clock mode


def test_the_clock_mode_is_restored_when_the_last_loop_closes(qloop_module):
    Clock = qloop_module.ClockType
    assert not qloop_module.clock_is_manual()
    assert not qloop_module.clock_is_enabled(Clock.VIRTUAL)
    a = qloop_module.new_event_loop(virtual_time=True)
    assert qloop_module.clock_is_manual() and qloop_module.clock_is_enabled(Clock.VIRTUAL)
    b = qloop_module.new_event_loop(virtual_time=True)
    a.close()
    assert qloop_module.clock_is_manual()  # b is still open
    before = qloop_module.clock_get_ns(Clock.VIRTUAL)
    run(b, asyncio.sleep(50))
    b.close()
    assert not qloop_module.clock_is_manual()
    assert not qloop_module.clock_is_enabled(Clock.VIRTUAL)
    # VIRTUAL keeps its value (it never goes back)
    assert qloop_module.clock_get_ns(Clock.VIRTUAL) == before + 50 * 10**9


def test_a_manual_clock_set_before_stays_manual(qloop_module):
    qloop_module.clock_set_manual(True)
    try:
        loop = qloop_module.new_event_loop(virtual_time=True)
        loop.close()
        assert qloop_module.clock_is_manual()
    finally:
        qloop_module.clock_set_manual(False)


def test_two_virtual_time_loops_share_one_timeline(vt_loop_factory):
    """Each starts at its own ``start``; the clock they share moves for both."""
    a = vt_loop_factory()
    run(a, asyncio.sleep(100))
    b = vt_loop_factory()
    assert (a.time(), b.time()) == (100.0, 0.0)
    fired = []
    a.call_later(10, lambda: fired.append(a.time()))
    run(b, asyncio.sleep(5))
    assert (a.time(), b.time()) == (105.0, 5.0)
    run(a, asyncio.sleep(20))
    assert fired == [110.0]
    assert (a.time(), b.time()) == (125.0, 25.0)


def test_a_timer_another_loop_passed_runs_late_in_its_own_loop(vt_loop_factory):
    a = vt_loop_factory()
    b = vt_loop_factory()
    fired = []
    a.call_later(1, lambda: fired.append(a.time()))
    run(b, asyncio.sleep(30))  # a is not running: its timer falls due, unrun
    assert fired == []
    a.stop()
    a.run_forever()  # one iteration
    assert fired == [30.0]


# ---------------------------------------------------------------------------------------------
# manual mode and advance


def test_manual_mode_moves_only_by_advance_from_outside(vt_loop_factory):
    loop = vt_loop_factory(autojump=False)
    seen = []
    for d in (3.0, 1.0, 2.0, 2.0):
        loop.call_later(d, lambda d=d: seen.append((d, loop.time())))
    assert loop.advance(2.5) == 2.5
    assert seen == [(1.0, 1.0), (2.0, 2.0), (2.0, 2.0)]
    assert loop.advance(0) == 2.5
    assert loop.advance(1) == 3.5
    assert seen[-1] == (3.0, 3.0)
    assert loop.time() == 3.5


def test_advance_runs_callbacks_scheduled_on_the_way(vt_loop_factory):
    """A ticker re-arming itself every second runs at each second up to the target."""
    loop = vt_loop_factory(autojump=False)
    ticks = []

    def tick():
        ticks.append(loop.time())
        loop.call_later(1, tick)

    loop.call_later(1, tick)
    assert loop.advance(5) == 5.0
    assert ticks == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_await_advance_in_manual_mode(vt_loop_factory, qloop_module):
    loop = vt_loop_factory(autojump=False)
    seen = []

    async def sleeper(d):
        await asyncio.sleep(d)
        seen.append((d, loop.time()))

    async def main():
        tasks = [asyncio.ensure_future(sleeper(d)) for d in (5, 1, 3)]
        await asyncio.sleep(0)
        assert await qloop_module.advance(2) == 2.0
        assert seen == [(1, 1.0)]
        assert await qloop_module.advance(3) == 5.0  # runs what is due at 5 first
        assert seen == [(1, 1.0), (3, 3.0), (5, 5.0)]
        await asyncio.gather(*tasks)
        return loop.time()

    assert run(loop, main()) == 5.0


def test_advance_from_a_callback_sets_the_target(vt_loop_factory):
    loop = vt_loop_factory(autojump=False)
    seen = []
    loop.call_later(4, lambda: seen.append(loop.time()))

    async def main():
        assert loop.advance(10) == 10.0  # returns at once: the loop gets there later
        await asyncio.sleep(10)
        return loop.time()

    assert run(loop, main()) == 10.0
    assert seen == [4.0]


def test_advance_in_autojump_mode_stops_at_the_target(vt_loop):
    seen = []
    for d in (1, 2, 50):
        vt_loop.call_later(d, lambda d=d: seen.append(vt_loop.time()))
    assert vt_loop.advance(10) == 10.0
    assert seen == [1.0, 2.0]


def test_advance_errors(vt_loop, qloop_module):
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        vt_loop.advance(-1)
    with pytest.raises(ValueError, match="must be finite"):
        vt_loop.advance(math.inf)
    with pytest.raises(TypeError, match="seconds must be a number"):
        vt_loop.advance("1")
    real = qloop_module.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="needs a virtual-time event loop"):
            real.advance(1)
        with pytest.raises(RuntimeError, match="needs a virtual-time event loop"):
            real.run_until_complete(qloop_module.advance(1))
    finally:
        real.close()
    plain = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="running virtual-time qloop event loop"):
            plain.run_until_complete(qloop_module.advance(1))
    finally:
        plain.close()
    vt_loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        vt_loop.advance(1)


def test_advance_from_another_thread_while_running_is_refused(vt_loop):
    errors = []

    def other_thread():
        try:
            vt_loop.advance(1)
        except RuntimeError as exc:
            errors.append(exc)

    async def main():
        t = threading.Thread(target=other_thread)
        t.start()
        await vt_loop.run_in_executor(None, t.join)

    run(vt_loop, main())
    assert len(errors) == 1 and "another thread" in str(errors[0])


# ---------------------------------------------------------------------------------------------
# real-time work in flight: executor jobs are never jumped past


def test_an_executor_job_is_not_jumped_past(vt_loop):
    order = []

    async def sleeper():
        await asyncio.sleep(0.05)
        order.append(("sleeper", vt_loop.time()))

    def job():
        time.sleep(0.2)
        return "done"

    async def main():
        task = asyncio.ensure_future(sleeper())
        result = await asyncio.wait_for(vt_loop.run_in_executor(None, job), 0.1)
        order.append((result, vt_loop.time()))
        await task

    with Stopwatch() as sw:
        run(vt_loop, main())
    assert order == [("done", 0.0), ("sleeper", 0.05)]
    assert sw.wall >= 0.2  # the loop really waited for the job


def test_to_thread_and_getaddrinfo_are_tracked(vt_loop):
    async def main():
        value = await asyncio.wait_for(asyncio.to_thread(lambda: time.sleep(0.05) or 7), 0.01)
        infos = await asyncio.wait_for(vt_loop.getaddrinfo("127.0.0.1", 80), 0.01)
        return value, bool(infos), vt_loop.time()

    assert run(vt_loop, main()) == (7, True, 0.0)


def test_shutdown_default_executor_is_waited_for(vt_loop):
    """asyncio.run's shutdown of the default executor (a 300 s timeout on 3.12+) is real-time
    work: the loop does not jump to the timeout."""

    async def main():
        await vt_loop.run_in_executor(None, time.sleep, 0.01)
        with _no_warning():
            await vt_loop.shutdown_default_executor(300)
        return vt_loop.time()

    assert run(vt_loop, main()) == 0.0


class _no_warning:
    def __enter__(self):
        import warnings

        self.cm = warnings.catch_warnings(record=True)
        self.caught = self.cm.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc):
        self.cm.__exit__(*exc)
        assert not [w for w in self.caught if issubclass(w.category, RuntimeWarning)]


def test_real_work_hooks_hold_the_jump(vt_loop):
    """The hook subprocess transports use: _real_work_begin/_real_work_end."""
    order = []

    def finish_from_a_thread():
        time.sleep(0.05)
        order.append(("work done", None))
        vt_loop._real_work_done_threadsafe()

    async def main():
        vt_loop._real_work_begin()
        threading.Thread(target=finish_from_a_thread).start()
        await asyncio.sleep(1)
        order.append(("slept", vt_loop.time()))

    run(vt_loop, main())
    assert order == [("work done", None), ("slept", 1.0)]


# ---------------------------------------------------------------------------------------------
# autojump_after: a real-time grace for real I/O


def _pipe_data_after(seconds, data=b"x"):
    r, w = os.pipe()
    os.set_blocking(r, False)

    def write():
        time.sleep(seconds)
        os.write(w, data)

    t = threading.Thread(target=write)
    t.start()
    return r, w, t


@pytest.mark.parametrize("grace", [None, 2.0])
def test_autojump_after_lets_real_io_answer_first(vt_loop_factory, grace):
    loop = vt_loop_factory(autojump_after=grace)
    r, w, t = _pipe_data_after(0.05)

    async def main():
        got = loop.create_future()
        loop.add_reader(r, lambda: got.done() or got.set_result(os.read(r, 10)))
        try:
            return await asyncio.wait_for(got, 10), loop.time()
        except TimeoutError:
            return "timeout", loop.time()
        finally:
            loop.remove_reader(r)

    try:
        result = run(loop, main())
    finally:
        t.join()
        os.close(r)
        os.close(w)
    if grace is None:
        assert result == ("timeout", 10.0)  # it jumped at once: the data came too late
    else:
        assert result == (b"x", 0.0)


def test_autojump_after_jumps_when_nothing_comes(vt_loop_factory):
    loop = vt_loop_factory(autojump_after=0.02)

    async def main():
        await asyncio.sleep(5)
        await asyncio.sleep(5)
        return loop.time()

    with Stopwatch() as sw:
        assert run(loop, main()) == 10.0
    assert sw.wall >= 0.04  # waited the grace before each of the two jumps


def test_a_vm_stop_freezes_the_loop_timers_until_virtual_is_enabled(vt_loop, qloop_module):
    """Disabling VIRTUAL (QEMU's vm_stop) while the loop is idle: the loop waits (no jump, no
    deadlock) until something enables it again."""
    VIRTUAL = qloop_module.ClockType.VIRTUAL

    def enable_later():
        time.sleep(0.05)
        qloop_module.clock_enable(VIRTUAL, True)

    async def main():
        qloop_module.clock_enable(VIRTUAL, False)
        threading.Thread(target=enable_later).start()
        await asyncio.sleep(3)
        return vt_loop.time()

    assert run(vt_loop, main()) == 3.0


def test_the_loop_runs_on_a_borrowed_context(vt_loop_factory, qloop_module):
    with qloop_module.AioContext() as ctx:
        loop = vt_loop_factory(ctx=ctx)
        assert run(loop, asyncio.sleep(12)) is None
        assert loop.time() == 12.0
        loop.close()
        assert ctx.resource_counts() == (0, 0, 0)


def test_a_jump_wakes_another_context_whose_virtual_timer_falls_due(vt_loop, qloop_module):
    """Another context blocked in poll() in another thread, with a VIRTUAL timer the loop's
    jump passes: it is woken and runs the timer in its own thread (late, at the new time)."""
    VIRTUAL = qloop_module.ClockType.VIRTUAL
    other = qloop_module.AioContext()
    fired = threading.Event()
    seen = []
    base = qloop_module.clock_get_ns(VIRTUAL)

    def on_timer():
        seen.append((threading.current_thread().name, qloop_module.clock_get_ns(VIRTUAL)))
        fired.set()

    timer = other.timer_new_ns(VIRTUAL, on_timer)
    timer.mod_ns(base + 5 * 10**9)

    def waiter():
        while not fired.is_set():
            other.poll(True)

    thread = threading.Thread(target=waiter, name="other-context")
    thread.start()
    try:
        run(vt_loop, asyncio.sleep(10))
        assert fired.wait(5), "the other context was not woken"
    finally:
        fired.set()
        other.notify()
        thread.join()
        other.close()
    assert seen == [("other-context", base + 10 * 10**9)]
