"""Bottom halves (docs/bottom-halves.md; the cases of QEMU's test-aio BH tests): schedule,
idle, cancel, delete, oneshot, order."""

from __future__ import annotations

import gc

import pytest

IDLE_TIMEOUT_NS = 10_000_000


# -- QEMU's test-aio BH cases ---------------------------------------------------------


def test_bh_schedule(ctx, watchdog):
    """Scheduling does not run synchronously; one blocking poll runs it once."""
    n = []
    bh = ctx.bh_new(lambda: n.append(1))
    bh.schedule()
    assert n == []
    assert ctx.poll(True) is True
    assert n == [1]
    assert ctx.poll(False) is False
    assert n == [1]
    bh.delete()


def test_bh_schedule10(ctx):
    """A self-rescheduling BH runs once per poll."""
    n = [0]

    def cb():
        n[0] += 1
        if n[0] < 10:
            bh.schedule()

    bh = ctx.bh_new(cb)
    bh.schedule()
    assert ctx.poll(False) is True
    assert n[0] == 1
    assert ctx.poll(True) is True  # does not block: a BH is pending
    assert n[0] == 2
    polls = 0
    while n[0] < 10:
        assert ctx.poll(True) is True
        polls += 1
        assert polls <= 8
    assert n[0] == 10
    assert ctx.poll(False) is False
    assert n[0] == 10
    bh.delete()


def test_bh_cancel(ctx):
    """A BH cancelled before any poll never runs; the poll is not progress."""
    n = []
    bh = ctx.bh_new(lambda: n.append(1))
    bh.schedule()
    bh.cancel()
    assert ctx.poll(False) is False
    assert ctx.poll(False) is False
    assert n == []
    bh.delete()


def test_bh_delete(ctx):
    """A scheduled BH deleted before any poll never runs; deletion is not progress."""
    n = []
    bh = ctx.bh_new(lambda: n.append(1))
    bh.schedule()
    bh.delete()
    assert ctx.poll(False) is False
    assert ctx.poll(False) is False
    assert n == []


def test_bh_delete_from_cb(ctx, poll_until):
    """A BH deleting itself in its callback runs once; next poll is not progress."""
    n = [0]
    holder = {}

    def cb():
        n[0] += 1
        holder["bh"].delete()
        holder["bh"] = None

    holder["bh"] = ctx.bh_new(cb)
    holder["bh"].schedule()
    poll_until(ctx, lambda: n[0] == 1)
    assert holder["bh"] is None
    assert ctx.poll(False) is False
    assert n[0] == 1


def test_bh_delete_from_cb_many(ctx, poll_until):
    """Four self-deleting BHs (limits 1, 3, 2, 4): one poll runs each once, then each runs
    exactly its limit."""
    limits = [1, 3, 2, 4]
    counts = [0] * 4
    bhs: list = [None] * 4

    def make(i):
        def cb():
            counts[i] += 1
            if counts[i] >= limits[i]:
                bhs[i].delete()
                bhs[i] = None
            else:
                bhs[i].schedule()

        return cb

    for i in range(4):
        bhs[i] = ctx.bh_new(make(i))
    for bh in bhs:
        bh.schedule()
    assert ctx.poll(False) is True
    assert counts == [1, 1, 1, 1]
    assert bhs[0] is None
    poll_until(ctx, lambda: all(b is None for b in bhs))
    assert counts == limits
    assert ctx.poll(False) is False


def test_bh_flush(ctx):
    """One blocking poll runs the BH, the next non-blocking poll is not progress."""
    n = []
    bh = ctx.bh_new(lambda: n.append(1))
    bh.schedule()
    assert ctx.poll(True) is True
    assert n == [1]
    assert ctx.poll(False) is False
    bh.delete()


# -- schedule semantics ----------------------------------------------------------------


def test_schedule_is_idempotent(ctx):
    n = []
    bh = ctx.bh_new(lambda: n.append(1))
    for _ in range(5):
        bh.schedule()
    assert ctx.poll(False) is True
    assert n == [1]
    assert ctx.poll(False) is False
    assert n == [1]
    bh.delete()


def test_bh_can_be_scheduled_again_after_running(ctx):
    n = []
    bh = ctx.bh_new(lambda: n.append(1))
    for i in range(1, 4):
        bh.schedule()
        assert ctx.poll(False) is True
        assert len(n) == i
    bh.delete()


def test_batch_runs_lifo_of_first_enqueue(ctx):
    order = []
    bhs = {name: ctx.bh_new(lambda name=name: order.append(name)) for name in "abcd"}
    for name in "abcd":
        bhs[name].schedule()
    assert ctx.poll(False) is True
    assert order == ["d", "c", "b", "a"]


def test_rescheduling_pending_bh_does_not_move_it(ctx):
    order = []
    bhs = {name: ctx.bh_new(lambda name=name: order.append(name)) for name in "abc"}
    bhs["a"].schedule()
    bhs["b"].schedule()
    bhs["c"].schedule()
    bhs["a"].schedule()  # already pending: keeps its place
    assert ctx.poll(False) is True
    assert order == ["c", "b", "a"]


def test_bh_scheduled_from_bh_runs_in_next_pass(ctx):
    order = []
    second = ctx.bh_new(lambda: order.append("second"))

    def first_cb():
        order.append("first")
        second.schedule()

    first = ctx.bh_new(first_cb)
    first.schedule()
    assert ctx.poll(False) is True
    assert order == ["first"]
    assert ctx.poll(False) is True
    assert order == ["first", "second"]
    assert ctx.poll(False) is False


def test_nested_poll_finishes_outer_batch_then_new(ctx):
    """A nested poll runs the outer batch's remaining BHs first, then new ones
    (docs/bottom-halves.md, "Order")."""
    order = []
    nested_result = []
    d = ctx.bh_new(lambda: order.append("d"))
    a = ctx.bh_new(lambda: order.append("a"))
    b = ctx.bh_new(lambda: order.append("b"))

    def c_cb():
        order.append("c")
        d.schedule()
        nested_result.append(ctx.poll(False))
        order.append("c-end")

    c = ctx.bh_new(c_cb)
    a.schedule()
    b.schedule()
    c.schedule()
    assert ctx.poll(False) is True
    assert order == ["c", "b", "a", "d", "c-end"]
    assert nested_result == [True]
    assert ctx.poll(False) is False


def test_cancel_then_schedule_runs(ctx):
    n = []
    bh = ctx.bh_new(lambda: n.append(1))
    bh.schedule()
    bh.cancel()
    bh.schedule()
    assert ctx.poll(False) is True
    assert n == [1]
    bh.delete()


def test_cancel_unscheduled_is_harmless(ctx):
    n = []
    bh = ctx.bh_new(lambda: n.append(1))
    bh.cancel()
    assert ctx.poll(False) is False
    bh.schedule()
    assert ctx.poll(False) is True
    assert n == [1]
    bh.delete()


def test_cancel_from_earlier_bh_in_same_batch(ctx):
    n = []
    victim = ctx.bh_new(lambda: n.append("victim"))
    killer = ctx.bh_new(lambda: (n.append("killer"), victim.cancel()))
    victim.schedule()
    killer.schedule()  # LIFO: killer runs first
    assert ctx.poll(False) is True
    assert n == ["killer"]
    assert ctx.poll(False) is False


def test_delete_from_earlier_bh_in_same_batch(ctx):
    n = []
    victim = ctx.bh_new(lambda: n.append("victim"))
    killer = ctx.bh_new(lambda: (n.append("killer"), victim.delete()))
    victim.schedule()
    killer.schedule()
    assert ctx.poll(False) is True
    assert n == ["killer"]
    assert ctx.poll(False) is False


# -- compute_timeout and idle BHs ----------------------------------------------------


def test_compute_timeout_with_bhs(ctx):
    assert ctx.compute_timeout() == -1
    bh = ctx.bh_new(lambda: None)
    bh.schedule()
    assert ctx.compute_timeout() == 0
    bh.cancel()
    assert ctx.compute_timeout() == -1
    bh.schedule_idle()
    assert ctx.compute_timeout() == IDLE_TIMEOUT_NS
    ctx.poll(False)
    assert ctx.compute_timeout() == -1
    bh.schedule()
    bh.delete()
    assert ctx.compute_timeout() == -1


def test_normal_bh_beats_idle_bh_in_timeout(ctx):
    idle = ctx.bh_new(lambda: None)
    normal = ctx.bh_new(lambda: None)
    idle.schedule_idle()
    normal.schedule()
    assert ctx.compute_timeout() == 0
    idle.delete()
    normal.delete()


def test_idle_bh_runs_but_is_not_progress(ctx):
    n = []
    bh = ctx.bh_new(lambda: n.append(1))
    bh.schedule_idle()
    assert ctx.poll(False) is False
    assert n == [1]
    assert ctx.compute_timeout() == -1
    bh.delete()


def test_blocking_poll_runs_idle_bh(ctx, watchdog):
    dog = watchdog(ctx, 5.0)
    ctx.poll(False)  # consume the watchdog's arming notify
    n = []
    bh = ctx.bh_new(lambda: n.append(1))
    bh.schedule_idle()
    assert ctx.poll(True) is False
    assert n == [1]
    assert not dog.fired
    bh.delete()


def test_idle_flag_is_sticky(ctx):
    """Idle then normal schedule before the run still runs as idle (no progress): scheduling
    normally does not clear a pending idle flag, as in QEMU."""
    n = []
    bh = ctx.bh_new(lambda: n.append(1))
    bh.schedule_idle()
    bh.schedule()
    assert ctx.poll(False) is False
    assert n == [1]
    bh.delete()


def test_idle_bh_with_normal_bh_is_progress(ctx):
    n = []
    idle = ctx.bh_new(lambda: n.append("idle"))
    normal = ctx.bh_new(lambda: n.append("normal"))
    idle.schedule_idle()
    normal.schedule()
    assert ctx.poll(False) is True
    assert sorted(n) == ["idle", "normal"]


def test_idle_bh_caps_timeout_below_far_timer(ctx, qloop_module):
    rt = qloop_module.ClockType.REALTIME
    t = ctx.timer_new_ns(rt, lambda: None)
    t.mod_ns(qloop_module.clock_get_ns(rt) + 3_600 * 10**9)
    bh = ctx.bh_new(lambda: None)
    bh.schedule_idle()
    assert ctx.compute_timeout() == IDLE_TIMEOUT_NS
    t.delete()
    bh.delete()


def test_idle_bh_timeout_lowered_by_near_timer(ctx, qloop_module):
    rt = qloop_module.ClockType.REALTIME
    t = ctx.timer_new_ns(rt, lambda: None)
    t.mod_ns(qloop_module.clock_get_ns(rt) + 2_000_000)
    bh = ctx.bh_new(lambda: None)
    bh.schedule_idle()
    assert 0 <= ctx.compute_timeout() <= 2_000_000
    t.delete()
    bh.delete()


# -- delete / oneshot / lifetime -----------------------------------------------------


@pytest.mark.parametrize("op", ["schedule", "schedule_idle", "cancel", "delete"])
def test_deleted_bh_raises_runtime_error(ctx, op):
    bh = ctx.bh_new(lambda: None)
    bh.delete()
    with pytest.raises(RuntimeError):
        getattr(bh, op)()


def test_bh_deleted_in_own_callback_then_used_raises(ctx):
    ran = []
    holder = {}

    def cb():
        ran.append(1)
        holder["bh"].delete()

    holder["bh"] = ctx.bh_new(cb)
    holder["bh"].schedule()
    assert ctx.poll(False) is True
    assert ran == [1]
    assert ctx.poll(False) is False
    with pytest.raises(RuntimeError):
        holder["bh"].schedule()


def test_oneshot_runs_exactly_once(ctx):
    n = []
    ctx.bh_schedule_oneshot(lambda: n.append(1))
    assert n == []
    assert ctx.poll(True) is True
    assert n == [1]
    assert ctx.poll(False) is False
    assert n == [1]


def test_oneshots_in_one_batch_lifo(ctx):
    order = []
    for i in range(5):
        ctx.bh_schedule_oneshot(lambda i=i: order.append(i), name=f"oneshot-{i}")
    assert ctx.poll(False) is True
    assert order == [4, 3, 2, 1, 0]
    assert ctx.poll(False) is False


def test_bh_name(ctx):
    bh = ctx.bh_new(lambda: None, name="my-bh")
    assert bh.name == "my-bh"
    bh.delete()


def test_scheduled_bh_is_kept_alive(ctx):
    n = []
    bh = ctx.bh_new(lambda: n.append(1))
    bh.schedule()
    del bh
    gc.collect()
    assert ctx.poll(False) is True
    assert n == [1]


def test_callback_receives_no_arguments(ctx):
    got = []

    def cb(*args, **kwargs):
        got.append((args, kwargs))

    ctx.bh_new(cb).schedule()
    ctx.poll(False)
    assert got == [((), {})]


def test_bh_belongs_to_its_context(make_ctx):
    c1 = make_ctx()
    c2 = make_ctx()
    n = []
    bh = c1.bh_new(lambda: n.append(1))
    bh.schedule()
    assert c2.poll(False) is False
    assert n == []
    assert c1.poll(False) is True
    assert n == [1]


# -- which BH operations notify (docs/bottom-halves.md) -------------------------------


@pytest.fixture
def near_timer(ctx, qloop_module):
    """A REALTIME timer 50 ms ahead, armed and its notify consumed."""
    rt = qloop_module.ClockType.REALTIME
    fired = []
    t = ctx.timer_new_ns(rt, lambda: fired.append(qloop_module.clock_get_ns(rt)))
    deadline = qloop_module.clock_get_ns(rt) + 50_000_000
    t.mod_ns(deadline)
    assert ctx.poll(False) is False
    yield fired, deadline
    t.delete()


def test_bh_new_does_not_notify(ctx, near_timer):
    fired, deadline = near_timer
    bh = ctx.bh_new(lambda: None)
    assert ctx.poll(True) is True  # slept until the timer
    assert fired and fired[0] >= deadline
    bh.delete()


def test_cancel_of_unscheduled_bh_does_not_notify(ctx, near_timer):
    fired, deadline = near_timer
    bh = ctx.bh_new(lambda: None)
    bh.cancel()
    assert ctx.poll(True) is True
    assert fired and fired[0] >= deadline
    bh.delete()


def test_delete_notifies(ctx, near_timer):
    fired, _ = near_timer
    bh = ctx.bh_new(lambda: None)
    bh.delete()
    assert ctx.poll(True) is False  # woken by the delete's notify; not progress
    assert fired == []


def test_schedule_then_cancel_still_wakes_without_progress(ctx, near_timer):
    fired, _ = near_timer
    n = []
    bh = ctx.bh_new(lambda: n.append(1))
    bh.schedule()
    bh.cancel()  # the schedule's notify stays; the BH does not run
    assert ctx.poll(True) is False
    assert fired == [] and n == []
    bh.delete()
