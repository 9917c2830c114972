"""Coroutines on the main loop (docs/coroutines.md; the cases of QEMU's coroutine tests).

Both implementations run every test (the coroutine code is shared, the contexts, BHs and
timers under it are the implementation's).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest

from _mainloop_support import PROMPT_S, join, start_thread, wait_until

MS = 10**6
HOUR_NS = 3600 * 10**9


def _now(mod, clock):
    return mod.clock_get_ns(clock)


# --------------------------------------------------------------------------------------------
# the seed pattern


def test_seed_pattern_bh_enters_coroutine_that_sleeps(main_loop, guard):
    """A BH enters a coroutine as soon as the main loop starts; main_loop_wait drives it
    through co_sleep_ns on REALTIME."""
    mod = main_loop
    rt = mod.ClockType.REALTIME
    log = []

    async def body():
        log.append(("start", mod.in_coroutine()))
        t0 = _now(mod, rt)
        await mod.co_sleep_ns(rt, 20 * MS)
        log.append(("woke", _now(mod, rt) - t0 >= 20 * MS))
        await mod.co_sleep_ns(rt, 0)
        log.append("again")
        return "result"

    co = mod.Coroutine(body())
    mod.bh_new(co.enter).schedule()
    assert log == []
    t0 = time.monotonic()
    n = 0
    while not co.done:
        assert n < 20 and time.monotonic() - t0 < PROMPT_S, "coroutine did not finish"
        mod.main_loop_wait(False)
        n += 1
    assert log == [("start", True), ("woke", True), "again"]
    assert co.result == "result"
    assert time.monotonic() - t0 >= 0.015
    assert mod.in_coroutine() is False


def test_co_sleep_on_manual_virtual_clock_is_instant(main_loop):
    mod = main_loop
    V = mod.ClockType.VIRTUAL
    mod.clock_set_manual(True)
    mod.vm_start()
    log = []

    async def body():
        start = _now(mod, V)
        await mod.co_sleep_ns(V, HOUR_NS)
        log.append(_now(mod, V) - start)

    co = mod.Coroutine(body())
    t0 = time.monotonic()
    co.enter()
    assert not co.done
    start = _now(mod, V)
    mod.clock_advance_virtual_time(start + HOUR_NS - 1)
    assert not co.done  # one ns early: still asleep
    mod.clock_advance_virtual_time(start + HOUR_NS)
    for _ in range(3):
        if co.done:
            break
        mod.main_loop_wait(True)
    assert co.done
    assert log == [HOUR_NS]
    assert time.monotonic() - t0 < 1.0


def test_co_sleep_frozen_while_vm_stopped(main_loop):
    """VIRTUAL is disabled while the VM is not running: its timers never fire."""
    mod = main_loop
    V = mod.ClockType.VIRTUAL
    mod.clock_set_manual(True)

    async def body():
        await mod.co_sleep_ns(V, 1000)

    co = mod.Coroutine(body())
    co.enter()
    mod.clock_advance_virtual_time(_now(mod, V) + 10**6)
    for _ in range(3):
        mod.main_loop_wait(True)
    assert not co.done
    mod.vm_start()
    mod.clock_advance_virtual_time(_now(mod, V) + 10**6)
    for _ in range(3):
        if co.done:
            break
        mod.main_loop_wait(True)
    assert co.done


# --------------------------------------------------------------------------------------------
# coroutine_self / in_coroutine / yield / enter


def test_coroutine_self_and_in_coroutine(main_loop):
    mod = main_loop
    seen = []

    async def body():
        seen.append((mod.coroutine_self(), mod.in_coroutine()))
        await mod.coroutine_yield()
        seen.append((mod.coroutine_self(), mod.in_coroutine()))

    assert mod.coroutine_self() is None
    assert mod.in_coroutine() is False
    co = mod.Coroutine(body())
    co.enter()
    assert seen == [(co, True)]
    assert mod.coroutine_self() is None and mod.in_coroutine() is False
    assert not co.done
    co.enter()
    assert seen == [(co, True), (co, True)]
    assert co.done


def test_nested_enter_restores_outer_coroutine(main_loop):
    mod = main_loop
    seen = []

    async def inner():
        seen.append(("inner", mod.coroutine_self()))

    async def outer():
        c = mod.Coroutine(inner())
        c.enter()  # nested, like qemu_coroutine_enter from a coroutine
        seen.append(("outer", mod.coroutine_self()))
        seen.append(c)

    co = mod.Coroutine(outer())
    co.enter()
    inner_co = seen[2]
    assert seen[:2] == [("inner", inner_co), ("outer", co)]


def test_enter_finished_or_running_coroutine_raises(main_loop):
    mod = main_loop
    errors = []

    async def body():
        try:
            mod.coroutine_self().enter()
        except RuntimeError as exc:
            errors.append(exc)

    co = mod.Coroutine(body())
    co.enter()
    assert len(errors) == 1  # re-entered recursively
    assert co.done
    with pytest.raises(RuntimeError):
        co.enter()  # already terminated


def test_coroutine_needs_a_coroutine_object(main_loop):
    mod = main_loop

    async def body():
        pass

    with pytest.raises(TypeError):
        mod.Coroutine(body)  # the function, not a coroutine object
    with pytest.raises(TypeError):
        mod.Coroutine(42)
    with pytest.raises(TypeError):
        mod.co_wake("not a coroutine")
    with pytest.raises(TypeError):
        mod.get_aio_context().co_schedule(object())
    c = body()
    co = mod.Coroutine(c)
    co.enter()
    assert co.done


def test_exception_in_coroutine_propagates_out_of_enter(main_loop):
    mod = main_loop

    async def body():
        await mod.coroutine_yield()
        raise ZeroDivisionError("boom")

    co = mod.Coroutine(body())
    co.enter()
    with pytest.raises(ZeroDivisionError, match="boom"):
        co.enter()
    assert co.done
    # the loop keeps running
    ran = []
    mod.bh_new(lambda: ran.append(True)).schedule()
    mod.main_loop_wait(True)
    assert ran == [True]


def test_exception_in_scheduled_coroutine_propagates_out_of_poll(main_loop):
    mod = main_loop
    ctx = mod.get_aio_context()

    async def body():
        raise KeyError("from coroutine")

    co = mod.Coroutine(body())
    ctx.co_schedule(co)
    with pytest.raises(KeyError):
        ctx.poll(False)
    assert co.done
    assert ctx.poll(False) is False


class _ForeignAwaitable:
    def __await__(self):
        yield "something that is not qloop's"
        return "unreachable"


@pytest.mark.parametrize("kind", ["custom", "asyncio-future"])
def test_awaiting_non_qloop_awaitable_raises_type_error_inside(main_loop, kind):
    mod = main_loop
    caught = []
    loop = asyncio.new_event_loop()
    try:
        async def body():
            awaitable = _ForeignAwaitable() if kind == "custom" else loop.create_future()
            try:
                await awaitable
            except TypeError as exc:
                caught.append(exc)
            await mod.coroutine_yield()  # still usable afterwards
            return "finished"

        co = mod.Coroutine(body())
        co.enter()
        assert len(caught) == 1
        assert not co.done
        co.enter()
        assert co.done and co.result == "finished"
    finally:
        loop.close()


def test_uncaught_type_error_from_foreign_awaitable_propagates(main_loop):
    mod = main_loop

    async def body():
        await _ForeignAwaitable()

    co = mod.Coroutine(body())
    with pytest.raises(TypeError):
        co.enter()
    assert co.done


def test_co_sleep_bad_arguments(main_loop):
    mod = main_loop
    with pytest.raises(ValueError):
        mod.co_sleep_ns(mod.ClockType.REALTIME, -1)
    with pytest.raises(ValueError):
        mod.co_sleep_ns(42, 10)
    with pytest.raises(TypeError):
        mod.co_sleep_ns(mod.ClockType.REALTIME, 1.5)

    async def body():
        await mod.co_sleep_ns(mod.ClockType.REALTIME, 10)

    c = body()
    with pytest.raises(RuntimeError):  # awaited outside a qloop Coroutine
        c.send(None)
    c.close()


# --------------------------------------------------------------------------------------------
# co_schedule / co_wake


def test_co_schedule_runs_fifo_from_bh(main_loop):
    mod = main_loop
    ctx = mod.get_aio_context()
    order = []

    def make(name):
        async def body():
            order.append((name, mod.coroutine_self() is not None))
        return mod.Coroutine(body())

    cos = [make(n) for n in "abcde"]
    for co in cos:
        ctx.co_schedule(co)
    assert order == []
    assert ctx.poll(False) is True
    assert order == [(n, True) for n in "abcde"]
    assert all(co.done for co in cos)
    assert ctx.poll(False) is False


def test_co_schedule_twice_raises(main_loop):
    mod = main_loop
    ctx = mod.get_aio_context()
    runs = []

    async def body():
        runs.append(1)

    co = mod.Coroutine(body())
    ctx.co_schedule(co)
    with pytest.raises(RuntimeError):
        ctx.co_schedule(co)
    with pytest.raises(RuntimeError):
        co.enter()  # scheduled: cannot be entered directly either
    mod.main_loop_wait(True)
    assert runs == [1]  # ran once
    with pytest.raises(RuntimeError):
        ctx.co_schedule(co)  # terminated


def test_co_schedule_runs_via_main_loop_wait(main_loop, guard):
    mod = main_loop
    ctx = mod.get_aio_context()
    ran = []

    async def body():
        ran.append(threading.get_ident())
        await mod.coroutine_yield()
        ran.append("second")

    co = mod.Coroutine(body())
    ctx.co_schedule(co)
    wait_until(mod, lambda: bool(ran), timeout=PROMPT_S, max_iterations=3)
    assert ran == [threading.get_ident()]
    ctx.co_schedule(co)  # yielded: can be scheduled again
    wait_until(mod, lambda: co.done, timeout=PROMPT_S, max_iterations=3)
    assert ran[-1] == "second"


def test_co_wake_from_coroutine_is_queued_not_nested(main_loop):
    mod = main_loop
    log = []

    async def b_body():
        log.append("B runs")
        await mod.coroutine_yield()

    b = mod.Coroutine(b_body())

    async def a_body():
        mod.co_wake(b)
        log.append("A after co_wake")  # B has not run yet
        await mod.coroutine_yield()
        log.append("A resumed")

    a = mod.Coroutine(a_body())
    a.enter()
    assert log == ["A after co_wake", "B runs"]  # B ran after A yielded, within enter()
    mod.co_wake(a)  # outside a coroutine: entered at once
    assert log[-1] == "A resumed" and a.done


def test_queue_chaining_25000_each(main_loop):
    """Queue chaining: two coroutines that co_wake each other and yield, 25,000 times each."""
    mod = main_loop
    MAX = 25_000

    class Data:
        def __init__(self):
            self.i = 0
            self.other = None

    data_a, data_b = Data(), Data()

    async def chain(data):
        data.i = 0
        while data.i < MAX:
            mod.co_wake(data.other)  # queued to run after we yield
            await mod.coroutine_yield()
            data.i += 1

    orig_limit = sys.getrecursionlimit()
    co_a = mod.Coroutine(chain(data_a))
    co_b = mod.Coroutine(chain(data_b))
    data_b.other = co_a
    data_a.other = co_b
    sys.setrecursionlimit(1000)  # nesting would need tens of thousands of frames
    try:
        co_a.enter()
    finally:
        sys.setrecursionlimit(orig_limit)
    assert data_a.i == MAX
    assert data_b.i == MAX - 1
    assert co_a.done and not co_b.done
    co_b.enter()  # lets the second one terminate
    assert data_b.i == MAX
    assert co_b.done


def test_worker_thread_co_wake_runs_in_main_thread(main_loop, watchdog):
    """A worker thread wakes a main-context coroutine: it has not run when the
    thread is joined; the next blocking poll of the main ctx runs it in the main thread and
    returns True; a following non-blocking poll returns False."""
    mod = main_loop
    ctx = mod.get_aio_context()
    dog = watchdog(ctx, 5.0)
    while ctx.poll(False):
        pass
    main = threading.get_ident()
    ran = []

    async def body():
        ran.append(threading.get_ident())

    co = mod.Coroutine(body(), ctx=ctx)
    t = start_thread(lambda: mod.co_wake(co))
    join(t)
    assert ran == []  # scheduled, not entered in the worker
    assert ctx.poll(True) is True
    assert not dog.fired
    assert ran == [main]
    assert co.done
    assert ctx.poll(False) is False


def test_worker_thread_co_schedule_wakes_blocking_main_loop_wait(main_loop, guard):
    mod = main_loop
    ctx = mod.get_aio_context()
    ran = []
    threads = []

    async def body():
        ran.append((threading.get_ident(), mod.bql_locked()))

    co = mod.Coroutine(body())

    def fill(ml):
        if not threads:
            threads.append(start_thread(lambda: ctx.co_schedule(co)))

    guard.on_fill.append(fill)
    t0 = time.monotonic()
    wait_until(mod, lambda: co.done, timeout=PROMPT_S, max_iterations=3)
    assert time.monotonic() - t0 < PROMPT_S
    join(threads[0])
    assert ran == [(threading.get_ident(), True)]


def test_co_wake_outside_coroutine_enters_at_once(main_loop):
    mod = main_loop
    log = []

    async def body():
        log.append("first")
        await mod.coroutine_yield()
        log.append("second")

    co = mod.Coroutine(body())
    co.enter()
    mod.co_wake(co)
    assert log == ["first", "second"]
    assert co.done
    with pytest.raises(RuntimeError):
        mod.co_wake(co)  # terminated


def test_co_wake_does_not_end_sleep_early(main_loop):
    """A spurious co_wake during co_sleep_ns puts the coroutine back to sleep."""
    mod = main_loop
    V = mod.ClockType.VIRTUAL
    mod.clock_set_manual(True)
    mod.vm_start()
    done = []

    async def body():
        await mod.co_sleep_ns(V, 1000)
        done.append(True)

    co = mod.Coroutine(body())
    co.enter()
    mod.co_wake(co)
    assert done == [] and not co.done
    mod.clock_advance_virtual_time(_now(mod, V) + 1000)
    for _ in range(3):
        if co.done:
            break
        mod.main_loop_wait(True)
    assert done == [True]


def test_coroutine_reschedules_itself(main_loop):
    """aio_co_reschedule_self pattern: schedule yourself, yield, resume from the BH."""
    mod = main_loop
    ctx = mod.get_aio_context()
    order = []

    async def body():
        order.append("before")
        ctx.co_schedule(mod.coroutine_self())
        await mod.coroutine_yield()
        order.append("after")

    co = mod.Coroutine(body())
    co.enter()
    assert order == ["before"] and not co.done
    assert ctx.poll(False) is True
    assert order == ["before", "after"] and co.done


def test_failing_scheduled_coroutine_does_not_stop_the_batch(main_loop):
    mod = main_loop
    ctx = mod.get_aio_context()
    ran = []

    async def bad():
        ran.append("bad")
        raise KeyError("bad")

    async def good():
        ran.append("good")

    ctx.co_schedule(mod.Coroutine(bad()))
    ctx.co_schedule(mod.Coroutine(good()))
    with pytest.raises(KeyError):
        ctx.poll(False)
    assert ran == ["bad", "good"]
