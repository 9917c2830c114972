"""AIO_WAIT_WHILE and aio_wait_kick (docs/iothreads.md, "Waiting for another context"):
the home context polls itself; the main loop waiting for an IOThread's context sleeps in
the main context and is woken by kicks (explicit, or from the BHs that finish work: the
coroutine scheduler, the thread pool's completions, aio_wait_bh_oneshot); the global waiter
count; who may wait.

Both implementations run every test.  No sleeps: each wait is for something another thread
does.  A ``Watchdog`` bounds each ``wait_while`` without masking a lost wake-up (the test fails
when it fired), and a hard limit per test ends the process with every thread's traceback if a
wait it cannot bound (``aio_wait_bh_oneshot``) hangs.
"""

from __future__ import annotations

import faulthandler
import threading

import pytest

WAIT = 10.0
HARD_LIMIT = 60.0


@pytest.fixture(autouse=True)
def _hard_limit():
    """A hang here would stall the whole run: dump every thread's stack and exit instead."""
    faulthandler.dump_traceback_later(HARD_LIMIT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


class Watchdog:
    """Bounds a main-context ``wait_while``: after WAIT real seconds it marks itself fired and
    kicks, so the wait returns and the test fails instead of hanging.  It never wakes the
    waiter earlier, so a lost wake-up still shows."""

    def __init__(self, mod):
        self.mod = mod
        self.fired = False
        self.timer = threading.Timer(WAIT, self._fire)

    def _fire(self):
        self.fired = True
        self.mod.aio_wait_kick()

    def bound(self, cond):
        return lambda: cond() and not self.fired

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        self.timer.join()
        assert not self.fired, f"the wait was not woken within {WAIT} s"


def _opens_after_first_check(gate, cond):
    """``cond``, and ``gate`` set once it has been checked: work held back by the gate can
    only finish (and kick) after the waiter started waiting, so the wait always polls."""

    def checked():
        result = cond()
        gate.set()
        return result

    return checked


def _aio_wait(mod):
    import importlib

    return importlib.import_module("qloop._main.aio_wait")


def test_home_context_polls_itself(qloop_module, ctx):
    mod = qloop_module
    flag = []
    assert ctx.wait_while(lambda: False) is False  # did not poll
    ctx.bh_schedule_oneshot(lambda: flag.append(1))
    assert ctx.wait_while(lambda: not flag) is True
    assert mod.aio_wait_while(ctx, lambda: not flag) is False


def test_main_loop_waiting_for_an_iothread_sleeps_in_the_main_context(main_loop):
    mod = main_loop
    aw = _aio_wait(mod)
    main_ctx = mod.get_aio_context()
    with mod.IOThread() as io:
        seen = []
        go = threading.Event()

        def later():
            assert go.wait(WAIT)
            seen.append(aw.num_waiters())
            mod.aio_wait_kick()

        def in_iothread():
            threading.Thread(target=later, daemon=True).start()

        io.ctx.bh_schedule_oneshot(in_iothread)
        # the waiter polls the main context: the IOThread keeps polling its own unhindered
        with Watchdog(mod) as dog:
            assert io.ctx.wait_while(dog.bound(_opens_after_first_check(go, lambda: not seen)))
        assert seen == [1] and aw.num_waiters() == 0
    assert main_ctx.resource_counts()[0] == 0


def test_kick_without_waiters_schedules_nothing(main_loop):
    mod = main_loop
    main_ctx = mod.get_aio_context()
    mod.aio_wait_kick()
    assert main_ctx.resource_counts()[0] == 0
    assert main_ctx.poll(False) is False


def test_the_thread_pool_completion_kicks(main_loop):
    mod = main_loop
    with mod.IOThread() as io:
        got = []
        go = threading.Event()

        def job():
            assert go.wait(WAIT)
            return pow(3, 4)

        io.ctx.thread_pool().submit(job, callback=got.append)
        with Watchdog(mod) as dog:
            assert io.ctx.wait_while(dog.bound(_opens_after_first_check(go, lambda: not got)))
        assert got == [81]


def test_the_coroutine_scheduler_kicks(main_loop):
    mod = main_loop

    go = threading.Event()

    async def body():
        assert go.wait(WAIT)  # blocks the IOThread until the waiter is waiting
        return threading.current_thread().name

    with mod.IOThread(name="co") as io:
        co = mod.Coroutine(body())
        io.ctx.co_schedule(co)
        with Watchdog(mod) as dog:
            assert io.ctx.wait_while(dog.bound(_opens_after_first_check(go, lambda: not co.done)))
        assert co.result == "co"


def test_aio_wait_bh_oneshot_runs_in_the_context_and_raises_to_the_waiter(main_loop):
    mod = main_loop
    with mod.IOThread(name="bh") as io:
        names = []
        mod.aio_wait_bh_oneshot(io.ctx, lambda: names.append(threading.current_thread().name))
        assert names == ["bh"]
        with pytest.raises(ZeroDivisionError):
            mod.aio_wait_bh_oneshot(io.ctx, lambda: 1 / 0)
    # on a context the caller drives, it polls that context
    ctx = mod.AioContext()
    try:
        mod.aio_wait_bh_oneshot(ctx, lambda: names.append("here"))
        assert names[-1] == "here"
    finally:
        ctx.close()


def test_a_big_lock_holder_waits_in_the_main_context(main_loop):
    """A thread that did not register a context but holds the big lock is the main loop."""
    mod = main_loop
    with mod.IOThread() as io:
        result = []

        def other():
            mod.bql_lock()
            try:
                box = []
                mod.aio_wait_bh_oneshot(io.ctx, lambda: box.append(1))
                result.append(box)
            finally:
                mod.bql_unlock()

        t = threading.Thread(target=other)
        t.start()
        t.join(WAIT)
        assert result == [[1]]


def test_only_the_main_loop_may_wait_for_another_threads_context(main_loop):
    mod = main_loop
    with mod.IOThread() as io:
        errors = []

        def other():
            try:
                io.ctx.wait_while(lambda: True)
            except RuntimeError as exc:
                errors.append(str(exc))

        t = threading.Thread(target=other)
        t.start()
        t.join(WAIT)
        assert errors and "another thread" in errors[0]


def test_bad_input(qloop_module, ctx):
    mod = qloop_module
    with pytest.raises(TypeError, match="cond must be callable"):
        ctx.wait_while(None)
    with pytest.raises(TypeError, match="callback must be callable"):
        mod.aio_wait_bh_oneshot(ctx, 5)
    closed = mod.AioContext()
    closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        mod.aio_wait_while(closed, lambda: False)


def test_many_kicks_from_many_threads_wake_the_waiter(main_loop, threads):
    """8 threads each finish 500 units of work in an IOThread through one-shot BHs (each
    kicks); the main loop waits for the total: no wake-up is lost."""
    mod = main_loop
    with mod.IOThread() as io:
        count = [0]

        def unit():
            count[0] += 1  # runs in the IOThread only

        def producer():
            for _ in range(500):
                io.ctx.bh_schedule_oneshot(lambda: (unit(), mod.aio_wait_kick()))

        for _ in range(8):
            threads.start(producer)
        with Watchdog(mod) as dog:
            io.ctx.wait_while(dog.bound(lambda: count[0] < 4000))
        threads.join_all()
        assert count[0] == 4000
