"""clock_step (QEMU qtest's clock_step) and timers_deadline on the manual VIRTUAL clock, on
both implementations."""

from __future__ import annotations

import time

import pytest

MS = 10**6


@pytest.fixture
def manual(main_loop):
    mod = main_loop
    mod.clock_set_manual(True)
    mod.vm_start()
    return mod


def _vnow(mod):
    return mod.clock_get_ns(mod.ClockType.VIRTUAL)


def test_clock_step_needs_manual_clock(main_loop):
    mod = main_loop
    assert mod.clock_is_manual() is False
    with pytest.raises(RuntimeError, match="clock_set_manual"):
        mod.clock_step(10)


def test_clock_step_by_ns_runs_due_timers_in_order(manual):
    mod = manual
    V = mod.ClockType.VIRTUAL
    ctx = mod.get_aio_context()
    log = []
    start = _vnow(mod)
    for name, at in (("b", 20), ("a", 10), ("late", 50)):
        ctx.timer_new_ns(V, lambda n=name: log.append((n, _vnow(mod) - start))).mod_ns(start + at)
    assert mod.clock_step(30) == start + 30
    assert _vnow(mod) == start + 30
    assert log == [("a", 10), ("b", 20)]  # each at its own deadline, not at the end


def test_clock_step_none_goes_to_next_deadline_of_any_context(manual, make_ctx):
    mod = manual
    V = mod.ClockType.VIRTUAL
    other = make_ctx()
    fired = []
    start = _vnow(mod)
    mod.get_aio_context().timer_new_ns(V, lambda: fired.append("main")).mod_ns(start + 5 * MS)
    other.timer_new_ns(V, lambda: fired.append("other")).mod_ns(start + 2 * MS)
    assert mod.clock_step() == start + 2 * MS
    assert fired == ["other"]
    assert mod.clock_step() == start + 5 * MS
    assert fired == ["other", "main"]
    # no VIRTUAL timer left: stays
    assert mod.clock_step() == start + 5 * MS


def test_clock_step_runs_coroutine_a_timer_woke(manual):
    mod = manual
    V = mod.ClockType.VIRTUAL
    log = []

    async def body():
        await mod.co_sleep_ns(V, 3600 * 10**9)
        log.append("woke")
        await mod.co_sleep_ns(V, 0)  # a second hop through the main context
        log.append("done")

    co = mod.Coroutine(body())
    t0 = time.monotonic()
    start = _vnow(mod)
    co.enter()
    assert not co.done
    assert mod.clock_step() == start + 3600 * 10**9
    assert co.done
    assert log == ["woke", "done"]
    assert time.monotonic() - t0 < 1.0  # virtual hour, no real sleep


def test_clock_step_raises_first_callback_error_after_running_everything(manual):
    mod = manual
    V = mod.ClockType.VIRTUAL
    ctx = mod.get_aio_context()
    ran = []

    def bad():
        ran.append("bad")
        raise ValueError("boom")

    start = _vnow(mod)
    ctx.timer_new_ns(V, bad).mod_ns(start + 1)
    ctx.timer_new_ns(V, lambda: ran.append("good")).mod_ns(start + 2)
    with pytest.raises(ValueError, match="boom"):
        mod.clock_step(10)
    assert ran == ["bad", "good"]
    assert _vnow(mod) == start + 10


@pytest.mark.parametrize("bad,exc", [(-1, ValueError), (1.5, TypeError), ("1", TypeError),
                                     (2**63, OverflowError)])
def test_clock_step_bad_ns(manual, bad, exc):
    with pytest.raises(exc):
        manual.clock_step(bad)


def test_timers_deadline_on_manual_clock_is_the_virtual_distance(manual, make_ctx):
    """A test can step to the next deadline: timers_deadline() gives the VIRTUAL distance
    even on the manual clock, while a blocking wait is never bounded by it."""
    mod = manual
    V = mod.ClockType.VIRTUAL
    ctx = make_ctx()
    t = ctx.timer_new_ns(V, lambda: None)
    t.mod_ns(_vnow(mod) + 7 * MS)
    assert ctx.timers_deadline() == 7 * MS
    assert ctx.compute_timeout() == -1  # the wait does not sleep on real time for it
    mod.clock_advance_virtual_time(_vnow(mod) + ctx.timers_deadline())
    assert t.pending is False  # ran
    assert ctx.timers_deadline() == -1
